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
//! The daemon makes its CloudShell clients from a [`cloudshell::ClientSource`]:
//! AWS through the standard chain, or an endpoint such as an emulator that
//! the caller started (`cloudshell store serve --emulated` does that); the
//! daemon itself never knows which.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), cloudshell_daemon::DaemonError> {
//! use cloudshell::{ClientSource, Region};
//! use cloudshell_daemon::{Daemon, DaemonConfig};
//!
//! let config = DaemonConfig {
//!     regions: vec![Region::new("us-east-1")?, Region::new("eu-west-1")?],
//!     data_dir: "/tmp/store".into(),
//!     ..DaemonConfig::default()
//! };
//! let daemon = Daemon::start(config, ClientSource::aws(None, None)).await?;
//! println!("API at {}", daemon.url());
//! daemon.wait_ready(std::time::Duration::from_secs(120)).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod environment;
mod fleet;
pub mod framing;
pub mod health;
pub mod jobs;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod s3;
pub mod scrub;
mod upkeep;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloudshell::{ClientSource, Region};
use cloudshell_net::quic::Pool;
use cloudshell_store::{KeySource, Store, StoreSettings};
pub use config::DaemonConfig;
use fleet::{Fleet, wait_connected};
use manager::{NodeManager, Shared};
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
    /// A CloudShell client could not be made.
    #[error("cannot make a CloudShell client")]
    Client(#[from] cloudshell::ConfigError),
    /// The S3 endpoint's state.
    #[error("S3: {0}")]
    S3(String),
    /// Not a region name.
    #[error(transparent)]
    Region(#[from] cloudshell::ValidationError),
    /// A node for that region exists already.
    #[error("the region {0} has a node already")]
    Exists(String),
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
    /// One node per region, in configuration order (regions added later
    /// at the end).
    nodes: std::sync::RwLock<Vec<NodeHandle>>,
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
    /// API request latencies.
    pub latencies: metrics::Latencies,
    /// Long operations.
    pub jobs: jobs::Jobs,
    /// What a region added while running is made with.
    regions: RegionMaker,
    /// Tasks started while running (node managers of added regions).
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Known-bad shards and files under repair.
    pub health: health::ShardHealth,
    /// Counts changes; live views (`/api/events`) wait on it.
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// The S3 endpoint's buckets, object metadata and keys.
    pub s3: s3::S3State,
}

/// Makes the node of a region added while the daemon runs.
struct RegionMaker {
    shared: Arc<Shared>,
    source: ClientSource,
}

impl std::fmt::Debug for RegionMaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionMaker").finish_non_exhaustive()
    }
}

pub use cloudshell_store_api::BackupStatus;

impl State {
    /// The nodes.
    pub fn nodes(&self) -> Vec<NodeHandle> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The node of `id`.
    pub fn node(&self, id: &str) -> Option<NodeHandle> {
        self.nodes().into_iter().find(|n| n.status().id == id)
    }

    /// Adds a node in `region` and starts bringing it up.
    pub async fn add_region(&self, region: Region) -> Result<NodeHandle, DaemonError> {
        let id = region.as_str();
        if self.node(id).is_some() {
            return Err(DaemonError::Exists(id.to_owned()));
        }
        let client = self.regions.source.client(&region).await?;
        let node = NodeHandle::new(&region, self.changes.clone());
        let store_node = cloudshell_store::Node::new(id, id, node.shards());
        store_node.set_online(false);
        self.store.add_node(store_node.clone())?;
        {
            let mut nodes = self
                .nodes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if nodes.iter().any(|n| n.status().id == id) {
                return Err(DaemonError::Exists(id.to_owned()));
            }
            nodes.push(node.clone());
        }
        let manager = NodeManager::new(
            region.clone(),
            client,
            node.clone(),
            store_node,
            self.regions.shared.clone(),
        );
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tokio::spawn(manager.run()));
        Ok(node)
    }

    /// Records a change to the index: it will be backed up shortly.
    pub fn touch(&self) {
        self.backup_status(|b| b.pending = true);
        self.changed.notify_one();
        self.bump();
    }

    /// Tells live views something changed.
    pub fn bump(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    /// A receiver of change counts, for live views.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The ids of the nodes serving now.
    pub fn serving(&self) -> std::collections::HashSet<String> {
        self.store
            .nodes()
            .into_iter()
            .filter(cloudshell_store::Node::is_online)
            .map(|n| n.id)
            .collect()
    }

    /// Repairs one file, keeping its shard health up to date with what the
    /// repair found on the nodes: shards it could not rebuild stay marked
    /// missing (they count against the losses the file survives), and the
    /// file is repaired again when nodes come back.
    pub async fn repair_file(
        &self,
        name: &str,
    ) -> Result<cloudshell_store::RepairReport, cloudshell_store::StoreError> {
        let file_id = self.store.index().file(name)?.map(|(r, _)| r.file_id);
        if let Some(id) = file_id {
            self.health.set_repairing(id, true);
            self.bump();
        }
        let result = self.store.repair(name).await;
        if let Some(id) = file_id {
            self.health.set_repairing(id, false);
            match &result {
                Ok(report) => self.health.repaired(id, &report.left),
                // Replaced or removed meanwhile: that version is gone.
                Err(cloudshell_store::StoreError::NotFound(_)) => self.health.clear(id),
                Err(_) => self.health.repair_failed(id),
            }
        }
        match &result {
            Ok(r) if r.shards_rebuilt + r.shards_spread > 0 => self.touch(),
            _ => self.bump(),
        }
        result
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

    /// Caps what the store keeps on node `id` (`None` lifts the cap), now
    /// and after restarts (`DATA_DIR/node-quotas.json`). Returns false when
    /// there is no such node.
    pub fn set_node_quota(&self, id: &str, bytes: Option<u64>) -> Result<bool, DaemonError> {
        let (Some(store_node), Some(node)) = (self.store_node(id), self.node(id)) else {
            return Ok(false);
        };
        let path = quota_file(&self.config.data_dir);
        let mut kept = read_quotas(&path)?;
        match bytes {
            Some(b) => kept.insert(id.to_owned(), b),
            None => kept.remove(id),
        };
        let text = serde_json::to_vec_pretty(&kept).map_err(|e| DaemonError::Io {
            what: format!("cannot encode {}", path.display()),
            source: std::io::Error::other(e),
        })?;
        let temp = path.with_extension("json.tmp");
        std::fs::write(&temp, text).map_err(io(format!("cannot write {}", temp.display())))?;
        std::fs::rename(&temp, &path).map_err(io(format!("cannot write {}", path.display())))?;
        store_node.set_quota(bytes.unwrap_or(cloudshell_store::NO_QUOTA));
        node.update(|s| {
            s.store_quota = bytes;
            let cap = bytes.unwrap_or(u64::MAX).saturating_sub(s.used);
            s.room = s.room.min(cap);
        });
        self.bump();
        Ok(true)
    }
}

/// The S3 endpoint: s3s behind axum, every request signed with one of the
/// daemon's access keys.
fn s3_router(state: Arc<State>) -> axum::Router {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3::StoreS3::new(state.clone()));
    builder.set_auth(s3::KeyAuth::new(state));
    let service = builder.build();
    axum::Router::new()
        .fallback_service(axum::error_handling::HandleError::new(
            service,
            |e: s3s::HttpError| async move {
                tracing::warn!("S3 request failed: {e:?}");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            },
        ))
        .layer(axum::middleware::from_fn(api::one_length))
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
    s3_addr: Option<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pool: Pool,
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
        for t in self
            .state
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            t.abort();
        }
        self.pool.close();
    }
}

/// What `recover` found.
#[derive(Debug, Clone)]
pub struct RecoverReport {
    /// Files in the rebuilt index.
    pub files: usize,
    /// The backup generation it came from (milliseconds since the epoch).
    pub generation: u64,
    /// Newer generations passed over, each with why it did not decode.
    pub skipped: Vec<String>,
    /// Nodes that answered.
    pub nodes_connected: usize,
    /// S3 buckets restored.
    pub s3_buckets: usize,
    /// S3 objects restored.
    pub s3_objects: usize,
}

impl Daemon {
    /// Starts everything: the node managers (their clients from
    /// `source`), the repair and backup loops and the HTTP servers.
    /// Returns once the API answers; nodes come up in the background
    /// ([`Daemon::wait_ready`]).
    pub async fn start(config: DaemonConfig, source: ClientSource) -> Result<Self, DaemonError> {
        let mut fleet = Fleet::new(&config, source).await?;
        let key = key_source(&config, true)?;
        apply_quotas(&config, &fleet.store_nodes)?;
        let store = Store::open(
            &config.data_dir.join("index.redb"),
            &key,
            fleet.store_nodes.clone(),
            StoreSettings::default(),
        )?;
        let mut tasks = fleet.run();
        let state = Arc::new(State {
            store,
            nodes: std::sync::RwLock::new(fleet.nodes.clone()),
            config: config.clone(),
            changed: tokio::sync::Notify::new(),
            backup: std::sync::Mutex::new(BackupStatus::default()),
            scrub_now: tokio::sync::Notify::new(),
            scrub: std::sync::Mutex::new(scrub::ScrubStatus::default()),
            latencies: metrics::Latencies::default(),
            jobs: jobs::Jobs::default(),
            regions: RegionMaker {
                shared: fleet.shared.clone(),
                source: fleet.source.clone(),
            },
            tasks: std::sync::Mutex::new(Vec::new()),
            health: health::ShardHealth::default(),
            changes: fleet.changes.clone(),
            s3: s3::S3State {
                meta: s3::meta::Meta::open(&config.data_dir.join("s3.redb"))
                    .map_err(|e| DaemonError::S3(e.to_string()))?,
                keys: s3::keys::Keys::open(&config.data_dir.join("s3-keys.json"))
                    .map_err(|e| DaemonError::S3(e.to_string()))?,
                locks: s3::write::KeyLocks::default(),
            },
        });
        // Before S3 answers: object metadata an earlier version kept beside
        // the index goes into the objects' own records.
        let moved = s3::write::migrate_legacy_objects(&state)
            .await
            .map_err(|e| DaemonError::S3(e.to_string()))?;
        if moved > 0 {
            tracing::info!(objects = moved, "S3 object metadata moved into the index");
        }
        let events = std::mem::replace(&mut fleet.events, mpsc::unbounded_channel().1);
        tasks.push(tokio::spawn(upkeep::repair_loop(state.clone(), events)));
        tasks.push(tokio::spawn(upkeep::backup_loop(state.clone())));
        {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                let done = s3::write::collect_leftovers(&state).await;
                if done != s3::write::Leftovers::default() {
                    tracing::info!(
                        deleted = done.deleted,
                        "tidied what interrupted S3 writes left"
                    );
                }
            }));
        }
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
            if let Err(e) = axum::serve(framing::StrictListener(listener), app).await {
                tracing::error!("API server stopped: {e}");
            }
        }));
        let s3_addr = match config.s3_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(io(format!("cannot listen on {addr} for S3")))?;
                let bound = listener
                    .local_addr()
                    .map_err(io("the S3 listener has no address"))?;
                let router = s3_router(state.clone());
                tasks.push(tokio::spawn(async move {
                    if let Err(e) = axum::serve(framing::StrictListener(listener), router).await {
                        tracing::error!("S3 endpoint stopped: {e}");
                    }
                }));
                Some(bound)
            }
            None => None,
        };
        Ok(Self {
            state,
            local_addr,
            s3_addr,
            tasks,
            pool: fleet.pool.clone(),
        })
    }

    /// Rebuilds the index in an empty data directory from the backups on
    /// the nodes, with the store's key: brings the nodes up, finds the
    /// newest backup that decodes, and writes the index. The agents keep
    /// running for the `serve` that follows.
    pub async fn recover(
        config: DaemonConfig,
        source: ClientSource,
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
        let mut fleet = Fleet::new(&config, source).await?;
        let tasks = fleet.run();
        let _stop = AbortOnDrop(tasks);
        // Every node if it comes; any k of them are enough to decode.
        let _ = wait_connected(&fleet.nodes, wait).await;
        let connected = fleet
            .nodes
            .iter()
            .filter(|n| n.status().state == NodeState::Connected)
            .count();
        let (store, generation, skipped) = Store::recover_from_nodes(
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
        let s3_path = config.data_dir.join("s3.redb");
        let s3 = restore_s3(&store, &s3_path);
        fleet.pool.close();
        let (s3_buckets, s3_objects) = match s3 {
            Ok(counts) => counts,
            Err(e) => {
                // All or nothing: the directory goes back to empty.
                drop(store);
                let _ = std::fs::remove_file(&index_path);
                let _ = std::fs::remove_file(&s3_path);
                return Err(e);
            }
        };
        Ok(RecoverReport {
            files,
            generation,
            skipped: skipped.iter().map(ToString::to_string).collect(),
            nodes_connected: connected,
            s3_buckets,
            s3_objects,
        })
    }

    /// The S3 endpoint's URL, when it runs.
    pub fn s3_url(&self) -> Option<String> {
        self.s3_addr.map(|a| format!("http://{a}"))
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
        wait_connected(&self.state.nodes(), timeout).await
    }

    /// Serves until the process is stopped.
    pub async fn wait(self) {
        std::future::pending::<()>().await;
    }
}

/// Where node quotas set while running are kept.
fn quota_file(data_dir: &Path) -> PathBuf {
    data_dir.join("node-quotas.json")
}

/// The node quotas kept in `path` (none if it does not exist).
fn read_quotas(path: &Path) -> Result<std::collections::BTreeMap<String, u64>, DaemonError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            config::ConfigError::Invalid(format!(
                "{} is not a map of node quotas ({e}); fix or remove it",
                path.display()
            ))
            .into()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Default::default()),
        Err(e) => Err(io(format!("cannot read {}", path.display()))(e)),
    }
}

/// Puts the configured node quotas, then those set while running, on the
/// store's nodes.
fn apply_quotas(
    config: &DaemonConfig,
    nodes: &[cloudshell_store::Node],
) -> Result<(), DaemonError> {
    let mut quotas = std::collections::BTreeMap::new();
    for (region, size) in &config.node_quotas {
        let bytes = cloudshell_store::shard_store::parse_size(size).ok_or_else(|| {
            config::ConfigError::Invalid(format!(
                "node_quotas: {size:?} for {region} is not a size; try 200M or a number of bytes"
            ))
        })?;
        quotas.insert(region.to_string(), bytes);
    }
    quotas.extend(read_quotas(&quota_file(&config.data_dir))?);
    for (region, bytes) in quotas {
        let node = nodes
            .iter()
            .find(|n| n.id == region.as_str())
            .ok_or_else(|| {
                config::ConfigError::Invalid(format!(
                    "node_quotas names {region}, which is not one of this store's regions"
                ))
            })?;
        node.set_quota(bytes);
    }
    Ok(())
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

/// Loads the S3 metadata a recovered index carries into a new `s3.redb`.
/// Returns the buckets and objects there are.
fn restore_s3(store: &Store, path: &std::path::Path) -> Result<(usize, usize), DaemonError> {
    let blob = store
        .index()
        .extra(s3::INDEX_EXTRA)
        .map_err(|e| DaemonError::Store(e.into()))?;
    let Some(blob) = blob else {
        return Ok((0, 0));
    };
    let meta = s3::meta::Meta::open(path).map_err(|e| DaemonError::S3(e.to_string()))?;
    let buckets = meta
        .import(&blob)
        .map_err(|e| DaemonError::S3(e.to_string()))?;
    let objects = store
        .index()
        .files_from(s3::meta::OBJECTS_DIR, None, usize::MAX)
        .map_err(|e| DaemonError::Store(e.into()))?
        .len();
    Ok((buckets, objects))
}
