//! Files: list, upload, download (ranges, a held version), delete, and a
//! file's shard map.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudshell_store::StoreError;
use cloudshell_store::placement::Tolerance;
use cloudshell_store_api as wire;
use futures_util::TryStreamExt as _;

use super::error::{ApiError, json_body};
use crate::nodes::node::NodeHandle;
use crate::state::State;

type Shared = Arc<State>;

pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidName",
            format!("{name:?} is not a valid file name: {why}"),
        )
    };
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 1024 {
        return Err(bad("it is longer than 1024 bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("it contains control characters"));
    }
    if name.ends_with('/') {
        return Err(bad("it ends with /"));
    }
    // Names are paths inside the store, and tools turn them into local
    // paths: a segment that climbs or is empty would point elsewhere there.
    if name.starts_with('/') {
        return Err(bad("it starts with / (names are relative, like a/b.txt)"));
    }
    if name.split('/').any(|s| s.is_empty()) {
        return Err(bad("it has an empty segment (//)"));
    }
    if name.split('/').any(|s| s == "." || s == "..") {
        return Err(bad("it has a . or .. segment"));
    }
    // Tools on Windows read a backslash as a separator: `a\..\b` would
    // climb there, and `a\b` would land in a directory.
    if name.contains('\\') {
        return Err(bad("it contains a backslash (separate segments with /)"));
    }
    check_not_s3(name)
}

/// Names the S3 endpoint keeps for itself: written or deleted from here,
/// they would no longer match the S3 metadata.
pub(super) const S3_PREFIXES: [&str; 4] = [
    cloudshell_s3::meta::OBJECTS_DIR,
    cloudshell_s3::meta::UPLOADS_DIR,
    cloudshell_s3::write::STAGING,
    cloudshell_s3::versions::VERSIONS_DIR,
];

pub(super) fn check_not_s3(name: &str) -> Result<(), ApiError> {
    match S3_PREFIXES.iter().find(|p| name.starts_with(*p)) {
        Some(p) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "ReservedName",
            format!(
                "{name:?} is under {p}, which the S3 endpoint keeps for its objects: \
                 write and delete it through S3 (see docs/s3.md), or pick another name"
            ),
        )),
        None => Ok(()),
    }
}

pub(super) fn info(r: &cloudshell_store::FileRecord) -> wire::FileInfo {
    wire::FileInfo {
        name: r.name.clone(),
        id: r.file_id.hex(),
        size: r.size,
        created: r.created,
        // A file made of parts has no chunks of its own.
        chunks: if r.parts.is_empty() {
            r.size.div_ceil(u64::from(r.chunk_size.max(1)))
        } else {
            0
        },
        modified: modified_of(&r.attrs),
        k: r.k,
        m: r.m,
        encrypted: r.wrapped_key.is_some(),
        blake3: hex(&r.blake3),
    }
}

/// The header an upload names its modification time in (seconds since
/// the epoch).
pub(super) const MODIFIED_HEADER: &str = "x-cloudshell-modified";

/// Attributes as files stored through this API keep them: JSON, with the
/// key the S3 endpoint's object metadata uses for its time too (so
/// `modified` reads the same from both).
#[derive(serde::Serialize, serde::Deserialize)]
struct Modified {
    modified: i64,
}

fn modified_of(attrs: &[u8]) -> Option<i64> {
    serde_json::from_slice::<Modified>(attrs)
        .ok()
        .map(|m| m.modified)
}

fn modified_attrs(modified: i64) -> Vec<u8> {
    serde_json::to_vec(&Modified { modified }).unwrap_or_default()
}

fn modified_header(headers: &HeaderMap) -> Result<Option<i64>, ApiError> {
    let Some(v) = headers.get(MODIFIED_HEADER) else {
        return Ok(None);
    };
    v.to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidModified",
                format!(
                    "{MODIFIED_HEADER} is {v:?}: give seconds since the epoch, like 1767225600"
                ),
            )
        })
}

pub(super) fn hex(b: &[u8]) -> String {
    hex::encode(b)
}

/// `GET /api/files`'s query.
#[derive(serde::Deserialize)]
pub(super) struct ListQuery {
    health: Option<bool>,
}

pub(super) async fn list(
    AxumState(state): AxumState<Shared>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<wire::FileList>, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidQuery",
            format!("expected ?health=true or ?health=false: {e}"),
        )
    })?;
    let files = state
        .store
        .index()
        .files()
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
    if !query.health.unwrap_or(true) {
        let files = files
            .iter()
            .map(|f| wire::FileEntry {
                file: info(f),
                health: None,
            })
            .collect();
        return Ok(Json(wire::FileList { files }));
    }
    let serving = state.serving();
    let domains = state.store.domains();
    let mut out = Vec::with_capacity(files.len());
    for f in &files {
        let health = state
            .store
            .index()
            .file(&f.name)
            .map_err(|e| ApiError::from(StoreError::from(e)))?
            .map(|(_, m)| {
                state
                    .health
                    .file_health(&m, usize::from(f.k), &serving, &domains)
            });
        out.push(wire::FileEntry {
            file: info(f),
            health: health.map(|h| shown_health(&state, h)),
        });
    }
    Ok(Json(wire::FileList { files: out }))
}

/// A file's health, its "survives" capped at the node, region and
/// principal counts (an empty file survives losing them all).
pub(super) fn shown_health(state: &State, h: wire::FileHealth) -> wire::FileHealth {
    let shown = survivable(
        state,
        Tolerance {
            nodes: h.survives,
            regions: h.survives_regions,
            principals: h.survives_principals,
        },
    );
    wire::FileHealth {
        survives: shown.nodes,
        survives_regions: shown.regions,
        survives_principals: shown.principals,
        ..h
    }
}

pub(super) async fn upload(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<wire::Stored>), ApiError> {
    check_name(&name)?;
    let attrs = modified_header(&headers)?
        .map(modified_attrs)
        .unwrap_or_default();
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let report = state.store.put_with_attrs(&name, reader, attrs).await?;
    state.touch();
    let survives = survivable(&state, report.tolerance);
    Ok((
        StatusCode::CREATED,
        Json(wire::Stored {
            file: info(&report.record),
            survivable_losses: survives.nodes,
            survives_regions: survives.regions,
            survives_principals: survives.principals,
        }),
    ))
}

/// Losses a file survives, as shown: an empty file (no chunks) survives
/// losing every node, region and principal, not `usize::MAX` of them.
pub(super) fn survivable(state: &State, losses: Tolerance) -> Tolerance {
    let statuses: Vec<_> = state.nodes().iter().map(NodeHandle::status).collect();
    let distinct = |pick: fn(&wire::NodeStatus) -> &str| {
        statuses
            .iter()
            .map(pick)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    Tolerance {
        nodes: losses.nodes.min(statuses.len()),
        regions: losses.regions.min(distinct(|s| s.region.as_str())),
        principals: losses.principals.min(distinct(|s| s.principal.as_str())),
    }
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range (RFC 9110
/// section 14.1.2, by `http-range-header`); several ranges, or none that
/// this file can satisfy, give `None` (416).
pub(super) fn parse_range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let one = std::num::NonZeroUsize::MIN;
    let parsed = http_range_header::parse_range_header_with_max_ranges(value.trim(), one).ok()?;
    match parsed.validate(size).ok()?.as_slice() {
        [r] => Some(*r.start()..r.end().saturating_add(1)),
        _ => None,
    }
}

pub(super) async fn download(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Resolved once and held: the headers and every byte of the body are
    // this version's, whatever writes or deletes of the name come next.
    let version = state.store.version(&name)?;
    let size = version.size();
    let etag = version_etag(version.record());
    if let Some(wanted) = headers.get(header::IF_MATCH) {
        let matches = wanted
            .to_str()
            .is_ok_and(|w| w.split(',').map(str::trim).any(|w| w == "*" || w == etag));
        if !matches {
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                format!(
                    "{name:?} is now another version ({etag}) than If-Match names: it was \
                     replaced; read it again from the start"
                ),
            ));
        }
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => match parse_range(v, size) {
            Some(r) => Some(r),
            None => {
                let mut r = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "InvalidRange",
                    format!("{v:?} is not a single satisfiable range of this {size}-byte file"),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(r);
            }
        },
        None => None,
    };
    let wanted = range.clone().unwrap_or(0..size);
    // The store's decoded chunks become the body's frames as they come
    // (moved, not copied through a pipe); memory stays at a few chunks
    // whatever the file's size.
    let (chunks, body) = cloudshell_store::chunk_channel();
    let store_state = state.clone();
    let task_range = wanted.clone();
    tokio::spawn(async move {
        if let Err(e) = store_state
            .store
            .read_chunks(&version, task_range, chunks)
            .await
        {
            // The body breaks off short of its Content-Length: the client
            // sees a failed transfer, never wrong bytes.
            tracing::warn!(file = %name, "download failed: {}", crate::error::with_sources(&e));
        }
    });
    let body = Body::from_stream(body);
    let mut response = Response::new(body);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(wanted.end - wanted.start),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(r) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// A strong ETag naming one version: the BLAKE3 of its content, or for a
/// file made of parts (no hash of the whole is kept) its file id.
pub(super) fn version_etag(r: &cloudshell_store::FileRecord) -> String {
    if r.parts.is_empty() {
        format!("\"{}\"", hex(&r.blake3))
    } else {
        format!("\"{}\"", r.file_id.hex())
    }
}

/// `PATCH /api/files/{name}`: sets what a file's metadata says (its
/// modification time); its bytes stay as they are.
pub(super) async fn update(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    body: Result<Json<wire::FileUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<wire::FileInfo>, ApiError> {
    let body = json_body(body, r#"{"modified": SECONDS}"#)?;
    check_name(&name)?;
    let found = state
        .store
        .index()
        .set_attrs(&name, &modified_attrs(body.modified))
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
    if !found {
        return Err(StoreError::NotFound(name).into());
    }
    state.touch();
    let version = state.store.version(&name)?;
    Ok(Json(info(version.record())))
}

/// `POST /api/rename`.
pub(super) async fn rename(
    AxumState(state): AxumState<Shared>,
    body: Result<Json<wire::Rename>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<wire::FileInfo>, ApiError> {
    let body = json_body(body, r#"{"from": "NAME", "to": "NAME"}"#)?;
    check_name(&body.from)?;
    check_name(&body.to)?;
    state.store.rename(&body.from, &body.to, None).await?;
    state.touch();
    let version = state.store.version(&body.to)?;
    Ok(Json(info(version.record())))
}

pub(super) async fn remove(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    check_not_s3(&name)?;
    let file_id = state
        .store
        .index()
        .file(&name)
        .map_err(|e| ApiError::from(StoreError::from(e)))?
        .map(|(r, _)| r.file_id);
    state.store.delete(&name).await?;
    if let Some(id) = file_id {
        state.health.clear(id);
    }
    state.touch();
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn stat(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    axum::extract::Query(page): axum::extract::Query<wire::ChunkPage>,
) -> Result<Json<wire::Stat>, ApiError> {
    let (record, manifest) = state
        .store
        .index()
        .file(&name)
        .map_err(|e| ApiError::from(StoreError::from(e)))?
        .ok_or_else(|| ApiError::from(StoreError::NotFound(name.clone())))?;
    let serving = state.serving();
    let shard_state = |c: usize, i: usize, node: &str| {
        state
            .health
            .shard_state(record.file_id, c as u64, i as u8, serving.contains(node))
    };
    // Per region: shards held and how many are not ok, over every chunk.
    let mut regions: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (c, chunk) in manifest.chunks.iter().enumerate() {
        for (i, s) in chunk.shards.iter().enumerate() {
            let e = regions.entry(s.node.clone()).or_default();
            e.0 += 1;
            if shard_state(c, i, &s.node) != wire::ShardState::Ok {
                e.1 += 1;
            }
        }
    }
    let chunks: Vec<_> = manifest
        .chunks
        .iter()
        .enumerate()
        .skip(page.offset)
        .take(page.limit.min(10_000))
        .map(|(c, chunk)| wire::ChunkMap {
            index: c,
            payload_len: chunk.payload_len,
            shards: chunk
                .shards
                .iter()
                .enumerate()
                .map(|(i, s)| wire::ShardInfo {
                    node: s.node.clone(),
                    blake3: hex(&s.blake3),
                    state: shard_state(c, i, &s.node),
                })
                .collect(),
        })
        .collect();
    let health = state.health.file_health(
        &manifest,
        usize::from(record.k),
        &serving,
        &state.store.domains(),
    );
    let survives = survivable(&state, state.store.tolerance(&name)?);
    Ok(Json(wire::Stat {
        file: info(&record),
        survivable_losses: survives.nodes,
        survives_regions: survives.regions,
        survives_principals: survives.principals,
        health: shown_health(&state, health),
        total_chunks: manifest.chunks.len(),
        offset: page.offset,
        regions: regions
            .into_iter()
            .map(|(node, (shards, not_ok))| wire::NodeShards {
                node,
                shards,
                not_ok,
            })
            .collect(),
        chunks,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-5", 100), Some(95..100));
        assert_eq!(parse_range("bytes=95-200", 100), Some(95..100));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-1", 100), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=-0", 100), None);
    }

    #[test]
    fn names() {
        assert!(check_name("a/b.txt").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a\nb").is_err());
        assert!(check_name("dir/").is_err());
        assert!(check_name(&"x".repeat(1025)).is_err());
        assert!(check_name("s3/bucket/key").is_err());
        assert!(check_name(".s3-uploads/x/00001").is_err());
        assert!(check_name("s3x/fine").is_ok());
        assert!(check_name("a\\..\\b").is_err());
        assert!(check_name("dir\\file").is_err());
    }
}
