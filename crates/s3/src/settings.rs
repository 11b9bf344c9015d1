//! What a bucket says about access and itself, stored and returned as S3
//! does: its policy and the policy's status, the public access block,
//! object ownership and CORS rules; and the ways to read and change a
//! bucket's settings and an object's metadata in place, which the ACL
//! (`acls.rs`) and tagging (`tagging.rs`) operations use too. The guard
//! (`guard.rs`) enforces them.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result, s3_error};

use crate::access::{self, Caller};
use crate::meta::{BucketConfig, ObjectMeta};
use crate::{StoreS3, internal};

/// Who sent `req` (the guard puts it there; nothing there is nobody).
pub(crate) fn caller_of<T>(req: &S3Request<T>) -> Caller {
    req.extensions
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Anonymous)
}

/// An owner as S3 XML shows it.
pub(crate) fn owner_of(user: &str) -> Owner {
    Owner {
        display_name: Some(user.to_owned()),
        id: Some(access::canonical_id(user)),
    }
}

impl StoreS3 {
    /// The owner and settings of `bucket`, or NoSuchBucket.
    pub(crate) fn bucket_config(&self, bucket: &str) -> S3Result<BucketConfig> {
        self.meta()
            .bucket_config(bucket)
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchBucket, "no bucket named {bucket}"))
    }

    /// Changes `bucket`'s settings, or NoSuchBucket.
    pub(crate) fn change_bucket<T>(
        &self,
        bucket: &str,
        change: impl FnOnce(&mut BucketConfig) -> T,
    ) -> S3Result<T> {
        let out = self
            .meta()
            .update_bucket_config(bucket, change)
            .map_err(internal)?
            .ok_or_else(|| s3_error!(NoSuchBucket, "no bucket named {bucket}"))?;
        self.host.changed();
        Ok(out)
    }

    /// Changes the metadata of object `key` in place (its bytes stay).
    pub(crate) async fn change_object(
        &self,
        bucket: &str,
        key: &str,
        change: impl FnOnce(&mut ObjectMeta) + Send,
    ) -> S3Result<()> {
        // Writers commit holding the key's lock: holding it, the object
        // read is the one whose attributes are set (a write cannot slip in
        // between and get the old object's ETag).
        let _commit = self.s3.locks.lock(bucket, key).await;
        let (version, mut m) = self.open_object(bucket, key)?;
        drop(version);
        change(&mut m);
        let name = crate::meta::file_name(bucket, key);
        if !self
            .store()
            .index()
            .set_attrs(&name, &m.to_attrs())
            .map_err(internal)?
        {
            return Err(s3_error!(NoSuchKey, "no key {key} in {bucket}"));
        }
        self.host.changed();
        Ok(())
    }
}

pub(crate) async fn get_bucket_policy(
    s3: &StoreS3,
    bucket: &str,
) -> S3Result<GetBucketPolicyOutput> {
    match s3.bucket_config(bucket)?.policy {
        Some(policy) => Ok(GetBucketPolicyOutput {
            policy: Some(policy),
        }),
        None => Err(crate::unconfigured::none(
            "NoSuchBucketPolicy",
            "bucket policy",
        )),
    }
}

pub(crate) async fn put_bucket_policy(s3: &StoreS3, input: &PutBucketPolicyInput) -> S3Result<()> {
    let config = s3.bucket_config(&input.bucket)?;
    let policy = access::Policy::parse(&input.policy, &input.bucket)
        .map_err(|e| S3Error::with_message(S3ErrorCode::MalformedPolicy, e.0))?;
    if policy.is_public() && config.block().block_public_policy {
        return Err(s3_error!(
            AccessDenied,
            "Access Denied: the bucket's public access block (BlockPublicPolicy) refuses a policy that allows everyone"
        ));
    }
    let text = policy.text().to_owned();
    s3.change_bucket(&input.bucket, |c| c.policy = Some(text))
}

pub(crate) async fn delete_bucket_policy(s3: &StoreS3, bucket: &str) -> S3Result<()> {
    s3.change_bucket(bucket, |c| c.policy = None)
}

pub(crate) async fn get_bucket_policy_status(
    s3: &StoreS3,
    bucket: &str,
) -> S3Result<GetBucketPolicyStatusOutput> {
    let Some(text) = s3.bucket_config(bucket)?.policy else {
        return Err(crate::unconfigured::none(
            "NoSuchBucketPolicy",
            "bucket policy",
        ));
    };
    let public = access::Policy::parse(&text, bucket).is_ok_and(|p| p.is_public());
    Ok(GetBucketPolicyStatusOutput {
        policy_status: Some(PolicyStatus {
            is_public: Some(public),
        }),
    })
}

pub(crate) async fn get_public_access_block(
    s3: &StoreS3,
    bucket: &str,
) -> S3Result<GetPublicAccessBlockOutput> {
    let Some(b) = s3.bucket_config(bucket)?.public_access_block else {
        return Err(crate::unconfigured::none(
            "NoSuchPublicAccessBlockConfiguration",
            "public access block configuration",
        ));
    };
    Ok(GetPublicAccessBlockOutput {
        public_access_block_configuration: Some(PublicAccessBlockConfiguration {
            block_public_acls: Some(b.block_public_acls),
            ignore_public_acls: Some(b.ignore_public_acls),
            block_public_policy: Some(b.block_public_policy),
            restrict_public_buckets: Some(b.restrict_public_buckets),
        }),
    })
}

pub(crate) async fn put_public_access_block(
    s3: &StoreS3,
    bucket: &str,
    c: &PublicAccessBlockConfiguration,
) -> S3Result<()> {
    let block = access::PublicAccessBlock {
        block_public_acls: c.block_public_acls.unwrap_or(false),
        ignore_public_acls: c.ignore_public_acls.unwrap_or(false),
        block_public_policy: c.block_public_policy.unwrap_or(false),
        restrict_public_buckets: c.restrict_public_buckets.unwrap_or(false),
    };
    s3.change_bucket(bucket, |cfg| cfg.public_access_block = Some(block))
}

pub(crate) async fn delete_public_access_block(s3: &StoreS3, bucket: &str) -> S3Result<()> {
    s3.change_bucket(bucket, |c| c.public_access_block = None)
}

pub(crate) async fn get_ownership_controls(
    s3: &StoreS3,
    bucket: &str,
) -> S3Result<GetBucketOwnershipControlsOutput> {
    let Some(rule) = s3.bucket_config(bucket)?.ownership else {
        return Err(crate::unconfigured::none(
            "OwnershipControlsNotFoundError",
            "ownership controls",
        ));
    };
    Ok(GetBucketOwnershipControlsOutput {
        ownership_controls: Some(OwnershipControls {
            rules: vec![OwnershipControlsRule {
                object_ownership: ObjectOwnership::from(rule),
            }],
        }),
    })
}

pub(crate) async fn put_ownership_controls(
    s3: &StoreS3,
    bucket: &str,
    controls: &OwnershipControls,
) -> S3Result<()> {
    let [rule] = controls.rules.as_slice() else {
        return Err(s3_error!(
            MalformedXML,
            "ownership controls take exactly one rule"
        ));
    };
    let rule = rule.object_ownership.as_str();
    if !matches!(
        rule,
        "ObjectWriter" | "BucketOwnerPreferred" | "BucketOwnerEnforced"
    ) {
        return Err(s3_error!(
            MalformedXML,
            "{rule:?} is not an object ownership: use ObjectWriter, BucketOwnerPreferred or BucketOwnerEnforced"
        ));
    }
    let rule = rule.to_owned();
    s3.change_bucket(bucket, |c| c.ownership = Some(rule))
}

pub(crate) async fn delete_ownership_controls(s3: &StoreS3, bucket: &str) -> S3Result<()> {
    s3.change_bucket(bucket, |c| c.ownership = None)
}

pub(crate) async fn get_bucket_cors(s3: &StoreS3, bucket: &str) -> S3Result<GetBucketCorsOutput> {
    match s3.bucket_config(bucket)?.cors {
        Some(rules) => Ok(GetBucketCorsOutput {
            cors_rules: Some(crate::cors::dto_of(&rules)),
        }),
        None => Err(crate::unconfigured::none(
            "NoSuchCORSConfiguration",
            "CORS configuration",
        )),
    }
}

pub(crate) async fn put_bucket_cors(
    s3: &StoreS3,
    bucket: &str,
    config: &CORSConfiguration,
) -> S3Result<()> {
    let rules = crate::cors::rules_of(config)?;
    s3.change_bucket(bucket, |c| c.cors = Some(rules))
}

pub(crate) async fn delete_bucket_cors(s3: &StoreS3, bucket: &str) -> S3Result<()> {
    s3.change_bucket(bucket, |c| c.cors = None)
}
