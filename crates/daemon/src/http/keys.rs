//! The S3 endpoint's access keys: listed without secrets, made (the secret
//! shown once), deleted.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use cloudshell_store_api as wire;

use super::error::ApiError;
use crate::state::State;

type Shared = Arc<State>;

pub(super) async fn list_keys(AxumState(state): AxumState<Shared>) -> Json<wire::KeyList> {
    // Secrets are shown once, when made.
    let keys = state
        .s3
        .keys
        .list()
        .into_iter()
        .map(|k| wire::KeySummary {
            access_key_id: k.access_key_id,
            user: k.user,
            created: k.created,
        })
        .collect();
    Json(wire::KeyList {
        keys,
        endpoint: state.config.s3_listen.map(|a| format!("http://{a}")),
    })
}

pub(super) async fn create_key(
    AxumState(state): AxumState<Shared>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<wire::NewKey>), ApiError> {
    // No body (older clients) is the default user.
    let request: wire::KeyRequest = if body.iter().all(u8::is_ascii_whitespace) {
        wire::KeyRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("the body must be {{\"user\": NAME}} or empty: {e}"),
            )
        })?
    };
    let user = request.user.as_deref().unwrap_or(wire::DEFAULT_USER);
    cloudshell_s3::access::check_user_name(user)
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "InvalidUser", why))?;
    let key =
        state.s3.keys.create(user).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string())
        })?;
    let key = wire::AccessKey {
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        user: key.user,
        created: key.created,
    };
    Ok((StatusCode::CREATED, Json(wire::NewKey { key })))
}

pub(super) async fn delete_key(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.s3.keys.delete(&id) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            format!("no access key {id}"),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            e.to_string(),
        )),
    }
}
