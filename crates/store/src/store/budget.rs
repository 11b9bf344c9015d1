//! How much chunk data a store holds in memory at once, counted in shards:
//! a put holds a chunk's shards until each is acknowledged (and lets go of
//! each as it is), a get holds the shards of the chunks it reads ahead and
//! their plaintext. Two bounds: one per put (how far the fastest node may
//! run ahead of the slowest) and one for the whole store (however many
//! clients there are).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::StoreError;

/// Shards in memory across every put and get of a store at once (with
/// 1 MiB chunks coded 6 + 3, a shard is about 175 KB: some 45 MB: the
/// daemon stays within 150 MiB while clients move large files).
pub const STORE_SHARD_BUDGET: usize = 256;

/// Shards one put keeps written but not yet acknowledged. Each node's
/// writes go on while another node is still busy with an older chunk's
/// shard, until the put holds this many: so a chunk's slowest node does
/// not set the pace of the others (with 1 MiB chunks, about 21 chunks and
/// 33 MB; a node 220 ms away at 4 MB/s holds about five shards in its
/// pipe).
pub const PUT_SHARD_WINDOW: usize = 192;

/// What a chunk read ahead counts against the budget, in shards: the `k`
/// shards fetched and the chunk decoded from them.
pub(crate) fn read_cost(k: usize) -> u32 {
    u32::try_from(2 * k).unwrap_or(u32::MAX)
}

/// Room for some shards in memory, in a put's window and in the store's
/// budget. Dropped (or split and dropped a shard at a time), it gives the
/// room back.
#[derive(Debug)]
pub(crate) struct Budget {
    store: OwnedSemaphorePermit,
    put: Option<OwnedSemaphorePermit>,
}

impl Budget {
    /// Waits for room for `shards` in the store (and in `window`, a put's).
    /// The caller must not hold room it only gives back when polled while
    /// waiting here (a put polls its chunks meanwhile: see `put`).
    pub(crate) async fn acquire(
        store: &Arc<Semaphore>,
        window: Option<&Arc<Semaphore>>,
        shards: u32,
    ) -> Result<Self, StoreError> {
        let closed = |e: tokio::sync::AcquireError| StoreError::Task(e.into());
        // The put's own window first: a put at its limit waits on its own
        // nodes without taking the store's room from others meanwhile.
        let put = match window {
            Some(w) => Some(
                Arc::clone(w)
                    .acquire_many_owned(shards)
                    .await
                    .map_err(closed)?,
            ),
            None => None,
        };
        let store = Arc::clone(store)
            .acquire_many_owned(shards)
            .await
            .map_err(closed)?;
        Ok(Self { store, put })
    }

    /// Room for `shards` in the store now, if there is.
    pub(crate) fn try_acquire(store: &Arc<Semaphore>, shards: u32) -> Option<Self> {
        let store = Arc::clone(store).try_acquire_many_owned(shards).ok()?;
        Some(Self { store, put: None })
    }

    /// One shard's room out of this (none when this holds no more).
    pub(crate) fn take_one(&mut self) -> Option<Self> {
        let store = self.store.split(1)?;
        let put = match &mut self.put {
            Some(p) => Some(p.split(1)?),
            None => None,
        };
        Some(Self { store, put })
    }
}
