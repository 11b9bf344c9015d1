//! Tags of objects (at most 10, also given on PUT with `x-amz-tagging`)
//! and of buckets (at most 50), kept with them and checked against S3's
//! limits.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::StoreS3;

/// S3's tag limits: 10 per object, 50 per bucket; keys 1 to 128
/// characters, values at most 256; no key twice; no `aws:` keys.
fn check_tags(tags: &[(String, String)], most: usize) -> S3Result<()> {
    let invalid = |m: String| S3Error::with_message(S3ErrorCode::InvalidTag, m);
    if tags.len() > most {
        return Err(invalid(format!(
            "at most {most} tags are allowed here, not {}",
            tags.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 {
            return Err(invalid(format!(
                "the tag key {k:?} must be 1 to 128 characters"
            )));
        }
        if v.chars().count() > 256 {
            return Err(invalid(format!(
                "the value of tag {k:?} is longer than 256 characters"
            )));
        }
        if k.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(format!(
                "the tag key {k:?} uses the reserved prefix aws:"
            )));
        }
        if !seen.insert(k) {
            return Err(invalid(format!("the tag key {k:?} is given twice")));
        }
    }
    Ok(())
}

fn tags_of(tagging: &Tagging) -> Vec<(String, String)> {
    tagging
        .tag_set
        .iter()
        .map(|t| {
            (
                t.key.clone().unwrap_or_default(),
                t.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn tag_set(tags: &[(String, String)]) -> TagSet {
    tags.iter()
        .map(|(k, v)| Tag {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

/// Object tags from an `x-amz-tagging` header (`k=v&k2=v2`, URL-encoded).
pub(crate) fn tags_of_header(header: Option<&str>) -> S3Result<Vec<(String, String)>> {
    let Some(header) = header.filter(|h| !h.is_empty()) else {
        return Ok(Vec::new());
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| {
                S3Error::with_message(S3ErrorCode::InvalidTag, "x-amz-tagging is not UTF-8")
            })
    };
    let mut tags = Vec::new();
    for pair in header.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        tags.push((decode(k)?, decode(v)?));
    }
    check_tags(&tags, 10)?;
    Ok(tags)
}

pub(crate) async fn get_bucket_tagging(
    s3: &StoreS3,
    bucket: &str,
) -> S3Result<GetBucketTaggingOutput> {
    match s3.bucket_config(bucket)?.tags {
        Some(tags) => Ok(GetBucketTaggingOutput {
            tag_set: tag_set(&tags),
        }),
        None => Err(crate::unconfigured::none("NoSuchTagSet", "tag set")),
    }
}

pub(crate) async fn put_bucket_tagging(
    s3: &StoreS3,
    bucket: &str,
    tagging: &Tagging,
) -> S3Result<()> {
    let tags = tags_of(tagging);
    check_tags(&tags, 50)?;
    s3.change_bucket(bucket, |c| c.tags = Some(tags))
}

pub(crate) async fn delete_bucket_tagging(s3: &StoreS3, bucket: &str) -> S3Result<()> {
    s3.change_bucket(bucket, |c| c.tags = None)
}

pub(crate) async fn get_object_tagging(
    s3: &StoreS3,
    bucket: &str,
    key: &str,
) -> S3Result<GetObjectTaggingOutput> {
    let (_, m) = s3.open_object(bucket, key)?;
    Ok(GetObjectTaggingOutput {
        tag_set: tag_set(&m.tags),
        version_id: None,
    })
}

pub(crate) async fn put_object_tagging(
    s3: &StoreS3,
    input: &PutObjectTaggingInput,
) -> S3Result<()> {
    let tags = tags_of(&input.tagging);
    check_tags(&tags, 10)?;
    s3.change_object(&input.bucket, &input.key, move |m| m.tags = tags)
        .await
}

pub(crate) async fn delete_object_tagging(s3: &StoreS3, bucket: &str, key: &str) -> S3Result<()> {
    s3.change_object(bucket, key, |m| m.tags.clear()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_as_s3_checks_them() {
        assert_eq!(
            tags_of_header(Some("a=1&b%20c=x+y")).unwrap(),
            [("a".into(), "1".into()), ("b c".into(), "x y".into())]
        );
        assert!(tags_of_header(Some("a=1&a=2")).is_err());
        assert!(tags_of_header(Some("aws:x=1")).is_err());
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert!(tags_of_header(Some(&eleven.join("&"))).is_err());
        assert!(check_tags(&[("k".repeat(129), String::new())], 10).is_err());
    }
}
