//! Repair (missing and corrupt shards rebuilt, doubled shards spread) and
//! redistribution (shards moved from fuller nodes to emptier ones).

use super::*;
use crate::placement::{better_spread, place_beside};

/// What a redistribution did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedistributeReport {
    /// Shards moved to less loaded nodes.
    pub shards_moved: usize,
    /// Moves that failed (a node did not answer, or a copy did not check
    /// out): those shards stayed where they were; running it again retries.
    pub shards_failed: usize,
}

/// What a repair did, and what it could not do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Chunks whose missing or corrupt shards were rebuilt (some or all).
    pub chunks_repaired: usize,
    /// Shards rebuilt and stored.
    pub shards_rebuilt: usize,
    /// Shards moved off a node that held another shard of their chunk.
    pub shards_spread: usize,
    /// Shards still missing or corrupt afterwards: their rebuild failed.
    pub left: Vec<ShardGap>,
    /// Why the first of them could not be rebuilt.
    pub failure: Option<String>,
}

impl RepairReport {
    /// Whether every shard is in place now.
    pub fn is_complete(&self) -> bool {
        self.left.is_empty()
    }
}

/// A shard that is not where the manifest says, or not good there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardGap {
    /// Its chunk.
    pub chunk: u64,
    /// Its index in the chunk.
    pub index: u8,
}

impl Store {
    /// Rebuilds the missing or corrupt shards of `name` from any k and
    /// stores them on online nodes that hold no shard of their chunk
    /// (others only when there is no such node), then spreads chunks
    /// crowded onto too few nodes. Every shard of the file is read, so the
    /// report says what is really on the nodes afterwards: a shard that
    /// could not be rebuilt (its target failed, too few good shards) is in
    /// [`RepairReport::left`], and the attempt's own stray writes are
    /// removed. A file replaced or removed meanwhile is
    /// [`StoreError::NotFound`].
    pub async fn repair(&self, name: &str) -> Result<RepairReport, StoreError> {
        let (_edit, record, mut manifest) = self.file_for_edit(name).await?;
        let busy = self.busy(record.file_id);
        let coding = Coding::new(usize::from(record.k), usize::from(record.m))?;
        // Rebuilt shards go to nodes with room for one.
        let shard = self.largest_shard();
        let candidates: Vec<Candidate> = self
            .candidates()
            .await
            .into_iter()
            .filter(|c| c.free >= shard)
            .collect();
        let domains = self.domains();
        let mut report = RepairReport::default();
        for c in 0..manifest.chunks.len() {
            let entry = manifest.chunks[c].clone();
            let chunk = c as u64;
            let shards = self
                .fetch_shards(
                    record.file_id,
                    chunk,
                    &entry,
                    entry.shards.len(),
                    entry.shards.len(),
                )
                .await;
            let missing: Vec<usize> = (0..shards.len()).filter(|i| shards[*i].is_none()).collect();
            if missing.is_empty() {
                continue;
            }
            let have = shards.len() - missing.len();
            let gaps = |indexes: &[usize]| -> Vec<ShardGap> {
                indexes
                    .iter()
                    .map(|&i| ShardGap {
                        chunk,
                        index: i as u8,
                    })
                    .collect()
            };
            if have < coding.k() {
                report.left.extend(gaps(&missing));
                report.failure.get_or_insert_with(|| {
                    format!(
                        "chunk {chunk} has {have} good shards of the {} needed",
                        coding.k()
                    )
                });
                continue;
            }
            let payload_len = entry.payload_len as usize;
            let all = tokio::task::spawn_blocking(move || coding.all_shards(&shards, payload_len))
                .await
                .map_err(|e| StoreError::Task(e.into()))??;
            let holders: Vec<&str> = entry
                .shards
                .iter()
                .enumerate()
                .filter(|(i, _)| !missing.contains(i))
                .map(|(_, s)| s.node.as_str())
                .collect();
            let fresh: Vec<Candidate> = candidates
                .iter()
                .filter(|n| !holders.contains(&n.id.as_str()))
                .cloned()
                .collect();
            let pool = if fresh.is_empty() {
                &candidates
            } else {
                &fresh
            };
            if pool.is_empty() {
                report.left.extend(gaps(&missing));
                report
                    .failure
                    .get_or_insert_with(|| "no node is online to rebuild shards on".to_owned());
                continue;
            }
            let beside: Vec<Domains> = holders
                .iter()
                .filter_map(|h| domains.get(*h).cloned())
                .collect();
            let targets = place_beside(pool, &beside, record.file_id, chunk, missing.len());
            let mut writes = FuturesUnordered::new();
            for (&i, node_id) in missing.iter().zip(targets) {
                let key = ShardKey {
                    file_id: record.file_id,
                    chunk,
                    index: i as u8,
                };
                let blob = shard_blob(
                    &coding,
                    key,
                    payload_len as u32,
                    record.wrapped_key.is_some(),
                    &all[i],
                );
                let node = self.node(&node_id);
                writes.push(async move {
                    let result = match &node {
                        Some(n) => n.shards.put(key, blob.clone()).await,
                        None => Err(ShardError::Unavailable(format!(
                            "node {node_id} is not known"
                        ))),
                    };
                    (i, node_id, *blake3::hash(&blob).as_bytes(), result)
                });
            }
            let mut written = Vec::new();
            let mut moved_from = Vec::new();
            while let Some((i, node_id, hash, result)) = writes.next().await {
                match result {
                    Ok(()) => {
                        let old = std::mem::replace(
                            &mut manifest.chunks[c].shards[i],
                            ShardLocation {
                                node: node_id.clone(),
                                blake3: hash,
                            },
                        );
                        if old.node != node_id {
                            moved_from.push((c, i, old));
                        }
                        written.push((
                            node_id,
                            ShardKey {
                                file_id: record.file_id,
                                chunk,
                                index: i as u8,
                            },
                        ));
                        report.shards_rebuilt += 1;
                    }
                    Err(source) => {
                        report.left.push(ShardGap {
                            chunk,
                            index: i as u8,
                        });
                        report.failure.get_or_insert_with(|| {
                            format!(
                                "storing shard {i} of chunk {chunk} on node {node_id} failed: {source}"
                            )
                        });
                        // It may have landed before failing; the manifest
                        // does not point at it.
                        let key = ShardKey {
                            file_id: record.file_id,
                            chunk,
                            index: i as u8,
                        };
                        self.delete_shards(&[(node_id, key)]).await;
                    }
                }
            }
            if written.is_empty() {
                continue;
            }
            if !self.index.update_manifest(name, &manifest)? {
                // Replaced or removed meanwhile: what this attempt wrote
                // belongs to nothing.
                self.delete_shards(&written).await;
                return Err(StoreError::NotFound(name.to_owned()));
            }
            report.chunks_repaired += 1;
            // The old copies (on nodes that were away, or corrupt) are
            // garbage now that the index points elsewhere.
            let stale: Vec<Garbage> = moved_from
                .into_iter()
                .filter_map(|(c, i, old)| {
                    Some(self.node(&old.node)?.garbage(ShardKey {
                        file_id: record.file_id,
                        chunk: c as u64,
                        index: i as u8,
                    }))
                })
                .collect();
            self.discard(stale).await;
        }
        self.spread(&record, &mut manifest, &candidates, &mut report)
            .await?;
        busy.release().await;
        Ok(report)
    }

    /// Moves shards that share a node with another shard of their chunk
    /// (a put or repair made while too few nodes were up) onto online
    /// nodes holding none of it, so each node loss costs the chunk one
    /// shard again; then shards of chunks that could survive more lost
    /// regions or principals than they do onto the nodes that make it so. Each move is read, checked against its BLAKE3, written,
    /// recorded, and only then given up on the crowded node; a shard that
    /// cannot be moved now stays where it is, as good as before.
    pub(crate) async fn spread(
        &self,
        record: &FileRecord,
        manifest: &mut Manifest,
        candidates: &[Candidate],
        report: &mut RepairReport,
    ) -> Result<(), StoreError> {
        for c in 0..manifest.chunks.len() {
            let crowded = manifest.chunks[c].crowded();
            if crowded.is_empty() {
                continue;
            }
            let fresh: Vec<Candidate> = candidates
                .iter()
                .filter(|n| !manifest.chunks[c].shards.iter().any(|s| s.node == n.id))
                .cloned()
                .collect();
            let moves = crowded.len().min(fresh.len());
            // Beside the shards that stay: regions and principals they do
            // not hold first.
            let domains = self.domains();
            let beside: Vec<Domains> = manifest.chunks[c]
                .shards
                .iter()
                .enumerate()
                .filter(|(i, _)| !crowded.contains(i))
                .filter_map(|(_, s)| domains.get(&s.node).cloned())
                .collect();
            let targets = place_beside(&fresh, &beside, record.file_id, c as u64, moves);
            for (&i, node_id) in crowded.iter().zip(targets) {
                if self.move_shard(record, manifest, c, i, &node_id).await? {
                    report.shards_spread += 1;
                }
            }
        }
        // Then over regions and principals: a chunk placed while a region
        // was away (a drain, a repair) holds two shards in another; once
        // the region is back, one moves there.
        let domains = self.domains();
        for c in 0..manifest.chunks.len() {
            for _ in 0..manifest.chunks[c].shards.len() {
                let holders: Vec<&str> = manifest.chunks[c]
                    .shards
                    .iter()
                    .map(|s| s.node.as_str())
                    .collect();
                let Some((i, node_id)) =
                    better_spread(&holders, candidates, usize::from(record.k), &domains)
                else {
                    break;
                };
                if !self.move_shard(record, manifest, c, i, &node_id).await? {
                    break;
                }
                report.shards_spread += 1;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Moves shard `i` of chunk `c` to node `to`: read, checked against its
    /// BLAKE3, written, recorded, and only then given up where it was.
    /// False (nothing changed) when it cannot be read or written now.
    async fn move_shard(
        &self,
        record: &FileRecord,
        manifest: &mut Manifest,
        c: usize,
        i: usize,
        to: &str,
    ) -> Result<bool, StoreError> {
        let key = ShardKey {
            file_id: record.file_id,
            chunk: c as u64,
            index: i as u8,
        };
        let old = manifest.chunks[c].shards[i].clone();
        let (Some(from), Some(target)) = (self.node(&old.node), self.node(to)) else {
            return Ok(false);
        };
        let blob = match from.shards.get(key).await {
            Ok(b) if *blake3::hash(&b).as_bytes() == old.blake3 => b,
            // Missing or damaged: the next repair rebuilds it.
            _ => return Ok(false),
        };
        if let Err(e) = target.shards.put(key, blob).await {
            tracing::debug!(shard = %key.name(), node = %to, "spread: {e}");
            return Ok(false);
        }
        manifest.chunks[c].shards[i] = ShardLocation {
            node: to.to_owned(),
            blake3: old.blake3,
        };
        if !self.index.update_manifest(&record.name, manifest)? {
            let _ = target.shards.delete(key).await;
            return Err(StoreError::NotFound(record.name.clone()));
        }
        // The index names the new copy now: the old one is garbage (once
        // no read holds it).
        self.discard(vec![from.garbage(key)]).await;
        Ok(true)
    }
}

impl Store {
    /// Moves shards from nodes holding more than their share (of the online
    /// nodes) to nodes holding less, never onto a node that holds as many
    /// shards of the same chunk as the source (so losing any one node never
    /// costs a chunk more than before): after adding nodes, usage evens out. Each
    /// moved shard is read, checked against its BLAKE3, written, recorded,
    /// and only then removed from its old node. Shards on offline nodes and
    /// corrupt ones are left to repair.
    pub async fn redistribute(&self) -> Result<RedistributeReport, StoreError> {
        // A draining node gives shards to the drain, and takes none.
        let mut counts: std::collections::BTreeMap<String, usize> = self
            .nodes()
            .iter()
            .filter(|n| n.is_online() && !n.is_draining())
            .map(|n| (n.id.clone(), 0))
            .collect();
        if counts.len() < 2 {
            return Ok(RedistributeReport::default());
        }
        let mut files = Vec::new();
        for rec in self.index.files()? {
            if let Some((rec, m)) = self.index.file(&rec.name)? {
                for s in m.chunks.iter().flat_map(|c| &c.shards) {
                    if let Some(n) = counts.get_mut(&s.node) {
                        *n += 1;
                    }
                }
                files.push((rec, m));
            }
        }
        let mut report = RedistributeReport::default();
        let domains = self.domains();
        for (rec, _) in files {
            // Read again under the file's edit lock: a repair or a drain
            // may have moved shards since the count.
            let Ok((_edit, rec, mut manifest)) = self.file_for_edit(&rec.name).await else {
                continue;
            };
            let busy = self.busy(rec.file_id);
            let mut stale = Vec::new();
            let mut copies = Vec::new();
            for c in 0..manifest.chunks.len() {
                for i in 0..manifest.chunks[c].shards.len() {
                    let from = manifest.chunks[c].shards[i].node.clone();
                    let Some(&from_count) = counts.get(&from) else {
                        continue;
                    };
                    let of_chunk = |node: &str| {
                        manifest.chunks[c]
                            .shards
                            .iter()
                            .filter(|s| s.node == node)
                            .count()
                    };
                    let from_of_chunk = of_chunk(&from);
                    // The chunk's other shards per region and principal: a
                    // move may not put more of them in one region (or
                    // principal) than the source's holds.
                    let beside = |pick: fn(&Domains) -> &str, node: &str| {
                        let domain = |id: &str| {
                            domains
                                .get(id)
                                .map_or(id.to_owned(), |d| pick(d).to_owned())
                        };
                        let want = domain(node);
                        manifest.chunks[c]
                            .shards
                            .iter()
                            .enumerate()
                            .filter(|(j, s)| *j != i && domain(&s.node) == want)
                            .count()
                    };
                    let region: fn(&Domains) -> &str = |d| d.region.as_str();
                    let principal: fn(&Domains) -> &str = |d| d.principal.as_str();
                    let spread_kept = |to: &str| {
                        beside(region, to) <= beside(region, &from)
                            && beside(principal, to) <= beside(principal, &from)
                    };
                    // The emptiest node holding fewer of this chunk's shards
                    // than the source (so no node ends up with more of one
                    // chunk than before), if moving there narrows the gap:
                    // nodes end within one shard of each other where chunks
                    // allow. (A ceiling share alone left 3,3,3,3,3,3 and a
                    // new empty node as they were.)
                    let Some(dest) = counts
                        .iter()
                        .filter(|(id, n)| {
                            **n + 1 < from_count && of_chunk(id) < from_of_chunk && spread_kept(id)
                        })
                        .min_by_key(|(_, n)| **n)
                        .map(|(id, _)| id.clone())
                    else {
                        continue;
                    };
                    let key = ShardKey {
                        file_id: rec.file_id,
                        chunk: c as u64,
                        index: i as u8,
                    };
                    let (Some(src), Some(dst)) = (self.node(&from), self.node(&dest)) else {
                        continue;
                    };
                    let Ok(blob) = src.shards.get(key).await else {
                        report.shards_failed += 1;
                        continue;
                    };
                    if *blake3::hash(&blob).as_bytes() != manifest.chunks[c].shards[i].blake3 {
                        report.shards_failed += 1;
                        continue;
                    }
                    if dst.shards.put(key, blob).await.is_err() {
                        report.shards_failed += 1;
                        continue;
                    }
                    manifest.chunks[c].shards[i].node = dest.clone();
                    stale.push(src.garbage(key));
                    copies.push((dest.clone(), key));
                    *counts.entry(from).or_default() -= 1;
                    *counts.entry(dest).or_default() += 1;
                    report.shards_moved += 1;
                }
            }
            if !stale.is_empty() {
                if self.index.update_manifest(&rec.name, &manifest)? {
                    self.discard(stale).await;
                } else {
                    // Replaced or removed meanwhile: the copies are strays.
                    self.delete_shards(&copies).await;
                }
            }
            busy.release().await;
        }
        Ok(report)
    }
}
