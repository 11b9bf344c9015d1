//! The presigned-URL route: the bytes go over HTTP, the shell only resolves
//! the path and checks the SHA-256 of what arrived.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::{Context as _, bail};
use cloudshell::EnvironmentId;
use cloudshell::operation::FileUrlsInput;
use cloudshell::presigned::{PresignedGet, PresignedPost};
use cloudshell_ssm::transfer::{self, DownloadPlan, Kind, Sha256Hasher, UploadPlan};
use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;

use super::local::{self, Source};
use super::progress::Progress;
use super::shell::local_target;
use super::{Endpoint, Summary, remote_display};
use crate::args::CpArgs;
use crate::commands::{ApiResult as _, Context};
use crate::terminal::shell_session;

pub async fn upload(
    ctx: &Context,
    id: &EnvironmentId,
    source: &Source,
    remote: &str,
    args: &CpArgs,
) -> anyhow::Result<Summary> {
    let Source::File {
        path, name, size, ..
    } = source
    else {
        bail!(
            "--via-urls copies single files (an upload form needs the length up front); \
             drop --via-urls for directories and standard input"
        );
    };
    let shown = remote_display(id, remote);
    let plan = UploadPlan::new(remote, name.as_str(), Kind::File);
    let rel = transfer::locate(shell_session(ctx, id).await?, &plan.locate_command())
        .await
        .with_context(|| format!("copy of {shown} failed"))?;
    let urls = ctx
        .client
        .get_file_upload_urls(&FileUrlsInput {
            environment_id: id.clone(),
            file_name: Some(rel.clone()),
        })
        .await
        .api()?;
    let post = PresignedPost::from_output(&urls)
        .context("GetFileUploadUrls answered without an upload form")?;

    let progress = Progress::start(&format!("{} ->", path.display()), 0, Some(*size), args.json);
    let hasher = Arc::new(Mutex::new(Sha256Hasher::default()));
    let file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    let (h, counter) = (hasher.clone(), progress.counter());
    let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).map(move |chunk| {
        if let Ok(bytes) = &chunk {
            if let Ok(mut h) = h.lock() {
                h.update(bytes);
            }
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        chunk
    });
    ctx.client
        .post_presigned(&post, name, *size, body)
        .await
        .with_context(|| {
            format!("upload of {shown} failed; the previous file, if any, is unchanged")
        })?;
    let bytes = progress.counter().load(Ordering::Relaxed);
    drop(progress);
    let local = take(&hasher);
    let remote_sha = transfer::remote_sha256(shell_session(ctx, id).await?, &rel).await?;
    if remote_sha != local {
        bail!(
            "{shown} does not match what was sent (SHA-256 {remote_sha}, sent {local}); copy it again"
        );
    }
    Ok(Summary {
        direction: "upload",
        route: "urls",
        kind: "file",
        source: source.display(),
        destination: shown,
        environment_id: id.to_string(),
        bytes,
        resumed_from: 0,
        files: None,
        sha256: local.hex(),
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
    if args.recursive {
        bail!("--via-urls copies single files; drop --via-urls to copy a directory");
    }
    let shown = remote_display(id, remote);
    let target = match local {
        Endpoint::Local(p) => Some(local_target(p, remote)?),
        _ => None,
    };
    let rel = transfer::locate(
        shell_session(ctx, id).await?,
        &DownloadPlan::new(remote, Kind::File).locate_command(),
    )
    .await
    .with_context(|| format!("copy of {shown} failed"))?;
    let urls = ctx
        .client
        .get_file_download_urls(&FileUrlsInput {
            environment_id: id.clone(),
            file_name: Some(rel.clone()),
        })
        .await
        .api()?;
    let get = PresignedGet::from_output(&urls)
        .context("GetFileDownloadUrls answered without a download URL")?;
    let mut download = ctx
        .client
        .get_presigned(&get)
        .await
        .with_context(|| format!("download of {shown} failed"))?;

    let progress = Progress::start(&format!("{shown} ->"), 0, download.length, args.json);
    let mut hasher = Sha256Hasher::default();
    let part = target.as_deref().map(local::part_path).transpose()?;
    let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &part {
        Some(part) => Box::new(
            tokio::fs::File::create(part)
                .await
                .with_context(|| format!("cannot write {}", part.display()))?,
        ),
        None => Box::new(tokio::io::stdout()),
    };
    let streamed = async {
        while let Some(chunk) = download.chunk().await? {
            hasher.update(&chunk);
            sink.write_all(&chunk).await?;
            progress
                .counter()
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        sink.flush().await?;
        anyhow::Ok(())
    }
    .await;
    drop(sink);
    let bytes = progress.counter().load(Ordering::Relaxed);
    drop(progress);
    let local_sha = hasher.finish();
    let checked = match streamed {
        Ok(()) => {
            let remote_sha = transfer::remote_sha256(shell_session(ctx, id).await?, &rel).await?;
            if remote_sha == local_sha {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "what arrived does not match {shown} (SHA-256 {local_sha}, the file has {remote_sha}); copy it again"
                ))
            }
        }
        Err(e) => Err(e.context(format!("download of {shown} failed"))),
    };
    if let (Some(part), Some(target)) = (&part, &target) {
        if let Err(e) = checked {
            let _ = tokio::fs::remove_file(part).await;
            return Err(e);
        }
        tokio::fs::rename(part, target)
            .await
            .with_context(|| format!("cannot rename to {}", target.display()))?;
    } else {
        checked?;
    }
    Ok(Summary {
        direction: "download",
        route: "urls",
        kind: "file",
        source: shown,
        destination: target.map_or_else(|| "-".into(), |t| t.display().to_string()),
        environment_id: id.to_string(),
        bytes,
        resumed_from: 0,
        files: None,
        sha256: local_sha.hex(),
        seconds: 0.0,
        bytes_per_second: 0.0,
    })
}

fn take(hasher: &Mutex<Sha256Hasher>) -> transfer::Sha256 {
    hasher
        .lock()
        .map(|mut h| std::mem::take(&mut *h).finish())
        .unwrap_or_else(|e| std::mem::take(&mut *e.into_inner()).finish())
}
