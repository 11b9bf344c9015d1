//! `cloudshell`: AWS CloudShell from the terminal.
//!
//! Glue only: parse flags, build a client (or start the embedded emulator),
//! run the subcommand, map the outcome to an exit code.

mod args;
mod commands;
mod copy;
mod emulated;
mod output;
mod secret;
mod store;
mod store_args;
mod terminal;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use cloudshell::error::SdkError;
use cloudshell::{Client, ClientSource, ConfigError, Region, ValidationError};
use cloudshell_emulator::Emulator;

use crate::args::{Cli, Command, GlobalArgs};
use crate::commands::Context;
use crate::output::Printer;

/// Exit codes, as in fd/hyperfine: 0 ok, 1 failure, 2 usage or internal error, 130 interrupted.
#[derive(Debug, Clone, Copy)]
enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Interrupted = 130,
}

/// Region used with --emulated when none is configured.
const EMULATED_DEFAULT_REGION: &str = "us-east-1";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.command.runs_for_hours() {
        cloudshell_store::malloc::settle();
    }
    init_logging(cli.global.debug);
    // With --emulated the emulator serves in this process: it gets the
    // full runtime whatever the command.
    let mut builder = if cli.command.is_api_only() && !cli.global.emulated {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cloudshell: error: could not start the async runtime: {e}");
            return ExitCode::from(Exit::Usage as u8);
        }
    };
    let interruptible = cli.command.stops_on_ctrl_c();
    let code = runtime.block_on(async {
        tokio::select! {
            result = run(cli) => match result {
                Ok(Some(code)) => code,
                Ok(None) => Exit::Success as u8,
                Err(e) => report(&e) as u8,
            },
            _ = tokio::signal::ctrl_c(), if interruptible => Exit::Interrupted as u8,
        }
    });
    // A read of the terminal may still block a runtime thread; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    ExitCode::from(code)
}

/// Runs the command; `Some(code)` overrides the exit code (`exec` passes the
/// remote command's through).
async fn run(cli: Cli) -> anyhow::Result<Option<u8>> {
    let global = cli.global;
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cloudshell",
                &mut std::io::stdout(),
            );
            return Ok(None);
        }
        Command::Emulator(args) => {
            return cloudshell_emulator::args::run(*args).await.map(|()| None);
        }
        Command::Store(args) => return store::run(&global, &args).await.map(|()| None),
        _ => {}
    }
    // Kept alive for the whole command when --emulated.
    let (client, _emulator) = client(&global).await?;
    let ctx = Context {
        client,
        printer: Printer::new(global.output),
    };
    let code = |c: i32| Some(u8::try_from(c & 0xff).unwrap_or(1));
    match &cli.command {
        Command::Connect(a) => return terminal::connect(&ctx, a).await.map(code),
        Command::Exec(a) => return terminal::exec(&ctx, a).await.map(code),
        Command::Cp(a) => return copy::cp(&ctx, a).await.map(|()| None),
        _ => {}
    }
    match &cli.command {
        Command::Up(a) => commands::up(&ctx, a).await,
        Command::List => commands::list(&ctx).await,
        Command::Create(a) => commands::create(&ctx, a).await,
        Command::Status(a) => commands::status(&ctx, a).await,
        Command::Start(a) => commands::start(&ctx, a).await,
        Command::Stop(a) => commands::stop(&ctx, a).await,
        Command::Delete(a) => commands::delete(&ctx, a).await,
        Command::Session(a) => commands::session(&ctx, a).await,
        Command::DeleteSession(a) => commands::delete_session(&ctx, a).await,
        Command::Heartbeat(a) => commands::heartbeat(&ctx, a).await,
        Command::UploadUrls(a) => commands::upload_urls(&ctx, a).await,
        Command::DownloadUrls(a) => commands::download_urls(&ctx, a).await,
        Command::PutCredentials(a) => commands::put_credentials(&ctx, a).await,
        Command::Completions { .. }
        | Command::Emulator(_)
        | Command::Store(_)
        | Command::Connect(_)
        | Command::Exec(_)
        | Command::Cp(_) => Ok(()),
    }
    .map(|()| None)
}

/// The real service through the AWS credential chain, or with --emulated an
/// emulator started in this process.
async fn client(global: &GlobalArgs) -> anyhow::Result<(Client, Option<Emulator>)> {
    let region = global.region.as_deref().map(Region::new).transpose()?;
    if !global.emulated {
        let source = ClientSource::aws(global.profile.clone(), global.endpoint_url.clone());
        return Ok((Client::new(source.config(region).await?), None));
    }
    let data_dir = match &global.emulator_data_dir {
        Some(d) => d.clone(),
        None => cloudshell_emulator::args::default_data_dir()?,
    };
    let (emulator, sources) = emulated::start(data_dir, &[], &[]).await?;
    let source = sources.get(cloudshell_daemon::config::DEFAULT_PRINCIPAL)?;
    let region = match region {
        Some(r) => r,
        None => match std::env::var("AWS_REGION") {
            Ok(r) if !r.is_empty() => Region::new(r)?,
            _ => Region::new(EMULATED_DEFAULT_REGION)?,
        },
    };
    Ok((source.client(&region).await?, Some(emulator)))
}

/// Prints `cloudshell: error: ...` with a hint on what to do, and picks the exit code.
fn report(e: &anyhow::Error) -> Exit {
    eprintln!("cloudshell: error: {e:#}");
    let sdk = e.chain().find_map(|c| c.downcast_ref::<SdkError<()>>());
    if let Some(hint) = sdk.and_then(hint) {
        eprintln!("  hint: {hint}");
    }
    let usage = e
        .chain()
        .any(|c| c.is::<ValidationError>() || c.is::<ConfigError>())
        || matches!(
            sdk,
            Some(SdkError::InvalidInput(_) | SdkError::ConstructionFailure { .. })
        );
    if usage { Exit::Usage } else { Exit::Failure }
}

/// What to do about an API error, by AWS error code or failure stage.
fn hint(e: &SdkError<()>) -> Option<String> {
    let message = e.message().unwrap_or_default();
    Some(match (e, e.code()) {
        (_, Some("InvalidSignatureException" | "SignatureDoesNotMatch")) if message.contains("region") => {
            "these credentials are not valid for this region; check --region (or AWS_REGION) and the endpoint".into()
        }
        (_, Some("InvalidSignatureException" | "SignatureDoesNotMatch")) if message.contains("expired") || message.contains("not yet current") => {
            "the clock of this machine is off by more than 5 minutes; fix the system time".into()
        }
        (_, Some("InvalidSignatureException" | "SignatureDoesNotMatch")) => {
            "the secret access key does not match the access key id; check AWS_SECRET_ACCESS_KEY or the profile's credentials".into()
        }
        (_, Some("UnrecognizedClientException" | "InvalidClientTokenId")) => {
            "the access key id (or session token) is not recognized by this endpoint; check your profile or --endpoint-url".into()
        }
        (_, Some("ExpiredTokenException")) => "the session credentials have expired; refresh them (for SSO: aws sso login)".into(),
        (_, Some("ResourceNotFoundException")) => "run `cloudshell list` to see the environments in this region".into(),
        (_, Some("ServiceQuotaExceededException" | "LimitExceededException")) => {
            "run `cloudshell list`; delete an environment (`cloudshell delete ENV`) or use an existing one".into()
        }
        (_, Some("TokenDecryptionException")) => {
            "PutCredentials only works from an AWS Console session; export AWS credentials in the environment's shell instead".into()
        }
        (_, Some("AccessDeniedException")) => "the principal lacks a cloudshell:* permission for this action; check its IAM policy".into(),
        (_, Some("ThrottlingException")) => "the service is throttling requests; wait a little and try again".into(),
        (_, Some("ValidationException")) if message.contains("needs environment") => {
            "see the environment's state with `cloudshell status`; `start --wait` resumes a suspended one (or pass --start to exec and cp)".into()
        }
        (SdkError::DispatchFailure { .. } | SdkError::TimeoutError { .. }, _) => {
            "check the network and the endpoint (--endpoint-url, AWS_ENDPOINT_URL_CLOUDSHELL); for a local emulator use --emulated".into()
        }
        (SdkError::ServiceError(s), _) if s.meta().status >= 500 => {
            "the service failed; try again later, and quote the request id if it persists".into()
        }
        _ => return None,
    })
}

fn init_logging(debug: bool) {
    let filter = if debug {
        "cloudshell=debug,cloudshell_cli=debug,cloudshell_emulator=info"
    } else {
        // The credential chain logs each provider it tries; the error we
        // print already says what was missing. fuser warns when a mount it
        // made is gone before it unmounts: `umount DIR` is how one ends.
        "warn,aws_config=off,fuser::mnt=error"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOUDSHELL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_writer(std::io::stderr)
        .init();
}
