//! Where each principal's CloudShell clients come from: a [`ClientSource`]
//! per principal name (AWS through a profile, or an endpoint with fixed
//! credentials such as an emulator's), and how to make one for a principal
//! added while the daemon runs.

use std::sync::{Arc, PoisonError, RwLock};

use cloudshell::ClientSource;

use crate::config::{ConfigError, DEFAULT_PRINCIPAL};

/// Makes the source of a principal the daemon was not started with.
pub type SourceMaker = Arc<dyn Fn(&str) -> Result<ClientSource, String> + Send + Sync>;

/// A [`ClientSource`] for each principal the daemon runs nodes of. Clones
/// share one list: a principal added through one is known to all.
#[derive(Clone)]
pub struct Sources {
    by_name: Arc<RwLock<Vec<(String, ClientSource)>>>,
    maker: Option<SourceMaker>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("principals", &self.names())
            .field("maker", &self.maker.is_some())
            .finish()
    }
}

impl Sources {
    /// Only the [`DEFAULT_PRINCIPAL`], through `source`.
    pub fn single(source: ClientSource) -> Self {
        Self::none().with(DEFAULT_PRINCIPAL, source)
    }

    /// No principal yet: add them with [`Sources::with`].
    pub fn none() -> Self {
        Self {
            by_name: Arc::new(RwLock::new(Vec::new())),
            maker: None,
        }
    }

    /// These sources and `name`'s (replacing any it had).
    #[must_use]
    pub fn with(self, name: impl Into<String>, source: ClientSource) -> Self {
        self.insert(name.into(), source);
        self
    }

    /// These sources, making those of other principals with `maker` when
    /// asked for them (a principal added while running, or at a start
    /// after one was).
    #[must_use]
    pub fn making(mut self, maker: SourceMaker) -> Self {
        self.maker = Some(maker);
        self
    }

    fn insert(&self, name: String, source: ClientSource) {
        let mut all = self.by_name.write().unwrap_or_else(PoisonError::into_inner);
        all.retain(|(n, _)| *n != name);
        all.push((name, source));
    }

    /// The source of `principal`'s clients, made now if it has none and
    /// these sources can make one.
    pub fn get(&self, principal: &str) -> Result<ClientSource, ConfigError> {
        let known = self
            .by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(n, _)| n == principal)
            .map(|(_, s)| s.clone());
        if let Some(s) = known {
            return Ok(s);
        }
        let Some(maker) = &self.maker else {
            return Err(ConfigError::Invalid(format!(
                "no credentials for principal {principal:?}: name it with --principal (or in \
                 `principals` in the configuration file)"
            )));
        };
        let source = maker(principal).map_err(|e| {
            ConfigError::Invalid(format!(
                "cannot make credentials for principal {principal:?}: {e}"
            ))
        })?;
        self.insert(principal.to_owned(), source.clone());
        Ok(source)
    }

    /// The principals with a source now.
    pub fn names(&self) -> Vec<String> {
        self.by_name
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    }
}

impl From<ClientSource> for Sources {
    fn from(source: ClientSource) -> Self {
        Self::single(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_principal_is_found_made_or_named_as_missing() {
        let plain = Sources::single(ClientSource::endpoint("http://127.0.0.1:9", "AK", "SK"));
        assert!(plain.get(DEFAULT_PRINCIPAL).is_ok());
        let e = plain.get("work").unwrap_err().to_string();
        assert!(e.contains("--principal"), "{e}");
        let made = plain.clone().making(Arc::new(|name: &str| {
            if name == "nope" {
                Err("no such profile".to_owned())
            } else {
                Ok(ClientSource::aws(Some(name.to_owned()), None))
            }
        }));
        assert!(made.get("work").is_ok());
        assert!(made.names().contains(&"work".to_owned()));
        // Clones share what was made.
        assert!(plain.names().contains(&"work".to_owned()));
        let e = made.get("nope").unwrap_err().to_string();
        assert!(e.contains("no such profile"), "{e}");
    }
}
