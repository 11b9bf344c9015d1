//! Draining in the background: while any node drains (its principal's
//! credentials are refused, so its environment will suspend and take its
//! shards with it), every file with a shard on it has that shard moved.

use std::sync::Arc;
use std::time::Duration;

use cloudshell_store::StoreError;

use crate::state::State;

/// How often the store is looked over for shards on draining nodes.
pub(crate) const DRAIN_EVERY: Duration = Duration::from_secs(5);

/// Moves shards off draining nodes, file by file, for as long as the
/// daemon runs; a file whose shards could not all move is tried again on
/// the next pass.
pub(crate) async fn drain_loop(state: Arc<State>) {
    loop {
        tokio::time::sleep(DRAIN_EVERY).await;
        let names = match state.store.files_to_drain() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!("drain: cannot list files: {e}");
                continue;
            }
        };
        for name in names {
            match state.store.drain_file(&name).await {
                Ok(r) => {
                    if r.shards_moved + r.shards_rebuilt > 0 {
                        tracing::info!(
                            file = %name,
                            moved = r.shards_moved,
                            rebuilt = r.shards_rebuilt,
                            left = r.shards_left,
                            "drained"
                        );
                        state.touch();
                    }
                    if let Some(why) = r.failure {
                        tracing::warn!(file = %name, left = r.shards_left, "drain: {why}");
                    }
                }
                // Replaced or removed meanwhile: nothing of it to move.
                Err(StoreError::NotFound(_)) => {}
                Err(e) => tracing::warn!(file = %name, "drain: {e}"),
            }
        }
    }
}
