//! Holds on files: whoever reads a version of a file, or writes, repairs
//! or moves one, holds its file id, and shards that became garbage while a
//! hold was on (the file was replaced or removed, or a copy moved) are
//! deleted only when the last hold goes. A reader therefore reads the
//! version it opened to its end, whatever happens to the name meanwhile.
//!
//! Holds live in memory: after a restart nobody holds anything, and the
//! orphan collector takes whatever garbage was still waiting.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::format::{FileId, ShardKey};
use crate::index::Index;
use crate::shard_store::ShardStore;

/// A shard that nothing needs any more, on its node.
#[derive(Clone)]
pub(crate) struct Garbage {
    /// The node's id.
    pub(crate) node: String,
    /// Where the node keeps its shards.
    pub(crate) shards: Arc<dyn ShardStore>,
    /// The shard.
    pub(crate) key: ShardKey,
}

/// Who holds which file, and the garbage waiting for them to let go.
pub(crate) struct Holds {
    index: Arc<Index>,
    map: Mutex<HashMap<FileId, Entry>>,
    /// Garbage whose delete failed (its node was away): tried again by
    /// [`Holds::retry_strays`], e.g. when a node comes back.
    strays: Mutex<Vec<Garbage>>,
}

#[derive(Default)]
struct Entry {
    count: usize,
    garbage: Vec<Garbage>,
}

impl std::fmt::Debug for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Holds")
            .field("held", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl Holds {
    pub(crate) fn new(index: Arc<Index>) -> Arc<Self> {
        Arc::new(Self {
            index,
            map: Mutex::new(HashMap::new()),
            strays: Mutex::new(Vec::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FileId, Entry>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Holds `file_id` until the returned guard is dropped.
    pub(crate) fn hold(self: &Arc<Self>, file_id: FileId) -> Hold {
        self.lock().entry(file_id).or_default().count += 1;
        Hold {
            holds: Arc::clone(self),
            file_id,
            released: false,
        }
    }

    /// Runs `resolve` and holds the file ids it returns, under one lock: no
    /// garbage can be handed in between the two, so a version resolved
    /// from the index stays whole for as long as it is held.
    pub(crate) fn resolve_and_hold<T, E>(
        self: &Arc<Self>,
        resolve: impl FnOnce() -> Result<(T, Vec<FileId>), E>,
    ) -> Result<(T, Vec<Hold>), E> {
        let mut map = self.lock();
        let (value, ids) = resolve()?;
        let holds = ids
            .into_iter()
            .map(|file_id| {
                map.entry(file_id).or_default().count += 1;
                Hold {
                    holds: Arc::clone(self),
                    file_id,
                    released: false,
                }
            })
            .collect();
        Ok((value, holds))
    }

    /// The files held now.
    pub(crate) fn held(&self) -> HashSet<FileId> {
        self.lock().keys().copied().collect()
    }

    /// Hands in shards that are garbage. Those of files someone holds wait
    /// for the last hold to go; the rest are returned, to delete now.
    /// Callers hand garbage in only after the index change that made it
    /// garbage has committed.
    pub(crate) fn discard(&self, garbage: Vec<Garbage>) -> Vec<Garbage> {
        let mut map = self.lock();
        let mut now = Vec::new();
        for g in garbage {
            match map.get_mut(&g.key.file_id) {
                Some(entry) => entry.garbage.push(g),
                None => now.push(g),
            }
        }
        now
    }

    fn release(&self, file_id: FileId) -> Vec<Garbage> {
        let mut map = self.lock();
        let Some(entry) = map.get_mut(&file_id) else {
            return Vec::new();
        };
        entry.count -= 1;
        if entry.count > 0 {
            return Vec::new();
        }
        map.remove(&file_id).map(|e| e.garbage).unwrap_or_default()
    }
}

/// A hold on one file; letting go deletes the garbage that waited for it.
pub(crate) struct Hold {
    holds: Arc<Holds>,
    file_id: FileId,
    /// Let go by [`Hold::release`] already.
    released: bool,
}

impl Hold {
    /// Lets go, and deletes the garbage that waited for this hold (when it
    /// was the last) before returning: an operation's own garbage is gone
    /// when the operation is.
    pub(crate) async fn release(mut self) {
        self.released = true;
        let garbage = self.holds.release(self.file_id);
        if !garbage.is_empty() {
            self.holds.delete(garbage).await;
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let garbage = self.holds.release(self.file_id);
        if garbage.is_empty() {
            return;
        }
        let holds = Arc::clone(&self.holds);
        // Outside a runtime nothing can be deleted now: the orphan
        // collector will find these shards.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { holds.delete(garbage).await });
        }
    }
}

impl Holds {
    /// Deletes garbage shards, but any that the index places on that very
    /// node again (a repair or a move put the same shard back there since).
    /// Those whose node cannot be reached are kept as strays.
    pub(crate) async fn delete(&self, garbage: Vec<Garbage>) {
        let mut manifests = HashMap::new();
        let mut deletes = FuturesUnordered::new();
        for g in garbage {
            let key = g.key;
            let manifest = manifests
                .entry(key.file_id)
                .or_insert_with(|| self.index.manifest(key.file_id).ok().flatten());
            let placed_here = manifest.as_ref().is_some_and(|m| {
                usize::try_from(key.chunk)
                    .ok()
                    .and_then(|c| m.chunks.get(c))
                    .and_then(|c| c.shards.get(usize::from(key.index)))
                    .is_some_and(|loc| loc.node == g.node)
            });
            if !placed_here {
                deletes.push(async move {
                    let result = g.shards.delete(key).await;
                    (g, result)
                });
            }
        }
        let mut failed = Vec::new();
        while let Some((garbage, result)) = deletes.next().await {
            if let Err(e) = result {
                tracing::debug!(
                    node = %garbage.node,
                    shard = %garbage.key.name(),
                    "could not delete a shard (kept to try again): {e}"
                );
                failed.push(garbage);
            }
        }
        if !failed.is_empty() {
            self.strays
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(failed);
        }
    }

    /// Tries again to delete the garbage whose delete failed; returns how
    /// many are still left.
    pub(crate) async fn retry_strays(&self) -> usize {
        let strays =
            std::mem::take(&mut *self.strays.lock().unwrap_or_else(PoisonError::into_inner));
        if !strays.is_empty() {
            self.delete(strays).await;
        }
        self.strays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
