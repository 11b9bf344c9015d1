//! The two SSM operations a Session Manager client calls on a session it
//! was handed: `ResumeSession` (AWS's session-manager-plugin asks for a
//! fresh token after a dropped WebSocket, then redials) and
//! `TerminateSession` (the plugin ends a session it gave up on).
//!
//! They are SSM's, not CloudShell's: JSON 1.1 with `X-Amz-Target:
//! AmazonSSM.<Operation>`, signed for the `ssm` service. The plugin sends
//! them to the endpoint it was given as its seventh argument, so pointing
//! that at the emulator is all a test needs.

use serde_json::Value;

use crate::aws_error::AwsError;
use crate::sigv4::Verified;
use crate::state::AppState;

/// The SigV4 service name these operations are signed for.
pub const SERVICE_NAME: &str = "ssm";

/// The target prefix that marks a request as SSM's.
const TARGET_PREFIX: &str = "AmazonSSM.";

/// The SSM operation an `X-Amz-Target` names, if it names one.
pub fn operation(target: Option<&str>) -> Option<Result<&'static str, AwsError>> {
    let name = target?.strip_prefix(TARGET_PREFIX)?;
    Some(match name {
        "ResumeSession" => Ok("ResumeSession"),
        "TerminateSession" => Ok("TerminateSession"),
        other => Err(AwsError::unknown_operation(&format!("AmazonSSM.{other}"))),
    })
}

/// Runs one SSM operation for an authenticated caller.
pub fn call(
    state: &AppState,
    operation: &str,
    caller: &Verified,
    input: &Value,
    now: crate::lifecycle::Millis,
    host: &str,
) -> Result<Value, AwsError> {
    let session_id = input
        .get("SessionId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            AwsError::validation("SessionId is required: the id CreateSession returned")
        })?;
    match operation {
        "ResumeSession" => state.service.resume_session(caller, session_id, now, host),
        "TerminateSession" => {
            let out = state.service.terminate_session(caller, session_id)?;
            state
                .live
                .end(session_id, "terminated through SSM TerminateSession");
            Ok(out)
        }
        other => Err(AwsError::unknown_operation(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_amazon_ssm_targets_are_ssm_operations() {
        assert_eq!(operation(None), None);
        assert_eq!(operation(Some("AWSCloudShell.CreateSession")), None);
        assert_eq!(
            operation(Some("AmazonSSM.ResumeSession")),
            Some(Ok("ResumeSession"))
        );
        let unknown = operation(Some("AmazonSSM.StartSession"))
            .unwrap()
            .unwrap_err();
        assert_eq!(unknown.code, "UnknownOperationException");
    }
}
