//! The API's error answer, `{"error": {"code": ..., "message": ...}}` with
//! the HTTP status that fits, and how store errors map onto it.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cloudshell_store::StoreError;
use cloudshell_store_api as wire;

pub(crate) use crate::error::with_sources;

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// The body of a request, or the error that says what was expected: 400
/// `InvalidBody` (413 `BodyTooLarge` for one over the limit).
pub(crate) fn json_body<T>(
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    expected: &str,
) -> Result<T, ApiError> {
    body.map(|Json(b)| b).map_err(|e| {
        let (status, code) = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "BodyTooLarge"),
            _ => (StatusCode::BAD_REQUEST, "InvalidBody"),
        };
        ApiError::new(status, code, format!("expected {expected}: {e}"))
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = wire::ErrorBody {
            error: wire::ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::NotFound(_) => (StatusCode::NOT_FOUND, "NoSuchFile"),
            StoreError::Unrecoverable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "Unrecoverable"),
            StoreError::ShardWrite { source, .. } if source.is_full() => {
                (StatusCode::INSUFFICIENT_STORAGE, "StoreFull")
            }
            StoreError::StoreFull { .. } => (StatusCode::INSUFFICIENT_STORAGE, "StoreFull"),
            StoreError::NoNodes | StoreError::ShardWrite { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "NodesUnavailable")
            }
            StoreError::Io(_) => (StatusCode::BAD_REQUEST, "BodyFailed"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal"),
        };
        let mut message = with_sources(&e);
        if code == "StoreFull" {
            message.push_str(FULL_HINT);
        }
        Self::new(status, code, message)
    }
}

/// What to do when a node is out of room.
pub(crate) const FULL_HINT: &str = "; make room by deleting files, add a region \
     (cloudshell store add-region REGION), or raise agent_quota";
