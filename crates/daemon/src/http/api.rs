//! The JSON API on the daemon's HTTP listener. Files stream in and out (a
//! file is never held whole in memory); errors are JSON with a code, a
//! message and the HTTP status that fits.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/health` | nodes connected, files stored |
//! | `GET /api/files` | every file |
//! | `PUT /api/files/{name}` | upload (the body, streamed) |
//! | `GET /api/files/{name}` | download, `Range: bytes=` honoured |
//! | `DELETE /api/files/{name}` | delete |
//! | `GET /api/stat/{name}` | a file with its shard map |
//! | `GET /api/nodes` | nodes with state, health and capacity |
//! | `POST /api/nodes` | add a region: `{"region": "sa-east-1"}` |
//! | `DELETE /api/shards/{node}/{file}/{chunk}/{index}` | delete one shard (to simulate damage) |
//! | `POST /api/nodes/{id}/offline`, `.../online` | take a node out or back |
//! | `PUT /api/nodes/{id}/quota` | cap the store on a node: `{"quota": "200M"}`, `null` lifts it |
//! | `POST /api/repair` | repair every file now: a job |
//! | `POST /api/redistribute` | even out the nodes: a job |
//! | `GET /api/jobs/{id}` | a job's progress and result |
//! | `GET /api/s3/keys`, `POST /api/s3/keys`, `DELETE /api/s3/keys/{id}` | the S3 endpoint's access keys |
//! | `GET /api/events` | server-sent events: `change` whenever anything shown changed |
//! | `GET /api/openapi.json` | this API as OpenAPI 3.0 |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /api/scrub`, `POST /api/scrub` | the scrubber's progress; start a pass now |

use std::sync::Arc;

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::extract::{Path, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use cloudshell_store::StoreError;
use cloudshell_store_api as wire;
use futures_util::TryStreamExt as _;
use wire::{Job, JobKind, JobResult, NodeState};

use crate::state::State;

type Shared = Arc<State>;

/// The API's routes.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(|| asset("index.html")))
        .route(
            "/ui/{file}",
            get(|Path(file): Path<String>| asset_owned(file)),
        )
        .route("/api/health", get(health))
        .route("/api/files", get(list))
        .route(
            "/api/files/{*name}",
            get(download).put(upload).delete(remove),
        )
        .route("/api/stat/{*name}", get(stat))
        .route("/api/nodes", get(nodes).post(add_region))
        .route("/api/nodes/{id}/offline", post(offline))
        .route("/api/nodes/{id}/online", post(online))
        .route("/api/nodes/{id}/quota", axum::routing::put(set_quota))
        .route(
            "/api/shards/{node}/{file}/{chunk}/{index}",
            delete(delete_shard),
        )
        .route("/api/repair", post(repair))
        .route("/api/redistribute", post(redistribute))
        .route("/api/jobs/{id}", get(job))
        .route("/api/openapi.json", get(openapi))
        .route("/api/events", get(events))
        .route("/api/s3/keys", get(list_keys).post(create_key))
        .route("/api/s3/keys/{id}", delete(delete_key))
        .route("/metrics", get(metrics))
        .route("/api/scrub", get(scrub_status).post(scrub_start))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(state.clone(), measure))
        .layer(axum::middleware::from_fn(one_length))
        .with_state(state)
}

/// Refuses a request that says its length two ways (Content-Length and
/// Transfer-Encoding): RFC 9112 section 6.3 calls it a smuggling attempt
/// or a broken client, and a proxy in front might read it the other way.
/// hyper drops the Content-Length before this runs, so the listener marks
/// such a request ([`crate::http::framing`]). On every listener (S3's too).
pub(crate) async fn one_length(request: Request, next: Next) -> Response {
    if request
        .headers()
        .contains_key(crate::http::framing::AMBIGUOUS)
    {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "AmbiguousLength",
            "the request has both Content-Length and Transfer-Encoding; send one",
        )
        .into_response();
    }
    next.run(request).await
}

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
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

/// An error and its sources, `: `-separated: the whole story for a user.
fn with_sources(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

/// What to do when a node is out of room.
pub(crate) const FULL_HINT: &str = "; make room by deleting files, add a region \
     (cloudshell store add-region REGION), or raise agent_quota";

/// Keeps other web pages out. Without a token the daemon trusts whatever
/// reaches its loopback port, so a page from elsewhere open in the user's
/// browser must not be able to act through it: a request that says it comes
/// from another origin (`Origin`, `Sec-Fetch-Site: cross-site`) is refused,
/// even a simple form POST, which CORS would let through; and, without a
/// token, so is a `Host` that is not a loopback name, which is what a
/// DNS-rebinding page sends while posing as same-origin. The UI's own files
/// may be opened from a link anywhere (a navigation is cross-site too);
/// only the API is held to the origin checks.
fn browser_guard(request: &Request, public: bool, has_token: bool) -> Result<(), ApiError> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let refuse = |why: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "CrossOriginRefused",
            format!(
                "{why}: the daemon answers only its own web UI and local programs (set a token \
                 with --token to reach it from elsewhere)"
            ),
        ))
    };
    if !has_token && !is_loopback_host(host) {
        return refuse(format!("Host {host:?} is not a loopback name"));
    }
    if public {
        return Ok(());
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return refuse("a cross-site request".into());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if origin_host != host {
            return refuse(format!("a request from the page at {origin}"));
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port. An absent
/// Host (HTTP/1.0 tools) is let through: browsers always send one.
fn is_loopback_host(host: &str) -> bool {
    if host.is_empty() {
        return true;
    }
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Requires `Authorization: Bearer TOKEN` when a token is configured. The
/// web UI's own files are public (it asks for the token itself).
async fn authorize(
    AxumState(state): AxumState<Shared>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path();
    let public = path == "/" || path.starts_with("/ui/");
    browser_guard(&request, public, state.config.token.is_some())?;
    if let Some(token) = state.config.token.as_ref().filter(|_| !public) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            use subtle_eq::eq;
            eq(g.as_bytes(), token.as_bytes())
        });
        if !ok {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this daemon needs its token: send `Authorization: Bearer TOKEN` (the CLI reads \
                 CLOUDSHELL_STORE_TOKEN)",
            ));
        }
    }
    Ok(next.run(request).await)
}

mod subtle_eq {
    /// Compares without stopping at the first difference, so the time taken
    /// says nothing about how much of a guess was right.
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
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
const S3_PREFIXES: [&str; 3] = [
    crate::s3::meta::OBJECTS_DIR,
    crate::s3::meta::UPLOADS_DIR,
    crate::s3::write::STAGING,
];

fn check_not_s3(name: &str) -> Result<(), ApiError> {
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

fn info(r: &cloudshell_store::FileRecord) -> wire::FileInfo {
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
        k: r.k,
        m: r.m,
        encrypted: r.wrapped_key.is_some(),
        blake3: hex(&r.blake3),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn health(AxumState(state): AxumState<Shared>) -> Result<Json<wire::Health>, ApiError> {
    let statuses: Vec<_> = state
        .nodes()
        .iter()
        .map(crate::nodes::node::NodeHandle::status)
        .collect();
    let connected = statuses
        .iter()
        .filter(|s| s.state == NodeState::Connected)
        .count();
    let files = state
        .store
        .index()
        .files()
        .map_err(|e| ApiError::from(StoreError::from(e)))?
        .len();
    Ok(Json(wire::Health {
        ready: connected == statuses.len(),
        nodes: statuses.len(),
        connected,
        files,
        index_backup: state.backup_status(|_| {}),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }))
}

async fn list(AxumState(state): AxumState<Shared>) -> Result<Json<wire::FileList>, ApiError> {
    let files = state
        .store
        .index()
        .files()
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
    let serving = state.serving();
    let mut out = Vec::with_capacity(files.len());
    for f in &files {
        let health = state
            .store
            .index()
            .file(&f.name)
            .map_err(|e| ApiError::from(StoreError::from(e)))?
            .map(|(_, m)| state.health.file_health(&m, usize::from(f.k), &serving));
        out.push(wire::FileEntry {
            file: info(f),
            health: health.map(|h| shown_health(&state, h)),
        });
    }
    Ok(Json(wire::FileList { files: out }))
}

/// A file's health, its "survives" capped at the node count (an empty
/// file survives losing them all).
fn shown_health(state: &State, h: wire::FileHealth) -> wire::FileHealth {
    wire::FileHealth {
        survives: survivable(state, h.survives),
        ..h
    }
}

async fn upload(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<wire::Stored>), ApiError> {
    check_name(&name)?;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let report = state.store.put(&name, reader).await?;
    state.touch();
    Ok((
        StatusCode::CREATED,
        Json(wire::Stored {
            file: info(&report.record),
            survivable_losses: survivable(&state, report.survivable_losses),
        }),
    ))
}

/// Node losses a file survives, as shown: an empty file (no chunks)
/// survives losing every node, not `usize::MAX` of them.
fn survivable(state: &State, losses: usize) -> usize {
    losses.min(state.nodes().len())
}

/// Parses a single `bytes=a-b`, `bytes=a-` or `bytes=-n` range.
fn parse_range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size)
        }
        (a, "") => (a.parse().ok()?, size),
        (a, b) => (
            a.parse().ok()?,
            b.parse::<u64>().ok()?.saturating_add(1).min(size),
        ),
    };
    (start < end && start < size).then_some(start..end)
}

async fn download(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // Resolved once and held: the headers and every byte of the body are
    // this version's, whatever writes or deletes of the name come next.
    let version = state.store.version(&name)?;
    let size = version.size();
    let etag = version_etag(version.record());
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
    // The store writes into one end of a pipe while the body streams the
    // other: memory stays at the pipe's size whatever the file's.
    let (reader, writer) = tokio::io::duplex(256 * 1024);
    let store_state = state.clone();
    let task_range = wanted.clone();
    tokio::spawn(async move {
        if let Err(e) = store_state.store.read(&version, task_range, writer).await {
            // The body ends short of its Content-Length: the client sees a
            // truncated transfer, never wrong bytes.
            tracing::warn!(file = %name, "download failed: {e}");
        }
    });
    // 256 KiB reads off the pipe (the default, 4 KiB, made a 1 GiB
    // download a quarter of a million body frames).
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
        reader,
        256 * 1024,
    ));
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
fn version_etag(r: &cloudshell_store::FileRecord) -> String {
    if r.parts.is_empty() {
        format!("\"{}\"", hex(&r.blake3))
    } else {
        format!("\"{}\"", r.file_id.hex())
    }
}

async fn remove(
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

async fn stat(
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
    let health = state
        .health
        .file_health(&manifest, usize::from(record.k), &serving);
    let survivable = survivable(&state, state.store.survivable_losses(&name)?);
    Ok(Json(wire::Stat {
        file: info(&record),
        survivable_losses: survivable,
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

async fn nodes(AxumState(state): AxumState<Shared>) -> Json<wire::NodeList> {
    let nodes = state
        .nodes()
        .iter()
        .map(crate::nodes::node::NodeHandle::status)
        .collect();
    Json(wire::NodeList { nodes })
}

fn node_answer(node: &crate::nodes::node::NodeHandle) -> Json<wire::NodeAnswer> {
    Json(wire::NodeAnswer {
        node: node.status(),
    })
}

fn find_node(state: &State, id: &str) -> Result<crate::nodes::node::NodeHandle, ApiError> {
    state.node(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchNode",
            format!("no node {id:?}; `GET /api/nodes` lists them"),
        )
    })
}

async fn offline(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
) -> Result<Json<wire::NodeAnswer>, ApiError> {
    let node = find_node(&state, &id)?;
    if let Some(n) = state.store_node(&id) {
        n.set_online(false);
    }
    node.update(|s| s.state = NodeState::Offline);
    Ok(node_answer(&node))
}

async fn online(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
) -> Result<Json<wire::NodeAnswer>, ApiError> {
    let node = find_node(&state, &id)?;
    let serving = node.remote().is_some();
    if let Some(n) = state.store_node(&id) {
        n.set_online(serving);
    }
    node.update(|s| {
        s.state = if serving {
            NodeState::Connected
        } else {
            NodeState::Degraded
        }
    });
    Ok(node_answer(&node))
}

async fn set_quota(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    body: Result<Json<wire::NewQuota>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<wire::NodeAnswer>, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidBody",
            format!("expected {{\"quota\": \"200M\"}} (or null to lift it): {e}"),
        )
    })?;
    let bytes = match body.quota.as_deref().map(str::trim) {
        None | Some("none") => None,
        Some(size) => Some(
            cloudshell_store::shard_store::parse_size(size).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidQuota",
                    format!(
                        "{size:?} is not a size: give bytes or a number with K, M or G, like 200M"
                    ),
                )
            })?,
        ),
    };
    let node = find_node(&state, &id)?;
    state
        .set_node_quota(&id, bytes)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()))?;
    Ok(node_answer(&node))
}

async fn repair(AxumState(state): AxumState<Shared>) -> Result<(StatusCode, Json<Job>), ApiError> {
    let files = state
        .store
        .index()
        .files()
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
    let job = state.jobs.start(JobKind::Repair, files.len() as u64);
    let id = job.id;
    let state2 = state.clone();
    tokio::spawn(async move {
        let state = state2;
        let mut done = wire::RepairResult {
            files: files.len(),
            ..Default::default()
        };
        for (n, f) in files.iter().enumerate() {
            let result = state.repair_file(&f.name).await;
            if let Ok(r) = &result {
                done.chunks_repaired += r.chunks_repaired;
                done.shards_rebuilt += r.shards_rebuilt;
                done.shards_spread += r.shards_spread;
            }
            if let Some(problem) = crate::nodes::health::repair_problem(&f.name, &result) {
                done.failed.push(wire::RepairFailure {
                    name: f.name.clone(),
                    error: problem,
                    shards_left: result.as_ref().map_or(0, |r| r.left.len()),
                });
            }
            state.jobs.progress(id, n as u64 + 1);
            state.bump();
        }
        state.bump();
        state.jobs.finish(id, Ok(JobResult::Repair(done)));
        state.bump();
    });
    Ok((StatusCode::ACCEPTED, Json(job)))
}

async fn redistribute(AxumState(state): AxumState<Shared>) -> (StatusCode, Json<Job>) {
    let job = state.jobs.start(JobKind::Redistribute, 1);
    let id = job.id;
    let state2 = state.clone();
    tokio::spawn(async move {
        let state = state2;
        let outcome = match state.store.redistribute().await {
            Ok(r) => {
                if r.shards_moved > 0 {
                    state.touch();
                }
                Ok(JobResult::Redistribute(wire::RedistributeResult {
                    shards_moved: r.shards_moved,
                }))
            }
            Err(e) => Err(e.to_string()),
        };
        state.jobs.finish(id, outcome);
        state.bump();
    });
    (StatusCode::ACCEPTED, Json(job))
}

async fn job(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<u64>,
) -> Result<Json<Job>, ApiError> {
    state
        .jobs
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NoSuchJob", format!("no job {id}")))
}

async fn add_region(
    AxumState(state): AxumState<Shared>,
    body: Result<Json<wire::NewRegion>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<wire::NodeAnswer>), ApiError> {
    let Json(body) = body.map_err(|e| {
        let (status, code) = match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "BodyTooLarge"),
            _ => (StatusCode::BAD_REQUEST, "InvalidBody"),
        };
        ApiError::new(
            status,
            code,
            format!("expected {{\"region\": \"NAME\"}}: {e}"),
        )
    })?;
    let region = cloudshell::Region::new(body.region.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidRegion", e.to_string()))?;
    match state.add_region(region).await {
        Ok(node) => Ok((StatusCode::CREATED, node_answer(&node))),
        Err(crate::error::DaemonError::Exists(r)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "RegionExists",
            format!("the region {r} has a node already"),
        )),
        Err(e @ crate::error::DaemonError::Client(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRegion",
            with_sources(&e),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            e.to_string(),
        )),
    }
}

async fn delete_shard(
    AxumState(state): AxumState<Shared>,
    Path((node, file, chunk, index)): Path<(String, String, u64, u8)>,
) -> Result<StatusCode, ApiError> {
    let (record, manifest) = state
        .store
        .index()
        .file(&file)
        .map_err(|e| ApiError::from(StoreError::from(e)))?
        .ok_or_else(|| ApiError::from(StoreError::NotFound(file.clone())))?;
    let not_found = |what: String| ApiError::new(StatusCode::NOT_FOUND, "NoSuchShard", what);
    let entry = manifest
        .chunks
        .get(usize::try_from(chunk).unwrap_or(usize::MAX))
        .ok_or_else(|| not_found(format!("{file:?} has {} chunks", manifest.chunks.len())))?;
    let loc = entry
        .shards
        .get(usize::from(index))
        .ok_or_else(|| not_found(format!("chunks have {} shards", entry.shards.len())))?;
    if loc.node != node {
        return Err(not_found(format!(
            "shard {index} of chunk {chunk} of {file:?} is on {}, not {node}",
            loc.node
        )));
    }
    let target = state
        .store_node(&node)
        .ok_or_else(|| not_found(format!("no node {node:?}")))?;
    let key = cloudshell_store::ShardKey {
        file_id: record.file_id,
        chunk,
        index,
    };
    target.shards.delete(key).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "NodeUnavailable",
            e.to_string(),
        )
    })?;
    state.health.mark(
        record.file_id,
        chunk,
        index,
        crate::nodes::health::Bad::Missing,
    );
    state.bump();
    Ok(StatusCode::NO_CONTENT)
}

async fn list_keys(AxumState(state): AxumState<Shared>) -> Json<wire::KeyList> {
    // Secrets are shown once, when made.
    let keys = state
        .s3
        .keys
        .list()
        .into_iter()
        .map(|k| wire::KeySummary {
            access_key_id: k.access_key_id,
            created: k.created,
        })
        .collect();
    Json(wire::KeyList {
        keys,
        endpoint: state.config.s3_listen.map(|a| format!("http://{a}")),
    })
}

async fn create_key(
    AxumState(state): AxumState<Shared>,
) -> Result<(StatusCode, Json<wire::NewKey>), ApiError> {
    let key =
        state.s3.keys.create().map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string())
        })?;
    let key = wire::AccessKey {
        access_key_id: key.access_key_id,
        secret_access_key: key.secret_access_key,
        created: key.created,
    };
    Ok((StatusCode::CREATED, Json(wire::NewKey { key })))
}

async fn delete_key(
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

/// Server-sent events: a `change` event (data: a counter) whenever files,
/// nodes, jobs or the scrubber change, bursts coalesced, so views refresh
/// when something happened instead of polling.
async fn events(
    AxumState(state): AxumState<Shared>,
) -> axum::response::sse::Sse<
    impl futures_util::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    let rx = state.subscribe();
    let first = futures_util::stream::once(async { Ok(Event::default().event("hello").data("0")) });
    let changes = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        let v = *rx.borrow_and_update();
        Some((Ok(Event::default().event("change").data(v.to_string())), rx))
    });
    Sse::new(futures_util::StreamExt::chain(first, changes)).keep_alive(KeepAlive::default())
}

/// The web UI, built into the binary: plain HTML, CSS and JavaScript
/// modules, no build step.
const UI: [(&str, &str, &str); 4] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "map.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/map.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/style.css"),
    ),
];

async fn asset(name: &str) -> Response {
    match UI.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "NoSuchAsset", format!("no {name}"))
            .into_response(),
    }
}

async fn asset_owned(name: String) -> Response {
    asset(&name).await
}

/// The OpenAPI document, generated from the API crate's types.
async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        wire::openapi::document(),
    )
}

async fn metrics(AxumState(state): AxumState<Shared>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::http::metrics::render(&state),
    )
}

/// Records every request's latency under its route's pattern (so file
/// names do not each make a series).
async fn measure(AxumState(state): AxumState<Shared>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.latencies.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

async fn scrub_status(AxumState(state): AxumState<Shared>) -> Json<wire::ScrubStatus> {
    Json(crate::upkeep::scrub::status(&state))
}

async fn scrub_start(AxumState(state): AxumState<Shared>) -> (StatusCode, Json<wire::ScrubStatus>) {
    state.scrub_now.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(crate::upkeep::scrub::status(&state)),
    )
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

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:80",
            "",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1",
            "localhost.evil.example",
            "[2001:db8::1]",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
