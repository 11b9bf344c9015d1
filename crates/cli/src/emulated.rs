//! `--emulated`: an emulator started in this process, and the
//! [`ClientSource`] that reaches it (real HTTP on loopback, real signing).
//! The CLI's commands and the store daemon take that source like any other,
//! so the emulator never enters their code paths.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use cloudshell::{ClientSource, Region};
use cloudshell_emulator::{Emulator, EmulatorConfig};

/// Starts an emulator keeping its state in `data_dir`, serving every
/// CloudShell region and `extra` ones. Keep the emulator as long as the
/// source is used: dropping it stops it.
pub async fn start(
    data_dir: PathBuf,
    extra: &[Region],
) -> anyhow::Result<(Emulator, ClientSource)> {
    let mut config = EmulatorConfig::new(data_dir);
    for r in extra {
        if !config.regions.iter().any(|have| have == r.as_str()) {
            config.regions.push(r.to_string());
        }
    }
    let emulator = Emulator::start(config, SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .await
        .context(
            "could not start the embedded emulator (if an emulator already runs on this \
             data directory, reach it with --endpoint-url instead of --emulated)",
        )?;
    let cred = emulator
        .config()
        .credentials
        .first()
        .context("the emulator has no credentials configured")?;
    let source = ClientSource::endpoint(
        emulator.endpoint(),
        &cred.access_key_id,
        &cred.secret_access_key,
    );
    Ok((emulator, source))
}
