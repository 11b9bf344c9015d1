//! What S3 knows beyond the store's files: buckets, and each object's ETag,
//! content type, user metadata and time. In `DATA_DIR/s3.redb`; an object's
//! bytes are the store file `s3/BUCKET/KEY`.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const BUCKETS: TableDefinition<&str, u64> = TableDefinition::new("buckets");
/// Key: `BUCKET` NUL `KEY`, so a bucket's objects sort together by key.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// Multipart uploads in progress, by upload id.
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

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
    /// Seconds since the epoch.
    pub initiated: i64,
    /// Parts received: number -> (MD5 hex, bytes).
    pub parts: BTreeMap<i32, (String, u64)>,
}

/// Where multipart uploads' parts are stored.
pub const UPLOADS_DIR: &str = ".s3-uploads/";
/// Where single-part objects are stored.
pub const OBJECTS_DIR: &str = "s3/";

/// The store file that holds part `part` of upload `id`.
pub fn part_file(id: &str, part: i32) -> String {
    format!("{UPLOADS_DIR}{id}/{part:05}")
}

/// Why the metadata database failed.
#[derive(Debug, thiserror::Error)]
#[error("S3 metadata: {0}")]
pub struct MetaError(String);

fn db<E: std::fmt::Display>(e: E) -> MetaError {
    MetaError(e.to_string())
}

/// One object's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Bytes.
    pub size: u64,
    /// The ETag without quotes: MD5 hex, or md5-of-md5s with `-N`.
    pub etag: String,
    /// Content type as given.
    pub content_type: Option<String>,
    /// User metadata (`x-amz-meta-*`).
    pub metadata: BTreeMap<String, String>,
    /// Seconds since the epoch of the last write.
    pub modified: i64,
    /// The store files holding the bytes, in order, with their sizes: the
    /// parts of a multipart upload, kept as they came (completing is then
    /// instant). Empty: the one file [`file_name`].
    #[serde(default)]
    pub parts: Vec<(String, u64)>,
}

impl ObjectMeta {
    /// The store files that hold the object, in order, with their sizes.
    pub fn files(&self, bucket: &str, key: &str) -> Vec<(String, u64)> {
        if self.parts.is_empty() {
            vec![(file_name(bucket, key), self.size)]
        } else {
            self.parts.clone()
        }
    }
}

/// The store file that holds an object's bytes.
pub fn file_name(bucket: &str, key: &str) -> String {
    format!("{OBJECTS_DIR}{bucket}/{key}")
}

fn object_key(bucket: &str, key: &str) -> String {
    format!("{bucket}\0{key}")
}

/// What [`Meta::export`] writes.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    buckets: Vec<(String, u64)>,
    objects: Vec<(String, String, ObjectMeta)>,
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

    /// Creates `bucket`; false if it existed.
    pub fn create_bucket(&self, bucket: &str, now: u64) -> Result<bool, MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        let created = {
            let mut t = txn.open_table(BUCKETS).map_err(db)?;
            if t.get(bucket).map_err(db)?.is_some() {
                false
            } else {
                t.insert(bucket, now).map_err(db)?;
                true
            }
        };
        txn.commit().map_err(db)?;
        Ok(created)
    }

    /// Deletes `bucket` if it holds no object: `Ok(false)` when it does.
    pub fn delete_bucket(&self, bucket: &str) -> Result<bool, MetaError> {
        if !self.list(bucket, "", None, 1)?.is_empty() {
            return Ok(false);
        }
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(BUCKETS)
            .map_err(db)?
            .remove(bucket)
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(true)
    }

    /// One object's metadata.
    pub fn object(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(OBJECTS).map_err(db)?;
        match t.get(object_key(bucket, key).as_str()).map_err(db)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(db)?)),
            None => Ok(None),
        }
    }

    /// Records an object (after its bytes are stored).
    pub fn put(&self, bucket: &str, key: &str, meta: &ObjectMeta) -> Result<(), MetaError> {
        let bytes = serde_json::to_vec(meta).map_err(db)?;
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(OBJECTS)
            .map_err(db)?
            .insert(object_key(bucket, key).as_str(), bytes.as_slice())
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
    }

    /// Forgets an object.
    pub fn remove(&self, bucket: &str, key: &str) -> Result<(), MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        txn.open_table(OBJECTS)
            .map_err(db)?
            .remove(object_key(bucket, key).as_str())
            .map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(())
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
    pub fn add_part(&self, id: &str, part: i32, etag: &str, size: u64) -> Result<bool, MetaError> {
        let txn = self.db.begin_write().map_err(db)?;
        let found = {
            let mut t = txn.open_table(UPLOADS).map_err(db)?;
            let current: Option<Upload> = match t.get(id).map_err(db)? {
                Some(v) => Some(serde_json::from_slice(v.value()).map_err(db)?),
                None => None,
            };
            match current {
                Some(mut u) => {
                    u.parts.insert(part, (etag.to_owned(), size));
                    let bytes = serde_json::to_vec(&u).map_err(db)?;
                    t.insert(id, bytes.as_slice()).map_err(db)?;
                    true
                }
                None => false,
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

    /// The store files completed multipart objects are made of.
    pub fn parts_in_use(&self) -> Result<std::collections::HashSet<String>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let mut out = std::collections::HashSet::new();
        for row in txn.open_table(OBJECTS).map_err(db)?.iter().map_err(db)? {
            let (_, v) = row.map_err(db)?;
            let m: ObjectMeta = serde_json::from_slice(v.value()).map_err(db)?;
            out.extend(m.parts.into_iter().map(|(name, _)| name));
        }
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
        for row in txn.open_table(OBJECTS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let (bucket, key) = k
                .value()
                .split_once('\0')
                .ok_or_else(|| MetaError(format!("bad object key {:?}", k.value())))?;
            let m: ObjectMeta = serde_json::from_slice(v.value()).map_err(db)?;
            snap.objects.push((bucket.to_owned(), key.to_owned(), m));
        }
        for row in txn.open_table(UPLOADS).map_err(db)?.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let u: Upload = serde_json::from_slice(v.value()).map_err(db)?;
            snap.uploads.push((k.value().to_owned(), u));
        }
        serde_json::to_vec(&snap).map_err(db)
    }

    /// Loads an [`Meta::export`] into this database, which must be empty.
    /// Returns the buckets and objects loaded.
    pub fn import(&self, blob: &[u8]) -> Result<(usize, usize), MetaError> {
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
        Ok((snap.buckets.len(), snap.objects.len()))
    }

    /// Objects of `bucket` whose keys start with `prefix` and come after
    /// `after`, in key order, at most `limit`.
    pub fn list(
        &self,
        bucket: &str,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, ObjectMeta)>, MetaError> {
        let txn = self.db.begin_read().map_err(db)?;
        let t = txn.open_table(OBJECTS).map_err(db)?;
        let start = match after {
            Some(a) if a >= prefix => object_key(bucket, a),
            _ => object_key(bucket, prefix),
        };
        let head = format!("{bucket}\0");
        let mut out = Vec::new();
        for row in t.range(start.as_str()..).map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let Some(key) = k.value().strip_prefix(head.as_str()) else {
                break;
            };
            if !key.starts_with(prefix) {
                break;
            }
            if after.is_some_and(|a| key <= a) {
                continue;
            }
            out.push((
                key.to_owned(),
                serde_json::from_slice(v.value()).map_err(db)?,
            ));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
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
            modified: 0,
            parts: Vec::new(),
        }
    }

    #[test]
    fn buckets_and_listing_by_prefix_and_position() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("s3.redb")).unwrap();
        assert!(m.create_bucket("b", 1).unwrap());
        assert!(!m.create_bucket("b", 2).unwrap());
        assert!(m.create_bucket("ba", 1).unwrap());
        for k in ["a/1", "a/2", "b/1", "c"] {
            m.put("b", k, &meta(1)).unwrap();
        }
        m.put("ba", "x", &meta(1)).unwrap();
        let keys = |v: Vec<(String, ObjectMeta)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            keys(m.list("b", "", None, 10).unwrap()),
            ["a/1", "a/2", "b/1", "c"]
        );
        assert_eq!(keys(m.list("b", "a/", None, 10).unwrap()), ["a/1", "a/2"]);
        assert_eq!(keys(m.list("b", "", Some("a/2"), 2).unwrap()), ["b/1", "c"]);
        assert!(!m.delete_bucket("b").unwrap(), "not empty");
        for k in ["a/1", "a/2", "b/1", "c"] {
            m.remove("b", k).unwrap();
        }
        assert!(m.delete_bucket("b").unwrap());
        assert_eq!(m.buckets().unwrap().len(), 1);
        assert_eq!(keys(m.list("ba", "", None, 10).unwrap()), ["x"]);
    }

    #[test]
    fn an_export_loads_into_an_empty_database_only() {
        let dir = tempfile::tempdir().unwrap();
        let m = Meta::open(&dir.path().join("a.redb")).unwrap();
        m.create_bucket("b", 7).unwrap();
        m.put("b", "k/1", &meta(3)).unwrap();
        let upload = Upload {
            bucket: "b".into(),
            key: "big".into(),
            content_type: None,
            metadata: BTreeMap::new(),
            initiated: 1,
            parts: BTreeMap::from([(1, ("e".into(), 5))]),
        };
        m.put_upload("u1", &upload).unwrap();
        let blob = m.export().unwrap();

        let n = Meta::open(&dir.path().join("b.redb")).unwrap();
        assert_eq!(n.import(&blob).unwrap(), (1, 1));
        assert_eq!(n.buckets().unwrap(), [("b".to_owned(), 7)]);
        assert_eq!(n.object("b", "k/1").unwrap(), Some(meta(3)));
        assert_eq!(n.upload("u1").unwrap(), Some(upload));
        let again = n.import(&blob).unwrap_err().to_string();
        assert!(again.contains("new data directory"), "{again}");
        let garbage = Meta::open(&dir.path().join("c.redb"))
            .unwrap()
            .import(b"{not json")
            .unwrap_err()
            .to_string();
        assert!(garbage.contains("unreadable"), "{garbage}");
    }
}
