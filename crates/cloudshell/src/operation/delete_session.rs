//! `DeleteSession`: ends a shell session.

use serde::{Deserialize, Serialize};

use crate::error::operation_error;
use crate::operation::{EmptyOutput, Validate, operation};
use crate::types::{EnvironmentId, ValidationError};

/// Which session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteSessionInput {
    /// The environment the session is in.
    pub environment_id: EnvironmentId,
    /// The id `CreateSession` returned.
    pub session_id: String,
}

impl Validate for DeleteSessionInput {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.session_id.trim().is_empty() {
            return Err(ValidationError::new(
                "SessionId",
                "must not be empty (it is the id CreateSession returned)",
            ));
        }
        Ok(())
    }
}

operation_error! {
    /// Errors `DeleteSession` can return.
    DeleteSessionError {}
}

operation!(
    DeleteSession,
    "DeleteSession",
    "/deleteSession",
    idempotent = true,
    DeleteSessionInput,
    EmptyOutput,
    DeleteSessionError
);
