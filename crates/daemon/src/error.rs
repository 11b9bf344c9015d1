//! The daemon's error: why it could not start or answer. On the ground
//! floor: every module may return it.

use std::time::Duration;

/// Why the daemon could not start or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A file or socket of the daemon's.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The store (index, key).
    #[error(transparent)]
    Store(#[from] cloudshell_store::StoreError),
    /// The daemon's network identity or socket.
    #[error("network: {0}")]
    Net(String),
    /// A CloudShell client could not be made.
    #[error("cannot make a CloudShell client")]
    Client(#[from] cloudshell::ConfigError),
    /// The S3 endpoint's state.
    #[error("S3: {0}")]
    S3(String),
    /// Not a region name.
    #[error(transparent)]
    Region(#[from] cloudshell::ValidationError),
    /// A node for that region exists already.
    #[error("the region {0} has a node already")]
    Exists(String),
    /// Not every node came up in time.
    #[error("not ready after {after:?}: {detail}")]
    NotReady {
        /// How long was waited.
        after: Duration,
        /// The nodes that are not connected, and why.
        detail: String,
    },
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}
