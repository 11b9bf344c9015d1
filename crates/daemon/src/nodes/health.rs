//! What the daemon knows about the health of each file's shards: those
//! found missing or corrupt (by the scrubber, or deleted on purpose through
//! the API), those on nodes not serving, and files under repair; and from
//! that, how many more losses of nodes, regions and principals each file
//! survives.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use cloudshell_store::placement::{Domains, Tolerance, losses_survived};
use cloudshell_store::{FileId, Manifest};
pub use cloudshell_store_api::{FileHealth, Redundancy, ShardState};

/// A shard known to be bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bad {
    /// Its node does not have it.
    Missing,
    /// Its bytes do not hash to the manifest's BLAKE3.
    Corrupt,
}

/// A file's known-bad shards, by (chunk, index).
type BadShards = HashMap<(u64, u8), Bad>;

/// Known-bad shards, files under repair, and files whose last repair did
/// not finish (to try again).
#[derive(Debug, Default)]
pub struct ShardHealth {
    bad: Mutex<HashMap<FileId, BadShards>>,
    repairing: Mutex<HashSet<FileId>>,
    unfinished: Mutex<HashSet<FileId>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ShardHealth {
    /// Records a bad shard.
    pub fn mark(&self, file: FileId, chunk: u64, index: u8, bad: Bad) {
        lock(&self.bad)
            .entry(file)
            .or_default()
            .insert((chunk, index), bad);
    }

    /// Forgets what was bad in `file` (repaired, or deleted).
    pub fn clear(&self, file: FileId) {
        lock(&self.bad).remove(&file);
        lock(&self.unfinished).remove(&file);
    }

    /// Records what a repair of `file` found on the nodes afterwards: the
    /// shards it could not rebuild are missing, every other shard is good.
    /// A file with shards left is marked to be repaired again.
    pub fn repaired(&self, file: FileId, left: &[cloudshell_store::ShardGap]) {
        let mut bad = lock(&self.bad);
        let mut unfinished = lock(&self.unfinished);
        if left.is_empty() {
            bad.remove(&file);
            unfinished.remove(&file);
        } else {
            bad.insert(
                file,
                left.iter()
                    .map(|g| ((g.chunk, g.index), Bad::Missing))
                    .collect(),
            );
            unfinished.insert(file);
        }
    }

    /// Marks `file`'s repair as not finished (it failed before it could
    /// say what is left): what was known bad stays so.
    pub fn repair_failed(&self, file: FileId) {
        lock(&self.unfinished).insert(file);
    }

    /// Files whose last repair did not finish.
    pub fn unfinished(&self) -> HashSet<FileId> {
        lock(&self.unfinished).clone()
    }

    /// Marks `file` as under repair, or not.
    pub fn set_repairing(&self, file: FileId, repairing: bool) {
        let mut r = lock(&self.repairing);
        if repairing {
            r.insert(file);
        } else {
            r.remove(&file);
        }
    }

    /// The state of shard `index` of `chunk`, on `node`.
    pub fn shard_state(
        &self,
        file: FileId,
        chunk: u64,
        index: u8,
        node_serving: bool,
    ) -> ShardState {
        if lock(&self.repairing).contains(&file) {
            return ShardState::Repairing;
        }
        match lock(&self.bad)
            .get(&file)
            .and_then(|b| b.get(&(chunk, index)))
        {
            Some(Bad::Missing) => ShardState::Missing,
            Some(Bad::Corrupt) => ShardState::Corrupt,
            None if !node_serving => ShardState::Unavailable,
            None => ShardState::Ok,
        }
    }

    /// How a file stands, given which nodes serve now and where each node
    /// is (a node `domains` does not know counts as a region and a
    /// principal of its own).
    pub fn file_health(
        &self,
        manifest: &Manifest,
        k: usize,
        serving: &HashSet<String>,
        domains: &HashMap<String, Domains>,
    ) -> FileHealth {
        let bad = lock(&self.bad)
            .get(&manifest.file_id)
            .cloned()
            .unwrap_or_default();
        let repairing = lock(&self.repairing).contains(&manifest.file_id);
        let mut worst: Option<Tolerance> = None;
        let mut readable = true;
        let mut bad_shards = 0;
        let mut all_good = true;
        let mut spreadable = false;
        for (c, entry) in manifest.chunks.iter().enumerate() {
            // Good shards per node: losing a node costs all it holds.
            let mut per_node: HashMap<&str, usize> = HashMap::new();
            for (i, loc) in entry.shards.iter().enumerate() {
                if serving.contains(&loc.node) && !bad.contains_key(&(c as u64, i as u8)) {
                    *per_node.entry(loc.node.as_str()).or_default() += 1;
                }
            }
            let good: usize = per_node.values().sum();
            bad_shards += entry.shards.len() - good;
            all_good &= good == entry.shards.len();
            readable &= good >= k;
            // Crowded while a serving node holds none of it: repair spreads it.
            spreadable |= per_node.len() < entry.shards.len() && per_node.len() < serving.len();
            let grouped = |pick: fn(&Domains) -> &str| {
                let mut per: HashMap<&str, usize> = HashMap::new();
                for (node, n) in &per_node {
                    let domain = domains.get(*node).map_or(*node, pick);
                    *per.entry(domain).or_default() += n;
                }
                losses_survived(per.into_values().collect(), k)
            };
            let losses = Tolerance {
                regions: grouped(|d| d.region.as_str()),
                principals: grouped(|d| d.principal.as_str()),
                nodes: losses_survived(per_node.into_values().collect(), k),
            };
            worst = Some(worst.map_or(losses, |w| Tolerance {
                nodes: w.nodes.min(losses.nodes),
                regions: w.regions.min(losses.regions),
                principals: w.principals.min(losses.principals),
            }));
        }
        let (state, survives) = match worst {
            // An empty file has nothing to lose.
            None => (
                Redundancy::Healthy,
                Tolerance {
                    nodes: usize::MAX,
                    regions: usize::MAX,
                    principals: usize::MAX,
                },
            ),
            Some(_) if !readable => (Redundancy::Unrecoverable, Tolerance::default()),
            Some(w) if all_good && !spreadable => (Redundancy::Healthy, w),
            Some(w) => (Redundancy::Degraded, w),
        };
        FileHealth {
            state,
            survives: survives.nodes,
            survives_regions: survives.regions,
            survives_principals: survives.principals,
            bad_shards,
            repairing,
        }
    }
}

/// What went wrong with a repair of `name`, in words for its user; `None`
/// when it finished (or the file went away meanwhile, which leaves nothing
/// to repair).
pub fn repair_problem(
    name: &str,
    result: &Result<cloudshell_store::RepairReport, cloudshell_store::StoreError>,
) -> Option<String> {
    match result {
        Ok(r) if r.is_complete() => None,
        Ok(r) => Some(format!(
            "repair of {name} is incomplete: {} shard{} could not be rebuilt ({}); the file \
             still reads from its other shards, and is repaired again when nodes come back",
            r.left.len(),
            if r.left.len() == 1 { "" } else { "s" },
            r.failure.as_deref().unwrap_or("no reason given"),
        )),
        Err(cloudshell_store::StoreError::NotFound(_)) => None,
        Err(e) => Some(format!(
            "repair of {name} failed: {e}; nothing it had not finished was kept, and it is \
             tried again when nodes come back"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudshell_store::index::{ChunkEntry, ShardLocation};

    fn manifest() -> Manifest {
        Manifest {
            file_id: FileId([1; 16]),
            chunks: (0..2)
                .map(|_| ChunkEntry {
                    payload_len: 10,
                    shards: (0..9)
                        .map(|i| ShardLocation {
                            node: format!("n{i}"),
                            blake3: [0; 32],
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn health_follows_bad_shards_and_nodes() {
        let h = ShardHealth::default();
        let m = manifest();
        let all: HashSet<String> = (0..9).map(|i| format!("n{i}")).collect();
        let fh = h.file_health(&m, 6, &all, &HashMap::new());
        assert_eq!((fh.state, fh.survives), (Redundancy::Healthy, 3));
        h.mark(m.file_id, 1, 4, Bad::Missing);
        assert_eq!(h.shard_state(m.file_id, 1, 4, true), ShardState::Missing);
        assert_eq!(h.shard_state(m.file_id, 0, 4, true), ShardState::Ok);
        let fh = h.file_health(&m, 6, &all, &HashMap::new());
        assert_eq!(
            (fh.state, fh.survives, fh.bad_shards),
            (Redundancy::Degraded, 2, 1)
        );
        let mut fewer = all.clone();
        for i in 0..3 {
            fewer.remove(&format!("n{i}"));
        }
        assert_eq!(
            h.shard_state(m.file_id, 0, 0, false),
            ShardState::Unavailable
        );
        let fh = h.file_health(&m, 6, &fewer, &HashMap::new());
        assert_eq!((fh.state, fh.survives), (Redundancy::Unrecoverable, 0));
        h.set_repairing(m.file_id, true);
        assert_eq!(h.shard_state(m.file_id, 1, 4, true), ShardState::Repairing);
        h.set_repairing(m.file_id, false);
        h.clear(m.file_id);
        assert_eq!(
            h.file_health(&m, 6, &all, &HashMap::new()).state,
            Redundancy::Healthy
        );
    }

    #[test]
    fn a_repair_that_left_shards_keeps_the_file_degraded_until_one_finishes() {
        let h = ShardHealth::default();
        let m = manifest();
        let all: HashSet<String> = (0..9).map(|i| format!("n{i}")).collect();
        h.mark(m.file_id, 0, 1, Bad::Missing);
        h.mark(m.file_id, 1, 1, Bad::Corrupt);
        let left = [
            cloudshell_store::ShardGap { chunk: 1, index: 2 },
            cloudshell_store::ShardGap { chunk: 1, index: 5 },
            cloudshell_store::ShardGap { chunk: 1, index: 7 },
        ];
        h.repaired(m.file_id, &left);
        let fh = h.file_health(&m, 6, &all, &HashMap::new());
        assert_eq!(
            (fh.state, fh.survives, fh.bad_shards),
            (Redundancy::Degraded, 0, 3)
        );
        assert_eq!(h.shard_state(m.file_id, 0, 1, true), ShardState::Ok);
        assert_eq!(h.shard_state(m.file_id, 1, 7, true), ShardState::Missing);
        assert!(h.unfinished().contains(&m.file_id));
        h.repaired(m.file_id, &[]);
        assert_eq!(
            h.file_health(&m, 6, &all, &HashMap::new()).state,
            Redundancy::Healthy
        );
        assert!(h.unfinished().is_empty());
    }

    #[test]
    fn a_chunk_with_two_shards_on_one_node_is_degraded_while_it_can_be_spread() {
        let h = ShardHealth::default();
        let mut m = manifest();
        // Written while n8 was away: n0 took its shard too.
        for c in &mut m.chunks {
            c.shards[8].node = "n0".into();
        }
        let all: HashSet<String> = (0..9).map(|i| format!("n{i}")).collect();
        let fh = h.file_health(&m, 6, &all, &HashMap::new());
        // Losing n0 and one more costs three shards: only two losses are safe.
        assert_eq!(
            (fh.state, fh.survives, fh.bad_shards),
            (Redundancy::Degraded, 2, 0)
        );
        // With only the eight nodes it is on, it is as spread as it can be.
        let eight: HashSet<String> = (0..8).map(|i| format!("n{i}")).collect();
        let fh = h.file_health(&m, 6, &eight, &HashMap::new());
        assert_eq!((fh.state, fh.survives), (Redundancy::Healthy, 2));
    }
}
