//! What the API handlers, the S3 endpoint and the background tasks share:
//! the store, the nodes, and the daemon's view of both ([`State`]). On the
//! ground floor with the error and the configuration; the modules that use
//! it sit above. Beside it, the registries it holds: [`jobs`] (long
//! operations the API follows) and [`latency`] (request latencies), and
//! [`node_changes`] (nodes added and removed while running).

pub mod jobs;
pub mod keys;
pub mod latency;
pub mod node_changes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloudshell::Region;
use cloudshell_store::Store;

use crate::config::{ConfigError, DaemonConfig, NodePlace, node_id};
use crate::error::{DaemonError, io};
use crate::nodes::health;
use crate::nodes::manager::{NodeManager, Shared};
use crate::nodes::node::NodeHandle;
use crate::nodes::sources::Sources;
use node_changes::NodeChanges;

/// What the API handlers share.
#[derive(Debug)]
pub struct State {
    /// The store.
    pub store: Store,
    /// One node per principal and region, in configuration order (those
    /// added later at the end).
    pub(crate) nodes: std::sync::RwLock<Vec<NodeHandle>>,
    /// The configuration it runs with.
    pub config: DaemonConfig,
    /// Told after every change to the index, so it is backed up.
    pub(crate) changed: tokio::sync::Notify,
    /// Whether a change waits to be backed up, and the last backup.
    pub(crate) backup: std::sync::Mutex<BackupStatus>,
    /// Told to start a scrub pass now.
    pub scrub_now: tokio::sync::Notify,
    /// The scrubber's progress.
    pub(crate) scrub: std::sync::Mutex<cloudshell_store_api::ScrubStatus>,
    /// API request latencies.
    pub latencies: latency::Latencies,
    /// Long operations.
    pub jobs: jobs::Jobs,
    /// What a region added while running is made with.
    pub(crate) regions: RegionMaker,
    /// Tasks started while running (node managers of added regions).
    pub(crate) tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Known-bad shards and files under repair.
    pub health: health::ShardHealth,
    /// Counts changes; live views (`/api/events`) wait on it.
    pub(crate) changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// The S3 endpoint's buckets, object metadata and keys.
    pub s3: Arc<cloudshell_s3::S3State>,
}

/// Makes the node of a region added while the daemon runs.
pub(crate) struct RegionMaker {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sources: Sources,
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

    /// A client of `principal` in `region` that the control API answers:
    /// asked once (DescribeEnvironments), so a region that does not exist
    /// or credentials that do not work are refused before a node is made.
    async fn usable_client(
        &self,
        principal: &str,
        region: &Region,
    ) -> Result<cloudshell::Client, DaemonError> {
        let client = self.regions.sources.get(principal)?.client(region).await?;
        client
            .describe_environments()
            .await
            .map_err(|e| DaemonError::Unusable {
                principal: principal.to_owned(),
                region: region.to_string(),
                why: e.to_string(),
            })?;
        Ok(client)
    }

    /// Adds a node of `principal` in `region` and starts bringing it up.
    pub async fn add_region(
        &self,
        principal: &str,
        region: Region,
    ) -> Result<NodeHandle, DaemonError> {
        let place = NodePlace {
            id: node_id(principal, &region),
            principal: principal.to_owned(),
            region,
        };
        let id = place.id.as_str();
        if self.node(id).is_some() {
            return Err(DaemonError::Exists(id.to_owned()));
        }
        let client = self.usable_client(principal, &place.region).await?;
        let node = NodeHandle::new(&place, self.changes.clone());
        let store_node = node.store_node();
        self.store.add_node(store_node.clone())?;
        {
            let mut nodes = self
                .nodes
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if nodes.iter().any(|n| n.status().id == id) {
                return Err(DaemonError::Exists(id.to_owned()));
            }
            // Kept for the next start (under the lock: one change at a time).
            let mut changes = NodeChanges::read(&self.config.data_dir)?;
            changes.add(&place);
            changes.write(&self.config.data_dir)?;
            nodes.push(node.clone());
        }
        let manager = NodeManager::new(
            client,
            node.clone(),
            store_node,
            self.regions.shared.clone(),
        );
        let task = tokio::spawn(manager.run());
        node.set_manager(task.abort_handle());
        self.tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(task);
        Ok(node)
    }

    /// Adds principal `name` (an AWS profile, or an emulated principal)
    /// with a node in each of `regions` (the configuration's when empty),
    /// and starts bringing them up. New writes spread over them at once;
    /// a redistribution moves older shards onto them.
    pub async fn add_principal(
        &self,
        name: &str,
        regions: Vec<Region>,
    ) -> Result<Vec<NodeHandle>, DaemonError> {
        crate::config::check_principal_name(name)?;
        if self.nodes().iter().any(|n| n.status().principal == name) {
            return Err(DaemonError::Exists(format!("principal {name}")));
        }
        let regions = if regions.is_empty() {
            self.config.regions()?
        } else {
            regions
        };
        // Every region answers first: a profile without credentials, or a
        // region that does not exist, is refused before any node is made.
        for region in &regions {
            self.usable_client(name, region).await?;
        }
        let mut added = Vec::new();
        for region in regions {
            added.push(self.add_region(name, region).await?);
        }
        Ok(added)
    }

    /// The nodes of principal `name`.
    pub fn principal_nodes(&self, name: &str) -> Vec<NodeHandle> {
        self.nodes()
            .into_iter()
            .filter(|n| n.status().principal == name)
            .collect()
    }

    /// Checks that node `id` can be removed (see [`State::check_removal_of`]).
    pub fn check_removal(&self, id: &str) -> Result<NodeHandle, RemovalRefused> {
        let node = self
            .node(id)
            .ok_or_else(|| RemovalRefused::NoSuchNode(id.to_owned()))?;
        self.check_removal_of(std::slice::from_ref(&node), id)?;
        Ok(node)
    }

    /// Checks that `nodes` (called `what` in what it says) can be removed
    /// together: the other nodes that serve must be enough for a chunk's
    /// shards to stay on distinct nodes, and have room for what they hold.
    /// Says why not, in words for its user.
    pub fn check_removal_of(&self, nodes: &[NodeHandle], what: &str) -> Result<(), RemovalRefused> {
        let leaving: Vec<cloudshell_store_api::NodeStatus> =
            nodes.iter().map(NodeHandle::status).collect();
        if let Some(s) = leaving.iter().find(|s| {
            s.draining
                .as_deref()
                .is_some_and(|d| d.starts_with(REMOVING))
        }) {
            return Err(RemovalRefused::Refused(format!(
                "{} is being removed already",
                s.id
            )));
        }
        let settings = cloudshell_store::StoreSettings::default();
        let width = settings.k + settings.m;
        let others: Vec<_> = self
            .nodes()
            .into_iter()
            .map(|n| n.status())
            .filter(|s| {
                !leaving.iter().any(|l| l.id == s.id)
                    && s.draining.is_none()
                    && s.state == cloudshell_store_api::NodeState::Connected
            })
            .collect();
        if others.len() < width {
            return Err(RemovalRefused::Refused(format!(
                "removing {what} would leave {} nodes serving, fewer than the {width} ({}+{}) a \
                 chunk's shards need to stay on distinct nodes; add a region first \
                 (cloudshell store add-region REGION) or bring the others back",
                others.len(),
                settings.k,
                settings.m
            )));
        }
        let room: u64 = others.iter().map(|s| s.room).sum();
        let used: u64 = leaving.iter().map(|s| s.used).sum();
        if used > room {
            return Err(RemovalRefused::Refused(format!(
                "{what} holds {used} bytes of shards and the other nodes have room for {room}; \
                 delete files or add a region first"
            )));
        }
        Ok(())
    }

    /// Forgets node `id` once drained: stops its manager, takes it out of
    /// the store (refused while a file names it) and out of the nodes the
    /// next start brings up.
    pub fn forget_node(&self, id: &str) -> Result<(), DaemonError> {
        self.store.remove_node(id)?;
        let mut nodes = self
            .nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changes = NodeChanges::read(&self.config.data_dir)?;
        changes.remove(id);
        changes.write(&self.config.data_dir)?;
        if let Some(node) = nodes.iter().find(|n| n.status().id == id) {
            node.stop_manager();
            node.serve(None);
        }
        nodes.retain(|n| n.status().id != id);
        drop(nodes);
        self.bump();
        Ok(())
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
        node_changes::write_json(&path, &kept)?;
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

/// How a node being removed says so in its `draining`.
pub const REMOVING: &str = "being removed";

/// Why a node cannot be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemovalRefused {
    /// There is no such node.
    #[error("no node {0}")]
    NoSuchNode(String),
    /// The others could not take its place.
    #[error("{0}")]
    Refused(String),
}

/// Where node quotas set while running are kept.
pub(crate) fn quota_file(data_dir: &Path) -> PathBuf {
    data_dir.join("node-quotas.json")
}

/// The node quotas kept in `path` (none if it does not exist).
pub(crate) fn read_quotas(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, u64>, DaemonError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            ConfigError::Invalid(format!(
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
pub(crate) fn apply_quotas(
    config: &DaemonConfig,
    nodes: &[cloudshell_store::Node],
) -> Result<(), DaemonError> {
    let mut quotas = std::collections::BTreeMap::new();
    for (id, size) in &config.node_quotas {
        let bytes = cloudshell_store::shard_store::parse_size(size).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "node_quotas: {size:?} for {id} is not a size; try 200M or a number of bytes"
            ))
        })?;
        quotas.insert(id.clone(), bytes);
    }
    quotas.extend(read_quotas(&quota_file(&config.data_dir))?);
    for (id, bytes) in quotas {
        let node = nodes.iter().find(|n| n.id == id).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "node_quotas names {id}, which is not one of this store's nodes (a region, \
                 or PRINCIPAL:REGION for a principal other than `default`)"
            ))
        })?;
        node.set_quota(bytes);
    }
    Ok(())
}

/// The S3 endpoint's port into the daemon: the store, and every change it
/// makes recorded like the API's (backed up, shown live).
impl cloudshell_s3::Host for State {
    fn store(&self) -> &Store {
        &self.store
    }

    fn changed(&self) {
        self.touch();
    }
}

/// The capacity of nodes (raw and usable after coding with `k` data of
/// `k + m` shards), in all and per principal; draining nodes left out.
pub fn capacity(
    statuses: &[cloudshell_store_api::NodeStatus],
    k: usize,
    m: usize,
) -> cloudshell_store_api::CapacitySummary {
    use cloudshell_store_api::{Capacity, CapacitySummary, PrincipalCapacity};
    let usable = |raw: u64| {
        let coded = u128::from(raw) * k as u128 / (k + m).max(1) as u128;
        u64::try_from(coded).unwrap_or(u64::MAX)
    };
    let add = |c: &mut Capacity, s: &cloudshell_store_api::NodeStatus| {
        c.nodes += 1;
        c.used = c.used.saturating_add(s.used);
        c.free = c.free.saturating_add(s.room);
        c.raw = c.used.saturating_add(c.free);
        c.usable = usable(c.raw);
        c.usable_free = usable(c.free);
    };
    let mut summary = CapacitySummary::default();
    for s in statuses.iter().filter(|s| s.draining.is_none()) {
        add(&mut summary.total, s);
        match summary
            .principals
            .iter_mut()
            .find(|p| p.principal == s.principal)
        {
            Some(p) => add(&mut p.capacity, s),
            None => {
                let mut capacity = Capacity::default();
                add(&mut capacity, s);
                summary.principals.push(PrincipalCapacity {
                    principal: s.principal.clone(),
                    capacity,
                });
            }
        }
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, principal: &str, used: u64, room: u64) -> cloudshell_store_api::NodeStatus {
        let place = NodePlace {
            id: id.to_owned(),
            principal: principal.to_owned(),
            region: Region::new("us-east-1").unwrap(),
        };
        let mut s = crate::nodes::node::fresh_status(&place);
        s.used = used;
        s.room = room;
        s
    }

    #[test]
    fn capacity_is_summed_per_principal_and_draining_nodes_left_out() {
        let mut draining = node("c", "p2", 500, 500);
        draining.draining = Some("being removed".into());
        let c = capacity(
            &[
                node("a", "default", 100, 800),
                node("b", "p2", 200, 700),
                draining,
            ],
            6,
            3,
        );
        assert_eq!(
            (c.total.nodes, c.total.raw, c.total.used, c.total.free),
            (2, 1800, 300, 1500)
        );
        assert_eq!((c.total.usable, c.total.usable_free), (1200, 1000));
        let p2 = &c.principals[1];
        assert_eq!(
            (p2.principal.as_str(), p2.capacity.nodes, p2.capacity.raw),
            ("p2", 1, 900)
        );
    }
}
