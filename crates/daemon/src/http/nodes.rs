//! Nodes: list, add a region, take one offline or back, cap the store on
//! one, delete a shard (to simulate damage).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use cloudshell_store::StoreError;
use cloudshell_store_api as wire;
use wire::NodeState;

use super::error::{ApiError, json_body, with_sources};
use crate::state::State;

type Shared = Arc<State>;

pub(super) async fn nodes(AxumState(state): AxumState<Shared>) -> Json<wire::NodeList> {
    let nodes = state
        .nodes()
        .iter()
        .map(crate::nodes::node::NodeHandle::status)
        .collect();
    Json(wire::NodeList { nodes })
}

pub(super) fn node_answer(node: &crate::nodes::node::NodeHandle) -> Json<wire::NodeAnswer> {
    Json(wire::NodeAnswer {
        node: node.status(),
    })
}

pub(super) fn find_node(
    state: &State,
    id: &str,
) -> Result<crate::nodes::node::NodeHandle, ApiError> {
    state.node(id).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchNode",
            format!("no node {id:?}; `GET /api/nodes` lists them"),
        )
    })
}

pub(super) async fn offline(
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

pub(super) async fn online(
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

pub(super) async fn set_quota(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    body: Result<Json<wire::NewQuota>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<wire::NodeAnswer>, ApiError> {
    let body = json_body(body, r#"{"quota": "200M"} (or null to lift it)"#)?;
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
    state.set_node_quota(&id, bytes).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            with_sources(&e),
        )
    })?;
    Ok(node_answer(&node))
}

pub(super) async fn add_region(
    AxumState(state): AxumState<Shared>,
    body: Result<Json<wire::NewRegion>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<wire::NodeAnswer>), ApiError> {
    let body = json_body(body, r#"{"region": "NAME"}"#)?;
    let region = cloudshell::Region::new(body.region.trim())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidRegion", e.to_string()))?;
    let principal = body
        .principal
        .as_deref()
        .map_or(crate::config::DEFAULT_PRINCIPAL, str::trim);
    match state.add_region(principal, region).await {
        Ok(node) => Ok((StatusCode::CREATED, node_answer(&node))),
        Err(crate::error::DaemonError::Exists(r)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "RegionExists",
            format!("the node {r} is there already"),
        )),
        Err(e @ crate::error::DaemonError::Unusable { .. }) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRegion",
            e.to_string(),
        )),
        Err(e @ crate::error::DaemonError::Config(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidPrincipal",
            with_sources(&e),
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

pub(super) async fn delete_shard(
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

pub(super) async fn remove(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<String>,
    body: Option<Json<wire::RemoveNode>>,
) -> Result<(StatusCode, Json<wire::Job>), ApiError> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let node = state.check_removal(&id).map_err(|e| match e {
        crate::state::RemovalRefused::NoSuchNode(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchNode",
            format!("no node {id:?}; `GET /api/nodes` lists them"),
        ),
        crate::state::RemovalRefused::Refused(why) => {
            ApiError::new(StatusCode::CONFLICT, "CannotRemove", why)
        }
    })?;
    let job = crate::upkeep::jobs::remove_nodes(&state, vec![node], request.delete_environment);
    Ok((StatusCode::ACCEPTED, Json(job)))
}

pub(super) async fn add_principal(
    AxumState(state): AxumState<Shared>,
    body: Result<Json<wire::NewPrincipal>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<wire::NodeList>), ApiError> {
    let body = json_body(body, r#"{"name": "PROFILE", "regions": ["REGION", ...]}"#)?;
    let regions = body
        .regions
        .iter()
        .map(|r| cloudshell::Region::new(r.trim()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidRegion", e.to_string()))?;
    match state.add_principal(body.name.trim(), regions).await {
        Ok(nodes) => Ok((
            StatusCode::CREATED,
            Json(wire::NodeList {
                nodes: nodes
                    .iter()
                    .map(crate::nodes::node::NodeHandle::status)
                    .collect(),
            }),
        )),
        Err(crate::error::DaemonError::Exists(what)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "PrincipalExists",
            format!("{what} has nodes already; add a region of it with add-region --principal"),
        )),
        Err(
            e @ (crate::error::DaemonError::Config(_)
            | crate::error::DaemonError::Client(_)
            | crate::error::DaemonError::Unusable { .. }),
        ) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidPrincipal",
            with_sources(&e),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            with_sources(&e),
        )),
    }
}

pub(super) async fn remove_principal(
    AxumState(state): AxumState<Shared>,
    Path(name): Path<String>,
    body: Option<Json<wire::RemoveNode>>,
) -> Result<(StatusCode, Json<wire::Job>), ApiError> {
    let request = body.map(|Json(b)| b).unwrap_or_default();
    let nodes = state.principal_nodes(&name);
    if nodes.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NoSuchPrincipal",
            format!("no node belongs to a principal {name:?}; `GET /api/nodes` lists them"),
        ));
    }
    state
        .check_removal_of(&nodes, &format!("principal {name} ({} nodes)", nodes.len()))
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "CannotRemove", e.to_string()))?;
    let job = crate::upkeep::jobs::remove_nodes(&state, nodes, request.delete_environment);
    Ok((StatusCode::ACCEPTED, Json(job)))
}
