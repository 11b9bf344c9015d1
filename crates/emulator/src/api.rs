//! The HTTP layer: routing, SigV4 checking, fault injection, AWS-shaped answers.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tracing::{debug, info};

use crate::aws_error::AwsError;
use crate::faults::FaultRequest;
use crate::service::OPERATIONS;
use crate::sigv4::{IncomingRequest, verify};
use crate::state::{AppState, now_millis};

/// The emulator's routes: the control API on every path, plus `/_emulator/*`
/// for test tooling (unsigned; the emulator listens on loopback).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/_emulator/faults", post(arm_faults))
        .route("/_emulator/environments", get(list_all))
        .route("/_emulator/revoke", post(revoke))
        .route("/_emulator/credentials", post(add_credential))
        .route(
            "/v1/data-channel/{session_id}",
            get(crate::data_channel::upgrade),
        )
        // Uploads are as large as the home quota; the handler counts them.
        .route(
            "/_files/upload",
            post(crate::files::upload).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/_files/download/{*key}", get(crate::files::download))
        .fallback(control_api)
        .with_state(state)
}

async fn arm_faults(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultRequest>(&body) {
        Ok(request) => {
            state.faults.arm(request);
            info!(?request, "faults armed");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!(
                "bad fault request: {e}; expected {{\"throttle_next\": N, \"fail_next\": N}}\n"
            ),
        )
            .into_response(),
    }
}

/// `POST /_emulator/revoke`: whose credentials to revoke (or, with
/// `"restore": true`, to accept again), by principal ARN or by one of its
/// access key ids.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    access_key_id: Option<String>,
    #[serde(default)]
    restore: bool,
}

async fn revoke(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let bad = |why: String| (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
    let request: Revoke = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "bad revoke request: {e}; expected {{\"principal\": ARN}} or \
                 {{\"access_key_id\": ID}}, with \"restore\": true to undo"
            ));
        }
    };
    let credentials = state.credentials();
    let principal = match (&request.principal, &request.access_key_id) {
        (Some(p), None) => p.clone(),
        (None, Some(id)) => match credentials.iter().find(|c| c.access_key_id == *id) {
            Some(c) => c.principal.clone(),
            None => return bad(format!("no credentials have the access key id {id}")),
        },
        _ => return bad("give one of principal and access_key_id".to_owned()),
    };
    if !credentials.iter().any(|c| c.principal == principal) {
        return bad(format!("no credentials belong to {principal}"));
    }
    let mut revoked = state
        .revoked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if request.restore {
        revoked.remove(&principal);
    } else {
        revoked.insert(principal.clone());
    }
    info!(%principal, restore = request.restore, "credentials revoked or restored");
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /_emulator/credentials` with `{"access_key_id", "secret_access_key",
/// "principal"}` (and optionally `"session_token"`, `"regions"`): accepted
/// from now on, as IAM hands out a new user's access key.
async fn add_credential(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<crate::config::EmulatorCredential>(&body) {
        Ok(c) if !c.access_key_id.is_empty() && !c.secret_access_key.is_empty() => {
            info!(principal = %c.principal, access_key_id = %c.access_key_id, "credentials added");
            state.add_credential(c);
            StatusCode::NO_CONTENT.into_response()
        }
        Ok(_) => (
            StatusCode::BAD_REQUEST,
            "the access key id and the secret must not be empty\n",
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!(
                "bad credentials: {e}; expected {{\"access_key_id\": ..., \"secret_access_key\": \
                 ..., \"principal\": ARN}}\n"
            ),
        )
            .into_response(),
    }
}

async fn list_all(State(state): State<Arc<AppState>>) -> Response {
    let now = now_millis();
    let result = tokio::task::spawn_blocking(move || state.service.environments(now)).await;
    match result {
        Ok(Ok(envs)) => axum::Json(envs).into_response(),
        Ok(Err(e)) => e.into_response_with_id("admin"),
        Err(e) => AwsError::internal(e.to_string()).into_response_with_id("admin"),
    }
}

async fn control_api(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let result = handle(&state, &method, &uri, &headers, body).await;
    let response = match result {
        Ok(mut value) => {
            strip_nulls(&mut value);
            let mut r = axum::Json(value).into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                r.headers_mut().insert("x-amzn-requestid", v);
            }
            r
        }
        Err(e) => {
            debug!(code = e.code, message = %e.message, "request refused");
            e.into_response_with_id(&request_id)
        }
    };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    info!(%method, path = uri.path(), target, status = response.status().as_u16(), %request_id, "request");
    response
}

async fn handle(
    state: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Value, AwsError> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let ssm_operation = crate::ssm::operation(target).transpose()?;
    let operation = match ssm_operation {
        Some(op) => op,
        None => operation_name(uri.path(), headers)?,
    };
    if method != Method::POST {
        return Err(AwsError::unknown_operation(&format!(
            "{method} {}",
            uri.path()
        )));
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    let config = state.service.config();
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let caller = verify(
        &IncomingRequest {
            method: method.as_str(),
            path_and_query,
            headers,
            body: &body,
        },
        &state.credentials(),
        if ssm_operation.is_some() {
            crate::ssm::SERVICE_NAME
        } else {
            cloudshell::config::SERVICE_NAME
        },
        &config.regions,
        host_region(&host),
        SystemTime::now(),
    )?;
    if state.is_revoked(&caller.principal) {
        return Err(AwsError::unrecognized_client());
    }
    if let Some(fault) = state.faults.check() {
        return Err(fault);
    }
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AwsError::validation(format!("the request body is not valid JSON: {e}")))?
    };
    let now = now_millis();
    if ssm_operation.is_some() {
        let state = Arc::clone(state);
        return tokio::task::spawn_blocking(move || {
            crate::ssm::call(&state, operation, &caller, &input, now, &host)
        })
        .await
        .map_err(|e| AwsError::internal(format!("operation task failed: {e}")))?;
    }
    let service_state = Arc::clone(state);
    let ended = ended_sessions(operation, &input);
    let output = tokio::task::spawn_blocking(move || {
        service_state
            .service
            .call(operation, &caller, &input, now, &host)
    })
    .await
    .map_err(|e| AwsError::internal(format!("operation task failed: {e}")))??;
    match ended {
        Some(Ended::Session(id)) => state.live.end(&id, "session deleted"),
        Some(Ended::Environment(id)) => {
            state.live.end_environment(&id, "environment stopped");
            crate::processes::stop_environment_processes(&id);
        }
        None => {}
    }
    Ok(output)
}

enum Ended {
    Session(String),
    Environment(String),
}

/// Which live shells an operation ends once it succeeds.
fn ended_sessions(operation: &str, input: &Value) -> Option<Ended> {
    let member = |m: &str| input.get(m).and_then(Value::as_str).map(str::to_owned);
    match operation {
        "DeleteSession" => member("SessionId").map(Ended::Session),
        "StopEnvironment" | "DeleteEnvironment" => member("EnvironmentId").map(Ended::Environment),
        _ => None,
    }
}

/// The operation, from the rest-json path (`/createSession`) or, as some
/// clients send, an `X-Amz-Target: AWSCloudShell.CreateSession` header.
fn operation_name(path: &str, headers: &HeaderMap) -> Result<&'static str, AwsError> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next());
    let from_path = path.trim_start_matches('/');
    let name = if from_path.is_empty() {
        target.unwrap_or("")
    } else {
        from_path
    };
    OPERATIONS
        .iter()
        .find(|op| same_operation(op, name))
        .copied()
        .ok_or_else(|| AwsError::unknown_operation(name))
}

/// Paths spell the name in lowerCamelCase; accept either case of the first
/// letter, and nothing looser.
fn same_operation(op: &str, name: &str) -> bool {
    let (mut a, mut b) = (op.chars(), name.chars());
    match (a.next(), b.next()) {
        (Some(x), Some(y)) => x.eq_ignore_ascii_case(&y) && a.as_str() == b.as_str(),
        _ => false,
    }
}

/// AWS omits absent members rather than sending `null`.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `cloudshell.<region>.<suffix>` names its region; loopback addresses do not.
fn host_region(host: &str) -> Option<&str> {
    let mut labels = host.split('.');
    (labels.next() == Some("cloudshell"))
        .then(|| labels.next())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_from_path_or_target() {
        let h = HeaderMap::new();
        assert_eq!(
            operation_name("/createSession", &h).unwrap(),
            "CreateSession"
        );
        assert_eq!(
            operation_name("/CreateSession", &h).unwrap(),
            "CreateSession"
        );
        assert!(operation_name("/createsession", &h).is_err());
        assert!(operation_name("/nope", &h).is_err());
        assert!(operation_name("/é", &h).is_err());
        assert!(operation_name("/", &h).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("AWSCloudShell.DescribeEnvironments"),
        );
        assert_eq!(operation_name("/", &h).unwrap(), "DescribeEnvironments");
    }

    #[test]
    fn host_regions() {
        assert_eq!(
            host_region("cloudshell.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(host_region("127.0.0.1:4599"), None);
    }
}
