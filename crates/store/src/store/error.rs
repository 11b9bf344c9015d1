//! Why a store operation failed.

use crate::crypto::KeyError;
use crate::erasure::CodingError;
use crate::index::IndexError;
use crate::shard_store::ShardError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No file by that name.
    #[error("no file named {0:?}")]
    NotFound(String),
    /// Too many shards of a chunk are lost or corrupt.
    #[error("{name:?} is unrecoverable: chunk {chunk} has {have} good shards of the {k} needed")]
    Unrecoverable {
        /// The file.
        name: String,
        /// The chunk.
        chunk: u64,
        /// Good shards found.
        have: usize,
        /// Needed.
        k: usize,
    },
    /// The store's key was wrong or missing.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key source does not match how the store was made.
    #[error("{0}")]
    KeyMismatch(&'static str),
    /// Bad redundancy settings.
    #[error(transparent)]
    Coding(#[from] CodingError),
    /// No node to write to.
    #[error("no node is online to store shards on")]
    NoNodes,
    /// A node to remove still holds shards the index names.
    #[error(
        "node {id} still holds {shards} shards of {files} files: drain it first (its shards \
         move to the other nodes)"
    )]
    NodeInUse {
        /// Which node.
        id: String,
        /// Shards on it.
        shards: usize,
        /// Files they belong to.
        files: usize,
    },
    /// The nodes with room cannot take a chunk's shards; nothing was
    /// written.
    #[error(
        "the store is full: the nodes have room for {room} of the {need} shards of a chunk \
         ({} full)",
        full.join(", ")
    )]
    StoreFull {
        /// Shards of a chunk the nodes with room can take.
        room: usize,
        /// Shards a chunk has.
        need: usize,
        /// The nodes without room.
        full: Vec<String>,
    },
    /// Writing shards failed; nothing was made visible.
    #[error("storing shard {shard} on node {node} failed; the file was not stored")]
    ShardWrite {
        /// The shard.
        shard: String,
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: ShardError,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Local input or output failed.
    #[error("input or output failed")]
    Io(#[from] std::io::Error),
    /// A worker task failed (panicked or was cancelled).
    #[error("internal task failed")]
    Task(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No index backup on the nodes decodes; each generation found, and
    /// why not. Nothing was written.
    #[error("no index backup on the nodes could be read: {}", list_skipped(.0))]
    NoBackup(Vec<SkippedBackup>),
}

/// An index backup generation recovery passed over, and why
/// ([`crate::backup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedBackup {
    /// Its generation (milliseconds since the epoch when written).
    pub generation: u64,
    /// Why it did not decode.
    pub why: String,
}

impl std::fmt::Display for SkippedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backup {}: {}", self.generation, self.why)
    }
}

pub(crate) fn list_skipped(s: &[SkippedBackup]) -> String {
    s.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
