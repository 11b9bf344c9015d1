//! Writing through an open handle: every write lands in a local staging
//! file (unnamed, so nothing is left behind), and the whole file is
//! stored as one new version when the handle is flushed (at `close`) or
//! synced. Until then the store keeps serving the previous version, and a
//! store that fails the write leaves that version, never half a file.

use std::fs::File;
use std::io::{self, Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cloudshell_store_api::{Client, ClientError, Stored};
use futures_util::TryStreamExt as _;

/// Why a write handle could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The daemon refused or could not be reached.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The staging file failed (a full local disk, say).
    #[error("the staging file failed")]
    Local(#[from] io::Error),
}

/// One open handle's writing.
#[derive(Debug)]
pub struct Writer {
    staging: File,
    /// The stored file whose bytes the staging file starts from, while
    /// they are not fetched: a handle that truncates, or only writes the
    /// whole file over, never fetches them.
    base: Option<String>,
    /// Written since last stored.
    dirty: bool,
    /// Stored at least once through this handle.
    stored: bool,
    /// The modification time a program set, stored with the file.
    modified: Option<i64>,
    /// The processes that wrote through this handle (their thread group
    /// ids): only their `close` stores the file (see [`Writer::wrote_from`]).
    writers: Vec<u32>,
    /// The staging file's length, read without the handle's lock
    /// (`stat` of a file being written).
    len: Arc<AtomicU64>,
}

impl Writer {
    /// A handle on a new or truncated file (`base` None: empty, and a
    /// change already: closing it stores an empty file), or on the stored
    /// file `base` (its bytes fetched when first needed).
    pub fn new(staging_dir: &Path, base: Option<(String, u64)>) -> io::Result<Self> {
        let staging = tempfile::tempfile_in(staging_dir)?;
        let (base, len, dirty) = match base {
            Some((name, size)) => (Some(name), size, false),
            None => (None, 0, true),
        };
        Ok(Self {
            staging,
            base,
            dirty,
            stored: false,
            modified: None,
            writers: Vec::new(),
            len: Arc::new(AtomicU64::new(len)),
        })
    }

    /// The length, shared with whoever shows the file's size.
    pub fn len_handle(&self) -> Arc<AtomicU64> {
        self.len.clone()
    }

    /// Whether this handle stored the file at least once.
    pub fn stored(&self) -> bool {
        self.stored
    }

    /// Records that process `tgid` opened or wrote through this handle.
    pub fn wrote(&mut self, tgid: u32) {
        if !self.writers.contains(&tgid) {
            self.writers.push(tgid);
        }
    }

    /// Whether process `tgid` wrote through this handle. Every process
    /// holding a descriptor flushes it when it closes it, and a child
    /// forked to run another program closes its copy at `exec`: storing
    /// then would store half a file. The writer's own `close` stores it
    /// (and says if that failed); anything left is stored at release.
    pub fn wrote_from(&self, tgid: u32) -> bool {
        self.writers.contains(&tgid)
    }

    /// Drops the writes not stored (a store of them failed, and the
    /// program was told).
    pub fn give_up(&mut self) {
        self.dirty = false;
    }

    /// Sets the modification time the next store keeps.
    pub fn set_modified(&mut self, secs: i64) {
        self.modified = Some(secs);
    }

    /// Whether there are writes not stored yet.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Fetches the stored bytes the writes go over, once.
    async fn fetch_base(&mut self, client: &Client) -> Result<(), WriteError> {
        let Some(name) = self.base.clone() else {
            return Ok(());
        };
        let download = client.get(&name, None).await?;
        let mut body = download.body;
        let mut at = 0u64;
        while let Some(piece) = body.try_next().await? {
            self.staging.write_all_at(&piece, at)?;
            at += piece.len() as u64;
        }
        self.staging.set_len(at)?;
        self.len.store(at, Ordering::Release);
        self.base = None;
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub async fn write(
        &mut self,
        client: &Client,
        offset: u64,
        data: &[u8],
    ) -> Result<(), WriteError> {
        self.fetch_base(client).await?;
        self.staging.write_all_at(data, offset)?;
        let end = offset + data.len() as u64;
        self.len.fetch_max(end, Ordering::AcqRel);
        self.dirty = true;
        // Written after a time was set: modified now, as on any disk.
        self.modified = None;
        Ok(())
    }

    /// Reads what the handle holds now (written or not).
    pub async fn read(
        &mut self,
        client: &Client,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, WriteError> {
        self.fetch_base(client).await?;
        let len = self.len.load(Ordering::Acquire);
        let end = (offset + u64::from(size)).min(len);
        let mut buf = vec![0; usize::try_from(end.saturating_sub(offset)).unwrap_or(0)];
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .staging
                .read_at(&mut buf[filled..], offset + filled as u64)?
            {
                0 => break,
                n => filled += n,
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Cuts or extends (with zeros) the file to `size`.
    pub async fn truncate(&mut self, client: &Client, size: u64) -> Result<(), WriteError> {
        if size == 0 {
            self.base = None;
        } else {
            self.fetch_base(client).await?;
        }
        self.staging.set_len(size)?;
        self.len.store(size, Ordering::Release);
        self.dirty = true;
        self.modified = None;
        Ok(())
    }

    /// Stores what the handle holds as `name`'s new version, if anything
    /// changed since it was last stored.
    pub async fn store(
        &mut self,
        client: &Client,
        name: &str,
    ) -> Result<Option<Stored>, WriteError> {
        if !self.dirty {
            return Ok(None);
        }
        self.fetch_base(client).await?;
        let len = self.len.load(Ordering::Acquire);
        // The handle writes and reads at positions, never through the
        // cursor a clone shares: the upload may take the cursor.
        let mut file = self.staging.try_clone()?;
        file.seek(SeekFrom::Start(0))?;
        let file = tokio::io::AsyncReadExt::take(tokio::fs::File::from_std(file), len);
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let stored = client
            .put_modified(name, Some(len), body, self.modified)
            .await?;
        self.dirty = false;
        self.stored = true;
        Ok(Some(stored))
    }
}
