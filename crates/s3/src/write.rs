//! How a write becomes visible. Bytes are stored under a private staging
//! name first (or as a multipart upload's parts); then, holding the key's
//! lock, the write's conditions (If-Match, If-None-Match) are checked
//! against the object as it is now, and the staged file is renamed onto the
//! object's name with its metadata as attributes (or the parts composed
//! into it): one index transaction, so a reader sees the old object or the
//! new one, bytes and metadata together, never a mix. A failed, refused or
//! interrupted write is never seen under the key.

use std::collections::HashSet;
use std::hash::{Hash as _, Hasher as _};

use s3s::dto::ETagCondition;
use s3s::{S3Result, s3_error};

use super::meta::{self, ObjectMeta};
use super::{StoreS3, internal, store_error, versions};
use crate::{Host, S3State};

/// Where staged bytes live until their write commits.
pub const STAGING: &str = ".s3-staging/";

/// Lock stripes: writes of keys that hash alike wait on each other, which
/// costs nothing at S3's commit step (a few index writes).
const STRIPES: usize = 64;

/// Serialises the commit step of writes to one key.
#[derive(Debug)]
pub struct KeyLocks {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for KeyLocks {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl KeyLocks {
    /// Waits for `bucket/key`'s lock.
    pub async fn lock(&self, bucket: &str, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut h);
        let i = usize::try_from(h.finish() % STRIPES as u64).unwrap_or(0);
        self.stripes[i].lock().await
    }
}

/// A fresh staging name.
pub fn staging_name() -> String {
    format!("{STAGING}{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// A write's preconditions, as S3 evaluates them for PUT and
/// CompleteMultipartUpload.
#[derive(Debug, Default, Clone)]
pub struct WriteConditions {
    /// `If-Match`: the object must exist with this ETag.
    pub if_match: Option<ETagCondition>,
    /// `If-None-Match: *`: the object must not exist.
    pub if_none_match: Option<ETagCondition>,
}

impl WriteConditions {
    /// Whether the write may replace `current`.
    pub fn check(&self, current: Option<&ObjectMeta>) -> S3Result<()> {
        if let Some(c) = &self.if_match {
            match (c, current) {
                (_, None) => {
                    return Err(s3_error!(
                        NoSuchKey,
                        "If-Match was given but there is no object to match"
                    ));
                }
                (ETagCondition::Any, Some(_)) => {}
                (ETagCondition::ETag(e), Some(m)) if e.value() == m.etag => {}
                (ETagCondition::ETag(e), Some(m)) => {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "If-Match: the object's ETag is {}, not {}",
                        m.etag,
                        e.value()
                    ));
                }
            }
        }
        if let (Some(c), Some(m)) = (&self.if_none_match, current) {
            let hit = match c {
                ETagCondition::Any => true,
                ETagCondition::ETag(e) => e.value() == m.etag,
            };
            if hit {
                return Err(s3_error!(
                    PreconditionFailed,
                    "If-None-Match: the object exists (ETag {})",
                    m.etag
                ));
            }
        }
        Ok(())
    }
}

/// Where a write's bytes are, before it commits.
#[derive(Debug, Clone, Copy)]
pub(super) enum Staged<'a> {
    /// One store file under a private name.
    File(&'a str),
    /// A multipart upload's parts, in order.
    Parts(&'a [String]),
}

impl StoreS3 {
    /// The metadata of `bucket/key` as it is now, if it exists.
    pub(super) fn current(&self, bucket: &str, key: &str) -> S3Result<Option<ObjectMeta>> {
        let name = meta::file_name(bucket, key);
        let record = self.store().index().file(&name).map_err(internal)?;
        Ok(record.map(|(r, _)| ObjectMeta::of(&r)))
    }

    /// Makes a write visible as `bucket/key` with metadata `m`: under the
    /// key's lock, checks `cond` against the current object, then renames
    /// the staged file onto the object's name with `m` as its attributes,
    /// or composes the parts into it, in one index transaction. In a bucket
    /// that keeps versions, the write gets a version id (versioning
    /// enabled) or is the null version (suspended), and the version it
    /// replaces is kept in that same transaction (see [`crate::versions`]).
    /// Returns the metadata as committed, and the version id to report
    /// (`null` for the null version of a bucket that keeps versions, none
    /// in a bucket never versioned). On refusal a staged file is deleted
    /// and the object left as it was.
    pub(super) async fn commit(
        &self,
        bucket: &str,
        key: &str,
        staged: Staged<'_>,
        m: &ObjectMeta,
        cond: &WriteConditions,
    ) -> S3Result<(ObjectMeta, Option<String>)> {
        let result = async {
            let _lock = self.s3.locks.lock(bucket, key).await;
            // The bucket may have gone while the bytes came in.
            let config = self.bucket_config(bucket)?;
            let current = self.current(bucket, key)?;
            cond.check(current.as_ref().filter(|c| !c.delete_marker))?;
            let mut m = m.clone();
            m.seq = versions::now_seq();
            m.version_id = config.versioning_enabled().then(versions::new_version_id);
            // The version replaced is kept, unless it is the null version
            // and the new one is null too (suspended: it replaces it).
            let keep = current
                .as_ref()
                .filter(|c| {
                    config.keeps_versions() && (c.version_id.is_some() || m.version_id.is_some())
                })
                .map(|c| versions::kept_name(bucket, key, c));
            // A new null version also replaces a kept null version.
            let stale_null = if config.keeps_versions() && m.version_id.is_none() {
                self.kept_versions(bucket, key)?
                    .into_iter()
                    .find(|(_, v)| v.version_id.is_none())
                    .map(|(name, _)| name)
            } else {
                None
            };
            let name = meta::file_name(bucket, key);
            let attrs = m.to_attrs();
            match staged {
                Staged::File(file) => self
                    .store()
                    .rename_keeping(file, &name, Some(&attrs), keep.as_deref())
                    .await
                    .map_err(store_error)?,
                Staged::Parts(parts) => {
                    self.store()
                        .compose_keeping(&name, parts, &attrs, keep.as_deref())
                        .await
                        .map_err(store_error)?;
                }
            }
            if let Some(stale) = stale_null {
                let _ = self.store().delete(&stale).await;
            }
            self.host.changed();
            let reported = config.keeps_versions().then(|| m.version().to_owned());
            Ok((m, reported))
        }
        .await;
        if result.is_err()
            && let Staged::File(file) = staged
        {
            let _ = self.store().delete(file).await;
        }
        result
    }
}

/// Moves object metadata that earlier versions kept in `s3.redb` into the
/// attributes of the objects' store files (a multipart object becomes a
/// file made of its parts), then forgets it there. Runs at start, before
/// S3 answers; running it again after an interruption changes nothing
/// that was moved. Returns the objects moved.
pub async fn migrate_legacy_objects(
    host: &dyn Host,
    s3: &S3State,
) -> Result<usize, meta::MetaError> {
    let legacy = s3.meta.legacy_objects()?;
    if legacy.is_empty() {
        return Ok(0);
    }
    let mut moved = 0;
    for (bucket, key, object) in &legacy {
        let name = meta::file_name(bucket, key);
        let attrs = object.meta.to_attrs();
        let done = if object.parts.is_empty() {
            host.store().index().set_attrs(&name, &attrs).map_err(|e| {
                meta::MetaError::new(format!("moving the metadata of {bucket}/{key}: {e}"))
            })?
        } else {
            let parts: Vec<String> = object.parts.iter().map(|(p, _)| p.clone()).collect();
            match host.store().compose(&name, &parts, &attrs).await {
                Ok(_) => true,
                Err(cloudshell_store::StoreError::NotFound(_)) => false,
                Err(e) => {
                    return Err(meta::MetaError::new(format!(
                        "moving the metadata of {bucket}/{key}: {e}"
                    )));
                }
            }
        };
        if done {
            moved += 1;
        } else {
            tracing::warn!(object = %format!("{bucket}/{key}"), "its metadata had no bytes in the store: dropped");
        }
    }
    s3.meta.clear_legacy_objects()?;
    host.changed();
    Ok(moved)
}

/// What [`collect_leftovers`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Staged files and unknown uploads' parts deleted.
    pub deleted: usize,
}

/// Whether a store file is a leftover of an interrupted S3 write: a staged
/// file (no writer survives a restart), or a part of an upload nobody knows
/// that no object is made of.
fn is_leftover(
    meta: &meta::Meta,
    in_use: &HashSet<String>,
    f: &cloudshell_store::FileRecord,
) -> Result<bool, meta::MetaError> {
    let name = f.name.as_str();
    if name.starts_with(STAGING) {
        return Ok(true);
    }
    if let Some(rest) = name.strip_prefix(meta::UPLOADS_DIR) {
        let id = rest.split('/').next().unwrap_or("");
        return Ok(meta.upload(id)?.is_none() && !in_use.contains(name));
    }
    Ok(false)
}

/// Forgets uploads whose parts an object is made of already: completed,
/// the daemon stopped before it forgot them.
fn forget_completed_uploads(meta: &meta::Meta, in_use: &HashSet<String>) {
    let Ok(buckets) = meta.buckets() else {
        return;
    };
    for (bucket, _) in buckets {
        for (id, upload) in meta.uploads(&bucket).unwrap_or_default() {
            let completed = upload
                .parts
                .keys()
                .any(|n| in_use.contains(&upload.file_of(&id, *n)));
            if completed && meta.remove_upload(&id).is_ok() {
                tracing::info!(upload = %id, "forgot an upload that had completed");
            }
        }
    }
}

/// Tidies what S3 writes cut short by a stop of the daemon left in the
/// store: staged files and unknown uploads' parts go. Runs at start, beside
/// new requests: staged names are random and new uploads are known, so
/// nothing in use is touched.
pub async fn collect_leftovers(host: &dyn Host, s3: &S3State) -> Leftovers {
    let meta = &s3.meta;
    let files = match host.store().index().files() {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("S3 leftovers: cannot list the index: {e}");
            return Leftovers::default();
        }
    };
    let in_use: HashSet<String> = files.iter().flat_map(|f| f.parts.clone()).collect();
    let mut out = Leftovers::default();
    forget_completed_uploads(meta, &in_use);
    for f in files {
        match is_leftover(meta, &in_use, &f) {
            Ok(true) => {
                if host.store().delete(&f.name).await.is_ok() {
                    tracing::info!(file = %f.name, "removed what an interrupted S3 write left");
                    out.deleted += 1;
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(file = %f.name, "S3 leftovers: {e}"),
        }
    }
    if out.deleted > 0 {
        host.changed();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(etag: &str) -> ObjectMeta {
        ObjectMeta {
            size: 1,
            etag: etag.into(),
            content_type: None,
            metadata: Default::default(),
            headers: Default::default(),
            modified: 0,
            ..Default::default()
        }
    }

    fn etag(v: &str) -> ETagCondition {
        ETagCondition::ETag(s3s::dto::ETag::Strong(v.into()))
    }

    #[test]
    fn write_conditions_follow_s3() {
        let none = WriteConditions {
            if_none_match: Some(ETagCondition::Any),
            ..Default::default()
        };
        assert!(none.check(None).is_ok());
        let e = none.check(Some(&object("a"))).unwrap_err();
        assert_eq!(e.code().as_str(), "PreconditionFailed");

        let matching = WriteConditions {
            if_match: Some(etag("a")),
            ..Default::default()
        };
        assert!(matching.check(Some(&object("a"))).is_ok());
        let e = matching.check(Some(&object("b"))).unwrap_err();
        assert_eq!(e.code().as_str(), "PreconditionFailed");
        let e = matching.check(None).unwrap_err();
        assert_eq!(e.code().as_str(), "NoSuchKey");

        assert!(WriteConditions::default().check(None).is_ok());
    }

    fn record(name: &str) -> cloudshell_store::FileRecord {
        cloudshell_store::FileRecord {
            name: name.into(),
            file_id: cloudshell_store::FileId([1; 16]),
            size: 5,
            chunk_size: 1 << 20,
            k: 6,
            m: 3,
            wrapped_key: None,
            created: 1_700_000_000,
            blake3: [0xab; 32],
            attrs: Vec::new(),
            parts: Vec::new(),
        }
    }

    #[test]
    fn leftovers_go_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta::Meta::open(&dir.path().join("s3.redb")).unwrap();
        m.put_upload(
            "open",
            &meta::Upload {
                bucket: "b".into(),
                key: "k".into(),
                content_type: None,
                metadata: Default::default(),
                headers: Default::default(),
                initiated: 0,
                parts: Default::default(),
                files: Default::default(),
                owner: None,
                acl: None,
                tags: Vec::new(),
                checksum: None,
                part_checksums: Default::default(),
            },
        )
        .unwrap();
        let in_use = HashSet::from([meta::part_file("done", 2)]);
        let t = |name: &str| is_leftover(&m, &in_use, &record(name)).unwrap();
        assert!(t(&staging_name()));
        assert!(!t(&meta::part_file("open", 3)), "upload in progress");
        assert!(!t(&meta::part_file("done", 2)), "part of an object");
        assert!(t(&meta::part_file("gone", 1)), "nobody's part");
        assert!(!t("s3/b/known"));
        assert!(!t("user/file"), "not S3's");
    }
}
