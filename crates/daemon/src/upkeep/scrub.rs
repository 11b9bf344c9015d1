//! The scrubber: a rolling background pass over every file that has the
//! agents hash their shards in place (no data crosses the network),
//! spot-checks a few chunks by reading them whole, repairs what is missing
//! or corrupt, and collects orphaned shards. Paced by `scrub_rate` shards
//! per second so user traffic always comes first.

use std::sync::Arc;
use std::time::Duration;

pub use cloudshell_store_api::ScrubStatus;

use crate::state::State;

/// Of how many chunks one is read whole during a pass.
pub const SPOT_CHECK_ONE_IN: u64 = 100;

/// Runs a pass every `interval`, or at once when `now` is notified.
pub async fn run(state: Arc<State>, interval: Duration) {
    loop {
        tokio::select! {
            () = state.scrub_now.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
        pass(&state).await;
    }
}

fn update(state: &State, f: impl FnOnce(&mut ScrubStatus)) -> ScrubStatus {
    let mut s = state
        .scrub
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut s);
    let out = s.clone();
    drop(s);
    state.bump();
    out
}

/// The scrubber's status.
pub fn status(state: &State) -> ScrubStatus {
    state
        .scrub
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// One pass over every file.
pub async fn pass(state: &State) {
    let files = match state.store.index().files() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("scrub: cannot list files: {e}");
            return;
        }
    };
    update(state, |s| {
        *s = ScrubStatus {
            running: true,
            files: files.len(),
            last_finished: s.last_finished,
            ..ScrubStatus::default()
        }
    });
    let pace = Duration::from_secs(1) / state.config.scrub_rate.max(1);
    for record in &files {
        let report = match state.store.check_file(&record.name, pace).await {
            Ok(r) => r,
            // Deleted since the listing.
            Err(cloudshell_store::StoreError::NotFound(_)) => {
                update(state, |s| s.files_done += 1);
                continue;
            }
            Err(e) => {
                tracing::warn!(file = %record.name, "scrub: {e}");
                update(state, |s| s.files_done += 1);
                continue;
            }
        };
        for b in &report.bad {
            let kind = if b.missing {
                crate::nodes::health::Bad::Missing
            } else {
                crate::nodes::health::Bad::Corrupt
            };
            state.health.mark(record.file_id, b.chunk, b.index, kind);
        }
        let (read, read_failed) = spot_check(state, record).await;
        let mut rebuilt = 0;
        if report.needs_repair() || read_failed > 0 {
            state.bump();
            let result = state.repair_file(&record.name).await;
            if let Ok(r) = &result {
                rebuilt = r.shards_rebuilt;
            }
            if let Some(problem) = crate::nodes::health::repair_problem(&record.name, &result) {
                tracing::warn!("scrub: {problem}");
            }
        }
        update(state, |s| {
            s.files_done += 1;
            s.shards_checked += report.checked;
            s.missing += report.missing;
            s.corrupt += report.corrupt;
            s.chunks_read += read;
            s.read_failures += read_failed;
            s.shards_rebuilt += rebuilt;
        });
    }
    let orphans = match state.store.collect_orphans().await {
        Ok(r) => r.deleted,
        Err(e) => {
            tracing::warn!("scrub: orphan collection: {e}");
            0
        }
    };
    update(state, |s| {
        s.orphans_deleted = orphans;
        s.running = false;
        s.last_finished = Some(crate::nodes::node::now_secs());
    });
}

/// Reads about one chunk in [`SPOT_CHECK_ONE_IN`] of the file whole
/// (decoded and authenticated), chosen at random. Returns chunks read and
/// how many failed.
async fn spot_check(state: &State, record: &cloudshell_store::FileRecord) -> (usize, usize) {
    let chunk_size = u64::from(record.chunk_size.max(1));
    let chunks = record.size.div_ceil(chunk_size);
    let mut read = 0;
    let mut failed = 0;
    for c in 0..chunks {
        if !rand::random::<u64>().is_multiple_of(SPOT_CHECK_ONE_IN) {
            continue;
        }
        read += 1;
        let range = c * chunk_size..(c + 1) * chunk_size;
        if let Err(e) = state
            .store
            .get_range(&record.name, range, tokio::io::sink())
            .await
        {
            tracing::warn!(file = %record.name, chunk = c, "spot check: {e}");
            failed += 1;
        }
    }
    (read, failed)
}
