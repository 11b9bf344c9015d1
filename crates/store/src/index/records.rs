//! The index's records: what a file, a manifest, a node and the keyring
//! are on disk, each `postcard` behind a one-byte version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::IndexError;
use crate::crypto::KdfParams;
use crate::format::FileId;

/// The version byte in front of every record. Do not change meanings.
pub(crate) const RECORD_VERSION: u8 = 1;
/// The version byte of a file record with attributes and parts (a version
/// 1 file record has neither). Do not change meanings.
pub(crate) const FILE_RECORD_VERSION: u8 = 2;
/// Encodes a record with its version byte.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![RECORD_VERSION];
    // Invariant: postcard serializes any of our plain structs into a Vec.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

/// Decodes a record written by [`encode`]; any input gives a value or an error.
pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, IndexError> {
    match bytes.split_first() {
        Some((&RECORD_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| IndexError::Corrupt(e.to_string()))
        }
        Some((v, _)) => Err(IndexError::Corrupt(format!("unknown record version {v}"))),
        None => Err(IndexError::Corrupt("empty record".into())),
    }
}

/// Decodes a value read from a table, if there was one.
pub(crate) fn stored<T: for<'de> Deserialize<'de>>(
    value: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<T>, IndexError> {
    value.map(|v| decode(v.value())).transpose()
}

/// Encodes a file record (record version 2).
pub fn encode_file(record: &FileRecord) -> Vec<u8> {
    let mut out = vec![FILE_RECORD_VERSION];
    // Invariant: postcard serializes any of our plain structs into a Vec.
    out.extend(postcard::to_stdvec(record).unwrap_or_default());
    out
}

/// Decodes a file record of either version; any input gives a value or an
/// error.
pub fn decode_file(bytes: &[u8]) -> Result<FileRecord, IndexError> {
    match bytes.split_first() {
        Some((&FILE_RECORD_VERSION, rest)) => {
            postcard::from_bytes(rest).map_err(|e| IndexError::Corrupt(e.to_string()))
        }
        Some((&RECORD_VERSION, _)) => decode::<FileRecordV1>(bytes).map(FileRecord::from),
        Some((v, _)) => Err(IndexError::Corrupt(format!("unknown record version {v}"))),
        None => Err(IndexError::Corrupt("empty record".into())),
    }
}

/// Decodes a file record read from the files table, if there was one.
pub(crate) fn stored_file(
    value: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<FileRecord>, IndexError> {
    value.map(|v| decode_file(v.value())).transpose()
}

/// How the master key is obtained, and the value that checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Keyring {
    /// Argon2id of a passphrase.
    Passphrase {
        /// Salt.
        salt: [u8; 16],
        /// Parameters.
        params: KdfParams,
        /// [`crate::crypto::MasterKey::check_value`].
        check: [u8; 32],
    },
    /// A 32-byte key file.
    KeyFile {
        /// The check value.
        check: [u8; 32],
    },
    /// No encryption, by explicit choice.
    Unencrypted,
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Its name (a path-like key).
    pub name: String,
    /// Its id.
    pub file_id: FileId,
    /// Bytes.
    pub size: u64,
    /// Plaintext bytes per chunk (the last may be shorter).
    pub chunk_size: u32,
    /// Data shards per chunk.
    pub k: u8,
    /// Parity shards per chunk.
    pub m: u8,
    /// The data key wrapped by the master key; `None` when unencrypted.
    pub wrapped_key: Option<Vec<u8>>,
    /// When it was stored, seconds since the epoch.
    pub created: i64,
    /// BLAKE3 of the whole content (all zero for a file made of parts).
    pub blake3: [u8; 32],
    /// What the store's user keeps with this version of the file (the
    /// daemon's S3 object metadata): opaque here, and switched with the
    /// data in the same transaction, so a reader never sees one version's
    /// bytes with another's metadata.
    pub attrs: Vec<u8>,
    /// For a file made of other files (an S3 multipart object): their
    /// names, in order; it has no chunks of its own. The parts belong to
    /// it: they go when it is removed or replaced.
    pub parts: Vec<String>,
}

/// A file record as record version 1 wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecordV1 {
    pub(crate) name: String,
    pub(crate) file_id: FileId,
    pub(crate) size: u64,
    pub(crate) chunk_size: u32,
    pub(crate) k: u8,
    pub(crate) m: u8,
    pub(crate) wrapped_key: Option<Vec<u8>>,
    pub(crate) created: i64,
    pub(crate) blake3: [u8; 32],
}

impl From<FileRecordV1> for FileRecord {
    fn from(v: FileRecordV1) -> Self {
        Self {
            name: v.name,
            file_id: v.file_id,
            size: v.size,
            chunk_size: v.chunk_size,
            k: v.k,
            m: v.m,
            wrapped_key: v.wrapped_key,
            created: v.created,
            blake3: v.blake3,
            attrs: Vec::new(),
            parts: Vec::new(),
        }
    }
}

/// A file that a change took out of the index (replaced or removed), with
/// its manifest: its shards are garbage once no reader holds it.
pub type Displaced = (FileRecord, Manifest);

/// Where one shard is and what it hashes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLocation {
    /// The node holding it.
    pub node: String,
    /// BLAKE3 of the whole shard blob (header and data).
    pub blake3: [u8; 32],
}

/// One chunk: its payload length and its k + m shards, by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Bytes of payload (ciphertext with tag, or plaintext).
    pub payload_len: u32,
    /// Shard `i` is `shards[i]`.
    pub shards: Vec<ShardLocation>,
}

/// Where every shard of a file is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The file.
    pub file_id: FileId,
    /// Its chunks in order.
    pub chunks: Vec<ChunkEntry>,
}

impl ChunkEntry {
    /// Shard indices that share a node with an earlier shard of the chunk
    /// (written while too few nodes were up): each such node loss costs
    /// the chunk more than one shard.
    pub fn crowded(&self) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        (0..self.shards.len())
            .filter(|&i| !seen.insert(self.shards[i].node.as_str()))
            .collect()
    }
}

/// A node the store knows, whether or not it is reachable now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Unique id.
    pub id: String,
    /// Region.
    pub region: String,
    /// When it was first seen, seconds since the epoch.
    pub added: i64,
}

/// Everything in the index but the keyring: what an export seals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexContents {
    /// File records.
    pub files: Vec<FileRecord>,
    /// Their manifests.
    pub manifests: Vec<Manifest>,
    /// The extras ([`super::Index::set_extra`]), by name.
    pub extras: BTreeMap<String, Vec<u8>>,
}
