//! One function per subcommand, thin over the `cloudshell` library.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cloudshell::error::SdkError;
use cloudshell::operation::FileUrlsInput;
use cloudshell::operation::create_environment::CreateEnvironmentInput;
use cloudshell::operation::create_session::CreateSessionInput;
use cloudshell::operation::delete_environment::DeleteEnvironmentInput;
use cloudshell::operation::delete_session::DeleteSessionInput;
use cloudshell::operation::get_environment_status::{
    GetEnvironmentStatusInput, GetEnvironmentStatusOutput,
};
use cloudshell::operation::put_credentials::PutCredentialsInput;
use cloudshell::operation::send_heart_beat::SendHeartBeatInput;
use cloudshell::operation::start_environment::StartEnvironmentInput;
use cloudshell::operation::stop_environment::StopEnvironmentInput;
use cloudshell::types::EnvironmentSummary;
use cloudshell::{Client, EnvironmentId, EnvironmentStatus, TabId, VpcConfig};
use serde::Serialize;

use crate::args::{
    CreateArgs, DeleteSessionArgs, EnvArg, FileUrlsArgs, HeartbeatArgs, SessionArgs, UpArgs,
    WaitEnvArgs,
};
use crate::output::Printer;

/// Turns any operation's error into an `anyhow` error that keeps the
/// [`SdkError`] (without its operation type) for exit codes and hints.
pub trait ApiResult<T> {
    /// Converts the error.
    fn api(self) -> anyhow::Result<T>;
}

impl<T, E: std::fmt::Debug + Send + Sync + 'static> ApiResult<T> for Result<T, SdkError<E>> {
    fn api(self) -> anyhow::Result<T> {
        self.map_err(|e| anyhow::Error::new(e.into_untyped()))
    }
}

/// What every command needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// Where results go.
    pub printer: Printer,
}

/// How often `--wait` polls.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// An environment with its status filled in, as `list` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    environments: Vec<EnvironmentSummary>,
}

pub async fn list(ctx: &Context) -> anyhow::Result<()> {
    let envs = described(&ctx.client).await?;
    let rows: Vec<Vec<String>> = envs
        .iter()
        .map(|e| {
            vec![
                e.environment_id.to_string(),
                e.environment_name.clone().unwrap_or_else(|| "-".into()),
                e.status.as_ref().map_or("-".into(), ToString::to_string),
                if e.vpc_config.is_some() {
                    "vpc"
                } else {
                    "default"
                }
                .into(),
            ]
        })
        .collect();
    if rows.is_empty() && !ctx.printer.is_json() {
        eprintln!(
            "No environments in {}. Create one with `cloudshell create`.",
            ctx.client.config().region()
        );
        return Ok(());
    }
    ctx.printer.table(
        &Listed { environments: envs },
        &["ENVIRONMENT ID", "NAME", "STATUS", "TYPE"],
        &rows,
    )
}

/// DescribeEnvironments, completed with GetEnvironmentStatus where AWS
/// leaves members out (it often returns only ids).
async fn described(client: &Client) -> anyhow::Result<Vec<EnvironmentSummary>> {
    let mut envs = client.describe_environments().await.api()?.environments;
    for env in &mut envs {
        if env.status.is_none() {
            let s = status_of(client, &env.environment_id).await?;
            env.status = Some(s.status);
            env.environment_name = env.environment_name.take().or(s.environment_name);
            env.vpc_config = env.vpc_config.take().or(s.vpc_config);
        }
    }
    Ok(envs)
}

pub(crate) async fn status_of(
    client: &Client,
    id: &EnvironmentId,
) -> anyhow::Result<GetEnvironmentStatusOutput> {
    client
        .get_environment_status(&GetEnvironmentStatusInput::new(id.clone()))
        .await
        .api()
}

/// Finds the environment a user means: an id, a name, or (none given) the
/// region's one default environment.
pub(crate) async fn resolve(client: &Client, arg: &EnvArg) -> anyhow::Result<EnvironmentId> {
    if let Some(given) = &arg.env {
        let id = EnvironmentId::new(given.as_str())?;
        // Ids are UUIDs and names are at most 28 characters, so a UUID-shaped
        // argument is an id: skip the listing.
        if given.len() == 36 && given.chars().filter(|c| *c == '-').count() == 4 {
            return Ok(id);
        }
        let envs = described(client).await?;
        if let Some(e) = envs.iter().find(|e| e.environment_id == id) {
            return Ok(e.environment_id.clone());
        }
        let by_name: Vec<_> = envs
            .iter()
            .filter(|e| {
                e.environment_name.as_deref() == Some(given.as_str())
                    && e.status != Some(EnvironmentStatus::Deleted)
            })
            .collect();
        return match by_name.as_slice() {
            [one] => Ok(one.environment_id.clone()),
            [] => Ok(id), // Let the service say whether it exists.
            _ => bail!(
                "several environments are named {given:?}; pass an id (see `cloudshell list`)"
            ),
        };
    }
    let envs = described(client).await?;
    let defaults: Vec<_> = envs
        .iter()
        .filter(|e| {
            e.vpc_config.is_none()
                && !matches!(
                    e.status,
                    Some(EnvironmentStatus::Deleted | EnvironmentStatus::Deleting)
                )
        })
        .collect();
    match defaults.as_slice() {
        [one] => Ok(one.environment_id.clone()),
        [] => bail!(
            "no default environment in {}: create one with `cloudshell create`, or name an environment (see `cloudshell list`)",
            client.config().region()
        ),
        _ => bail!("several environments could be meant; name one (see `cloudshell list`)"),
    }
}

pub async fn up(ctx: &Context, args: &UpArgs) -> anyhow::Result<()> {
    let id = ensure_running(ctx, &EnvArg { env: None }, args.wait_timeout).await?;
    let s = status_of(&ctx.client, &id).await?;
    ctx.printer
        .message(&s, &format!("Environment {id} is {}", s.status))
}

/// Makes the environment RUNNING: the named one is started if suspended;
/// with no name, the region's default environment is created if missing.
/// Waits for transitions, up to `timeout`.
pub(crate) async fn ensure_running(
    ctx: &Context,
    env: &EnvArg,
    timeout: Duration,
) -> anyhow::Result<EnvironmentId> {
    let started = Instant::now();
    let named = env.env.is_some();
    let mut id = match resolve(&ctx.client, env).await {
        Ok(id) => id,
        Err(_) if !named => create_default(ctx).await?,
        Err(e) => return Err(e),
    };
    let mut last = None;
    loop {
        let s = status_of(&ctx.client, &id).await?;
        if last.as_ref() != Some(&s.status) {
            progress(&format!("{id}: {}", s.status));
            last = Some(s.status.clone());
        }
        match &s.status {
            EnvironmentStatus::Running => return Ok(id),
            EnvironmentStatus::Suspended => {
                ctx.client
                    .start_environment(&StartEnvironmentInput::new(id.clone()))
                    .await
                    .api()?;
            }
            // Being deleted: the default environment is made anew once it is gone.
            EnvironmentStatus::Deleted if !named => id = create_default(ctx).await?,
            s if s.is_transitional() => {}
            other => bail!("environment {id} is {other} and cannot be started"),
        }
        if started.elapsed() >= timeout {
            bail!(
                "environment {id} is not RUNNING after {}; check with `cloudshell status {id}`",
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn create_default(ctx: &Context) -> anyhow::Result<EnvironmentId> {
    let out = ctx
        .client
        .create_environment(&CreateEnvironmentInput::default())
        .await
        .api()?;
    progress(&format!("Created environment {}", out.environment_id));
    Ok(out.environment_id)
}

pub async fn create(ctx: &Context, args: &CreateArgs) -> anyhow::Result<()> {
    let vpc_config = args.vpc_id.as_ref().map(|vpc_id| VpcConfig {
        vpc_id: vpc_id.clone(),
        subnet_ids: args.subnet_id.clone(),
        security_group_ids: args.security_group_id.clone(),
    });
    let input = CreateEnvironmentInput {
        environment_name: args.name.clone(),
        vpc_config,
    };
    let mut out = ctx.client.create_environment(&input).await.api()?;
    if args.wait {
        progress(&format!(
            "Created environment {} ({}); waiting for RUNNING",
            out.environment_id, out.status
        ));
        let s = wait_for(
            &ctx.client,
            &out.environment_id,
            &[EnvironmentStatus::Running],
            args.wait_timeout,
        )
        .await?;
        out.status = s.status;
    }
    ctx.printer.message(
        &out,
        &format!("Environment {} is {}", out.environment_id, out.status),
    )
}

pub async fn status(ctx: &Context, arg: &EnvArg) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, arg).await?;
    let s = status_of(&ctx.client, &id).await?;
    let mut pairs = vec![
        ("EnvironmentId", id.to_string()),
        ("Status", s.status.to_string()),
    ];
    if let Some(n) = &s.environment_name {
        pairs.push(("EnvironmentName", n.clone()));
    }
    if let Some(r) = &s.status_reason {
        pairs.push(("StatusReason", r.clone()));
    }
    if let Some(v) = &s.vpc_config {
        pairs.push(("VpcId", v.vpc_id.clone()));
        pairs.push(("SubnetIds", v.subnet_ids.join(",")));
        pairs.push(("SecurityGroupIds", v.security_group_ids.join(",")));
    }
    ctx.printer.record(&s, &pairs)
}

pub async fn start(ctx: &Context, args: &WaitEnvArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    let out = ctx
        .client
        .start_environment(&StartEnvironmentInput::new(id.clone()))
        .await
        .api()?;
    finish_change(ctx, &id, args, out.status, &[EnvironmentStatus::Running]).await
}

pub async fn stop(ctx: &Context, args: &WaitEnvArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    let out = ctx
        .client
        .stop_environment(&StopEnvironmentInput::new(id.clone()))
        .await
        .api()?;
    finish_change(ctx, &id, args, out.status, &[EnvironmentStatus::Suspended]).await
}

pub async fn delete(ctx: &Context, args: &WaitEnvArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    ctx.client
        .delete_environment(&DeleteEnvironmentInput::new(id.clone()))
        .await
        .api()?;
    finish_change(
        ctx,
        &id,
        args,
        Some(EnvironmentStatus::Deleting),
        &[EnvironmentStatus::Deleted],
    )
    .await
}

/// Prints the state after start/stop/delete, waiting first if asked.
async fn finish_change(
    ctx: &Context,
    id: &EnvironmentId,
    args: &WaitEnvArgs,
    reported: Option<EnvironmentStatus>,
    targets: &[EnvironmentStatus],
) -> anyhow::Result<()> {
    let status = if args.wait {
        wait_for(&ctx.client, id, targets, args.wait_timeout)
            .await?
            .status
    } else {
        match reported {
            Some(s) => s,
            None => status_of(&ctx.client, id).await?.status,
        }
    };
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Changed<'a> {
        environment_id: &'a EnvironmentId,
        status: &'a EnvironmentStatus,
    }
    ctx.printer.message(
        &Changed {
            environment_id: id,
            status: &status,
        },
        &format!("Environment {id} is {status}"),
    )
}

/// Polls until the environment reaches one of `targets`, failing if it
/// settles elsewhere (a stable state that is not a target) or time runs out.
async fn wait_for(
    client: &Client,
    id: &EnvironmentId,
    targets: &[EnvironmentStatus],
    timeout: Duration,
) -> anyhow::Result<GetEnvironmentStatusOutput> {
    let started = Instant::now();
    let mut last: Option<EnvironmentStatus> = None;
    loop {
        let s = match client
            .get_environment_status(&GetEnvironmentStatusInput::new(id.clone()))
            .await
        {
            Ok(s) => s,
            // A deleted environment may disappear instead of showing DELETED.
            Err(e)
                if targets.contains(&EnvironmentStatus::Deleted)
                    && e.code() == Some("ResourceNotFoundException") =>
            {
                return Ok(GetEnvironmentStatusOutput {
                    status: EnvironmentStatus::Deleted,
                    status_reason: None,
                    environment_id: Some(id.clone()),
                    environment_name: None,
                    vpc_config: None,
                });
            }
            Err(e) => return Err(anyhow::Error::new(e.into_untyped())),
        };
        if targets.contains(&s.status) {
            return Ok(s);
        }
        if last.as_ref() != Some(&s.status) {
            progress(&format!("{id}: {}", s.status));
            last = Some(s.status.clone());
        }
        if !s.status.is_transitional() {
            bail!(
                "environment {id} settled in {} instead of {}{}",
                s.status,
                targets
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" or "),
                s.status_reason
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
        }
        if started.elapsed() >= timeout {
            bail!(
                "environment {id} is still {} after {}; check later with `cloudshell status {id}`",
                s.status,
                humantime::format_duration(timeout)
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

pub async fn session(ctx: &Context, args: &SessionArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    let tab_id = match &args.tab_id {
        Some(t) => TabId::parse(t)?,
        None => TabId::random(),
    };
    let input = CreateSessionInput {
        environment_id: id,
        session_type: args.session_type.clone(),
        tab_id,
        q_cli_disabled: args.no_q_cli.then_some(true),
    };
    let out = ctx.client.create_session(&input).await.api()?;
    ctx.printer.record(
        &out,
        &[
            ("SessionId", out.session_id.clone()),
            ("StreamUrl", out.stream_url.clone()),
            ("TokenValue", out.token_value.clone()),
        ],
    )
}

pub async fn delete_session(ctx: &Context, args: &DeleteSessionArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    let out = ctx
        .client
        .delete_session(&DeleteSessionInput {
            environment_id: id,
            session_id: args.session_id.clone(),
        })
        .await
        .api()?;
    ctx.printer
        .message(&out, &format!("Session {} ended", args.session_id))
}

pub async fn heartbeat(ctx: &Context, args: &HeartbeatArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    let input = SendHeartBeatInput::new(id.clone());
    let Some(every) = args.every else {
        let out = ctx.client.send_heart_beat(&input).await.api()?;
        return ctx
            .printer
            .message(&out, &format!("Heartbeat sent to {id}"));
    };
    // Runs until Ctrl-C, which main turns into exit code 130.
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        ctx.client
            .send_heart_beat(&input)
            .await
            .api()
            .with_context(|| format!("heartbeat to {id} failed; is the environment still RUNNING? (`cloudshell status {id}`)"))?;
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Beat<'a> {
            environment_id: &'a EnvironmentId,
            unix_time: u64,
        }
        let unix_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ctx.printer.message(
            &Beat {
                environment_id: &id,
                unix_time,
            },
            &format!(
                "Heartbeat sent to {id} at {}; next in {}",
                humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
                humantime::format_duration(every)
            ),
        )?;
    }
}

pub async fn upload_urls(ctx: &Context, args: &FileUrlsArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    let out = ctx
        .client
        .get_file_upload_urls(&FileUrlsInput {
            environment_id: id,
            file_name: args.file.clone(),
        })
        .await
        .api()?;
    let mut pairs = vec![(
        "FileUploadPresignedUrl",
        out.file_upload_presigned_url.clone().unwrap_or_default(),
    )];
    for (k, v) in out.file_upload_presigned_fields.iter().flatten() {
        pairs.push(("Field", format!("{k}={v}")));
    }
    ctx.printer.record(&out, &pairs)
}

pub async fn download_urls(ctx: &Context, args: &FileUrlsArgs) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, &args.env).await?;
    let out = ctx
        .client
        .get_file_download_urls(&FileUrlsInput {
            environment_id: id,
            file_name: args.file.clone(),
        })
        .await
        .api()?;
    ctx.printer.record(
        &out,
        &[
            (
                "FileDownloadPresignedUrl",
                out.file_download_presigned_url.clone().unwrap_or_default(),
            ),
            (
                "FileDownloadPresignedKey",
                out.file_download_presigned_key.clone().unwrap_or_default(),
            ),
            (
                "FileDownloadPresignedKeyHash",
                out.file_download_presigned_key_hash
                    .clone()
                    .unwrap_or_default(),
            ),
        ],
    )
}

pub async fn put_credentials(ctx: &Context, arg: &EnvArg) -> anyhow::Result<()> {
    let id = resolve(&ctx.client, arg).await?;
    let out = ctx
        .client
        .put_credentials(&PutCredentialsInput::new(id.clone()))
        .await
        .api()?;
    ctx.printer
        .message(&out, &format!("Credentials passed to {id}"))
}

/// Progress for people goes to stderr, and only on a terminal.
fn progress(message: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("{message}");
    }
}
