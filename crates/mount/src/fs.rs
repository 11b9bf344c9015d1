//! The FUSE filesystem: kernel requests turned into calls to the daemon's
//! API. Requests that move file data (open, read, flush, fsync, release)
//! are answered from tasks on the async runtime, so one slow transfer
//! holds up nothing else; the rest are short and answered in place.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cloudshell_store_api::Client;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, LockOwner, OpenAccMode,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::sync::Mutex as AsyncMutex;
use tokio_util::task::TaskTracker;

use crate::errors::{errno, local, with_sources};
use crate::reader::Reader;
use crate::tree::{self, FileMeta, Kind, Tree};
use crate::writer::{WriteError, Writer};

/// How long the kernel may keep a name or attributes, and how old a
/// listing may be before a lookup asks the daemon again: what other
/// writers (S3 clients, other mounts) changed shows within this.
const TTL: Duration = Duration::from_secs(1);

/// Longest name segment (the usual `NAME_MAX`).
const NAME_MAX: usize = 255;

/// How the mount behaves.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where writes are staged until stored.
    pub staging: PathBuf,
    /// Refuse every change (EROFS).
    pub read_only: bool,
    /// Owner of everything shown.
    pub uid: u32,
    /// Group of everything shown.
    pub gid: u32,
}

#[derive(Clone)]
enum Handle {
    Read(Arc<AsyncMutex<Reader>>),
    Write {
        ino: u64,
        len: Arc<AtomicU64>,
        writer: Arc<AsyncMutex<Writer>>,
    },
    Dir(Arc<Vec<(u64, FileType, String)>>),
}

struct Inner {
    client: Client,
    runtime: tokio::runtime::Handle,
    settings: Settings,
    tree: Mutex<Tree>,
    /// When the tree was last listed; held while a listing is under way so
    /// that lookups arriving meanwhile wait for it rather than list again.
    listed: AsyncMutex<Option<Instant>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    mounted_at: SystemTime,
    /// Tasks answering requests: waited for before the mount returns.
    tasks: TaskTracker,
}

/// The store as a FUSE filesystem.
pub struct StoreFs {
    inner: Arc<Inner>,
}

impl StoreFs {
    /// A filesystem of the daemon `client` talks to, whose async work
    /// runs on `runtime`.
    pub fn new(client: Client, runtime: tokio::runtime::Handle, settings: Settings) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                runtime,
                settings,
                tree: Mutex::new(Tree::new()),
                listed: AsyncMutex::new(None),
                handles: Mutex::new(HashMap::new()),
                next_fh: AtomicU64::new(1),
                mounted_at: SystemTime::now(),
                tasks: TaskTracker::new(),
            }),
        }
    }

    /// The tasks answering requests.
    pub fn tasks(&self) -> TaskTracker {
        self.inner.tasks.clone()
    }

    /// Lists the store once (before mounting: a daemon that does not
    /// answer is better said at once than as EIO on the first `ls`).
    pub async fn list(&self) -> Result<(), cloudshell_store_api::ClientError> {
        self.inner.refresh(true).await
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding it leaves plain data, still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn time_of(secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The process (thread group) a request's thread belongs to: FUSE says
/// the thread.
fn process_of(thread: u32) -> u32 {
    std::fs::read_to_string(format!("/proc/{thread}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(thread)
}

/// A name the store can hold as one segment, or why not.
fn segment(name: &OsStr) -> Result<&str, Errno> {
    let name = name.to_str().ok_or(Errno::EINVAL)?;
    if name.len() > NAME_MAX {
        return Err(Errno::from_i32(libc::ENAMETOOLONG));
    }
    // The daemon refuses these in names (a backslash reads as a separator
    // on Windows; control characters break listings).
    if name.contains('\\') || name.chars().any(char::is_control) {
        tracing::warn!("{name:?} cannot be stored: names hold no backslash or control characters");
        return Err(Errno::EINVAL);
    }
    Ok(name)
}

impl Inner {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn_on(task, &self.runtime);
    }

    /// Lists the store again if the listing is older than [`TTL`] (or
    /// `now`). A failed listing keeps the last one (logged).
    async fn refresh(&self, now: bool) -> Result<(), cloudshell_store_api::ClientError> {
        let mut listed = self.listed.lock().await;
        if !now && listed.is_some_and(|at| at.elapsed() < TTL) {
            return Ok(());
        }
        let generation = lock(&self.tree).generation();
        let files = self.client.file_names().await?;
        let applied = lock(&self.tree).apply_listing(
            generation,
            files.files.into_iter().map(|f| {
                (
                    f.file.name,
                    FileMeta {
                        size: f.file.size,
                        modified_secs: f.file.modified.unwrap_or(f.file.created),
                    },
                )
            }),
        );
        // A listing that a change here overtook is dropped: the next
        // lookup lists again.
        *listed = applied.then(Instant::now);
        Ok(())
    }

    fn refresh_blocking(&self) {
        if let Err(e) = self.runtime.block_on(self.refresh(false)) {
            tracing::warn!(
                "listing the store failed, showing the last listing: {}",
                with_sources(&e)
            );
        }
    }

    fn path(&self, ino: INodeNo) -> Result<String, Errno> {
        lock(&self.tree)
            .path(ino.0)
            .map(str::to_owned)
            .ok_or(Errno::ENOENT)
    }

    /// The size of a file open for writing here (what it will be stored
    /// with), if it is.
    fn written_len(&self, ino: u64) -> Option<u64> {
        lock(&self.handles).values().find_map(|h| match h {
            Handle::Write { ino: i, len, .. } if *i == ino => Some(len.load(Ordering::Acquire)),
            _ => None,
        })
    }

    fn writable(&self, path: &str) -> Result<(), Errno> {
        if self.settings.read_only {
            return Err(Errno::EROFS);
        }
        if tree::is_read_only(path) {
            tracing::warn!(
                "{path:?} is under {}, which only the S3 endpoint writes: use an S3 client",
                tree::READ_ONLY
            );
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    fn attr(&self, ino: u64, path: &str, kind: Kind) -> FileAttr {
        let read_only = self.settings.read_only || tree::is_read_only(path);
        let (kind, size, mtime, perm, nlink) = match kind {
            Kind::Dir => (
                FileType::Directory,
                0,
                self.mounted_at,
                if read_only { 0o555 } else { 0o755 },
                2,
            ),
            Kind::File(meta) => (
                FileType::RegularFile,
                self.written_len(ino).unwrap_or(meta.size),
                time_of(meta.modified_secs),
                if read_only { 0o444 } else { 0o644 },
                1,
            ),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink,
            uid: self.settings.uid,
            gid: self.settings.gid,
            rdev: 0,
            blksize: 1 << 20,
            flags: 0,
        }
    }

    /// The entry of `path`, if it exists.
    fn entry(&self, path: &str) -> Option<FileAttr> {
        let mut tree = lock(&self.tree);
        let kind = tree.kind(path)?;
        let ino = tree.ino(path);
        drop(tree);
        Some(self.attr(ino, path, kind))
    }

    fn new_fh(&self, handle: Handle) -> FileHandle {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, handle);
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> Result<Handle, Errno> {
        lock(&self.handles).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    fn write_error(what: &str, path: &str, e: &WriteError) -> Errno {
        match e {
            WriteError::Client(c) => errno(what, path, c),
            WriteError::Local(io) => local(what, path, io),
        }
    }

    /// Stores what a write handle holds, if it changed, and records the
    /// new version.
    async fn store(&self, ino: u64, writer: &AsyncMutex<Writer>) -> Result<(), Errno> {
        let mut w = writer.lock().await;
        if !w.dirty() {
            return Ok(());
        }
        // A file unlinked while open is not stored again under its name.
        let Some(path) = lock(&self.tree).path(ino).map(str::to_owned) else {
            return Ok(());
        };
        match w.store(&self.client, &path).await {
            Ok(Some(stored)) => {
                let meta = FileMeta {
                    size: stored.file.size,
                    modified_secs: stored.file.modified.unwrap_or(stored.file.created),
                };
                lock(&self.tree).set_file(&path, meta, false);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                // Said to the program that closed it: not tried again
                // behind its back at release.
                w.give_up();
                Err(Self::write_error("storing", &path, &e))
            }
        }
    }

    /// Truncates a file and sets its modification time: through the
    /// handle writing it (stored when it is), or at once.
    async fn set_attrs(
        &self,
        ino: u64,
        path: &str,
        open: Option<Handle>,
        size: Option<u64>,
        modified: Option<i64>,
    ) -> Result<(), Errno> {
        let writer = match open {
            Some(Handle::Write { writer, .. }) => writer,
            _ => {
                if let Some(size) = size {
                    let base = match lock(&self.tree).kind(path) {
                        Some(Kind::File(m)) => Some((path.to_owned(), m.size)),
                        _ => None,
                    };
                    let mut w = Writer::new(&self.settings.staging, base)
                        .map_err(|e| local("truncating", path, &e))?;
                    w.truncate(&self.client, size)
                        .await
                        .map_err(|e| Self::write_error("truncating", path, &e))?;
                    if let Some(m) = modified {
                        w.set_modified(m);
                    }
                    return self.store(ino, &AsyncMutex::new(w)).await;
                }
                if let Some(m) = modified {
                    self.set_modified(path, m).await?;
                }
                return Ok(());
            }
        };
        let mut w = writer.lock().await;
        if let Some(size) = size {
            w.truncate(&self.client, size)
                .await
                .map_err(|e| Self::write_error("truncating", path, &e))?;
        }
        if let Some(m) = modified {
            w.set_modified(m);
            // Stored already and not written since: the time is set now,
            // not at a store that may not come.
            if !w.dirty() && !lock(&self.tree).is_pending(path) {
                self.set_modified(path, m).await?;
            }
        }
        Ok(())
    }

    /// Sets a stored file's modification time.
    async fn set_modified(&self, path: &str, modified: i64) -> Result<(), Errno> {
        if lock(&self.tree).is_pending(path) {
            return Ok(());
        }
        let info = self
            .client
            .set_modified(path, modified)
            .await
            .map_err(|e| errno("setting the time of", path, &e))?;
        let meta = FileMeta {
            size: info.size,
            modified_secs: info.modified.unwrap_or(info.created),
        };
        lock(&self.tree).set_file(path, meta, false);
        Ok(())
    }

    /// Renames every stored file under directory `from` to be under `to`,
    /// one after another (each rename is atomic; the directory's is not).
    async fn rename_dir(&self, from: &str, to: &str) -> Result<(), Errno> {
        let names = lock(&self.tree).files_under(from);
        for name in names {
            if lock(&self.tree).is_pending(&name) {
                continue;
            }
            let rest = &name[from.len() + 1..];
            let new = tree::join(to, rest);
            if let Err(e) = self.client.rename(&name, &new).await {
                // What moved moved; the next listing shows where each is.
                *self.listed.lock().await = None;
                return Err(errno("renaming", &name, &e));
            }
        }
        Ok(())
    }
}

impl fuser::Filesystem for StoreFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // `open(O_TRUNC)` comes as one open with the flag, not a truncate
        // (which would store an empty version at once) followed by an
        // open: the previous version stays until the new one is closed.
        if let Err(missing) = config.add_capabilities(fuser::InitFlags::FUSE_ATOMIC_O_TRUNC) {
            tracing::warn!(
                "the kernel does not support {missing:?}: open(O_TRUNC) stores an empty file at once"
            );
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let inner = &self.inner;
        let result = (|| {
            let name = segment(name)?;
            let parent = inner.path(parent)?;
            inner.refresh_blocking();
            inner.entry(&tree::join(&parent, name)).ok_or(Errno::ENOENT)
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.inner.path(ino).and_then(|p| {
            self.inner.refresh_blocking();
            self.inner.entry(&p).ok_or(Errno::ENOENT)
        }) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        // Modes and owners are not kept (everything shows its mounting
        // user's, 0644 and 0755): accepted and left, as object-store mounts
        // do, so `cp -p` and `rsync -a` work. The modification time is
        // kept, so a second `rsync` finds nothing to copy.
        let inner = self.inner.clone();
        let path = match inner.path(ino) {
            Ok(p) => p,
            Err(e) => return reply.error(e),
        };
        let modified = mtime.map(|t| match t {
            TimeOrNow::SpecificTime(t) => t
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            TimeOrNow::Now => now_secs(),
        });
        // Directories live in the names: their times are not kept.
        let is_dir = lock(&inner.tree).kind(&path) == Some(Kind::Dir);
        if is_dir && size.is_some() {
            return reply.error(Errno::EISDIR);
        }
        if is_dir || (size.is_none() && modified.is_none()) {
            match inner.entry(&path).ok_or(Errno::ENOENT) {
                Ok(attr) => reply.attr(&TTL, &attr),
                Err(e) => reply.error(e),
            }
            return;
        }
        if let Err(e) = inner.writable(&path) {
            return reply.error(e);
        }
        let open = fh
            .and_then(|fh| inner.handle(fh).ok())
            .filter(|h| matches!(h, Handle::Write { .. }))
            .or_else(|| {
                lock(&inner.handles)
                    .values()
                    .find(|h| matches!(h, Handle::Write { ino: i, .. } if *i == ino.0))
                    .cloned()
            });
        self.inner.spawn(async move {
            let result = inner.set_attrs(ino.0, &path, open, size, modified).await;
            match result.and_then(|()| inner.entry(&path).ok_or(Errno::ENOENT)) {
                Ok(attr) => reply.attr(&TTL, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let inner = &self.inner;
        let result = (|| {
            let name = segment(name)?;
            let path = tree::join(&inner.path(parent)?, name);
            inner.writable(&path)?;
            inner.refresh_blocking();
            let mut tree = lock(&inner.tree);
            if tree.kind(&path).is_some() {
                return Err(Errno::EEXIST);
            }
            tree.make_dir(&path);
            drop(tree);
            inner.entry(&path).ok_or(Errno::EIO)
        })();
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let inner = &self.inner;
        let result = (|| {
            let name = segment(name)?;
            let path = tree::join(&inner.path(parent)?, name);
            inner.writable(&path)?;
            let (kind, pending) = {
                let tree = lock(&inner.tree);
                (tree.kind(&path), tree.is_pending(&path))
            };
            match kind {
                None => return Err(Errno::ENOENT),
                Some(Kind::Dir) => return Err(Errno::EISDIR),
                Some(Kind::File(_)) => {}
            }
            if !pending {
                inner
                    .runtime
                    .block_on(inner.client.delete(&path))
                    .map_err(|e| errno("deleting", &path, &e))?;
            }
            lock(&inner.tree).remove_file(&path);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let inner = &self.inner;
        let result = (|| {
            let name = segment(name)?;
            let path = tree::join(&inner.path(parent)?, name);
            inner.writable(&path)?;
            inner.refresh_blocking();
            let mut tree = lock(&inner.tree);
            match tree.kind(&path) {
                None => Err(Errno::ENOENT),
                Some(Kind::File(_)) => Err(Errno::ENOTDIR),
                Some(Kind::Dir) if !tree.is_empty_dir(&path) => {
                    Err(Errno::from_i32(libc::ENOTEMPTY))
                }
                Some(Kind::Dir) => {
                    tree.remove_dir(&path);
                    Ok(())
                }
            }
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let inner = &self.inner;
        let result = (|| {
            if flags.contains(RenameFlags::RENAME_EXCHANGE)
                || flags.contains(RenameFlags::RENAME_WHITEOUT)
            {
                return Err(Errno::EINVAL);
            }
            let from = tree::join(&inner.path(parent)?, segment(name)?);
            let to = tree::join(&inner.path(newparent)?, segment(newname)?);
            inner.writable(&from)?;
            inner.writable(&to)?;
            if from == to {
                return Ok(());
            }
            inner.refresh_blocking();
            let (from_kind, to_kind, pending, to_empty) = {
                let tree = lock(&inner.tree);
                (
                    tree.kind(&from),
                    tree.kind(&to),
                    tree.is_pending(&from),
                    tree.is_empty_dir(&to),
                )
            };
            let Some(from_kind) = from_kind else {
                return Err(Errno::ENOENT);
            };
            if to_kind.is_some() && flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            match (from_kind, to_kind) {
                (Kind::File(_), Some(Kind::Dir)) => return Err(Errno::EISDIR),
                (Kind::Dir, Some(Kind::File(_))) => return Err(Errno::ENOTDIR),
                (Kind::Dir, Some(Kind::Dir)) if !to_empty => {
                    return Err(Errno::from_i32(libc::ENOTEMPTY));
                }
                (Kind::Dir, _) if to.starts_with(&format!("{from}/")) => {
                    return Err(Errno::EINVAL);
                }
                _ => {}
            }
            match from_kind {
                // Created here and not stored yet: the open handle stores
                // it under its new name.
                Kind::File(_) if pending => {}
                Kind::File(_) => {
                    inner
                        .runtime
                        .block_on(inner.client.rename(&from, &to))
                        .map_err(|e| errno("renaming", &from, &e))?;
                }
                Kind::Dir => inner.runtime.block_on(inner.rename_dir(&from, &to))?,
            }
            let mut tree = lock(&inner.tree);
            if to_kind == Some(Kind::Dir) {
                tree.remove_dir(&to);
            }
            tree.rename(&from, &to);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let inner = &self.inner;
        let result = (|| {
            let path = inner.path(ino)?;
            let size = match lock(&inner.tree).kind(&path) {
                None => return Err(Errno::ENOENT),
                Some(Kind::Dir) => return Err(Errno::EISDIR),
                Some(Kind::File(m)) => m.size,
            };
            if flags.acc_mode() == OpenAccMode::O_RDONLY {
                let size = inner.written_len(ino.0).unwrap_or(size);
                return Ok(inner.new_fh(Handle::Read(Arc::new(AsyncMutex::new(Reader::new(size))))));
            }
            inner.writable(&path)?;
            let truncate = flags.0 & libc::O_TRUNC != 0;
            let pending = lock(&inner.tree).is_pending(&path);
            let base = (!truncate && !pending).then(|| (path.clone(), size));
            let mut writer = Writer::new(&inner.settings.staging, base)
                .map_err(|e| local("opening", &path, &e))?;
            writer.wrote(process_of(req.pid()));
            Ok(inner.new_fh(Handle::Write {
                ino: ino.0,
                len: writer.len_handle(),
                writer: Arc::new(AsyncMutex::new(writer)),
            }))
        })();
        match result {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let inner = &self.inner;
        let result = (|| {
            let name = segment(name)?;
            let path = tree::join(&inner.path(parent)?, name);
            inner.writable(&path)?;
            let existing = lock(&inner.tree).kind(&path);
            let base = match existing {
                Some(Kind::Dir) => return Err(Errno::EISDIR),
                Some(Kind::File(_)) if flags & libc::O_EXCL != 0 => return Err(Errno::EEXIST),
                Some(Kind::File(m)) if flags & libc::O_TRUNC == 0 => Some((path.clone(), m.size)),
                _ => None,
            };
            if existing.is_none() {
                let meta = FileMeta {
                    size: 0,
                    modified_secs: now_secs(),
                };
                lock(&inner.tree).set_file(&path, meta, true);
            }
            let mut writer = Writer::new(&inner.settings.staging, base)
                .map_err(|e| local("creating", &path, &e))?;
            writer.wrote(process_of(req.pid()));
            let ino = lock(&inner.tree).ino(&path);
            let fh = inner.new_fh(Handle::Write {
                ino,
                len: writer.len_handle(),
                writer: Arc::new(AsyncMutex::new(writer)),
            });
            let attr = inner.entry(&path).ok_or(Errno::EIO)?;
            Ok((attr, fh))
        })();
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let inner = self.inner.clone();
        let handle = match inner.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply.error(e),
        };
        self.inner.spawn(async move {
            let path = match inner.path(ino) {
                Ok(p) => p,
                Err(e) => return reply.error(e),
            };
            match handle {
                Handle::Read(reader) => {
                    let mut r = reader.lock().await;
                    match r.read(&inner.client, &path, offset, size).await {
                        Ok(bytes) => reply.data(&bytes),
                        Err(e) => reply.error(errno("reading", &path, &e)),
                    }
                }
                Handle::Write { writer, .. } => {
                    let mut w = writer.lock().await;
                    match w.read(&inner.client, offset, size).await {
                        Ok(bytes) => reply.data(&bytes),
                        Err(e) => reply.error(Inner::write_error("reading", &path, &e)),
                    }
                }
                Handle::Dir(_) => reply.error(Errno::EISDIR),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let inner = &self.inner;
        let Ok(Handle::Write { ino, writer, .. }) = inner.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        // The staging file is local: written in place, the kernel's next
        // write waits for little. (The first write to an existing file
        // fetches its bytes first.)
        let process = process_of(req.pid());
        let result = inner.runtime.block_on(async {
            let mut w = writer.lock().await;
            w.wrote(process);
            w.write(&inner.client, offset, data).await
        });
        match result {
            Ok(()) => reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX)),
            Err(e) => {
                let path = inner.path(INodeNo(ino)).unwrap_or_default();
                reply.error(Inner::write_error("writing", &path, &e));
            }
        }
    }

    fn flush(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let inner = self.inner.clone();
        let Ok(Handle::Write { ino, writer, .. }) = inner.handle(fh) else {
            return reply.ok();
        };
        let process = process_of(req.pid());
        // `close` waits for this answer: a write the store refused is the
        // error `close` returns. A close by a process that did not write
        // (a child closing its copy at exec) stores nothing.
        self.inner.spawn(async move {
            if !writer.lock().await.wrote_from(process) {
                return reply.ok();
            }
            match inner.store(ino, &writer).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let inner = self.inner.clone();
        let Ok(Handle::Write { ino, writer, .. }) = inner.handle(fh) else {
            return reply.ok();
        };
        self.inner.spawn(async move {
            match inner.store(ino, &writer).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(e),
            }
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let inner = self.inner.clone();
        let Some(handle) = lock(&inner.handles).remove(&fh.0) else {
            return reply.ok();
        };
        let Handle::Write { ino, writer, .. } = handle else {
            return reply.ok();
        };
        self.inner.spawn(async move {
            // Written through a mapping, or after the last flush: stored
            // now, or said in the log (nobody waits for this answer).
            if let Err(e) = inner.store(ino, &writer).await {
                tracing::warn!("a write handle closed with writes not stored (errno {e:?})");
            }
            let stored = writer.lock().await.stored();
            let mut tree = lock(&inner.tree);
            if let Some(path) = tree.path(ino).map(str::to_owned) {
                // Created here and never stored: it does not exist.
                if !stored && tree.is_pending(&path) {
                    tree.remove_file(&path);
                }
            }
            drop(tree);
            reply.ok();
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let inner = &self.inner;
        let result = (|| {
            let path = inner.path(ino)?;
            inner.refresh_blocking();
            let mut tree = lock(&inner.tree);
            if tree.kind(&path) != Some(Kind::Dir) {
                return Err(Errno::ENOTDIR);
            }
            let parent = match path.rsplit_once('/') {
                Some((p, _)) => tree.ino(p),
                None => tree::ROOT,
            };
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".to_owned()),
                (parent, FileType::Directory, "..".to_owned()),
            ];
            entries.extend(tree.children(&path).into_iter().map(|c| {
                let kind = match c.kind {
                    Kind::Dir => FileType::Directory,
                    Kind::File(_) => FileType::RegularFile,
                };
                (c.ino, kind, c.name)
            }));
            drop(tree);
            Ok(inner.new_fh(Handle::Dir(Arc::new(entries))))
        })();
        match result {
            Ok(fh) => reply.opened(fh, FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Ok(Handle::Dir(entries)) = self.inner.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(skip) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.inner.handles).remove(&fh.0);
        reply.ok();
    }

    // The store keeps regular files (and the directories their names
    // make): links and special files are refused, saying so once each.
    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        link_name: &OsStr,
        _target: &std::path::Path,
        reply: ReplyEntry,
    ) {
        tracing::warn!("{link_name:?}: the store keeps no symbolic links (EPERM)");
        reply.error(Errno::EPERM);
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        tracing::warn!("{newname:?}: the store keeps no hard links (EPERM)");
        reply.error(Errno::EPERM);
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        tracing::warn!(
            "{name:?}: the store keeps regular files only, no device, pipe or socket (EPERM)"
        );
        reply.error(Errno::EPERM);
    }

    // SEEK_DATA and SEEK_HOLE (`cp` asks, to copy sparse files): a stored
    // file has no holes.
    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        let inner = &self.inner;
        let size = inner.path(ino).ok().and_then(|p| match inner.entry(&p) {
            Some(attr) if attr.kind == FileType::RegularFile => Some(attr.size),
            _ => None,
        });
        let Some(size) = size.and_then(|s| i64::try_from(s).ok()) else {
            return reply.error(Errno::EBADF);
        };
        match whence {
            _ if offset < 0 => reply.error(Errno::EINVAL),
            _ if offset >= size => reply.error(Errno::ENXIO),
            libc::SEEK_DATA => reply.offset(offset),
            libc::SEEK_HOLE => reply.offset(size),
            _ => reply.error(Errno::EINVAL),
        }
    }

    // No extended attributes are kept: asked for, there are none (the
    // kernel asks for security labels on every write).
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::from_i32(libc::ENODATA));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::from_i32(libc::ENOTSUP));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::from_i32(libc::ENODATA));
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directories live in the names: nothing to sync.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        const BLOCK: u64 = 4096;
        let inner = self.inner.clone();
        self.inner.spawn(async move {
            match inner.client.health().await {
                Ok(health) => {
                    let c = health.capacity.total;
                    let files = lock(&inner.tree).file_count();
                    // `df` shows what files can still take: usable bytes,
                    // after coding, not the shards' raw room.
                    reply.statfs(
                        c.usable / BLOCK,
                        c.usable_free / BLOCK,
                        c.usable_free / BLOCK,
                        files,
                        u64::from(u32::MAX),
                        BLOCK as u32,
                        NAME_MAX as u32,
                        BLOCK as u32,
                    );
                }
                Err(e) => reply.error(errno("statfs of", "/", &e)),
            }
        });
    }
}
