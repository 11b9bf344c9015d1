//! The file store's core, with no network in it.
//!
//! A file is read in chunks (1 MiB by default); each chunk is encrypted
//! with AES-256-GCM under the file's own random data key ([`crypto`]), cut
//! into k data shards and extended with m parity shards by Reed-Solomon
//! coding ([`erasure`]), and each shard, behind a self-describing header
//! ([`mod@format`]), goes to a different node ([`placement`]) through the
//! [`ShardStore`] trait. The [`index`] (redb) keeps each file's record and
//! [`Manifest`]: which node holds which shard and its BLAKE3. [`Store`] ties
//! it together: streaming put and get with bounded memory, delete, repair,
//! redistribution onto new nodes, and the index as one sealed blob
//! ([`Store::export_index`], [`Store::recover`]).
//!
//! The on-disk format is specified in `docs/store-format.md`.
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use cloudshell_store::{KeySource, LocalDirStore, Node, Store, StoreSettings};
//!
//! let dir = tempfile::tempdir()?;
//! let nodes = (0..9)
//!     .map(|i| {
//!         let shards = LocalDirStore::open(dir.path().join(format!("node{i}")), 1 << 30)?;
//!         Ok(Node::new(format!("node{i}"), format!("region{i}"), Arc::new(shards)))
//!     })
//!     .collect::<Result<Vec<_>, cloudshell_store::ShardError>>()?;
//! let store = Store::open(
//!     &dir.path().join("index.redb"),
//!     &KeySource::NoEncryption,
//!     nodes,
//!     StoreSettings::default(),
//! )?;
//! store.put("hello.txt", &b"hello, world"[..]).await?;
//! let mut out = Vec::new();
//! store.get("hello.txt", &mut out).await?;
//! assert_eq!(out, b"hello, world");
//! # Ok(()) }
//! ```

pub mod backup;
mod buffers;
pub mod crypto;
mod dir_sync;
pub mod erasure;
mod export;
pub mod format;
mod holds;
pub mod index;
pub mod maintenance;
pub mod malloc;
pub mod placement;
mod read;
pub mod shard_store;
mod store;

pub use crypto::{KdfParams, KeyError, MasterKey};
pub use format::{FileId, ShardHeader, ShardKey};
pub use index::{FileRecord, Manifest};
pub use read::{ChunkSender, ChunkStream, Version, chunk_channel};
pub use shard_store::{LocalDirStore, ShardError, ShardStore, StoreStats};
pub use store::{
    CHUNKS_IN_FLIGHT, DEFAULT_CHUNK_SIZE, DrainReport, EncodedChunk, KeySource, LATE_WRITE_LIMIT,
    NO_QUOTA, NewKey, Node, PUT_SHARD_WINDOW, PutReport, RedistributeReport, RepairReport,
    STATS_WAIT, STORE_SHARD_BUDGET, SUSPECT_FOR, ShardGap, Store, StoreError, StoreSettings,
    WRITE_HEDGE_FACTOR, WRITE_HEDGE_FIRST, WRITE_HEDGE_MAX, WRITE_HEDGE_MIN, WRITES_PER_NODE,
    encode_chunk, largest_shard,
};
