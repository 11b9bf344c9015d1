//! Jobs: repair and redistribution started and followed; the scrubber's
//! progress, and a pass started now.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State as AxumState};
use axum::http::StatusCode;
use cloudshell_store::StoreError;
use cloudshell_store_api as wire;
use wire::{Job, JobKind, JobResult};

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

pub(super) async fn redistribute(AxumState(state): AxumState<Shared>) -> (StatusCode, Json<Job>) {
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
