//! How a write becomes visible. Bytes are stored under a private staging
//! name first; then, holding the key's lock, the write's conditions
//! (If-Match, If-None-Match) are checked against the object as it is now,
//! the staged file is renamed onto the object's (an index-only change) and
//! the metadata recorded. A failed, refused or interrupted write is never
//! seen under the key, and two writers of one key cannot interleave their
//! bytes and metadata.

use std::collections::HashSet;
use std::hash::{Hash as _, Hasher as _};

use s3s::dto::ETagCondition;
use s3s::{S3Result, s3_error};

use super::meta::{self, ObjectMeta};
use super::{StoreS3, internal, store_error};
use crate::State;

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
    let id: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    format!("{STAGING}{id}")
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

impl StoreS3 {
    /// Makes a write visible as `bucket/key` with metadata `m`: under the
    /// key's lock, checks `cond` against the current object, moves the
    /// staged file (if any) onto the object's name and records `m`. On
    /// refusal the staged file is deleted and the object left as it was.
    pub(super) async fn commit(
        &self,
        bucket: &str,
        key: &str,
        staged: Option<&str>,
        m: &ObjectMeta,
        cond: &WriteConditions,
    ) -> S3Result<()> {
        let result = async {
            let _lock = self.state.s3.locks.lock(bucket, key).await;
            // The bucket may have gone while the bytes came in.
            self.require_bucket(bucket)?;
            let current = self.meta().object(bucket, key).map_err(internal)?;
            cond.check(current.as_ref())?;
            if let Some(staged) = staged {
                self.state
                    .store
                    .rename(staged, &meta::file_name(bucket, key))
                    .await
                    .map_err(store_error)?;
            }
            self.replace(bucket, key, current, m).await
        }
        .await;
        if result.is_err()
            && let Some(staged) = staged
        {
            let _ = self.state.store.delete(staged).await;
        }
        result
    }
}

/// What [`collect_leftovers`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Staged files and unknown uploads' parts deleted.
    pub deleted: usize,
    /// Object files whose metadata was missing or stale, now described.
    pub adopted: usize,
}

/// What to do with one store file at start.
#[derive(Debug, PartialEq, Eq)]
enum Tidy {
    Keep,
    Delete,
    /// Describe it as `bucket/key` with this metadata.
    Adopt(String, String, ObjectMeta),
}

/// Decides about one file: staged files (no writer survives a restart) and
/// parts of uploads nobody knows go; an object file whose metadata was not
/// written (the daemon stopped between the two steps of a commit) is
/// described from its index record rather than deleted, so stored data is
/// never dropped.
fn tidy(
    meta: &meta::Meta,
    in_use: &HashSet<String>,
    f: &cloudshell_store::FileRecord,
) -> Result<Tidy, meta::MetaError> {
    let name = f.name.as_str();
    if name.starts_with(STAGING) {
        return Ok(Tidy::Delete);
    }
    if let Some(rest) = name.strip_prefix(meta::UPLOADS_DIR) {
        let id = rest.split('/').next().unwrap_or("");
        let known = meta.upload(id)?.is_some() || in_use.contains(name);
        return Ok(if known { Tidy::Keep } else { Tidy::Delete });
    }
    let Some((bucket, key)) = name
        .strip_prefix(meta::OBJECTS_DIR)
        .and_then(|r| r.split_once('/'))
    else {
        return Ok(Tidy::Keep);
    };
    if let Some(m) = meta.object(bucket, key)?
        && m.parts.is_empty()
        && m.size == f.size
    {
        return Ok(Tidy::Keep);
    }
    if meta
        .object(bucket, key)?
        .is_some_and(|m| !m.parts.is_empty())
    {
        // A multipart object's key: this file lost a race with it and no
        // one reads it; it is replaced by the object's parts.
        return Ok(Tidy::Delete);
    }
    // Not an MD5: the dash tells clients not to check the body against it.
    let etag = format!(
        "{}-1",
        f.blake3[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Ok(Tidy::Adopt(
        bucket.to_owned(),
        key.to_owned(),
        ObjectMeta {
            size: f.size,
            etag,
            content_type: None,
            metadata: Default::default(),
            modified: f.created,
            parts: Vec::new(),
        },
    ))
}

/// Tidies what S3 writes cut short by a stop of the daemon left in the
/// store: staged files and unknown uploads' parts go, object files without
/// metadata are described. Runs at start, beside new requests: staged
/// names are random and new uploads are known, so nothing in use is
/// touched.
pub async fn collect_leftovers(state: &State) -> Leftovers {
    let meta = &state.s3.meta;
    let (files, in_use) = match (state.store.index().files(), meta.parts_in_use()) {
        (Ok(f), Ok(p)) => (f, p),
        (Err(e), _) => {
            tracing::warn!("S3 leftovers: cannot list the index: {e}");
            return Leftovers::default();
        }
        (_, Err(e)) => {
            tracing::warn!("S3 leftovers: {e}");
            return Leftovers::default();
        }
    };
    let mut out = Leftovers::default();
    for f in files {
        match tidy(meta, &in_use, &f) {
            Ok(Tidy::Keep) => {}
            Ok(Tidy::Delete) => {
                if state.store.delete(&f.name).await.is_ok() {
                    tracing::info!(file = %f.name, "removed what an interrupted S3 write left");
                    out.deleted += 1;
                }
            }
            Ok(Tidy::Adopt(bucket, key, m)) => {
                let created = u64::try_from(f.created).unwrap_or(0);
                if meta.create_bucket(&bucket, created).is_ok()
                    && meta.put(&bucket, &key, &m).is_ok()
                {
                    tracing::warn!(
                        object = %format!("{bucket}/{key}"),
                        "an S3 write was cut short after its bytes were stored: the object is kept"
                    );
                    out.adopted += 1;
                }
            }
            Err(e) => tracing::warn!(file = %f.name, "S3 leftovers: {e}"),
        }
    }
    if out.deleted + out.adopted > 0 {
        state.touch();
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
            modified: 0,
            parts: Vec::new(),
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

    fn record(name: &str, size: u64) -> cloudshell_store::FileRecord {
        cloudshell_store::FileRecord {
            name: name.into(),
            file_id: cloudshell_store::FileId([1; 16]),
            size,
            chunk_size: 1 << 20,
            k: 6,
            m: 3,
            wrapped_key: None,
            created: 1_700_000_000,
            blake3: [0xab; 32],
        }
    }

    #[test]
    fn leftovers_go_and_unknown_objects_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta::Meta::open(&dir.path().join("s3.redb")).unwrap();
        m.create_bucket("b", 1).unwrap();
        m.put("b", "known", &object("e")).unwrap();
        let mut multi = object("m-2");
        multi.parts = vec![
            (meta::part_file("done", 1), 1),
            (meta::part_file("done", 2), 1),
        ];
        m.put("b", "multi", &multi).unwrap();
        m.put_upload(
            "open",
            &meta::Upload {
                bucket: "b".into(),
                key: "k".into(),
                content_type: None,
                metadata: Default::default(),
                initiated: 0,
                parts: Default::default(),
            },
        )
        .unwrap();
        let in_use = m.parts_in_use().unwrap();
        let t = |name: &str, size: u64| tidy(&m, &in_use, &record(name, size)).unwrap();

        assert_eq!(t(&staging_name(), 5), Tidy::Delete);
        assert_eq!(
            t(&meta::part_file("open", 3), 5),
            Tidy::Keep,
            "upload in progress"
        );
        assert_eq!(
            t(&meta::part_file("done", 2), 1),
            Tidy::Keep,
            "part of an object"
        );
        assert_eq!(
            t(&meta::part_file("gone", 1), 5),
            Tidy::Delete,
            "nobody's part"
        );
        assert_eq!(t("s3/b/known", 1), Tidy::Keep);
        assert_eq!(
            t("s3/b/multi", 9),
            Tidy::Delete,
            "shadowed by a multipart object"
        );
        assert_eq!(t("user/file", 9), Tidy::Keep, "not S3's");
        match t("s3/b/known", 7) {
            Tidy::Adopt(b, k, meta) => {
                assert_eq!((b.as_str(), k.as_str(), meta.size), ("b", "known", 7));
                assert!(meta.etag.ends_with("-1"), "{}", meta.etag);
            }
            other => panic!("a stale description is redone, got {other:?}"),
        }
        match t("s3/new/obj/with/slashes", 3) {
            Tidy::Adopt(b, k, _) => {
                assert_eq!((b.as_str(), k.as_str()), ("new", "obj/with/slashes"))
            }
            other => panic!("an undescribed object is kept, got {other:?}"),
        }
    }
}
