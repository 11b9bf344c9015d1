//! A typed async client for the AWS CloudShell control API.
//!
//! CloudShell's API is undocumented; this crate speaks it as the service's
//! botocore model (shipped in `models/cloudshell/2019-03-01/service-2.json`)
//! describes: REST-JSON, `POST /<operationName>`, SigV4 with signing name
//! `cloudshell`. Its shape follows the AWS SDKs:
//!
//! - [`Config`] holds the region, credentials provider, endpoint, retry and
//!   timeout settings; [`Config::load`] resolves them like the AWS CLI does.
//! - [`Client`] has one method per operation; [`operation`] has one module per
//!   operation with its input, output and error kind.
//! - Every failure is an [`SdkError`] that tells "invalid input", "could not
//!   build", "timed out", "could not send", "bad response" and "service said
//!   no" apart, and exposes the AWS error code, message, status and request id.
//!
//! Requests are retried on throttling, 5xx and transport errors (3 attempts,
//! exponential backoff with full jitter), except that non-idempotent calls
//! (`CreateEnvironment`, `CreateSession`) are retried only when the failure
//! proves the service did not act on them.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use cloudshell::{Client, Config, Credentials, Region};
//!
//! let config = Config::builder()
//!     .region(Region::new("us-east-1")?)
//!     .endpoint_url("http://127.0.0.1:4599") // a local `cloudshell-emulator`
//!     .credentials(Credentials::new("AKIDEXAMPLE", "secret", None, None, "example"))
//!     .build()?;
//! let client = Client::new(config);
//! for env in client.describe_environments().await?.environments {
//!     println!("{}", env.environment_id);
//! }
//! # Ok(())
//! # }
//! ```

mod client;
pub mod config;
pub mod error;
pub mod operation;
pub mod presigned;
mod retry;
mod source;
pub mod types;

pub use client::Client;
pub use config::{Config, ConfigError, Credentials, TimeoutConfig};
pub use error::{ErrorMetadata, SdkError, ServiceError};
pub use retry::RetryConfig;
pub use source::ClientSource;
pub use types::{
    CLOUDSHELL_REGIONS, EnvironmentId, EnvironmentStatus, Region, TabId, ValidationError, VpcConfig,
};
