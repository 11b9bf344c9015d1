//! The region the S3 endpoint is, and S3's answer to a request signed for
//! another one.
//!
//! A client that does not know a bucket's region signs for a guess (s3cmd
//! at its defaults says `US`); S3 answers 400 `AuthorizationHeaderMalformed`
//! (or, for a presigned URL, `AuthorizationQueryParametersError`) with the
//! right region in `<Region>`, and clients sign again for it. Answering
//! that before the signature is checked is what lets such clients work.

/// The endpoint's region: what GetBucketLocation's empty constraint means.
pub const REGION: &str = "us-east-1";

/// The region a SigV4 request was signed for, and whether it came in a
/// presigned URL's query rather than the `Authorization` header.
pub fn signed_region(headers: &http::HeaderMap, query: Option<&str>) -> Option<(String, bool)> {
    if let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .filter(|a| a.starts_with("AWS4-HMAC-SHA256"))
    {
        let credential = auth.split("Credential=").nth(1)?.split(',').next()?;
        return scope_region(credential.trim()).map(|r| (r, false));
    }
    let credential = crate::presigned::query_param(query?, "X-Amz-Credential")?;
    let decoded = percent_encoding::percent_decode_str(credential)
        .decode_utf8()
        .ok()?;
    scope_region(&decoded).map(|r| (r, true))
}

/// `AKID/DATE/REGION/SERVICE/aws4_request` -> REGION.
fn scope_region(credential: &str) -> Option<String> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts[..] {
        [_, _, region, _, _] => Some(region.to_owned()),
        _ => None,
    }
}

/// S3's answer when the request was signed for a region other than
/// [`REGION`]; `None` when it was not (or is not SigV4 at all, which the
/// signature check then judges).
pub fn wrong_region(
    headers: &http::HeaderMap,
    query: Option<&str>,
) -> Option<http::Response<String>> {
    let (region, presigned) = signed_region(headers, query)?;
    if region == REGION {
        return None;
    }
    let (code, message) = if presigned {
        (
            "AuthorizationQueryParametersError",
            format!(
                "Error parsing the X-Amz-Credential parameter; the region '{}' is wrong; expecting '{REGION}'",
                xml_escape(&region)
            ),
        )
    } else {
        (
            "AuthorizationHeaderMalformed",
            format!(
                "The authorization header is malformed; the region '{}' is wrong; expecting '{REGION}'",
                xml_escape(&region)
            ),
        )
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><Region>{REGION}</Region></Error>"
    );
    http::Response::builder()
        .status(http::StatusCode::BAD_REQUEST)
        .header(http::header::CONTENT_TYPE, "application/xml")
        .body(body)
        .ok()
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(region: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!(
                "AWS4-HMAC-SHA256 Credential=AKID/20261130/{region}/s3/aws4_request, SignedHeaders=host, Signature=00"
            )
            .parse()
            .unwrap(),
        );
        h
    }

    #[test]
    fn a_request_signed_for_another_region_is_told_the_right_one() {
        assert!(wrong_region(&auth(REGION), None).is_none());
        let r = wrong_region(&auth("US"), None).unwrap();
        assert_eq!(r.status(), 400);
        assert!(
            r.body()
                .contains("<Code>AuthorizationHeaderMalformed</Code>"),
            "{}",
            r.body()
        );
        assert!(
            r.body().contains("<Region>us-east-1</Region>"),
            "{}",
            r.body()
        );
        assert!(
            r.body().contains("the region 'US' is wrong"),
            "{}",
            r.body()
        );
        // Presigned: the credential is in the query, percent-encoded.
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261130%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=00";
        let r = wrong_region(&http::HeaderMap::new(), Some(q)).unwrap();
        assert!(
            r.body().contains("AuthorizationQueryParametersError"),
            "{}",
            r.body()
        );
        // Anonymous, SigV2 or malformed: for the signature check to judge.
        assert!(wrong_region(&http::HeaderMap::new(), None).is_none());
        let mut v2 = http::HeaderMap::new();
        v2.insert(http::header::AUTHORIZATION, "AWS AKID:sig".parse().unwrap());
        assert!(wrong_region(&v2, None).is_none());
        assert!(wrong_region(&auth("a/b"), None).is_none());
    }
}
