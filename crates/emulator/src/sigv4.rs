//! SigV4 verification of incoming requests.
//!
//! The emulator checks a request the way AWS front ends do: parse the
//! `Authorization` header, look up the access key, check the credential
//! scope (date, region, service), refuse a clock skew over 5 minutes, then
//! sign the same request again with `aws-sigv4` and compare signatures in
//! constant time. Re-signing with the reference implementation, rather than
//! rebuilding the canonical request by hand, keeps the check honest to what
//! AWS computes.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::HeaderMap;

use crate::aws_error::AwsError;
use crate::config::EmulatorCredential;

/// Largest difference between the request's time and ours (AWS uses 5 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Who signed a request, and for which region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principal the access key belongs to.
    pub principal: String,
    /// The region of the credential scope.
    pub region: String,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, PartialEq, Eq)]
struct AuthorizationHeader<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<AuthorizationHeader<'_>, AwsError> {
    let incomplete = |what: &str| {
        AwsError::incomplete_signature(format!(
            "Authorization header requires {what}. Authorization={value}"
        ))
    };
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or_else(|| {
            AwsError::incomplete_signature(format!(
                "Authorization header must use the {ALGORITHM} algorithm"
            ))
        })?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let credential = credential.ok_or_else(|| incomplete("'Credential' parameter"))?;
    let signed = signed.ok_or_else(|| incomplete("'SignedHeaders' parameter"))?;
    let signature = signature.ok_or_else(|| incomplete("'Signature' parameter"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope[..] else {
        return Err(incomplete(
            "a well-formed 'Credential' parameter (AK/date/region/service/aws4_request)",
        ));
    };
    if terminator != "aws4_request" {
        return Err(AwsError::invalid_signature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )));
    }
    Ok(AuthorizationHeader {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
    })
}

/// What the verifier needs to know about a request.
#[derive(Debug)]
pub struct IncomingRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path and query as received.
    pub path_and_query: &'a str,
    /// All headers as received.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// Checks a request's signature against the configured credentials.
///
/// `served_regions` are the regions this emulator answers for; `host_region`
/// is the region named by a `cloudshell.<region>.…` Host header, if any.
pub fn verify(
    request: &IncomingRequest<'_>,
    credentials: &[EmulatorCredential],
    service: &str,
    served_regions: &[String],
    host_region: Option<&str>,
    now: SystemTime,
) -> Result<Verified, AwsError> {
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok());
    let auth = header("authorization").ok_or_else(AwsError::missing_authentication)?;
    let auth = parse_authorization(auth)?;

    let credential = credentials
        .iter()
        .find(|c| c.access_key_id == auth.access_key_id)
        .ok_or_else(AwsError::unrecognized_client)?;
    if auth.service != service {
        return Err(AwsError::invalid_signature(format!(
            "Credential should be scoped to correct service: '{service}'."
        )));
    }
    let region_ok = served_regions.iter().any(|r| r == auth.region)
        && host_region.is_none_or(|h| h == auth.region);
    if !region_ok {
        return Err(AwsError::invalid_signature(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            auth.region
        )));
    }
    if let Some(allowed) = &credential.regions
        && !allowed.iter().any(|r| r == auth.region)
    {
        return Err(AwsError::invalid_signature(format!(
            "Credential should be scoped to a valid region, not '{}'. These credentials are valid in: {}.",
            auth.region,
            allowed.join(", ")
        )));
    }

    let amz_date = header("x-amz-date").ok_or_else(|| {
        AwsError::incomplete_signature(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        )
    })?;
    let signed_at = parse_amz_date(amz_date).ok_or_else(|| {
        AwsError::incomplete_signature(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        ))
    })?;
    if !amz_date.starts_with(auth.date) || auth.date.len() != 8 {
        return Err(AwsError::invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}'.",
            auth.date,
            &amz_date[..amz_date.len().min(8)]
        )));
    }
    check_skew(amz_date, signed_at, now)?;

    let token = header("x-amz-security-token");
    if token != credential.session_token.as_deref() {
        return Err(AwsError::unrecognized_client());
    }
    if !auth.signed_headers.contains(&"host") {
        return Err(AwsError::invalid_signature(
            "'Host' must be a signed header.",
        ));
    }

    let expected = resign(request, &auth, credential, signed_at)?;
    if same_secret(expected.as_bytes(), auth.signature.as_bytes()) {
        Ok(Verified {
            principal: credential.principal.clone(),
            region: auth.region.to_owned(),
        })
    } else {
        Err(AwsError::invalid_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        ))
    }
}

fn check_skew(amz_date: &str, signed_at: SystemTime, now: SystemTime) -> Result<(), AwsError> {
    let fmt = |t: SystemTime| format_amz_date(t);
    if signed_at + MAX_CLOCK_SKEW < now {
        return Err(AwsError::invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
            fmt(now - MAX_CLOCK_SKEW),
            fmt(now)
        )));
    }
    if signed_at > now + MAX_CLOCK_SKEW {
        return Err(AwsError::invalid_signature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
            fmt(now + MAX_CLOCK_SKEW),
            fmt(now)
        )));
    }
    Ok(())
}

/// Signs the request again with the stored secret, over exactly the headers
/// the client listed, and returns the hex signature.
fn resign(
    request: &IncomingRequest<'_>,
    auth: &AuthorizationHeader<'_>,
    credential: &EmulatorCredential,
    signed_at: SystemTime,
) -> Result<String, AwsError> {
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        // The signer adds these two itself, from the time and the identity.
        if matches!(*name, "x-amz-date" | "x-amz-security-token") {
            continue;
        }
        let mut values = request.headers.get_all(*name).iter().peekable();
        if values.peek().is_none() {
            return Err(AwsError::invalid_signature(format!(
                "The request signature we calculated does not match the signature you provided: signed header '{name}' is missing."
            )));
        }
        for v in values {
            let v = v.to_str().map_err(|_| {
                AwsError::invalid_signature(format!("signed header '{name}' is not valid text"))
            })?;
            headers.push((*name, v));
        }
    }
    let identity: Identity = Credentials::new(
        &credential.access_key_id,
        &credential.secret_access_key,
        credential.session_token.clone(),
        None,
        "cloudshell-emulator",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.excluded_headers = Some(Vec::<Cow<'static, str>>::new());
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(signed_at)
        .settings(settings)
        .build()
        .map_err(|e| AwsError::internal(format!("signing parameters: {e}")))?
        .into();
    // The signer needs an absolute URI for its Host fallback; Host is always
    // among the signed headers here, so the authority used is irrelevant.
    let uri = format!("http://emulator.invalid{}", request.path_and_query);
    let signable = SignableRequest::new(
        request.method,
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| AwsError::invalid_signature(format!("request cannot be signed: {e}")))?;
    let output = sign(signable, &params)
        .map_err(|e| AwsError::invalid_signature(format!("request cannot be signed: {e}")))?;
    Ok(output.signature().to_owned())
}

/// Parses `YYYYMMDDTHHMMSSZ`.
pub fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let dt = time::PrimitiveDateTime::parse(s, &format).ok()?;
    let secs = u64::try_from(dt.assume_utc().unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Formats `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: SystemTime) -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::from(t)
        .format(&format)
        .unwrap_or_default()
}

/// Compares secrets (signatures, tokens, keys) in constant time, so the
/// time a refusal takes says nothing about how much of a guess was right.
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_authorization_header() {
        let h = "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/cloudshell/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=abc";
        let a = parse_authorization(h).unwrap();
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.service, "cloudshell");
        assert_eq!(a.signed_headers, vec!["content-type", "host", "x-amz-date"]);
        assert_eq!(a.signature, "abc");
    }

    #[test]
    fn malformed_authorization_is_incomplete_signature() {
        for h in [
            "Basic Zm9vOmJhcg==",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc",
            "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1, SignedHeaders=host, Signature=abc",
            "AWS4-HMAC-SHA256 Credential=AKID/20261125/us-east-1/cloudshell/aws4_request, Signature=abc",
        ] {
            let e = parse_authorization(h).unwrap_err();
            assert_eq!(e.code, "IncompleteSignatureException", "{h}");
        }
    }

    #[test]
    fn amz_date_round_trips() {
        let t = parse_amz_date("20261125T010203Z").unwrap();
        assert_eq!(format_amz_date(t), "20261125T010203Z");
        assert!(parse_amz_date("2026-11-25").is_none());
    }

    #[test]
    fn skew_over_five_minutes_is_refused() {
        let now = parse_amz_date("20261125T120000Z").unwrap();
        let ok = parse_amz_date("20261125T115600Z").unwrap();
        assert!(check_skew("x", ok, now).is_ok());
        let old = parse_amz_date("20261125T115400Z").unwrap();
        assert!(
            check_skew("x", old, now)
                .unwrap_err()
                .message
                .starts_with("Signature expired")
        );
        let future = parse_amz_date("20261125T120600Z").unwrap();
        assert!(
            check_skew("x", future, now)
                .unwrap_err()
                .message
                .starts_with("Signature not yet current")
        );
    }
}
