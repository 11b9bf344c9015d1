//! The presigned transfers themselves, backed by each environment's home
//! directory: the POST form's upload and the GET's download, checked by
//! [`crate::presign`].
//!
//! Uploads land under a temporary name in the home directory and are
//! renamed into place once complete, so a failed or oversized upload leaves
//! the previous file as it was. The home quota counts regular files' sizes.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt as _;

use crate::presign::S3Error;
use crate::state::{AppState, now_millis};

/// S3 refuses POST forms whose fields before the file exceed 20 KB.
const MAX_PRE_DATA: usize = 20 * 1024;

/// A path relative to a home directory that cannot leave it.
fn relative_path(path: &str) -> Result<PathBuf, S3Error> {
    let bad = || {
        S3Error::bad(
            "InvalidArgument",
            format!("{path:?} is not a path inside the home directory"),
        )
    };
    if path.is_empty() || path.contains('\0') {
        return Err(bad());
    }
    let p = Path::new(path);
    if !p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(bad());
    }
    Ok(p.to_path_buf())
}

/// Sum of the sizes of regular files under `dir`, not following links.
fn tree_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                total += e.metadata()?.len();
            }
        }
    }
    Ok(total)
}

/// Resolves `rel` in `home`, refusing anything that leads out of it (a
/// symbolic link included). The parent directory must exist.
fn resolve_in_home(home: &Path, rel: &Path) -> Result<PathBuf, S3Error> {
    let home = home
        .canonicalize()
        .map_err(|e| S3Error::internal(format!("home directory: {e}")))?;
    let target = home.join(rel);
    let parent = target.parent().unwrap_or(&home);
    let parent = parent.canonicalize().map_err(|_| {
        S3Error::bad(
            "InvalidArgument",
            format!(
                "the directory of {} does not exist in the home directory",
                rel.display()
            ),
        )
    })?;
    if !parent.starts_with(&home) {
        return Err(S3Error::denied("the path leads out of the home directory"));
    }
    let name = target
        .file_name()
        .ok_or_else(|| S3Error::bad("InvalidArgument", "the key names no file"))?;
    Ok(parent.join(name))
}

/// `POST /_files/upload`: a presigned upload form.
pub async fn upload(State(state): State<Arc<AppState>>, mut form: Multipart) -> Response {
    match receive(&state, &mut form).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn receive(state: &AppState, form: &mut Multipart) -> Result<(), S3Error> {
    let malformed = |e: axum::extract::multipart::MultipartError| {
        S3Error::bad(
            "MalformedPOSTRequest",
            format!("The body of your POST request is not well-formed multipart/form-data: {e}"),
        )
    };
    let mut fields = Vec::new();
    let mut pre_data = 0;
    let mut file = loop {
        let Some(field) = form.next_field().await.map_err(malformed)? else {
            return Err(S3Error::bad(
                "InvalidArgument",
                "POST requires exactly one file upload per request.",
            ));
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            break field;
        }
        let mut field = field;
        let mut value = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(malformed)? {
            pre_data += chunk.len();
            if pre_data > MAX_PRE_DATA {
                return Err(S3Error::bad(
                    "MaxPostPreDataLengthExceeded",
                    "Your POST request fields preceding the upload file were too large.",
                ));
            }
            value.extend_from_slice(&chunk);
        }
        let value = String::from_utf8(value).map_err(|_| {
            S3Error::bad(
                "InvalidArgument",
                format!("the form field {name} is not UTF-8"),
            )
        })?;
        fields.push((name, value));
    };
    let now = OffsetDateTime::now_utc();
    let (key, min, max) = state.service.files().check_post(&fields, now)?;
    let file_name = file.file_name().unwrap_or_default().to_owned();
    let key = key.replace("${filename}", &file_name);
    let (env_id, rel) = key
        .split_once('/')
        .ok_or_else(|| S3Error::bad("InvalidArgument", "the key names no environment"))?;
    let rel = relative_path(rel)?;
    let home = running_home(state, env_id)?;
    let target = resolve_in_home(&home, &rel)?;
    if target.is_dir() {
        return Err(S3Error::bad(
            "InvalidArgument",
            format!("{} is a directory in the home directory", rel.display()),
        ));
    }
    let quota = state.service.config().home_quota;
    let home_for_walk = home.clone();
    let used = tokio::task::spawn_blocking(move || tree_bytes(&home_for_walk))
        .await
        .map_err(|e| S3Error::internal(e.to_string()))?
        .map_err(|e| S3Error::internal(format!("cannot measure the home directory: {e}")))?;
    let room = quota.saturating_sub(used);

    let temp = target.with_file_name(format!(
        ".{}.upload-{:016x}",
        target
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        rand::random::<u64>()
    ));
    let result = async {
        let mut out = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| S3Error::internal(format!("cannot write in the home directory: {e}")))?;
        let mut received: u64 = 0;
        while let Some(chunk) = file.chunk().await.map_err(malformed)? {
            received += chunk.len() as u64;
            let refusal = if received > max {
                Some(format!(
                    "Your proposed upload exceeds the maximum allowed size of {max} bytes"
                ))
            } else if received > room {
                Some(format!(
                    "the upload does not fit in the environment's home directory: {used} of {quota} bytes are in use"
                ))
            } else {
                None
            };
            if let Some(message) = refusal {
                // Read on (to a bound) before answering: a client still
                // sending would otherwise meet a closed connection and
                // never see why (seen as "Broken pipe" now and then).
                let mut drained = 0u64;
                while let Ok(Some(rest)) = file.chunk().await {
                    drained += rest.len() as u64;
                    if drained > DRAIN_LIMIT {
                        break;
                    }
                }
                return Err(S3Error::bad("EntityTooLarge", message));
            }
            out.write_all(&chunk)
                .await
                .map_err(|e| S3Error::internal(format!("cannot write in the home directory: {e}")))?;
        }
        if received < min {
            return Err(S3Error::bad(
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
            ));
        }
        out.sync_all()
            .await
            .map_err(|e| S3Error::internal(e.to_string()))?;
        Ok(())
    }
    .await;
    match result {
        Ok(()) => tokio::fs::rename(&temp, &target)
            .await
            .map_err(|e| S3Error::internal(format!("cannot rename into place: {e}"))),
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp).await;
            Err(e)
        }
    }
}

/// Bytes of a refused upload read and thrown away before answering.
const DRAIN_LIMIT: u64 = 1 << 30;

fn running_home(state: &AppState, env_id: &str) -> Result<PathBuf, S3Error> {
    let now = now_millis();
    state.service.running_home(env_id, now).map_err(|e| {
        S3Error::new(
            StatusCode::CONFLICT,
            "InvalidObjectState",
            e.message.clone(),
        )
    })
}

/// `GET /_files/download/...`: a presigned download.
pub async fn download(
    State(state): State<Arc<AppState>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match send(&state, &uri, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn send(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<Response, S3Error> {
    let (env_id, path) =
        state
            .service
            .files()
            .check_get(uri, headers, OffsetDateTime::now_utc())?;
    let rel = relative_path(&path)?;
    let home = running_home(state, &env_id)?;
    let no_such_key = || {
        S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    };
    let target = resolve_in_home(&home, &rel).map_err(|_| no_such_key())?;
    let file = tokio::fs::File::open(&target)
        .await
        .map_err(|_| no_such_key())?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| S3Error::internal(e.to_string()))?;
    if !meta.is_file() {
        return Err(no_such_key());
    }
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        file,
        256 * 1024,
    ));
    Ok((
        StatusCode::OK,
        [
            ("content-type", "application/octet-stream".to_owned()),
            ("content-length", meta.len().to_string()),
            (
                "x-amz-server-side-encryption-customer-algorithm",
                "AES256".to_owned(),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_home() {
        assert!(relative_path("a/b.txt").is_ok());
        assert!(relative_path("../x").is_err());
        assert!(relative_path("/etc/passwd").is_err());
        assert!(relative_path("a/../../x").is_err());
        assert!(relative_path("").is_err());
        let home = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/tmp", home.path().join("out")).unwrap();
        assert!(resolve_in_home(home.path(), Path::new("out/x")).is_err());
        assert!(resolve_in_home(home.path(), Path::new("x")).is_ok());
        assert!(resolve_in_home(home.path(), Path::new("nodir/x")).is_err());
    }
}
