//! Keys: the S3 endpoint's access keys (listed without secrets, made with
//! the secret shown once, deleted), and the store's own key changed (a new
//! passphrase, or a new key file; the work is in `state/keys.rs`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use cloudshell_store_api as wire;

use super::error::{ApiError, json_body};
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

pub(super) async fn change_key(
    AxumState(state): AxumState<Shared>,
    body: Result<Json<wire::KeyChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<wire::KeyChanged>, ApiError> {
    let body = json_body(
        body,
        r#"{"old_passphrase": ..., "new_passphrase": ...} or {"new_key_file": true}"#,
    )?;
    let outcome = match (
        &body.old_passphrase,
        &body.new_passphrase,
        body.new_key_file,
    ) {
        (Some(old), Some(new), false) => state.change_passphrase(old, new).await,
        (None, None, true) => state.rotate_key_file().await,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidKeyChange",
                "give old_passphrase and new_passphrase (a passphrase store), or new_key_file: \
                 true (a key file store)",
            ));
        }
    };
    use crate::state::keys::KeyChangeRefused;
    match outcome {
        Ok(changed) => Ok(Json(wire::KeyChanged {
            rewrapped: changed.rewrapped,
            key_file: changed.key_file.map(|p| p.display().to_string()),
        })),
        Err(e @ KeyChangeRefused::WrongOld) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "WrongPassphrase",
            e.to_string(),
        )),
        Err(e @ KeyChangeRefused::Invalid(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidKeyChange",
            e.to_string(),
        )),
        Err(e @ KeyChangeRefused::Failed(_)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "KeyChangeFailed",
            crate::error::with_sources(&e),
        )),
    }
}
