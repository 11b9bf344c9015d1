//! Bucket and object settings the endpoint does not keep (yet), answered
//! as S3 answers for a bucket that has none: conformance suites, backup
//! tools and `aws s3api` read them first and take "not configured" in
//! their stride, where a 501 stops them. Every bucket and object belongs
//! to the store's one owner, with full control and nothing shared.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Result};

use crate::listing;

/// S3's 404 for a setting a bucket does not have.
pub(crate) fn none(code: &'static str, what: &str) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes())
        .unwrap_or_else(|| S3ErrorCode::Custom(code.into()));
    let mut e = S3Error::with_message(code, format!("The bucket has no {what}"));
    e.set_status_code(http::StatusCode::NOT_FOUND);
    e
}

/// An `S3` trait method for a bucket setting nobody has here: the bucket
/// must exist, and then the answer is [`none`]. Written in the form
/// `#[async_trait]` gives its methods, since that attribute does not look
/// inside macros.
macro_rules! none_of {
    ($method:ident, $input:ty, $output:ty, $code:literal, $what:literal) => {
        fn $method<'life0, 'async_trait>(
            &'life0 self,
            req: S3Request<$input>,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<Output = S3Result<S3Response<$output>>>
                    + Send
                    + 'async_trait,
            >,
        >
        where
            'life0: 'async_trait,
            Self: 'async_trait,
        {
            Box::pin(async move {
                self.require_bucket(&req.input.bucket)?;
                Err(unconfigured::none($code, $what))
            })
        }
    };
}
pub(crate) use none_of;

/// The owner's full control, and no other grant: a private ACL.
pub(crate) fn private_acl() -> (Option<Owner>, Option<Grants>) {
    let owner = listing::owner();
    let grant = Grant {
        grantee: Some(Grantee {
            display_name: owner.display_name.clone(),
            id: owner.id.clone(),
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    };
    (Some(owner), Some(vec![grant]))
}

/// A PutBucketAcl/PutObjectAcl: `private` (what every bucket and object is)
/// is accepted; anything that would share is refused, saying so.
pub(crate) fn accept_private(canned: Option<&str>, has_grants: bool) -> S3Result<()> {
    match canned {
        None | Some("private") if !has_grants => Ok(()),
        Some(other) if other != "private" => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!(
                "the ACL {other:?} is not supported: every bucket and object is private to the \
                 store's access keys (share with a presigned URL)"
            ),
        )),
        _ => Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            "explicit ACL grants are not supported: every bucket and object is private to the \
             store's access keys (share with a presigned URL)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_private_acls_are_accepted_and_refusals_say_why() {
        assert!(accept_private(None, false).is_ok());
        assert!(accept_private(Some("private"), false).is_ok());
        let e = accept_private(Some("public-read"), false).unwrap_err();
        assert!(e.message().unwrap().contains("\"public-read\""), "{e:?}");
        let e = accept_private(Some("private"), true).unwrap_err();
        assert!(e.message().unwrap().contains("grants"), "{e:?}");
        let e = none(
            "NoSuchPublicAccessBlockConfiguration",
            "public access block",
        );
        assert_eq!(e.status_code(), Some(http::StatusCode::NOT_FOUND));
    }
}
