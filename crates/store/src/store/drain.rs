//! Draining: every shard on a draining node moved to the other nodes while
//! the draining one still answers (a region being removed, or a principal
//! whose credentials were revoked: its environments run on until they
//! suspend, then everything on them is gone).

use super::*;
use crate::placement::place_beside;

/// What draining one file did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Shards copied off draining nodes, checked and recorded.
    pub shards_moved: usize,
    /// Shards that could not be read from their draining node (or did not
    /// check out) and were rebuilt from the others instead.
    pub shards_rebuilt: usize,
    /// Shards still on draining nodes: no other node had room, or neither
    /// a move nor a rebuild worked; a later pass tries again.
    pub shards_left: usize,
    /// Why shards were left, when they were.
    pub failure: Option<String>,
}

impl Store {
    /// The files held now (puts, repairs and drains under way): a drain
    /// that starts waits for these, since a put placed before the node
    /// began draining may still write there and name it.
    pub fn files_under_way(&self) -> std::collections::HashSet<FileId> {
        self.busy_files()
    }

    /// Forgets node `id` for good: it takes and gives nothing from now on.
    /// Refused while any file's manifest names it (drain it first).
    pub fn remove_node(&self, id: &str) -> Result<(), StoreError> {
        let mut shards = 0;
        let mut files = 0;
        for rec in self.index.files()? {
            if let Some((_, m)) = self.index.file(&rec.name)? {
                let here = m
                    .chunks
                    .iter()
                    .flat_map(|c| &c.shards)
                    .filter(|s| s.node == id)
                    .count();
                shards += here;
                files += usize::from(here > 0);
            }
        }
        if shards > 0 {
            return Err(StoreError::NodeInUse {
                id: id.to_owned(),
                shards,
                files,
            });
        }
        self.nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n| n.id != id);
        self.index.remove_node(id)?;
        Ok(())
    }

    /// The names of files with a shard on a draining node.
    pub fn files_to_drain(&self) -> Result<Vec<String>, StoreError> {
        let draining: Vec<String> = self
            .nodes()
            .into_iter()
            .filter(Node::is_draining)
            .map(|n| n.id)
            .collect();
        if draining.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for rec in self.index.files()? {
            if let Some((_, m)) = self.index.file(&rec.name)?
                && m.chunks
                    .iter()
                    .flat_map(|c| &c.shards)
                    .any(|s| draining.contains(&s.node))
            {
                out.push(rec.name);
            }
        }
        Ok(out)
    }

    /// Moves `name`'s shards off draining nodes: each is read from its
    /// node, checked against its BLAKE3, written where placement puts it
    /// beside the chunk's other shards (regions and principals they do not
    /// hold first), recorded, and only then deleted from the draining node.
    /// A shard its draining node cannot give is rebuilt from the others (a
    /// repair, which passes draining nodes over). A file replaced or
    /// removed meanwhile is [`StoreError::NotFound`].
    pub async fn drain_file(&self, name: &str) -> Result<DrainReport, StoreError> {
        let (edit, record, mut manifest) = self.file_for_edit(name).await?;
        let draining: Vec<String> = self
            .nodes()
            .into_iter()
            .filter(Node::is_draining)
            .map(|n| n.id)
            .collect();
        let busy = self.busy(record.file_id);
        let shard = self.largest_shard();
        let candidates: Vec<Candidate> = self
            .candidates()
            .await
            .into_iter()
            .filter(|c| c.free >= shard)
            .collect();
        let domains = self.domains();
        let mut report = DrainReport::default();
        let mut unreadable = 0;
        let mut stale = Vec::new();
        let mut copies = Vec::new();
        for c in 0..manifest.chunks.len() {
            let entry = &manifest.chunks[c];
            let leaving: Vec<usize> = (0..entry.shards.len())
                .filter(|i| draining.contains(&entry.shards[*i].node))
                .collect();
            if leaving.is_empty() {
                continue;
            }
            let staying: Vec<&str> = entry
                .shards
                .iter()
                .filter(|s| !draining.contains(&s.node))
                .map(|s| s.node.as_str())
                .collect();
            let fresh: Vec<Candidate> = candidates
                .iter()
                .filter(|n| !staying.contains(&n.id.as_str()))
                .cloned()
                .collect();
            let pool = if fresh.len() >= leaving.len() {
                &fresh
            } else {
                &candidates
            };
            if pool.is_empty() {
                report.shards_left += leaving.len();
                report.failure.get_or_insert_with(|| {
                    "no other node is online with room for a shard".to_owned()
                });
                continue;
            }
            let beside: Vec<Domains> = staying
                .iter()
                .filter_map(|n| domains.get(*n).cloned())
                .collect();
            let targets = place_beside(pool, &beside, record.file_id, c as u64, leaving.len());
            for (&i, to_id) in leaving.iter().zip(targets) {
                let key = ShardKey {
                    file_id: record.file_id,
                    chunk: c as u64,
                    index: i as u8,
                };
                let old = manifest.chunks[c].shards[i].clone();
                let (Some(from), Some(to)) = (self.node(&old.node), self.node(&to_id)) else {
                    unreadable += 1;
                    continue;
                };
                let read = if from.is_online() {
                    from.shards.get(key).await
                } else {
                    Err(ShardError::Unavailable(format!(
                        "node {} is offline",
                        from.id
                    )))
                };
                let blob = match read {
                    Ok(b) if *blake3::hash(&b).as_bytes() == old.blake3 => b,
                    _ => {
                        unreadable += 1;
                        continue;
                    }
                };
                if let Err(e) = to.shards.put(key, blob).await {
                    tracing::debug!(shard = %key.name(), node = %to_id, "drain: {e}");
                    report.shards_left += 1;
                    report
                        .failure
                        .get_or_insert_with(|| format!("writing to {to_id}: {e}"));
                    continue;
                }
                manifest.chunks[c].shards[i].node = to_id.clone();
                stale.push(from.garbage(key));
                copies.push((to_id, key));
                report.shards_moved += 1;
            }
        }
        if !stale.is_empty() {
            if self.index.update_manifest(&record.name, &manifest)? {
                self.discard(stale).await;
            } else {
                self.delete_shards(&copies).await;
                busy.release().await;
                return Err(StoreError::NotFound(record.name));
            }
        }
        busy.release().await;
        // The repair below takes the file's edit lock itself.
        drop(edit);
        if unreadable > 0 {
            // Rebuilt from the other shards onto nodes that are not
            // draining; what the draining node still holds is then a copy
            // the index no longer names, collected as an orphan.
            let repaired = self.repair(name).await?;
            report.shards_rebuilt = repaired.shards_rebuilt;
            let still = self
                .index
                .file(name)?
                .map(|(_, m)| {
                    m.chunks
                        .iter()
                        .flat_map(|c| &c.shards)
                        .filter(|s| draining.contains(&s.node))
                        .count()
                })
                .unwrap_or(0);
            report.shards_left += still;
            if still > 0 {
                report.failure.get_or_insert_with(|| {
                    repaired.failure.clone().unwrap_or_else(|| {
                        "draining nodes did not give their shards, and they still read well \
                         enough for a repair to leave them"
                            .to_owned()
                    })
                });
            }
        }
        Ok(report)
    }
}
