//! What buckets and objects say about access and themselves: ACLs (read,
//! set, and the ACL a write asks for), bucket policies and their status,
//! the public access block, object ownership, and tags of buckets and
//! objects, stored and returned as S3 does. [`crate::guard`] enforces them.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Result, s3_error};

use crate::access::{self, Acl, Caller, Grantee as AclGrantee, Permission as AclPermission};
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

/// An ACL as S3 XML shows it.
fn grants_of(acl: &Acl) -> (Option<Owner>, Option<Grants>) {
    let grants = acl
        .grants
        .iter()
        .map(|g| Grant {
            grantee: Some(match &g.grantee {
                AclGrantee::User(u) => Grantee {
                    display_name: Some(u.clone()),
                    id: Some(access::canonical_id(u)),
                    type_: Type::from_static(Type::CANONICAL_USER),
                    email_address: None,
                    uri: None,
                },
                AclGrantee::Group(uri) => Grantee {
                    display_name: None,
                    id: None,
                    type_: Type::from_static(Type::GROUP),
                    email_address: None,
                    uri: Some(uri.clone()),
                },
            }),
            permission: Some(Permission::from(g.permission.as_str().to_owned())),
        })
        .collect();
    (Some(owner_of(&acl.owner)), Some(grants))
}

fn bad_acl(message: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, message.into())
}

/// An ACL from an `AccessControlPolicy` body; its owner must be `owner`.
fn acl_of_policy(owner: &str, policy: &AccessControlPolicy) -> S3Result<Acl> {
    if let Some(given) = policy.owner.as_ref().and_then(|o| o.id.as_deref())
        && given != access::canonical_id(owner)
    {
        return Err(bad_acl(format!(
            "the ACL's Owner ID must be the owner's, {}",
            access::canonical_id(owner)
        )));
    }
    let mut acl = Acl {
        owner: owner.to_owned(),
        grants: Vec::new(),
    };
    for g in policy.grants.iter().flatten() {
        let permission = g
            .permission
            .as_ref()
            .and_then(|p| AclPermission::parse(p.as_str()))
            .ok_or_else(|| bad_acl("each grant needs a Permission: READ, WRITE, READ_ACP, WRITE_ACP or FULL_CONTROL"))?;
        let grantee = g
            .grantee
            .as_ref()
            .ok_or_else(|| bad_acl("each grant needs a Grantee"))?;
        let grantee = match grantee.type_.as_str() {
            Type::CANONICAL_USER => {
                let id = grantee.id.as_deref().unwrap_or_default();
                AclGrantee::User(access::user_of_id(id).ok_or_else(|| {
                    bad_acl(format!("{id:?} is not the canonical id of a user here"))
                })?)
            }
            Type::GROUP => AclGrantee::Group(
                access::check_group(grantee.uri.as_deref().unwrap_or_default())
                    .map_err(|e| bad_acl(e.0))?,
            ),
            other => {
                return Err(S3Error::with_message(
                    S3ErrorCode::UnresolvableGrantByEmailAddress,
                    format!(
                        "grantee type {other} is not supported: grant to a CanonicalUser or a Group"
                    ),
                ));
            }
        };
        acl.grants.push(access::Grant {
            grantee,
            permission,
        });
    }
    Ok(acl)
}

/// What an ACL-setting request asked for: a canned ACL, grant headers or
/// (PutBucketAcl/PutObjectAcl) a body.
pub(crate) struct AclAsked<'a> {
    pub canned: Option<&'a str>,
    pub grants: Vec<(AclPermission, &'a str)>,
    pub body: Option<&'a AccessControlPolicy>,
}

/// Collects the canned ACL and `x-amz-grant-*` fields of an input (the
/// object inputs have no `grant_write`).
macro_rules! acl_asked {
    ($input:expr, $($field:ident => $perm:ident),*) => {
        $crate::settings::AclAsked {
            canned: $input.acl.as_ref().map(|a| a.as_str()),
            grants: [$(($crate::access::Permission::$perm, $input.$field.as_deref())),*]
                .into_iter()
                .filter_map(|(p, v)| v.map(|v| (p, v)))
                .collect(),
            body: None,
        }
    };
}
pub(crate) use acl_asked;

/// The object inputs' grant fields.
macro_rules! object_acl_asked {
    ($input:expr) => {
        $crate::settings::acl_asked!($input,
            grant_full_control => FullControl, grant_read => Read,
            grant_read_acp => ReadAcp, grant_write_acp => WriteAcp)
    };
}
pub(crate) use object_acl_asked;

impl AclAsked<'_> {
    fn is_empty(&self) -> bool {
        self.canned.is_none() && self.grants.is_empty() && self.body.is_none()
    }

    /// The ACL asked for a resource owned by `owner` in a bucket owned by
    /// `bucket_owner`; none if nothing was asked. Refused when it is more
    /// than one kind, names someone unknown, or grants to the public where
    /// the bucket blocks that.
    pub(crate) fn resolve(&self, owner: &str, config: &BucketConfig) -> S3Result<Option<Acl>> {
        let kinds = usize::from(self.canned.is_some())
            + usize::from(!self.grants.is_empty())
            + usize::from(self.body.is_some());
        if kinds > 1 {
            return Err(bad_acl(
                "give a canned ACL (x-amz-acl), grant headers (x-amz-grant-*) or an ACL body, not more than one",
            ));
        }
        let acl = if let Some(canned) = self.canned {
            Acl::canned(canned, owner, &config.owner).map_err(|e| bad_acl(e.0))?
        } else if let Some(body) = self.body {
            acl_of_policy(owner, body)?
        } else if !self.grants.is_empty() {
            Acl::from_grant_headers(owner, &self.grants).map_err(|e| bad_acl(e.0))?
        } else {
            return Ok(None);
        };
        if acl.is_public() && config.block().block_public_acls {
            return Err(s3_error!(
                AccessDenied,
                "Access Denied: the bucket's public access block (BlockPublicAcls) refuses ACLs that grant to the public"
            ));
        }
        Ok(Some(acl))
    }
}

/// The owner and ACL an object written by `caller` gets, as the bucket's
/// ownership rule says: with object ACLs off (`BucketOwnerEnforced`) it is
/// the bucket owner's and only `private` or `bucket-owner-full-control`
/// may be asked; otherwise the writer's (an anonymous writer's object is
/// the bucket owner's), with the ACL asked.
pub(crate) fn written_object(
    caller: &Caller,
    config: &BucketConfig,
    asked: &AclAsked<'_>,
) -> S3Result<(Option<String>, Option<Acl>)> {
    if config.acls_disabled() {
        let harmless = asked.grants.is_empty()
            && asked.body.is_none()
            && matches!(
                asked.canned,
                None | Some("private" | "bucket-owner-full-control")
            );
        if !harmless {
            return Err(S3Error::with_message(
                S3ErrorCode::Custom("AccessControlListNotSupported".into()),
                "The bucket does not allow ACLs (its object ownership is BucketOwnerEnforced)",
            ));
        }
        return Ok((Some(config.owner.clone()), None));
    }
    let preferred = config.ownership.as_deref() == Some("BucketOwnerPreferred")
        && asked.canned == Some("bucket-owner-full-control");
    let owner = match caller.user() {
        Some(u) if !preferred => u.to_owned(),
        _ => config.owner.clone(),
    };
    let acl = asked.resolve(&owner, config)?;
    Ok((Some(owner), acl))
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
    async fn change_object(
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

pub(crate) async fn get_bucket_acl(s3: &StoreS3, bucket: &str) -> S3Result<GetBucketAclOutput> {
    let (owner, grants) = grants_of(&s3.bucket_config(bucket)?.acl());
    Ok(GetBucketAclOutput { grants, owner })
}

pub(crate) async fn put_bucket_acl(s3: &StoreS3, input: &PutBucketAclInput) -> S3Result<()> {
    let config = s3.bucket_config(&input.bucket)?;
    let mut asked = acl_asked!(input,
        grant_full_control => FullControl, grant_read => Read, grant_read_acp => ReadAcp,
        grant_write => Write, grant_write_acp => WriteAcp);
    asked.body = input.access_control_policy.as_ref();
    if asked.is_empty() {
        return Err(s3_error!(
            MissingSecurityHeader,
            "give a canned ACL (x-amz-acl), grant headers (x-amz-grant-*) or an ACL body"
        ));
    }
    if config.acls_disabled() && asked.canned != Some("private") {
        return Err(S3Error::with_message(
            S3ErrorCode::Custom("AccessControlListNotSupported".into()),
            "The bucket does not allow ACLs (its object ownership is BucketOwnerEnforced)",
        ));
    }
    let acl = asked.resolve(&config.owner, &config)?;
    s3.change_bucket(&input.bucket, |c| c.acl = acl)?;
    Ok(())
}

pub(crate) async fn get_object_acl(
    s3: &StoreS3,
    bucket: &str,
    key: &str,
) -> S3Result<GetObjectAclOutput> {
    let config = s3.bucket_config(bucket)?;
    let (_, m) = s3.open_object(bucket, key)?;
    let acl = if config.acls_disabled() {
        Acl::private(&config.owner)
    } else {
        crate::guard::object_acl_of(&m, &config)
    };
    let (owner, grants) = grants_of(&acl);
    Ok(GetObjectAclOutput {
        grants,
        owner,
        ..Default::default()
    })
}

pub(crate) async fn put_object_acl(s3: &StoreS3, input: &PutObjectAclInput) -> S3Result<()> {
    let config = s3.bucket_config(&input.bucket)?;
    let (_, m) = s3.open_object(&input.bucket, &input.key)?;
    let mut asked = object_acl_asked!(input);
    asked.body = input.access_control_policy.as_ref();
    if asked.is_empty() {
        return Err(s3_error!(
            MissingSecurityHeader,
            "give a canned ACL (x-amz-acl), grant headers (x-amz-grant-*) or an ACL body"
        ));
    }
    if config.acls_disabled() {
        return Err(S3Error::with_message(
            S3ErrorCode::Custom("AccessControlListNotSupported".into()),
            "The bucket does not allow ACLs (its object ownership is BucketOwnerEnforced)",
        ));
    }
    let owner = m.owner.clone().unwrap_or_else(|| config.owner.clone());
    let acl = asked.resolve(&owner, &config)?;
    s3.change_object(&input.bucket, &input.key, move |m| {
        m.owner = Some(owner);
        m.acl = acl;
    })
    .await
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
