//! A region's node as the rest of the daemon sees it: its state for the API,
//! and a [`ShardStore`] that forwards to whichever agent currently serves
//! the region (none while it is being bootstrapped).

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use cloudshell_agent::RemoteShards;
use cloudshell_store::shard_store::{ShardError, ShardStore, StoreStats};
use cloudshell_store::{ShardKey, StoreSettings};
use futures_util::future::BoxFuture;
use serde::Serialize;

/// Where a node is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Finding or creating the environment and waiting for it to run.
    Provisioning,
    /// Installing and starting the agent, punching, connecting.
    Bootstrapping,
    /// Serving shards.
    Connected,
    /// Was connected, is not now, and is being brought back.
    Degraded,
    /// Gone for longer than the repair delay (or taken offline): its shards
    /// are rebuilt elsewhere.
    Lost,
    /// Taken offline by the user.
    Offline,
}

/// What the API shows of a node.
#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    /// The node's id (its region).
    pub id: String,
    /// The region.
    pub region: String,
    /// Its state.
    pub state: NodeState,
    /// The CloudShell environment it runs in.
    pub environment_id: Option<String>,
    /// The agent's certificate fingerprint.
    pub fingerprint: Option<String>,
    /// Where it is dialled.
    pub addresses: Vec<String>,
    /// The agent's NAT, as its STUN servers saw it.
    pub nat: Option<String>,
    /// The agent's process id in the environment.
    pub agent_pid: Option<u32>,
    /// Bytes of shards held.
    pub used: u64,
    /// Its quota: the agent's.
    pub quota: u64,
    /// The store's own cap for this node (`store nodes --quota`), if set.
    pub store_quota: Option<u64>,
    /// Bytes free on the disk holding its shards, when known.
    pub disk_free: Option<u64>,
    /// Bytes it can still take: the least of what the quotas leave and
    /// its disk has free.
    pub room: u64,
    /// Too little room for a shard: new chunks go to the other nodes.
    pub full: bool,
    /// Shards held.
    pub shards: u64,
    /// The last thing that went wrong, if the node is not connected.
    pub last_error: Option<String>,
    /// Round trip of the last health check, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Seconds since the Unix epoch of the last heartbeat sent.
    pub last_heartbeat: Option<u64>,
    /// Seconds since the Unix epoch of the last state change.
    pub since: u64,
}

impl NodeStatus {
    /// A node that has not started yet.
    pub fn new(region: &str) -> Self {
        Self {
            id: region.to_owned(),
            region: region.to_owned(),
            state: NodeState::Provisioning,
            environment_id: None,
            fingerprint: None,
            addresses: Vec::new(),
            nat: None,
            agent_pid: None,
            used: 0,
            quota: 0,
            store_quota: None,
            disk_free: None,
            room: 0,
            full: false,
            shards: 0,
            last_error: None,
            latency_ms: None,
            last_heartbeat: None,
            since: now_secs(),
        }
    }
}

impl NodeStatus {
    /// Takes in what the agent reported of itself.
    pub fn absorb(&mut self, stats: &StoreStats, store_node: &cloudshell_store::Node) {
        self.used = stats.used;
        self.quota = stats.quota;
        self.shards = stats.shards;
        self.store_quota = store_node.quota();
        self.disk_free = Some(stats.disk_free).filter(|f| *f != u64::MAX);
        self.room = store_node.room(stats);
        self.full = self.room < cloudshell_store::largest_shard(&StoreSettings::default());
    }
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One region's node: its status, and the agent it is served by.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    status: Arc<Mutex<NodeStatus>>,
    remote: Arc<RwLock<Option<RemoteShards>>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
}

impl NodeHandle {
    /// A node for `region`, not yet served; its changes are counted on
    /// `changes` (what live views wait on).
    pub fn new(region: &str, changes: Arc<tokio::sync::watch::Sender<u64>>) -> Self {
        Self {
            status: Arc::new(Mutex::new(NodeStatus::new(region))),
            remote: Arc::new(RwLock::new(None)),
            changes,
        }
    }

    /// A copy of its status.
    pub fn status(&self) -> NodeStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes its status.
    pub fn update(&self, f: impl FnOnce(&mut NodeStatus)) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        let before = s.state;
        f(&mut s);
        if s.state != before {
            s.since = now_secs();
            tracing::info!(node = %s.id, "{:?} -> {:?}", before, s.state);
        }
        drop(s);
        self.changes.send_modify(|v| *v += 1);
    }

    /// Serves the node through `remote` from now on (`None`: unavailable).
    pub fn serve(&self, remote: Option<RemoteShards>) {
        *self.remote.write().unwrap_or_else(PoisonError::into_inner) = remote;
    }

    /// The agent currently serving it.
    pub fn remote(&self) -> Option<RemoteShards> {
        self.remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The node as the store's [`ShardStore`].
    pub fn shards(&self) -> Arc<dyn ShardStore> {
        Arc::new(NodeShards { node: self.clone() })
    }
}

/// Forwards to the node's current agent.
struct NodeShards {
    node: NodeHandle,
}

impl NodeShards {
    fn remote(&self) -> Result<RemoteShards, ShardError> {
        self.node.remote().ok_or_else(|| {
            let s = self.node.status();
            ShardError::Unavailable(format!(
                "node {} is {:?}{}",
                s.id,
                s.state,
                s.last_error.map(|e| format!(": {e}")).unwrap_or_default()
            ))
        })
    }
}

impl ShardStore for NodeShards {
    fn put(&self, key: ShardKey, blob: Bytes) -> BoxFuture<'_, Result<(), ShardError>> {
        Box::pin(async move { self.remote()?.put(key, blob).await })
    }

    fn get(&self, key: ShardKey) -> BoxFuture<'_, Result<Bytes, ShardError>> {
        Box::pin(async move { self.remote()?.get(key).await })
    }

    fn delete(&self, key: ShardKey) -> BoxFuture<'_, Result<(), ShardError>> {
        Box::pin(async move { self.remote()?.delete(key).await })
    }

    fn list(
        &self,
        after: Option<ShardKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardKey>, ShardError>> {
        Box::pin(async move { self.remote()?.list(after, limit).await })
    }

    fn verify(&self, key: ShardKey) -> BoxFuture<'_, Result<[u8; 32], ShardError>> {
        Box::pin(async move { self.remote()?.verify(key).await })
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, ShardError>> {
        Box::pin(async move { self.remote()?.stats().await })
    }
}
