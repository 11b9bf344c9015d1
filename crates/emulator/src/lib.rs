//! A local emulator of AWS CloudShell.
//!
//! It serves the CloudShell control API for any number of regions on one
//! loopback listener, checks SigV4 signatures against the credentials it is
//! configured with, answers with AWS-shaped errors, and models environments
//! with their real lifecycle and limits: CREATING -> RUNNING, start and stop
//! through RESUMING and SUSPENDING, delete, one default and at most two VPC
//! environments per principal and region, suspension after inactivity unless
//! heart-beaten, optional reclaim (home wiped). State persists in a data
//! directory across restarts; every environment owns a home directory there.
//!
//! It is a product feature: point any CloudShell tool at it with
//! `AWS_ENDPOINT_URL_CLOUDSHELL` and the credentials it prints.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use cloudshell_emulator::{Emulator, EmulatorConfig};
//!
//! let emulator = Emulator::start(EmulatorConfig::new("/tmp/emu"), "127.0.0.1:0".parse()?).await?;
//! println!("endpoint: {}", emulator.endpoint());
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod args;
pub mod aws_error;
pub mod config;
pub mod data_channel;
pub mod faults;
pub mod files;
pub mod lifecycle;
pub mod live;
pub mod presign;
pub mod processes;
pub mod service;
pub mod sigv4;
pub mod ssm;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
pub use config::{EmulatorConfig, EmulatorCredential, FaultConfig, Timings};

/// A running emulator; it stops when dropped.
#[derive(Debug)]
pub struct Emulator {
    local_addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
    config: EmulatorConfig,
    state: Arc<state::AppState>,
}

impl Emulator {
    /// Opens the state in `config.data_dir`, binds `listen` and serves in the background.
    pub async fn start(mut config: EmulatorConfig, listen: SocketAddr) -> anyhow::Result<Self> {
        // Shells start in their homes and get them as HOME: a relative
        // data directory would point elsewhere from there.
        config.data_dir = std::path::absolute(&config.data_dir).with_context(|| {
            format!("cannot make {} an absolute path", config.data_dir.display())
        })?;
        std::fs::create_dir_all(config.data_dir.join("homes")).with_context(|| {
            format!(
                "could not create the data directory {}",
                config.data_dir.display()
            )
        })?;
        if !config.plain_sessions && !tmux_available() {
            // The README's first command must work on a fresh machine.
            tracing::warn!(
                "tmux is not installed: TMUX sessions run their shell straight in the pty \
                 (install tmux to run them inside it, as the Console's are)"
            );
            config.plain_sessions = true;
        }
        let store = store::Store::open(&config.data_dir.join("emulator.redb"))?;
        let state = Arc::new(state::AppState {
            service: service::Service::new(store, config.clone()),
            faults: faults::Faults::new(config.faults.clone()),
            live: live::LiveSessions::default(),
            revoked: Default::default(),
            credentials: std::sync::RwLock::new(config.credentials.clone()),
        });
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("could not listen on {listen}"))?;
        let local_addr = listener.local_addr().context("listener has no address")?;
        let app = api::router(state.clone());
        let task = tokio::spawn(async move {
            // Nagle off: a response's head and body are separate writes.
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!("cannot set TCP_NODELAY: {e}");
                }
            });
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("emulator server stopped: {e}");
            }
        });
        Ok(Self {
            local_addr,
            task: Some(task),
            config,
            state,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint URL clients should use.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.config
    }

    /// Accepts `credential` from now on: a principal (or another key of
    /// one) created while it runs.
    pub fn add_credential(&self, credential: EmulatorCredential) {
        self.state.add_credential(credential);
    }

    /// [`Emulator::add_credential`] as a function that can outlive this
    /// borrow (it does nothing once the emulator is dropped: its server
    /// is gone).
    pub fn credential_adder(&self) -> std::sync::Arc<dyn Fn(EmulatorCredential) + Send + Sync> {
        let state = Arc::downgrade(&self.state);
        std::sync::Arc::new(move |c| {
            if let Some(state) = state.upgrade() {
                state.add_credential(c);
            }
        })
    }

    /// Serves until the server task ends (normally never).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        match self.task.take() {
            Some(task) => task.await.context("emulator server task failed"),
            None => Ok(()),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Whether `tmux` can be run here.
fn tmux_available() -> bool {
    std::process::Command::new("tmux")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
