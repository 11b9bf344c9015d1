//! The expiry of presigned URLs, judged as S3 judges it before looking at
//! the signature: a lifetime over seven days is a malformed request (400),
//! and an expired URL is denied (403 `AccessDenied`, "Request has
//! expired"), whichever signature version made it.

/// The longest lifetime a SigV4 presigned URL may ask for (seven days).
pub const MAX_EXPIRES_SECS: i64 = 7 * 24 * 60 * 60;

/// S3's answer to a presigned URL whose lifetime is wrong or over, given
/// the time now (seconds since the epoch); `None` when there is nothing
/// to say (not presigned, or still good).
pub fn expiry_answer(query: Option<&str>, now: i64) -> Option<http::Response<String>> {
    let query = query?;
    let param = |name: &str| {
        query_param(query, name).map(|v| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    };
    if param("X-Amz-Algorithm").is_some() {
        let expires = param("X-Amz-Expires")?;
        let Ok(secs) = expires.parse::<i64>() else {
            return Some(error(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires should be a number",
            ));
        };
        if secs < 0 {
            return Some(error(
                400,
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be non-negative",
            ));
        }
        if secs > MAX_EXPIRES_SECS {
            return Some(error(
                400,
                "AuthorizationQueryParametersError",
                &format!(
                    "X-Amz-Expires must be less than a week (in seconds) that is {MAX_EXPIRES_SECS}"
                ),
            ));
        }
        let signed = amz_date_secs(&param("X-Amz-Date")?)?;
        return (now > signed + secs).then(|| error(403, "AccessDenied", "Request has expired"));
    }
    // SigV2: an absolute `Expires` beside `Signature`.
    if param("Signature").is_some() {
        let expires: i64 = param("Expires")?.parse().ok()?;
        return (now > expires).then(|| error(403, "AccessDenied", "Request has expired"));
    }
    None
}

/// The path a SigV2-signed request to a bucket itself (`/BUCKET`, no
/// trailing slash) is signed for: botocore (the AWS CLI v1, boto3 with
/// `signature_version="s3"`) sends `/BUCKET` but signs `/BUCKET/`, the
/// bucket's canonical resource, which S3 accepts; s3s signs the path as
/// sent. Returns the path to give s3s, none when nothing changes (SigV4
/// signs the path as sent, and so does every request to an object).
pub fn sigv2_bucket_path(
    path: &str,
    query: Option<&str>,
    authorization: Option<&str>,
) -> Option<String> {
    let sigv2 = authorization.is_some_and(|a| a.starts_with("AWS "))
        || query.is_some_and(|q| query_param(q, "AWSAccessKeyId").is_some());
    let bucket = path.strip_prefix('/')?;
    (sigv2 && !bucket.is_empty() && !bucket.contains('/')).then(|| format!("{path}/"))
}

/// The value of query parameter `name`, still percent-encoded.
pub(crate) fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (n, v) = pair.split_once('=')?;
        (n == name).then_some(v)
    })
}

pub(crate) fn error(status: u16, code: &str, message: &str) -> http::Response<String> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    let mut r = http::Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

/// `20261130T214500Z` as seconds since the epoch.
fn amz_date_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigv2_bucket_requests_are_signed_with_the_trailing_slash() {
        let v2 = Some("AWS CSKX:sig");
        assert_eq!(
            sigv2_bucket_path("/photos", None, v2).as_deref(),
            Some("/photos/")
        );
        assert_eq!(
            sigv2_bucket_path("/photos", Some("AWSAccessKeyId=CSKX&Signature=s"), None).as_deref(),
            Some("/photos/")
        );
        assert_eq!(sigv2_bucket_path("/photos/", None, v2), None);
        assert_eq!(sigv2_bucket_path("/photos/key", None, v2), None);
        assert_eq!(sigv2_bucket_path("/", None, v2), None);
        assert_eq!(
            sigv2_bucket_path("/photos", None, Some("AWS4-HMAC-SHA256 Credential=x")),
            None
        );
    }

    const NOW: i64 = 1_796_075_100; // 2026-11-30T21:45:00Z

    fn v4(date: &str, expires: &str) -> String {
        format!(
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature=00"
        )
    }

    #[test]
    fn dates_convert() {
        assert_eq!(amz_date_secs("19700101T000000Z"), Some(0));
        assert_eq!(amz_date_secs("20261130T214500Z"), Some(NOW));
        assert_eq!(amz_date_secs("2026-11-30T21:45Z"), None);
    }

    #[test]
    fn lifetimes_are_judged_as_s3_does() {
        assert!(expiry_answer(Some(&v4("20261130T214500Z", "300")), NOW + 10).is_none());
        let expired = expiry_answer(Some(&v4("20261130T214500Z", "300")), NOW + 301).unwrap();
        assert_eq!(expired.status(), 403);
        assert!(expired.body().contains("AccessDenied") && expired.body().contains("expired"));
        let long = expiry_answer(Some(&v4("20261130T214500Z", "604801")), NOW).unwrap();
        assert_eq!(long.status(), 400);
        assert!(long.body().contains("604800"), "{}", long.body());
        assert!(expiry_answer(Some(&v4("20261130T214500Z", "604800")), NOW).is_none());
        assert_eq!(
            expiry_answer(Some(&v4("20261130T214500Z", "soon")), NOW)
                .unwrap()
                .status(),
            400
        );
        // SigV2.
        let v2 = format!("AWSAccessKeyId=AK&Signature=x&Expires={}", NOW - 1);
        assert_eq!(expiry_answer(Some(&v2), NOW).unwrap().status(), 403);
        let v2 = format!("AWSAccessKeyId=AK&Signature=x&Expires={}", NOW + 60);
        assert!(expiry_answer(Some(&v2), NOW).is_none());
        // Not presigned.
        assert!(expiry_answer(Some("list-type=2&prefix=a"), NOW).is_none());
        assert!(expiry_answer(None, NOW).is_none());
    }
}
