//! Nodes added and removed while the daemon ran, kept in
//! `DATA_DIR/node-changes.json`: the configuration names the nodes a store
//! starts with, and these changes are applied over it at every start, so a
//! region added stays and a region removed (its shards moved off first)
//! stays gone.

use std::path::{Path, PathBuf};

use cloudshell::Region;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, NodePlace, node_id};
use crate::error::{DaemonError, io};

/// A node added while running.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// Its principal.
    pub principal: String,
    /// Its region.
    pub region: Region,
}

/// The changes to the configured nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeChanges {
    /// Nodes added, in order.
    pub added: Vec<Added>,
    /// Ids of nodes removed.
    pub removed: Vec<String>,
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("node-changes.json")
}

impl NodeChanges {
    /// The changes kept in `data_dir` (none if it has none).
    pub fn read(data_dir: &Path) -> Result<Self, DaemonError> {
        let path = path(data_dir);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                ConfigError::Invalid(format!(
                    "{} does not hold node changes ({e}); fix or remove it (removing it brings \
                     back the configured nodes only)",
                    path.display()
                ))
                .into()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(io(format!("cannot read {}", path.display()))(e)),
        }
    }

    /// Keeps them in `data_dir`.
    pub fn write(&self, data_dir: &Path) -> Result<(), DaemonError> {
        write_json(&path(data_dir), self)
    }

    /// The configured nodes with these changes made.
    pub fn apply(&self, configured: Vec<NodePlace>) -> Vec<NodePlace> {
        let mut places: Vec<NodePlace> = configured
            .into_iter()
            .filter(|p| !self.removed.contains(&p.id))
            .collect();
        for a in &self.added {
            let id = node_id(&a.principal, &a.region);
            if !self.removed.contains(&id) && !places.iter().any(|p| p.id == id) {
                places.push(NodePlace {
                    id,
                    principal: a.principal.clone(),
                    region: a.region.clone(),
                });
            }
        }
        places
    }

    /// Records a node added.
    pub fn add(&mut self, place: &NodePlace) {
        self.removed.retain(|id| *id != place.id);
        if !self
            .added
            .iter()
            .any(|a| node_id(&a.principal, &a.region) == place.id)
        {
            self.added.push(Added {
                principal: place.principal.clone(),
                region: place.region.clone(),
            });
        }
    }

    /// Records a node removed.
    pub fn remove(&mut self, id: &str) {
        self.added
            .retain(|a| node_id(&a.principal, &a.region) != id);
        if !self.removed.iter().any(|r| r == id) {
            self.removed.push(id.to_owned());
        }
    }
}

/// Writes `value` as JSON to `path` whole or not at all (a temporary file
/// renamed over it).
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), DaemonError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| DaemonError::Io {
        what: format!("cannot encode {}", path.display()),
        source: std::io::Error::other(e),
    })?;
    let temp = path.with_extension("json.tmp");
    std::fs::write(&temp, text).map_err(io(format!("cannot write {}", temp.display())))?;
    std::fs::rename(&temp, path).map_err(io(format!("cannot write {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(principal: &str, region: &str) -> NodePlace {
        let region = Region::new(region).unwrap();
        NodePlace {
            id: node_id(principal, &region),
            principal: principal.to_owned(),
            region,
        }
    }

    #[test]
    fn changes_survive_a_restart_and_apply_over_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            NodeChanges::read(dir.path()).unwrap(),
            NodeChanges::default()
        );
        let configured = vec![place("default", "us-east-1"), place("default", "eu-west-1")];
        let mut c = NodeChanges::default();
        c.add(&place("work", "ap-south-1"));
        c.remove("eu-west-1");
        c.write(dir.path()).unwrap();
        let c = NodeChanges::read(dir.path()).unwrap();
        let ids: Vec<String> = c
            .apply(configured.clone())
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["us-east-1", "work:ap-south-1"]);
        // Added back after a removal: there again.
        let mut c = c;
        c.add(&place("default", "eu-west-1"));
        c.remove("work:ap-south-1");
        let ids: Vec<String> = c.apply(configured).into_iter().map(|p| p.id).collect();
        assert_eq!(ids, ["us-east-1", "eu-west-1"]);
        std::fs::write(path(dir.path()), "{ nonsense").unwrap();
        let e = NodeChanges::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("fix or remove it"), "{e}");
    }
}
