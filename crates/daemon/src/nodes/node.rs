//! A node (a principal's environment in a region) as the rest of the daemon sees it: its state for the API,
//! and a [`ShardStore`] that forwards to whichever agent currently serves
//! the region (none while it is being bootstrapped).

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use cloudshell_node::RemoteShards;
use cloudshell_store::shard_store::{ShardError, ShardStore, StoreStats};
use cloudshell_store::{ShardKey, StoreSettings};
use futures_util::future::BoxFuture;

pub use cloudshell_store_api::{NodeState, NodeStatus};

use crate::config::NodePlace;

/// A node that has not started yet.
pub fn fresh_status(place: &NodePlace) -> NodeStatus {
    NodeStatus {
        id: place.id.clone(),
        region: place.region.to_string(),
        principal: place.principal.clone(),
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
        draining: None,
        latency_ms: None,
        last_heartbeat: None,
        since: now_secs(),
    }
}

/// Takes into `status` what the agent reported of itself.
pub fn absorb(status: &mut NodeStatus, stats: &StoreStats, store_node: &cloudshell_store::Node) {
    status.used = stats.used;
    status.quota = stats.quota;
    status.shards = stats.shards;
    status.store_quota = store_node.quota();
    status.disk_free = Some(stats.disk_free).filter(|f| *f != u64::MAX);
    status.room = store_node.room(stats);
    status.full = status.room < cloudshell_store::largest_shard(&StoreSettings::default());
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
    /// Its manager's task, to stop when the node is removed.
    manager: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

impl NodeHandle {
    /// The node at `place`, not yet served; its changes are counted on
    /// `changes` (what live views wait on).
    pub fn new(place: &NodePlace, changes: Arc<tokio::sync::watch::Sender<u64>>) -> Self {
        Self {
            status: Arc::new(Mutex::new(fresh_status(place))),
            remote: Arc::new(RwLock::new(None)),
            changes,
            manager: Arc::new(Mutex::new(None)),
        }
    }

    /// Records the task of its manager.
    pub fn set_manager(&self, task: tokio::task::AbortHandle) {
        *self.manager.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
    }

    /// Stops its manager: no heartbeats, no restarts of its agent.
    pub fn stop_manager(&self) {
        if let Some(task) = self
            .manager
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
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

    /// The store's node for it, offline until its agent answers (puts go
    /// where they can meanwhile).
    pub fn store_node(&self) -> cloudshell_store::Node {
        let s = self.status();
        let node =
            cloudshell_store::Node::new(s.id, s.region, self.shards()).of_principal(s.principal);
        node.set_online(false);
        node
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
