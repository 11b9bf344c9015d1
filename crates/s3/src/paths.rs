//! Request paths s3s refuses before any handler runs (a bucket name S3
//! does not allow, a key over 1,024 bytes, a path without its leading
//! slash): s3s answers them with a bare code, and the AWS CLI then shows
//! "An error occurred (InvalidBucketName) ...: Unknown". Answered here
//! first, with the code S3 gives and a message that says what to change.

use crate::presigned::error;
use crate::region::xml_escape;
use s3s::path::ParseS3PathError;

/// The answer to a request for `path` (still percent-encoded, as s3s
/// reads it) that s3s would refuse, or `None` to let it through.
pub fn bad_path(path: &str) -> Option<http::Response<String>> {
    let e = s3s::path::parse_path_style(path).err()?;
    let bucket = path
        .strip_prefix('/')
        .and_then(|p| p.split('/').next())
        .unwrap_or(path);
    Some(match e {
        ParseS3PathError::InvalidBucketName => error(
            400,
            "InvalidBucketName",
            &format!(
                "The specified bucket is not valid: '{}'. A bucket name is 3 to 63 \
                 characters of lowercase letters, digits, dots and hyphens, begins and ends \
                 with a letter or digit, and is not an IP address.",
                xml_escape(bucket)
            ),
        ),
        ParseS3PathError::KeyTooLong => error(
            400,
            "KeyTooLongError",
            "Your key is too long: an object key is at most 1024 bytes.",
        ),
        ParseS3PathError::InvalidPath => error(
            400,
            "InvalidURI",
            "Couldn't parse the specified URI: the path must begin with '/'.",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::bad_path;

    #[test]
    fn refused_paths_say_what_is_wrong() {
        let r = bad_path("/b").unwrap();
        assert_eq!(r.status(), 400);
        assert!(
            r.body().contains("<Code>InvalidBucketName</Code>"),
            "{}",
            r.body()
        );
        assert!(r.body().contains("'b'"), "{}", r.body());
        assert!(r.body().contains("3 to 63"), "{}", r.body());
        let r = bad_path("/Upper_Case/key").unwrap();
        assert!(r.body().contains("'Upper_Case'"), "{}", r.body());
        let long = format!("/bucket/{}", "k".repeat(1025));
        assert!(bad_path(&long).unwrap().body().contains("KeyTooLongError"));
    }

    #[test]
    fn good_paths_go_through() {
        for p in [
            "/",
            "/my-bucket",
            "/my-bucket/",
            "/my-bucket/a/b.txt",
            "/my.bucket.1/k",
        ] {
            assert!(bad_path(p).is_none(), "{p}");
        }
    }
}
