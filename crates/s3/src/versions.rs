//! Object versions. The current version of a key (an object, or a delete
//! marker) is always the store file `s3/BUCKET/KEY`; in a bucket that keeps
//! versions, the version it replaces is kept under
//! `.s3-versions/BUCKET/HEX(KEY)/ORDER-VERSIONID` in the same index
//! transaction (`Store::rename_keeping`), so a reader sees the old version
//! or the new one, never neither. ORDER is the version's write time
//! inverted, so a key's kept versions list newest first; the key is hex so
//! that no character of it can be mistaken for the separator and keys list
//! in S3's order. A version's metadata (its id, whether it is a delete
//! marker) is in its file's attributes, as every object's is. Space comes
//! back when a version is deleted by its id, or (unversioned buckets, or
//! the null version while suspended) when it is replaced.

use s3s::dto::*;
use s3s::{S3Result, s3_error};

use cloudshell_store::Version;

use crate::listing::{self, list_page};
use crate::meta::{self, ObjectMeta};
use crate::{StoreS3, internal, store_error, timestamp};

/// Where kept versions live.
pub const VERSIONS_DIR: &str = ".s3-versions/";

/// The kept versions of every key of `bucket` are under this.
pub fn bucket_prefix(bucket: &str) -> String {
    format!("{VERSIONS_DIR}{bucket}/")
}

/// The kept versions of `bucket/key` are under this.
pub fn key_prefix(bucket: &str, key: &str) -> String {
    format!("{}{}/", bucket_prefix(bucket), hex::encode(key.as_bytes()))
}

/// Where version `m` of `bucket/key` is kept once replaced.
pub(crate) fn kept_name(bucket: &str, key: &str, m: &ObjectMeta) -> String {
    format!(
        "{}{:016x}-{}",
        key_prefix(bucket, key),
        u64::MAX - m.seq,
        m.version()
    )
}

/// A fresh version id: 32 hex characters, opaque to clients.
pub(crate) fn new_version_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Now, in nanoseconds since the epoch (orders a key's versions).
pub(crate) fn now_seq() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl StoreS3 {
    /// The kept (noncurrent) versions of `bucket/key`, newest first, with
    /// their store files' names.
    pub(crate) fn kept_versions(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<Vec<(String, ObjectMeta)>> {
        let prefix = key_prefix(bucket, key);
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let batch = self
                .store()
                .index()
                .files_from(&prefix, after.as_deref(), 1000)
                .map_err(internal)?;
            let full = batch.len() == 1000;
            for r in batch {
                after = Some(r.name.clone());
                out.push((r.name.clone(), ObjectMeta::of(&r)));
            }
            if !full {
                return Ok(out);
            }
        }
    }

    /// The store file that holds version `version_id` of `bucket/key`
    /// (the current one, or a kept one), with its metadata.
    pub(crate) fn find_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> S3Result<Option<(String, ObjectMeta)>> {
        if let Some(current) = self.current(bucket, key)?
            && current.version() == version_id
        {
            return Ok(Some((meta::file_name(bucket, key), current)));
        }
        Ok(self
            .kept_versions(bucket, key)?
            .into_iter()
            .find(|(_, m)| m.version() == version_id))
    }

    /// Version `version_id` of `bucket/key` (the current one when none),
    /// held, with its metadata. A delete marker asked by its id is 405
    /// MethodNotAllowed, as in S3; the current one, 404 NoSuchKey saying
    /// so (`x-amz-delete-marker`).
    pub(crate) fn open_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> S3Result<(Version, ObjectMeta)> {
        self.require_bucket(bucket)?;
        let name = match version_id {
            None => meta::file_name(bucket, key),
            Some(v) => match self.find_version(bucket, key, v)? {
                Some((name, _)) => name,
                None => {
                    return Err(s3_error!(
                        NoSuchVersion,
                        "no version {v} of {key} in {bucket}"
                    ));
                }
            },
        };
        let (version, m) = match self.store().version(&name) {
            Ok(v) => {
                let m = ObjectMeta::of(v.record());
                (v, m)
            }
            Err(cloudshell_store::StoreError::NotFound(_)) => {
                return Err(s3_error!(NoSuchKey, "no key {key} in {bucket}"));
            }
            Err(e) => return Err(store_error(e)),
        };
        if m.delete_marker {
            let mut e = if version_id.is_some() {
                s3_error!(
                    MethodNotAllowed,
                    "The specified method is not allowed against this resource: {key} version {} is a delete marker",
                    m.version()
                )
            } else {
                s3_error!(
                    NoSuchKey,
                    "{key} in {bucket} was deleted (its current version is a delete marker)"
                )
            };
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "x-amz-delete-marker",
                http::HeaderValue::from_static("true"),
            );
            if let Ok(v) = http::HeaderValue::from_str(m.version()) {
                headers.insert("x-amz-version-id", v);
            }
            e.set_headers(headers);
            return Err(e);
        }
        Ok((version, m))
    }

    /// Deletes version `version_id` of `bucket/key`. The current one gives
    /// way to the newest kept one, in one index transaction; a kept one is
    /// simply deleted. Returns the deleted version's metadata, none if there
    /// was no such version (deleting is idempotent, as in S3).
    pub(crate) async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version_id: &str,
    ) -> S3Result<Option<ObjectMeta>> {
        let _lock = self.s3.locks.lock(bucket, key).await;
        let Some((name, m)) = self.find_version(bucket, key, version_id)? else {
            return Ok(None);
        };
        let current = meta::file_name(bucket, key);
        if name == current {
            match self.kept_versions(bucket, key)?.into_iter().next() {
                Some((newest, _)) => self
                    .store()
                    .rename(&newest, &current, None)
                    .await
                    .map_err(store_error)?,
                None => self.store().delete(&current).await.map_err(store_error)?,
            }
        } else {
            self.store().delete(&name).await.map_err(store_error)?;
        }
        self.host.changed();
        Ok(Some(m))
    }
}

/// One version in a listing: its key, metadata, and whether it is current.
struct Listed {
    key: String,
    meta: ObjectMeta,
    latest: bool,
}

/// Every version of `key`, current first, then kept ones newest first.
fn all_versions(s3: &StoreS3, bucket: &str, key: &str) -> S3Result<Vec<Listed>> {
    let mut out = Vec::new();
    if let Some(current) = s3.current(bucket, key)? {
        out.push(Listed {
            key: key.to_owned(),
            meta: current,
            latest: true,
        });
    }
    for (_, m) in s3.kept_versions(bucket, key)? {
        out.push(Listed {
            key: key.to_owned(),
            meta: m,
            latest: false,
        });
    }
    Ok(out)
}

/// ListObjectVersions: keys in order (with prefix, delimiter and key
/// marker as the other listings), each key's versions current first then
/// newest to oldest, delete markers among them; a page ends after at most
/// `max-keys` versions, markers and prefixes, and goes on from the key and
/// version id markers.
pub(crate) fn list(
    s3: &StoreS3,
    input: ListObjectVersionsInput,
) -> S3Result<ListObjectVersionsOutput> {
    let config = s3.bucket_config(&input.bucket)?;
    let listing::Params {
        encoding,
        prefix,
        delimiter,
        max,
    } = listing::Params::of(
        input.encoding_type.as_ref(),
        input.prefix.as_deref(),
        input.delimiter.as_deref(),
        input.max_keys,
    )?;
    let key_marker = input.key_marker.clone().filter(|m| !m.is_empty());
    let version_marker = input.version_id_marker.clone().filter(|m| !m.is_empty());
    let mut listed: Vec<Listed> = Vec::new();
    let mut prefixes: Vec<CommonPrefix> = Vec::new();
    // Within the marker key, the versions after the version id marker.
    if let (Some(k), Some(v)) = (&key_marker, &version_marker) {
        let rest: Vec<Listed> = all_versions(s3, &input.bucket, k)?
            .into_iter()
            .skip_while(|l| l.meta.version() != v)
            .skip(1)
            .collect();
        listed.extend(rest);
    }
    let mut after = key_marker.clone();
    let mut more_keys = true;
    while listed.len() + prefixes.len() <= max && more_keys {
        let page = list_page(
            s3.store().index(),
            &input.bucket,
            &config.owner,
            &prefix,
            delimiter.as_deref(),
            after.as_deref(),
            max,
            true,
        )?;
        more_keys = page.next.is_some();
        after = page.next.clone();
        for o in &page.contents {
            let key = o.key.clone().unwrap_or_default();
            listed.extend(all_versions(s3, &input.bucket, &key)?);
        }
        prefixes.extend(page.prefixes);
        if page.contents.is_empty() && !more_keys {
            break;
        }
    }
    // Cut at max-keys entries; the markers say where to go on: within a
    // key cut short, after its last version listed; else after the last
    // key or prefix given.
    let room = max.saturating_sub(prefixes.len().min(max));
    let cut = listed.len() > room;
    listed.truncate(room);
    let (next_key, next_version) = match (cut, listed.last()) {
        (true, Some(l)) => (Some(l.key.clone()), Some(l.meta.version().to_owned())),
        _ if more_keys => (after.clone(), None),
        _ => (None, None),
    };
    let truncated = next_key.is_some();
    let owner = |m: &ObjectMeta| {
        Some(crate::settings::owner_of(
            m.owner.as_deref().unwrap_or(&config.owner),
        ))
    };
    let mut versions = Vec::new();
    let mut markers = Vec::new();
    for l in listed {
        let key = Some(encoding.apply(l.key));
        let version_id = Some(l.meta.version().to_owned());
        if l.meta.delete_marker {
            markers.push(DeleteMarkerEntry {
                key,
                version_id,
                is_latest: Some(l.latest),
                last_modified: Some(timestamp(l.meta.modified)),
                owner: owner(&l.meta),
            });
        } else {
            versions.push(ObjectVersion {
                key,
                version_id,
                is_latest: Some(l.latest),
                size: i64::try_from(l.meta.size).ok(),
                e_tag: Some(ETag::Strong(l.meta.etag.clone())),
                last_modified: Some(timestamp(l.meta.modified)),
                owner: owner(&l.meta),
                storage_class: Some(ObjectVersionStorageClass::from_static(
                    ObjectVersionStorageClass::STANDARD,
                )),
                ..Default::default()
            });
        }
    }
    for p in &mut prefixes {
        p.prefix = p.prefix.take().map(|k| encoding.apply(k));
    }
    Ok(ListObjectVersionsOutput {
        name: Some(input.bucket),
        prefix: Some(encoding.apply(prefix)),
        delimiter: delimiter.map(|d| encoding.apply(d)),
        encoding_type: encoding.echo(),
        key_marker: Some(encoding.apply(input.key_marker.unwrap_or_default())),
        version_id_marker: Some(input.version_id_marker.unwrap_or_default()),
        max_keys: input.max_keys.or(Some(1000)),
        is_truncated: Some(truncated),
        next_key_marker: next_key.map(|k| encoding.apply(k)),
        next_version_id_marker: next_version,
        versions: Some(versions),
        delete_markers: Some(markers),
        common_prefixes: Some(prefixes),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_versions_of_a_key_sort_newest_first_and_name_their_key() {
        let older = ObjectMeta {
            seq: 100,
            version_id: Some("a".into()),
            ..Default::default()
        };
        let newer = ObjectMeta {
            seq: 200,
            ..Default::default()
        };
        let key = "dir/ key+%";
        let (o, n) = (kept_name("b", key, &older), kept_name("b", key, &newer));
        assert!(n < o, "{n} !< {o}");
        assert!(n.ends_with("-null") && o.ends_with("-a"));
        assert!(n.starts_with(&key_prefix("b", key)));
        // A key that is a prefix of another lists before it, as in S3.
        assert!(key_prefix("b", "a") < key_prefix("b", "a/b"));
    }
}
