//! Every request's access check, before its body is read: who sent it
//! (a key's user, or nobody), what it asks (the S3 action and what an ACL
//! must grant for it), and what the bucket, the object and the bucket's
//! policy say ([`crate::access`] decides). The caller is handed on to the
//! operation (a request extension), which makes what it creates the
//! caller's.

use std::sync::Arc;

use s3s::access::{S3Access, S3AccessContext};
use s3s::path::S3Path;
use s3s::{S3Error, S3Result, s3_error};

use crate::access::{Acl, Caller, Effect, Permission, Policy, RequestFacts};
use crate::meta::{self, BucketConfig, ObjectMeta};
use crate::{Host, S3State, internal};

/// What an operation needs beyond the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Any signed request (ListBuckets, CreateBucket).
    Signed,
    /// The bucket's ACL must grant this (its owner always may).
    Bucket(Permission),
    /// The object's ACL must grant this.
    Object(Permission),
    /// The object's owner or the bucket's (object tagging).
    ObjectOwner,
    /// Only the bucket's owner (its settings, deleting it).
    BucketOwner,
}

/// The S3 action (as policies name it) and what an ACL must grant.
fn rule(op: &str) -> (String, Needs) {
    use Needs::*;
    use Permission::*;
    let (action, needs) = match op {
        "ListBuckets" => ("ListAllMyBuckets", Signed),
        "CreateBucket" => ("CreateBucket", Signed),
        "HeadBucket" | "ListObjects" | "ListObjectsV2" => ("ListBucket", Bucket(Read)),
        "ListObjectVersions" => ("ListBucketVersions", Bucket(Read)),
        "ListMultipartUploads" => ("ListBucketMultipartUploads", Bucket(Read)),
        "PutObject"
        | "PostObject"
        | "CreateMultipartUpload"
        | "UploadPart"
        | "UploadPartCopy"
        | "CompleteMultipartUpload"
        | "CopyObject" => ("PutObject", Bucket(Write)),
        "DeleteObject" | "DeleteObjects" => ("DeleteObject", Bucket(Write)),
        "AbortMultipartUpload" => ("AbortMultipartUpload", Bucket(Write)),
        "ListParts" => ("ListMultipartUploadParts", Bucket(Write)),
        "GetObject" | "HeadObject" => ("GetObject", Object(Read)),
        "GetObjectAcl" => ("GetObjectAcl", Object(ReadAcp)),
        "PutObjectAcl" => ("PutObjectAcl", Object(WriteAcp)),
        "GetBucketAcl" => ("GetBucketAcl", Bucket(ReadAcp)),
        "PutBucketAcl" => ("PutBucketAcl", Bucket(WriteAcp)),
        "GetObjectTagging" => ("GetObjectTagging", ObjectOwner),
        "PutObjectTagging" => ("PutObjectTagging", ObjectOwner),
        "DeleteObjectTagging" => ("DeleteObjectTagging", ObjectOwner),
        "GetBucketCors" => ("GetBucketCORS", BucketOwner),
        "PutBucketCors" | "DeleteBucketCors" => ("PutBucketCORS", BucketOwner),
        "GetPublicAccessBlock" => ("GetBucketPublicAccessBlock", BucketOwner),
        "PutPublicAccessBlock" | "DeletePublicAccessBlock" => {
            ("PutBucketPublicAccessBlock", BucketOwner)
        }
        "DeleteBucketTagging" => ("PutBucketTagging", BucketOwner),
        "DeleteBucketOwnershipControls" => ("PutBucketOwnershipControls", BucketOwner),
        "GetObjectLockConfiguration" => ("GetBucketObjectLockConfiguration", BucketOwner),
        "GetBucketLifecycleConfiguration" => ("GetLifecycleConfiguration", BucketOwner),
        "PutBucketLifecycleConfiguration" | "DeleteBucketLifecycle" => {
            ("PutLifecycleConfiguration", BucketOwner)
        }
        other => return (format!("s3:{other}"), BucketOwner),
    };
    (format!("s3:{action}"), needs)
}

/// The access check s3s runs before each operation.
pub struct Guard {
    host: Arc<dyn Host>,
    s3: Arc<S3State>,
}

impl Guard {
    /// Checks requests against `s3`'s keys and what `host`'s store holds.
    pub fn new(host: Arc<dyn Host>, s3: Arc<S3State>) -> Self {
        Self { host, s3 }
    }

    /// The object's owner and ACL as they count for access: with object
    /// ACLs switched off, the bucket's owner and the bucket's ACL.
    fn object_acl(&self, bucket: &str, key: &str, config: &BucketConfig) -> S3Result<Option<Acl>> {
        if config.acls_disabled() {
            return Ok(Some(config.acl()));
        }
        let name = meta::file_name(bucket, key);
        let Some((record, _)) = self.host.store().index().file(&name).map_err(internal)? else {
            return Ok(None);
        };
        let m = ObjectMeta::of(&record);
        Ok(Some(object_acl_of(&m, config)))
    }

    /// Whether `caller` may do `facts` with what `needs`, on `bucket` (and
    /// `key`). A bucket that does not exist passes: the operation says
    /// NoSuchBucket, to anyone, as S3 does.
    fn decide(
        &self,
        caller: &Caller,
        bucket: &str,
        key: Option<&str>,
        needs: Needs,
        facts: &RequestFacts,
    ) -> S3Result<()> {
        let Some(config) = self.s3.meta.bucket_config(bucket).map_err(internal)? else {
            return Ok(());
        };
        let block = config.block();
        let policy = match &config.policy {
            // Checked when set; one that no longer parses allows nothing.
            Some(text) => Policy::parse(text, bucket).ok(),
            None => None,
        };
        let owner = config.owner.as_str();
        let restrict = (block.restrict_public_buckets
            && policy.as_ref().is_some_and(Policy::is_public))
        .then_some(owner);
        let said = policy
            .as_ref()
            .and_then(|p| p.evaluate(caller, facts, restrict));
        if said == Some(Effect::Deny) {
            return Err(denied(caller, facts, "the bucket policy denies it"));
        }
        if said == Some(Effect::Allow) {
            return Ok(());
        }
        let is_owner = caller.user() == Some(owner);
        let ignore_public = block.ignore_public_acls;
        let allowed = match needs {
            Needs::Signed => caller.user().is_some(),
            Needs::BucketOwner => is_owner,
            Needs::Bucket(p) => is_owner || config.acl().allows(caller, p, ignore_public),
            Needs::Object(_) | Needs::ObjectOwner => {
                let key = key.unwrap_or_default();
                match self.object_acl(bucket, key, &config)? {
                    Some(acl) if needs == Needs::ObjectOwner => {
                        is_owner || caller.user() == Some(acl.owner.as_str())
                    }
                    Some(acl) => acl.allows(caller, p_of(needs), ignore_public),
                    // No such object: who may list the bucket learns that
                    // (NoSuchKey); nobody else does.
                    None => {
                        is_owner || config.acl().allows(caller, Permission::Read, ignore_public)
                    }
                }
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(denied(
                caller,
                facts,
                "no ACL grant or bucket policy allows it",
            ))
        }
    }
}

fn p_of(needs: Needs) -> Permission {
    match needs {
        Needs::Object(p) | Needs::Bucket(p) => p,
        _ => Permission::FullControl,
    }
}

/// The ACL an object's metadata gives it (its owner's full control when
/// none was set; objects from before owners are the bucket owner's).
pub(crate) fn object_acl_of(m: &ObjectMeta, config: &BucketConfig) -> Acl {
    let owner = m.owner.as_deref().unwrap_or(&config.owner);
    m.acl.clone().unwrap_or_else(|| Acl::private(owner))
}

fn denied(caller: &Caller, facts: &RequestFacts, why: &str) -> S3Error {
    let who = match caller {
        Caller::Anonymous => "an anonymous request".to_owned(),
        Caller::User(u) => format!("user {u}"),
    };
    s3_error!(
        AccessDenied,
        "Access Denied: {who} may not {} on {} ({why})",
        facts.action,
        facts.resource
    )
}

/// One query parameter of `uri`, decoded.
fn query(uri: &http::Uri, name: &str) -> Option<String> {
    let raw = crate::presigned::query_param(uri.query()?, name)?.replace('+', " ");
    Some(
        percent_encoding::percent_decode_str(&raw)
            .decode_utf8_lossy()
            .into_owned(),
    )
}

/// The bucket and key a copy names in `x-amz-copy-source`.
fn copy_source(value: &str) -> Option<(String, String)> {
    let path = value.split('?').next().unwrap_or(value);
    let decoded = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
        .decode_utf8()
        .ok()?;
    let (bucket, key) = decoded.split_once('/')?;
    Some((bucket.to_owned(), key.to_owned()))
}

#[async_trait::async_trait]
impl S3Access for Guard {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        let caller = match cx.credentials() {
            Some(c) => Caller::User(self.s3.keys.user_of(&c.access_key).ok_or_else(|| {
                s3_error!(
                    InvalidAccessKeyId,
                    "no such access key; see `cloudshell store keys list`"
                )
            })?),
            None => Caller::Anonymous,
        };
        let (mut action, needs) = rule(cx.s3_op().name());
        // A request for one version of an object is its own action in
        // policies (s3:GetObjectVersion, s3:DeleteObjectVersion, ...).
        if query(cx.uri(), "versionId").is_some()
            && let Some(rest) = action.strip_prefix("s3:")
            && let Some(verb) = ["Get", "Put", "Delete"]
                .into_iter()
                .find(|v| rest.starts_with(&format!("{v}Object")))
        {
            action = format!("s3:{verb}ObjectVersion{}", &rest[verb.len() + 6..]);
        }
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        let header = |name: &str| {
            cx.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let uri = cx.uri().clone();
        let facts = RequestFacts {
            resource: match (&bucket, &key) {
                (Some(b), Some(k)) => format!("arn:aws:s3:::{b}/{k}"),
                (Some(b), None) => format!("arn:aws:s3:::{b}"),
                _ => "arn:aws:s3:::*".to_owned(),
            },
            action,
            prefix: query(&uri, "prefix"),
            delimiter: query(&uri, "delimiter"),
            max_keys: query(&uri, "max-keys"),
            canned_acl: header("x-amz-acl"),
            secure_transport: uri.scheme_str() == Some("https"),
        };
        let copy_from = header("x-amz-copy-source").and_then(|v| copy_source(&v));
        // The index and the bucket table answer from memory or one page
        // read, as the operations' own lookups do.
        let decision = (|| -> S3Result<()> {
            let this = self;
            match (&bucket, needs) {
                (None, _) | (Some(_), Needs::Signed) => {
                    if caller.user().is_none() {
                        return Err(denied(&caller, &facts, "it must be signed"));
                    }
                }
                (Some(b), _) => this.decide(&caller, b, key.as_deref(), needs, &facts)?,
            }
            // A copy reads its source: that needs the source's READ.
            if let Some((src_bucket, src_key)) = &copy_from {
                let read = RequestFacts {
                    action: "s3:GetObject".into(),
                    resource: format!("arn:aws:s3:::{src_bucket}/{src_key}"),
                    ..RequestFacts::default()
                };
                this.decide(
                    &caller,
                    src_bucket,
                    Some(src_key),
                    Needs::Object(Permission::Read),
                    &read,
                )?;
            }
            Ok(())
        })();
        decision?;
        cx.extensions_mut().insert(caller);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_policy_actions_and_acl_permissions() {
        assert_eq!(
            rule("ListObjectsV2"),
            ("s3:ListBucket".into(), Needs::Bucket(Permission::Read))
        );
        assert_eq!(
            rule("HeadObject"),
            ("s3:GetObject".into(), Needs::Object(Permission::Read))
        );
        assert_eq!(rule("UploadPart").0, "s3:PutObject");
        assert_eq!(
            rule("PutBucketPolicy"),
            ("s3:PutBucketPolicy".into(), Needs::BucketOwner)
        );
        assert_eq!(rule("DeleteBucketCors").0, "s3:PutBucketCORS");
        assert_eq!(rule("GetObjectAcl").0, "s3:GetObjectAcl");
    }

    #[test]
    fn copy_sources_are_decoded() {
        assert_eq!(
            copy_source("/b/a%20b/c?versionId=x"),
            Some(("b".into(), "a b/c".into()))
        );
        assert_eq!(copy_source("b"), None);
    }
}
