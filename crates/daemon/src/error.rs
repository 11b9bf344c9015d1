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
    #[error("network: {what}")]
    Net {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// A CloudShell client could not be made.
    #[error("cannot make a CloudShell client")]
    Client(#[from] cloudshell::ConfigError),
    /// The S3 endpoint's state.
    #[error("S3: {what}")]
    S3 {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        #[source]
        source: BoxError,
    },
    /// Not a region name.
    #[error(transparent)]
    Region(#[from] cloudshell::ValidationError),
    /// The agent binary cannot run where it would be sent.
    #[error("the agent binary {} cannot run in CloudShell: {why}; {hint}", path.display(), hint = crate::nodes::agent_image::BUILD_HINT)]
    AgentBinary {
        /// Where it was read from.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A node for that region exists already.
    #[error("{0} has a node already")]
    Exists(String),
    /// The control API would not serve a principal in a region (no such
    /// region, credentials refused, unreachable): no node was made.
    #[error("{principal} cannot use CloudShell in {region}: {why}")]
    Unusable {
        /// The principal.
        principal: String,
        /// The region.
        region: String,
        /// What the control API (or the way to it) said.
        why: String,
    },
    /// Not every node came up in time.
    #[error("not ready after {after:?}: {detail}")]
    NotReady {
        /// How long was waited.
        after: Duration,
        /// The nodes that are not connected, and why.
        detail: String,
    },
}

/// A source error of any of our crates' (or the standard library's) kind.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `DaemonError::Net` for `what`.
pub(crate) fn net<E: Into<BoxError>>(what: &'static str) -> impl FnOnce(E) -> DaemonError {
    move |e| DaemonError::Net {
        what,
        source: e.into(),
    }
}

/// `DaemonError::S3` for `what`.
pub(crate) fn s3<E: Into<BoxError>>(what: &'static str) -> impl FnOnce(E) -> DaemonError {
    move |e| DaemonError::S3 {
        what,
        source: e.into(),
    }
}

/// An error and its sources, `: `-separated: the whole story, for logs
/// and for answers a user reads.
pub fn with_sources(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}
