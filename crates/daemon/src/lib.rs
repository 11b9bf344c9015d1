//! The store daemon: keeps an agent running in a CloudShell environment in
//! every configured region, stores files across them with the store crate,
//! repairs what is lost, and serves the JSON API.
//!
//! - [`config`]: [`DaemonConfig`], from flags or a TOML file;
//! - [`environment`]: an environment made RUNNING, commands in its shell,
//!   uploads into its home;
//! - [`bootstrap`]: the shell commands that install and start the agent;
//! - [`manager`]: [`manager::NodeManager`], one task per region;
//! - [`node`]: a region's node: state, and the store's view of it;
//! - [`scrub`]: the scrubber;
//! - [`api`]: the JSON API.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), cloudshell_daemon::DaemonError> {
//! use cloudshell_daemon::{Daemon, DaemonConfig};
//!
//! let config = DaemonConfig {
//!     emulated: true,
//!     data_dir: "/tmp/store".into(),
//!     ..DaemonConfig::default()
//! };
//! let daemon = Daemon::start(config).await?;
//! println!("API at {}", daemon.url());
//! daemon.wait_ready(std::time::Duration::from_secs(120)).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod environment;
pub mod manager;
pub mod node;
pub mod scrub;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloudshell_net::quic::Pool;
use cloudshell_net::tls::Identity;
use cloudshell_store::{KeySource, Store, StoreSettings};
pub use config::DaemonConfig;
use manager::{AgentBinary, NodeEvent, NodeManager, Shared};
use node::{NodeHandle, NodeState};
use tokio::sync::mpsc;

/// Why the daemon could not start or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A file or socket of the daemon's.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The store (index, key).
    #[error(transparent)]
    Store(#[from] cloudshell_store::StoreError),
    /// The daemon's network identity or socket.
    #[error("network: {0}")]
    Net(String),
    /// The embedded emulator or the CloudShell client.
    #[error("cloudshell: {0}")]
    CloudShell(String),
    /// Not every node came up in time.
    #[error("not ready after {after:?}: {detail}")]
    NotReady {
        /// How long was waited.
        after: Duration,
        /// The nodes that are not connected, and why.
        detail: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

/// What the API handlers share.
#[derive(Debug)]
pub struct State {
    /// The store.
    pub store: Store,
    /// One node per region, in configuration order.
    pub nodes: Vec<NodeHandle>,
    /// The configuration it runs with.
    pub config: DaemonConfig,
    /// Told after every change to the index, so it is backed up.
    changed: tokio::sync::Notify,
    /// Whether a change waits to be backed up, and the last backup.
    backup: std::sync::Mutex<BackupStatus>,
    /// Told to start a scrub pass now.
    pub scrub_now: tokio::sync::Notify,
    /// The scrubber's progress.
    scrub: std::sync::Mutex<scrub::ScrubStatus>,
}

/// The index backup's progress, as the API shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BackupStatus {
    /// A change is not in a backup yet.
    pub pending: bool,
    /// The generation of the last backup written by this daemon.
    pub generation: Option<u64>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
}

impl State {
    /// The node of `id`.
    pub fn node(&self, id: &str) -> Option<&NodeHandle> {
        self.nodes.iter().find(|n| n.status().id == id)
    }

    /// Records a change to the index: it will be backed up shortly.
    pub fn touch(&self) {
        self.backup_status(|b| b.pending = true);
        self.changed.notify_one();
    }

    /// The backup's status, after `f` changed it.
    pub fn backup_status(&self, f: impl FnOnce(&mut BackupStatus)) -> BackupStatus {
        let mut b = self
            .backup
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut b);
        b.clone()
    }

    /// The store's handle of node `id`.
    pub fn store_node(&self, id: &str) -> Option<cloudshell_store::Node> {
        self.store.nodes().into_iter().find(|n| n.id == id)
    }
}

/// Aborts tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// A running daemon; it stops when dropped.
pub struct Daemon {
    state: Arc<State>,
    local_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pool: Pool,
    _emulator: Option<cloudshell_emulator::Emulator>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.pool.close();
    }
}

/// Everything that keeps the nodes up, before a store is opened over them.
struct Fleet {
    emulator: Option<cloudshell_emulator::Emulator>,
    pool: Pool,
    nodes: Vec<NodeHandle>,
    store_nodes: Vec<cloudshell_store::Node>,
    managers: Vec<NodeManager>,
    events: mpsc::UnboundedReceiver<NodeEvent>,
}

impl Fleet {
    async fn new(config: &DaemonConfig) -> Result<Self, DaemonError> {
        config.validate()?;
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(io(format!("cannot create {}", data_dir.display())))?;
        let regions = config.regions()?;
        let (emulator, clients) = clients(config, &regions).await?;
        let identity = Identity::load_or_create(&data_dir.join("identity"))
            .map_err(|e| DaemonError::Net(e.to_string()))?;
        let (pool, endpoints) = quic(config, &identity).await?;
        let agent = agent_binary(config)?;
        let nodes: Vec<NodeHandle> = regions.iter().map(|r| NodeHandle::new(r)).collect();
        let store_nodes: Vec<cloudshell_store::Node> = nodes
            .iter()
            .zip(&regions)
            .map(|(n, r)| {
                let node = cloudshell_store::Node::new(r.clone(), r.clone(), n.shards());
                // Offline until its agent answers: puts go where they can.
                node.set_online(false);
                node
            })
            .collect();
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            fingerprint: identity.fingerprint(),
            endpoints,
            stun: config.stun_servers(),
            agent,
            quota: config.agent_quota_bytes()?,
            heartbeat: config.heartbeat(),
            repair_after: config.repair_after(),
            events: events_tx,
        });
        let managers = regions
            .iter()
            .zip(clients)
            .zip(nodes.iter().zip(&store_nodes))
            .map(|((region, client), (node, store_node))| {
                NodeManager::new(
                    region.clone(),
                    client,
                    node.clone(),
                    store_node.clone(),
                    shared.clone(),
                )
            })
            .collect();
        Ok(Self {
            emulator,
            pool,
            nodes,
            store_nodes,
            managers,
            events,
        })
    }

    /// Starts the node managers.
    fn run(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.managers
            .drain(..)
            .map(|m| tokio::spawn(m.run()))
            .collect()
    }
}

/// Waits until every node in `nodes` is connected.
async fn wait_connected(nodes: &[NodeHandle], timeout: Duration) -> Result<(), DaemonError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let waiting: Vec<String> = nodes
            .iter()
            .map(NodeHandle::status)
            .filter(|s| s.state != NodeState::Connected)
            .map(|s| {
                format!(
                    "{} {:?}{}",
                    s.id,
                    s.state,
                    s.last_error.map(|e| format!(" ({e})")).unwrap_or_default()
                )
            })
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DaemonError::NotReady {
                after: timeout,
                detail: waiting.join("; "),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What `recover` found.
#[derive(Debug, Clone)]
pub struct RecoverReport {
    /// Files in the rebuilt index.
    pub files: usize,
    /// The backup generation it came from (milliseconds since the epoch).
    pub generation: u64,
    /// Nodes that answered.
    pub nodes_connected: usize,
}

impl Daemon {
    /// Starts everything: the emulator when asked, the node managers, the
    /// repair and backup loops and the HTTP server. Returns once the API
    /// answers; nodes come up in the background ([`Daemon::wait_ready`]).
    pub async fn start(config: DaemonConfig) -> Result<Self, DaemonError> {
        let mut fleet = Fleet::new(&config).await?;
        let key = key_source(&config, true)?;
        let store = Store::open(
            &config.data_dir.join("index.redb"),
            &key,
            fleet.store_nodes.clone(),
            StoreSettings::default(),
        )?;
        let mut tasks = fleet.run();
        let state = Arc::new(State {
            store,
            nodes: fleet.nodes.clone(),
            config: config.clone(),
            changed: tokio::sync::Notify::new(),
            backup: std::sync::Mutex::new(BackupStatus::default()),
            scrub_now: tokio::sync::Notify::new(),
            scrub: std::sync::Mutex::new(scrub::ScrubStatus::default()),
        });
        let events = std::mem::replace(&mut fleet.events, mpsc::unbounded_channel().1);
        tasks.push(tokio::spawn(repair_loop(state.clone(), events)));
        tasks.push(tokio::spawn(backup_loop(state.clone())));
        tasks.push(tokio::spawn(scrub::run(
            state.clone(),
            Duration::from_secs(config.scrub_interval_secs.max(1)),
        )));

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(io(format!("cannot listen on {}", config.listen)))?;
        let local_addr = listener
            .local_addr()
            .map_err(io("the listener has no address"))?;
        let app = api::router(state.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("API server stopped: {e}");
            }
        }));
        Ok(Self {
            state,
            local_addr,
            tasks,
            pool: fleet.pool.clone(),
            _emulator: fleet.emulator.take(),
        })
    }

    /// Rebuilds the index in an empty data directory from the backups on
    /// the nodes, with the store's key: brings the nodes up, finds the
    /// newest backup that decodes, and writes the index. The agents keep
    /// running for the `serve` that follows.
    pub async fn recover(
        config: DaemonConfig,
        wait: Duration,
    ) -> Result<RecoverReport, DaemonError> {
        let index_path = config.data_dir.join("index.redb");
        if index_path.exists() {
            return Err(config::ConfigError::Invalid(format!(
                "{} already holds an index: recover into an empty data directory",
                config.data_dir.display()
            ))
            .into());
        }
        let key = key_source(&config, false)?;
        let mut fleet = Fleet::new(&config).await?;
        let tasks = fleet.run();
        let _stop = AbortOnDrop(tasks);
        // Every node if it comes; any k of them are enough to decode.
        let _ = wait_connected(&fleet.nodes, wait).await;
        let connected = fleet
            .nodes
            .iter()
            .filter(|n| n.status().state == NodeState::Connected)
            .count();
        let (store, generation) = Store::recover_from_nodes(
            &index_path,
            &key,
            fleet.store_nodes.clone(),
            StoreSettings::default(),
        )
        .await?;
        let files = store
            .index()
            .files()
            .map_err(|e| DaemonError::Store(e.into()))?
            .len();
        fleet.pool.close();
        Ok(RecoverReport {
            files,
            generation,
            nodes_connected: connected,
        })
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The state the API serves.
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Waits until every node is connected.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), DaemonError> {
        wait_connected(&self.state.nodes, timeout).await
    }

    /// Serves until the process is stopped.
    pub async fn wait(self) {
        std::future::pending::<()>().await;
    }
}

/// One CloudShell client per region: against the emulator started here, or
/// the configured endpoint, or AWS.
async fn clients(
    config: &DaemonConfig,
    regions: &[String],
) -> Result<
    (
        Option<cloudshell_emulator::Emulator>,
        Vec<cloudshell::Client>,
    ),
    DaemonError,
> {
    let cs = |e: &dyn std::fmt::Display| DaemonError::CloudShell(e.to_string());
    let mut out = Vec::new();
    if config.emulated {
        let mut emulator_config = cloudshell_emulator::EmulatorConfig::new(
            config
                .emulator_data_dir
                .clone()
                .unwrap_or_else(|| config.data_dir.join("emulator")),
        );
        emulator_config.regions = regions.to_vec();
        let emulator = cloudshell_emulator::Emulator::start(
            emulator_config,
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
        .map_err(|e| DaemonError::CloudShell(format!("cannot start the emulator: {e:#}")))?;
        let cred = emulator
            .config()
            .credentials
            .first()
            .ok_or_else(|| DaemonError::CloudShell("the emulator has no credentials".into()))?
            .clone();
        for r in regions {
            let c = cloudshell::Config::builder()
                .region(cloudshell::Region::new(r.as_str()).map_err(|e| cs(&e))?)
                .endpoint_url(emulator.endpoint())
                .credentials(cloudshell::Credentials::new(
                    cred.access_key_id.clone(),
                    cred.secret_access_key.clone(),
                    None,
                    None,
                    "cloudshell-store-emulated",
                ))
                .build()
                .map_err(|e| cs(&e))?;
            out.push(cloudshell::Client::new(c));
        }
        return Ok((Some(emulator), out));
    }
    for r in regions {
        let c = cloudshell::Config::load()
            .region(Some(
                cloudshell::Region::new(r.as_str()).map_err(|e| cs(&e))?,
            ))
            .endpoint_url(config.endpoint_url.clone())
            .load()
            .await
            .map_err(|e| cs(&e))?;
        out.push(cloudshell::Client::new(c));
    }
    Ok((None, out))
}

/// The daemon's QUIC socket and the endpoints agents punch towards: the
/// public address STUN saw, and the local one.
async fn quic(
    config: &DaemonConfig,
    identity: &Identity,
) -> Result<(Pool, Vec<SocketAddr>), DaemonError> {
    let socket = std::net::UdpSocket::bind(config.quic_listen)
        .map_err(io(format!("cannot bind UDP {}", config.quic_listen)))?;
    let servers = config.stun_servers();
    let probe = socket
        .try_clone()
        .map_err(io("cannot share the QUIC socket"))?;
    let found = {
        let servers = servers.clone();
        tokio::task::spawn_blocking(move || {
            cloudshell_net::stun::discover(&probe, &servers, Duration::from_secs(3))
        })
        .await
        .map_err(|e| DaemonError::Net(e.to_string()))?
    };
    for f in &found.failures {
        tracing::warn!("STUN: {f}");
    }
    if let Some(w) = found.symmetric_warning() {
        tracing::warn!("{w}");
    }
    let bound = socket
        .local_addr()
        .map_err(io("the UDP socket has no address"))?;
    let mut endpoints: Vec<SocketAddr> = found.public.into_iter().collect();
    let local = if bound.ip().is_unspecified() {
        // The interface towards the STUN servers, or loopback without any:
        // then only agents on this machine (the emulator's) can reach us.
        let toward = servers.first().and_then(|s| {
            use std::net::ToSocketAddrs as _;
            s.to_socket_addrs().ok()?.next()
        });
        let ip = toward
            .and_then(|t| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
                s.connect(t).ok()?;
                Some(s.local_addr().ok()?.ip())
            })
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(ip, bound.port())
    } else {
        bound
    };
    if !endpoints.contains(&local) {
        endpoints.push(local);
    }
    let pool = Pool::new(socket, identity).map_err(|e| DaemonError::Net(e.to_string()))?;
    pool.set_nat(found.nat);
    Ok((pool, endpoints))
}

/// The agent binary: the configured one, or `cloudshell-agent` next to
/// this program.
fn agent_binary(config: &DaemonConfig) -> Result<AgentBinary, DaemonError> {
    let path = match &config.agent_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(io("cannot find this program"))?
            .with_file_name("cloudshell-agent"),
    };
    AgentBinary::load(&path).map_err(io(format!(
        "cannot read the agent binary {} (build it with `cargo build --release -p \
         cloudshell-agent`, or point agent_binary / --agent-binary at it)",
        path.display()
    )))
}

/// The default key file, created for a new store when no key was given.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("store.key")
}

/// The key the configuration names; with none named, the data directory's
/// key file, created for a new store when `create` (never for `recover`:
/// a new key cannot open an old store).
fn key_source(config: &DaemonConfig, create: bool) -> Result<KeySource, DaemonError> {
    if config.no_encryption {
        return Ok(KeySource::NoEncryption);
    }
    if let Some(var) = &config.passphrase_env {
        let p = std::env::var(var).map_err(|_| {
            config::ConfigError::Invalid(format!(
                "--passphrase-env {var}: the environment variable {var} is not set"
            ))
        })?;
        return Ok(KeySource::Passphrase(p));
    }
    let path = match &config.key_file {
        Some(p) => p.clone(),
        None => {
            let p = default_key_file(&config.data_dir);
            if !p.exists() && !create {
                return Err(config::ConfigError::Invalid(
                    "give the store's key: --key-file FILE or --passphrase-env VAR".to_owned(),
                )
                .into());
            }
            if !p.exists() {
                cloudshell_store::MasterKey::generate_key_file(&p)
                    .map_err(|e| DaemonError::Store(e.into()))?;
                tracing::warn!(
                    "created the key file {}: keep a copy; without it nothing stored can be read",
                    p.display()
                );
            }
            p
        }
    };
    Ok(KeySource::KeyFile(path))
}

/// Rebuilds what a lost or wiped node held.
/// Backs the index up on the nodes after changes, at most once a second.
async fn backup_loop(state: Arc<State>) {
    loop {
        state.changed.notified().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Cleared before the export: a change made during it sets it again.
        state.backup_status(|b| b.pending = false);
        match state.store.backup_index().await {
            Ok(r) => {
                tracing::debug!(
                    generation = r.generation,
                    bytes = r.bytes,
                    "index backed up"
                );
                state.backup_status(|b| {
                    b.generation = Some(r.generation);
                    b.last_error = None;
                });
            }
            Err(e) => {
                tracing::warn!("index backup failed (will retry): {e}");
                state.backup_status(|b| b.last_error = Some(e.to_string()));
                tokio::time::sleep(Duration::from_secs(5)).await;
                state.touch();
            }
        }
    }
}

async fn repair_loop(state: Arc<State>, mut events: mpsc::UnboundedReceiver<NodeEvent>) {
    while let Some(event) = events.recv().await {
        let node = match &event {
            NodeEvent::Lost { node } => node.clone(),
            NodeEvent::Connected {
                node,
                fresh_home: true,
            } => node.clone(),
            NodeEvent::Connected { .. } => continue,
        };
        if let Err(e) = repair_node(&state, &node).await {
            tracing::warn!(node = %node, "repair: {e}");
        }
    }
}

/// Repairs every file with a shard on `node`.
pub async fn repair_node(state: &State, node: &str) -> Result<usize, DaemonError> {
    let mut repaired = 0;
    for record in state
        .store
        .index()
        .files()
        .map_err(|e| DaemonError::Store(e.into()))?
    {
        let Some((_, manifest)) = state
            .store
            .index()
            .file(&record.name)
            .map_err(|e| DaemonError::Store(e.into()))?
        else {
            continue;
        };
        let touches = manifest
            .chunks
            .iter()
            .any(|c| c.shards.iter().any(|s| s.node == node));
        if touches {
            match state.store.repair(&record.name).await {
                Ok(report) => {
                    repaired += report.shards_rebuilt;
                    if report.shards_rebuilt > 0 {
                        state.touch();
                    }
                }
                Err(e) => tracing::warn!(file = %record.name, "repair: {e}"),
            }
        }
    }
    Ok(repaired)
}
