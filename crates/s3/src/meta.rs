//! What S3 knows beyond the store's files. An object is the store file
//! `s3/BUCKET/KEY` (a multipart object: a file made of its parts), and its
//! ETag, content type, user metadata and time are that file's attributes
//! ([`ObjectMeta`], as JSON), so bytes and metadata switch in one index
//! transaction. Buckets and multipart uploads in progress are in
//! `DATA_DIR/s3.redb`. Object metadata kept there by earlier versions is
//! moved into the attributes at start ([`Meta::legacy_objects`]).

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::access::{Acl, DEFAULT_USER, PublicAccessBlock};
use crate::checksums::{StoredChecksum, UploadChecksum};
use serde::{Deserialize, Serialize};

const BUCKETS: TableDefinition<&str, u64> = TableDefinition::new("buckets");
/// Object metadata as earlier versions kept it, beside the bytes. Key:
/// `BUCKET` NUL `KEY`. Read once to move it into the store's attributes,
/// then emptied.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// Each bucket's owner and settings ([`BucketConfig`] as JSON), by name.
/// A bucket without a row here (made before owners existed) is the
/// default user's, with nothing set.
const BUCKET_CONFIG: TableDefinition<&str, &[u8]> = TableDefinition::new("bucket_config");
/// Multipart uploads in progress, by upload id.
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

/// A bucket's owner and what is set on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketConfig {
    /// The user who made it.
    pub owner: String,
    /// Its ACL; none is the owner's full control only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// Its policy, as given (checked when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its public access block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<PublicAccessBlock>,
    /// Its object ownership rule (`ObjectWriter`, `BucketOwnerPreferred`,
    /// `BucketOwnerEnforced`); none behaves as `ObjectWriter`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<String>,
    /// Its tags, in the order given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<(String, String)>>,
    /// Its CORS rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Vec<crate::cors::CorsRule>>,
    /// `Enabled` or `Suspended`; none for a bucket never versioned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<String>,
}

impl BucketConfig {
    /// A new bucket of `owner`'s.
    pub fn new(owner: &str) -> Self {
        Self {
            owner: owner.to_owned(),
            acl: None,
            policy: None,
            public_access_block: None,
            ownership: None,
            tags: None,
            cors: None,
            versioning: None,
        }
    }

    /// Whether new writes get version ids.
    pub fn versioning_enabled(&self) -> bool {
        self.versioning.as_deref() == Some("Enabled")
    }

    /// Whether versions are kept at all (enabled now or before).
    pub fn keeps_versions(&self) -> bool {
        self.versioning.is_some()
    }

    /// Its ACL, the owner's full control when none was set.
    pub fn acl(&self) -> Acl {
        self.acl
            .clone()
            .unwrap_or_else(|| Acl::private(&self.owner))
    }

    /// Its public access block, all off when none was set.
    pub fn block(&self) -> PublicAccessBlock {
        self.public_access_block.unwrap_or_default()
    }

    /// Whether object ACLs are switched off (`BucketOwnerEnforced`): the
    /// bucket's owner owns every object and only the bucket's ACL counts.
    pub fn acls_disabled(&self) -> bool {
        self.ownership.as_deref() == Some("BucketOwnerEnforced")
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// Its bucket.
    pub bucket: String,
    /// The key it will become.
    pub key: String,
    /// Content type given at creation.
    pub content_type: Option<String>,
    /// User metadata given at creation.
    pub metadata: BTreeMap<String, String>,
    /// Standard headers given at creation.
    #[serde(default)]
    pub headers: StandardHeaders,
    /// Seconds since the epoch.
    pub initiated: i64,
    /// Parts received: number -> (MD5 hex, bytes).
    pub parts: BTreeMap<i32, (String, u64)>,
    /// The store file each part is in (number -> name), recorded with its
    /// ETag in one transaction, so that of two sends of one part the one
    /// recorded is the one read. A part not here is at [`part_file`]'s name
    /// (uploads begun by earlier versions).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<i32, String>,
    /// Who the object will belong to (none: the bucket's owner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The ACL asked at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// The tags asked at creation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// The checksum every part carries and how the object's is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<UploadChecksum>,
    /// Each recorded part's checksum (base64), when the upload has one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub part_checksums: BTreeMap<i32, String>,
}

impl Upload {
    /// The store file that holds part `part` of this upload, `id`.
    pub fn file_of(&self, id: &str, part: i32) -> String {
        self.files
            .get(&part)
            .cloned()
            .unwrap_or_else(|| part_file(id, part))
    }
}

/// Where multipart uploads' parts are stored.
pub const UPLOADS_DIR: &str = ".s3-uploads/";
/// Where single-part objects are stored.
pub const OBJECTS_DIR: &str = "s3/";

/// The store file that held part `part` of upload `id` in earlier versions.
pub fn part_file(id: &str, part: i32) -> String {
    format!("{UPLOADS_DIR}{id}/{part:05}")
}

/// A fresh store file for one send of part `part` of upload `id`: each send
/// has its own, so sends of one part at once cannot mix their bytes.
pub fn new_part_file(id: &str, part: i32) -> String {
    format!("{UPLOADS_DIR}{id}/{part:05}-{:016x}", rand::random::<u64>())
}

/// Why the metadata database failed.
#[derive(Debug, thiserror::Error)]
#[error("S3 metadata: {0}")]
pub struct MetaError(String);

impl MetaError {
    /// An error that says `what`.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

fn db<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError(e.to_string())
}

/// One object's metadata: the attributes of its store file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Bytes (the store file's size is what counts).
    pub size: u64,
    /// The ETag without quotes: MD5 hex, or md5-of-md5s with `-N`.
    pub etag: String,
    /// Content type as given.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: BTreeMap<String, String>,
    /// The standard headers given with it.
    #[serde(default, skip_serializing_if = "StandardHeaders::is_empty")]
    pub headers: StandardHeaders,
    /// Seconds since the epoch of the last write.
    pub modified: i64,
    /// The user who wrote it; none (objects from before owners) is the
    /// bucket's owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Its ACL; none is its owner's full control only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acl: Option<Acl>,
    /// Its tags, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    /// Its additional checksum (objects from before checksums have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<StoredChecksum>,
    /// Its version id; none is the `null` version (every object of a
    /// bucket never versioned, and writes while versioning is suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// A delete marker: the key reads as deleted while this is current.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
    /// When it was written, in nanoseconds since the epoch: orders the
    /// versions of a key (0 for objects from before versions).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl ObjectMeta {
    /// The version id as S3 shows it (`null` for the null version).
    pub fn version(&self) -> &str {
        self.version_id.as_deref().unwrap_or("null")
    }
}

/// The standard HTTP headers S3 keeps with an object and returns with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardHeaders {
    /// `Cache-Control`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    /// `Content-Encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// `Content-Language`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// `Expires`, as an HTTP date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

impl StandardHeaders {
    /// True when none was given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

impl ObjectMeta {
    /// As attributes of a store file.
    pub fn to_attrs(&self) -> Vec<u8> {
        // Invariant: a struct of strings and numbers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The metadata of an object from its store file's record. A file with
    /// no readable attributes (stored by a version that kept them
    /// elsewhere, and not moved) is described from the record: its ETag is
    /// then not an MD5, and says so with a dash.
    pub fn of(record: &cloudshell_store::FileRecord) -> Self {
        let mut m: Self = serde_json::from_slice(&record.attrs).unwrap_or_else(|_| Self {
            size: record.size,
            etag: format!("{}-1", hex::encode(&record.blake3[..16])),
            content_type: None,
            metadata: BTreeMap::new(),
            modified: record.created,
            ..Self::default()
        });
        m.size = record.size;
        m
    }
}

/// Object metadata as earlier versions kept it: with the store files that
/// held a multipart object's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyObject {
    /// The metadata.
    #[serde(flatten)]
    pub meta: ObjectMeta,
    /// The parts' store files, in order, with their sizes; empty for an
    /// object in one file.
    #[serde(default)]
    pub parts: Vec<(String, u64)>,
}

/// The store file that holds an object's bytes.
pub fn file_name(bucket: &str, key: &str) -> String {
    format!("{OBJECTS_DIR}{bucket}/{key}")
}

fn object_key(bucket: &str, key: &str) -> String {
    format!("{bucket}\0{key}")
}

/// What [`Meta::export`] writes. Object metadata rides in the index's own
/// records now; exports by earlier versions carried it here.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    buckets: Vec<(String, u64)>,
    #[serde(default)]
    configs: Vec<(String, BucketConfig)>,
    #[serde(default)]
    objects: Vec<(String, String, LegacyObject)>,
    uploads: Vec<(String, Upload)>,
}

/// The database.
#[derive(Debug)]
pub struct Meta {
    db: redb::Database,
}

impl Meta {
    /// Opens or creates `path`.
    pub fn open(path: &Path) -> Result<Self, MetaError> {
        // Bounded like the store's index (redb's default cache is 1 GiB).
        let database = redb::Builder::new()
            .set_cache_size(16 << 20)
            .create(path)
            .map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(BUCKETS).map_err(db)?;
        txn.open_table(BUCKET_CONFIG).map_err(db)?;
        txn.open_table(OBJECTS).map_err(db)?;
        txn.open_table(UPLOADS).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self { db: database })
    }

    /// Buckets with their creation times.
    pub fn buckets(&self) -> Result<Vec<(String, u64)>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(BUCKETS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    /// Whether `bucket` exists.
    pub fn has_bucket(&self, bucket: &str) -> Result<bool, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(BUCKETS).map_err(db)?;
        Ok(t.get(bucket).map_err(db)?.is_some())
    }

    /// Creates `bucket` as `config` says; if it existed, its owner's
    /// name instead.
    pub fn create_bucket(
        &self,
        bucket: &str,
        now: u64,
        config: &BucketConfig,
    ) -> Result<Result<(), String>, MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        let created = {
            let mut t = txn.open_table(BUCKETS).map_err(db)?;
            let mut c = txn.open_table(BUCKET_CONFIG).map_err(db)?;
            if t.get(bucket).map_err(db)?.is_some() {
                let owner = match c.get(bucket).map_err(db)? {
                    Some(v) => {
                        serde_json::from_slice::<BucketConfig>(v.value())
                            .map_err(db)?
                            .owner
                    }
                    None => DEFAULT_USER.to_owned(),
                };
                Err(owner)
            } else {
                t.insert(bucket, now).map_err(db)?;
                let bytes = serde_json::to_vec(config).map_err(db)?;
                c.insert(bucket, bytes.as_slice()).map_err(db)?;
                Ok(())
            }
        };
        txn.commit().map_err(db)?;
        Ok(created)
    }

    /// The owner and settings of `bucket`; none if there is no such bucket.
    pub fn bucket_config(&self, bucket: &str) -> Result<Option<BucketConfig>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        if txn
            .open_table(BUCKETS)
            .map_err(db)?
            .get(bucket)
            .map_err(db)?
            .is_none()
        {
            return Ok(None);
        }
        match txn
            .open_table(BUCKET_CONFIG)
            .map_err(db)?
            .get(bucket)
            .map_err(db)?
        {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(db)?)),
            None => Ok(Some(BucketConfig::new(DEFAULT_USER))),
        }
    }

    /// Changes the settings of `bucket` with `change`, in one transaction;
    /// none if there is no such bucket.
    pub fn update_bucket_config<T>(
        &self,
        bucket: &str,
        change: impl FnOnce(&mut BucketConfig) -> T,
    ) -> Result<Option<T>, MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        let out = {
            if txn
                .open_table(BUCKETS)
                .map_err(db)?
                .get(bucket)
                .map_err(db)?
                .is_none()
            {
                return Ok(None);
            }
            let mut c = txn.open_table(BUCKET_CONFIG).map_err(db)?;
            let mut config = match c.get(bucket).map_err(db)? {
                Some(v) => serde_json::from_slice(v.value()).map_err(db)?,
                None => BucketConfig::new(DEFAULT_USER),
            };
            let out = change(&mut config);
            let bytes = serde_json::to_vec(&config).map_err(db)?;
            c.insert(bucket, bytes.as_slice()).map_err(db)?;
            out
        };
        txn.commit().map_err(db)?;
        Ok(Some(out))
    }

    /// Deletes `bucket` (the caller checks that it is empty).
    pub fn delete_bucket(&self, bucket: &str) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(BUCKETS)
            .map_err(db)?
            .remove(bucket)
            .map_err(db)?;
        txn.open_table(BUCKET_CONFIG)
            .map_err(db)?
            .remove(bucket)
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Object metadata kept here by earlier versions, to move into the
    /// store: `(bucket, key, metadata)`.
    pub fn legacy_objects(&self) -> Result<Vec<(String, String, LegacyObject)>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut out = Vec::new();
        for row in txn.open_table(OBJECTS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let (bucket, key) = k
                .value()
                .split_once('\0')
                .ok_or_else(|| MetaError(format!("bad object key {:?}", k.value())))?;
            let m: LegacyObject = serde_json::from_slice(v.value()).map_err(db)?;
            out.push((bucket.to_owned(), key.to_owned(), m));
        }
        Ok(out)
    }

    /// Forgets the legacy object metadata, once moved.
    pub fn clear_legacy_objects(&self) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        txn.delete_table(OBJECTS).map_err(db)?;
        txn.open_table(OBJECTS).map_err(db)?;
        txn.commit().map_err(db)
    }

    /// A multipart upload.
    pub fn upload(&self, id: &str) -> Result<Option<Upload>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(UPLOADS).map_err(db)?;
        match t.get(id).map_err(db)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(db)?)),
            None => Ok(None),
        }
    }

    /// Records a multipart upload.
    pub fn put_upload(&self, id: &str, upload: &Upload) -> Result<(), MetaError> {
        let bytes = serde_json::to_vec(upload).map_err(db)?;
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(UPLOADS)
            .map_err(db)?
            .insert(id, bytes.as_slice())
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Adds (or replaces) a part of an upload, in one transaction so
    /// parts arriving at once are all kept. False if the upload is gone.
    /// Records part `part` of upload `id` as in `file`; `None` when the
    /// upload is gone, else the file an earlier send of the part was in (to
    /// delete), if any.
    pub fn add_part(
        &self,
        id: &str,
        part: i32,
        etag: &str,
        size: u64,
        file: &str,
        checksum: Option<&str>,
    ) -> Result<Option<Option<String>>, MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        let found = {
            let mut t = txn.open_table(UPLOADS).map_err(db)?;
            let current: Option<Upload> = match t.get(id).map_err(db)? {
                Some(v) => Some(serde_json::from_slice(v.value()).map_err(db)?),
                None => None,
            };
            match current {
                Some(mut u) => {
                    let before = u.parts.contains_key(&part).then(|| u.file_of(id, part));
                    u.parts.insert(part, (etag.to_owned(), size));
                    u.files.insert(part, file.to_owned());
                    match checksum {
                        Some(c) => u.part_checksums.insert(part, c.to_owned()),
                        None => u.part_checksums.remove(&part),
                    };
                    let bytes = serde_json::to_vec(&u).map_err(db)?;
                    t.insert(id, bytes.as_slice()).map_err(db)?;
                    Some(before.filter(|b| b != file))
                }
                None => None,
            }
        };
        txn.commit().map_err(db)?;
        Ok(found)
    }

    /// Forgets an upload.
    pub fn remove_upload(&self, id: &str) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(UPLOADS)
            .map_err(db)?
            .remove(id)
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Uploads in progress in `bucket`, by key then id.
    pub fn uploads(&self, bucket: &str) -> Result<Vec<(String, Upload)>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(UPLOADS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let u: Upload = serde_json::from_slice(v.value()).map_err(db)?;
            if u.bucket == bucket {
                out.push((k.value().to_owned(), u));
            }
        }
        out.sort_by(|a, b| (&a.1.key, &a.0).cmp(&(&b.1.key, &b.0)));
        Ok(out)
    }

    /// Everything, as one blob: it rides along in the store's index
    /// backups, so a store recovered from its nodes keeps its buckets.
    pub fn export(&self) -> Result<Vec<u8>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut snap = Snapshot::default();
        for row in txn.open_table(BUCKETS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            snap.buckets.push((k.value().to_owned(), v.value()));
        }
        for row in txn
            .open_table(BUCKET_CONFIG)
            .map_err(db)?
            .iter()
            .map_err(db)?
        {
            let (k, v) = row.map_err(db)?;
            let c: BucketConfig = serde_json::from_slice(v.value()).map_err(db)?;
            snap.configs.push((k.value().to_owned(), c));
        }
        for row in txn.open_table(UPLOADS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let u: Upload = serde_json::from_slice(v.value()).map_err(db)?;
            snap.uploads.push((k.value().to_owned(), u));
        }
        serde_json::to_vec(&snap).map_err(db)
    }

    /// Loads an [`Meta::export`] into this database, which must be empty.
    /// Object metadata from an earlier version's export is kept as legacy,
    /// to be moved into the store at start. Returns the buckets loaded.
    pub fn import(&self, blob: &[u8]) -> Result<usize, MetaError> {
        let snap: Snapshot = serde_json::from_slice(blob)
            .map_err(|e| MetaError(format!("the S3 metadata in the backup is unreadable: {e}")))?;
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut buckets = txn.open_table(BUCKETS).map_err(db)?;
            if buckets.iter().map_err(db)?.next().is_some() {
                return Err(MetaError(
                    "S3 buckets exist already; import into a new data directory".into(),
                ));
            }
            for (name, created) in &snap.buckets {
                buckets.insert(name.as_str(), *created).map_err(db)?;
            }
            let mut configs = txn.open_table(BUCKET_CONFIG).map_err(db)?;
            for (name, c) in &snap.configs {
                let bytes = serde_json::to_vec(c).map_err(db)?;
                configs
                    .insert(name.as_str(), bytes.as_slice())
                    .map_err(db)?;
            }
            let mut objects = txn.open_table(OBJECTS).map_err(db)?;
            for (bucket, key, m) in &snap.objects {
                let bytes = serde_json::to_vec(m).map_err(db)?;
                objects
                    .insert(object_key(bucket, key).as_str(), bytes.as_slice())
                    .map_err(db)?;
            }
            let mut uploads = txn.open_table(UPLOADS).map_err(db)?;
            for (id, u) in &snap.uploads {
                let bytes = serde_json::to_vec(u).map_err(db)?;
                uploads.insert(id.as_str(), bytes.as_slice()).map_err(db)?;
            }
        }
        txn.commit().map_err(db)?;
        Ok(snap.buckets.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> ObjectMeta {
        ObjectMeta {
            size,
            etag: "e".into(),
            content_type: None,
            metadata: BTreeMap::new(),
            headers: Default::default(),
            modified: 0,
            ..Default::default()
        }
    }

    #[test]
    fn buckets_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("s3.redb")).unwrap();
        let alice = BucketConfig::new("alice");
        assert_eq!(m.create_bucket("b", 1, &alice).unwrap(), Ok(()));
        assert_eq!(
            m.create_bucket("b", 2, &BucketConfig::new("bob")).unwrap(),
            Err("alice".to_owned())
        );
        assert_eq!(m.create_bucket("ba", 1, &alice).unwrap(), Ok(()));
        assert!(m.has_bucket("b").unwrap());
        assert_eq!(m.bucket_config("b").unwrap(), Some(alice.clone()));
        let tagged = m
            .update_bucket_config("b", |c| c.tags = Some(vec![("k".into(), "v".into())]))
            .unwrap();
        assert_eq!(tagged, Some(()));
        assert_eq!(
            m.bucket_config("b").unwrap().unwrap().tags.unwrap().len(),
            1
        );
        assert_eq!(m.update_bucket_config("nope", |_| ()).unwrap(), None);
        m.delete_bucket("b").unwrap();
        assert!(!m.has_bucket("b").unwrap());
        assert_eq!(m.bucket_config("b").unwrap(), None);
        assert_eq!(m.buckets().unwrap(), [("ba".to_owned(), 1)]);
    }

    #[test]
    fn metadata_without_attributes_is_described_from_the_record() {
        let mut record = cloudshell_store::FileRecord {
            name: "s3/b/k".into(),
            file_id: cloudshell_store::FileId([1; 16]),
            size: 7,
            chunk_size: 1 << 20,
            k: 6,
            m: 3,
            wrapped_key: None,
            created: 1_700_000_000,
            blake3: [0xab; 32],
            attrs: Vec::new(),
            parts: Vec::new(),
        };
        let described = ObjectMeta::of(&record);
        assert_eq!((described.size, described.modified), (7, 1_700_000_000));
        assert!(described.etag.ends_with("-1"), "{}", described.etag);
        record.attrs = meta(99).to_attrs();
        // The record's size is the truth.
        assert_eq!(ObjectMeta::of(&record), meta(7));
    }

    #[test]
    fn an_export_loads_into_an_empty_database_only_and_keeps_legacy_objects() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("a.redb")).unwrap();
        m.create_bucket("b", 7, &BucketConfig::new("alice"))
            .unwrap()
            .unwrap();
        let upload = Upload {
            bucket: "b".into(),
            key: "big".into(),
            content_type: None,
            metadata: BTreeMap::new(),
            headers: Default::default(),
            initiated: 1,
            parts: BTreeMap::from([(1, ("e".into(), 5))]),
            files: Default::default(),
            owner: Some("alice".into()),
            acl: None,
            tags: Vec::new(),
            checksum: None,
            part_checksums: Default::default(),
        };
        m.put_upload("u1", &upload).unwrap();
        let blob = m.export().unwrap();

        let n = Meta::open(&dir.path().join("b.redb")).unwrap();
        assert_eq!(n.import(&blob).unwrap(), 1);
        assert_eq!(n.buckets().unwrap(), [("b".to_owned(), 7)]);
        assert_eq!(n.bucket_config("b").unwrap().unwrap().owner, "alice");
        assert_eq!(n.upload("u1").unwrap(), Some(upload));
        let again = n.import(&blob).unwrap_err().to_string();
        assert!(again.contains("new data directory"), "{again}");
        let garbage = Meta::open(&dir.path().join("c.redb"))
            .unwrap()
            .import(b"{not json")
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("unreadable"), "{garbage}");

        // An export by an earlier version, with object metadata in it.
        let old = serde_json::json!({
            "buckets": [["b", 7]],
            "objects": [["b", "k", {"size": 3, "etag": "e", "content_type": null,
                "metadata": {}, "modified": 0, "parts": [[".s3-uploads/u/00001", 3]]}]],
            "uploads": [],
        });
        let d = Meta::open(&dir.path().join("d.redb")).unwrap();
        d.import(&serde_json::to_vec(&old).unwrap()).unwrap();
        let legacy = d.legacy_objects().unwrap();
        assert_eq!(legacy.len(), 1);
        assert_eq!(legacy[0].2.meta, meta(3));
        assert_eq!(legacy[0].2.parts, [(".s3-uploads/u/00001".to_owned(), 3)]);
        d.clear_legacy_objects().unwrap();
        assert!(d.legacy_objects().unwrap().is_empty());
    }
}
