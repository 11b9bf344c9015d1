//! Command-line flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cloudshell_emulator::args::EmulatorArgs;

/// AWS CloudShell from your terminal: manage environments and sessions, or run
/// a local CloudShell emulator.
#[derive(Debug, Parser)]
#[command(
    name = "cloudshell",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Use this profile from ~/.aws/config and ~/.aws/credentials.
    #[arg(long, global = true, env = "AWS_PROFILE")]
    pub profile: Option<String>,

    /// Region to act in [default: from AWS_REGION or the profile].
    #[arg(long, global = true)]
    pub region: Option<String>,

    /// Send requests to this URL instead of https://cloudshell.REGION.amazonaws.com.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table, env = "CLOUDSHELL_OUTPUT")]
    pub output: OutputFormat,

    /// Log requests, retries and responses to stderr.
    #[arg(long, global = true)]
    pub debug: bool,

    /// Run against a local emulator started in this process (no AWS account needed).
    ///
    /// Its state lives in the user data directory (or CLOUDSHELL_EMULATOR_DATA_DIR),
    /// so environments persist from one command to the next.
    #[arg(
        long,
        global = true,
        env = "CLOUDSHELL_EMULATED",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub emulated: bool,

    /// Data directory of the emulator used by --emulated.
    #[arg(
        long,
        global = true,
        env = "CLOUDSHELL_EMULATOR_DATA_DIR",
        value_name = "DIR",
        hide = true
    )]
    pub emulator_data_dir: Option<PathBuf>,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make sure the region's default environment exists and is RUNNING, as
    /// opening CloudShell in the Console does: create or resume it and wait.
    Up(UpArgs),

    /// Open an interactive shell in an environment (creating and starting it if needed).
    ///
    /// The local terminal is put in raw mode; type `~.` at the start of a line
    /// to leave. No session-manager-plugin is needed.
    Connect(ConnectArgs),

    /// Run one command in an environment and exit with its exit code.
    ///
    /// One argument after `--` is a shell command line, run as written
    /// (`exec -- 'ls ~ | wc -l'`, as with ssh); several are a program and its
    /// arguments, each passed as is (`exec -- sh -c 'exit 7'`). Output is
    /// copied byte for byte (standard error is merged into standard output
    /// by the remote terminal). Piped standard input is forwarded:
    /// `cat f | cloudshell exec -- 'cat > f'`. Exits 255 when the session fails.
    Exec(ExecArgs),

    /// Copy files and directories into or out of an environment.
    ///
    /// One side is remote, written ENV:PATH (ENV an environment id or name) or
    /// :PATH for the region's default environment; PATH is relative to the
    /// home directory unless absolute. The other side is a local path, or `-`
    /// for standard input or output (write a local name containing `:` as
    /// `./a:b`). Bytes travel through the shell session with their SHA-256
    /// checked on both ends, land under a temporary name and are renamed into
    /// place, so an interrupted copy never leaves a partial file; running the
    /// same copy again resumes it.
    ///
    ///   cloudshell cp backup.tar :            # into the home directory
    ///   cloudshell cp -r site/ dev:www        # a tree, modes and times kept
    ///   cloudshell cp :notes.txt -            # to standard output
    #[command(verbatim_doc_comment)]
    Cp(CpArgs),

    /// List environments in the region (DescribeEnvironments + GetEnvironmentStatus).
    List,

    /// Create an environment: the region's default one, or a VPC environment.
    Create(CreateArgs),

    /// Show an environment's status (GetEnvironmentStatus).
    Status(EnvArg),

    /// Resume a suspended environment (StartEnvironment).
    Start(WaitEnvArgs),

    /// Suspend a running environment, keeping its home directory (StopEnvironment).
    Stop(WaitEnvArgs),

    /// Delete an environment and its home directory (DeleteEnvironment).
    Delete(WaitEnvArgs),

    /// Open a session and print its data-channel URL and token (CreateSession).
    Session(SessionArgs),

    /// End a session (DeleteSession).
    DeleteSession(DeleteSessionArgs),

    /// Keep an environment from suspending (SendHeartBeat).
    Heartbeat(HeartbeatArgs),

    /// Get a presigned upload form for the environment's home (GetFileUploadUrls).
    UploadUrls(FileUrlsArgs),

    /// Get a presigned download URL from the environment's home (GetFileDownloadUrls).
    DownloadUrls(FileUrlsArgs),

    /// Call PutCredentials (works only from an AWS Console session; see --help).
    ///
    /// PutCredentials carries the Console's own encrypted token. With ordinary
    /// credentials the service answers TokenDecryptionException: to use AWS
    /// credentials inside an environment, export them in its shell instead.
    PutCredentials(EnvArg),

    /// Print a shell completion script.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },

    /// Run the local CloudShell emulator in the foreground.
    Emulator(Box<EmulatorArgs>),

    /// The erasure-coded, encrypted file store on CloudShell nodes: run its
    /// daemon (`store serve`) and use it (`put`, `get`, `ls`, ...).
    Store(Box<crate::store_args::StoreArgs>),
}

impl Command {
    /// Whether Ctrl-C ends this command (exit code 130). Not while AWS's
    /// session-manager-plugin runs: the terminal's Ctrl-C is for the remote
    /// shell then, and the plugin forwards it; this process ending would
    /// take the plugin down with it.
    pub fn stops_on_ctrl_c(&self) -> bool {
        match self {
            Self::Connect(a) => !a.ssm_plugin,
            // A mount unmounts on Ctrl-C, unless it is busy: then it says
            // so and goes on (exiting would leave a dead mount behind).
            Self::Store(s) => !matches!(s.command, crate::store_args::StoreCommand::Mount { .. }),
            _ => true,
        }
    }

    /// Whether the command serves until stopped (the daemon, the
    /// emulator): it gets malloc settings for a long life.
    pub fn runs_for_hours(&self) -> bool {
        match self {
            Self::Emulator(_) => true,
            Self::Store(s) => matches!(
                s.command,
                crate::store_args::StoreCommand::Serve(_)
                    | crate::store_args::StoreCommand::Mount { .. }
            ),
            _ => false,
        }
    }

    /// Whether the command is a few API calls in a row, which one thread
    /// serves as well as many (starting worker threads is a noticeable
    /// part of so short a run). Sessions, copies, the daemon and the
    /// emulator get the multi-threaded runtime: they move data both ways
    /// at once and read the terminal on a thread of their own.
    pub fn is_api_only(&self) -> bool {
        matches!(
            self,
            Self::List
                | Self::Create(_)
                | Self::Status(_)
                | Self::Start(_)
                | Self::Stop(_)
                | Self::Delete(_)
                | Self::DeleteSession(_)
                | Self::Heartbeat(_)
                | Self::UploadUrls(_)
                | Self::DownloadUrls(_)
                | Self::Completions { .. }
        )
    }
}

/// An environment, by id or name; omitted, the region's default environment.
#[derive(Debug, Args)]
pub struct EnvArg {
    /// Environment id or name [default: the region's default environment].
    pub env: Option<String>,
}

/// An environment and whether to wait for the change to finish.
#[derive(Debug, Args)]
pub struct WaitEnvArgs {
    #[command(flatten)]
    pub env: EnvArg,

    /// Wait until the change is complete.
    #[arg(long)]
    pub wait: bool,

    /// Give up waiting after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: Duration,
}

/// `up` flags.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Give up waiting after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: Duration,
}

/// `connect` flags.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub env: EnvArg,

    /// Export the local AWS credentials and region in the remote shell
    /// (read-only, not echoed, not kept in history).
    #[arg(long)]
    pub inject_credentials: bool,

    /// Use the installed session-manager-plugin instead of the built-in client.
    #[arg(long)]
    pub ssm_plugin: bool,

    /// Give up waiting for the environment after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: Duration,
}

/// `exec` flags.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub env: EnvArg,

    /// Start the environment if it is suspended, as `connect` does (with no
    /// ENV, create the region's default environment if there is none).
    #[arg(long)]
    pub start: bool,

    /// Give up waiting for the environment after this long (with --start).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: Duration,

    /// A shell command line (one argument), or a program and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `cp` flags.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Where to copy from: a local path, `-` (standard input) or ENV:PATH.
    pub source: String,

    /// Where to copy to: a local path, `-` (standard output) or ENV:PATH.
    pub destination: String,

    /// Copy a directory and everything in it (sent as a tar stream; modes,
    /// times and symbolic links kept).
    #[arg(short, long)]
    pub recursive: bool,

    /// Keep the modification time of a single file as well (trees always keep them).
    #[arg(short, long)]
    pub preserve: bool,

    /// Start the environment if it is suspended (with no ENV, create the
    /// region's default environment if there is none).
    #[arg(long)]
    pub start: bool,

    /// Move the bytes through the presigned URLs of GetFileUploadUrls /
    /// GetFileDownloadUrls instead of the shell session (files in the home
    /// directory only).
    #[arg(long)]
    pub via_urls: bool,

    /// Start over instead of resuming a partial copy left by an interrupted run.
    #[arg(long)]
    pub no_resume: bool,

    /// Print a JSON summary (the same as --output json).
    #[arg(long)]
    pub json: bool,

    /// Give up waiting for the environment after this long (with --start).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: Duration,
}

/// `create` flags.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A name for the environment (required for a VPC environment).
    #[arg(long)]
    pub name: Option<String>,

    /// Create a VPC environment in this VPC.
    #[arg(long, requires_all = ["subnet_id", "security_group_id"], value_name = "VPC_ID")]
    pub vpc_id: Option<String>,

    /// Subnet for a VPC environment (repeat or comma-separate for several).
    #[arg(
        long,
        value_delimiter = ',',
        requires = "vpc_id",
        value_name = "SUBNET_ID"
    )]
    pub subnet_id: Vec<String>,

    /// Security group for a VPC environment, 1 to 5 (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', requires = "vpc_id", value_name = "SG_ID")]
    pub security_group_id: Vec<String>,

    /// Wait until the environment is RUNNING.
    #[arg(long)]
    pub wait: bool,

    /// Give up waiting after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: Duration,
}

/// `session` flags.
#[derive(Debug, Args)]
pub struct SessionArgs {
    #[command(flatten)]
    pub env: EnvArg,

    /// Terminal tab id, a UUID v4 [default: a new random one].
    #[arg(long)]
    pub tab_id: Option<String>,

    /// Session type to ask for.
    #[arg(long, default_value = "TMUX")]
    pub session_type: String,

    /// Turn off the Amazon Q CLI integration in the session.
    #[arg(long)]
    pub no_q_cli: bool,
}

/// `delete-session` arguments.
#[derive(Debug, Args)]
pub struct DeleteSessionArgs {
    /// The session id `cloudshell session` printed.
    pub session_id: String,

    #[command(flatten)]
    pub env: EnvArg,
}

/// `heartbeat` flags.
#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    #[command(flatten)]
    pub env: EnvArg,

    /// Keep sending one heartbeat every DURATION until interrupted (e.g. 4m).
    #[arg(long, value_parser = parse_interval, value_name = "DURATION")]
    pub every: Option<Duration>,
}

/// `upload-urls` / `download-urls` flags.
#[derive(Debug, Args)]
pub struct FileUrlsArgs {
    #[command(flatten)]
    pub env: EnvArg,

    /// The file, relative to the environment's home directory.
    #[arg(long)]
    pub file: Option<String>,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (try 4m or 30s)"))?;
    if d < Duration::from_secs(1) {
        return Err("must be at least 1s".into());
    }
    Ok(d)
}
