//! A node as the store sees it: an id, a region, where its shards are, and
//! what the store knows of it (serving or not, suspect after a failure,
//! its quota).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::now_secs;
use crate::format::ShardKey;
use crate::holds::Garbage;
use crate::shard_store::{ShardStore, StoreStats};

/// A node: an id, a region, and where its shards are.
#[derive(Clone)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// Region (placement spreads chunks over regions).
    pub region: String,
    /// Whose environment it runs in (placement spreads chunks over
    /// principals after regions); empty when the store has only one.
    pub principal: String,
    /// Its shards.
    pub shards: Arc<dyn ShardStore>,
    online: Arc<AtomicBool>,
    /// Takes no new shards, and its shards are being moved elsewhere (see
    /// [`crate::Store::drain_file`]); reads still use it.
    draining: Arc<AtomicBool>,
    /// Until when (ms on [`clock_ms`]) reads ask it last.
    suspect_until: Arc<AtomicU64>,
    /// Bytes the store may keep on it, whatever its agent allows
    /// ([`NO_QUOTA`]: none set).
    quota: Arc<AtomicU64>,
    /// How long a shard write to it usually takes, in microseconds,
    /// smoothed (0: none measured yet).
    write_us: Arc<AtomicU64>,
    /// How long a shard read from it usually takes, in microseconds,
    /// smoothed (0: none measured), and when (ms on [`clock_ms`]) it was
    /// last measured: reads order nodes by it.
    read_us: Arc<AtomicU64>,
    read_at_ms: Arc<AtomicU64>,
    /// Shard reads from it under way.
    reads_under_way: Arc<AtomicUsize>,
    /// Its last answer to stats, and when it came.
    last_stats: Arc<std::sync::Mutex<Option<(std::time::Instant, StoreStats)>>>,
    /// Whether a background stats request is under way.
    refreshing: Arc<AtomicBool>,
    /// Turns to write to it ([`WRITES_PER_NODE`]), taken in order.
    write_turns: Arc<tokio::sync::Semaphore>,
    /// Writes to it waiting for their turn or under way.
    writes_queued: Arc<AtomicUsize>,
    /// Told when it is made suspect: writes still waiting for their turn
    /// on it are hedged at once rather than each at its own deadline.
    stalled: Arc<tokio::sync::Notify>,
}

/// Shard writes one node carries at once, across every put of the store;
/// more wait their turn, oldest first. A write's time is a round trip,
/// the shard's transfer and the node's fsync, so a link stays busy only
/// with many under way: over the simulated wide-area links of `bench/run`
/// (4 MB/s, 10-220 ms round trips) a 128 MiB put took 11.8 s with 16, 9.7 s
/// with 64 (and no less with a window of 512 shards). The put's window
/// bounds what this costs in memory.
pub const WRITES_PER_NODE: usize = 64;

/// How long a node's measured read time stands without a new measure
/// (see [`Node::usual_read`]).
pub(crate) const READ_TIME_KEPT: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes `took` into the mean in `mean_us` (microseconds, 0: none yet),
/// a quarter to the newest. Concurrent updates may lose one sample: the
/// mean stays a mean.
fn smooth(mean_us: &AtomicU64, took: std::time::Duration) {
    let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
    let old = mean_us.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        old - old / 4 + sample / 4
    };
    mean_us.store(new.max(1), Ordering::Relaxed);
}

/// One shard read under way (see [`Node::start_read`]); it leaves the
/// node's count when dropped.
pub(crate) struct ReadTimer {
    started: std::time::Instant,
    sharing: usize,
    under_way: Arc<AtomicUsize>,
}

impl Drop for ReadTimer {
    fn drop(&mut self) {
        self.under_way.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A write's place in its node's queue, given up when dropped.
pub(crate) struct QueuedWrite {
    queued: Arc<AtomicUsize>,
}

impl Drop for QueuedWrite {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A node's quota when none is set.
pub const NO_QUOTA: u64 = u64::MAX;

/// How long a node that failed a shard read, or had not answered one when
/// the read hedged, is asked last: long enough that a file's next chunks do
/// not each wait out the hedge on a node that has just died, short enough
/// that a node merely busy for a moment is soon preferred again.
pub const SUSPECT_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// A shard write is hedged after this many times its node's usual write
/// time: well past the variation of a node that is merely loaded (its
/// queue of shards is in the mean already), soon for one that stopped.
pub const WRITE_HEDGE_FACTOR: u64 = 4;
/// Never hedge a write sooner than this: a spare write costs a shard's
/// bytes on another link, and a busy disk's fsync can take this long.
pub const WRITE_HEDGE_MIN: std::time::Duration = std::time::Duration::from_secs(1);
/// Never wait longer than this on a write before hedging it.
pub const WRITE_HEDGE_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// The hedge deadline of a node whose writes were never measured.
pub const WRITE_HEDGE_FIRST: std::time::Duration = std::time::Duration::from_secs(2);

/// Milliseconds on a process-wide monotonic clock.
pub(crate) fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("region", &self.region)
            .field("principal", &self.principal)
            .field("online", &self.is_online())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node, online.
    pub fn new(
        id: impl Into<String>,
        region: impl Into<String>,
        shards: Arc<dyn ShardStore>,
    ) -> Self {
        Self {
            id: id.into(),
            region: region.into(),
            principal: String::new(),
            shards,
            online: Arc::new(AtomicBool::new(true)),
            draining: Arc::new(AtomicBool::new(false)),
            suspect_until: Arc::new(AtomicU64::new(0)),
            quota: Arc::new(AtomicU64::new(NO_QUOTA)),
            write_us: Arc::new(AtomicU64::new(0)),
            read_us: Arc::new(AtomicU64::new(0)),
            read_at_ms: Arc::new(AtomicU64::new(0)),
            reads_under_way: Arc::new(AtomicUsize::new(0)),
            last_stats: Arc::new(std::sync::Mutex::new(None)),
            refreshing: Arc::new(AtomicBool::new(false)),
            write_turns: Arc::new(tokio::sync::Semaphore::new(WRITES_PER_NODE)),
            writes_queued: Arc::new(AtomicUsize::new(0)),
            stalled: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The same node, in `principal`'s environment.
    #[must_use]
    pub fn of_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = principal.into();
        self
    }

    /// Joins its write queue: the writes ahead of this one (waiting or
    /// under way), and a place that leaves the queue when dropped.
    pub(crate) fn queue_write(&self) -> (usize, QueuedWrite) {
        let ahead = self.writes_queued.fetch_add(1, Ordering::AcqRel);
        (
            ahead,
            QueuedWrite {
                queued: Arc::clone(&self.writes_queued),
            },
        )
    }

    /// Waits for a turn to write to it (held while the write runs).
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.write_turns).acquire_owned().await.ok()
    }

    /// What [`Node::suspect`] notifies.
    pub(crate) fn stalled(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.stalled)
    }

    /// The deadline of a write with `ahead` others before it in this
    /// node's queue: its own [`Node::write_deadline`] once per round of
    /// [`WRITES_PER_NODE`] writes before it.
    pub(crate) fn queued_deadline(&self, ahead: usize) -> std::time::Duration {
        let rounds = 1 + u32::try_from(ahead / WRITES_PER_NODE).unwrap_or(u32::MAX);
        self.write_deadline().saturating_mul(rounds)
    }

    /// Caps what the store keeps on it ([`NO_QUOTA`] lifts the cap).
    pub fn set_quota(&self, bytes: u64) {
        self.quota.store(bytes, Ordering::Relaxed);
    }

    /// Its quota, if one is set.
    pub fn quota(&self) -> Option<u64> {
        Some(self.quota.load(Ordering::Relaxed)).filter(|q| *q != NO_QUOTA)
    }

    /// Bytes it can still take, from its stats: the least of what its
    /// agent's quota leaves, its disk has free, and the store's quota for
    /// it leaves.
    pub fn room(&self, stats: &crate::shard_store::StoreStats) -> u64 {
        let ours = self
            .quota
            .load(Ordering::Relaxed)
            .saturating_sub(stats.used);
        stats.room().min(ours)
    }

    /// Its last answer to stats and how old it is.
    pub(crate) fn cached_stats(&self) -> Option<(std::time::Duration, StoreStats)> {
        let last = *self.last_stats_lock();
        last.map(|(at, stats)| (at.elapsed(), stats))
    }

    /// Asks it for its stats now, and keeps the answer (an error forgets
    /// the last one, so the next put asks again rather than trusting it).
    pub(crate) async fn ask_stats(&self) -> Result<StoreStats, crate::shard_store::ShardError> {
        let answer = self.shards.stats().await;
        *self.last_stats_lock() = answer
            .as_ref()
            .ok()
            .map(|stats| (std::time::Instant::now(), *stats));
        answer
    }

    /// Forgets its last answer to stats: the next put asks.
    pub(crate) fn forget_stats(&self) {
        *self.last_stats_lock() = None;
    }

    /// Asks it for its stats in the background, unless that is under way.
    pub(crate) fn refresh_stats(&self) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let node = self.clone();
        runtime.spawn(async move {
            if node.ask_stats().await.is_err() {
                node.suspect();
            }
            node.refreshing.store(false, Ordering::Release);
        });
    }

    fn last_stats_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<(std::time::Instant, StoreStats)>> {
        self.last_stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a recent read failed or lagged on it (see [`SUSPECT_FOR`]).
    pub fn is_suspect(&self) -> bool {
        self.suspect_until.load(Ordering::Relaxed) > clock_ms()
    }

    pub(crate) fn suspect(&self) {
        let until = clock_ms().saturating_add(SUSPECT_FOR.as_millis() as u64);
        self.suspect_until.store(until, Ordering::Relaxed);
        self.stalled.notify_waiters();
    }

    /// Takes the time one shard write took into its usual write time
    /// (an exponentially weighted mean, a quarter to the newest).
    /// Its last stats answer is brought up to date too, so the next puts
    /// count the room this one took before the node is asked again.
    pub(crate) fn wrote(&self, took: std::time::Duration, bytes: u64) {
        if let Some((_, stats)) = self.last_stats_lock().as_mut() {
            stats.used = stats.used.saturating_add(bytes);
            stats.shards = stats.shards.saturating_add(1);
            stats.disk_free = stats.disk_free.saturating_sub(bytes);
        }
        smooth(&self.write_us, took);
    }

    /// Starts timing one shard read from it: the reads already under way
    /// share its link with this one.
    pub(crate) fn start_read(&self) -> ReadTimer {
        let sharing = self.reads_under_way.fetch_add(1, Ordering::AcqRel) + 1;
        ReadTimer {
            started: std::time::Instant::now(),
            sharing,
            under_way: Arc::clone(&self.reads_under_way),
        }
    }

    /// Takes one good shard read into its usual read time (an
    /// exponentially weighted mean, a quarter to the newest). The time is
    /// divided by the reads that shared the link when it started: a fast
    /// node asked for many shards at once answers each late, and what
    /// tells links apart is the time per shard.
    pub(crate) fn read_took(&self, timer: &ReadTimer) {
        let took = timer.started.elapsed() / u32::try_from(timer.sharing).unwrap_or(u32::MAX);
        smooth(&self.read_us, took);
        self.read_at_ms.store(clock_ms(), Ordering::Relaxed);
    }

    /// How long a shard read asked of it now should take: its usual time
    /// per shard times the reads that would share its link, or `None` when
    /// not measured (see [`Node::usual_read`]).
    pub(crate) fn expected_read(&self) -> Option<std::time::Duration> {
        let sharing = self.reads_under_way.load(Ordering::Acquire) + 1;
        self.usual_read()
            .map(|usual| usual.saturating_mul(u32::try_from(sharing).unwrap_or(u32::MAX)))
    }

    /// How long a shard read from it usually takes, if measured within
    /// [`READ_TIME_KEPT`]: a node read from no more (because it was slow)
    /// is tried again once its measure has aged out, so one that got
    /// faster is found again.
    pub(crate) fn usual_read(&self) -> Option<std::time::Duration> {
        let us = self.read_us.load(Ordering::Relaxed);
        let at = self.read_at_ms.load(Ordering::Relaxed);
        (us > 0 && clock_ms().saturating_sub(at) <= READ_TIME_KEPT.as_millis() as u64)
            .then(|| std::time::Duration::from_micros(us))
    }

    /// How long a shard write to it may take before a put places the
    /// same shard on a spare node as well: a few times its usual write
    /// time, within [`WRITE_HEDGE_MIN`] and [`WRITE_HEDGE_MAX`]; a node
    /// not measured yet gets [`WRITE_HEDGE_FIRST`].
    pub fn write_deadline(&self) -> std::time::Duration {
        let us = self.write_us.load(Ordering::Relaxed);
        if us == 0 {
            return WRITE_HEDGE_FIRST;
        }
        std::time::Duration::from_micros(us.saturating_mul(WRITE_HEDGE_FACTOR))
            .clamp(WRITE_HEDGE_MIN, WRITE_HEDGE_MAX)
    }

    pub(crate) fn trust(&self) {
        self.suspect_until.store(0, Ordering::Relaxed);
    }

    /// Whether reads and writes go to it.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    /// Stops (or, with false, resumes) placing shards on it: puts, repairs
    /// and redistribution pass it over, and [`crate::Store::drain_file`]
    /// moves its shards to other nodes. Reads still ask it.
    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    /// Whether it is being drained.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub(crate) fn record(&self) -> crate::index::NodeRecord {
        crate::index::NodeRecord {
            id: self.id.clone(),
            region: self.region.clone(),
            added: now_secs(),
        }
    }

    /// Its copy of shard `key`, as garbage to delete.
    pub(crate) fn garbage(&self, key: ShardKey) -> Garbage {
        Garbage {
            node: self.id.clone(),
            shards: Arc::clone(&self.shards),
            key,
        }
    }

    /// Takes it offline or brings it back.
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    #[allow(clippy::unwrap_used)]
    fn the_write_deadline_follows_the_usual_write_time_within_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let shards = crate::shard_store::LocalDirStore::open(dir.path(), 1 << 20).unwrap();
        let n = Node::new("n", "r", Arc::new(shards));
        assert_eq!(n.write_deadline(), WRITE_HEDGE_FIRST);
        // Fast writes: never sooner than the floor.
        n.wrote(Duration::from_millis(5), 0);
        assert_eq!(n.write_deadline(), WRITE_HEDGE_MIN);
        // A node that is usually slow gets a few times its usual time.
        for _ in 0..40 {
            n.wrote(Duration::from_millis(800), 0);
        }
        let d = n.write_deadline();
        assert!(
            d > Duration::from_millis(3000) && d <= Duration::from_millis(3200),
            "{d:?}"
        );
        // And never more than the ceiling.
        for _ in 0..40 {
            n.wrote(Duration::from_secs(30), 0);
        }
        assert_eq!(n.write_deadline(), WRITE_HEDGE_MAX);
    }
}
