//! Changing the store's key while the daemon runs: a new passphrase (the
//! old one given to confirm), or a new key file in place of the old. The
//! store rewraps every data key in one index transaction; the index backup
//! that follows deletes the generations sealed with the old key.
//!
//! A key file is changed through `KEYFILE.new`: the new key is written
//! there, the index switched to it, then it is renamed over the old file.
//! A daemon stopped between the switch and the rename finds the index
//! opening with `KEYFILE.new` at its next start (`open_key_file`) and
//! finishes the rename: the old key or the new one always opens the store.

use std::path::{Path, PathBuf};

use cloudshell_store::{KeyError, KeySource, NewKey, StoreError};

use crate::config::ConfigError;
use crate::error::{DaemonError, io};
use crate::state::State;

/// What a key change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyChanged {
    /// Data keys rewrapped.
    pub rewrapped: usize,
    /// The key file now in use, for a key file store.
    pub key_file: Option<PathBuf>,
}

/// Why a key change was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyChangeRefused {
    /// The old passphrase given is not the store's.
    #[error("the old passphrase is not this store's; nothing was changed")]
    WrongOld,
    /// The request does not fit the store (a passphrase for a key file
    /// store, an empty passphrase, an unencrypted store).
    #[error("{0}")]
    Invalid(String),
    /// The change itself failed; the old key still opens the store.
    #[error("the key was not changed: {0}")]
    Failed(#[from] DaemonError),
}

/// Where a key file's replacement is written first.
pub fn pending_key_file(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

impl State {
    /// Changes the passphrase from `old` to `new`.
    pub async fn change_passphrase(
        self: &std::sync::Arc<Self>,
        old: &str,
        new: &str,
    ) -> Result<KeyChanged, KeyChangeRefused> {
        if self.config.passphrase_env.is_none() {
            return Err(KeyChangeRefused::Invalid(
                "this store is opened with a key file (or no encryption), not a passphrase: \
                 change its key file instead"
                    .to_owned(),
            ));
        }
        if new.is_empty() {
            return Err(KeyChangeRefused::Invalid(
                "the new passphrase is empty; give one".to_owned(),
            ));
        }
        match self.store.check_key(&KeySource::Passphrase(old.to_owned())) {
            Ok(()) => {}
            Err(StoreError::Key(KeyError::WrongKey)) => return Err(KeyChangeRefused::WrongOld),
            Err(e) => return Err(DaemonError::from(e).into()),
        }
        let new = new.to_owned();
        let rewrapped = self
            .blocking_key_change(move |store| store.change_passphrase(&new, None))
            .await?;
        self.touch();
        Ok(KeyChanged {
            rewrapped,
            key_file: None,
        })
    }

    /// Replaces the store's key file with a new random key.
    pub async fn rotate_key_file(
        self: &std::sync::Arc<Self>,
    ) -> Result<KeyChanged, KeyChangeRefused> {
        if self.config.passphrase_env.is_some() || self.config.no_encryption {
            return Err(KeyChangeRefused::Invalid(
                "this store is not opened with a key file: change its passphrase instead"
                    .to_owned(),
            ));
        }
        let path = self
            .config
            .key_file
            .clone()
            .unwrap_or_else(|| crate::config::default_key_file(&self.config.data_dir));
        let pending = pending_key_file(&path);
        // Left by a change that stopped before the switch: the index still
        // opens with the key file in use, so this one is nobody's.
        match std::fs::remove_file(&pending) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io(format!("cannot remove {}", pending.display()))(e).into());
            }
        }
        cloudshell_store::MasterKey::generate_key_file(&pending)
            .map_err(|e| DaemonError::Store(e.into()))?;
        let new = pending.clone();
        let rewrapped = self
            .blocking_key_change(move |store| store.change_key(NewKey::KeyFile(&new)))
            .await?;
        finish_key_file(&pending, &path)?;
        self.touch();
        Ok(KeyChanged {
            rewrapped,
            key_file: Some(path),
        })
    }

    async fn blocking_key_change(
        self: &std::sync::Arc<Self>,
        change: impl FnOnce(&cloudshell_store::Store) -> Result<usize, StoreError> + Send + 'static,
    ) -> Result<usize, DaemonError> {
        // Argon2id and the rewrap run off the runtime.
        let state = self.clone();
        tokio::task::spawn_blocking(move || change(&state.store))
            .await
            .map_err(|e| DaemonError::Io {
                what: "the key change stopped".to_owned(),
                source: std::io::Error::other(e),
            })?
            .map_err(DaemonError::from)
    }
}

/// Renames the pending key file over the old one, durably.
fn finish_key_file(pending: &Path, path: &Path) -> Result<(), DaemonError> {
    std::fs::rename(pending, path).map_err(io(format!(
        "the index now opens with {}, but it could not be renamed to {} (rename it by hand)",
        pending.display(),
        path.display()
    )))?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The key source for a key file store at start: `path`, or, when the
/// index opens only with `path.new` (a key change stopped after the switch
/// and before the rename), that one, renamed into place.
pub(crate) fn open_key_file<T>(
    path: &Path,
    open: impl Fn(&KeySource) -> Result<T, StoreError>,
) -> Result<T, DaemonError> {
    match open(&KeySource::KeyFile(path.to_owned())) {
        Err(StoreError::Key(KeyError::WrongKey)) => {
            let pending = pending_key_file(path);
            if !pending.exists() {
                return Err(StoreError::Key(KeyError::WrongKey).into());
            }
            let opened = open(&KeySource::KeyFile(pending.clone())).map_err(|e| {
                ConfigError::Invalid(format!(
                    "neither {} nor {} opens this store ({e})",
                    path.display(),
                    pending.display()
                ))
            })?;
            tracing::warn!(
                key_file = %path.display(),
                "a key change stopped before its new key file was renamed into place; finishing it"
            );
            finish_key_file(&pending, path)?;
            Ok(opened)
        }
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudshell_store::{LocalDirStore, MasterKey, Node, Store, StoreSettings};

    fn open(dir: &Path, key: &KeySource) -> Result<Store, StoreError> {
        let nodes = (0..9)
            .map(|i| {
                let shards = LocalDirStore::open(dir.join(format!("n{i}")), 1 << 30).unwrap();
                Node::new(
                    format!("n{i}"),
                    format!("r{i}"),
                    std::sync::Arc::new(shards),
                )
            })
            .collect();
        Store::open(
            &dir.join("index.redb"),
            key,
            nodes,
            StoreSettings::default(),
        )
    }

    #[tokio::test]
    async fn a_key_file_change_stopped_before_the_rename_is_finished_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.key");
        MasterKey::generate_key_file(&path).unwrap();
        let store = open(dir.path(), &KeySource::KeyFile(path.clone())).unwrap();
        store
            .put("f", &b"kept across the change"[..])
            .await
            .unwrap();
        // The index switches to the new key; the daemon stops before the
        // rename.
        let pending = pending_key_file(&path);
        MasterKey::generate_key_file(&pending).unwrap();
        store.change_key(NewKey::KeyFile(&pending)).unwrap();
        drop(store);
        let old_bytes = std::fs::read(&path).unwrap();
        let new_bytes = std::fs::read(&pending).unwrap();
        let store = open_key_file(&path, |k| open(dir.path(), k)).unwrap();
        assert!(
            !pending.exists(),
            "the pending key file was renamed into place"
        );
        assert_eq!(std::fs::read(&path).unwrap(), new_bytes);
        assert_ne!(old_bytes, new_bytes);
        let mut out = Vec::new();
        store.get("f", &mut out).await.unwrap();
        assert_eq!(out, b"kept across the change");
        drop(store);
        // Without a pending file a wrong key is just wrong.
        std::fs::write(&path, &old_bytes).unwrap();
        let e = open_key_file(&path, |k| open(dir.path(), k))
            .unwrap_err()
            .to_string();
        assert!(e.contains("wrong passphrase or key file"), "{e}");
    }
}
