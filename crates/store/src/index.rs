//! The index: files, manifests, nodes and the keyring, in `redb`.
//!
//! Records are `postcard` behind a one-byte record version, so they can grow
//! without ambiguity. A file's record and manifest are written in one
//! transaction, after its shards are durable: that transaction is the
//! moment the file becomes visible.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::format::FileId;

const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");
const MANIFESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("manifests");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The `META` key that says backups sealed with a replaced key may remain.
const OLD_KEY_BACKUPS: &str = "old_key_backups";
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
/// Opaque blobs the store's user keeps with the index (the daemon's S3
/// metadata), so they travel in exports and backups with it.
const EXTRAS: TableDefinition<&str, &[u8]> = TableDefinition::new("extras");
/// Which file each part belongs to: part name -> the name of the file made
/// of it. A part cannot be replaced, renamed or removed on its own.
const OWNERS: TableDefinition<&str, &str> = TableDefinition::new("owners");

/// Index errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// The database failed.
    #[error("index database")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A record did not decode.
    #[error("index record is corrupt: {0}")]
    Corrupt(String),
    /// A file the operation names is not in the index.
    #[error("no file named {0}")]
    NoSuchFile(String),
    /// The file is a part of another, and goes only with it.
    #[error("{part} is a part of {owner}: it is replaced or removed only with {owner}")]
    PartOf {
        /// The part.
        part: String,
        /// The file made of it.
        owner: String,
    },
}

fn db<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> IndexError {
    IndexError::Database(e.into())
}

mod records;

pub use records::*;
pub(crate) use records::{stored, stored_file};

/// The index database.
#[derive(Debug)]
pub struct Index {
    db: redb::Database,
}

/// Bytes of index pages kept in memory.
const INDEX_CACHE_BYTES: usize = 32 << 20;

type FilesTable<'t> = redb::Table<'t, &'static str, &'static [u8]>;
type ManifestsTable<'t> = redb::Table<'t, &'static [u8], &'static [u8]>;
type OwnersTable<'t> = redb::Table<'t, &'static str, &'static str>;

/// Refuses to change `name` on its own when it is a part of another file.
fn not_a_part(owners: &OwnersTable<'_>, name: &str) -> Result<(), IndexError> {
    match owners.get(name).map_err(db)? {
        Some(owner) => Err(IndexError::PartOf {
            part: name.to_owned(),
            owner: owner.value().to_owned(),
        }),
        None => Ok(()),
    }
}

/// The manifest of a file with no chunks of its own.
fn empty_manifest(file_id: FileId) -> Manifest {
    Manifest {
        file_id,
        chunks: Vec::new(),
    }
}

/// Takes `old` out of the index, with its manifest and the parts it owns
/// (but those named in `keep`, which a new record takes over), inside a
/// write transaction. Returns what was taken out.
fn displace(
    files: &mut FilesTable<'_>,
    manifests: &mut ManifestsTable<'_>,
    owners: &mut OwnersTable<'_>,
    old: FileRecord,
    keep: &[String],
) -> Result<Vec<Displaced>, IndexError> {
    let mut out = Vec::new();
    for part in &old.parts {
        owners.remove(part.as_str()).map_err(db)?;
    }
    for part in old.parts.iter().filter(|p| !keep.contains(p)) {
        if let Some(p) = stored_file(files.remove(part.as_str()).map_err(db)?)? {
            let m = stored(manifests.remove(p.file_id.0.as_slice()).map_err(db)?)?
                .unwrap_or_else(|| empty_manifest(p.file_id));
            out.push((p, m));
        }
    }
    let m = stored(manifests.remove(old.file_id.0.as_slice()).map_err(db)?)?
        .unwrap_or_else(|| empty_manifest(old.file_id));
    out.push((old, m));
    Ok(out)
}

/// Keeps a replaced file under another name (an earlier version of an
/// object), with its parts: in the same transaction as its replacement,
/// so the file is never both gone and not yet kept.
fn keep_under(
    files: &mut FilesTable<'_>,
    owners: &mut OwnersTable<'_>,
    mut old: FileRecord,
    name: &str,
) -> Result<(), IndexError> {
    if files.get(name).map_err(db)?.is_some() {
        return Err(IndexError::Corrupt(format!(
            "cannot keep {} as {name}: that name is taken",
            old.name
        )));
    }
    for part in &old.parts {
        owners.insert(part.as_str(), name).map_err(db)?;
    }
    name.clone_into(&mut old.name);
    files
        .insert(name, encode_file(&old).as_slice())
        .map_err(db)?;
    Ok(())
}

/// What one name reads as at one moment: its record, and the files its
/// bytes are in, in order (itself, or its parts), with their manifests.
pub type Resolved = (FileRecord, Vec<(FileRecord, Manifest)>);

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
        txn.open_table(OWNERS).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self { db: database })
    }

    /// The keyring, once the store has one.
    pub fn keyring(&self) -> Result<Option<Keyring>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(META).map_err(db)?;
        stored(t.get("keyring").map_err(db)?)
    }

    /// Whether index backups sealed with a key replaced since may still be
    /// on the nodes (set by [`Index::rekey`], cleared once they are
    /// deleted).
    pub fn old_key_backups(&self) -> Result<bool, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(META).map_err(db)?;
        Ok(t.get(OLD_KEY_BACKUPS).map_err(db)?.is_some())
    }

    /// Records that the backups sealed with replaced keys are deleted.
    pub fn clear_old_key_backups(&self) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            meta.remove(OLD_KEY_BACKUPS).map_err(db)?;
        }
        txn.commit().map_err(db)
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
                let Some(mut rec) = stored_file(files.get(name.as_str()).map_err(db)?)? else {
                    continue;
                };
                rec.wrapped_key = Some(wrapped.clone());
                files
                    .insert(name.as_str(), encode_file(&rec).as_slice())
                    .map_err(db)?;
            }
        }
        txn.commit().map_err(db)
    }

    /// Replaces the keyring and every file's wrapped data key in one
    /// transaction: `rewrap` gives each wrapped key's new form. Either all
    /// of it is on disk or none of it is: the old key or the new one opens
    /// the store, never neither.
    pub fn rekey(
        &self,
        keyring: &Keyring,
        rewrap: impl Fn(&FileRecord, &[u8]) -> Result<Vec<u8>, IndexError>,
    ) -> Result<usize, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        let count = {
            let mut meta = txn.open_table(META).map_err(db)?;
            meta.insert("keyring", encode(keyring).as_slice())
                .map_err(db)?;
            // Until the backups sealed with the old key are deleted: a
            // restart before then must still delete them.
            meta.insert(OLD_KEY_BACKUPS, [1u8].as_slice()).map_err(db)?;
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut changed = Vec::new();
            for entry in files.iter().map_err(db)? {
                let (_, v) = entry.map_err(db)?;
                let Some(mut rec) = stored_file(Some(v))? else {
                    continue;
                };
                if let Some(w) = rec.wrapped_key.take() {
                    rec.wrapped_key = Some(rewrap(&rec, &w)?);
                    changed.push(rec);
                }
            }
            for rec in &changed {
                files
                    .insert(rec.name.as_str(), encode_file(rec).as_slice())
                    .map_err(db)?;
            }
            changed.len()
        };
        txn.commit().map_err(db)?;
        Ok(count)
    }

    /// Makes a file visible: its record and manifest in one transaction.
    /// Returns what it replaced (a file of that name, and its parts).
    pub fn commit_file(
        &self,
        record: &FileRecord,
        manifest: &Manifest,
    ) -> Result<Vec<Displaced>, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        let displaced;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            let mut owners = txn.open_table(OWNERS).map_err(db)?;
            not_a_part(&owners, &record.name)?;
            let old = stored_file(files.get(record.name.as_str()).map_err(db)?)?;
            displaced = match old {
                Some(old) => displace(&mut files, &mut manifests, &mut owners, old, &[])?,
                None => Vec::new(),
            };
            files
                .insert(record.name.as_str(), encode_file(record).as_slice())
                .map_err(db)?;
            manifests
                .insert(manifest.file_id.0.as_slice(), encode(manifest).as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(displaced)
    }

    /// Makes `record` (whose `parts` name files in the index) visible as a
    /// file made of those parts, in one transaction. Returns what it
    /// replaced; a part that is missing is an error and changes nothing.
    /// Its size is the sum of the parts' sizes, as they are in the index.
    pub fn compose(
        &self,
        record: &FileRecord,
        keep_replaced_as: Option<&str>,
    ) -> Result<(FileRecord, Vec<Displaced>), IndexError> {
        let mut record = record.clone();
        record.size = 0;
        let txn = self.db.begin_write().map_err(db)?;
        let displaced;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            let mut owners = txn.open_table(OWNERS).map_err(db)?;
            not_a_part(&owners, &record.name)?;
            for part in &record.parts {
                let owner = owners
                    .get(part.as_str())
                    .map_err(db)?
                    .map(|o| o.value().to_owned());
                if let Some(owner) = owner.filter(|o| *o != record.name) {
                    return Err(IndexError::PartOf {
                        part: part.clone(),
                        owner,
                    });
                }
                match stored_file(files.get(part.as_str()).map_err(db)?)? {
                    Some(p) if p.parts.is_empty() && *part != record.name => {
                        record.size += p.size;
                    }
                    Some(_) => {
                        return Err(IndexError::Corrupt(format!(
                            "{part} cannot be a part: it is made of parts or is the file itself"
                        )));
                    }
                    None => return Err(IndexError::NoSuchFile(part.clone())),
                }
            }
            let old = stored_file(files.get(record.name.as_str()).map_err(db)?)?;
            displaced = match (old, keep_replaced_as) {
                (Some(old), Some(keep)) => {
                    keep_under(&mut files, &mut owners, old, keep)?;
                    Vec::new()
                }
                (Some(old), None) => {
                    displace(&mut files, &mut manifests, &mut owners, old, &record.parts)?
                }
                (None, _) => Vec::new(),
            };
            for part in &record.parts {
                owners
                    .insert(part.as_str(), record.name.as_str())
                    .map_err(db)?;
            }
            files
                .insert(record.name.as_str(), encode_file(&record).as_slice())
                .map_err(db)?;
            manifests
                .insert(
                    record.file_id.0.as_slice(),
                    encode(&empty_manifest(record.file_id)).as_slice(),
                )
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok((record, displaced))
    }

    /// Replaces the manifest of `name` (after repair or a move) if `name`
    /// is still that file: false, and nothing written, when it was replaced
    /// or removed meanwhile.
    pub fn update_manifest(&self, name: &str, manifest: &Manifest) -> Result<bool, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let files = txn.open_table(FILES).map_err(db)?;
            let current = stored_file(files.get(name).map_err(db)?)?;
            if current.is_none_or(|r| r.file_id != manifest.file_id) {
                return Ok(false);
            }
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            manifests
                .insert(manifest.file_id.0.as_slice(), encode(manifest).as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// A file's record and manifest.
    pub fn file(&self, name: &str) -> Result<Option<(FileRecord, Manifest)>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let files = txn.open_table(FILES).map_err(db)?;
        let manifests = txn.open_table(MANIFESTS).map_err(db)?;
        let Some(rec) = stored_file(files.get(name).map_err(db)?)? else {
            return Ok(None);
        };
        let manifest = stored::<Manifest>(manifests.get(rec.file_id.0.as_slice()).map_err(db)?)?
            .ok_or_else(|| IndexError::Corrupt(format!("{name} has no manifest")))?;
        Ok(Some((rec, manifest)))
    }

    /// What `name` reads as now, in one read transaction: its record and
    /// the files holding its bytes with their manifests.
    pub fn resolve(&self, name: &str) -> Result<Option<Resolved>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let files = txn.open_table(FILES).map_err(db)?;
        let manifests = txn.open_table(MANIFESTS).map_err(db)?;
        let Some(rec) = stored_file(files.get(name).map_err(db)?)? else {
            return Ok(None);
        };
        let manifest_of = |r: &FileRecord| -> Result<Manifest, IndexError> {
            stored::<Manifest>(manifests.get(r.file_id.0.as_slice()).map_err(db)?)?
                .ok_or_else(|| IndexError::Corrupt(format!("{} has no manifest", r.name)))
        };
        let pieces = if rec.parts.is_empty() {
            vec![(rec.clone(), manifest_of(&rec)?)]
        } else {
            let mut pieces = Vec::with_capacity(rec.parts.len());
            for part in &rec.parts {
                let p = stored_file(files.get(part.as_str()).map_err(db)?)?.ok_or_else(|| {
                    IndexError::Corrupt(format!("{name}: its part {part} is not in the index"))
                })?;
                let m = manifest_of(&p)?;
                pieces.push((p, m));
            }
            pieces
        };
        Ok(Some((rec, pieces)))
    }

    /// The manifest of the file `file_id`, if it is in the index.
    pub fn manifest(&self, file_id: FileId) -> Result<Option<Manifest>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let manifests = txn.open_table(MANIFESTS).map_err(db)?;
        stored(manifests.get(file_id.0.as_slice()).map_err(db)?)
    }

    /// Every file's record, by name.
    pub fn files(&self) -> Result<Vec<FileRecord>, IndexError> {
        self.files_from("", None, usize::MAX)
    }

    /// Records of files whose names start with `prefix` and come after
    /// `after`, in name order, at most `limit`.
    pub fn files_from(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<FileRecord>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let files = txn.open_table(FILES).map_err(db)?;
        let start = match after {
            Some(a) if a >= prefix => a,
            _ => prefix,
        };
        let mut out = Vec::new();
        for entry in files.range(start..).map_err(db)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry.map_err(db)?;
            let name = k.value();
            if !name.starts_with(prefix) {
                break;
            }
            if after.is_some_and(|a| name <= a) {
                continue;
            }
            out.push(decode_file(v.value())?);
        }
        Ok(out)
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

    /// Forgets a node (removed from the store).
    pub fn remove_node(&self, id: &str) -> Result<(), IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut nodes = txn.open_table(NODES).map_err(db)?;
            nodes.remove(id).map_err(db)?;
        }
        txn.commit().map_err(db)
    }

    /// Every known node, by id.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let table = txn.open_table(NODES).map_err(db)?;
        table
            .iter()
            .map_err(db)?
            .map(|entry| {
                let (_, v) = entry.map_err(db)?;
                decode(v.value())
            })
            .collect()
    }

    /// Files and manifests, for an export.
    pub fn contents(&self) -> Result<IndexContents, IndexError> {
        let txn = self.db.begin_read().map_err(db)?;
        let manifests = txn.open_table(MANIFESTS).map_err(db)?;
        let mut files = Vec::new();
        for entry in txn.open_table(FILES).map_err(db)?.iter().map_err(db)? {
            let (_, v) = entry.map_err(db)?;
            files.push(decode_file(v.value())?);
        }
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
            let mut owners = txn.open_table(OWNERS).map_err(db)?;
            for f in &contents.files {
                files
                    .insert(f.name.as_str(), encode_file(f).as_slice())
                    .map_err(db)?;
                for part in &f.parts {
                    owners.insert(part.as_str(), f.name.as_str()).map_err(db)?;
                }
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
    /// of that name, and with `attrs` as its attributes when given. Returns
    /// what was replaced. Only the index changes: the shards are keyed by
    /// file id, so renaming moves no data.
    pub fn rename_file(
        &self,
        from: &str,
        to: &str,
        attrs: Option<&[u8]>,
        keep_replaced_as: Option<&str>,
    ) -> Result<Vec<Displaced>, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        let displaced;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            let mut owners = txn.open_table(OWNERS).map_err(db)?;
            not_a_part(&owners, from)?;
            not_a_part(&owners, to)?;
            let Some(mut rec) = stored_file(files.remove(from).map_err(db)?)? else {
                return Err(IndexError::NoSuchFile(from.to_owned()));
            };
            let old = stored_file(files.get(to).map_err(db)?)?;
            displaced = match (old, keep_replaced_as) {
                (Some(old), Some(keep)) if old.file_id != rec.file_id => {
                    keep_under(&mut files, &mut owners, old, keep)?;
                    Vec::new()
                }
                (Some(old), None) if old.file_id != rec.file_id => {
                    displace(&mut files, &mut manifests, &mut owners, old, &[])?
                }
                _ => Vec::new(),
            };
            // A file made of parts keeps them under its new name.
            for part in &rec.parts {
                owners.insert(part.as_str(), to).map_err(db)?;
            }
            to.clone_into(&mut rec.name);
            if let Some(a) = attrs {
                rec.attrs = a.to_vec();
            }
            files.insert(to, encode_file(&rec).as_slice()).map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(displaced)
    }

    /// Sets the attributes of `name`; false if there is no such file.
    pub fn set_attrs(&self, name: &str, attrs: &[u8]) -> Result<bool, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let rec = stored_file(files.get(name).map_err(db)?)?;
            let Some(mut rec) = rec else {
                return Ok(false);
            };
            rec.attrs = attrs.to_vec();
            files
                .insert(name, encode_file(&rec).as_slice())
                .map_err(db)?;
        }
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// Removes a file (and the parts it is made of); returns what was
    /// removed, or `None` if there was no such file.
    pub fn remove_file(&self, name: &str) -> Result<Option<Vec<Displaced>>, IndexError> {
        let txn = self.db.begin_write().map_err(db)?;
        let removed;
        {
            let mut files = txn.open_table(FILES).map_err(db)?;
            let mut manifests = txn.open_table(MANIFESTS).map_err(db)?;
            let mut owners = txn.open_table(OWNERS).map_err(db)?;
            not_a_part(&owners, name)?;
            let rec = stored_file(files.remove(name).map_err(db)?)?;
            removed = match rec {
                Some(rec) => Some(displace(&mut files, &mut manifests, &mut owners, rec, &[])?),
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

    #[test]
    fn a_version_1_file_record_reads_with_no_attributes_or_parts() {
        let v1 = FileRecordV1 {
            name: "a".into(),
            file_id: FileId([7; 16]),
            size: 5,
            chunk_size: 1 << 20,
            k: 6,
            m: 3,
            wrapped_key: None,
            created: 9,
            blake3: [2; 32],
        };
        let rec = decode_file(&encode(&v1)).unwrap();
        assert_eq!((rec.name.as_str(), rec.size), ("a", 5));
        assert!(rec.attrs.is_empty() && rec.parts.is_empty());
        let again = encode_file(&rec);
        assert_eq!(again[0], FILE_RECORD_VERSION);
        assert_eq!(decode_file(&again).unwrap(), rec);
        assert!(decode_file(&[]).is_err());
        assert!(decode_file(&[3, 0]).is_err());
        assert!(decode_file(&again[..again.len() - 1]).is_err());
    }
}
