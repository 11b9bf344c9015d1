//! The OpenAPI document, generated from the types in [`crate::types`] and
//! the operations declared here (Garage's way: the declarations are
//! bodiless functions, so the document lives with the types, not with the
//! server's handlers). The daemon serves it at `GET /api/openapi.json`;
//! its tests check it against the routes the server really has.
// The declarations are never called: they only carry the attributes.
#![allow(dead_code)]

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::types::{
    AccessKey, BackupStatus, Capacity, CapacitySummary, ChunkMap, ChunkPage, ErrorBody,
    ErrorDetail, FileEntry, FileHealth, FileInfo, FileList, FileUpdate, Health, Job, JobKind,
    JobResult, KeyChange, KeyChanged, KeyList, KeyRequest, KeySummary, NewKey, NewPrincipal,
    NewQuota, NewRegion, NodeAnswer, NodeList, NodeShards, NodeState, NodeStatus,
    PrincipalCapacity, RedistributeResult, Redundancy, RemoveNode, RemoveResult, Rename,
    RepairFailure, RepairResult, ScrubStatus, ShardInfo, ShardState, Stat, Stored,
};

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "cloudshell store daemon",
        description = "Files stored erasure-coded and encrypted across CloudShell environments. \
            Errors are `{\"error\": {\"code\", \"message\"}}` with a fitting status. With a token \
            configured (`--token`), every route but the web UI needs `Authorization: Bearer TOKEN`; \
            requests from other web origins are refused.",
    ),
    paths(
        ui_index, ui_asset, health, list_files, download, upload, update_file, rename_file, delete_file, stat, list_nodes,
        add_region, remove_node, change_key, add_principal, remove_principal, node_offline, node_online, set_quota, delete_shard, repair, redistribute, job,
        scrub_status, scrub_start, list_keys, create_key, delete_key, events, openapi, metrics,
    ),
    components(schemas(
        AccessKey, BackupStatus, ChunkMap, ChunkPage, ErrorBody, ErrorDetail, FileEntry,
        Capacity, CapacitySummary, FileHealth, FileInfo, FileList, FileUpdate, Health, Job, JobKind, JobResult, KeyChange, KeyChanged, KeyList, KeyRequest, KeySummary,
        NewKey, NewPrincipal, NewQuota, NewRegion, NodeAnswer, NodeList, NodeShards, NodeState, NodeStatus, PrincipalCapacity,
        RedistributeResult, Redundancy, RemoveNode, RemoveResult, Rename, RepairFailure, RepairResult, ScrubStatus, ShardInfo,
        ShardState, Stat, Stored,
    )),
    modifiers(&BearerToken),
    security(("token" = [])),
)]
struct ApiDoc;

/// Declares the optional bearer token.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON, as `GET /api/openapi.json` serves it.
pub fn document() -> String {
    // Serializing a tree of plain maps and strings cannot fail.
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// Every operation in the document: (method in capitals, path), paths as
/// OpenAPI writes them (`/api/files/{name}`).
pub fn operations() -> Vec<(String, String)> {
    let doc: serde_json::Value = serde_json::from_str(&document()).unwrap_or_default();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            if ["get", "put", "post", "delete", "head", "patch"].contains(&method.as_str()) {
                out.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

/// The web UI.
#[utoipa::path(get, path = "/", tag = "ui", security(()),
    responses((status = 200, description = "The web UI's page", content_type = "text/html")))]
fn ui_index() {}

/// The web UI's scripts and style.
#[utoipa::path(get, path = "/ui/{file}", tag = "ui", security(()),
    params(("file" = String, Path, description = "app.js, map.js or style.css")),
    responses(
        (status = 200, description = "The file"),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
fn ui_asset() {}

/// Nodes connected, files stored, the index backup.
#[utoipa::path(get, path = "/api/health", tag = "store",
    responses((status = 200, body = Health)))]
fn health() {}

/// Every file, with its health (`?health=false`: without, which is much
/// cheaper with many files).
#[utoipa::path(get, path = "/api/files", tag = "files",
    params(("health" = Option<bool>, Query, description = "Include each file's health [default: true]")),
    responses((status = 200, body = FileList)))]
fn list_files() {}

/// Downloads a file (streamed). `Range: bytes=` is honoured (one range);
/// the ETag names the version, whatever writes come during the download.
#[utoipa::path(get, path = "/api/files/{name}", tag = "files",
    params(
        ("name" = String, Path, description = "The file's name; may contain `/`"),
        ("Range" = Option<String>, Header, description = "One range, `bytes=a-b`, `bytes=a-` or `bytes=-n`"),
        ("If-Match" = Option<String>, Header, description = "Only this version (an ETag an earlier answer gave, or `*`)"),
    ),
    responses(
        (status = 200, description = "The file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 412, description = "The name holds another version than If-Match names", body = ErrorBody),
        (status = 416, description = "Not a single satisfiable range; Content-Range says the size", body = ErrorBody),
        (status = 503, description = "Too few shards reachable", body = ErrorBody),
    ))]
fn download() {}

/// Stores the body under the name, replacing any file there. The body is
/// streamed; the new version replaces the old in one step once stored.
#[utoipa::path(put, path = "/api/files/{name}", tag = "files",
    params(
        ("name" = String, Path, description = "The file's name; may contain `/`"),
        ("X-Cloudshell-Modified" = Option<i64>, Header, description = "When the file was last modified, seconds since the epoch: kept, and shown as `modified`"),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = Stored),
        (status = 400, description = "A bad name, or a reserved one", body = ErrorBody),
        (status = 503, description = "Too few nodes serving", body = ErrorBody),
        (status = 507, description = "The nodes are out of room", body = ErrorBody),
    ))]
fn upload() {}

/// Sets a file's modification time; its bytes stay as they are.
#[utoipa::path(patch, path = "/api/files/{name}", tag = "files",
    params(("name" = String, Path, description = "The file's name; may contain `/`")),
    request_body(content = FileUpdate),
    responses(
        (status = 200, description = "The file", body = FileInfo),
        (status = 400, description = "A bad name or body", body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
fn update_file() {}

/// Gives a file another name, replacing a file of that name; moves no
/// data.
#[utoipa::path(post, path = "/api/rename", tag = "files",
    request_body(content = Rename),
    responses(
        (status = 200, description = "The file under its new name", body = FileInfo),
        (status = 400, description = "A bad name, or a reserved one", body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
fn rename_file() {}

/// Deletes a file and its shards.
#[utoipa::path(delete, path = "/api/files/{name}", tag = "files",
    params(("name" = String, Path, description = "The file's name; may contain `/`")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
fn delete_file() {}

/// A file with its shard map, one page of chunks at a time.
#[utoipa::path(get, path = "/api/stat/{name}", tag = "files",
    params(("name" = String, Path, description = "The file's name; may contain `/`"), ChunkPage),
    responses(
        (status = 200, body = Stat),
        (status = 404, description = "No such file", body = ErrorBody),
    ))]
fn stat() {}

/// The nodes: state, health and capacity.
#[utoipa::path(get, path = "/api/nodes", tag = "nodes",
    responses((status = 200, body = NodeList)))]
fn list_nodes() {}

/// Adds a region: the daemon creates an environment there and installs
/// an agent; the node comes up in the background.
#[utoipa::path(post, path = "/api/nodes", tag = "nodes",
    request_body = NewRegion,
    responses(
        (status = 201, body = NodeAnswer),
        (status = 400, description = "Not a region name", body = ErrorBody),
        (status = 409, description = "The region has a node already", body = ErrorBody),
    ))]
fn add_region() {}

/// Removes a node: it takes no new shards, every shard it holds moves to
/// the other nodes (read, checked, written, recorded), then it stops and
/// its environment is suspended (or deleted). A job.
#[utoipa::path(post, path = "/api/nodes/{id}/remove", tag = "nodes",
    params(("id" = String, Path, description = "The node: its region, or PRINCIPAL:REGION")),
    request_body(content = RemoveNode, description = "Optional"),
    responses(
        (status = 202, body = Job),
        (status = 404, description = "No such node", body = ErrorBody),
        (status = 409, description = "The other nodes could not take its shards (too few, or too little room), or it is being removed already", body = ErrorBody),
    ))]
fn remove_node() {}

/// Changes the store's key: a new passphrase (the old one given), or a new
/// random key file in place of the old. Every data key is rewrapped in one
/// index transaction; no shard is rewritten; the index backups sealed with
/// the old key are replaced.
#[utoipa::path(post, path = "/api/key", tag = "keys",
    request_body = KeyChange,
    responses(
        (status = 200, body = KeyChanged),
        (status = 400, description = "The change does not fit the store (a passphrase for a key file store, an empty passphrase)", body = ErrorBody),
        (status = 403, description = "The old passphrase is wrong", body = ErrorBody),
    ))]
fn change_key() {}

/// Adds a principal (an AWS profile) with a node in each region.
#[utoipa::path(post, path = "/api/principals", tag = "nodes",
    request_body = NewPrincipal,
    responses(
        (status = 201, body = NodeList),
        (status = 400, description = "Not a usable name or region, or no credentials for it", body = ErrorBody),
        (status = 409, description = "The principal has nodes already", body = ErrorBody),
    ))]
fn add_principal() {}

/// Removes a principal: every node of it drains and goes, as a job.
#[utoipa::path(post, path = "/api/principals/{name}/remove", tag = "nodes",
    params(("name" = String, Path, description = "The principal")),
    request_body(content = RemoveNode, description = "Optional"),
    responses(
        (status = 202, body = Job),
        (status = 404, description = "No node belongs to it", body = ErrorBody),
        (status = 409, description = "The other nodes could not take its shards", body = ErrorBody),
    ))]
fn remove_principal() {}

/// Takes a node out of service.
#[utoipa::path(post, path = "/api/nodes/{id}/offline", tag = "nodes",
    params(("id" = String, Path, description = "The node (its region)")),
    responses(
        (status = 200, body = NodeAnswer),
        (status = 404, description = "No such node", body = ErrorBody),
    ))]
fn node_offline() {}

/// Puts a node back in service (degraded until its agent serves).
#[utoipa::path(post, path = "/api/nodes/{id}/online", tag = "nodes",
    params(("id" = String, Path, description = "The node (its region)")),
    responses(
        (status = 200, body = NodeAnswer),
        (status = 404, description = "No such node", body = ErrorBody),
    ))]
fn node_online() {}

/// Caps what the store keeps on a node, below its agent's quota; kept
/// across restarts.
#[utoipa::path(put, path = "/api/nodes/{id}/quota", tag = "nodes",
    params(("id" = String, Path, description = "The node (its region)")),
    request_body = NewQuota,
    responses(
        (status = 200, body = NodeAnswer),
        (status = 400, description = "Not a size", body = ErrorBody),
        (status = 404, description = "No such node", body = ErrorBody),
    ))]
fn set_quota() {}

/// Deletes one shard from its node, to simulate damage.
#[utoipa::path(delete, path = "/api/shards/{node}/{file}/{chunk}/{index}", tag = "nodes",
    params(
        ("node" = String, Path, description = "The node holding it"),
        ("file" = String, Path, description = "The file's name"),
        ("chunk" = u64, Path, description = "The chunk's index"),
        ("index" = u8, Path, description = "The shard's index in the chunk"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such file or shard there", body = ErrorBody),
        (status = 503, description = "The node did not answer", body = ErrorBody),
    ))]
fn delete_shard() {}

/// Repairs every file now, as a job.
#[utoipa::path(post, path = "/api/repair", tag = "jobs",
    responses((status = 202, body = Job)))]
fn repair() {}

/// Evens out the nodes (after adding a region), as a job.
#[utoipa::path(post, path = "/api/redistribute", tag = "jobs",
    responses((status = 202, body = Job)))]
fn redistribute() {}

/// A job's progress and, once finished, its result.
#[utoipa::path(get, path = "/api/jobs/{id}", tag = "jobs",
    params(("id" = u64, Path, description = "The job's id")),
    responses(
        (status = 200, body = Job),
        (status = 404, description = "No such job (finished jobs are forgotten after 100 more)", body = ErrorBody),
    ))]
fn job() {}

/// The scrubber's progress.
#[utoipa::path(get, path = "/api/scrub", tag = "jobs",
    responses((status = 200, body = ScrubStatus)))]
fn scrub_status() {}

/// Starts a scrub pass now.
#[utoipa::path(post, path = "/api/scrub", tag = "jobs",
    responses((status = 202, body = ScrubStatus)))]
fn scrub_start() {}

/// The S3 endpoint's access keys, without secrets.
#[utoipa::path(get, path = "/api/s3/keys", tag = "s3",
    responses((status = 200, body = KeyList)))]
fn list_keys() {}

/// Makes an access key; its secret is in this answer only.
#[utoipa::path(post, path = "/api/s3/keys", tag = "s3",
    request_body(content = KeyRequest, description = "The user the key acts as (optional)"),
    responses(
        (status = 201, body = NewKey),
        (status = 400, description = "Not a valid user name", body = ErrorBody),
    ))]
fn create_key() {}

/// Deletes an access key.
#[utoipa::path(delete, path = "/api/s3/keys/{id}", tag = "s3",
    params(("id" = String, Path, description = "The access key id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such key", body = ErrorBody),
    ))]
fn delete_key() {}

/// Server-sent events: `hello` once, then `change` (data: a counter)
/// whenever files, nodes, jobs or the scrubber changed, bursts coalesced.
#[utoipa::path(get, path = "/api/events", tag = "store",
    responses((status = 200, description = "An event stream", content_type = "text/event-stream")))]
fn events() {}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "store",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
fn openapi() {}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "store",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain")))]
fn metrics() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_schema_it_refers_to() {
        let doc = document();
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let schemas = v["components"]["schemas"].as_object().unwrap();
        for r in doc.split("\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referred to, not defined"
            );
        }
        assert!(operations().contains(&("PUT".into(), "/api/files/{name}".into())));
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    }
}
