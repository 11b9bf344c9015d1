//! What runs in the background once the store is open: the index backup
//! after changes, and repair when a node comes back empty or is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::manager::NodeEvent;
use crate::{DaemonError, State};

/// Backs the index up on the nodes after changes, at most once a second.
pub(crate) async fn backup_loop(state: Arc<State>) {
    loop {
        state.changed.notified().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Cleared before the export: a change made during it sets it again.
        state.backup_status(|b| b.pending = false);
        match backup(&state).await {
            Ok(r) => {
                tracing::debug!(
                    generation = r.generation,
                    bytes = r.bytes,
                    "index backed up"
                );
                state.backup_status(|b| {
                    b.generation = Some(r.generation);
                    b.last_error = None;
                });
            }
            Err(e) => {
                tracing::warn!("index backup failed (will retry): {e}");
                state.backup_status(|b| b.last_error = Some(e.to_string()));
                tokio::time::sleep(Duration::from_secs(5)).await;
                state.touch();
            }
        }
    }
}

/// One index backup, with the S3 metadata riding along as an extra.
async fn backup(state: &State) -> Result<cloudshell_store::backup::BackupReport, DaemonError> {
    let s3 = state
        .s3
        .meta
        .export()
        .map_err(|e| DaemonError::CloudShell(e.to_string()))?;
    state
        .store
        .index()
        .set_extra(crate::s3::INDEX_EXTRA, &s3)
        .map_err(|e| DaemonError::Store(e.into()))?;
    Ok(state.store.backup_index().await?)
}

/// Rebuilds what a lost or wiped node held.
pub(crate) async fn repair_loop(state: Arc<State>, mut events: mpsc::UnboundedReceiver<NodeEvent>) {
    while let Some(event) = events.recv().await {
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
        // Whatever a repair or a put did while nodes were missing (several
        // shards of a chunk on the one fresh node there was) spreads out
        // now that one more node serves.
        if matches!(event, NodeEvent::Connected { .. })
            && let Err(e) = spread_crowded(&state).await
        {
            tracing::warn!("spreading crowded chunks: {e}");
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
            match state.repair_file(&record.name).await {
                Ok(report) => spread += report.shards_spread,
                Err(e) => tracing::warn!(file = %record.name, "spread: {e}"),
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
            match state.repair_file(&record.name).await {
                Ok(report) => {
                    repaired += report.shards_rebuilt;
                }
                Err(e) => tracing::warn!(file = %record.name, "repair: {e}"),
            }
        }
    }
    Ok(repaired)
}
