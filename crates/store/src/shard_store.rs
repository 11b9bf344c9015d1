//! Where shards live: the [`ShardStore`] trait, and [`LocalDirStore`], a
//! directory on this machine (for tests, and for agents).

use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::format::{HEADER_LEN, ShardHeader, ShardKey};

/// What a shard store says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreStats {
    /// Bytes of shards held.
    pub used: u64,
    /// Bytes it may hold.
    pub quota: u64,
    /// Shards held.
    pub shards: u64,
    /// Seconds since it started.
    pub uptime_secs: u64,
    /// Bytes free on the disk that holds the shards (statvfs: what an
    /// unprivileged writer may still use), whatever the quota says.
    pub disk_free: u64,
}

impl StoreStats {
    /// Bytes it can still take: the smaller of what the quota leaves and
    /// what the disk has free.
    pub fn room(&self) -> u64 {
        self.quota.saturating_sub(self.used).min(self.disk_free)
    }
}

/// Why a shard operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    /// No such shard.
    #[error("shard {0} not found")]
    NotFound(String),
    /// Writing it would pass the store's quota; nothing was written.
    #[error("shard store is full: {used} of {quota} bytes used, {needed} more needed")]
    QuotaExceeded {
        /// Bytes in use.
        used: u64,
        /// The quota.
        quota: u64,
        /// Bytes the write needed.
        needed: u64,
    },
    /// A remote store refused the write as past its quota or its disk
    /// full (the agent's own words); nothing was written.
    #[error("{0}")]
    Full(String),
    /// The disk holding the shards is full (ENOSPC, or the user's disk
    /// quota, EDQUOT); nothing was written.
    #[error("the disk holding the shards is full: {free} bytes free")]
    DiskFull {
        /// Bytes free on it.
        free: u64,
    },
    /// The blob is not a shard, or not the one named.
    #[error("refused a malformed shard: {0}")]
    Malformed(String),
    /// The node cannot be reached or failed.
    #[error("shard store unavailable: {0}")]
    Unavailable(String),
    /// Local input or output failed.
    #[error("shard store i/o")]
    Io(#[from] std::io::Error),
}

impl ShardError {
    /// The store is out of room (here or on a remote agent).
    pub fn is_full(&self) -> bool {
        matches!(
            self,
            Self::QuotaExceeded { .. } | Self::Full(_) | Self::DiskFull { .. }
        )
    }
}

/// A place that holds shards: a local directory, or a remote agent.
/// Blobs are whole shards, header included.
pub trait ShardStore: Send + Sync {
    /// Stores a shard durably (written, synced and renamed into place).
    fn put(&self, key: ShardKey, blob: Bytes) -> BoxFuture<'_, Result<(), ShardError>>;
    /// Reads a shard.
    fn get(&self, key: ShardKey) -> BoxFuture<'_, Result<Bytes, ShardError>>;
    /// Removes a shard; removing a missing one is not an error.
    fn delete(&self, key: ShardKey) -> BoxFuture<'_, Result<(), ShardError>>;
    /// Shards in key order, after `after`, at most `limit`.
    fn list(
        &self,
        after: Option<ShardKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardKey>, ShardError>>;
    /// The BLAKE3 of a shard, computed where it lives.
    fn verify(&self, key: ShardKey) -> BoxFuture<'_, Result<[u8; 32], ShardError>>;
    /// Usage and quota.
    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, ShardError>>;
}

/// Shards as files in a directory: `ROOT/<first two hex digits>/<key name>`.
/// Usage (bytes and shards) is counted once at open and kept up to date, so
/// neither the quota check nor [`ShardStore::stats`] (asked on every put, for
/// placement) walks the directory.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    inner: std::sync::Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    quota: u64,
    started: Instant,
    usage: std::sync::Mutex<Usage>,
    /// Directory fsyncs, shared by concurrent puts.
    dir_syncs: crate::dir_sync::DirSyncs,
}

/// What a [`LocalDirStore`] holds.
#[derive(Debug, Clone, Copy)]
struct Usage {
    bytes: u64,
    shards: u64,
}

impl LocalDirStore {
    /// A store in `root` (created if needed) that holds at most `quota` bytes.
    pub fn open(root: impl Into<PathBuf>, quota: u64) -> Result<Self, ShardError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        remove_leftovers(&root)?;
        let all = walk(&root)?;
        let usage = Usage {
            bytes: all.iter().map(|(_, n)| n).sum(),
            shards: all.len() as u64,
        };
        Ok(Self {
            inner: std::sync::Arc::new(Inner {
                root,
                quota,
                started: Instant::now(),
                usage: std::sync::Mutex::new(usage),
                dir_syncs: crate::dir_sync::DirSyncs::default(),
            }),
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Where a shard's file is.
    pub fn path_of(&self, key: &ShardKey) -> PathBuf {
        let name = key.name();
        self.inner.root.join(&name[..2]).join(name)
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        // A poisoned counter is still a number.
        self.inner
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn put_blocking(&self, key: ShardKey, blob: &[u8]) -> Result<(), ShardError> {
        let header = ShardHeader::decode(blob).map_err(|e| ShardError::Malformed(e.to_string()))?;
        if header.key != key || blob.len() != HEADER_LEN + header.shard_len as usize {
            return Err(ShardError::Malformed(format!(
                "the blob is not shard {}",
                key.name()
            )));
        }
        let path = self.path_of(&key);
        let old = std::fs::metadata(&path).map_or(0, |m| m.len());
        let new = blob.len() as u64;
        {
            // Reserve the space before writing, so concurrent writes cannot
            // pass the quota together.
            let mut usage = self.usage();
            let after = (usage.bytes - old.min(usage.bytes)) + new;
            if after > self.inner.quota {
                return Err(ShardError::QuotaExceeded {
                    used: usage.bytes,
                    quota: self.inner.quota,
                    needed: new.saturating_sub(old),
                });
            }
            usage.bytes = after;
        }
        let dir = path.parent().unwrap_or(&self.inner.root).to_path_buf();
        let temp = dir.join(format!(
            ".{}.{:016x}.tmp",
            key.name(),
            rand::random::<u64>()
        ));
        let written = (|| {
            use std::io::Write as _;
            if !dir.is_dir() {
                // A new directory's own entry must be on disk too.
                std::fs::create_dir_all(&dir)?;
                self.inner.dir_syncs.sync(&self.inner.root)?;
            }
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(blob)?;
            f.sync_all()?;
            std::fs::rename(&temp, &path)?;
            // Acknowledged only once the rename is on disk; writers into
            // one directory share the fsync that makes it so.
            self.inner.dir_syncs.sync(&dir)
        })();
        let mut usage = self.usage();
        match written {
            Ok(()) => {
                // A shard file is never empty (it has a header): no old
                // file means one more shard.
                if old == 0 {
                    usage.shards += 1;
                }
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                usage.bytes = (usage.bytes + old).saturating_sub(new);
                if is_out_of_space(&e) {
                    Err(ShardError::DiskFull {
                        free: disk_free(&self.inner.root),
                    })
                } else {
                    Err(e.into())
                }
            }
        }
    }
}

/// Whether a write failed for want of space: the disk is full (ENOSPC) or
/// the user's disk quota is reached (EDQUOT).
fn is_out_of_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Bytes an unprivileged writer may still use on the filesystem of `path`;
/// unknown counts as unlimited (the quota then decides).
pub fn disk_free(path: &Path) -> u64 {
    match rustix::fs::statvfs(path) {
        Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
        Err(_) => u64::MAX,
    }
}

/// Parses a quota: `900M`, `1G`, `64K` (powers of 1024) or a number of
/// bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Every file in the shard directories (`ROOT/xx/*`).
fn files_in(root: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(root)? {
        let dir = dir?;
        if dir.file_type()?.is_dir() {
            for f in std::fs::read_dir(dir.path())? {
                out.push(f?);
            }
        }
    }
    Ok(out)
}

/// Removes the temporary files of writes that a crash cut short: none of
/// them was acknowledged, and nothing else would ever remove them. Only at
/// open, when no write of this store is under way.
fn remove_leftovers(root: &Path) -> std::io::Result<()> {
    for f in files_in(root)? {
        let name = f.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            std::fs::remove_file(f.path())?;
        }
    }
    Ok(())
}

fn walk(root: &Path) -> std::io::Result<Vec<(ShardKey, u64)>> {
    let mut out = Vec::new();
    for f in files_in(root)? {
        if let Some(key) = f.file_name().to_str().and_then(ShardKey::from_name) {
            out.push((key, f.metadata()?.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// Up to `limit` keys after `after`, in order, reading only the
/// directories they can be in: a key's directory is the first two hex
/// digits of its name, and names sort as keys do, so the directories from
/// `after`'s on hold the next keys in order. (Walking every directory for
/// each page made listing a node of n shards cost n squared over the page
/// size.) A file in a directory its name does not start with is not a
/// shard of this layout and is not listed.
fn list_after(
    root: &Path,
    after: Option<ShardKey>,
    limit: usize,
) -> std::io::Result<Vec<ShardKey>> {
    let first = after.map(|a| a.name()[..2].to_owned());
    let mut dirs: Vec<String> = Vec::new();
    for dir in std::fs::read_dir(root)? {
        let dir = dir?;
        let Ok(name) = dir.file_name().into_string() else {
            continue;
        };
        if name.len() == 2 && first.as_ref().is_none_or(|f| name >= *f) && dir.file_type()?.is_dir()
        {
            dirs.push(name);
        }
    }
    dirs.sort();
    let mut out = Vec::new();
    for dir in dirs {
        let mut keys: Vec<ShardKey> = Vec::new();
        for f in std::fs::read_dir(root.join(&dir))? {
            let file = f?.file_name();
            let Some(name) = file.to_str() else {
                continue;
            };
            if let Some(key) = ShardKey::from_name(name)
                && name.starts_with(&dir)
                && after.is_none_or(|a| key > a)
            {
                keys.push(key);
            }
        }
        keys.sort_unstable();
        out.extend(keys);
        if out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ShardError> + Send + 'static,
) -> BoxFuture<'static, Result<T, ShardError>> {
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ShardError::Unavailable(e.to_string()))?
    })
}

impl ShardStore for LocalDirStore {
    fn put(&self, key: ShardKey, blob: Bytes) -> BoxFuture<'_, Result<(), ShardError>> {
        let this = self.clone();
        blocking(move || this.put_blocking(key, &blob))
    }

    fn get(&self, key: ShardKey) -> BoxFuture<'_, Result<Bytes, ShardError>> {
        let path = self.path_of(&key);
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(Bytes::from(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ShardError::NotFound(key.name()))
            }
            Err(e) => Err(e.into()),
        })
    }

    fn delete(&self, key: ShardKey) -> BoxFuture<'_, Result<(), ShardError>> {
        let this = self.clone();
        blocking(move || {
            let path = this.path_of(&key);
            let len = std::fs::metadata(&path).map_or(0, |m| m.len());
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    let mut usage = this.usage();
                    usage.bytes = usage.bytes.saturating_sub(len);
                    usage.shards = usage.shards.saturating_sub(1);
                    Ok(())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn list(
        &self,
        after: Option<ShardKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardKey>, ShardError>> {
        let root = self.inner.root.clone();
        blocking(move || Ok(list_after(&root, after, limit)?))
    }

    fn verify(&self, key: ShardKey) -> BoxFuture<'_, Result<[u8; 32], ShardError>> {
        let path = self.path_of(&key);
        blocking(move || match std::fs::read(&path) {
            Ok(b) => Ok(*blake3::hash(&b).as_bytes()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(ShardError::NotFound(key.name()))
            }
            Err(e) => Err(e.into()),
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, ShardError>> {
        let usage = *self.usage();
        let root = self.inner.root.clone();
        let quota = self.inner.quota;
        let uptime_secs = self.inner.started.elapsed().as_secs();
        blocking(move || {
            Ok(StoreStats {
                used: usage.bytes,
                quota,
                shards: usage.shards,
                uptime_secs,
                disk_free: disk_free(&root),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{FileId, shard_len};

    fn blob(chunk: u64, index: u8, len: usize) -> (ShardKey, Bytes) {
        let key = ShardKey {
            file_id: FileId([4; 16]),
            chunk,
            index,
        };
        let shard = shard_len(len, 6);
        let header = ShardHeader {
            flags: 0,
            k: 6,
            m: 3,
            key,
            payload_len: len as u32,
            shard_len: shard as u32,
        };
        let mut b = header.encode().to_vec();
        b.resize(HEADER_LEN + shard, index);
        (key, Bytes::from(b))
    }

    #[tokio::test]
    async fn listing_in_pages_gives_every_shard_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path(), 1 << 30).unwrap();
        // Files whose ids start with several bytes: their shards sit in
        // several directories.
        let mut keys = Vec::new();
        for first in [0x00u8, 0x07, 0x7f, 0xa0, 0xff] {
            for chunk in 0..3 {
                let (mut key, blob) = blob(chunk, 1, 10);
                key.file_id = FileId([first; 16]);
                let mut b = blob.to_vec();
                b[..HEADER_LEN].copy_from_slice(
                    &ShardHeader::decode(&blob)
                        .map(|h| ShardHeader { key, ..h })
                        .unwrap()
                        .encode(),
                );
                store.put(key, Bytes::from(b)).await.unwrap();
                keys.push(key);
            }
        }
        keys.sort();
        // Not shards of this layout: a stray file, one in the wrong place.
        std::fs::write(dir.path().join("a0").join("notes.txt"), b"x").unwrap();
        let misplaced = ShardKey {
            file_id: FileId([0x11; 16]),
            chunk: 0,
            index: 0,
        };
        std::fs::write(dir.path().join("a0").join(misplaced.name()), b"x").unwrap();
        for page in [1, 2, 4, 100] {
            let mut listed: Vec<ShardKey> = Vec::new();
            let mut after = None;
            loop {
                let got = store.list(after, page).await.unwrap();
                assert!(got.len() <= page);
                listed.extend(&got);
                if got.len() < page {
                    break;
                }
                after = got.last().copied();
            }
            assert_eq!(listed, keys, "pages of {page}");
        }
    }

    #[tokio::test]
    async fn put_get_list_verify_delete_and_stats() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path(), 1 << 20).unwrap();
        let mut keys = Vec::new();
        for i in 0..5u8 {
            let (key, b) = blob(u64::from(i), i, 600);
            store.put(key, b.clone()).await.unwrap();
            assert_eq!(store.get(key).await.unwrap(), b);
            assert_eq!(
                store.verify(key).await.unwrap(),
                *blake3::hash(&b).as_bytes()
            );
            keys.push(key);
        }
        let first = store.list(None, 2).await.unwrap();
        assert_eq!(first, keys[..2]);
        let rest = store.list(Some(first[1]), 10).await.unwrap();
        assert_eq!(rest, keys[2..]);
        let stats = store.stats().await.unwrap();
        assert_eq!(
            (stats.shards, stats.used),
            (5, 5 * (HEADER_LEN as u64 + 100))
        );
        store.delete(keys[0]).await.unwrap();
        store.delete(keys[0]).await.unwrap();
        assert!(matches!(
            store.get(keys[0]).await,
            Err(ShardError::NotFound(_))
        ));
        assert_eq!(
            store.stats().await.unwrap().used,
            4 * (HEADER_LEN as u64 + 100)
        );
        // Usage survives a restart.
        let again = LocalDirStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(
            again.stats().await.unwrap().used,
            4 * (HEADER_LEN as u64 + 100)
        );
    }

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("900M"), Some(900 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size(" 64K "), Some(64 << 10));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("-1M"), None);
        assert_eq!(parse_size("99999999999999999G"), None);
    }

    #[tokio::test]
    async fn a_crashed_write_leaves_nothing_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path(), 1 << 20).unwrap();
        let (key, b) = blob(1, 0, 600);
        store.put(key, b.clone()).await.unwrap();
        // What a write killed between create and rename leaves behind.
        let shard_dir = store.path_of(&key).parent().unwrap().to_path_buf();
        let leftover = shard_dir.join(format!(".{}.00000000deadbeef.tmp", blob(2, 0, 0).0.name()));
        std::fs::write(&leftover, vec![7u8; 4000]).unwrap();
        let again = LocalDirStore::open(dir.path(), 1 << 20).unwrap();
        assert!(!leftover.exists());
        let stats = again.stats().await.unwrap();
        assert_eq!((stats.shards, stats.used), (1, b.len() as u64));
        assert_eq!(again.get(key).await.unwrap(), b);
    }

    #[tokio::test]
    async fn a_write_past_the_quota_or_a_malformed_blob_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirStore::open(dir.path(), 1000).unwrap();
        let (key, b) = blob(0, 0, 6000);
        match store.put(key, b).await {
            Err(ShardError::QuotaExceeded { quota: 1000, .. }) => {}
            other => panic!("expected a quota error, got {other:?}"),
        }
        assert!(store.list(None, 10).await.unwrap().is_empty());
        // No temporary file either.
        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
            .count();
        assert_eq!(files, 0);
        let (key, b) = blob(0, 0, 60);
        let wrong = ShardKey { index: 1, ..key };
        assert!(matches!(
            store.put(wrong, b.clone()).await,
            Err(ShardError::Malformed(_))
        ));
        let short = b.slice(..HEADER_LEN + 3);
        assert!(matches!(
            store.put(key, short).await,
            Err(ShardError::Malformed(_))
        ));
        assert_eq!(store.stats().await.unwrap().used, 0);
    }
}
