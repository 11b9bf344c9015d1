//! ACLs as S3 keeps them: read (`Get*Acl`), set (`Put*Acl`: a canned
//! ACL, `x-amz-grant-*` headers or a body), and the ACL and owner a write
//! asks for, as the bucket's object ownership rule allows. The decisions
//! are `access.rs`'s; the guard (`guard.rs`) enforces them.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Result, s3_error};

use crate::StoreS3;
use crate::access::{self, Acl, Caller, Grantee as AclGrantee, Permission as AclPermission};
use crate::meta::BucketConfig;
use crate::settings::owner_of;

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

/// S3's refusal of an ACL where the bucket's ownership rule
/// (`BucketOwnerEnforced`) switches ACLs off: 400.
fn acls_off() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::AccessControlListNotSupported,
        "The bucket does not allow ACLs (its object ownership is BucketOwnerEnforced)",
    )
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
        $crate::acls::AclAsked {
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
        $crate::acls::acl_asked!($input,
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
            return Err(acls_off());
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
        return Err(acls_off());
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
        return Err(acls_off());
    }
    let owner = m.owner.clone().unwrap_or_else(|| config.owner.clone());
    let acl = asked.resolve(&owner, &config)?;
    s3.change_object(&input.bucket, &input.key, move |m| {
        m.owner = Some(owner);
        m.acl = acl;
    })
    .await
}
