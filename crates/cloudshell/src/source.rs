//! Where clients come from: AWS through the standard credential chain, or
//! one endpoint with fixed credentials (an emulator). Programs that make
//! clients for many regions (the store daemon) take a [`ClientSource`], so
//! they never know which of the two they run against.

use crate::Client;
use crate::config::{Config, ConfigError, Credentials};
use crate::types::Region;

/// Makes a [`Client`] for any region.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientSource {
    /// AWS: credentials from the standard chain (environment, profile,
    /// SSO, instance role), the endpoint from the region unless overridden.
    Aws {
        /// A named profile instead of `AWS_PROFILE` or `default`.
        profile: Option<String>,
        /// An endpoint instead of the region's (`--endpoint-url`).
        endpoint_url: Option<String>,
    },
    /// One endpoint with fixed credentials, such as a local emulator.
    Endpoint {
        /// The endpoint's URL.
        url: String,
        /// The credentials every request is signed with.
        credentials: Credentials,
    },
}

impl ClientSource {
    /// AWS through the standard chain, at `endpoint_url` when given.
    pub fn aws(profile: Option<String>, endpoint_url: Option<String>) -> Self {
        Self::Aws {
            profile,
            endpoint_url,
        }
    }

    /// `url`, signing with this access key.
    pub fn endpoint(url: impl Into<String>, access_key_id: &str, secret_access_key: &str) -> Self {
        Self::Endpoint {
            url: url.into(),
            credentials: Credentials::new(
                access_key_id.to_owned(),
                secret_access_key.to_owned(),
                None,
                None,
                "cloudshell-endpoint",
            ),
        }
    }

    /// The configuration of a client for `region`; `None` takes the
    /// environment's or profile's region (an endpoint source needs one).
    pub async fn config(&self, region: Option<Region>) -> Result<Config, ConfigError> {
        match self {
            Self::Aws {
                profile,
                endpoint_url,
            } => {
                Config::load()
                    .profile(profile.clone())
                    .region(region)
                    .endpoint_url(endpoint_url.clone())
                    .load()
                    .await
            }
            Self::Endpoint { url, credentials } => {
                let mut builder = Config::builder()
                    .endpoint_url(url.clone())
                    .credentials(credentials.clone());
                if let Some(r) = region {
                    builder = builder.region(r);
                }
                builder.build()
            }
        }
    }

    /// A client for `region`.
    pub async fn client(&self, region: &Region) -> Result<Client, ConfigError> {
        Ok(Client::new(self.config(Some(region.clone())).await?))
    }
}
