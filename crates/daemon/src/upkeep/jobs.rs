//! The work of the jobs the API starts: a repair of every file, and a
//! redistribution. Each registers itself in the state's job registry,
//! reports progress there, and leaves its result there.

use std::sync::Arc;

use cloudshell_store_api as wire;
use wire::{Job, JobKind, JobResult};

use crate::state::State;

/// Starts repairing every file in `files`; returns the job at once.
pub fn repair_all(state: &Arc<State>, files: Vec<cloudshell_store::FileRecord>) -> Job {
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
    job
}

/// Starts evening out the nodes; returns the job at once.
pub fn redistribute(state: &Arc<State>) -> Job {
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
                    shards_failed: r.shards_failed,
                }))
            }
            Err(e) => Err(e.to_string()),
        };
        state.jobs.finish(id, outcome);
        state.bump();
    });
    job
}
