//! Group commit of directory syncs. A shard is acknowledged only once its
//! file and its directory entry are on disk, so every put ends with an
//! fsync of the shard's directory. The shards of one file land in one
//! directory, many at once: one fsync that starts after several renames
//! makes all of them durable, so concurrent writers share it instead of
//! each paying a journal commit (on ext4, each is a device flush).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Directory syncs shared between the writers of one store.
#[derive(Debug, Default)]
pub(crate) struct DirSyncs {
    dirs: Mutex<HashMap<PathBuf, Arc<DirSync>>>,
}

/// One directory's syncs: tickets are taken after a rename; a sync that
/// starts once ticket t is taken covers every ticket up to t.
#[derive(Debug, Default)]
struct DirSync {
    state: Mutex<SyncState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct SyncState {
    /// The last ticket taken.
    taken: u64,
    /// Every ticket up to this one is on disk.
    synced: u64,
    /// A sync is under way.
    running: bool,
}

impl DirSyncs {
    /// Returns once everything renamed into `dir` before the call is on
    /// disk: by an fsync of `dir` that this call makes, or one another
    /// writer started after this call began.
    pub(crate) fn sync(&self, dir: &Path) -> std::io::Result<()> {
        self.sync_with(dir, |d| std::fs::File::open(d)?.sync_all())
    }

    /// [`DirSyncs::sync`] with `fsync` doing the syncing (tests count it).
    pub(crate) fn sync_with(
        &self,
        dir: &Path,
        fsync: impl Fn(&Path) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let one = {
            let mut dirs = self.dirs.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(dirs.entry(dir.to_path_buf()).or_default())
        };
        let mut state = one.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.taken += 1;
        let ticket = state.taken;
        loop {
            if state.synced >= ticket {
                return Ok(());
            }
            if state.running {
                state = one.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // This writer syncs for everyone who has a ticket by now.
            state.running = true;
            let covers = state.taken;
            drop(state);
            let result = fsync(dir);
            state = one.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.running = false;
            if result.is_ok() {
                state.synced = state.synced.max(covers);
            }
            one.done.notify_all();
            // A failed sync is this writer's error; those waiting on it
            // see nothing synced and try again themselves.
            result?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DirSyncs;
    use std::path::Path;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    #[test]
    fn concurrent_writers_share_syncs_and_each_waits_for_one_that_started_after_it() {
        let syncs = DirSyncs::default();
        let fsyncs = AtomicUsize::new(0);
        // Each sync records the newest ticket it could cover; every writer
        // must return only after a sync began after it took its ticket.
        let started = AtomicUsize::new(0);
        let finished = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..20 {
                        let before = started.load(SeqCst);
                        syncs
                            .sync_with(Path::new("/d"), |_| {
                                started.fetch_add(1, SeqCst);
                                fsyncs.fetch_add(1, SeqCst);
                                std::thread::sleep(Duration::from_millis(2));
                                finished.fetch_add(1, SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        // A sync that started after this writer began has finished.
                        assert!(finished.load(SeqCst) > before);
                    }
                });
            }
        });
        let n = fsyncs.load(SeqCst);
        assert!((1..16 * 20).contains(&n), "{n} fsyncs for 320 writes");
    }

    #[test]
    fn a_failed_sync_fails_its_writer_and_the_next_one_tries_again() {
        let syncs = DirSyncs::default();
        let err = syncs.sync_with(Path::new("/d"), |_| Err(std::io::Error::other("disk gone")));
        assert!(err.is_err());
        let calls = AtomicUsize::new(0);
        syncs
            .sync_with(Path::new("/d"), |_| {
                calls.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap();
        assert_eq!(calls.load(SeqCst), 1);
        // Other directories are synced on their own.
        syncs
            .sync_with(Path::new("/e"), |_| {
                calls.fetch_add(1, SeqCst);
                Ok(())
            })
            .unwrap();
        assert_eq!(calls.load(SeqCst), 2);
    }
}
