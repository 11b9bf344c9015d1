//! A running daemon ([`Daemon`]): starts the nodes, opens the store over
//! them, runs the background tasks and serves the API and the S3 endpoint;
//! or, for `recover`, rebuilds the index from the backups on the nodes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudshell_net::quic::Pool;
use cloudshell_store::{KeySource, Store, StoreSettings};
use tokio::sync::mpsc;

use crate::config::{ConfigError, DaemonConfig};
use crate::error::{self, DaemonError, io};
use crate::http::{self, framing};
use crate::nodes::fleet::{Fleet, wait_connected};
use crate::nodes::health;
use crate::nodes::node::NodeState;
use crate::nodes::sources::Sources;
use crate::state::jobs;
use crate::state::latency;
use crate::state::{BackupStatus, RegionMaker, State, apply_quotas};
use crate::upkeep::{self, scrub};
use cloudshell_s3 as s3;

/// The S3 endpoint: s3s behind axum, every request signed with one of the
/// daemon's access keys.
fn s3_router(state: Arc<State>) -> axum::Router {
    let s3 = state.s3.clone();
    let service = s3::service(state, s3.clone());
    axum::Router::new()
        .fallback_service(axum::error_handling::HandleError::new(
            service,
            |e: s3s::HttpError| async move {
                tracing::warn!("S3 request failed: {e:?}");
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            },
        ))
        .layer(axum::middleware::from_fn(http::s3_post_form))
        .layer(axum::middleware::from_fn(http::s3_precheck))
        .layer(axum::middleware::from_fn_with_state(s3, http::s3_cors))
        .layer(axum::middleware::from_fn(http::one_length))
        // Outermost: every refusal of a request with a body closes.
        .layer(axum::middleware::from_fn(http::close_after_refused_body))
}

/// Serves `app` on `listener`, over TLS when `tls` is given.
fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls: Option<&http::tls::Tls>,
    what: &'static str,
) -> Result<tokio::task::JoinHandle<()>, DaemonError> {
    Ok(match tls {
        Some(tls) => {
            let listener = tls
                .listener(listener)
                .map_err(io("the listener has no address"))?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("{what} stopped: {e}");
                }
            })
        }
        None => tokio::spawn(async move {
            if let Err(e) = axum::serve(framing::StrictListener(listener), app).await {
                tracing::error!("{what} stopped: {e}");
            }
        }),
    })
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
    tls: Option<http::tls::Tls>,
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
    pub async fn start(
        config: DaemonConfig,
        sources: impl Into<Sources>,
    ) -> Result<Self, DaemonError> {
        let mut fleet = Fleet::new(&config, sources.into()).await?;
        let key = key_source(&config, true)?;
        apply_quotas(&config, &fleet.store_nodes)?;
        let index = config.data_dir.join("index.redb");
        let open = |key: &KeySource| {
            Store::open(
                &index,
                key,
                fleet.store_nodes.clone(),
                StoreSettings::default(),
            )
        };
        let store = match &key {
            KeySource::KeyFile(path) => crate::state::keys::open_key_file(path, open)?,
            other => open(other)?,
        };
        let mut tasks = fleet.run();
        let state = Arc::new(State {
            store,
            nodes: std::sync::RwLock::new(fleet.nodes.clone()),
            config: config.clone(),
            changed: tokio::sync::Notify::new(),
            backup: std::sync::Mutex::new(BackupStatus::default()),
            scrub_now: tokio::sync::Notify::new(),
            scrub: std::sync::Mutex::new(cloudshell_store_api::ScrubStatus::default()),
            latencies: latency::Latencies::default(),
            jobs: jobs::Jobs::default(),
            regions: RegionMaker {
                shared: fleet.shared.clone(),
                sources: fleet.sources.clone(),
            },
            tasks: std::sync::Mutex::new(Vec::new()),
            health: health::ShardHealth::default(),
            changes: fleet.changes.clone(),
            s3: Arc::new(s3::S3State {
                meta: s3::meta::Meta::open(&config.data_dir.join("s3.redb"))
                    .map_err(error::s3("cannot open the buckets"))?,
                keys: s3::keys::Keys::open(&config.data_dir.join("s3-keys.json"))
                    .map_err(error::s3("cannot open the access keys"))?,
                locks: s3::write::KeyLocks::default(),
            }),
        });
        // Before S3 answers: object metadata an earlier version kept beside
        // the index goes into the objects' own records.
        let moved = s3::write::migrate_legacy_objects(state.as_ref(), &state.s3)
            .await
            .map_err(error::s3("cannot move object metadata into the index"))?;
        if moved > 0 {
            tracing::info!(objects = moved, "S3 object metadata moved into the index");
        }
        let events = std::mem::replace(&mut fleet.events, mpsc::unbounded_channel().1);
        tasks.push(tokio::spawn(upkeep::repair::repair_loop(
            state.clone(),
            events,
        )));
        tasks.push(tokio::spawn(upkeep::backup::backup_loop(state.clone())));
        tasks.push(tokio::spawn(upkeep::drain::drain_loop(state.clone())));
        tasks.push(tokio::spawn(upkeep::memory::release_loop(state.clone())));
        {
            let state = state.clone();
            tasks.push(tokio::spawn(async move {
                let done = s3::write::collect_leftovers(state.as_ref(), &state.s3).await;
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
        let tls = http::tls::Tls::from_config(&config)?;
        let app = http::api::router(state.clone());
        tasks.push(serve(listener, app, tls.as_ref(), "API server")?);
        let s3_addr = match config.s3_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(io(format!("cannot listen on {addr} for S3")))?;
                let bound = listener
                    .local_addr()
                    .map_err(io("the S3 listener has no address"))?;
                let router = s3_router(state.clone());
                tasks.push(serve(listener, router, tls.as_ref(), "S3 endpoint")?);
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
            tls,
        })
    }

    /// Rebuilds the index in an empty data directory from the backups on
    /// the nodes, with the store's key: brings the nodes up, finds the
    /// newest backup that decodes, and writes the index. The agents keep
    /// running for the `serve` that follows.
    pub async fn recover(
        config: DaemonConfig,
        sources: impl Into<Sources>,
        wait: Duration,
    ) -> Result<RecoverReport, DaemonError> {
        let index_path = config.data_dir.join("index.redb");
        if index_path.exists() {
            return Err(ConfigError::Invalid(format!(
                "{} already holds an index: recover into an empty data directory",
                config.data_dir.display()
            ))
            .into());
        }
        let key = key_source(&config, false)?;
        let mut fleet = Fleet::new(&config, sources.into()).await?;
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
        self.s3_addr.map(|a| format!("{}://{a}", self.scheme()))
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme(), self.local_addr)
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The TLS the listeners serve, if any: its certificate's fingerprint
    /// (what clients pin) and where the certificate is.
    pub fn tls(&self) -> Option<&http::tls::Tls> {
        self.tls.as_ref()
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

/// The key the configuration names; with none named, the data directory's
/// key file, created for a new store when `create` (never for `recover`:
/// a new key cannot open an old store).
fn key_source(config: &DaemonConfig, create: bool) -> Result<KeySource, DaemonError> {
    if config.no_encryption {
        return Ok(KeySource::NoEncryption);
    }
    if let Some(var) = &config.passphrase_env {
        let p = std::env::var(var).map_err(|_| {
            ConfigError::Invalid(format!(
                "--passphrase-env {var}: the environment variable {var} is not set"
            ))
        })?;
        return Ok(KeySource::Passphrase(p));
    }
    let path = match &config.key_file {
        Some(p) => p.clone(),
        None => {
            let p = crate::config::default_key_file(&config.data_dir);
            if !p.exists() && !create {
                return Err(ConfigError::Invalid(
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
    let meta = s3::meta::Meta::open(path).map_err(error::s3("cannot open the buckets"))?;
    let buckets = meta
        .import(&blob)
        .map_err(error::s3("cannot restore the buckets"))?;
    let objects = store
        .index()
        .files_from(s3::meta::OBJECTS_DIR, None, usize::MAX)
        .map_err(|e| DaemonError::Store(e.into()))?
        .len();
    Ok((buckets, objects))
}
