//! Bucket and object settings the endpoint does not keep (yet), answered
//! as S3 answers for a bucket that has none: conformance suites, backup
//! tools and `aws s3api` read them first and take "not configured" in
//! their stride, where a 501 stops them.

use s3s::{S3Error, S3ErrorCode};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfigured_setting_is_a_404() {
        let e = none(
            "NoSuchPublicAccessBlockConfiguration",
            "public access block",
        );
        assert_eq!(e.status_code(), Some(http::StatusCode::NOT_FOUND));
    }
}
