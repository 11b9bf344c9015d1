//! `cloudshell-emulator`: a local AWS CloudShell.

use clap::Parser;
use cloudshell_emulator::args::{EmulatorArgs, run};

/// A local emulator of the AWS CloudShell API, for testing CloudShell tools offline.
#[derive(Debug, Parser)]
#[command(name = "cloudshell-emulator", version)]
struct Cli {
    #[command(flatten)]
    args: EmulatorArgs,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CLOUDSHELL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse().args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudshell-emulator: error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
