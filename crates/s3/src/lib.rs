//! The S3-compatible endpoint of the store: `s3s` parses requests and
//! checks SigV4 (header and query forms, `aws-chunked` bodies) against the
//! endpoint's own access keys; this crate maps S3 onto the store. An object is the store
//! file `s3/BUCKET/KEY` with its metadata as the file's attributes
//! ([`meta`]), streamed in and out through the store pipeline, so memory
//! stays bounded whatever the size. A GET or HEAD resolves the key once to
//! a held version and answers with that version's metadata and bytes to the
//! end, whatever writes or deletes come meanwhile.
//!
//! Every request is checked before its operation runs and before its body
//! is read: keys act as users, buckets and objects have owners, and ACLs,
//! bucket policies and the public access block say who else may do what
//! ([`access`] decides; an unsigned request gets what they grant everyone).
//! Versions, CORS, tags and checksums are kept as S3 keeps them
//! ([`versions`], [`cors`], [`checksums`]).
//!
//! It reaches its host (the store daemon) through a narrow port, [`Host`]:
//! the store, and a hook told after every change. What it keeps itself
//! (buckets and uploads in [`meta`], access keys in [`keys`]) is its
//! [`S3State`]. [`service`] assembles the s3s service an HTTP server runs.

pub mod access;
mod acls;
pub mod checksums;
pub mod cors;
mod guard;
pub mod keys;
mod listing;
pub mod meta;
mod multipart;
mod objects;
pub mod paths;
pub mod post_form;
pub mod presigned;
pub mod region;
mod settings;
mod tagging;
mod unconfigured;
pub mod versions;
pub mod write;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use s3s::dto::*;
use s3s::{S3, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use cloudshell_store::{Store, Version};
use listing::list_page;
use meta::ObjectMeta;

/// The name the S3 metadata goes under in the store's index backups.
pub const INDEX_EXTRA: &str = "s3";

/// Keys listed per page at most.
const MAX_KEYS: usize = 1000;

/// What the endpoint needs from whoever hosts it.
pub trait Host: Send + Sync + 'static {
    /// The store the objects live in.
    fn store(&self) -> &Store;
    /// Told after every change the endpoint made to the store's index, so
    /// the host backs it up and refreshes its views.
    fn changed(&self);
}

/// The s3s service over `host`'s store, every request signed with one of
/// `s3`'s access keys.
pub fn service(host: Arc<dyn Host>, s3: Arc<S3State>) -> s3s::service::S3Service {
    let mut builder = s3s::service::S3ServiceBuilder::new(StoreS3::new(host.clone(), s3.clone()));
    builder.set_auth(KeyAuth::new(s3.clone()));
    builder.set_access(guard::Guard::new(host, s3));
    builder.build()
}

/// The S3 service over a host's store.
#[derive(Clone)]
pub struct StoreS3 {
    host: Arc<dyn Host>,
    s3: Arc<S3State>,
}

impl std::fmt::Debug for StoreS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreS3").finish_non_exhaustive()
    }
}

impl StoreS3 {
    /// S3 over `host`'s store, with what `s3` keeps.
    pub fn new(host: Arc<dyn Host>, s3: Arc<S3State>) -> Self {
        Self { host, s3 }
    }

    fn meta(&self) -> &meta::Meta {
        &self.s3.meta
    }

    fn store(&self) -> &Store {
        self.host.store()
    }
}

/// Looks up access keys for s3s's signature check.
#[derive(Debug, Clone)]
pub struct KeyAuth {
    s3: Arc<S3State>,
}

impl KeyAuth {
    /// The keys of `s3`.
    pub fn new(s3: Arc<S3State>) -> Self {
        Self { s3 }
    }
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for KeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<s3s::auth::SecretKey> {
        self.s3
            .keys
            .secret(access_key)
            .map(s3s::auth::SecretKey::from)
            .ok_or_else(|| {
                s3_error!(
                    InvalidAccessKeyId,
                    "no such access key; see `cloudshell store keys list`"
                )
            })
    }
}

/// What S3 keeps besides the store.
#[derive(Debug)]
pub struct S3State {
    /// Buckets and object metadata.
    pub meta: meta::Meta,
    /// Access keys.
    pub keys: keys::Keys,
    /// One writer at a time commits to a key.
    pub locks: write::KeyLocks,
}

fn decode_md5(b64: &str) -> Option<[u8; 16]> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?
        .try_into()
        .ok()
}

fn internal<E: std::fmt::Display>(e: E) -> S3Error {
    S3Error::with_message(S3ErrorCode::InternalError, e.to_string())
}

/// A write refused for want of room: 507, as MinIO says it (S3 itself has
/// no word for a full store), with what to do.
fn storage_full(message: String) -> S3Error {
    let mut err = S3Error::with_message(
        S3ErrorCode::Custom("XCloudShellStorageFull".into()),
        format!("{message}{FULL_HINT}"),
    );
    err.set_status_code(http::StatusCode::INSUFFICIENT_STORAGE);
    err
}

/// What to do when a node is out of room.
const FULL_HINT: &str = "; make room by deleting objects, add a region \
     (cloudshell store add-region REGION), or raise agent_quota";

fn store_error(e: cloudshell_store::StoreError) -> S3Error {
    use cloudshell_store::StoreError;
    match e {
        StoreError::NotFound(_) => s3_error!(NoSuchKey),
        StoreError::ShardWrite { ref source, .. } if source.is_full() => {
            storage_full(format!("{e}: {source}"))
        }
        StoreError::StoreFull { .. } => storage_full(e.to_string()),
        StoreError::NoNodes | StoreError::ShardWrite { .. } | StoreError::Unrecoverable { .. } => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, e.to_string())
        }
        // Only the parts of a completed upload belong to another file.
        StoreError::Index(cloudshell_store::index::IndexError::PartOf { .. }) => {
            S3Error::with_message(
                S3ErrorCode::NoSuchUpload,
                "that upload was completed: its parts belong to the object now",
            )
        }
        StoreError::Io(_) => S3Error::with_message(S3ErrorCode::IncompleteBody, e.to_string()),
        other => internal(other),
    }
}

fn timestamp(secs: i64) -> Timestamp {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    Timestamp::from(t)
}

fn secs_of(t: &Timestamp) -> i64 {
    // Timestamps only format: through the epoch-seconds form and back.
    let mut buf = Vec::new();
    if t.format(s3s::dto::TimestampFormat::EpochSeconds, &mut buf)
        .is_ok()
        && let Ok(s) = std::str::from_utf8(&buf)
        && let Ok(v) = s.split('.').next().unwrap_or("").parse::<i64>()
    {
        return v;
    }
    0
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn now() -> i64 {
    i64::try_from(now_secs()).unwrap_or(i64::MAX)
}

impl StoreS3 {
    fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        if self.meta().has_bucket(bucket).map_err(internal)? {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket, "no bucket named {bucket}"))
        }
    }

    /// The current version of `bucket/key`, held, with its metadata (a
    /// current delete marker reads as no object).
    fn open_object(&self, bucket: &str, key: &str) -> S3Result<(Version, ObjectMeta)> {
        self.open_version(bucket, key, None)
    }

    /// Streams `body` into the store file `name`, computing its MD5 and
    /// the additional checksum `checksum` asks for; with a `Content-MD5`
    /// (base64) or a checksum sent, a body that does not match is removed
    /// again and refused with BadDigest, as S3 does.
    async fn store_file<S>(
        &self,
        name: &str,
        body: S,
        content_md5: Option<&str>,
        checksum: Option<checksums::Wanted>,
    ) -> S3Result<(u64, String, Option<checksums::StoredChecksum>)>
    where
        S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + Unpin,
    {
        use md5::Digest as _;
        struct Sums {
            md5: md5::Md5,
            extra: Option<checksums::Running>,
        }
        let sums = std::sync::Arc::new(std::sync::Mutex::new(Sums {
            md5: md5::Md5::new(),
            extra: checksum.map(checksums::Running::new),
        }));
        let tap = sums.clone();
        let tapped = body.map(move |chunk| {
            if let Ok(b) = &chunk {
                let mut s = tap
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.md5.update(b);
                if let Some(extra) = &mut s.extra {
                    extra.update(b);
                }
            }
            chunk
        });
        let reader = tokio_util::io::StreamReader::new(tapped);
        let report = self.store().put(name, reader).await.map_err(store_error)?;
        let Sums { md5, extra } = std::mem::replace(
            &mut *sums
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Sums {
                md5: md5::Md5::new(),
                extra: None,
            },
        );
        let digest = md5.finalize();
        let mut refusal = match content_md5.map(decode_md5) {
            None => None,
            Some(None) => Some(s3_error!(
                InvalidDigest,
                "Content-MD5 must be the base64 of 16 bytes"
            )),
            Some(Some(e)) if e[..] != digest[..] => Some(s3_error!(
                BadDigest,
                "the body does not match its Content-MD5; nothing was stored"
            )),
            Some(Some(_)) => None,
        };
        let checksum = match extra.map(checksums::Running::finish).transpose() {
            Ok(c) => c,
            Err(e) => {
                refusal = refusal.or(Some(e));
                None
            }
        };
        if let Some(e) = refusal {
            let _ = self.store().delete(name).await;
            return Err(e);
        }
        let etag = hex::encode(digest);
        self.host.changed();
        Ok((report.record.size, etag, checksum))
    }

    /// `range` of `version` as a body: the store's decoded chunks, moved
    /// into it as they come.
    fn read_stream(&self, version: Version, range: std::ops::Range<u64>) -> StreamingBlob {
        let (chunks, body) = cloudshell_store::chunk_channel();
        let host = self.host.clone();
        tokio::spawn(async move {
            if let Err(e) = host.store().read_chunks(&version, range, chunks).await {
                // The body breaks off short of its length: the client sees
                // a failed transfer, never wrong bytes.
                tracing::warn!(file = %version.record().name, "S3 read failed: {e}");
            }
        });
        StreamingBlob::wrap(body)
    }
}

#[async_trait::async_trait]
impl S3 for StoreS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        // The guard lets only signed requests here.
        let caller = settings::caller_of(&req);
        let user = caller.user().unwrap_or_default();
        let mut buckets = Vec::new();
        for (name, created) in self.meta().buckets().map_err(internal)? {
            // Each user lists the buckets it owns, as in S3.
            if self
                .meta()
                .bucket_config(&name)
                .map_err(internal)?
                .is_some_and(|c| c.owner == user)
            {
                buckets.push(Bucket {
                    name: Some(name),
                    creation_date: Some(timestamp(i64::try_from(created).unwrap_or(0))),
                    ..Default::default()
                });
            }
        }
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(settings::owner_of(user)),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let caller = settings::caller_of(&req);
        let input = &req.input;
        let bucket = &input.bucket;
        let user = caller.user().unwrap_or(access::DEFAULT_USER);
        let mut config = meta::BucketConfig::new(user);
        config.ownership = input
            .object_ownership
            .as_ref()
            .map(|o| o.as_str().to_owned());
        let asked = acls::acl_asked!(input,
            grant_full_control => FullControl, grant_read => Read, grant_read_acp => ReadAcp,
            grant_write => Write, grant_write_acp => WriteAcp);
        if config.acls_disabled() && !matches!(asked.canned, None | Some("private")) {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidBucketAclWithObjectOwnership,
                "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
            ));
        }
        config.acl = asked.resolve(user, &config)?;
        match self
            .meta()
            .create_bucket(bucket, now_secs(), &config)
            .map_err(internal)?
        {
            Ok(()) => {}
            Err(owner) if owner == user => {
                return Err(s3_error!(
                    BucketAlreadyOwnedByYou,
                    "you have a bucket named {bucket} already"
                ));
            }
            Err(_) => {
                return Err(s3_error!(
                    BucketAlreadyExists,
                    "another user has a bucket named {bucket}; bucket names are shared by all users: choose another"
                ));
            }
        }
        self.host.changed();
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket)?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = &req.input.bucket;
        self.require_bucket(bucket)?;
        let objects = self
            .store()
            .index()
            .files_from(&meta::file_name(bucket, ""), None, 1)
            .map_err(internal)?;
        if !objects.is_empty() {
            return Err(s3_error!(
                BucketNotEmpty,
                "{bucket} still holds objects; delete them first"
            ));
        }
        let kept = self
            .store()
            .index()
            .files_from(&versions::bucket_prefix(bucket), None, 1)
            .map_err(internal)?;
        if !kept.is_empty() {
            return Err(s3_error!(
                BucketNotEmpty,
                "{bucket} still holds earlier versions of objects; delete them by version id first"
            ));
        }
        self.meta().delete_bucket(bucket).map_err(internal)?;
        self.host.changed();
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        objects::put_object(self, req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        objects::get_object(self, req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        objects::head_object(self, req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        objects::delete_object(self, req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        objects::delete_objects(self, req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        objects::copy_object(self, req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let config = self.bucket_config(&input.bucket)?;
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
        let after = input
            .continuation_token
            .clone()
            .or_else(|| input.start_after.clone());
        let mut page = list_page(
            self.store().index(),
            &input.bucket,
            &config.owner,
            &prefix,
            delimiter.as_deref(),
            after.as_deref(),
            max,
            false,
        )?;
        // Version 2 names owners only when asked.
        if input.fetch_owner != Some(true) {
            for o in &mut page.contents {
                o.owner = None;
            }
        }
        let page = encoding.page(page);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            delimiter: delimiter.map(|d| encoding.apply(d)),
            encoding_type: encoding.echo(),
            max_keys: input.max_keys.or(Some(1000)),
            key_count: i32::try_from(page.contents.len() + page.prefixes.len()).ok(),
            continuation_token: input.continuation_token,
            start_after: input.start_after.map(|s| encoding.apply(s)),
            is_truncated: Some(page.next.is_some()),
            // The token is ours to read back, never encoded.
            next_continuation_token: page.next,
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..Default::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        Ok(S3Response::new(versions::list(self, req.input)?))
    }

    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        // A bucket never versioned answers an empty configuration.
        let config = self.bucket_config(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketVersioningOutput {
            status: config.versioning.map(BucketVersioningStatus::from),
            ..Default::default()
        }))
    }

    async fn put_bucket_versioning(
        &self,
        req: S3Request<PutBucketVersioningInput>,
    ) -> S3Result<S3Response<PutBucketVersioningOutput>> {
        let input = &req.input;
        let asked = &input.versioning_configuration;
        if asked
            .mfa_delete
            .as_ref()
            .is_some_and(|m| m.as_str() == "Enabled")
        {
            return Err(s3_error!(
                NotImplemented,
                "MFA delete is not supported: there are no MFA devices here"
            ));
        }
        let status = match asked.status.as_ref().map(BucketVersioningStatus::as_str) {
            Some(s @ ("Enabled" | "Suspended")) => s.to_owned(),
            other => {
                return Err(s3_error!(
                    MalformedXML,
                    "versioning Status must be Enabled or Suspended, not {other:?}"
                ));
            }
        };
        // A bucket never versioned stays so when asked to suspend.
        self.change_bucket(&input.bucket, |c| {
            if c.versioning.is_some() || status == "Enabled" {
                c.versioning = Some(status);
            }
        })?;
        Ok(S3Response::new(PutBucketVersioningOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        // No constraint means us-east-1, which is what clients sign for.
        self.require_bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        multipart::create(self, req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        multipart::upload_part_copy(self, req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        multipart::upload_part(self, req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        multipart::complete(self, req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        multipart::abort(self, req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        multipart::list_parts(self, req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        multipart::list_uploads(self, req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let config = self.bucket_config(&input.bucket)?;
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
        let page = list_page(
            self.store().index(),
            &input.bucket,
            &config.owner,
            &prefix,
            delimiter.as_deref(),
            input.marker.as_deref().filter(|m| !m.is_empty()),
            max,
            false,
        )?;
        let next = page.next.clone();
        let page = encoding.page(page);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(encoding.apply(prefix)),
            marker: Some(encoding.apply(input.marker.unwrap_or_default())),
            encoding_type: encoding.echo(),
            max_keys: input.max_keys.or(Some(1000)),
            is_truncated: Some(next.is_some()),
            // S3 gives NextMarker only with a delimiter; clients use the
            // last key otherwise.
            next_marker: next
                .filter(|_| delimiter.is_some())
                .map(|n| encoding.apply(n)),
            delimiter: delimiter.map(|d| encoding.apply(d)),
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..Default::default()
        }))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        Ok(S3Response::new(
            acls::get_bucket_acl(self, &req.input.bucket).await?,
        ))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        acls::put_bucket_acl(self, &req.input).await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        Ok(S3Response::new(
            acls::get_object_acl(self, &req.input.bucket, &req.input.key).await?,
        ))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        acls::put_object_acl(self, &req.input).await?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        Ok(S3Response::new(
            tagging::get_object_tagging(self, &req.input.bucket, &req.input.key).await?,
        ))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        tagging::put_object_tagging(self, &req.input).await?;
        Ok(S3Response::new(PutObjectTaggingOutput::default()))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        tagging::delete_object_tagging(self, &req.input.bucket, &req.input.key).await?;
        Ok(S3Response::new(DeleteObjectTaggingOutput::default()))
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        Ok(S3Response::new(
            tagging::get_bucket_tagging(self, &req.input.bucket).await?,
        ))
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        tagging::put_bucket_tagging(self, &req.input.bucket, &req.input.tagging).await?;
        Ok(S3Response::new(PutBucketTaggingOutput::default()))
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        tagging::delete_bucket_tagging(self, &req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketTaggingOutput::default()))
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        Ok(S3Response::new(
            settings::get_bucket_cors(self, &req.input.bucket).await?,
        ))
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        let input = &req.input;
        settings::put_bucket_cors(self, &input.bucket, &input.cors_configuration).await?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        settings::delete_bucket_cors(self, &req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        Ok(S3Response::new(
            settings::get_bucket_policy(self, &req.input.bucket).await?,
        ))
    }

    async fn put_bucket_policy(
        &self,
        req: S3Request<PutBucketPolicyInput>,
    ) -> S3Result<S3Response<PutBucketPolicyOutput>> {
        settings::put_bucket_policy(self, &req.input).await?;
        Ok(S3Response::new(PutBucketPolicyOutput::default()))
    }

    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        settings::delete_bucket_policy(self, &req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        Ok(S3Response::new(
            settings::get_bucket_policy_status(self, &req.input.bucket).await?,
        ))
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        Ok(S3Response::new(
            settings::get_public_access_block(self, &req.input.bucket).await?,
        ))
    }

    async fn put_public_access_block(
        &self,
        req: S3Request<PutPublicAccessBlockInput>,
    ) -> S3Result<S3Response<PutPublicAccessBlockOutput>> {
        let input = &req.input;
        settings::put_public_access_block(
            self,
            &input.bucket,
            &input.public_access_block_configuration,
        )
        .await?;
        Ok(S3Response::new(PutPublicAccessBlockOutput::default()))
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        settings::delete_public_access_block(self, &req.input.bucket).await?;
        Ok(S3Response::new(DeletePublicAccessBlockOutput::default()))
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        Ok(S3Response::new(
            settings::get_ownership_controls(self, &req.input.bucket).await?,
        ))
    }

    async fn put_bucket_ownership_controls(
        &self,
        req: S3Request<PutBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<PutBucketOwnershipControlsOutput>> {
        let input = &req.input;
        settings::put_ownership_controls(self, &input.bucket, &input.ownership_controls).await?;
        Ok(S3Response::new(PutBucketOwnershipControlsOutput::default()))
    }

    async fn delete_bucket_ownership_controls(
        &self,
        req: S3Request<DeleteBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<DeleteBucketOwnershipControlsOutput>> {
        settings::delete_ownership_controls(self, &req.input.bucket).await?;
        Ok(S3Response::new(
            DeleteBucketOwnershipControlsOutput::default(),
        ))
    }

    async fn get_bucket_logging(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        self.require_bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketLoggingOutput::default()))
    }

    async fn get_bucket_request_payment(
        &self,
        req: S3Request<GetBucketRequestPaymentInput>,
    ) -> S3Result<S3Response<GetBucketRequestPaymentOutput>> {
        self.require_bucket(&req.input.bucket)?;
        Ok(S3Response::new(GetBucketRequestPaymentOutput {
            payer: Some(Payer::from_static(Payer::BUCKET_OWNER)),
        }))
    }

    // Settings no bucket has here, answered as S3 answers a bucket without them.
    unconfigured::none_of!(
        get_object_lock_configuration,
        GetObjectLockConfigurationInput,
        GetObjectLockConfigurationOutput,
        "ObjectLockConfigurationNotFoundError",
        "object lock configuration"
    );
    unconfigured::none_of!(
        get_bucket_lifecycle_configuration,
        GetBucketLifecycleConfigurationInput,
        GetBucketLifecycleConfigurationOutput,
        "NoSuchLifecycleConfiguration",
        "lifecycle configuration"
    );
    unconfigured::none_of!(
        get_bucket_website,
        GetBucketWebsiteInput,
        GetBucketWebsiteOutput,
        "NoSuchWebsiteConfiguration",
        "website configuration"
    );
}
