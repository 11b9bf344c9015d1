//! The shell route: probe, stream, commit, each in its own session.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use cloudshell::EnvironmentId;
use cloudshell_ssm::transfer::{
    self, DownloadPlan, DownloadProbe, Kind, RemoteError, TransferError, UploadPlan,
};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};

use super::local::{self, Source};
use super::progress::Progress;
use super::{Endpoint, HOME_QUOTA_BYTES, Summary, base_name, remote_display};
use crate::args::CpArgs;
use crate::commands::Context;
use crate::terminal::shell_session;

pub async fn upload(
    ctx: &Context,
    id: &EnvironmentId,
    source: &Source,
    remote: &str,
    args: &CpArgs,
) -> anyhow::Result<Summary> {
    let plan = UploadPlan::new(remote, source.name(), source.kind());
    let shown = remote_display(id, remote);
    let probe = transfer::probe_upload(shell_session(ctx, id).await?, &plan)
        .await
        .map_err(|e| explain(e, &shown))?;

    let mut offset = 0;
    if let (Source::File { path, size, .. }, Some((have, hash))) = (source, probe.partial)
        && !args.no_resume
        && have > 0
        && have <= *size
        && local::prefix_hash(path, have).await? == hash
    {
        offset = have;
    }
    let need = match source {
        Source::File { size, .. } => Some(size - offset),
        Source::Tree { stats, .. } => Some(stats.tar_size()),
        Source::Stdin => None,
    };
    if let Some(need) = need {
        check_space(need, probe.available, probe.home_used, &shown)?;
    }

    let total = match source {
        Source::File { size, .. } => Some(*size),
        Source::Tree { stats, .. } => Some(stats.tar_size()),
        Source::Stdin => None,
    };
    let progress = Progress::start(
        &format!("{} ->", source.display()),
        offset,
        total,
        args.json,
    );
    let session = shell_session(ctx, id).await?;
    let (sha, tar_task) = match source {
        Source::File { path, .. } => {
            let mut file = tokio::fs::File::open(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            file.seek(std::io::SeekFrom::Start(offset)).await?;
            let sha =
                transfer::stream_upload(session, &plan, offset, file, progress.counter()).await;
            (sha, None)
        }
        Source::Tree { path, .. } => {
            let (reader, task) = local::tar_stream(path.clone());
            let sha = transfer::stream_upload(session, &plan, 0, reader, progress.counter()).await;
            (sha, Some(task))
        }
        Source::Stdin => {
            let sha =
                transfer::stream_upload(session, &plan, 0, tokio::io::stdin(), progress.counter())
                    .await;
            (sha, None)
        }
    };
    let local = match tar_task {
        Some(task) => task.await?,
        None => Ok(()),
    };
    let sha = match (sha, local) {
        (Ok(sha), Ok(())) => sha,
        (Ok(_), Err(e)) => return Err(e),
        (Err(remote), Ok(())) => return Err(explain(remote, &shown)),
        // A tree that could not be read explains the remote failure; a
        // broken pipe only means the far side stopped first.
        (Err(remote), Err(local)) => {
            let broken_pipe = local.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            });
            return Err(if broken_pipe {
                explain(remote, &shown)
            } else {
                local
            });
        }
    };
    let bytes = progress
        .counter()
        .load(std::sync::atomic::Ordering::Relaxed);
    drop(progress);

    let (mode, mtime) = match source {
        Source::File { mode, mtime, .. } => (Some(*mode), args.preserve.then_some(*mtime)),
        _ => (None, None),
    };
    transfer::commit_upload(shell_session(ctx, id).await?, &plan, mode, mtime)
        .await
        .map_err(|e| explain(e, &shown))?;
    Ok(Summary {
        direction: "upload",
        route: "shell",
        kind: kind_name(source.kind()),
        source: source.display(),
        destination: shown,
        environment_id: id.to_string(),
        bytes,
        resumed_from: offset,
        files: match source {
            Source::Tree { stats, .. } => Some(stats.files),
            _ => None,
        },
        sha256: sha.hex(),
        seconds: 0.0,
        bytes_per_second: 0.0,
    })
}

pub async fn download(
    ctx: &Context,
    id: &EnvironmentId,
    remote: &str,
    local: &Endpoint,
    args: &CpArgs,
) -> anyhow::Result<Summary> {
    let shown = remote_display(id, remote);
    let target = match local {
        Endpoint::Local(p) => Some(local_target(p, remote)?),
        _ => None,
    };
    let part = target.as_deref().map(local::part_path).transpose()?;
    // What an interrupted run left behind, if it is a plain file.
    let have = match &part {
        Some(p) if !args.no_resume && !args.recursive => tokio::fs::symlink_metadata(p)
            .await
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len()),
        _ => 0,
    };
    let probe = transfer::probe_download(
        shell_session(ctx, id).await?,
        &DownloadPlan::new(remote, Kind::File),
        have,
    )
    .await
    .map_err(|e| explain(e, &shown))?;

    match probe {
        DownloadProbe::Directory if !args.recursive => {
            bail!("{shown} is a directory; pass -r to copy it and everything in it")
        }
        DownloadProbe::Directory => {
            let (Some(target), Some(part)) = (target, part) else {
                bail!(
                    "a directory cannot be written to standard output; give a local directory name"
                );
            };
            download_tree(ctx, id, remote, &shown, &target, &part, args).await
        }
        DownloadProbe::File {
            size,
            mode,
            mtime,
            prefix,
        } => {
            let mut offset = 0;
            if let Some(p) = &part
                && have > 0
                && have <= size
                && prefix.is_some()
                && prefix == Some(local::prefix_hash(p, have).await?)
            {
                offset = have;
            }
            let plan = DownloadPlan::new(remote, Kind::File);
            let progress = Progress::start(&format!("{shown} ->"), offset, Some(size), args.json);
            let (sha, bytes) = match (&target, &part) {
                (Some(target), Some(part)) => {
                    let mut file = tokio::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(offset == 0)
                        .open(part)
                        .await
                        .with_context(|| format!("cannot write {}", part.display()))?;
                    file.set_len(offset).await?;
                    file.seek(std::io::SeekFrom::Start(offset)).await?;
                    let session = shell_session(ctx, id).await?;
                    let (sha, bytes) = transfer::stream_download(
                        session,
                        &plan,
                        offset,
                        &mut file,
                        progress.counter(),
                    )
                    .await
                    .map_err(|e| discard_on_mismatch(e, part, &shown))?;
                    file.sync_all().await?;
                    drop(file);
                    local::set_mode_and_time(part, mode, args.preserve.then_some(mtime))?;
                    tokio::fs::rename(part, target)
                        .await
                        .with_context(|| format!("cannot rename to {}", target.display()))?;
                    (sha, bytes)
                }
                _ => {
                    let session = shell_session(ctx, id).await?;
                    let mut out = tokio::io::stdout();
                    let r =
                        transfer::stream_download(session, &plan, 0, &mut out, progress.counter())
                            .await
                            .map_err(|e| explain(e, &shown))?;
                    out.flush().await?;
                    r
                }
            };
            Ok(Summary {
                direction: "download",
                route: "shell",
                kind: "file",
                source: shown,
                destination: target.map_or_else(|| "-".into(), |t| t.display().to_string()),
                environment_id: id.to_string(),
                bytes,
                resumed_from: offset,
                files: None,
                sha256: sha.hex(),
                seconds: 0.0,
                bytes_per_second: 0.0,
            })
        }
    }
}

async fn download_tree(
    ctx: &Context,
    id: &EnvironmentId,
    remote: &str,
    shown: &str,
    target: &Path,
    part: &Path,
    args: &CpArgs,
) -> anyhow::Result<Summary> {
    if tokio::fs::symlink_metadata(target).await.is_ok() {
        bail!(
            "{} already exists; cp -r does not merge trees: remove it or choose another name",
            target.display()
        );
    }
    if tokio::fs::symlink_metadata(part).await.is_ok() {
        tokio::fs::remove_dir_all(part)
            .await
            .with_context(|| format!("cannot remove the leftover {}", part.display()))?;
    }
    tokio::fs::create_dir(part)
        .await
        .with_context(|| format!("cannot create {}", part.display()))?;
    let progress = Progress::start(&format!("{shown} ->"), 0, None, args.json);
    let (mut writer, task) = local::untar(part.to_path_buf());
    let streamed = transfer::stream_download(
        shell_session(ctx, id).await?,
        &DownloadPlan::new(remote, Kind::Tree),
        0,
        &mut writer,
        progress.counter(),
    )
    .await;
    let _ = writer.shutdown().await;
    drop(writer);
    let extracted = task.await?;
    let (sha, bytes) = match (streamed, extracted) {
        (Ok(s), Ok(_)) => s,
        (Err(e), _) => {
            let _ = tokio::fs::remove_dir_all(part).await;
            return Err(explain(e, shown));
        }
        (Ok(_), Err(e)) => {
            let _ = tokio::fs::remove_dir_all(part).await;
            return Err(e);
        }
    };
    let root = part.to_path_buf();
    let files = tokio::task::spawn_blocking(move || local::walk(&root))
        .await??
        .files;
    tokio::fs::rename(part, target)
        .await
        .with_context(|| format!("cannot rename to {}", target.display()))?;
    Ok(Summary {
        direction: "download",
        route: "shell",
        kind: "tree",
        source: shown.to_owned(),
        destination: target.display().to_string(),
        environment_id: id.to_string(),
        bytes,
        resumed_from: 0,
        files: Some(files),
        sha256: sha.hex(),
        seconds: 0.0,
        bytes_per_second: 0.0,
    })
}

/// The local file a download writes: into an existing directory under the
/// remote name, else the path itself.
pub fn local_target(local: &Path, remote: &str) -> anyhow::Result<PathBuf> {
    let name = || {
        base_name(remote).with_context(|| {
            format!(
                "{remote:?} has no name to give the copy; name the local destination explicitly"
            )
        })
    };
    if local.is_dir() {
        return Ok(local.join(name()?));
    }
    if local.as_os_str().to_string_lossy().ends_with('/') {
        bail!("local directory {} does not exist", local.display());
    }
    let parent = match local.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        bail!("local directory {} does not exist", parent.display());
    }
    Ok(local.to_path_buf())
}

/// Refuses an upload that cannot fit: the file system's free space, and the
/// home directory's quota (CloudShell's home is its own ~1 GB volume; where
/// it is not, as in an emulator on a big disk, the quota still holds).
fn check_space(
    need: u64,
    available: Option<u64>,
    home_used: Option<u64>,
    shown: &str,
) -> anyhow::Result<()> {
    let free_in_quota = home_used.map(|used| HOME_QUOTA_BYTES.saturating_sub(used));
    let free = match (available, free_in_quota) {
        (Some(a), Some(q)) => Some(a.min(q)),
        (a, q) => a.or(q),
    };
    if let Some(free) = free
        && need > free
    {
        bail!(
            "not enough space in the environment for {shown}: the copy needs {}, {} is free (the home directory holds about {}); \
             nothing was changed; free some space there (`cloudshell exec -- du -sh '~/*'`) and try again",
            super::progress::bytes(need),
            super::progress::bytes(free),
            super::progress::bytes(HOME_QUOTA_BYTES),
        );
    }
    Ok(())
}

/// Adds the remote path to a transfer error, with what to do.
fn explain(e: TransferError, shown: &str) -> anyhow::Error {
    let hint = match &e {
        TransferError::Remote(RemoteError::NoDirectory) => {
            "create the directory first (`cloudshell exec -- mkdir -p DIR`)"
        }
        TransferError::Remote(RemoteError::NotWritable(_)) => {
            "choose a path in the home directory, or fix the directory's permissions"
        }
        TransferError::Remote(RemoteError::IsDirectory) => {
            "a directory is in the way; name a file path, or pass -r for a directory"
        }
        TransferError::Remote(RemoteError::Exists) => {
            "cp -r does not merge trees: remove it or choose another name"
        }
        TransferError::Remote(RemoteError::Missing) => {
            "check the path with `cloudshell exec -- ls`"
        }
        TransferError::Remote(RemoteError::NoSpace(_)) => {
            "the home directory holds about 1 GB; free some space and try again"
        }
        _ => "",
    };
    let e = anyhow::Error::new(e);
    if hint.is_empty() {
        e.context(format!("copy of {shown} failed"))
    } else {
        anyhow::anyhow!("copy of {shown} failed: {e:#}; {hint}")
    }
}

/// A download whose checksum did not match is not a prefix worth keeping.
fn discard_on_mismatch(e: TransferError, part: &Path, shown: &str) -> anyhow::Error {
    if matches!(e, TransferError::Mismatch { .. } | TransferError::Remote(_)) {
        let _ = std::fs::remove_file(part);
    }
    explain(e, shown)
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Tree => "tree",
    }
}
