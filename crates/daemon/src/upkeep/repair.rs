//! Repair in the background: when a node comes back empty or is lost, what
//! it held is rebuilt; repairs that did not finish are tried again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::DaemonError;
use crate::nodes::manager::NodeEvent;
use crate::state::State;

/// How often repairs that did not finish are tried again, besides when a
/// node comes back.
const RETRY_EVERY: Duration = Duration::from_secs(30);

/// Rebuilds what a lost or wiped node held, and tries unfinished repairs
/// again when a node comes back (and every [`RETRY_EVERY`]).
pub(crate) async fn repair_loop(state: Arc<State>, mut events: mpsc::UnboundedReceiver<NodeEvent>) {
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Some(e) => e,
                None => return,
            },
            () = tokio::time::sleep(RETRY_EVERY) => {
                state.store.retry_strays().await;
                retry_unfinished(&state).await;
                continue;
            }
        };
        let repair = match &event {
            NodeEvent::Lost { node } => Some(node),
            NodeEvent::Connected {
                node,
                fresh_home: true,
            } => Some(node),
            NodeEvent::Connected { .. } => None,
        };
        if let Some(node) = repair
            && let Err(e) = repair_node(&state, node).await
        {
            tracing::warn!(node = %node, "repair: {e}");
        }
        if matches!(event, NodeEvent::Connected { .. }) {
            // Shards that could not be deleted while it was away.
            let left = state.store.retry_strays().await;
            if left > 0 {
                tracing::debug!(left, "shards still waiting to be deleted");
            }
            retry_unfinished(&state).await;
            // Whatever a repair or a put did while nodes were missing
            // (several shards of a chunk on the one fresh node there was)
            // spreads out now that one more node serves.
            if let Err(e) = spread_crowded(&state).await {
                tracing::warn!("spreading crowded chunks: {e}");
            }
        }
    }
}

/// Repairs again the files whose last repair did not finish.
async fn retry_unfinished(state: &State) {
    let unfinished = state.health.unfinished();
    if unfinished.is_empty() {
        return;
    }
    let files = match state.store.index().files() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("repair retry: cannot list files: {e}");
            return;
        }
    };
    for record in files.iter().filter(|r| unfinished.contains(&r.file_id)) {
        let result = state.repair_file(&record.name).await;
        match crate::nodes::health::repair_problem(&record.name, &result) {
            Some(problem) => tracing::debug!("{problem}"),
            None => tracing::info!(file = %record.name, "an unfinished repair finished"),
        }
    }
}

/// Repairs every file with a chunk crowded onto fewer nodes than now
/// serve (put while some were away), which spreads it out again.
pub async fn spread_crowded(state: &State) -> Result<usize, DaemonError> {
    let serving = state.serving();
    let mut spread = 0;
    let index = state.store.index();
    for record in index.files().map_err(|e| DaemonError::Store(e.into()))? {
        let Some((_, manifest)) = index
            .file(&record.name)
            .map_err(|e| DaemonError::Store(e.into()))?
        else {
            continue;
        };
        let spreadable = manifest.chunks.iter().any(|c| {
            let nodes: std::collections::HashSet<&str> =
                c.shards.iter().map(|s| s.node.as_str()).collect();
            nodes.len() < c.shards.len() && nodes.len() < serving.len()
        });
        if spreadable {
            let result = state.repair_file(&record.name).await;
            if let Ok(report) = &result {
                spread += report.shards_spread;
            }
            if let Some(problem) = crate::nodes::health::repair_problem(&record.name, &result) {
                tracing::warn!("spread: {problem}");
            }
        }
    }
    if spread > 0 {
        tracing::info!("{spread} shards moved off nodes that held another shard of their chunk");
    }
    Ok(spread)
}

/// Repairs every file with a shard on `node`.
pub async fn repair_node(state: &State, node: &str) -> Result<usize, DaemonError> {
    let mut repaired = 0;
    for record in state
        .store
        .index()
        .files()
        .map_err(|e| DaemonError::Store(e.into()))?
    {
        let Some((_, manifest)) = state
            .store
            .index()
            .file(&record.name)
            .map_err(|e| DaemonError::Store(e.into()))?
        else {
            continue;
        };
        let touches = manifest
            .chunks
            .iter()
            .any(|c| c.shards.iter().any(|s| s.node == node));
        if touches {
            let result = state.repair_file(&record.name).await;
            if let Ok(report) = &result {
                repaired += report.shards_rebuilt;
            }
            if let Some(problem) = crate::nodes::health::repair_problem(&record.name, &result) {
                tracing::warn!("{problem}");
            }
        }
    }
    Ok(repaired)
}
