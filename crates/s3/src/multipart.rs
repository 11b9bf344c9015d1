//! Multipart uploads: each part is stored as its own store file; completing
//! composes them, in order, into the object's file (no copy: instant
//! whatever the size), and the parts belong to it from then on. Nothing is
//! visible under the key until then; aborting deletes the parts.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, s3_error};

use super::checksums;
use super::meta::{self, ObjectMeta, Upload};
use super::write::{Staged, WriteConditions};
use super::{StoreS3, internal, now, store_error, timestamp};

/// S3's smallest part but the last.
pub const MIN_PART: u64 = 5 << 20;

fn upload_of(s3: &StoreS3, id: &str, bucket: &str, key: &str) -> S3Result<Upload> {
    match s3.meta().upload(id).map_err(internal)? {
        Some(u) if u.bucket == bucket && u.key == key => Ok(u),
        _ => Err(s3_error!(NoSuchUpload, "no upload {id} for {bucket}/{key}")),
    }
}

pub async fn create(
    s3: &StoreS3,
    req: S3Request<CreateMultipartUploadInput>,
) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
    let caller = crate::settings::caller_of(&req);
    let input = req.input;
    let config = s3.bucket_config(&input.bucket)?;
    let (owner, acl) =
        crate::acls::written_object(&caller, &config, &crate::acls::object_acl_asked!(input))?;
    let tags = crate::tagging::tags_of_header(input.tagging.as_deref())?;
    let checksum = checksums::upload_checksum(
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
        input.checksum_type.as_ref().map(|t| t.as_str()),
    )?;
    let id = hex::encode(rand::random::<[u8; 16]>());
    let upload = Upload {
        bucket: input.bucket.clone(),
        key: input.key.clone(),
        headers: crate::objects::standard_headers_of!(input),
        content_type: input.content_type.map(|c| c.to_string()),
        metadata: input
            .metadata
            .map(|m| m.into_iter().collect())
            .unwrap_or_default(),
        initiated: now(),
        parts: Default::default(),
        files: Default::default(),
        owner,
        acl,
        tags,
        checksum: checksum.clone(),
        part_checksums: Default::default(),
    };
    s3.meta().put_upload(&id, &upload).map_err(internal)?;
    s3.host.changed();
    Ok(S3Response::new(CreateMultipartUploadOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(id),
        checksum_algorithm: checksum
            .as_ref()
            .map(|c| ChecksumAlgorithm::from(c.algorithm.clone())),
        checksum_type: checksum.as_ref().map(|c| {
            ChecksumType::from(
                if c.full_object {
                    "FULL_OBJECT"
                } else {
                    "COMPOSITE"
                }
                .to_owned(),
            )
        }),
        ..Default::default()
    }))
}

fn check_part_number(n: i32) -> S3Result<()> {
    if (1..=10_000).contains(&n) {
        Ok(())
    } else {
        Err(s3_error!(
            InvalidArgument,
            "part numbers go from 1 to 10000"
        ))
    }
}

/// Records a part stored in `file`; the upload may have gone meanwhile.
async fn record_part(
    s3: &StoreS3,
    id: &str,
    part: i32,
    etag: &str,
    size: u64,
    file: &str,
    checksum: Option<&checksums::StoredChecksum>,
) -> S3Result<()> {
    match s3
        .meta()
        .add_part(
            id,
            part,
            etag,
            size,
            file,
            checksum.map(|c| c.value.as_str()),
        )
        .map_err(internal)?
    {
        None => {
            // Aborted meanwhile: the part is garbage.
            let _ = s3.store().delete(file).await;
            Err(s3_error!(NoSuchUpload))
        }
        // Sent again: the last recorded send wins, as in S3; the earlier
        // one's file goes (unless a complete made it an object's already).
        Some(Some(earlier)) => {
            let _ = s3.store().delete(&earlier).await;
            Ok(())
        }
        Some(None) => Ok(()),
    }
}

/// `bytes=first-last` (both offsets included, as S3 asks of a copy
/// source range) within an object of `size` bytes.
fn copy_range(range: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let parsed = range
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    let Some((first, last)) = parsed.filter(|(a, b)| a <= b) else {
        return Err(s3_error!(
            InvalidArgument,
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy"
        ));
    };
    if last >= size {
        return Err(s3_error!(
            InvalidArgument,
            "Range specified is not valid for source object of size: {size}"
        ));
    }
    Ok(first..last + 1)
}

pub async fn upload_part_copy(
    s3: &StoreS3,
    req: S3Request<UploadPartCopyInput>,
) -> S3Result<S3Response<UploadPartCopyOutput>> {
    let input = req.input;
    let upload = upload_of(s3, &input.upload_id, &input.bucket, &input.key)?;
    check_part_number(input.part_number)?;
    let wanted = part_checksum(&upload, &http::HeaderMap::new(), None, None)?;
    let source = crate::objects::open_copy_source(
        s3,
        &input.copy_source,
        input.copy_source_if_match.as_ref(),
        input.copy_source_if_none_match.as_ref(),
        input.copy_source_if_modified_since.as_ref(),
        input.copy_source_if_unmodified_since.as_ref(),
    )?;
    let range = match &input.copy_source_range {
        Some(r) => copy_range(r, source.meta.size)?,
        None => 0..source.meta.size,
    };
    let file = meta::new_part_file(&input.upload_id, input.part_number);
    let (size, etag, checksum) = source.copy_into(s3, range, &file, wanted).await?;
    record_part(
        s3,
        &input.upload_id,
        input.part_number,
        &etag,
        size,
        &file,
        checksum.as_ref(),
    )
    .await?;
    let mut result = CopyPartResult {
        e_tag: Some(ETag::Strong(etag)),
        last_modified: Some(crate::timestamp(now())),
        ..Default::default()
    };
    if let Some(c) = &checksum {
        checksums::set_checksum!(values result, c.fields());
    }
    Ok(S3Response::new(UploadPartCopyOutput {
        copy_part_result: Some(result),
        ..Default::default()
    }))
}

/// The checksum a part of `upload` is checked and kept with: what its
/// request sends, which must be the upload's algorithm when the upload
/// has one (a part of an upload without one may still send one, to have
/// it checked).
fn part_checksum(
    upload: &Upload,
    headers: &http::HeaderMap,
    declared: Option<&str>,
    trailers: Option<s3s::TrailingHeaders>,
) -> S3Result<Option<checksums::Wanted>> {
    let expected = upload
        .checksum
        .as_ref()
        .map(|c| checksums::Algo::parse(&c.algorithm))
        .transpose()?;
    let wanted = checksums::wanted(headers, declared, trailers, expected)?;
    if let (Some(e), Some(w)) = (expected, &wanted)
        && w.algo() != e
    {
        return Err(s3_error!(
            InvalidRequest,
            "Checksum Type mismatch occurred, expected checksum Type: {}, actual checksum Type: {}",
            e.name().to_ascii_lowercase(),
            w.algo().name().to_ascii_lowercase()
        ));
    }
    Ok(wanted)
}

pub async fn upload_part(
    s3: &StoreS3,
    req: S3Request<UploadPartInput>,
) -> S3Result<S3Response<UploadPartOutput>> {
    let (headers, trailers, input) = (req.headers, req.trailing_headers, req.input);
    let upload = upload_of(s3, &input.upload_id, &input.bucket, &input.key)?;
    check_part_number(input.part_number)?;
    let wanted = part_checksum(
        &upload,
        &headers,
        input.checksum_algorithm.as_ref().map(|a| a.as_str()),
        trailers,
    )?;
    let body = input
        .body
        .ok_or_else(|| s3_error!(IncompleteBody, "no body"))?;
    let body = futures_util::TryStreamExt::map_err(body, std::io::Error::other);
    let file = meta::new_part_file(&input.upload_id, input.part_number);
    let (size, etag, checksum) = s3
        .store_file(&file, body, input.content_md5.as_deref(), wanted)
        .await?;
    record_part(
        s3,
        &input.upload_id,
        input.part_number,
        &etag,
        size,
        &file,
        checksum.as_ref(),
    )
    .await?;
    let mut out = UploadPartOutput {
        e_tag: Some(ETag::Strong(etag)),
        ..Default::default()
    };
    if let Some(c) = &checksum {
        checksums::set_checksum!(values out, c.fields());
    }
    Ok(S3Response::new(out))
}

pub async fn complete(
    s3: &StoreS3,
    req: S3Request<CompleteMultipartUploadInput>,
) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
    let input = req.input;
    let upload = upload_of(s3, &input.upload_id, &input.bucket, &input.key)?;
    let cond = WriteConditions {
        if_match: input.if_match,
        if_none_match: input.if_none_match,
    };
    // A whole-object checksum sent with the complete (FULL_OBJECT).
    let sent_whole = [
        &input.checksum_crc32,
        &input.checksum_crc32c,
        &input.checksum_crc64nvme,
        &input.checksum_sha1,
        &input.checksum_sha256,
    ]
    .into_iter()
    .find_map(Clone::clone);
    let listed = input
        .multipart_upload
        .and_then(|m| m.parts)
        .unwrap_or_default();
    // The checksum each listed part says it has, if any.
    let sent_sums: Vec<Option<String>> = listed
        .iter()
        .map(|p| {
            [
                &p.checksum_crc32,
                &p.checksum_crc32c,
                &p.checksum_crc64nvme,
                &p.checksum_sha1,
                &p.checksum_sha256,
            ]
            .into_iter()
            .find_map(Clone::clone)
        })
        .collect();
    let asked: Vec<(i32, String)> = listed
        .into_iter()
        .map(|p| {
            (
                p.part_number.unwrap_or(0),
                p.e_tag.map(|e| e.value().to_owned()).unwrap_or_default(),
            )
        })
        .collect();
    if asked.is_empty() {
        return Err(s3_error!(MalformedXML, "name at least one part"));
    }
    let mut previous = 0;
    for (i, (n, etag)) in asked.iter().enumerate() {
        if *n <= previous {
            return Err(s3_error!(
                InvalidPartOrder,
                "parts must be listed in ascending order"
            ));
        }
        previous = *n;
        let Some((have, size)) = upload.parts.get(n) else {
            return Err(s3_error!(InvalidPart, "part {n} was not uploaded"));
        };
        if have != etag.trim_matches('"') {
            return Err(s3_error!(
                InvalidPart,
                "part {n} has ETag {have}, not {etag}"
            ));
        }
        if i + 1 < asked.len() && *size < MIN_PART {
            return Err(s3_error!(
                EntityTooSmall,
                "part {n} is {size} bytes; every part but the last must be at least 5 MiB"
            ));
        }
    }
    let checksum = match &upload.checksum {
        None => None,
        Some(how) => {
            let mut sums = Vec::new();
            for ((n, _), sent) in asked.iter().zip(&sent_sums) {
                let Some(have) = upload.part_checksums.get(n) else {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {n} has no {} checksum; upload it again",
                        how.algorithm
                    ));
                };
                if let Some(sent) = sent
                    && sent.trim() != have
                {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {n} has {} {have}, not {sent}",
                        how.algorithm
                    ));
                }
                sums.push((have.clone(), upload.parts.get(n).map_or(0, |(_, s)| *s)));
            }
            let whole = checksums::combine(how, &sums)?;
            if let Some(sent) = &sent_whole
                && how.full_object
                && sent.trim() != whole.value
            {
                return Err(S3Error::with_message(
                    S3ErrorCode::BadDigest,
                    format!(
                        "The {} you specified did not match the calculated checksum of the parts.",
                        how.algorithm
                    ),
                ));
            }
            Some(whole)
        }
    };
    // The parts become the object's files as they are: completing takes no
    // copy, so it is instant whatever the size (a client waiting minutes
    // for a copy would time out and retry).
    let files: Vec<String> = asked
        .iter()
        .map(|(n, _)| upload.file_of(&input.upload_id, *n))
        .collect();
    let size = asked
        .iter()
        .map(|(n, _)| upload.parts.get(n).map_or(0, |(_, s)| *s))
        .sum();
    // S3's multipart ETag: the MD5 of the parts' MD5s, and their count.
    let etag = {
        use md5::Digest as _;
        let mut h = md5::Md5::new();
        for (_, e) in &asked {
            let hex = e.trim_matches('"');
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
                .collect();
            h.update(&bytes);
        }
        let d = h.finalize();
        format!("{}-{}", hex::encode(d), asked.len())
    };
    let m = ObjectMeta {
        size,
        etag: etag.clone(),
        content_type: upload.content_type.clone(),
        metadata: upload.metadata.clone(),
        headers: upload.headers.clone(),
        modified: now(),
        owner: upload.owner.clone(),
        acl: upload.acl.clone(),
        tags: upload.tags.clone(),
        checksum,
        ..Default::default()
    };
    // A refused complete leaves the upload as it was, to retry or abort.
    let (m, version_id) = s3
        .commit(&input.bucket, &input.key, Staged::Parts(&files), &m, &cond)
        .await?;
    // Parts uploaded but left out of the object are garbage.
    let used: std::collections::HashSet<i32> = asked.iter().map(|(n, _)| *n).collect();
    for n in upload.parts.keys().filter(|n| !used.contains(n)) {
        let _ = s3
            .store()
            .delete(&upload.file_of(&input.upload_id, *n))
            .await;
    }
    s3.meta()
        .remove_upload(&input.upload_id)
        .map_err(internal)?;
    let mut out = CompleteMultipartUploadOutput {
        bucket: Some(input.bucket.clone()),
        key: Some(input.key.clone()),
        e_tag: Some(ETag::Strong(etag)),
        location: Some(format!("/{}/{}", input.bucket, input.key)),
        version_id,
        ..Default::default()
    };
    if let Some(c) = &m.checksum {
        checksums::set_checksum!(out, c.fields());
    }
    Ok(S3Response::new(out))
}

/// Deletes an upload's parts and forgets it.
async fn discard(s3: &StoreS3, id: &str, upload: &Upload) -> S3Result<()> {
    use cloudshell_store::StoreError;
    use cloudshell_store::index::IndexError;
    for n in upload.parts.keys() {
        match s3.store().delete(&upload.file_of(id, *n)).await {
            // A part an object is made of (the upload completed, and the
            // daemon stopped before it forgot the upload) stays with it.
            Ok(())
            | Err(StoreError::NotFound(_) | StoreError::Index(IndexError::PartOf { .. })) => {}
            Err(e) => return Err(store_error(e)),
        }
    }
    s3.meta().remove_upload(id).map_err(internal)
}

pub async fn abort(
    s3: &StoreS3,
    req: S3Request<AbortMultipartUploadInput>,
) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
    let input = req.input;
    let upload = upload_of(s3, &input.upload_id, &input.bucket, &input.key)?;
    discard(s3, &input.upload_id, &upload).await?;
    s3.host.changed();
    Ok(S3Response::new(AbortMultipartUploadOutput::default()))
}

pub async fn list_parts(
    s3: &StoreS3,
    req: S3Request<ListPartsInput>,
) -> S3Result<S3Response<ListPartsOutput>> {
    let input = req.input;
    let upload = upload_of(s3, &input.upload_id, &input.bucket, &input.key)?;
    let after = input.part_number_marker.unwrap_or(0);
    let max = usize::try_from(input.max_parts.unwrap_or(1000).clamp(1, 1000)).unwrap_or(1000);
    let all: Vec<Part> = upload
        .parts
        .range(after + 1..)
        .map(|(n, (etag, size))| Part {
            part_number: Some(*n),
            e_tag: Some(ETag::Strong(etag.clone())),
            size: i64::try_from(*size).ok(),
            last_modified: Some(timestamp(upload.initiated)),
            ..Default::default()
        })
        .collect();
    let truncated = all.len() > max;
    let parts: Vec<Part> = all.into_iter().take(max).collect();
    Ok(S3Response::new(ListPartsOutput {
        bucket: Some(input.bucket),
        key: Some(input.key),
        upload_id: Some(input.upload_id),
        part_number_marker: input.part_number_marker,
        next_part_number_marker: parts.last().and_then(|p| p.part_number),
        max_parts: Some(i32::try_from(max).unwrap_or(1000)),
        is_truncated: Some(truncated),
        parts: Some(parts),
        ..Default::default()
    }))
}

pub async fn list_uploads(
    s3: &StoreS3,
    req: S3Request<ListMultipartUploadsInput>,
) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
    let input = req.input;
    s3.require_bucket(&input.bucket)?;
    let prefix = input.prefix.clone().unwrap_or_default();
    let uploads = s3
        .meta()
        .uploads(&input.bucket)
        .map_err(internal)?
        .into_iter()
        .filter(|(_, u)| u.key.starts_with(&prefix))
        .map(|(id, u)| MultipartUpload {
            key: Some(u.key),
            upload_id: Some(id),
            initiated: Some(timestamp(u.initiated)),
            ..Default::default()
        })
        .collect();
    Ok(S3Response::new(ListMultipartUploadsOutput {
        bucket: Some(input.bucket),
        prefix: input.prefix,
        is_truncated: Some(false),
        uploads: Some(uploads),
        ..Default::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_are_read_as_s3_reads_them() {
        assert_eq!(copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(copy_range("bytes=5-5", 10).unwrap(), 5..6);
        for bad in ["bytes=5-2", "5-9", "bytes=0-", "bytes=-5", "bytes=a-b"] {
            let e = copy_range(bad, 10).unwrap_err();
            assert_eq!(*e.code(), s3s::S3ErrorCode::InvalidArgument, "{bad}");
        }
        let e = copy_range("bytes=0-10", 10).unwrap_err();
        assert!(e.message().unwrap().contains("size: 10"), "{e:?}");
    }
}
