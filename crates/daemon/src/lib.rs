//! The store daemon: keeps an agent running in a CloudShell environment in
//! every configured region, stores files across them with the store crate,
//! repairs what is lost, and serves the JSON API.
//!
//! By concern, from the ground floor up (no module imports one above it):
//!
//! - [`config`], [`error`], [`state`]: [`DaemonConfig`], [`DaemonError`],
//!   and the [`State`] everything else shares;
//! - [`nodes`]: a node per region: its environment, the agent's bootstrap,
//!   the manager that keeps it serving, the shards' health;
//! - [`upkeep`]: repair, the scrubber, index backups, jobs;
//! - [`http`]: the JSON API, the web UI, metrics, live events;
//! - the S3-compatible endpoint is the `cloudshell-s3` crate, hosted here
//!   through its narrow port ([`cloudshell_s3::Host`], on [`State`]);
//! - [`Daemon`]: all of it started, or an index recovered.
//!
//! The daemon makes its CloudShell clients from a [`cloudshell::ClientSource`]:
//! AWS through the standard chain, or an endpoint such as an emulator that
//! the caller started (`cloudshell store serve --emulated` does that); the
//! daemon itself never knows which.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), cloudshell_daemon::DaemonError> {
//! use cloudshell::{ClientSource, Region};
//! use cloudshell_daemon::{Daemon, DaemonConfig};
//!
//! let config = DaemonConfig {
//!     regions: vec![Region::new("us-east-1")?, Region::new("eu-west-1")?],
//!     data_dir: "/tmp/store".into(),
//!     ..DaemonConfig::default()
//! };
//! let daemon = Daemon::start(config, ClientSource::aws(None, None)).await?;
//! println!("API at {}", daemon.url());
//! daemon.wait_ready(std::time::Duration::from_secs(120)).await?;
//! # Ok(())
//! # }
//! ```

pub mod config;
mod daemon;
pub mod error;
pub mod http;
pub mod nodes;
pub mod state;
pub mod upkeep;

pub use config::DaemonConfig;
pub use config::default_key_file;
pub use daemon::{Daemon, RecoverReport};
pub use error::DaemonError;
pub use state::{BackupStatus, State};
