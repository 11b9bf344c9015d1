//! A mount's life: checks before mounting (the directory, the staging
//! directory, the daemon), the mount, and its end: `umount DIR` from
//! elsewhere, or Ctrl-C / SIGTERM here, which unmounts unless the mount
//! is busy (a file open, a shell inside), and then says so and goes on.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cloudshell_store_api::{Client, ClientError};
use fuser::{Config, MountOption};

use crate::fs::{Settings, StoreFs};

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The mount point is not a directory.
    #[error("{} is not a directory: create it first (mkdir -p {})", .0.display(), .0.display())]
    NotADirectory(PathBuf),
    /// Writes cannot be staged there.
    #[error(
        "cannot stage writes in {}: {source}; pick a writable directory with room for the \
         largest file you will write (--staging DIR)", dir.display()
    )]
    Staging {
        /// The staging directory.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// The daemon did not list the store.
    #[error("could not list the store")]
    Daemon(#[source] ClientError),
    /// The kernel (or fusermount3) refused the mount.
    #[error(
        "could not mount at {}: {source}; FUSE needs /dev/fuse and, without root, fusermount3 \
         (Debian: apt install fuse3)", dir.display()
    )]
    Mount {
        /// The mount point.
        dir: PathBuf,
        /// What failed.
        #[source]
        source: io::Error,
    },
}

/// What a mount is asked for.
#[derive(Debug, Clone)]
pub struct MountRequest {
    /// The mount point.
    pub dir: PathBuf,
    /// How the filesystem behaves.
    pub settings: Settings,
}

/// Mounts the store the daemon at `client` serves on `request.dir`, calls
/// `mounted` once it is, and returns when it is unmounted.
pub async fn run(
    client: Client,
    request: MountRequest,
    mounted: impl FnOnce(),
) -> Result<(), MountError> {
    let dir = request.dir.clone();
    if !dir.is_dir() {
        return Err(MountError::NotADirectory(dir));
    }
    tempfile::tempfile_in(&request.settings.staging).map_err(|source| MountError::Staging {
        dir: request.settings.staging.clone(),
        source,
    })?;
    let read_only = request.settings.read_only;
    let fs = StoreFs::new(client, tokio::runtime::Handle::current(), request.settings);
    fs.list().await.map_err(MountError::Daemon)?;
    let tasks = fs.tasks();
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("cloudshell-store".to_owned()),
        MountOption::Subtype("cloudshell".to_owned()),
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        if read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    // Requests that wait on the daemon are answered from tasks; these
    // threads only read requests and answer the quick ones.
    config.n_threads = Some(4);
    let session = fuser::spawn_mount(fs, &dir, &config).map_err(|source| MountError::Mount {
        dir: dir.clone(),
        source,
    })?;
    mounted();
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = ended_tx.send(session.join());
    });
    let mut interrupt = signal(tokio::signal::unix::SignalKind::interrupt());
    let mut terminate = signal(tokio::signal::unix::SignalKind::terminate());
    let result = loop {
        tokio::select! {
            r = &mut ended => break r.unwrap_or(Ok(())),
            () = recv(&mut interrupt) => try_unmount(&dir),
            () = recv(&mut terminate) => try_unmount(&dir),
        }
    };
    if let Err(e) = result {
        tracing::warn!("the mount's session ended with an error: {e}");
    }
    // A release the kernel sent just before the end may still be storing.
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(60), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("writes still under way after a minute were left");
    }
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn recv(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// Unmounts `dir`, or says why not; the session's end follows a success.
fn try_unmount(dir: &Path) {
    match unmount(dir) {
        Ok(()) => {}
        Err(Unmount::Busy) => eprintln!(
            "{} is busy (a program has a file open there, or a shell is in it): close them \
             and press Ctrl-C again; nothing was unmounted",
            dir.display()
        ),
        Err(Unmount::Failed(why)) => eprintln!("could not unmount {}: {why}", dir.display()),
    }
}

enum Unmount {
    Busy,
    Failed(String),
}

/// `umount DIR` (never lazy: a busy mount stays), through fusermount3 for
/// a user the kernel does not let unmount.
fn unmount(dir: &Path) -> Result<(), Unmount> {
    match rustix::mount::unmount(dir, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => Err(Unmount::Busy),
        Err(rustix::io::Errno::PERM) => {
            let mut last = String::new();
            for tool in ["fusermount3", "fusermount"] {
                match std::process::Command::new(tool).arg("-u").arg(dir).output() {
                    Ok(out) if out.status.success() => return Ok(()),
                    Ok(out) => {
                        let said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                        if said.contains("busy") {
                            return Err(Unmount::Busy);
                        }
                        return Err(Unmount::Failed(said));
                    }
                    Err(e) => last = format!("{tool}: {e}"),
                }
            }
            Err(Unmount::Failed(last))
        }
        Err(e) => Err(Unmount::Failed(e.to_string())),
    }
}
