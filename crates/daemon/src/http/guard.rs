//! What every request passes through before its handler: one length
//! only, the browser guard and the token, and the latency record.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State as AxumState};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::State;

type Shared = Arc<State>;

/// Refuses a request that says its length two ways (Content-Length and
/// Transfer-Encoding): RFC 9112 section 6.3 calls it a smuggling attempt
/// or a broken client, and a proxy in front might read it the other way.
/// hyper drops the Content-Length before this runs, so the listener marks
/// such a request ([`crate::http::framing`]). On every listener (S3's too).
pub(crate) async fn one_length(request: Request, next: Next) -> Response {
    if request
        .headers()
        .contains_key(crate::http::framing::AMBIGUOUS)
    {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "AmbiguousLength",
            "the request has both Content-Length and Transfer-Encoding; send one",
        )
        .into_response();
    }
    next.run(request).await
}

/// An error answer to a request that carries a body closes the connection.
/// Most refusals (signature, access, preconditions, quotas) are answered
/// before the body is read, and the connection then cannot safely carry
/// another request: a client that asked `Expect: 100-continue` sends no
/// body after a final answer, one that did not may still be sending it, and
/// the server cannot tell which (RFC 9110 section 10.1.1). Answering and
/// closing leaves no doubt; clients open a new connection.
pub(crate) async fn close_after_refused_body(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    let status = response.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// On the S3 listener, what S3 answers before it checks a signature: a
/// request signed for another region than the endpoint's is told the right
/// one (s3cmd at its defaults signs for `US` and tries again with what it
/// is told), and a presigned URL that lives too long or has expired is
/// refused as S3 refuses it.
pub(crate) async fn s3_precheck(request: Request, next: Next) -> Response {
    let query = request.uri().query();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let answer = cloudshell_s3::region::wrong_region(request.headers(), query)
        .or_else(|| cloudshell_s3::presigned::expiry_answer(query, now))
        .or_else(|| cloudshell_s3::paths::bad_path(request.uri().path()));
    if let Some(answer) = answer {
        return answer.into_response();
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(path) =
        cloudshell_s3::presigned::sigv2_bucket_path(request.uri().path(), query, authorization)
    {
        let mut request = request;
        let uri = match request.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if let Ok(uri) = uri.parse() {
            *request.uri_mut() = uri;
        }
        return next.run(request).await;
    }
    next.run(request).await
}

/// Cross-origin requests to the S3 endpoint, as the bucket's CORS rules
/// say: a preflight is answered here (s3s does not route `OPTIONS`), and
/// an answer to a request with an `Origin` carries the matching rule's
/// headers.
pub(crate) async fn s3_cors(
    axum::extract::State(s3): axum::extract::State<std::sync::Arc<cloudshell_s3::S3State>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(origin) = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    if request.method() == axum::http::Method::OPTIONS {
        return cloudshell_s3::cors::preflight(&s3, &path, request.headers()).into_response();
    }
    let method = request.method().as_str().to_owned();
    let mut response = next.run(request).await;
    if let Some(headers) = cloudshell_s3::cors::response_headers(&s3, &path, &method, &origin) {
        response.headers_mut().extend(headers);
    }
    response
}

/// A browser form upload whose key says `${filename}` gets the file's
/// name there before s3s reads the form (see `cloudshell_s3::post_form`):
/// only the fields before the file are held and rewritten.
pub(crate) async fn s3_post_form(request: Request, next: Next) -> Response {
    use cloudshell_s3::post_form::{self, Found};
    use futures_util::StreamExt as _;
    let path = request.uri().path().trim_matches('/');
    let names_a_bucket = !path.is_empty() && !path.contains('/');
    let boundary = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(post_form::boundary);
    let (true, Some(boundary)) = (
        request.method() == axum::http::Method::POST && names_a_bucket,
        boundary,
    ) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let mut stream = body.into_data_stream();
    let mut start: Vec<u8> = Vec::new();
    let rewritten = loop {
        match post_form::rewrite(&start, &boundary) {
            Found::Ready(out) => break out,
            // Too long or cut short: s3s says what is wrong with it.
            Found::NeedMore if start.len() > post_form::MAX_FIELDS => break start.clone(),
            Found::NeedMore => match stream.next().await {
                Some(Ok(bytes)) => start.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    return ApiError::new(StatusCode::BAD_REQUEST, "IncompleteBody", e.to_string())
                        .into_response();
                }
                None => break start.clone(),
            },
        }
    };
    if let Some(length) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        let length = (length + rewritten.len()).saturating_sub(start.len());
        parts.headers.insert(header::CONTENT_LENGTH, length.into());
    }
    let head =
        futures_util::stream::once(
            async move { Ok::<_, axum::Error>(bytes::Bytes::from(rewritten)) },
        );
    let body = axum::body::Body::from_stream(head.chain(stream));
    let response = next.run(Request::from_parts(parts, body)).await;
    if response.status() != StatusCode::BAD_REQUEST {
        return response;
    }
    // A form that breaks its policy's conditions is 403 AccessDenied
    // "Invalid according to Policy" in S3; s3s says 400 InvalidPolicyDocument.
    let (mut head, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 << 10).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let text = String::from_utf8_lossy(&bytes);
    match cloudshell_s3::post_form::policy_refusal(&text) {
        Some(answer) => {
            head.status = StatusCode::FORBIDDEN;
            head.headers.remove(header::CONTENT_LENGTH);
            Response::from_parts(head, axum::body::Body::from(answer))
        }
        None => Response::from_parts(head, axum::body::Body::from(bytes)),
    }
}

/// Keeps other web pages out. Without a token the daemon trusts whatever
/// reaches its loopback port, so a page from elsewhere open in the user's
/// browser must not be able to act through it: a request that says it comes
/// from another origin (`Origin`, `Sec-Fetch-Site: cross-site`) is refused,
/// even a simple form POST, which CORS would let through; and, without a
/// token, so is a `Host` that is not a loopback name, which is what a
/// DNS-rebinding page sends while posing as same-origin. The UI's own files
/// may be opened from a link anywhere (a navigation is cross-site too);
/// only the API is held to the origin checks.
fn browser_guard(request: &Request, public: bool, has_token: bool) -> Result<(), ApiError> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let refuse = |why: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "CrossOriginRefused",
            format!(
                "{why}: the daemon answers only its own web UI and local programs (set a token \
                 with --token to reach it from elsewhere)"
            ),
        ))
    };
    if !has_token && !is_loopback_host(host) {
        return refuse(format!("Host {host:?} is not a loopback name"));
    }
    if public {
        return Ok(());
    }
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return refuse("a cross-site request".into());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or(origin);
        if origin_host != host {
            return refuse(format!("a request from the page at {origin}"));
        }
    }
    Ok(())
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port. An absent
/// Host (HTTP/1.0 tools) is let through: browsers always send one.
fn is_loopback_host(host: &str) -> bool {
    if host.is_empty() {
        return true;
    }
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Requires `Authorization: Bearer TOKEN` when a token is configured. The
/// web UI's own files are public (it asks for the token itself).
pub(super) async fn authorize(
    AxumState(state): AxumState<Shared>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let path = request.uri().path();
    let public = path == "/" || path.starts_with("/ui/");
    browser_guard(&request, public, state.config.token.is_some())?;
    if let Some(token) = state.config.token.as_ref().filter(|_| !public) {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| {
            use subtle_eq::eq;
            eq(g.as_bytes(), token.as_bytes())
        });
        if !ok {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "this daemon needs its token: send `Authorization: Bearer TOKEN` (the CLI reads \
                 CLOUDSHELL_STORE_TOKEN)",
            ));
        }
    }
    Ok(next.run(request).await)
}

mod subtle_eq {
    /// Compares without stopping at the first difference, so the time taken
    /// says nothing about how much of a guess was right.
    pub fn eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Records every request's latency under its route's pattern (so file
/// names do not each make a series).
pub(super) async fn measure(
    AxumState(state): AxumState<Shared>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state.latencies.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:1",
            "127.9.9.9",
            "[::1]:80",
            "",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:8080",
            "10.0.0.1",
            "localhost.evil.example",
            "[2001:db8::1]",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
