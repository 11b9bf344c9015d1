//! Where each principal's CloudShell clients come from: a [`ClientSource`]
//! per principal name (AWS through a profile, or an endpoint with fixed
//! credentials such as an emulator's).

use cloudshell::ClientSource;

use crate::config::{ConfigError, DEFAULT_PRINCIPAL};

/// A [`ClientSource`] for each principal the daemon runs nodes of.
#[derive(Debug, Clone)]
pub struct Sources {
    by_name: Vec<(String, ClientSource)>,
}

impl Sources {
    /// Only the [`DEFAULT_PRINCIPAL`], through `source`.
    pub fn single(source: ClientSource) -> Self {
        Self {
            by_name: vec![(DEFAULT_PRINCIPAL.to_owned(), source)],
        }
    }

    /// No principal yet: add them with [`Sources::with`].
    pub fn none() -> Self {
        Self {
            by_name: Vec::new(),
        }
    }

    /// These sources and `name`'s (replacing any it had).
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, source: ClientSource) -> Self {
        let name = name.into();
        self.by_name.retain(|(n, _)| *n != name);
        self.by_name.push((name, source));
        self
    }

    /// The source of `principal`'s clients.
    pub fn get(&self, principal: &str) -> Result<&ClientSource, ConfigError> {
        self.by_name
            .iter()
            .find(|(n, _)| n == principal)
            .map(|(_, s)| s)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "no credentials for principal {principal:?}: name it with --principal \
                     (or in `principals` in the configuration file)"
                ))
            })
    }

    /// Every principal's name and source.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ClientSource)> {
        self.by_name.iter().map(|(n, s)| (n.as_str(), s))
    }
}

impl From<ClientSource> for Sources {
    fn from(source: ClientSource) -> Self {
        Self::single(source)
    }
}
