//! The local side of a copy: what is sent, temporary names, tar streams.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use cloudshell_ssm::transfer::{Kind, PART_SUFFIX, Sha256, Sha256Hasher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use super::Endpoint;

/// Bytes buffered between the tar thread and the session.
const PIPE_BYTES: usize = 1 << 20;

/// What an upload sends.
#[derive(Debug)]
pub enum Source {
    /// A regular file.
    File {
        /// Where it is.
        path: PathBuf,
        /// Its name (the remote name when the destination is a directory).
        name: String,
        /// Its size.
        size: u64,
        /// Its permission bits.
        mode: u32,
        /// Its modification time, seconds since the epoch.
        mtime: i64,
    },
    /// A directory tree, sent as a tar stream.
    Tree {
        /// Where it is.
        path: PathBuf,
        /// Its name.
        name: String,
        /// What is in it.
        stats: TreeStats,
    },
    /// Standard input.
    Stdin,
}

/// Counts over a local tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Every entry (files, directories, links).
    pub entries: u64,
    /// Bytes in regular files.
    pub bytes: u64,
}

impl TreeStats {
    /// About the size of the tar stream: a 512-byte header per entry, data
    /// rounded up to 512-byte blocks, two closing blocks.
    pub fn tar_size(&self) -> u64 {
        self.entries * 512 + self.bytes + self.files * 511 + 1024
    }
}

impl Source {
    /// Looks at the local side of an upload.
    pub async fn open(endpoint: &Endpoint, recursive: bool) -> anyhow::Result<Self> {
        let path = match endpoint {
            Endpoint::Stdio => return Ok(Self::Stdin),
            Endpoint::Local(p) => p.clone(),
            Endpoint::Remote { .. } => bail!("the source is remote"),
        };
        let meta = match tokio::fs::metadata(&path).await {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("local file {} does not exist", path.display())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let name = super::local_name(&path)?;
        if meta.is_dir() {
            if !recursive {
                bail!(
                    "{} is a directory; pass -r to copy it and everything in it",
                    path.display()
                );
            }
            let root = path.clone();
            let stats = tokio::task::spawn_blocking(move || walk(&root)).await??;
            return Ok(Self::Tree { path, name, stats });
        }
        if !meta.is_file() {
            bail!(
                "{} is not a regular file; to send a stream, pipe it: `cloudshell cp - ENV:PATH < {}`",
                path.display(),
                path.display()
            );
        }
        // Open it now, so an unreadable file is reported before any remote work.
        std::fs::File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self::File {
            path,
            name,
            size: meta.len(),
            mode: meta.permissions().mode(),
            mtime: meta.mtime(),
        })
    }

    /// The name used inside a destination directory; empty for stdin.
    pub fn name(&self) -> &str {
        match self {
            Self::File { name, .. } | Self::Tree { name, .. } => name,
            Self::Stdin => "",
        }
    }

    /// File or tree.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Tree { .. } => Kind::Tree,
            _ => Kind::File,
        }
    }

    /// How the source is shown.
    pub fn display(&self) -> String {
        match self {
            Self::File { path, .. } | Self::Tree { path, .. } => path.display().to_string(),
            Self::Stdin => "-".into(),
        }
    }
}

/// Counts a tree without following symbolic links.
pub fn walk(root: &Path) -> anyhow::Result<TreeStats> {
    let mut stats = TreeStats::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        stats.entries += 1;
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else {
                stats.entries += 1;
                if kind.is_file() {
                    stats.files += 1;
                    stats.bytes += entry.metadata()?.len();
                }
            }
        }
    }
    Ok(stats)
}

/// The SHA-256 of the first `len` bytes of `path`.
pub async fn prefix_hash(path: &Path, len: u64) -> anyhow::Result<Sha256> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path)?;
        let mut limited = file.take(len);
        let mut hasher = Sha256Hasher::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = limited.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok::<_, std::io::Error>(hasher.finish())
    })
    .await?
    .context("cannot read the local file")
}

/// `DIR/.NAME.cloudshell-part` for a final path `DIR/NAME`.
pub fn part_path(target: &Path) -> anyhow::Result<PathBuf> {
    let name = target
        .file_name()
        .with_context(|| format!("{} has no file name", target.display()))?;
    let mut part = std::ffi::OsString::from(".");
    part.push(name);
    part.push(PART_SUFFIX);
    Ok(target.with_file_name(part))
}

/// A tar stream of the tree at `root` (entries relative to `./`, modes,
/// times and symbolic links as they are), built on a blocking thread.
pub fn tar_stream(
    root: PathBuf,
) -> (
    impl AsyncRead + Send + Unpin,
    JoinHandle<anyhow::Result<()>>,
) {
    let (reader, writer) = tokio::io::simplex(PIPE_BYTES);
    let bridge = SyncIoBridge::new(writer);
    let task = tokio::task::spawn_blocking(move || {
        let mut builder = tar::Builder::new(bridge);
        builder.mode(tar::HeaderMode::Complete);
        builder.follow_symlinks(false);
        builder
            .append_dir_all(".", &root)
            .with_context(|| format!("cannot read {}", root.display()))?;
        let mut bridge = builder.into_inner()?;
        std::io::Write::flush(&mut bridge)?;
        bridge.shutdown()?;
        Ok(())
    });
    (reader, task)
}

/// Extracts a tar stream into the directory `dest` on a blocking thread:
/// modes and times are kept, directories' times set last (creating their
/// entries would move them), paths leaving `dest` refused. Returns the
/// writer to feed and the task, which yields the number of regular files.
pub fn untar(
    dest: PathBuf,
) -> (
    impl AsyncWrite + Send + Unpin,
    JoinHandle<anyhow::Result<u64>>,
) {
    let (reader, writer) = tokio::io::simplex(PIPE_BYTES);
    let bridge = SyncIoBridge::new(reader);
    let task = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(bridge);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        archive.set_overwrite(false);
        let mut dirs = Vec::new();
        let mut files = 0;
        for entry in archive.entries().context("cannot read the tar stream")? {
            let mut entry = entry.context("cannot read the tar stream")?;
            let path = entry.path()?.into_owned();
            let kind = entry.header().entry_type();
            let mtime = entry.header().mtime().unwrap_or(0);
            let mode = entry.header().mode().unwrap_or(0o755);
            let is_root = path.as_os_str().is_empty() || path == Path::new(".");
            if kind.is_dir() {
                let at = dest.join(&path);
                dirs.push((at, mode, mtime));
                if is_root {
                    continue;
                }
            } else if kind.is_file() {
                files += 1;
            }
            if !entry
                .unpack_in(&dest)
                .with_context(|| format!("cannot write {}", dest.join(&path).display()))?
            {
                bail!(
                    "the archive names {}, outside the destination; nothing was kept",
                    path.display()
                );
            }
        }
        for (dir, mode, mtime) in dirs.iter().rev() {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o7777))?;
            let t = filetime::FileTime::from_unix_time(i64::try_from(*mtime).unwrap_or(0), 0);
            filetime::set_file_mtime(dir, t)?;
        }
        // GNU tar pads its output to whole records; read them so the
        // writer is never left blocked.
        let mut rest = archive.into_inner();
        std::io::copy(&mut rest, &mut std::io::sink())?;
        Ok(files)
    });
    (writer, task)
}

/// Sets the permission bits and, when given, the modification time of `path`.
pub fn set_mode_and_time(path: &Path, mode: u32, mtime: Option<i64>) -> anyhow::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    if let Some(mtime) = mtime {
        filetime::set_file_mtime(path, filetime::FileTime::from_unix_time(mtime, 0))
            .with_context(|| format!("cannot set the time of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_sit_next_to_the_target() {
        assert_eq!(
            part_path(Path::new("/a/b.txt")).unwrap(),
            Path::new("/a/.b.txt.cloudshell-part")
        );
        assert_eq!(
            part_path(Path::new("b")).unwrap(),
            Path::new(".b.cloudshell-part")
        );
    }

    #[tokio::test]
    async fn a_tree_round_trips_through_tar() {
        use tokio::io::AsyncWriteExt;
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("d/e")).unwrap();
        std::fs::write(src.path().join("d/e/f"), b"x").unwrap();
        std::fs::set_permissions(
            src.path().join("d/e/f"),
            std::fs::Permissions::from_mode(0o751),
        )
        .unwrap();
        std::os::unix::fs::symlink("d/e/f", src.path().join("l")).unwrap();
        let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_mtime(src.path().join("d/e/f"), t).unwrap();
        filetime::set_file_mtime(src.path().join("d/e"), t).unwrap();

        let (mut r, build) = tar_stream(src.path().to_path_buf());
        let dst = tempfile::tempdir().unwrap();
        let (mut w, extract) = untar(dst.path().to_path_buf());
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        build.await.unwrap().unwrap();
        assert_eq!(extract.await.unwrap().unwrap(), 1);
        let f = std::fs::metadata(dst.path().join("d/e/f")).unwrap();
        assert_eq!(f.permissions().mode() & 0o777, 0o751);
        assert_eq!(f.mtime(), 1_600_000_000);
        assert_eq!(
            std::fs::metadata(dst.path().join("d/e")).unwrap().mtime(),
            1_600_000_000
        );
        assert_eq!(
            std::fs::read_link(dst.path().join("l")).unwrap(),
            Path::new("d/e/f")
        );
    }
}
