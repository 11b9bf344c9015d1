//! Jobs: repair and redistribution started and followed; the scrubber's
//! progress, and a pass started now.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use cloudshell_store::StoreError;
use cloudshell_store_api as wire;
use wire::Job;

use super::error::ApiError;
use crate::state::State;

type Shared = Arc<State>;

pub(super) async fn repair(
    AxumState(state): AxumState<Shared>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let files = state
        .store
        .index()
        .files()
        .map_err(|e| ApiError::from(StoreError::from(e)))?;
    let job = crate::upkeep::jobs::repair_all(&state, files);
    Ok((StatusCode::ACCEPTED, Json(job)))
}

pub(super) async fn redistribute(AxumState(state): AxumState<Shared>) -> (StatusCode, Json<Job>) {
    let job = crate::upkeep::jobs::redistribute(&state);
    (StatusCode::ACCEPTED, Json(job))
}

pub(super) async fn job(
    AxumState(state): AxumState<Shared>,
    Path(id): Path<u64>,
) -> Result<Json<Job>, ApiError> {
    state
        .jobs
        .get(id)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NoSuchJob", format!("no job {id}")))
}

pub(super) async fn scrub_status(AxumState(state): AxumState<Shared>) -> Json<wire::ScrubStatus> {
    Json(crate::upkeep::scrub::status(&state))
}

pub(super) async fn scrub_start(
    AxumState(state): AxumState<Shared>,
) -> (StatusCode, Json<wire::ScrubStatus>) {
    state.scrub_now.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(crate::upkeep::scrub::status(&state)),
    )
}
