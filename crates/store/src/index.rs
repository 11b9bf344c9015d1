//! The index: files, manifests, nodes and the keyring, in `redb`.
//!
//! Records are `postcard` behind a one-byte record version, so they can grow
//! without ambiguity. A file's record and manifest are written in one
//! transaction, after its shards are durable: that transaction is the
//! moment the file becomes visible.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::crypto::KdfParams;
use crate::format::FileId;

const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
const MANIFESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("manifests");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// Opaque blobs the store's user keeps with the index (the daemon's S3
/// metadata), so they travel in exports and backups with it.
const EXTRAS: TableDefinition<&str, &[u8]> = TableDefinition::new("extras");
/// The version byte in front of every record. Do not change meanings.
const RECORD_VERSION: u8 = 1;

/// Index errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The database failed.
    #[error("index database: {0}")]
    Database(String),
    /// A record did not decode.
    #[error("index record is corrupt: {0}")]
    Corrupt(String),
    /// A file the operation names is not in the index.
    #[error("no file named {0}")]
    NoSuchFile(String),
}

fn db<E: std::fmt::Display>(e: E) -> IndexError {
    IndexError::Database(e.to_string())
}

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
fn stored<T: for<'de> Deserialize<'de>>(
    value: Option<redb::AccessGuard<'_, &[u8]>>,
) -> Result<Option<T>, IndexError> {
    value.map(|v| decode(v.value())).transpose()
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
    /// BLAKE3 of the whole content.
    pub blake3: [u8; 32],
}

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
    /// The extras ([`Index::set_extra`]), by name.
    pub extras: BTreeMap<String, Vec<u8>>,
}

/// The index database.
#[derive(Debug)]
pub struct Index {
    db: redb::Database,
}

/// Bytes of index pages kept in memory.
const INDEX_CACHE_BYTES: usize = 32 << 20;

impl Index {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: &Path) -> Result<Self, IndexError> {
        // redb caches up to 1 GiB of pages by default: the daemon's memory
        // would grow with the number of files until the whole index was
        // held. The OS page cache keeps the rest warm.
        let database = redb::Builder::new()
            .set_cache_size(INDEX_CACHE_BYTES)
            .create(path)
            .map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(FILES).map_err(db)?;
        txn.open_table(MANIFESTS).map_err(db)?;
        txn.open_table(META).map_err(db)?;
        txn.open_table(NODES).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self { db: database })
    }

    /// The keyring, once the store has one.
    pub fn keyring(&self) -> Result<Option<Keyring>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(META).map_err(db)?;
        stored(t.get("keyring").map_err(db)?)
    }

    /// Sets the keyring and rewraps data keys in one transaction.
    pub fn set_keyring(
        &self,
        keyring: &Keyring,
        rewrapped: &[(String, Vec<u8>)],
    ) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            meta.insert("keyring", encode(keyring).as_slice())
                .map_err(db)?;
            let mut files = txn.open_table(FILES).map_err(db)?;
            for (name, wrapped) in rewrapped {
                let Some(mut rec) = stored::<FileRecord>(files.get(name.as_str()).map_err(db)?)?
                else {
                    continue;
                };
                rec.wrapped_key = Some(wrapped.clone());
                files
                    .insert(name.as_str(), encode(&rec).as_slice())
                    .map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// Makes a file visible: its record and manifest in one transaction.
    /// Returns the record and manifest it replaced, if any.
    pub fn commit_file(
        &self,
        record: &FileRecord,
        manifest: &Manifest,
    ) -> Result<Option<(FileRecord, Manifest)>, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        let replaced;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            let old: Option<FileRecord> = stored(files.get(record.name.as_str()).map_err(db)?)?;
            replaced = match old {
                Some(old) => {
                    let m = stored(manifests.remove(old.file_id.0.as_slice()).map_err(db)?)?;
                    m.map(|m| (old, m))
                }
                None => None,
            };
            files
                .insert(record.name.as_str(), encode(record).as_slice())
                .map_err(db)?;
            manifests
                .insert(manifest.file_id.0.as_slice(), encode(manifest).as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(replaced)
    }

    /// Replaces a file's manifest (after repair).
    pub fn update_manifest(&self, manifest: &Manifest) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            manifests
                .insert(manifest.file_id.0.as_slice(), encode(manifest).as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    /// A file's record and manifest.
    pub fn file(&self, name: &str) -> Result<Option<(FileRecord, Manifest)>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let files = txn.open_table(FILES).map_err(db)?;
        let manifests = txn.open_table(MANIFESTS).map_err(db)?;
        let Some(rec) = stored::<FileRecord>(files.get(name).map_err(db)?)? else {
            return Ok(None);
        };
        let manifest = stored::<Manifest>(manifests.get(rec.file_id.0.as_slice()).map_err(db)?)?
            .ok_or_else(|| IndexError::Corrupt(format!("{name} has no manifest")))?;
        Ok(Some((rec, manifest)))
    }

    /// Every file's record, by name.
    pub fn files(&self) -> Result<Vec<FileRecord>, IndexError> {
        self.all(FILES)
    }

    /// Every record of a name-keyed table, in key order.
    fn all<T: for<'de> Deserialize<'de>>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(table).map_err(db)?;
        table
            .iter()
            .map_err(db)?
            .map(|entry| {
                let (_, v) = entry.map_err(db)?;
                decode(v.value())
            })
            .collect()
    }

    /// Records a node (kept as first recorded if it is already known).
    pub fn add_node(&self, node: &NodeRecord) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut nodes = txn.open_table(NODES).map_err(db)?;
            if nodes.get(node.id.as_str()).map_err(db)?.is_none() {
                nodes
                    .insert(node.id.as_str(), encode(node).as_slice())
                    .map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// Every known node, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, IndexError> {
        self.all(NODES)
    }

    /// Files and manifests, for an export.
    pub fn contents(&self) -> Result<IndexContents, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let manifests = txn.open_table(MANIFESTS).map_err(db)?;
        let files = self.files()?;
        let mut out = Vec::with_capacity(files.len());
        for f in &files {
            if let Some(m) = manifests.get(f.file_id.0.as_slice()).map_err(db)? {
                out.push(decode(m.value())?);
            }
        }
        let mut extras = BTreeMap::new();
        match txn.open_table(EXTRAS) {
            Ok(table) => {
                for entry in table.iter().map_err(db)? {
                    let (k, v) = entry.map_err(db)?;
                    extras.insert(k.value().to_owned(), v.value().to_vec());
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(db(e)),
        }
        Ok(IndexContents {
            files,
            manifests: out,
            extras,
        })
    }

    /// Loads an export into this (empty) index, with its keyring, in one
    /// transaction.
    pub fn import(&self, keyring: &Keyring, contents: &IndexContents) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            if files.iter().map_err(db)?.next().is_some() {
                return Err(IndexError::Corrupt(
                    "the index already holds files; import into a new one".into(),
                ));
            }
            meta.insert("keyring", encode(keyring).as_slice())
                .map_err(db)?;
            for f in &contents.files {
                files
                    .insert(f.name.as_str(), encode(f).as_slice())
                    .map_err(db)?;
            }
            for m in &contents.manifests {
                manifests
                    .insert(m.file_id.0.as_slice(), encode(m).as_slice())
                    .map_err(db)?;
            }
            let mut extras = txn.open_table(EXTRAS).map_err(db)?;
            for (name, value) in &contents.extras {
                extras.insert(name.as_str(), value.as_slice()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// Keeps `value` under `name` with the index: it goes into exports and
    /// index backups, and comes back with [`Index::extra`] after a recovery.
    pub fn set_extra(&self, name: &str, value: &[u8]) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut extras = txn.open_table(EXTRAS).map_err(db)?;
            extras.insert(name, value).map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    /// The extra kept under `name`, if any.
    pub fn extra(&self, name: &str) -> Result<Option<Vec<u8>>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let extras = match txn.open_table(EXTRAS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db(e)),
        };
        Ok(extras.get(name).map_err(db)?.map(|v| v.value().to_vec()))
    }

    /// Gives file `from` the name `to` in one transaction, replacing a file
    /// of that name. Returns what was replaced. Only the index changes: the
    /// shards are keyed by file id, so renaming moves no data.
    pub fn rename_file(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Option<(FileRecord, Manifest)>, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        let replaced;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            let Some(mut rec) = stored::<FileRecord>(files.remove(from).map_err(db)?)? else {
                return Err(IndexError::NoSuchFile(from.to_owned()));
            };
            let old: Option<FileRecord> = stored(files.get(to).map_err(db)?)?;
            replaced = match old {
                Some(old) if old.file_id != rec.file_id => {
                    stored(manifests.remove(old.file_id.0.as_slice()).map_err(db)?)?
                        .map(|m| (old, m))
                }
                _ => None,
            };
            to.clone_into(&mut rec.name);
            files.insert(to, encode(&rec).as_slice()).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(replaced)
    }

    /// Removes a file; returns what was removed.
    pub fn remove_file(&self, name: &str) -> Result<Option<(FileRecord, Manifest)>, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        let removed;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            let rec: Option<FileRecord> = stored(files.remove(name).map_err(db)?)?;
            removed = match rec {
                Some(rec) => stored(manifests.remove(rec.file_id.0.as_slice()).map_err(db)?)?
                    .map(|m| (rec, m)),
                None => None,
            };
        }
        txn.commit().map_err(db)?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_version_and_garbage_is_an_error() {
        let m = Manifest {
            file_id: FileId([3; 16]),
            chunks: vec![ChunkEntry {
                payload_len: 10,
                shards: vec![ShardLocation {
                    node: "n1".into(),
                    blake3: [1; 32],
                }],
            }],
        };
        let b = encode(&m);
        assert_eq!(b[0], RECORD_VERSION);
        assert_eq!(decode::<Manifest>(&b).unwrap(), m);
        assert!(decode::<Manifest>(&[]).is_err());
        assert!(decode::<Manifest>(&[9, 1, 2]).is_err());
        assert!(decode::<Manifest>(&b[..b.len() - 1]).is_err());
    }
}
