//! The work of the jobs the API starts: a repair of every file, a
//! redistribution, and the removal of a node (drained first). Each registers itself in the state's job registry,
//! reports progress there, and leaves its result there.

use std::sync::Arc;

use cloudshell_store_api as wire;
use wire::{Job, JobKind, JobResult};

use crate::error::DaemonError;
use crate::nodes::node::NodeHandle;
use crate::state::{REMOVING, State};

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

/// How many times a removal drains again when files still name the node
/// (a put placed there before it began draining finished since).
const REMOVE_ATTEMPTS: usize = 5;

/// Starts removing `nodes` (one node, or every node of a principal): they
/// drain (take no new shards; every shard they hold is moved to the other
/// nodes, checked, recorded), then are forgotten (their managers stopped,
/// left out of later starts) and their environments suspended or, with
/// `delete_environment`, deleted. Returns the job at once. If the shards
/// cannot all be moved, the nodes are put back in service and the job
/// says why.
pub fn remove_nodes(state: &Arc<State>, nodes: Vec<NodeHandle>, delete_environment: bool) -> Job {
    let statuses: Vec<wire::NodeStatus> = nodes.iter().map(NodeHandle::status).collect();
    for (node, status) in nodes.iter().zip(&statuses) {
        if let Some(n) = state.store_node(&status.id) {
            n.set_draining(true);
        }
        node.update(|s| {
            s.draining = Some(format!(
                "{REMOVING}: its shards move to the other nodes, then it stops"
            ));
        });
    }
    // Puts under way may have placed shards on them before they drained:
    // the drain is done only once those puts are too.
    let under_way = state.store.files_under_way();
    let ids: Vec<String> = statuses.iter().map(|s| s.id.clone()).collect();
    let job = state
        .jobs
        .start(JobKind::Remove, files_on(state, &ids).len() as u64);
    let job_id = job.id;
    let state = state.clone();
    tokio::spawn(async move {
        let outcome = match drain_and_forget(&state, &ids, under_way, job_id).await {
            Ok(mut result) => {
                for status in &statuses {
                    let became = retire_environment(&state, status, delete_environment).await;
                    result.environments.push(format!("{}: {became}", status.id));
                }
                Ok(JobResult::Remove(result))
            }
            Err(why) => {
                // Back in service: a half-drained node still holds
                // shards, and nothing else would ever move them.
                for (node, status) in nodes.iter().zip(&statuses) {
                    if let Some(n) = state.store_node(&status.id) {
                        n.set_draining(false);
                    }
                    node.update(|s| s.draining = None);
                }
                Err(format!(
                    "{} not removed: {why}; back in service",
                    ids.join(", ")
                ))
            }
        };
        state.jobs.finish(job_id, outcome);
        state.bump();
    });
    job
}

/// The files with a shard on any of the nodes `ids`.
fn files_on(state: &State, ids: &[String]) -> Vec<String> {
    let Ok(files) = state.store.index().files() else {
        return Vec::new();
    };
    files
        .into_iter()
        .filter(|f| {
            state
                .store
                .index()
                .file(&f.name)
                .ok()
                .flatten()
                .is_some_and(|(_, m)| {
                    m.chunks
                        .iter()
                        .flat_map(|c| &c.shards)
                        .any(|s| ids.contains(&s.node))
                })
        })
        .map(|f| f.name)
        .collect()
}

async fn drain_and_forget(
    state: &Arc<State>,
    ids: &[String],
    under_way: std::collections::HashSet<cloudshell_store::FileId>,
    job_id: u64,
) -> Result<wire::RemoveResult, String> {
    let mut result = wire::RemoveResult {
        nodes: ids.to_vec(),
        ..Default::default()
    };
    let mut done = 0u64;
    let mut forgotten: Vec<String> = Vec::new();
    for _ in 0..REMOVE_ATTEMPTS {
        // Until the puts that were under way when they began draining end.
        while state
            .store
            .files_under_way()
            .iter()
            .any(|f| under_way.contains(f))
        {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        for name in files_on(state, ids) {
            match state.store.drain_file(&name).await {
                Ok(r) => {
                    result.shards_moved += r.shards_moved;
                    result.shards_rebuilt += r.shards_rebuilt;
                    if r.shards_left > 0 {
                        return Err(r.failure.unwrap_or_else(|| {
                            format!("{} shards of {name:?} could not be moved", r.shards_left)
                        }));
                    }
                }
                Err(cloudshell_store::StoreError::NotFound(_)) => {}
                Err(e) => return Err(format!("moving the shards of {name:?}: {e}")),
            }
            done += 1;
            state.jobs.progress(job_id, done);
            state.touch();
        }
        let mut again = false;
        for id in ids {
            if forgotten.contains(id) {
                continue;
            }
            match state.forget_node(id) {
                Ok(()) => forgotten.push(id.clone()),
                // Named again meanwhile: drain once more.
                Err(DaemonError::Store(cloudshell_store::StoreError::NodeInUse { .. })) => {
                    again = true;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        if !again {
            return Ok(result);
        }
    }
    Err("files kept naming them after every drain".to_owned())
}

/// Suspends or deletes a removed node's environment; says what became of it.
async fn retire_environment(state: &State, status: &wire::NodeStatus, delete: bool) -> String {
    let Some(env) = status
        .environment_id
        .as_deref()
        .and_then(|e| cloudshell::EnvironmentId::new(e).ok())
    else {
        return "none was made".to_owned();
    };
    let client = match cloudshell::Region::new(&status.region) {
        Ok(region) => match state.regions.sources.get(&status.principal) {
            Ok(source) => source.client(&region).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        },
        Err(e) => Err(e.to_string()),
    };
    let outcome = match client {
        Ok(c) => crate::nodes::environment::retire(&c, &env, delete)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match (outcome, delete) {
        (Ok(()), true) => format!("{env} deleted"),
        (Ok(()), false) => {
            format!("{env} suspended (its home is kept; delete it with cloudshell delete)")
        }
        (Err(e), _) => format!("{env} left as it was: {e}"),
    }
}
