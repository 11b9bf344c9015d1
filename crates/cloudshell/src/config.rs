//! Client configuration: region, credentials, endpoint, retries, timeouts.
//!
//! [`Config::builder`] sets everything by hand; [`Config::load`] resolves it
//! the way the AWS CLI and SDKs do, through `aws-config`'s default chain
//! (environment, shared config and credentials files, SSO, credential
//! process, web identity, IMDS), with the endpoint taken from, in order: an
//! explicit URL, `AWS_ENDPOINT_URL_CLOUDSHELL`, `AWS_ENDPOINT_URL`, the
//! profile's `endpoint_url`, then `https://cloudshell.<region>.amazonaws.com`.
//! When the environment alone decides everything (keys and region in
//! environment variables, no profile named, no shared config or
//! credentials file to read), the chain is not started: it would give the
//! same answer, and setting it up (its HTTP client loads every trust root
//! on the machine) is most of what a short command costs.

use std::time::Duration;

use aws_config::BehaviorVersion;
pub use aws_credential_types::Credentials;
pub use aws_credential_types::provider::SharedCredentialsProvider;

use crate::retry::RetryConfig;
use crate::types::Region;

/// The SigV4 signing name and endpoint prefix of the service.
pub const SERVICE_NAME: &str = "cloudshell";

/// How long to wait for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeoutConfig {
    /// Establishing the TCP (and TLS) connection.
    pub connect: Duration,
    /// One attempt, from sending to the last byte of the response.
    pub attempt: Duration,
    /// The whole operation, retries and backoff included.
    pub operation: Duration,
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect: Duration::from_millis(3100),
            attempt: Duration::from_secs(30),
            operation: Duration::from_secs(90),
        }
    }
}

/// Why a configuration could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No region was given or found.
    #[error(
        "no region configured: pass --region, set AWS_REGION, or set `region` in your AWS profile"
    )]
    NoRegion,
    /// The region found is not a region name.
    #[error(transparent)]
    InvalidRegion(#[from] crate::types::ValidationError),
    /// No credentials provider could be made.
    #[error(
        "no AWS credentials configured: run `aws configure`, set AWS_PROFILE or AWS_ACCESS_KEY_ID, or use the local emulator with --emulated"
    )]
    NoCredentials,
    /// The endpoint URL is not an http(s) URL.
    #[error("invalid endpoint URL {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Everything a [`Client`](crate::Client) needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) region: Region,
    pub(crate) endpoint: reqwest::Url,
    pub(crate) credentials: SharedCredentialsProvider,
    pub(crate) retry: RetryConfig,
    pub(crate) timeouts: TimeoutConfig,
}

impl Config {
    /// Starts a configuration to be filled in by hand.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Starts resolving a configuration from the environment, as the AWS CLI does.
    pub fn load() -> EnvLoader {
        EnvLoader::default()
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &Region {
        &self.region
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// True when requests go to AWS's own endpoint for the region (not an
    /// override such as a local emulator): the shells are real CloudShell
    /// machines, whatever runs this.
    pub fn is_aws_endpoint(&self) -> bool {
        default_endpoint(&self.region).is_ok_and(|standard| standard == self.endpoint)
    }

    /// Where a Session Manager client sends SSM's session calls
    /// (`ResumeSession` after a dropped socket, `TerminateSession`) for
    /// sessions this configuration opens: the region's SSM endpoint, or,
    /// when the CloudShell endpoint was overridden, that same endpoint (a
    /// local emulator serves both).
    pub fn ssm_endpoint(&self) -> String {
        if self.is_aws_endpoint() {
            regional_endpoint("ssm", &self.region)
        } else {
            self.endpoint.as_str().trim_end_matches('/').to_owned()
        }
    }

    /// The retry policy.
    pub fn retry(&self) -> &RetryConfig {
        &self.retry
    }

    /// The timeouts.
    pub fn timeouts(&self) -> &TimeoutConfig {
        &self.timeouts
    }
}

/// Builds a [`Config`] from explicit values.
#[derive(Debug, Default)]
pub struct ConfigBuilder {
    region: Option<Region>,
    endpoint_url: Option<String>,
    credentials: Option<SharedCredentialsProvider>,
    retry: RetryConfig,
    timeouts: TimeoutConfig,
}

impl ConfigBuilder {
    /// The region to sign for (required).
    pub fn region(mut self, region: Region) -> Self {
        self.region = Some(region);
        self
    }

    /// Sends requests here instead of `https://cloudshell.<region>.amazonaws.com`.
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Static credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(SharedCredentialsProvider::new(credentials));
        self
    }

    /// Any credentials provider (required unless `credentials` is set).
    pub fn credentials_provider(mut self, provider: SharedCredentialsProvider) -> Self {
        self.credentials = Some(provider);
        self
    }

    /// The retry policy.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// The timeouts.
    pub fn timeouts(mut self, timeouts: TimeoutConfig) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Checks and assembles the configuration.
    pub fn build(self) -> Result<Config, ConfigError> {
        let region = self.region.ok_or(ConfigError::NoRegion)?;
        let credentials = self.credentials.ok_or(ConfigError::NoCredentials)?;
        let endpoint = match self.endpoint_url {
            Some(url) => parse_endpoint(&url)?,
            None => default_endpoint(&region)?,
        };
        Ok(Config {
            region,
            endpoint,
            credentials,
            retry: self.retry,
            timeouts: self.timeouts,
        })
    }
}

/// Resolves a [`Config`] from flags, environment and AWS profiles.
#[derive(Debug, Default)]
pub struct EnvLoader {
    profile: Option<String>,
    region: Option<Region>,
    endpoint_url: Option<String>,
    retry: Option<RetryConfig>,
    timeouts: TimeoutConfig,
}

impl EnvLoader {
    /// Uses this named profile instead of `AWS_PROFILE` or `default`.
    pub fn profile(mut self, profile: Option<String>) -> Self {
        self.profile = profile;
        self
    }

    /// Overrides the region found in the environment or profile.
    pub fn region(mut self, region: Option<Region>) -> Self {
        self.region = region;
        self
    }

    /// Overrides every configured endpoint.
    pub fn endpoint_url(mut self, url: Option<String>) -> Self {
        self.endpoint_url = url;
        self
    }

    /// Overrides the retry policy (otherwise 3 attempts, or `AWS_MAX_ATTEMPTS`).
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Overrides the timeouts.
    pub fn timeouts(mut self, timeouts: TimeoutConfig) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Runs the resolution. Credentials themselves are fetched lazily, at the first call.
    pub async fn load(self) -> Result<Config, ConfigError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let found = match EnvAlone::of(self.profile.as_deref(), self.region.as_ref(), var, |p| {
            p.exists()
        }) {
            Some(env) => Found {
                region: env.region,
                credentials: SharedCredentialsProvider::new(env.credentials),
                max_attempts: env.max_attempts,
                endpoint: env.endpoint,
            },
            None => self.ask_chain().await?,
        };
        let retry = self.retry.unwrap_or_else(|| RetryConfig {
            max_attempts: found.max_attempts,
            ..RetryConfig::default()
        });
        let mut builder = Config::builder()
            .region(found.region)
            .credentials_provider(found.credentials)
            .retry(retry)
            .timeouts(self.timeouts);
        if let Some(url) = self.endpoint_url.or(found.endpoint) {
            builder = builder.endpoint_url(url);
        }
        builder.build()
    }

    /// What `aws-config`'s default chain finds, for what was not given.
    async fn ask_chain(&self) -> Result<Found, ConfigError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(p) = &self.profile {
            loader = loader.profile_name(p);
        }
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.as_str().to_owned()));
        }
        let sdk = loader.load().await;
        let region = match &self.region {
            Some(r) => r.clone(),
            None => Region::new(sdk.region().ok_or(ConfigError::NoRegion)?.as_ref())?,
        };
        Ok(Found {
            region,
            credentials: sdk
                .credentials_provider()
                .ok_or(ConfigError::NoCredentials)?,
            max_attempts: sdk.retry_config().map_or(3, |r| r.max_attempts()).max(1),
            endpoint: configured_endpoint_from_env(|k| std::env::var(k).ok())
                .or_else(|| sdk.endpoint_url().map(str::to_owned)),
        })
    }
}

/// What the environment, or the default chain, settled.
struct Found {
    region: Region,
    credentials: SharedCredentialsProvider,
    max_attempts: u32,
    endpoint: Option<String>,
}

/// What the environment alone says, when it says everything the default
/// chain would find: keys, a region, and no profile or shared file that
/// could add to or override them (the chain reads environment keys first).
#[derive(Debug)]
struct EnvAlone {
    region: Region,
    credentials: Credentials,
    max_attempts: u32,
    endpoint: Option<String>,
}

impl EnvAlone {
    fn of(
        profile: Option<&str>,
        region: Option<&Region>,
        var: impl Fn(&str) -> Option<String>,
        exists: impl Fn(&std::path::Path) -> bool,
    ) -> Option<Self> {
        if profile.is_some() || var("AWS_PROFILE").is_some() {
            return None;
        }
        let home = dirs::home_dir();
        let shared_file = |variable: &str, default: &str| match var(variable) {
            Some(p) => Some(std::path::PathBuf::from(p)),
            None => home.as_ref().map(|h| h.join(".aws").join(default)),
        };
        let files = [
            shared_file("AWS_CONFIG_FILE", "config"),
            shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
        ];
        // Without a home there is no default file either.
        if files.iter().flatten().any(|f| exists(f)) {
            return None;
        }
        let region = match region {
            Some(r) => r.clone(),
            None => Region::new(var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION"))?).ok()?,
        };
        let credentials = Credentials::new(
            var("AWS_ACCESS_KEY_ID")?,
            var("AWS_SECRET_ACCESS_KEY")?,
            var("AWS_SESSION_TOKEN"),
            None,
            "Environment",
        );
        // As the chain reads it: a number of at least one, else 3.
        let max_attempts = match var("AWS_MAX_ATTEMPTS") {
            None => 3,
            Some(n) => n.parse::<u32>().ok().filter(|n| *n >= 1)?,
        };
        Some(Self {
            region,
            credentials,
            max_attempts,
            endpoint: configured_endpoint_from_env(var),
        })
    }
}

/// The service-specific variable wins over the global one, as in the SDKs;
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true` turns both off.
fn configured_endpoint_from_env(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    ["AWS_ENDPOINT_URL_CLOUDSHELL", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|k| var(k).filter(|v| !v.is_empty()))
}

fn default_endpoint(region: &Region) -> Result<reqwest::Url, ConfigError> {
    parse_endpoint(&regional_endpoint(SERVICE_NAME, region))
}

/// `https://<service>.<region>.<suffix>`.
fn regional_endpoint(service: &str, region: &Region) -> String {
    // China regions live under their own DNS suffix.
    let suffix = if region.as_str().starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{suffix}")
}

fn parse_endpoint(url: &str) -> Result<reqwest::Url, ConfigError> {
    let invalid = |reason: &str| ConfigError::InvalidEndpoint {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if parsed.host_str().is_none() {
        return Err(invalid("it has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid("it must not have a query or fragment"));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_alone_decides_only_when_nothing_else_could() {
        let keys: &[(&str, &str)] = &[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_CONFIG_FILE", "/none/config"),
            ("AWS_SHARED_CREDENTIALS_FILE", "/none/credentials"),
            ("AWS_ENDPOINT_URL_CLOUDSHELL", "http://127.0.0.1:1"),
        ];
        let no_files = |_: &std::path::Path| false;
        let e = EnvAlone::of(None, None, env(keys), no_files).unwrap();
        assert_eq!(e.region.as_str(), "eu-west-1");
        assert_eq!(e.credentials.access_key_id(), "AK");
        assert_eq!(e.max_attempts, 3);
        assert_eq!(e.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        // A shared file, a profile, or a missing key or region: the chain.
        assert!(EnvAlone::of(None, None, env(keys), |p| p.ends_with("config")).is_none());
        assert!(EnvAlone::of(Some("work"), None, env(keys), no_files).is_none());
        let no_region: &[(&str, &str)] =
            &[("AWS_ACCESS_KEY_ID", "AK"), ("AWS_SECRET_ACCESS_KEY", "SK")];
        assert!(EnvAlone::of(None, None, env(no_region), no_files).is_none());
        let region = Region::new("us-east-2").unwrap();
        let flag = EnvAlone::of(None, Some(&region), env(no_region), no_files).unwrap();
        assert_eq!(flag.region.as_str(), "us-east-2");
        let profile: &[(&str, &str)] = &[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_PROFILE", "work"),
        ];
        assert!(EnvAlone::of(None, None, env(profile), no_files).is_none());
        let bad_attempts: &[(&str, &str)] = &[
            ("AWS_ACCESS_KEY_ID", "AK"),
            ("AWS_SECRET_ACCESS_KEY", "SK"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_MAX_ATTEMPTS", "zero"),
        ];
        assert!(EnvAlone::of(None, None, env(bad_attempts), no_files).is_none());
    }
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn service_specific_endpoint_wins() {
        let e = env(&[
            ("AWS_ENDPOINT_URL", "http://global"),
            ("AWS_ENDPOINT_URL_CLOUDSHELL", "http://specific"),
        ]);
        assert_eq!(
            configured_endpoint_from_env(e).as_deref(),
            Some("http://specific")
        );
        let e = env(&[("AWS_ENDPOINT_URL", "http://global")]);
        assert_eq!(
            configured_endpoint_from_env(e).as_deref(),
            Some("http://global")
        );
        let e = env(&[
            ("AWS_ENDPOINT_URL", "http://global"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(configured_endpoint_from_env(e), None);
    }

    #[test]
    fn ssm_calls_follow_an_overridden_endpoint() {
        let config = |endpoint: Option<&str>| {
            let mut b = Config::builder()
                .region(Region::new("eu-west-1").unwrap())
                .credentials(Credentials::new("AK", "SK", None, None, "test"));
            if let Some(e) = endpoint {
                b = b.endpoint_url(e);
            }
            b.build().unwrap()
        };
        assert_eq!(
            config(None).ssm_endpoint(),
            "https://ssm.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            config(Some("http://127.0.0.1:4566")).ssm_endpoint(),
            "http://127.0.0.1:4566"
        );
    }

    #[test]
    fn default_endpoint_per_partition() {
        let r = Region::new("eu-west-1").unwrap();
        assert_eq!(
            default_endpoint(&r).unwrap().as_str(),
            "https://cloudshell.eu-west-1.amazonaws.com/"
        );
        let r = Region::new("cn-north-1").unwrap();
        assert_eq!(
            default_endpoint(&r).unwrap().as_str(),
            "https://cloudshell.cn-north-1.amazonaws.com.cn/"
        );
    }

    #[test]
    fn bad_endpoints_are_refused() {
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("not a url").is_err());
        assert!(parse_endpoint("http://h/?q=1").is_err());
        assert!(parse_endpoint("http://127.0.0.1:4599").is_ok());
    }
}
