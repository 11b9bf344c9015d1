//! Objects: put, get, head, delete (one or many), copy. Each resolves its
//! key once and answers from that version; writes go through the staging
//! and commit of [`crate::write`].

use futures_util::TryStreamExt as _;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use crate::checksums;
use crate::meta::{self, ObjectMeta, StandardHeaders};
use crate::write::{self, Staged, WriteConditions};
use crate::{StoreS3, now, secs_of, store_error, timestamp};

/// The most keys one DeleteObjects may name (S3's limit).
const MAX_DELETE_KEYS: usize = 1000;

/// The content type S3 gives an object stored without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// The standard headers a write request (put, copy with REPLACE, multipart
/// create: they share the field names) asks to keep with the object.
macro_rules! standard_headers_of {
    ($input:expr) => {
        $crate::meta::StandardHeaders {
            cache_control: $input.cache_control.clone(),
            content_disposition: $input.content_disposition.clone(),
            content_encoding: $input.content_encoding.clone(),
            content_language: $input.content_language.clone(),
            expires: $input.expires.as_ref().and_then($crate::objects::http_date),
        }
    };
}
pub(crate) use standard_headers_of;

/// Fills an answer's standard headers (GET and HEAD share the field names)
/// from what was kept, and the content type S3 defaults to.
macro_rules! answer_with {
    ($output:expr, $m:expr) => {{
        let mut out = $output;
        let h: &StandardHeaders = &$m.headers;
        out.cache_control = h.cache_control.clone();
        out.content_disposition = h.content_disposition.clone();
        out.content_encoding = h.content_encoding.clone();
        out.content_language = h.content_language.clone();
        out.expires = h
            .expires
            .as_deref()
            .and_then(|d| Timestamp::parse(TimestampFormat::HttpDate, d).ok());
        out.content_type = Some(
            $m.content_type
                .clone()
                .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.to_owned()),
        );
        out
    }};
}

/// An `Expires` as the HTTP date it travels as.
pub(crate) fn http_date(t: &Timestamp) -> Option<String> {
    let mut buf = Vec::new();
    t.format(TimestampFormat::HttpDate, &mut buf).ok()?;
    String::from_utf8(buf).ok()
}

pub(crate) async fn put_object(
    s3: &StoreS3,
    req: S3Request<PutObjectInput>,
) -> S3Result<S3Response<PutObjectOutput>> {
    let caller = crate::settings::caller_of(&req);
    let (headers, trailers, input) = (req.headers, req.trailing_headers, req.input);
    let config = s3.bucket_config(&input.bucket)?;
    // ACL, tags and the checksum asked are checked before the body is read: a refusal then
    // costs nothing.
    let (owner, acl) =
        crate::acls::written_object(&caller, &config, &crate::acls::object_acl_asked!(input))?;
    let tags = crate::tagging::tags_of_header(input.tagging.as_deref())?;
    let wanted = checksums::wanted(
        &headers,
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
        trailers,
        Some(checksums::Algo::Crc64Nvme),
    )?;
    let cond = WriteConditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
    };
    // The conditions are evaluated once the body is in, as S3 does:
    // refusing before it is read would leave its bytes on a connection
    // the client may reuse.
    let body = input
        .body
        .ok_or_else(|| s3_error!(IncompleteBody, "no body"))?
        .map_err(std::io::Error::other);
    let staged = write::staging_name();
    let (size, etag, checksum) = s3
        .store_file(&staged, body, input.content_md5.as_deref(), wanted)
        .await?;
    let m = ObjectMeta {
        size,
        etag: etag.clone(),
        headers: standard_headers_of!(input),
        content_type: input.content_type.map(|c| c.to_string()),
        metadata: input
            .metadata
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
        modified: now(),
        owner,
        acl,
        tags,
        checksum,
        ..Default::default()
    };
    let (m, version_id) = s3
        .commit(&input.bucket, &input.key, Staged::File(&staged), &m, &cond)
        .await?;
    let mut out = PutObjectOutput {
        e_tag: Some(ETag::Strong(etag)),
        size: i64::try_from(size).ok(),
        version_id,
        ..Default::default()
    };
    if let Some(c) = &m.checksum {
        checksums::set_checksum!(out, c.fields());
    }
    Ok(S3Response::new(out))
}

pub(crate) async fn get_object(
    s3: &StoreS3,
    req: S3Request<GetObjectInput>,
) -> S3Result<S3Response<GetObjectOutput>> {
    let input = req.input;
    let (version, m) = s3.open_version(&input.bucket, &input.key, input.version_id.as_deref())?;
    check_conditions(
        &m,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
    )?;
    let (range, content_range) = match &input.range {
        Some(r) => {
            let checked = r.check(m.size).map_err(|_| {
                let mut e = s3_error!(
                    InvalidRange,
                    "the range is not satisfiable for {} bytes",
                    m.size
                );
                // S3 says how long the object is, as RFC 9110 asks of a 416.
                let mut headers = http::HeaderMap::new();
                if let Ok(v) = http::HeaderValue::from_str(&format!("bytes */{}", m.size)) {
                    headers.insert(http::header::CONTENT_RANGE, v);
                }
                e.set_headers(headers);
                e
            })?;
            let cr = format!("bytes {}-{}/{}", checked.start, checked.end - 1, m.size);
            (checked, Some(cr))
        }
        None => (0..m.size, None),
    };
    let length = range.end - range.start;
    let whole = content_range.is_none();
    let body = s3.read_stream(version, range);
    let mut out = answer_with!(
        GetObjectOutput {
            body: Some(body),
            content_length: i64::try_from(length).ok(),
            content_range,
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.modified)),
            metadata: metadata_of(&m),
            tag_count: (!m.tags.is_empty()).then(|| i32::try_from(m.tags.len()).unwrap_or(0)),
            version_id: m.version_id.clone(),
            ..Default::default()
        },
        m
    );
    // A checksum describes the whole object: a range gets none, as in S3.
    if whole && let Some(fields) = asked_checksum(input.checksum_mode.as_ref(), &m) {
        checksums::set_checksum!(out, fields);
    }
    Ok(S3Response::new(out))
}

/// The object's checksum, when the request asked for it
/// (`x-amz-checksum-mode: ENABLED`) and the object has one.
fn asked_checksum(
    mode: Option<&ChecksumMode>,
    m: &ObjectMeta,
) -> Option<checksums::ChecksumFields> {
    if !mode.is_some_and(|c| c.as_str().eq_ignore_ascii_case("ENABLED")) {
        return None;
    }
    m.checksum.as_ref().map(checksums::StoredChecksum::fields)
}

pub(crate) async fn head_object(
    s3: &StoreS3,
    req: S3Request<HeadObjectInput>,
) -> S3Result<S3Response<HeadObjectOutput>> {
    let input = req.input;
    let (_, m) = s3.open_version(&input.bucket, &input.key, input.version_id.as_deref())?;
    check_conditions(
        &m,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
    )?;
    let mut out = answer_with!(
        HeadObjectOutput {
            content_length: i64::try_from(m.size).ok(),
            accept_ranges: Some("bytes".to_owned()),
            e_tag: Some(ETag::Strong(m.etag.clone())),
            last_modified: Some(timestamp(m.modified)),
            metadata: metadata_of(&m),
            version_id: m.version_id.clone(),
            ..Default::default()
        },
        m
    );
    if let Some(fields) = asked_checksum(input.checksum_mode.as_ref(), &m) {
        checksums::set_checksum!(out, fields);
    }
    Ok(S3Response::new(out))
}

pub(crate) async fn delete_object(
    s3: &StoreS3,
    req: S3Request<DeleteObjectInput>,
) -> S3Result<S3Response<DeleteObjectOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket)?;
    let done = delete_one(s3, &input.bucket, &input.key, input.version_id.as_deref()).await?;
    Ok(S3Response::new(DeleteObjectOutput {
        delete_marker: done.delete_marker.then_some(true),
        version_id: done.version_id,
        ..Default::default()
    }))
}

pub(crate) async fn delete_objects(
    s3: &StoreS3,
    req: S3Request<DeleteObjectsInput>,
) -> S3Result<S3Response<DeleteObjectsOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket)?;
    if input.delete.objects.len() > MAX_DELETE_KEYS {
        return Err(s3_error!(
            MalformedXML,
            "a multi-object delete names at most {MAX_DELETE_KEYS} keys; this one names {}",
            input.delete.objects.len()
        ));
    }
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    for o in input.delete.objects {
        match delete_one(s3, &input.bucket, &o.key, o.version_id.as_deref()).await {
            Ok(done) => deleted.push(DeletedObject {
                key: Some(o.key),
                version_id: o.version_id.clone(),
                delete_marker: done.delete_marker.then_some(true),
                delete_marker_version_id: done
                    .delete_marker
                    .then(|| done.version_id.clone())
                    .flatten(),
            }),
            Err(e) => errors.push(Error {
                key: Some(o.key),
                code: Some(e.code().as_str().to_owned()),
                message: e.message().map(str::to_owned),
                ..Default::default()
            }),
        }
    }
    let quiet = input.delete.quiet.unwrap_or(false);
    Ok(S3Response::new(DeleteObjectsOutput {
        deleted: (!quiet).then_some(deleted),
        errors: Some(errors),
        ..Default::default()
    }))
}

pub(crate) async fn copy_object(
    s3: &StoreS3,
    req: S3Request<CopyObjectInput>,
) -> S3Result<S3Response<CopyObjectOutput>> {
    let caller = crate::settings::caller_of(&req);
    let input = req.input;
    let source = open_copy_source(
        s3,
        &input.copy_source,
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    )?;
    let config = s3.bucket_config(&input.bucket)?;
    // A copy's ACL is what the request asks (the source's is not copied).
    let (owner, acl) =
        crate::acls::written_object(&caller, &config, &crate::acls::object_acl_asked!(input))?;
    let replace = input
        .metadata_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == "REPLACE");
    let replace_tags = input
        .tagging_directive
        .as_ref()
        .is_some_and(|d| d.as_str() == "REPLACE");
    let tags = if replace_tags {
        crate::tagging::tags_of_header(input.tagging.as_deref())?
    } else {
        source.meta.tags.clone()
    };
    if source.bucket == *input.bucket && source.key == *input.key && !replace && !replace_tags {
        return Err(s3_error!(
            InvalidRequest,
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes."
        ));
    }
    let src = source.meta.clone();
    // The copy's checksum: the one asked, else the source's algorithm,
    // else CRC64NVME; computed over the bytes as they are copied.
    let algorithm = input
        .checksum_algorithm
        .as_ref()
        .map(|a| a.as_str().to_owned())
        .or_else(|| src.checksum.as_ref().map(|c| c.algorithm.clone()));
    let wanted = checksums::wanted(
        &http::HeaderMap::new(),
        algorithm.as_deref(),
        None,
        Some(checksums::Algo::Crc64Nvme),
    )?;
    let staged = write::staging_name();
    let source_version = source_version_of(&source);
    let (size, etag, checksum) = source.copy_into(s3, 0..src.size, &staged, wanted).await?;
    let m = ObjectMeta {
        size,
        etag: etag.clone(),
        headers: if replace {
            standard_headers_of!(input)
        } else {
            src.headers.clone()
        },
        content_type: if replace {
            input.content_type.clone()
        } else {
            src.content_type.clone()
        },
        metadata: if replace {
            input
                .metadata
                .clone()
                .map(|m| m.into_iter().collect())
                .unwrap_or_default()
        } else {
            src.metadata.clone()
        },
        modified: now(),
        owner,
        acl,
        tags,
        checksum,
        ..Default::default()
    };
    let (m, version_id) = s3
        .commit(
            &input.bucket,
            &input.key,
            Staged::File(&staged),
            &m,
            &WriteConditions::default(),
        )
        .await?;
    Ok(S3Response::new(CopyObjectOutput {
        copy_object_result: Some(CopyObjectResult {
            e_tag: Some(ETag::Strong(etag)),
            last_modified: Some(timestamp(m.modified)),
            ..Default::default()
        }),
        version_id,
        copy_source_version_id: source_version,
        ..Default::default()
    }))
}

/// The source's version id, as a copy's answer names it (none for a
/// source that is the null version of a bucket never versioned).
fn source_version_of(source: &CopySourceObject) -> Option<String> {
    source.meta.version_id.clone()
}

/// The object a copy reads (CopyObject, UploadPartCopy), held from when
/// its conditions were checked until it is read.
pub(crate) struct CopySourceObject {
    pub bucket: String,
    pub key: String,
    pub version: cloudshell_store::Version,
    pub meta: ObjectMeta,
}

/// Resolves a copy's source and checks its conditions: as GET's, but any
/// that fails is 412.
pub(crate) fn open_copy_source(
    s3: &StoreS3,
    source: &CopySource,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<CopySourceObject> {
    let CopySource::Bucket {
        bucket,
        key,
        version_id,
    } = source
    else {
        return Err(s3_error!(
            NotImplemented,
            "copies from access points are not supported"
        ));
    };
    let (version, meta) = s3.open_version(bucket, key, version_id.as_deref())?;
    check_conditions(
        &meta,
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
    )
    .map_err(|e| {
        if *e.code() == S3ErrorCode::NotModified {
            s3_error!(PreconditionFailed, "a copy-source condition failed")
        } else {
            e
        }
    })?;
    Ok(CopySourceObject {
        bucket: bucket.to_string(),
        key: key.to_string(),
        version,
        meta,
    })
}

impl CopySourceObject {
    /// Copies `range` of the source into store file `to`: its size and
    /// ETag. A source that cannot be read whole leaves nothing behind.
    pub(crate) async fn copy_into(
        self,
        s3: &StoreS3,
        range: std::ops::Range<u64>,
        to: &str,
        checksum: Option<checksums::Wanted>,
    ) -> S3Result<(u64, String, Option<checksums::StoredChecksum>)> {
        let wanted = range.end - range.start;
        let body = s3
            .read_stream(self.version, range)
            .map_err(std::io::Error::other);
        let (size, etag, checksum) = s3.store_file(to, body, None, checksum).await?;
        if size != wanted {
            let _ = s3.store().delete(to).await;
            return Err(S3Error::with_message(
                S3ErrorCode::ServiceUnavailable,
                format!(
                    "{}/{} could not be read whole; nothing was copied",
                    self.bucket, self.key
                ),
            ));
        }
        Ok((size, etag, checksum))
    }
}

/// Evaluates If-Match, If-None-Match, If-Modified-Since and
/// If-Unmodified-Since against an object, as S3 does for GET and HEAD.
pub(crate) fn check_conditions(
    meta: &ObjectMeta,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let matches = |c: &ETagCondition| match c {
        ETagCondition::Any => true,
        ETagCondition::ETag(e) => e.value() == meta.etag,
    };
    if let Some(c) = if_match
        && !matches(c)
    {
        return Err(s3_error!(PreconditionFailed));
    }
    if if_match.is_none()
        && let Some(t) = if_unmodified_since
        && meta.modified > secs_of(t)
    {
        return Err(s3_error!(PreconditionFailed));
    }
    if let Some(c) = if_none_match
        && matches(c)
    {
        return Err(not_modified(meta));
    }
    if if_none_match.is_none()
        && let Some(t) = if_modified_since
        && meta.modified <= secs_of(t)
    {
        return Err(not_modified(meta));
    }
    Ok(())
}

/// 304, with the ETag and Last-Modified S3 sends with it (caches need the
/// ETag to revalidate).
fn not_modified(meta: &ObjectMeta) -> S3Error {
    let mut e = s3_error!(NotModified);
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(&format!("\"{}\"", meta.etag)) {
        headers.insert(http::header::ETAG, v);
    }
    let mut date = Vec::new();
    if timestamp(meta.modified)
        .format(TimestampFormat::HttpDate, &mut date)
        .is_ok()
        && let Ok(v) = http::HeaderValue::from_bytes(&date)
    {
        headers.insert(http::header::LAST_MODIFIED, v);
    }
    e.set_headers(headers);
    e
}

pub(crate) fn metadata_of(m: &ObjectMeta) -> Option<Metadata> {
    (!m.metadata.is_empty()).then(|| {
        m.metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    })
}

/// What a delete did: the version it deleted, or the delete marker it
/// made (with that marker's version id).
pub(crate) struct Deleted {
    pub delete_marker: bool,
    pub version_id: Option<String>,
}

/// Deletes `bucket/key`: with a version id, that version; in a bucket that
/// keeps versions, by putting a delete marker on top (the versions stay);
/// otherwise the object itself. Deleting what is not there succeeds.
pub(crate) async fn delete_one(
    s3: &StoreS3,
    bucket: &str,
    key: &str,
    version_id: Option<&str>,
) -> S3Result<Deleted> {
    if let Some(v) = version_id {
        let gone = s3.delete_version(bucket, key, v).await?;
        return Ok(Deleted {
            delete_marker: gone.as_ref().is_some_and(|m| m.delete_marker),
            version_id: Some(v.to_owned()),
        });
    }
    let config = s3.bucket_config(bucket)?;
    if config.keeps_versions() {
        let staged = write::staging_name();
        s3.store()
            .put(&staged, &b""[..])
            .await
            .map_err(store_error)?;
        let marker = ObjectMeta {
            etag: String::new(),
            modified: now(),
            owner: None,
            delete_marker: true,
            ..Default::default()
        };
        let (m, _) = s3
            .commit(
                bucket,
                key,
                Staged::File(&staged),
                &marker,
                &WriteConditions::default(),
            )
            .await?;
        return Ok(Deleted {
            delete_marker: true,
            version_id: Some(m.version().to_owned()),
        });
    }
    let _lock = s3.s3.locks.lock(bucket, key).await;
    // One index transaction takes the object and its parts; readers that
    // opened it read on, and its shards go when they are done.
    match s3.store().delete(&meta::file_name(bucket, key)).await {
        Ok(()) => s3.host.changed(),
        Err(cloudshell_store::StoreError::NotFound(_)) => {}
        Err(e) => return Err(store_error(e)),
    }
    Ok(Deleted {
        delete_marker: false,
        version_id: None,
    })
}
