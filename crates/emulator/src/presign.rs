//! Presigned file transfer URLs: `GetFileUploadUrls` hands out an S3-style
//! presigned POST (policy with an expiry, a key condition and a
//! `content-length-range`, signed with SigV4's key derivation for service
//! `s3`); `GetFileDownloadUrls` a presigned GET (`X-Amz-Expires`,
//! `X-Amz-Signature` over the canonical request) plus a
//! server-side-encryption customer key and its MD5, which the GET must
//! present. The signing secret is the emulator's own and lives only in
//! memory: URLs stop working when the emulator restarts, as a rotated key
//! would make them. The handlers that serve them are in [`crate::files`].

use aws_lc_rs::hmac;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

use crate::sigv4::same_secret;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// How long a presigned URL is good for (the Console's are short-lived).
pub const URL_TTL_SECS: i64 = 900;
/// The longest `X-Amz-Expires` S3 accepts: seven days.
const MAX_EXPIRES_SECS: i64 = 7 * 24 * 3600;
/// Stands in for the access key id of the bucket's signer.
const SIGNER_KEY_ID: &str = "ASIAEMULATORFILES001";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// An S3-shaped error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl S3Error {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }

    pub(crate) fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }
}

impl IntoResponse for S3Error {
    fn into_response(self) -> Response {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>\n",
            self.code,
            xml_escape(&self.message),
            uuid::Uuid::new_v4()
        );
        (self.status, [("content-type", "application/xml")], body).into_response()
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Signs and checks presigned URLs with a secret of its own.
pub struct FileSigner {
    /// Random, hex: aws-sigv4 derives signing keys from a string secret.
    secret: String,
}

impl std::fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileSigner(..)")
    }
}

impl Default for FileSigner {
    fn default() -> Self {
        Self {
            secret: hex::encode(rand::random::<[u8; 32]>()),
        }
    }
}

fn amz_date(t: OffsetDateTime) -> String {
    t.format(format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap_or_default()
}

fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    time::PrimitiveDateTime::parse(
        s,
        format_description!("[year][month][day]T[hour][minute][second]Z"),
    )
    .ok()
    .map(time::PrimitiveDateTime::assume_utc)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// What SigV4's canonical URI and query leave as is: RFC 3986's
/// unreserved characters.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes all but the unreserved characters (and `/` when
/// `keep_slash`), as SigV4's canonical URI and query do.
fn uri_encode(s: &str, keep_slash: bool) -> String {
    if keep_slash {
        s.split('/')
            .map(|segment| utf8_percent_encode(segment, UNRESERVED).to_string())
            .collect::<Vec<_>>()
            .join("/")
    } else {
        utf8_percent_encode(s, UNRESERVED).to_string()
    }
}

/// Decodes `%XX` escapes; `None` for a stray `%` or bytes that are not
/// UTF-8 (S3 answers such a URL with an error rather than guess).
fn uri_decode(s: &str) -> Option<String> {
    let stray = s.match_indices('%').any(|(i, _)| {
        s.get(i + 1..i + 3)
            .is_none_or(|h| !h.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    if stray {
        return None;
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

impl FileSigner {
    /// The SigV4 signature of `string_to_sign` for `day` (YYYYMMDD) and
    /// `region`, service `s3`, by aws-sigv4's key derivation. `None` for a
    /// day that is not a date: nothing signed then, nothing matches.
    fn sign(&self, day: &str, region: &str, string_to_sign: &[u8]) -> Option<String> {
        let midnight = crate::sigv4::parse_amz_date(&format!("{day}T000000Z"))?;
        let key = v4::generate_signing_key(&self.secret, midnight, region, "s3");
        Some(v4::calculate_signature(key, string_to_sign))
    }

    fn credential(date: &str, region: &str) -> String {
        format!("{SIGNER_KEY_ID}/{date}/{region}/s3/aws4_request")
    }

    /// The answer of `GetFileUploadUrls`: a presigned POST whose key puts
    /// the file at `file_name` in the home of `environment_id` (or, with no
    /// name, at the name the form's file part carries).
    pub fn upload_form(
        &self,
        host: &str,
        region: &str,
        environment_id: &str,
        file_name: Option<&str>,
        max_bytes: u64,
        now: OffsetDateTime,
    ) -> Value {
        let date = amz_date(now);
        let credential = Self::credential(&date[..8], region);
        let key = format!("{environment_id}/{}", file_name.unwrap_or("${filename}"));
        let expiration = (now + time::Duration::seconds(URL_TTL_SECS))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let policy = json!({
            "expiration": expiration,
            "conditions": [
                {"key": key},
                ["content-length-range", 0, max_bytes],
                {"x-amz-algorithm": ALGORITHM},
                {"x-amz-credential": credential},
                {"x-amz-date": date},
            ],
        });
        let policy = BASE64.encode(policy.to_string());
        let signature = self
            .sign(&date[..8], region, policy.as_bytes())
            .unwrap_or_default();
        json!({
            "FileUploadPresignedUrl": format!("http://{host}/_files/upload"),
            "FileUploadPresignedFields": {
                "key": key,
                "policy": policy,
                "x-amz-algorithm": ALGORITHM,
                "x-amz-credential": credential,
                "x-amz-date": date,
                "x-amz-signature": signature,
            },
        })
    }

    /// The answer of `GetFileDownloadUrls`: a presigned GET of `path` in the
    /// home of `environment_id`, and the customer key it must present.
    pub fn download_url(
        &self,
        host: &str,
        region: &str,
        environment_id: &str,
        path: &str,
        now: OffsetDateTime,
    ) -> Value {
        let date = amz_date(now);
        let uri_path = format!(
            "/_files/download/{environment_id}/{}",
            uri_encode(path, true)
        );
        let expires = std::time::Duration::from_secs(URL_TTL_SECS.unsigned_abs());
        let query = self
            .presign_get(host, &uri_path, "", region, now.into(), expires)
            .map(|params| {
                params
                    .iter()
                    .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
                    .collect::<Vec<_>>()
                    .join("&")
            })
            .unwrap_or_default();
        let key = self.customer_key(&uri_path, &date);
        let key_md5 = {
            use md5::Digest as _;
            BASE64.encode(md5::Md5::digest(&key))
        };
        json!({
            "FileDownloadPresignedUrl": format!("http://{host}{uri_path}?{query}"),
            "FileDownloadPresignedKey": BASE64.encode(key),
            "FileDownloadPresignedKeyHash": key_md5,
        })
    }

    /// The query parameters (`X-Amz-Algorithm` ... `X-Amz-Signature`) that
    /// presign `GET uri_path?other_query` on `host` with only `host`
    /// signed, made at `at` for `expires`: aws-sigv4's query signing with
    /// S3's rules (the path, already percent-encoded, is neither encoded
    /// again nor normalized; the payload is unsigned). `None` when the
    /// signer refuses (a region or time it cannot sign for).
    fn presign_get(
        &self,
        host: &str,
        uri_path: &str,
        other_query: &str,
        region: &str,
        at: SystemTime,
        expires: std::time::Duration,
    ) -> Option<Vec<(String, String)>> {
        let identity: Identity = Credentials::new(
            SIGNER_KEY_ID,
            &self.secret,
            None,
            None,
            "cloudshell-emulator-files",
        )
        .into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("s3")
            .time(at)
            .settings(settings)
            .build()
            .ok()?
            .into();
        let uri = if other_query.is_empty() {
            format!("http://{host}{uri_path}")
        } else {
            format!("http://{host}{uri_path}?{other_query}")
        };
        let request = SignableRequest::new(
            "GET",
            &uri,
            std::iter::once(("host", host)),
            SignableBody::UnsignedPayload,
        )
        .ok()?;
        let (instructions, _) = sign(request, &params).ok()?.into_parts();
        Some(
            instructions
                .params()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                .collect(),
        )
    }

    /// A 256-bit customer key bound to one URL: derived, so nothing is stored.
    fn customer_key(&self, uri_path: &str, date: &str) -> Vec<u8> {
        hmac_sha256(
            self.secret.as_bytes(),
            format!("sse-c\n{uri_path}\n{date}").as_bytes(),
        )
    }

    /// Checks a presigned GET; returns the environment id and the path in
    /// its home.
    pub fn check_get(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Result<(String, String), S3Error> {
        let uri_path = uri.path();
        let mut params: Vec<(String, String)> = Vec::new();
        for pair in uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = uri_decode(k)
                .ok_or_else(|| S3Error::bad("InvalidArgument", "bad query encoding"))?;
            let v = uri_decode(v)
                .ok_or_else(|| S3Error::bad("InvalidArgument", "bad query encoding"))?;
            params.push((k, v));
        }
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| {
                    S3Error::denied(format!(
                        "Query-string authentication requires the {name} parameter"
                    ))
                })
        };
        if param("X-Amz-Algorithm")? != ALGORITHM {
            return Err(S3Error::bad(
                "AuthorizationQueryParametersError",
                "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
            ));
        }
        let date = param("X-Amz-Date")?;
        let signed_at = parse_amz_date(date).ok_or_else(|| {
            S3Error::bad(
                "AuthorizationQueryParametersError",
                "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
            )
        })?;
        let expires: i64 = param("X-Amz-Expires")?.parse().map_err(|_| {
            S3Error::bad(
                "AuthorizationQueryParametersError",
                "X-Amz-Expires should be a number",
            )
        })?;
        if !(1..=MAX_EXPIRES_SECS).contains(&expires) {
            return Err(S3Error::bad(
                "AuthorizationQueryParametersError",
                "X-Amz-Expires must be between 1 and 604800 seconds",
            ));
        }
        if now > signed_at + time::Duration::seconds(expires) {
            return Err(S3Error::denied("Request has expired"));
        }
        let credential = param("X-Amz-Credential")?;
        let region = credential.split('/').nth(2).unwrap_or("");
        // Signed again as it came: its own parameters (all but the
        // signer's) are part of the canonical query, so none can be added
        // or changed after signing.
        let others = uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("X-Amz-"))
            .collect::<Vec<_>>()
            .join("&");
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let expected = self
            .presign_get(
                host,
                uri_path,
                &others,
                region,
                signed_at.into(),
                std::time::Duration::from_secs(expires.unsigned_abs()),
            )
            .and_then(|params| {
                params
                    .into_iter()
                    .find(|(k, _)| k == "X-Amz-Signature")
                    .map(|(_, v)| v)
            });
        let given = param("X-Amz-Signature")?;
        if !expected.is_some_and(|e| same_secret(e.as_bytes(), given.as_bytes())) {
            return Err(S3Error::new(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            ));
        }
        let key = self.customer_key(uri_path, date);
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let key_ok = header("x-amz-server-side-encryption-customer-algorithm") == "AES256"
            && BASE64
                .decode(header("x-amz-server-side-encryption-customer-key"))
                .is_ok_and(|k| same_secret(&k, &key));
        if !key_ok {
            return Err(S3Error::bad(
                "InvalidRequest",
                "The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.",
            ));
        }
        let rest = uri_path.strip_prefix("/_files/download/").ok_or_else(|| {
            S3Error::new(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            )
        })?;
        let (env, path) = rest.split_once('/').ok_or_else(|| {
            S3Error::new(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            )
        })?;
        let path = uri_decode(path)
            .ok_or_else(|| S3Error::bad("InvalidURI", "Couldn't parse the specified URI."))?;
        Ok((env.to_owned(), path))
    }

    /// Checks a POST form's signature, expiry and conditions. Returns the key
    /// (with `${filename}` still in it) and the allowed length range.
    pub fn check_post(
        &self,
        fields: &[(String, String)],
        now: OffsetDateTime,
    ) -> Result<(String, u64, u64), S3Error> {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let missing = |name: &str| {
            S3Error::bad(
                "InvalidArgument",
                format!(
                    "Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."
                ),
            )
        };
        let policy_b64 = field("policy").ok_or_else(|| missing("policy"))?;
        let signature = field("x-amz-signature").ok_or_else(|| missing("x-amz-signature"))?;
        let credential = field("x-amz-credential").ok_or_else(|| missing("x-amz-credential"))?;
        let date = field("x-amz-date").ok_or_else(|| missing("x-amz-date"))?;
        if field("x-amz-algorithm") != Some(ALGORITHM) {
            return Err(S3Error::bad(
                "InvalidArgument",
                "x-amz-algorithm only supports \"AWS4-HMAC-SHA256\"",
            ));
        }
        let key = field("key").ok_or_else(|| missing("key"))?;
        let mut parts = credential.split('/');
        let (Some(_), Some(day), Some(region)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(S3Error::bad(
                "InvalidArgument",
                "malformed x-amz-credential",
            ));
        };
        let expected = self.sign(day, region, policy_b64.as_bytes());
        if !expected.is_some_and(|e| same_secret(e.as_bytes(), signature.as_bytes())) {
            return Err(S3Error::new(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
            ));
        }
        let policy: Value = BASE64
            .decode(policy_b64)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| {
                S3Error::bad("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
            })?;
        let expiration = policy
            .get("expiration")
            .and_then(Value::as_str)
            .and_then(|s| {
                OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
            })
            .ok_or_else(|| {
                S3Error::bad(
                    "InvalidPolicyDocument",
                    "Invalid Policy: Invalid 'expiration' value.",
                )
            })?;
        if now > expiration {
            return Err(S3Error::denied(
                "Invalid according to Policy: Policy expired.",
            ));
        }
        let conditions = policy
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                S3Error::bad(
                    "InvalidPolicyDocument",
                    "Invalid Policy: missing conditions.",
                )
            })?;
        let mut covered: Vec<String> = Vec::new();
        let mut range = (0, u64::MAX);
        let violated = |what: &str| {
            S3Error::denied(format!(
                "Invalid according to Policy: Policy Condition failed: {what}"
            ))
        };
        for c in conditions {
            match c {
                Value::Object(map) => {
                    for (name, want) in map {
                        let want = want.as_str().unwrap_or_default();
                        if name == "bucket" {
                            continue;
                        }
                        if field(name) != Some(want) {
                            return Err(violated(&format!("[\"eq\", \"${name}\", \"{want}\"]")));
                        }
                        covered.push(name.to_ascii_lowercase());
                    }
                }
                Value::Array(items) => match items.as_slice() {
                    [op, min, max] if op == "content-length-range" => {
                        range = (min.as_u64().unwrap_or(0), max.as_u64().unwrap_or(0));
                    }
                    [op, name, want] if op == "eq" || op == "starts-with" => {
                        let name = name.as_str().unwrap_or_default().trim_start_matches('$');
                        let want = want.as_str().unwrap_or_default();
                        let got = field(name).unwrap_or_default();
                        let ok = if op == "eq" {
                            got == want
                        } else {
                            got.starts_with(want)
                        };
                        if !ok {
                            return Err(violated(&format!("[{op}, \"${name}\", \"{want}\"]")));
                        }
                        covered.push(name.to_ascii_lowercase());
                    }
                    _ => {
                        return Err(S3Error::bad(
                            "InvalidPolicyDocument",
                            "Invalid Policy: Invalid Condition.",
                        ));
                    }
                },
                _ => {
                    return Err(S3Error::bad(
                        "InvalidPolicyDocument",
                        "Invalid Policy: Invalid Condition.",
                    ));
                }
            }
        }
        for (name, _) in fields {
            let lower = name.to_ascii_lowercase();
            let exempt = ["policy", "x-amz-signature", "file"].contains(&lower.as_str())
                || lower.starts_with("x-ignore-");
            if !exempt && !covered.contains(&lower) {
                return Err(S3Error::denied(format!(
                    "Invalid according to Policy: Extra input fields: {name}"
                )));
            }
        }
        let _ = parse_amz_date(date)
            .ok_or_else(|| S3Error::bad("InvalidArgument", "bad x-amz-date"))?;
        Ok((key.to_owned(), range.0, range.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn form_fields(v: &Value) -> Vec<(String, String)> {
        v["FileUploadPresignedFields"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect()
    }

    #[test]
    fn a_signed_form_passes_and_a_tampered_one_does_not() {
        let s = FileSigner::default();
        let v = s.upload_form("h", "eu-west-1", "env", Some("a.txt"), 100, now());
        let fields = form_fields(&v);
        assert_eq!(
            s.check_post(&fields, now()).unwrap(),
            ("env/a.txt".to_owned(), 0, 100)
        );
        // Another key than the policy's.
        let mut other = fields.clone();
        other.iter_mut().find(|(k, _)| k == "key").unwrap().1 = "env/b.txt".into();
        assert_eq!(
            s.check_post(&other, now()).unwrap_err().code,
            "AccessDenied"
        );
        // Expired.
        let later = now() + time::Duration::seconds(URL_TTL_SECS + 1);
        let e = s.check_post(&fields, later).unwrap_err();
        assert!(e.message.contains("Policy expired"), "{e:?}");
        // Another signer's signature.
        let e = FileSigner::default()
            .check_post(&fields, now())
            .unwrap_err();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        // A field the policy does not cover.
        let mut extra = fields.clone();
        extra.push(("acl".into(), "public-read".into()));
        assert!(
            s.check_post(&extra, now())
                .unwrap_err()
                .message
                .contains("Extra input fields")
        );
        // A missing signature.
        let missing: Vec<_> = fields
            .iter()
            .filter(|(k, _)| k != "x-amz-signature")
            .cloned()
            .collect();
        assert_eq!(
            s.check_post(&missing, now()).unwrap_err().code,
            "InvalidArgument"
        );
    }

    #[test]
    fn a_presigned_get_checks_signature_expiry_and_customer_key() {
        let s = FileSigner::default();
        let v = s.download_url("127.0.0.1:9", "eu-west-1", "env", "dir/a b.txt", now());
        let url = v["FileDownloadPresignedUrl"].as_str().unwrap();
        let uri: Uri = url
            .trim_start_matches("http://127.0.0.1:9")
            .parse()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:9".parse().unwrap());
        headers.insert(
            "x-amz-server-side-encryption-customer-algorithm",
            "AES256".parse().unwrap(),
        );
        headers.insert(
            "x-amz-server-side-encryption-customer-key",
            v["FileDownloadPresignedKey"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
        );
        assert_eq!(
            s.check_get(&uri, &headers, now()).unwrap(),
            ("env".to_owned(), "dir/a b.txt".to_owned())
        );
        let later = now() + time::Duration::seconds(URL_TTL_SECS + 1);
        assert_eq!(
            s.check_get(&uri, &headers, later).unwrap_err().message,
            "Request has expired"
        );
        // The path, a parameter added after signing, a longer life: each
        // breaks the signature.
        let text = uri.to_string();
        for tampered in [
            text.replace("a%20b", "c"),
            format!("{text}&versionId=1"),
            text.replace("X-Amz-Expires=900", "X-Amz-Expires=3600"),
        ] {
            assert_ne!(tampered, text);
            let tampered: Uri = tampered.parse().unwrap();
            assert_eq!(
                s.check_get(&tampered, &headers, now()).unwrap_err().code,
                "SignatureDoesNotMatch",
                "{tampered}"
            );
        }
        let mut no_key = headers.clone();
        no_key.remove("x-amz-server-side-encryption-customer-key");
        assert_eq!(
            s.check_get(&uri, &no_key, now()).unwrap_err().code,
            "InvalidRequest"
        );
    }
}
