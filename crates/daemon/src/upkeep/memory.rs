//! Memory back to the system after transfers: while the store is idle and
//! the daemon holds more than it did after the last trim, what glibc holds
//! free in its arenas is given back
//! ([`cloudshell_store::malloc::release_free`]), so the daemon's memory
//! between transfers stays near where it started instead of rising with
//! each burst.

use std::sync::Arc;
use std::time::Duration;

use crate::state::State;

/// How often the daemon looks. A transfer that ends is followed by a trim
/// within this; one under way is never slowed by one.
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Growth in resident memory since the last trim that is worth a trim.
const WORTH_TRIMMING_KIB: u64 = 8 << 10;

/// Trims whenever the store is idle and the daemon's resident memory has
/// grown by [`WORTH_TRIMMING_KIB`] since the last trim (what is left
/// after a trim is live memory: caches, connections).
pub(crate) async fn release_loop(state: Arc<State>) {
    let mut after_last: Option<u64> = resident_kib();
    let mut ticks = tokio::time::interval(LOOK_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if !state.store.is_idle() {
            continue;
        }
        let Some(now) = resident_kib() else {
            // No /proc: nothing to measure by, so nothing to decide with.
            return;
        };
        if after_last.is_some_and(|a| now < a + WORTH_TRIMMING_KIB) {
            continue;
        }
        // The walk takes milliseconds over a busy daemon's arenas.
        let released = tokio::task::spawn_blocking(cloudshell_store::malloc::release_free)
            .await
            .unwrap_or(false);
        after_last = resident_kib();
        tracing::debug!(
            released,
            before_kib = now,
            after_kib = ?after_last,
            "freed memory given back after transfers"
        );
    }
}

/// This process's resident memory (VmRSS), in KiB.
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read_from_proc() {
        let kib = super::resident_kib().expect("Linux has /proc/self/status");
        // A test process holds more than a page and less than a terabyte.
        assert!(kib > 4 && kib < 1 << 30, "{kib} KiB");
    }
}
