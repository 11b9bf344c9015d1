//! The JSON API on the daemon's HTTP listener. Files stream in and out (a
//! file is never held whole in memory); errors are JSON with a code, a
//! message and the HTTP status that fits.
//!
//! | method and path | what |
//! |---|---|
//! | `GET /api/health` | nodes connected, files stored |
//! | `GET /api/files` | every file |
//! | `PUT /api/files/{name}` | upload (the body, streamed); `X-Cloudshell-Modified: SECONDS` keeps a modification time |
//! | `PATCH /api/files/{name}` | set its modification time: `{"modified": SECONDS}` |
//! | `GET /api/files/{name}` | download, `Range: bytes=` honoured |
//! | `DELETE /api/files/{name}` | delete |
//! | `POST /api/rename` | rename a file: `{"from": "a.txt", "to": "b/a.txt"}` (replaces `to`) |
//! | `GET /api/stat/{name}` | a file with its shard map |
//! | `GET /api/nodes` | nodes with state, health and capacity |
//! | `POST /api/nodes` | add a region: `{"region": "sa-east-1"}` |
//! | `DELETE /api/shards/{node}/{file}/{chunk}/{index}` | delete one shard (to simulate damage) |
//! | `POST /api/nodes/{id}/offline`, `.../online` | take a node out or back |
//! | `PUT /api/nodes/{id}/quota` | cap the store on a node: `{"quota": "200M"}`, `null` lifts it |
//! | `POST /api/nodes/{id}/remove` | drain a node and remove it: a job; `{"delete_environment": true}` deletes its environment |
//! | `POST /api/key` | change the passphrase (`{"old_passphrase", "new_passphrase"}`) or the key file (`{"new_key_file": true}`) |
//! | `POST /api/principals` | add a principal with a node in each region: `{"name": "work", "regions": [...]}` |
//! | `POST /api/principals/{name}/remove` | drain every node of a principal and remove them: a job |
//! | `POST /api/repair` | repair every file now: a job |
//! | `POST /api/redistribute` | even out the nodes: a job |
//! | `GET /api/jobs/{id}` | a job's progress and result |
//! | `GET /api/s3/keys`, `POST /api/s3/keys`, `DELETE /api/s3/keys/{id}` | the S3 endpoint's access keys |
//! | `GET /api/events` | server-sent events: `change` whenever anything shown changed |
//! | `GET /api/openapi.json` | this API as OpenAPI 3.1, generated from `cloudshell-store-api` |
//! | `GET /metrics` | Prometheus metrics |
//! | `GET /api/scrub`, `POST /api/scrub` | the scrubber's progress; start a pass now |

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State as AxumState};
use axum::routing::{MethodRouter, delete, get, post, put};
use cloudshell_store::StoreError;
use cloudshell_store_api as wire;
use wire::NodeState;

use super::error::ApiError;
use super::{files, guard, jobs, keys, nodes, ui};
use crate::state::State;

type Shared = Arc<State>;

/// Every route: its path (axum's syntax) and its handlers. The OpenAPI
/// document in `cloudshell-store-api` names the same paths and methods (a
/// test checks both ways).
fn routes() -> Vec<(&'static str, MethodRouter<Shared>)> {
    vec![
        ("/", get(|| ui::asset("index.html"))),
        (
            "/ui/{file}",
            get(|Path(file): Path<String>| ui::asset_owned(file)),
        ),
        ("/api/health", get(health)),
        ("/api/files", get(files::list)),
        (
            "/api/files/{*name}",
            get(files::download)
                .put(files::upload)
                .patch(files::update)
                .delete(files::remove),
        ),
        ("/api/rename", post(files::rename)),
        ("/api/stat/{*name}", get(files::stat)),
        ("/api/nodes", get(nodes::nodes).post(nodes::add_region)),
        ("/api/nodes/{id}/offline", post(nodes::offline)),
        ("/api/nodes/{id}/online", post(nodes::online)),
        ("/api/nodes/{id}/quota", put(nodes::set_quota)),
        ("/api/nodes/{id}/remove", post(nodes::remove)),
        ("/api/principals", post(nodes::add_principal)),
        ("/api/key", post(keys::change_key)),
        (
            "/api/principals/{name}/remove",
            post(nodes::remove_principal),
        ),
        (
            "/api/shards/{node}/{file}/{chunk}/{index}",
            delete(nodes::delete_shard),
        ),
        ("/api/repair", post(jobs::repair)),
        ("/api/redistribute", post(jobs::redistribute)),
        ("/api/jobs/{id}", get(jobs::job)),
        (
            "/api/scrub",
            get(jobs::scrub_status).post(jobs::scrub_start),
        ),
        ("/api/openapi.json", get(ui::openapi)),
        ("/api/events", get(ui::events)),
        ("/api/s3/keys", get(keys::list_keys).post(keys::create_key)),
        ("/api/s3/keys/{id}", delete(keys::delete_key)),
        ("/metrics", get(ui::metrics)),
    ]
}

/// The paths the router serves, as OpenAPI writes them (`{*name}` is
/// `{name}`).
pub fn paths() -> Vec<String> {
    routes()
        .into_iter()
        .map(|(p, _)| p.replace("{*", "{"))
        .collect()
}

/// The API's routes, behind the guards every request passes.
pub fn router(state: Shared) -> Router {
    let mut router = Router::new();
    for (path, handlers) in routes() {
        router = router.route(path, handlers);
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::measure,
        ))
        .layer(axum::middleware::from_fn(guard::one_length))
        .layer(axum::middleware::from_fn(guard::close_after_refused_body))
        .with_state(state)
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
    let settings = cloudshell_store::StoreSettings::default();
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
        capacity: crate::state::capacity(&statuses, settings.k, settings.m),
    }))
}
