//! The index kept on the nodes themselves, erasure-coded like a file, so
//! that the key and the list of nodes are enough to rebuild everything.
//!
//! Each backup is one "chunk" of the well-known file id `cloudshell-index`
//! (16 ASCII bytes), its chunk number the generation (milliseconds since
//! the epoch when it was written). Its payload is the sealed export
//! ([`Store::export_index`]) followed by the export's BLAKE3. Beside it,
//! at chunk number `generation | MANIFEST_BIT`, is the backup's manifest:
//! the export's length, the BLAKE3 of each of its n shard blobs, and the
//! BLAKE3 of those, coded 1 + (n - 1) (any one shard of it decodes it), one
//! shard on each node that holds a shard of the backup. So each backup shard
//! can be checked alone, and a backup decodes from any k shards that check
//! out, however the others were damaged. Shard `i` goes to the `i`-th online
//! node (by id), round-robin when there are fewer nodes than shards. Because
//! shard keys sort by file id, then chunk, a node lists its backups with one
//! `ListShards` starting at this id.
//!
//! Backups written before manifests existed are still read: their shards
//! are checked together, by trying sets of k until the export's BLAKE3
//! matches.

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::erasure::Coding;
use crate::format::{FileId, HEADER_LEN, ShardHeader, ShardKey};
pub use crate::store::SkippedBackup;
use crate::store::{KeySource, Node, Store, StoreError, StoreSettings, encode_chunk};

/// The file id under which index backups are stored.
pub const INDEX_FILE_ID: FileId = FileId(*b"cloudshell-index");

/// Backups kept: the newest and the one before (a backup interrupted half
/// way, or damaged past repair, leaves the previous one whole).
pub const KEEP: usize = 2;

/// Set in the chunk number of a backup's manifest (generations are
/// milliseconds since the epoch, far below it). Do not change.
pub const MANIFEST_BIT: u64 = 1 << 62;

/// Sets of k shards tried, at most, on a backup without a manifest.
const MAX_TRIES: usize = 1000;

/// What a backup wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupReport {
    /// Its generation.
    pub generation: u64,
    /// Bytes of export.
    pub bytes: usize,
    /// Shards written.
    pub shards: usize,
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What one node holds of one backup generation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldBackup {
    /// The generation.
    pub generation: u64,
    /// Shard indexes of the export.
    pub export: Vec<u8>,
    /// Shard indexes of its manifest.
    pub manifest: Vec<u8>,
}

/// The generations of index backups `node` holds, oldest first.
pub async fn generations(node: &Node) -> Result<Vec<HeldBackup>, StoreError> {
    let start = ShardKey {
        file_id: INDEX_FILE_ID,
        chunk: 0,
        index: 0,
    };
    let mut by_generation: std::collections::BTreeMap<u64, HeldBackup> = Default::default();
    let mut after = Some(start);
    loop {
        let keys =
            node.shards
                .list(after, 1000)
                .await
                .map_err(|source| StoreError::ShardWrite {
                    shard: "index backup listing".to_owned(),
                    node: node.id.clone(),
                    source,
                })?;
        let full = keys.len() == 1000;
        let mut last = None;
        for k in keys {
            if k.file_id != INDEX_FILE_ID {
                return Ok(by_generation.into_values().collect());
            }
            let generation = k.chunk & !MANIFEST_BIT;
            let held = by_generation
                .entry(generation)
                .or_insert_with(|| HeldBackup {
                    generation,
                    ..HeldBackup::default()
                });
            if k.chunk & MANIFEST_BIT == 0 {
                held.export.push(k.index);
            } else {
                held.manifest.push(k.index);
            }
            last = Some(k);
        }
        if !full {
            return Ok(by_generation.into_values().collect());
        }
        after = last;
    }
}

/// The manifest of one backup: the export's length and each export shard
/// blob's BLAKE3, sealed by their own BLAKE3.
fn manifest_payload(payload_len: usize, hashes: &[[u8; 32]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 32 * hashes.len() + 32);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    for h in hashes {
        out.extend_from_slice(h);
    }
    let seal = blake3::hash(&out);
    out.extend_from_slice(seal.as_bytes());
    out
}

/// Reads a manifest payload back: `None` unless its seal checks and it
/// lists `n` shards.
fn parse_manifest(payload: &[u8], n: usize) -> Option<(usize, Vec<[u8; 32]>)> {
    let (body, seal) = payload.split_at_checked(payload.len().checked_sub(32)?)?;
    if blake3::hash(body).as_bytes() != seal || body.len() != 4 + 32 * n {
        return None;
    }
    let (len, hashes) = body.split_at(4);
    let payload_len = u32::from_le_bytes(len.try_into().ok()?) as usize;
    let hashes = hashes
        .chunks_exact(32)
        .map(|h| h.try_into().unwrap_or([0; 32]))
        .collect();
    Some((payload_len, hashes))
}

impl Store {
    /// Writes the index, erasure-coded, to the online nodes as a new
    /// generation, then deletes all but the newest [`KEEP`] generations.
    pub async fn backup_index(&self) -> Result<BackupReport, StoreError> {
        let (export, epoch) = self.export_index_at()?;
        let mut payload = export.clone();
        payload.extend_from_slice(blake3::hash(&export).as_bytes());
        let mut nodes: Vec<Node> = self.nodes().into_iter().filter(Node::is_online).collect();
        if nodes.is_empty() {
            return Err(StoreError::NoNodes);
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let coding = self.coding();
        let generation = now_millis();
        let payload_len = payload.len();
        let (encoded, manifest) = tokio::task::spawn_blocking(move || {
            let encoded = encode_chunk(coding, INDEX_FILE_ID, generation, payload, None)?;
            let manifest = manifest_payload(payload_len, &encoded.hashes);
            let manifest = encode_chunk(
                Coding::new(1, coding.n() - 1)?,
                INDEX_FILE_ID,
                generation | MANIFEST_BIT,
                manifest,
                None,
            )?;
            Ok::<_, StoreError>((encoded, manifest))
        })
        .await
        .map_err(|e| StoreError::Task(e.into()))??;
        let mut writes = FuturesUnordered::new();
        for (i, (blob, manifest_blob)) in encoded.blobs.iter().zip(&manifest.blobs).enumerate() {
            let node = nodes[i % nodes.len()].clone();
            let key = ShardKey {
                file_id: INDEX_FILE_ID,
                chunk: generation,
                index: i as u8,
            };
            let manifest_key = ShardKey {
                chunk: generation | MANIFEST_BIT,
                ..key
            };
            let (blob, manifest_blob) = (blob.clone(), manifest_blob.clone());
            writes.push(async move {
                let put = |key: ShardKey, blob| {
                    let node = &node;
                    async move {
                        node.shards
                            .put(key, blob)
                            .await
                            .map_err(|source| StoreError::ShardWrite {
                                shard: key.name(),
                                node: node.id.clone(),
                                source,
                            })
                    }
                };
                // The manifest shard first: a node holding an export shard
                // then always holds what checks it.
                put(manifest_key, manifest_blob).await?;
                put(key, blob).await
            });
        }
        let mut written = 0;
        let mut first_error = None;
        while let Some(r) = writes.next().await {
            match r {
                Ok(()) => written += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // A backup is usable from any k shards; fewer is an error, but what
        // was written is still a partial generation the next one replaces.
        if written < coding.k() {
            return Err(first_error.unwrap_or(StoreError::NoNodes));
        }
        // The first backup sealed after a key change deletes every older
        // generation: they open with the old key, which must stop working.
        let after_change = epoch
            > self
                .backups_pruned_for
                .load(std::sync::atomic::Ordering::Relaxed);
        self.prune_backups(&nodes, if after_change { 1 } else { KEEP })
            .await;
        if after_change {
            self.backups_pruned_for
                .fetch_max(epoch, std::sync::atomic::Ordering::Relaxed);
            // Unless another change came meanwhile, no backup sealed with
            // a replaced key is left (on the nodes that answered).
            if self.with_master_epoch(|_, now| now) == epoch {
                self.index.clear_old_key_backups()?;
            }
        }
        Ok(BackupReport {
            generation,
            bytes: export.len(),
            shards: written,
        })
    }

    /// Deletes index backups older than the newest `keep` generations.
    async fn prune_backups(&self, nodes: &[Node], keep: usize) {
        let mut found = Vec::new();
        for node in nodes {
            if let Ok(gens) = generations(node).await {
                found.push((node, gens));
            }
        }
        let mut all: Vec<u64> = found
            .iter()
            .flat_map(|(_, g)| g.iter().map(|h| h.generation))
            .collect();
        all.sort_unstable();
        all.dedup();
        let keep_from = all.len().saturating_sub(keep);
        let old: std::collections::HashSet<u64> = all[..keep_from].iter().copied().collect();
        for (node, gens) in found {
            for held in gens.into_iter().filter(|h| old.contains(&h.generation)) {
                let keys = held
                    .export
                    .iter()
                    .map(|&index| (held.generation, index))
                    .chain(
                        held.manifest
                            .iter()
                            .map(|&index| (held.generation | MANIFEST_BIT, index)),
                    );
                for (chunk, index) in keys {
                    let key = ShardKey {
                        file_id: INDEX_FILE_ID,
                        chunk,
                        index,
                    };
                    let _ = node.shards.delete(key).await;
                }
            }
        }
    }

    /// Rebuilds the index at `index_path` (which must hold no files) from the
    /// newest index backup that decodes on `nodes`, and opens the store.
    /// Returns the store, the generation used, and why each newer one was
    /// passed over. When none decodes, the error names every generation and
    /// why, and nothing is written.
    pub async fn recover_from_nodes(
        index_path: &std::path::Path,
        key: &KeySource,
        nodes: Vec<Node>,
        settings: StoreSettings,
    ) -> Result<(Self, u64, Vec<SkippedBackup>), StoreError> {
        let coding = Coding::new(settings.k, settings.m)?;
        let mut holders: std::collections::BTreeMap<u64, Holders> = Default::default();
        for node in nodes.iter().filter(|n| n.is_online()) {
            // A node that cannot list is simply not asked.
            if let Ok(gens) = generations(node).await {
                for held in gens {
                    let h = holders.entry(held.generation).or_default();
                    h.export
                        .extend(held.export.iter().map(|&i| (i, node.clone())));
                    h.manifest
                        .extend(held.manifest.iter().map(|&i| (i, node.clone())));
                }
            }
        }
        if holders.is_empty() {
            return Err(StoreError::NotFound(
                "an index backup (no node holds one: were these the store's nodes?)".to_owned(),
            ));
        }
        let mut skipped = Vec::new();
        for (generation, held) in holders.into_iter().rev() {
            match fetch_backup(coding, generation, &held).await {
                Ok(export) => {
                    let store = Self::recover(index_path, &export, key, nodes, settings)?;
                    return Ok((store, generation, skipped));
                }
                Err(why) => skipped.push(SkippedBackup { generation, why }),
            }
        }
        Err(StoreError::NoBackup(skipped))
    }
}

/// Who holds the shards of one generation: (shard index, node).
#[derive(Default)]
struct Holders {
    export: Vec<(u8, Node)>,
    manifest: Vec<(u8, Node)>,
}

/// Fetches one shard blob and checks that its header names it; `Err` says
/// what was wrong with it.
async fn fetch_blob(node: &Node, key: ShardKey) -> Result<Vec<u8>, String> {
    let blob = node
        .shards
        .get(key)
        .await
        .map_err(|e| format!("on {}: {e}", node.id))?;
    let header =
        ShardHeader::decode(&blob).map_err(|e| format!("on {}: bad header: {e}", node.id))?;
    if header.key != key || blob.len() != HEADER_LEN + header.shard_len as usize {
        return Err(format!(
            "on {}: not the shard it should be, or cut short",
            node.id
        ));
    }
    Ok(blob.to_vec())
}

/// The manifest of a generation, from the first of its shards that decodes
/// and checks.
async fn fetch_manifest(
    n: usize,
    generation: u64,
    holders: &[(u8, Node)],
) -> Option<(usize, Vec<[u8; 32]>)> {
    let coding = Coding::new(1, n - 1).ok()?;
    for (index, node) in holders {
        let i = usize::from(*index);
        if i >= n {
            continue;
        }
        let key = ShardKey {
            file_id: INDEX_FILE_ID,
            chunk: generation | MANIFEST_BIT,
            index: *index,
        };
        let Ok(blob) = fetch_blob(node, key).await else {
            continue;
        };
        let Ok(header) = ShardHeader::decode(&blob) else {
            continue;
        };
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
        shards[i] = Some(blob[HEADER_LEN..].to_vec());
        if let Ok(payload) = coding.decode(&shards, header.payload_len as usize)
            && let Some(m) = parse_manifest(&payload, n)
        {
            return Some(m);
        }
    }
    None
}

/// Fetches the shards of one backup generation and decodes its export from
/// k that check out; `Err` says why it could not.
async fn fetch_backup(coding: Coding, generation: u64, held: &Holders) -> Result<Vec<u8>, String> {
    let n = coding.n();
    let manifest = fetch_manifest(n, generation, &held.manifest).await;
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
    let mut problems = Vec::new();
    let mut header_len = None;
    for (index, node) in &held.export {
        let i = usize::from(*index);
        if i >= n || shards[i].is_some() {
            continue;
        }
        let key = ShardKey {
            file_id: INDEX_FILE_ID,
            chunk: generation,
            index: *index,
        };
        let blob = match fetch_blob(node, key).await {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("shard {i} {e}"));
                continue;
            }
        };
        if let Some((_, hashes)) = &manifest
            && blake3::hash(&blob).as_bytes() != &hashes[i]
        {
            problems.push(format!(
                "shard {i} on {}: corrupt (its BLAKE3 differs)",
                node.id
            ));
            continue;
        }
        if let Ok(h) = ShardHeader::decode(&blob) {
            header_len.get_or_insert(h.payload_len as usize);
        }
        shards[i] = Some(blob[HEADER_LEN..].to_vec());
    }
    let have = shards.iter().filter(|s| s.is_some()).count();
    let held_by = |what: &str| {
        let mut why = format!(
            "{what}: {have} of its {n} shards {} (need {})",
            if manifest.is_some() {
                "check out"
            } else {
                "read"
            },
            coding.k()
        );
        if !problems.is_empty() {
            why.push_str(&format!("; {}", problems.join("; ")));
        }
        why
    };
    let (payload_len, verified) = match (&manifest, header_len) {
        (Some((len, _)), _) => (*len, true),
        (None, Some(len)) => (len, false),
        (None, None) => return Err(held_by("no shard could be read")),
    };
    if have < coding.k() {
        return Err(held_by("too few good shards"));
    }
    let open = |payload: Vec<u8>| -> Option<Vec<u8>> {
        let (export, hash) = payload.split_at_checked(payload.len().checked_sub(32)?)?;
        (blake3::hash(export).as_bytes() == hash).then(|| export.to_vec())
    };
    if verified {
        return coding
            .decode(&shards, payload_len)
            .ok()
            .and_then(open)
            .ok_or_else(|| held_by("its verified shards do not decode to a whole export"));
    }
    // No manifest (written before manifests existed, or every copy of it
    // damaged): find k shards that decode to an export whose BLAKE3 holds.
    let present: Vec<usize> = (0..n).filter(|i| shards[*i].is_some()).collect();
    for (tries, set) in k_subsets(&present, coding.k()).enumerate() {
        if tries >= MAX_TRIES {
            break;
        }
        let subset: Vec<Option<Vec<u8>>> = (0..n)
            .map(|i| set.contains(&i).then(|| shards[i].clone()).flatten())
            .collect();
        if let Some(export) = coding.decode(&subset, payload_len).ok().and_then(open) {
            return Ok(export);
        }
    }
    Err(held_by("no set of its shards decodes to a whole export"))
}

/// Every way of picking `k` of `items`, in order.
fn k_subsets(items: &[usize], k: usize) -> impl Iterator<Item = Vec<usize>> + '_ {
    let mut idx: Vec<usize> = (0..k).collect();
    let mut done = k > items.len();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let out = idx.iter().map(|&i| items[i]).collect();
        // The next combination: bump the rightmost index that can move.
        let n = items.len();
        match (0..k).rev().find(|&j| idx[j] < n - k + j) {
            Some(j) => {
                idx[j] += 1;
                for l in j + 1..k {
                    idx[l] = idx[l - 1] + 1;
                }
            }
            None => done = true,
        }
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_are_every_combination_once() {
        let all: Vec<Vec<usize>> = k_subsets(&[1, 3, 5, 7], 2).collect();
        assert_eq!(
            all,
            [[1, 3], [1, 5], [1, 7], [3, 5], [3, 7], [5, 7]].map(Vec::from)
        );
        assert_eq!(k_subsets(&(0..9).collect::<Vec<_>>(), 6).count(), 84);
        assert_eq!(k_subsets(&[1, 2], 3).count(), 0);
    }

    #[test]
    fn a_manifest_reads_back_only_whole() {
        let hashes = [[1u8; 32], [2; 32], [3; 32]];
        let m = manifest_payload(1234, &hashes);
        assert_eq!(parse_manifest(&m, 3), Some((1234, hashes.to_vec())));
        assert_eq!(parse_manifest(&m, 4), None);
        let mut flipped = m.clone();
        flipped[10] ^= 1;
        assert_eq!(parse_manifest(&flipped, 3), None);
        assert_eq!(parse_manifest(&m[..m.len() - 1], 3), None);
        assert_eq!(parse_manifest(&[], 3), None);
    }
}
