//! The index backup: after changes (at most once a second), the index is
//! exported with the S3 metadata riding along, and written to the nodes.

use std::sync::Arc;
use std::time::Duration;

use crate::error::DaemonError;
use crate::state::State;

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
                let why = crate::error::with_sources(&e);
                tracing::warn!("index backup failed (will retry): {why}");
                state.backup_status(|b| b.last_error = Some(why));
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
        .map_err(crate::error::s3("cannot export the buckets"))?;
    state
        .store
        .index()
        .set_extra(cloudshell_s3::INDEX_EXTRA, &s3)
        .map_err(|e| DaemonError::Store(e.into()))?;
    Ok(state.store.backup_index().await?)
}
