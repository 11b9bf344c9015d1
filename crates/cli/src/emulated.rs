//! `--emulated`: an emulator started in this process, and the
//! [`ClientSource`] of each principal that reaches it (real HTTP on
//! loopback, real signing). The CLI's commands and the store daemon take
//! those sources like any other, so the emulator never enters their code
//! paths.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use cloudshell::{ClientSource, Region};
use cloudshell_daemon::config::DEFAULT_PRINCIPAL;
use cloudshell_daemon::nodes::sources::Sources;
use cloudshell_emulator::{Emulator, EmulatorConfig, EmulatorCredential};

/// Starts an emulator keeping its state in `data_dir`, serving every
/// CloudShell region and `extra` ones, with the default principal's
/// credentials and those of the named `principals`. Keep the emulator as
/// long as the sources are used: dropping it stops it.
pub async fn start(
    data_dir: PathBuf,
    extra: &[Region],
    principals: &[String],
) -> anyhow::Result<(Emulator, Sources)> {
    let mut config = EmulatorConfig::new(data_dir);
    for r in extra {
        if !config.regions.iter().any(|have| have == r.as_str()) {
            config.regions.push(r.to_string());
        }
    }
    let named: Vec<(&String, EmulatorCredential)> = principals
        .iter()
        .filter(|p| *p != DEFAULT_PRINCIPAL)
        .map(|p| (p, EmulatorCredential::for_principal(p)))
        .collect();
    config
        .credentials
        .extend(named.iter().map(|(_, c)| c.clone()));
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
    let source = |c: &EmulatorCredential| {
        ClientSource::endpoint(emulator.endpoint(), &c.access_key_id, &c.secret_access_key)
    };
    let mut sources = Sources::single(source(cred));
    for (name, cred) in &named {
        sources = sources.with(name.as_str(), source(cred));
    }
    // A principal added while the store runs (or found in its node
    // changes at a later start) gets its credentials from the emulator
    // then, as IAM would make a new user's.
    let add = emulator.credential_adder();
    let endpoint = emulator.endpoint();
    let sources = sources.making(std::sync::Arc::new(move |name: &str| {
        let c = EmulatorCredential::for_principal(name);
        add(c.clone());
        Ok(ClientSource::endpoint(
            endpoint.clone(),
            &c.access_key_id,
            &c.secret_access_key,
        ))
    }));
    Ok((emulator, sources))
}
