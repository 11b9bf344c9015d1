//! Cross-origin access to a bucket, as its CORS configuration says: the
//! rules are stored with the bucket (Put/Get/DeleteBucketCors), a browser's
//! preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//! is answered from them, and every other request that names an `Origin`
//! gets the `Access-Control-*` headers of the first rule that matches it.
//! The HTTP server calls [`preflight`] and [`response_headers`] (s3s does
//! not route `OPTIONS`); what a request may do is still the access rules'.

use serde::{Deserialize, Serialize};

use s3s::dto::{CORSConfiguration, CORSRule};
use s3s::{S3Result, s3_error};

use crate::S3State;

/// One CORS rule, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    /// Its `ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins, each with at most one `*`.
    pub allowed_origins: Vec<String>,
    /// `GET`, `PUT`, `POST`, `DELETE` or `HEAD`.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (`*` wildcards).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser may show the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache the preflight's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "HEAD"];

/// Checks a PutBucketCors body as S3 does and turns it into rules.
pub(crate) fn rules_of(config: &CORSConfiguration) -> S3Result<Vec<CorsRule>> {
    let rules = &config.cors_rules;
    if rules.is_empty() || rules.len() > 100 {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration has 1 to 100 rules, not {}",
            rules.len()
        ));
    }
    rules
        .iter()
        .map(|r| {
            if r.allowed_origins.is_empty() || r.allowed_methods.is_empty() {
                return Err(s3_error!(
                    MalformedXML,
                    "each CORS rule needs an AllowedOrigin and an AllowedMethod"
                ));
            }
            for m in &r.allowed_methods {
                if !METHODS.contains(&m.as_str()) {
                    return Err(s3_error!(
                        InvalidRequest,
                        "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
                    ));
                }
            }
            for o in &r.allowed_origins {
                if o.matches('*').count() > 1 {
                    return Err(s3_error!(
                        InvalidRequest,
                        "AllowedOrigin \"{o}\" can not have more than one wildcard."
                    ));
                }
            }
            for h in r.allowed_headers.iter().flatten() {
                if h.matches('*').count() > 1 {
                    return Err(s3_error!(
                        InvalidRequest,
                        "AllowedHeader \"{h}\" can not have more than one wildcard."
                    ));
                }
            }
            Ok(CorsRule {
                id: r.id.clone(),
                allowed_origins: r.allowed_origins.clone(),
                allowed_methods: r.allowed_methods.clone(),
                allowed_headers: r.allowed_headers.clone().unwrap_or_default(),
                expose_headers: r.expose_headers.clone().unwrap_or_default(),
                max_age_seconds: r.max_age_seconds,
            })
        })
        .collect()
}

/// Rules as GetBucketCors answers them.
pub(crate) fn dto_of(rules: &[CorsRule]) -> Vec<CORSRule> {
    rules
        .iter()
        .map(|r| CORSRule {
            id: r.id.clone(),
            allowed_origins: r.allowed_origins.clone(),
            allowed_methods: r.allowed_methods.clone(),
            allowed_headers: (!r.allowed_headers.is_empty()).then(|| r.allowed_headers.clone()),
            expose_headers: (!r.expose_headers.is_empty()).then(|| r.expose_headers.clone()),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

/// One wildcard at most, matched case-sensitively (origins) or not (headers).
fn wildcard(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let (p, t) = if ignore_case {
        (pattern.to_ascii_lowercase(), text.to_ascii_lowercase())
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    match p.split_once('*') {
        None => p == t,
        Some((head, tail)) => {
            t.len() >= head.len() + tail.len() && t.starts_with(head) && t.ends_with(tail)
        }
    }
}

impl CorsRule {
    fn allows(&self, origin: &str, method: &str, headers: &[String]) -> bool {
        self.allowed_origins
            .iter()
            .any(|o| wildcard(o, origin, false))
            && self.allowed_methods.iter().any(|m| m == method)
            && headers.iter().all(|h| {
                self.allowed_headers
                    .iter()
                    .any(|allowed| wildcard(allowed, h, true))
            })
    }

    /// The headers that let `origin` in.
    fn headers(&self, origin: &str, asked_headers: &[String], preflight: bool) -> http::HeaderMap {
        let mut out = http::HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = http::HeaderValue::from_str(&value) {
                out.insert(name, v);
            }
        };
        let any = self.allowed_origins.iter().any(|o| o == "*");
        put(
            "access-control-allow-origin",
            if any {
                "*".to_owned()
            } else {
                origin.to_owned()
            },
        );
        if !any {
            put("access-control-allow-credentials", "true".to_owned());
        }
        put(
            "access-control-allow-methods",
            self.allowed_methods.join(", "),
        );
        if preflight && !asked_headers.is_empty() {
            put("access-control-allow-headers", asked_headers.join(", "));
        }
        if !self.expose_headers.is_empty() {
            put(
                "access-control-expose-headers",
                self.expose_headers.join(", "),
            );
        }
        if let Some(age) = self.max_age_seconds {
            put("access-control-max-age", age.to_string());
        }
        put(
            "vary",
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method".to_owned(),
        );
        out
    }
}

/// The bucket a path-style request names.
fn bucket_of(path: &str) -> Option<String> {
    let first = path.trim_start_matches('/').split('/').next()?;
    let bucket = percent_encoding::percent_decode_str(first)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!bucket.is_empty()).then_some(bucket)
}

fn rules(s3: &S3State, path: &str) -> Option<Vec<CorsRule>> {
    let bucket = bucket_of(path)?;
    s3.meta.bucket_config(&bucket).ok().flatten()?.cors
}

/// The answer to a preflight (`OPTIONS` with an `Origin`) for `path`:
/// 200 with the matching rule's headers, or 403 as S3 says it.
pub fn preflight(s3: &S3State, path: &str, headers: &http::HeaderMap) -> http::Response<String> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let origin = get("origin").unwrap_or_default();
    let Some(method) = get("access-control-request-method") else {
        return forbidden("Invalid preflight: Access-Control-Request-Method is missing.");
    };
    let asked: Vec<String> = get("access-control-request-headers")
        .map(|h| {
            h.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let Some(rules) = rules(s3, path) else {
        return forbidden("CORS is not enabled for this bucket.");
    };
    match rules.iter().find(|r| r.allows(&origin, &method, &asked)) {
        Some(rule) => {
            let mut r = http::Response::new(String::new());
            *r.headers_mut() = rule.headers(&origin, &asked, true);
            r
        }
        None => forbidden(
            "This CORS request is not allowed. This is usually because the evaluation of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        ),
    }
}

fn forbidden(message: &str) -> http::Response<String> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessForbidden</Code><Message>CORSResponse: {message}</Message></Error>"
    );
    let mut r = http::Response::new(body);
    *r.status_mut() = http::StatusCode::FORBIDDEN;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    r
}

/// The CORS headers for a request with an `Origin` to `path`, when a rule
/// of its bucket matches the origin and method.
pub fn response_headers(
    s3: &S3State,
    path: &str,
    method: &str,
    origin: &str,
) -> Option<http::HeaderMap> {
    let rules = rules(s3, path)?;
    rules
        .iter()
        .find(|r| r.allows(origin, method, &[]))
        .map(|r| r.headers(origin, &[], false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> CorsRule {
        CorsRule {
            id: None,
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: vec!["x-amz-*".into(), "content-type".into()],
            expose_headers: vec!["ETag".into()],
            max_age_seconds: Some(600),
        }
    }

    #[test]
    fn rules_match_origin_method_and_headers() {
        let r = rule();
        assert!(r.allows("https://app.example.com", "GET", &[]));
        assert!(r.allows(
            "https://app.example.com",
            "PUT",
            &["x-amz-meta-a".into(), "Content-Type".into()]
        ));
        assert!(!r.allows("https://app.example.com", "DELETE", &[]));
        assert!(!r.allows("https://evil.com", "GET", &[]));
        assert!(!r.allows("https://app.example.com", "PUT", &["authorization".into()]));
        let h = r.headers("https://app.example.com", &["x-amz-meta-a".into()], true);
        assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
        assert_eq!(h["access-control-allow-headers"], "x-amz-meta-a");
        assert_eq!(h["access-control-max-age"], "600");
        assert_eq!(h["access-control-expose-headers"], "ETag");
    }

    #[test]
    fn configurations_are_checked() {
        let mut c = CORSConfiguration {
            cors_rules: vec![CORSRule {
                allowed_methods: vec!["PATCH".into()],
                allowed_origins: vec!["*".into()],
                ..Default::default()
            }],
        };
        assert!(rules_of(&c).is_err());
        c.cors_rules[0].allowed_methods = vec!["GET".into()];
        c.cors_rules[0].allowed_origins = vec!["https://*.*.com".into()];
        assert!(rules_of(&c).is_err());
        c.cors_rules[0].allowed_origins = vec!["*".into()];
        assert_eq!(rules_of(&c).unwrap().len(), 1);
        assert_eq!(bucket_of("/b/k%20x").as_deref(), Some("b"));
        assert_eq!(bucket_of("/"), None);
    }
}
