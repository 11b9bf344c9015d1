//! `cp`: files and trees into and out of an environment.
//!
//! The shell route ([`shell`]) is the default: it works wherever a session
//! does and checks a SHA-256 on both ends. The URL route ([`urls`]) moves the
//! bytes through the presigned URLs the file operations hand out.

mod local;
pub(crate) mod progress;
mod shell;
mod urls;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use cloudshell::{EnvironmentId, EnvironmentStatus};
use serde::Serialize;

use crate::args::{CpArgs, EnvArg};
use crate::commands::{Context, ensure_running, resolve, status_of};

/// CloudShell's persistent home holds about 1 GB ("1 GB of persistent
/// storage", AWS CloudShell limits); the emulator enforces the same by default.
pub const HOME_QUOTA_BYTES: u64 = 1 << 30;

/// One side of a copy, as written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A local path.
    Local(PathBuf),
    /// `-`: standard input or output.
    Stdio,
    /// `ENV:PATH`; no ENV means the region's default environment.
    Remote {
        /// Environment id or name.
        env: Option<String>,
        /// Path in the environment.
        path: String,
    },
}

impl Endpoint {
    /// `-` is standard input or output; `X:Y` with no `/` in `X` is remote
    /// (as scp reads it); anything else is a local path.
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            return Self::Stdio;
        }
        match s.split_once(':') {
            Some((env, path)) if !env.contains('/') => Self::Remote {
                env: (!env.is_empty()).then(|| env.to_owned()),
                path: path.to_owned(),
            },
            _ => Self::Local(PathBuf::from(s)),
        }
    }
}

/// What one `cp` did, for `--json` and the closing line.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `upload` or `download`.
    pub direction: &'static str,
    /// `shell` or `urls`.
    pub route: &'static str,
    /// `file` or `tree`.
    pub kind: &'static str,
    /// The source as given.
    pub source: String,
    /// Where the copy ended up.
    pub destination: String,
    /// The environment.
    pub environment_id: String,
    /// Bytes moved in this run (for a tree, of its tar stream).
    pub bytes: u64,
    /// Bytes an earlier, interrupted run had already copied.
    pub resumed_from: u64,
    /// Files in a tree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// SHA-256 of the bytes moved in this run, checked on both ends.
    pub sha256: String,
    /// Wall time.
    pub seconds: f64,
    /// `bytes / seconds`.
    pub bytes_per_second: f64,
}

pub async fn cp(ctx: &Context, args: &CpArgs) -> anyhow::Result<()> {
    let source = Endpoint::parse(&args.source);
    let destination = Endpoint::parse(&args.destination);
    let started = Instant::now();
    let mut summary = match (&source, &destination) {
        (Endpoint::Remote { .. }, Endpoint::Remote { .. }) => bail!(
            "both {:?} and {:?} are remote; copy through this machine, or use `cloudshell exec` within one environment",
            args.source,
            args.destination
        ),
        (Endpoint::Remote { env, path }, local) => {
            let id = running_environment(ctx, env.clone(), args).await?;
            if args.via_urls {
                urls::download(ctx, &id, path, local, args).await?
            } else {
                shell::download(ctx, &id, path, local, args).await?
            }
        }
        (local, Endpoint::Remote { env, path }) => {
            let source = local::Source::open(local, args.recursive).await?;
            let id = running_environment(ctx, env.clone(), args).await?;
            if args.via_urls {
                urls::upload(ctx, &id, &source, path, args).await?
            } else {
                shell::upload(ctx, &id, &source, path, args).await?
            }
        }
        _ => bail!(
            "neither {:?} nor {:?} is in an environment; write the remote side as ENV:PATH, or :PATH for the default environment",
            args.source,
            args.destination
        ),
    };
    summary.source.clone_from(&args.source);
    let seconds = started.elapsed().as_secs_f64();
    summary.seconds = seconds;
    summary.bytes_per_second = if seconds > 0.0 {
        summary.bytes as f64 / seconds
    } else {
        0.0
    };
    report(&summary, ctx.printer.is_json() || args.json)
}

/// Prints the summary: JSON when asked (to stderr when stdout carries the
/// data), else one line when stderr is a terminal.
fn report(summary: &Summary, json: bool) -> anyhow::Result<()> {
    use std::io::{IsTerminal, Write};
    if json {
        let mut out = serde_json::to_string_pretty(summary)?;
        out.push('\n');
        if summary.destination == "-" {
            std::io::stderr().lock().write_all(out.as_bytes())?;
        } else {
            std::io::stdout().lock().write_all(out.as_bytes())?;
        }
    } else if std::io::stderr().is_terminal() {
        let resumed = if summary.resumed_from > 0 {
            format!(", resumed after {}", progress::bytes(summary.resumed_from))
        } else {
            String::new()
        };
        eprintln!(
            "{}: {} -> {} ({} in {:.1} s, {}/s{resumed})",
            summary.direction,
            summary.source,
            summary.destination,
            progress::bytes(summary.bytes),
            summary.seconds,
            progress::bytes(summary.bytes_per_second as u64),
        );
    }
    Ok(())
}

/// The environment, which must be RUNNING; with `--start` it is made so.
async fn running_environment(
    ctx: &Context,
    env: Option<String>,
    args: &CpArgs,
) -> anyhow::Result<EnvironmentId> {
    let arg = EnvArg { env };
    if args.start {
        return ensure_running(ctx, &arg, args.wait_timeout).await;
    }
    let id = resolve(&ctx.client, &arg).await?;
    let status = status_of(&ctx.client, &id).await?.status;
    if status != EnvironmentStatus::Running {
        bail!(
            "environment {id} is {status}, not RUNNING; pass --start to start it and wait (or run `cloudshell start {id} --wait` first)"
        );
    }
    Ok(id)
}

/// How the destination is shown: `ENV:PATH`.
fn remote_display(id: &EnvironmentId, path: &str) -> String {
    format!("{id}:{}", if path.is_empty() { "~" } else { path })
}

/// The name a copy takes inside a destination directory: the last
/// component of the source path.
fn base_name(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    let name = trimmed.rsplit('/').next().unwrap_or(trimmed);
    (!name.is_empty() && name != "." && name != ".." && name != "~").then_some(name)
}

/// The UTF-8 file name of a local path (remote commands are text).
fn local_name(path: &Path) -> anyhow::Result<String> {
    let canonical;
    let path = if path.file_name().is_none() {
        canonical = std::fs::canonicalize(path)?;
        canonical.as_path()
    } else {
        path
    };
    match path.file_name().map(|n| n.to_str()) {
        Some(Some(n)) => Ok(n.to_owned()),
        Some(None) => bail!(
            "the name {:?} is not valid UTF-8; rename it, or give the remote name explicitly",
            path.display()
        ),
        None => bail!("{} has no file name", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_scp() {
        assert_eq!(Endpoint::parse("-"), Endpoint::Stdio);
        assert_eq!(
            Endpoint::parse(":x"),
            Endpoint::Remote {
                env: None,
                path: "x".into()
            }
        );
        assert_eq!(
            Endpoint::parse("dev:dir/a:b"),
            Endpoint::Remote {
                env: Some("dev".into()),
                path: "dir/a:b".into()
            }
        );
        assert_eq!(
            Endpoint::parse("./a:b"),
            Endpoint::Local(PathBuf::from("./a:b"))
        );
        assert_eq!(Endpoint::parse("a.txt"), Endpoint::Local("a.txt".into()));
    }

    #[test]
    fn base_names() {
        assert_eq!(base_name("a/b.txt"), Some("b.txt"));
        assert_eq!(base_name("dir/"), Some("dir"));
        assert_eq!(base_name(""), None);
        assert_eq!(base_name("~"), None);
        assert_eq!(base_name("."), None);
    }
}
