//! Keeping what is stored healthy without reading it: shards verified
//! where they live, and shards nobody refers to removed.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::backup::INDEX_FILE_ID;
use crate::format::{FileId, ShardKey};
use crate::shard_store::ShardError;
use crate::store::{Node, Store, StoreError};

/// A shard found wanting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BadShard {
    /// Its chunk.
    pub chunk: u64,
    /// Its index in the chunk.
    pub index: u8,
    /// Missing (true) or corrupt (false).
    pub missing: bool,
}

/// What checking one file found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Shards whose node computed their BLAKE3.
    pub checked: usize,
    /// Shards the node does not have.
    pub missing: usize,
    /// Shards whose BLAKE3 differs from the manifest's.
    pub corrupt: usize,
    /// Shards on nodes that did not answer (not judged).
    pub unreachable: usize,
    /// Which shards were missing or corrupt.
    pub bad: Vec<BadShard>,
}

impl CheckReport {
    /// Whether repair has something to do.
    pub fn needs_repair(&self) -> bool {
        self.missing + self.corrupt > 0
    }
}

/// What orphan collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Shards listed on the nodes.
    pub listed: usize,
    /// Shards deleted: of no file in the index, or copies the index places
    /// on another node.
    pub deleted: usize,
}

/// Shards listed per request.
const PAGE: usize = 1000;

impl Store {
    /// Asks each shard's node to hash it (no shard crosses the network) and
    /// compares with the manifest, one chunk at a time, waiting `pace` per
    /// shard so a background pass never crowds out user traffic.
    pub async fn check_file(&self, name: &str, pace: Duration) -> Result<CheckReport, StoreError> {
        let (record, manifest) = self
            .index()
            .file(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        let nodes = self.nodes();
        let mut report = CheckReport::default();
        for (c, entry) in manifest.chunks.iter().enumerate() {
            let mut checks = FuturesUnordered::new();
            for (i, loc) in entry.shards.iter().enumerate() {
                let node = nodes.iter().find(|n| n.id == loc.node).cloned();
                let key = ShardKey {
                    file_id: record.file_id,
                    chunk: c as u64,
                    index: i as u8,
                };
                let want = loc.blake3;
                checks.push(async move {
                    let verdict = match node {
                        Some(n) if n.is_online() => match n.shards.verify(key).await {
                            Ok(h) if h == want => Ok(()),
                            Ok(_) => Err(Some(false)),
                            Err(ShardError::NotFound(_)) => Err(Some(true)),
                            Err(_) => Err(None),
                        },
                        _ => Err(None),
                    };
                    (key.index, verdict)
                });
            }
            while let Some((index, r)) = checks.next().await {
                let bad = |missing| BadShard {
                    chunk: c as u64,
                    index,
                    missing,
                };
                match r {
                    Ok(()) => report.checked += 1,
                    Err(Some(true)) => {
                        report.missing += 1;
                        report.bad.push(bad(true));
                    }
                    Err(Some(false)) => {
                        report.checked += 1;
                        report.corrupt += 1;
                        report.bad.push(bad(false));
                    }
                    Err(None) => report.unreachable += 1,
                }
            }
            tokio::time::sleep(pace * entry.shards.len() as u32).await;
        }
        Ok(report)
    }

    /// Deletes shards on the online nodes that no file in the index refers
    /// to there: left by a daemon that died during a put, a delete while a
    /// node was away, or a copy repair moved. Files being written, repaired
    /// or moved are left alone, as are the index backups.
    pub async fn collect_orphans(&self) -> Result<OrphanReport, StoreError> {
        let mut report = OrphanReport::default();
        let mut candidates: Vec<(Node, ShardKey)> = Vec::new();
        for node in self.nodes().into_iter().filter(Node::is_online) {
            let mut after = None;
            loop {
                let Ok(keys) = node.shards.list(after, PAGE).await else {
                    break;
                };
                report.listed += keys.len();
                let full = keys.len() == PAGE;
                after = keys.last().copied();
                candidates.extend(
                    keys.into_iter()
                        .filter(|k| k.file_id != INDEX_FILE_ID)
                        .map(|k| (node.clone(), k)),
                );
                if !full {
                    break;
                }
            }
        }
        // Busy first, then the index: a put that finishes in between was
        // busy when looked at, or is in the index when looked at.
        let busy = self.busy_files();
        let mut placed: HashSet<(FileId, u64, u8, String)> = HashSet::new();
        for record in self.index().files()? {
            if let Some((_, manifest)) = self.index().file(&record.name)? {
                for (c, entry) in manifest.chunks.iter().enumerate() {
                    for (i, loc) in entry.shards.iter().enumerate() {
                        placed.insert((manifest.file_id, c as u64, i as u8, loc.node.clone()));
                    }
                }
            }
        }
        for (node, key) in candidates {
            if busy.contains(&key.file_id)
                || placed.contains(&(key.file_id, key.chunk, key.index, node.id.clone()))
            {
                continue;
            }
            if node.shards.delete(key).await.is_ok() {
                report.deleted += 1;
            }
        }
        Ok(report)
    }
}
