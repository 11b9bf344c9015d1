//! The [`Client`]: signs, sends and retries requests, one method per operation.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use tokio::sync::Mutex;
use tracing::debug;

use crate::config::{Config, Credentials, SERVICE_NAME};
use crate::error::{ErrorMetadata, OperationError, SdkError, ServiceError};
use crate::operation::{self, Operation, Validate};
use crate::retry::{Retry, classify_response};

/// Credentials are refreshed this long before they expire.
const CREDENTIALS_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// A client for the CloudShell control API.
///
/// Cheap to clone; clones share the connection pool and cached credentials.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    /// For `http://` URLs (an emulator, a local proxy): no TLS roots.
    plain: reqwest::Client,
    /// For `https://` URLs, made at the first one: loading the system's
    /// trust roots parses every certificate on the machine (most of a
    /// short command's CPU), which a call over plain HTTP never needs.
    tls: std::sync::OnceLock<reqwest::Client>,
    credentials: Mutex<Option<Credentials>>,
}

/// How every HTTP client of a [`Client`] is set up.
fn http_builder(config: &Config) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(config.timeouts.connect)
        .user_agent(concat!("cloudshell-rs/", env!("CARGO_PKG_VERSION")))
}

/// One attempt's result, before the retry decision.
enum Attempt {
    Success {
        body: Vec<u8>,
        request_id: Option<String>,
    },
    Failure {
        status: u16,
        meta: ErrorMetadata,
    },
}

/// Why an attempt produced no response.
enum AttemptError {
    /// The request certainly did not reach the service.
    NotSent(reqwest::Error),
    /// It may have.
    MaybeSent(reqwest::Error),
    /// The response arrived but its body could not be read.
    Body {
        status: u16,
        request_id: Option<String>,
        source: reqwest::Error,
    },
    TimedOut,
}

impl Client {
    /// The HTTP client for `url`, shared with the presigned transfers.
    pub(crate) fn http_for(&self, url: &str) -> &reqwest::Client {
        if url.starts_with("http://") {
            return &self.inner.plain;
        }
        self.inner.tls.get_or_init(|| {
            // Should the system's roots fail to load, the client without
            // them: every TLS connection then fails saying the certificate
            // is not trusted, which is what is wrong.
            http_builder(&self.inner.config)
                .build()
                .unwrap_or_else(|e| {
                    tracing::warn!("cannot load the system's TLS trust roots: {e}");
                    self.inner.plain.clone()
                })
        })
    }

    /// A client with this configuration.
    pub fn new(config: Config) -> Self {
        // Invariant: the builder fails only when the TLS backend cannot be
        // initialised, and rustls with aws-lc-rs is compiled in and needs no
        // system library; without roots it loads nothing at all.
        #[allow(clippy::expect_used)]
        let plain = http_builder(&config)
            .tls_certs_only(std::iter::empty())
            .build()
            .expect("the compiled-in TLS backend initialises");
        Self {
            inner: Arc::new(Inner {
                config,
                plain,
                tls: std::sync::OnceLock::new(),
                credentials: Mutex::new(None),
            }),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Lists the caller's environments in the region.
    pub async fn describe_environments(
        &self,
    ) -> Result<
        operation::describe_environments::DescribeEnvironmentsOutput,
        SdkError<operation::describe_environments::DescribeEnvironmentsError>,
    > {
        self.send::<operation::describe_environments::DescribeEnvironments>(
            &operation::describe_environments::DescribeEnvironmentsInput {},
        )
        .await
    }

    /// Creates an environment (not retried once it may have reached the service).
    pub async fn create_environment(
        &self,
        input: &operation::create_environment::CreateEnvironmentInput,
    ) -> Result<
        operation::create_environment::CreateEnvironmentOutput,
        SdkError<operation::create_environment::CreateEnvironmentError>,
    > {
        self.send::<operation::create_environment::CreateEnvironment>(input)
            .await
    }

    /// Reads one environment's status.
    pub async fn get_environment_status(
        &self,
        input: &operation::get_environment_status::GetEnvironmentStatusInput,
    ) -> Result<
        operation::get_environment_status::GetEnvironmentStatusOutput,
        SdkError<operation::get_environment_status::GetEnvironmentStatusError>,
    > {
        self.send::<operation::get_environment_status::GetEnvironmentStatus>(input)
            .await
    }

    /// Resumes a suspended environment.
    pub async fn start_environment(
        &self,
        input: &operation::start_environment::StartEnvironmentInput,
    ) -> Result<
        operation::start_environment::StartEnvironmentOutput,
        SdkError<operation::start_environment::StartEnvironmentError>,
    > {
        self.send::<operation::start_environment::StartEnvironment>(input)
            .await
    }

    /// Suspends a running environment.
    pub async fn stop_environment(
        &self,
        input: &operation::stop_environment::StopEnvironmentInput,
    ) -> Result<
        operation::stop_environment::StopEnvironmentOutput,
        SdkError<operation::stop_environment::StopEnvironmentError>,
    > {
        self.send::<operation::stop_environment::StopEnvironment>(input)
            .await
    }

    /// Deletes an environment and its home directory.
    pub async fn delete_environment(
        &self,
        input: &operation::delete_environment::DeleteEnvironmentInput,
    ) -> Result<
        operation::EmptyOutput,
        SdkError<operation::delete_environment::DeleteEnvironmentError>,
    > {
        self.send::<operation::delete_environment::DeleteEnvironment>(input)
            .await
    }

    /// Opens a shell session (not retried once it may have reached the service).
    pub async fn create_session(
        &self,
        input: &operation::create_session::CreateSessionInput,
    ) -> Result<
        operation::create_session::CreateSessionOutput,
        SdkError<operation::create_session::CreateSessionError>,
    > {
        self.send::<operation::create_session::CreateSession>(input)
            .await
    }

    /// Ends a shell session.
    pub async fn delete_session(
        &self,
        input: &operation::delete_session::DeleteSessionInput,
    ) -> Result<operation::EmptyOutput, SdkError<operation::delete_session::DeleteSessionError>>
    {
        self.send::<operation::delete_session::DeleteSession>(input)
            .await
    }

    /// Marks an environment active so it is not suspended for inactivity.
    pub async fn send_heart_beat(
        &self,
        input: &operation::send_heart_beat::SendHeartBeatInput,
    ) -> Result<operation::EmptyOutput, SdkError<operation::send_heart_beat::SendHeartBeatError>>
    {
        self.send::<operation::send_heart_beat::SendHeartBeat>(input)
            .await
    }

    /// Asks for a presigned upload into the environment's home directory.
    pub async fn get_file_upload_urls(
        &self,
        input: &operation::FileUrlsInput,
    ) -> Result<
        operation::FileUrlsOutput,
        SdkError<operation::get_file_upload_urls::GetFileUploadUrlsError>,
    > {
        self.send::<operation::get_file_upload_urls::GetFileUploadUrls>(input)
            .await
    }

    /// Asks for a presigned download from the environment's home directory.
    pub async fn get_file_download_urls(
        &self,
        input: &operation::FileUrlsInput,
    ) -> Result<
        operation::FileUrlsOutput,
        SdkError<operation::get_file_download_urls::GetFileDownloadUrlsError>,
    > {
        self.send::<operation::get_file_download_urls::GetFileDownloadUrls>(input)
            .await
    }

    /// Passes Console credentials to an environment (fails with ordinary credentials).
    pub async fn put_credentials(
        &self,
        input: &operation::put_credentials::PutCredentialsInput,
    ) -> Result<operation::EmptyOutput, SdkError<operation::put_credentials::PutCredentialsError>>
    {
        self.send::<operation::put_credentials::PutCredentials>(input)
            .await
    }

    /// Validates, serialises, then runs attempts until success, a final
    /// error, the attempt budget or the operation deadline.
    async fn send<O: Operation>(&self, input: &O::Input) -> Result<O::Output, SdkError<O::Error>> {
        input.validate()?;
        let body = serde_json::to_vec(input).map_err(|e| SdkError::ConstructionFailure {
            context: "could not serialise the input",
            source: Box::new(e),
        })?;
        let config = &self.inner.config;
        let deadline = tokio::time::Instant::now() + config.timeouts.operation;
        let max_attempts = config.retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.signed_request::<O>(&body).await?;
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let budget = config.timeouts.attempt.min(remaining);
            let outcome = match tokio::time::timeout(budget, self.attempt(request)).await {
                Ok(result) => result,
                Err(_) => Err(AttemptError::TimedOut),
            };
            let (retry, error) = match outcome {
                Ok(Attempt::Success { body, request_id }) => {
                    debug!(operation = O::NAME, attempt, request_id, "succeeded");
                    return parse_output::<O>(&body, request_id);
                }
                Ok(Attempt::Failure { status, meta }) => {
                    debug!(operation = O::NAME, attempt, status, error = %meta, "service error");
                    let retry = classify_response(status, meta.code.as_deref());
                    let kind = O::Error::from_code(meta.code.as_deref().unwrap_or(""));
                    (
                        retry,
                        SdkError::ServiceError(ServiceError::new(kind, meta, attempt)),
                    )
                }
                Err(AttemptError::NotSent(e)) => (
                    Retry::SafeForAll,
                    SdkError::DispatchFailure {
                        attempts: attempt,
                        may_have_reached_service: false,
                        source: Box::new(e),
                    },
                ),
                Err(AttemptError::MaybeSent(e)) => (
                    Retry::IdempotentOnly,
                    SdkError::DispatchFailure {
                        attempts: attempt,
                        may_have_reached_service: !O::IDEMPOTENT,
                        source: Box::new(e),
                    },
                ),
                Err(AttemptError::Body {
                    status,
                    request_id,
                    source,
                }) => (
                    Retry::IdempotentOnly,
                    SdkError::ResponseError {
                        status,
                        request_id,
                        source: Box::new(source),
                    },
                ),
                Err(AttemptError::TimedOut) => (
                    Retry::IdempotentOnly,
                    SdkError::TimeoutError { attempts: attempt },
                ),
            };
            let retryable = match retry {
                Retry::SafeForAll => true,
                Retry::IdempotentOnly => O::IDEMPOTENT,
                Retry::No => false,
            };
            if !retryable || attempt >= max_attempts {
                return Err(error);
            }
            let delay = config.retry.backoff(attempt, &mut rand::rng());
            if tokio::time::Instant::now() + delay >= deadline {
                return Err(error);
            }
            debug!(operation = O::NAME, attempt, ?delay, error = %error, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn signed_request<O: Operation>(
        &self,
        body: &[u8],
    ) -> Result<reqwest::Request, SdkError<O::Error>> {
        let config = &self.inner.config;
        let credentials = self.credentials().await.map_err(|e| SdkError::ConstructionFailure {
            context: "could not load AWS credentials (run `aws configure`, set AWS_PROFILE or AWS_ACCESS_KEY_ID, or use --emulated)",
            source: e,
        })?;
        let url = operation_url(&config.endpoint, O::PATH);
        let mut request = http::Request::builder()
            .method("POST")
            .uri(url.as_str())
            .header("content-type", "application/json")
            .body(body.to_vec())
            .map_err(|e| SdkError::ConstructionFailure {
                context: "could not build the HTTP request",
                source: Box::new(e),
            })?;
        let host = host_header(&url);
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(&host).map_err(|e| SdkError::ConstructionFailure {
                context: "the endpoint's host is not a valid header value",
                source: Box::new(e),
            })?,
        );
        sign_request(
            &mut request,
            credentials,
            config.region.as_str(),
            SystemTime::now(),
        )
        .map_err(|source| SdkError::ConstructionFailure {
            context: "could not sign the request",
            source,
        })?;
        reqwest::Request::try_from(request).map_err(|e| SdkError::ConstructionFailure {
            context: "could not build the HTTP request",
            source: Box::new(e),
        })
    }

    /// The credentials requests are signed with (resolved and cached on first use),
    /// for callers that pass them on, such as into a remote shell.
    pub async fn resolved_credentials(&self) -> Result<Credentials, SdkError<()>> {
        self.credentials()
            .await
            .map_err(|source| SdkError::ConstructionFailure {
                context: "could not load AWS credentials",
                source,
            })
    }

    async fn credentials(&self) -> Result<Credentials, Box<dyn std::error::Error + Send + Sync>> {
        let mut cached = self.inner.credentials.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expiry()
                .is_none_or(|exp| exp > SystemTime::now() + CREDENTIALS_REFRESH_MARGIN);
            if fresh {
                return Ok(c.clone());
            }
        }
        let c = self
            .inner
            .config
            .credentials
            .provide_credentials()
            .await
            .map_err(Box::new)?;
        *cached = Some(c.clone());
        Ok(c)
    }

    async fn attempt(&self, request: reqwest::Request) -> Result<Attempt, AttemptError> {
        let http = self.http_for(request.url().as_str());
        let response = http.execute(request).await.map_err(|e| {
            if e.is_connect() {
                AttemptError::NotSent(e)
            } else if e.is_timeout() {
                AttemptError::TimedOut
            } else {
                AttemptError::MaybeSent(e)
            }
        })?;
        let status = response.status().as_u16();
        let request_id = header_str(response.headers(), "x-amzn-requestid")
            .or_else(|| header_str(response.headers(), "x-amz-request-id"));
        let error_type = header_str(response.headers(), "x-amzn-errortype");
        let bytes = response
            .bytes()
            .await
            .map_err(|source| AttemptError::Body {
                status,
                request_id: request_id.clone(),
                source,
            })?;
        if (200..300).contains(&status) {
            return Ok(Attempt::Success {
                body: bytes.to_vec(),
                request_id,
            });
        }
        let meta = parse_error_metadata(status, request_id, error_type.as_deref(), &bytes);
        Ok(Attempt::Failure { status, meta })
    }
}

fn header_str(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Appends the operation path to the endpoint, keeping any base path it has.
fn operation_url(endpoint: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = endpoint.clone();
    let base = endpoint.path().trim_end_matches('/');
    url.set_path(&format!("{base}{path}"));
    url
}

fn host_header(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// Signs with SigV4 for the `cloudshell` service; the signature covers every
/// header already on the request.
fn sign_request(
    request: &mut http::Request<Vec<u8>>,
    credentials: Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let identity: Identity = credentials.into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE_NAME)
        .time(time)
        .settings(SigningSettings::default())
        .build()?
        .into();
    let headers: Vec<(&str, &str)> = request
        .headers()
        .iter()
        .map(|(k, v)| Ok((k.as_str(), v.to_str()?)))
        .collect::<Result<_, http::header::ToStrError>>()?;
    let uri = request.uri().to_string();
    let signable = SignableRequest::new(
        request.method().as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(request.body()),
    )?;
    let (instructions, _signature) = sign(signable, &params)?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

fn parse_output<O: Operation>(
    bytes: &[u8],
    request_id: Option<String>,
) -> Result<O::Output, SdkError<O::Error>> {
    // Operations with no output members may answer with an empty body.
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| SdkError::ResponseError {
        status: 200,
        request_id,
        source: Box::new(e),
    })
}

/// Reads the error code and message the way rest-json clients do: the
/// `x-amzn-ErrorType` header first (text after `:` is a namespace URL), then
/// `__type`, `code` or `Code` in the body (text before `#` is a namespace).
fn parse_error_metadata(
    status: u16,
    request_id: Option<String>,
    error_type_header: Option<&str>,
    body: &[u8],
) -> ErrorMetadata {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| -> Option<String> {
        let obj = json.as_ref()?.as_object()?;
        names
            .iter()
            .find_map(|n| obj.get(*n).and_then(|v| v.as_str()).map(str::to_owned))
    };
    let code = error_type_header
        .map(str::to_owned)
        .or_else(|| field(&["__type", "code", "Code"]))
        .map(|c| sanitize_error_code(&c))
        .filter(|c| !c.is_empty());
    let message = field(&["message", "Message", "errorMessage"]).or_else(|| {
        // A non-JSON error body (a proxy's HTML page, say) is still worth showing.
        (json.is_none() && !body.is_empty()).then(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_owned()
        })
    });
    ErrorMetadata {
        code,
        message,
        status,
        request_id,
    }
}

fn sanitize_error_code(raw: &str) -> String {
    let no_suffix = raw.split(':').next().unwrap_or(raw);
    let no_namespace = no_suffix.rsplit('#').next().unwrap_or(no_suffix);
    no_namespace.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_spellings() {
        let m = parse_error_metadata(
            400,
            None,
            Some("ValidationException:http://internal.amazon.com/coral/com.amazon.cloudshell/"),
            b"{}",
        );
        assert_eq!(m.code.as_deref(), Some("ValidationException"));

        let m = parse_error_metadata(
            404,
            Some("r1".into()),
            None,
            br#"{"__type":"com.amazonaws.cloudshell#ResourceNotFoundException","Message":"no such environment"}"#,
        );
        assert_eq!(m.code.as_deref(), Some("ResourceNotFoundException"));
        assert_eq!(m.message.as_deref(), Some("no such environment"));
        assert_eq!(m.request_id.as_deref(), Some("r1"));

        let m = parse_error_metadata(
            403,
            None,
            None,
            br#"{"code":"AccessDeniedException","message":"no"}"#,
        );
        assert_eq!(m.code.as_deref(), Some("AccessDeniedException"));

        let m = parse_error_metadata(502, None, None, b"<html>Bad Gateway</html>");
        assert_eq!(m.code, None);
        assert_eq!(m.message.as_deref(), Some("<html>Bad Gateway</html>"));
    }

    #[test]
    fn operation_url_keeps_base_path() {
        let e = reqwest::Url::parse("http://127.0.0.1:4599/prefix/").unwrap();
        assert_eq!(
            operation_url(&e, "/createSession").as_str(),
            "http://127.0.0.1:4599/prefix/createSession"
        );
        let e = reqwest::Url::parse("https://cloudshell.us-east-1.amazonaws.com").unwrap();
        assert_eq!(
            operation_url(&e, "/describeEnvironments").as_str(),
            "https://cloudshell.us-east-1.amazonaws.com/describeEnvironments"
        );
    }
}
