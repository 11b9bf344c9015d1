//! The index kept on the nodes themselves, erasure-coded like a file, so
//! that the key and the list of nodes are enough to rebuild everything.
//!
//! Each backup is one "chunk" of the well-known file id `cloudshell-index`
//! (16 ASCII bytes), its chunk number the generation (milliseconds since
//! the epoch when it was written). Its payload is the sealed export
//! ([`Store::export_index`]) followed by the export's BLAKE3, so a decode
//! from a bad set of shards is caught even for an unencrypted store. Shard
//! `i` goes to the `i`-th online node (by id), round-robin when there are
//! fewer nodes than shards. Because shard keys sort by file id, then chunk,
//! a node lists its backups with one `ListShards` starting at this id.

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use crate::erasure::Coding;
use crate::format::{FileId, HEADER_LEN, ShardHeader, ShardKey};
use crate::store::{KeySource, Node, Store, StoreError, StoreSettings, encode_chunk};

/// The file id under which index backups are stored.
pub const INDEX_FILE_ID: FileId = FileId(*b"cloudshell-index");

/// Backups kept: the newest and the one before (a backup interrupted half
/// way leaves the previous one whole).
pub const KEEP: usize = 2;

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

/// The generations of index backups `node` holds, with the shard indexes of
/// each, oldest first.
pub async fn generations(node: &Node) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let start = ShardKey {
        file_id: INDEX_FILE_ID,
        chunk: 0,
        index: 0,
    };
    let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
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
                return Ok(out);
            }
            match out.last_mut() {
                Some((g, idx)) if *g == k.chunk => idx.push(k.index),
                _ => out.push((k.chunk, vec![k.index])),
            }
            last = Some(k);
        }
        if !full {
            return Ok(out);
        }
        after = last;
    }
}

impl Store {
    /// Writes the index, erasure-coded, to the online nodes as a new
    /// generation, then deletes all but the newest [`KEEP`] generations.
    pub async fn backup_index(&self) -> Result<BackupReport, StoreError> {
        let export = self.export_index()?;
        let mut payload = export.clone();
        payload.extend_from_slice(blake3::hash(&export).as_bytes());
        let mut nodes: Vec<Node> = self.nodes().into_iter().filter(Node::is_online).collect();
        if nodes.is_empty() {
            return Err(StoreError::NoNodes);
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let coding = self.coding();
        let generation = now_millis();
        let encoded = tokio::task::spawn_blocking(move || {
            encode_chunk(coding, INDEX_FILE_ID, generation, payload, None)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))??;
        let mut writes = FuturesUnordered::new();
        for (i, blob) in encoded.blobs.iter().enumerate() {
            let node = nodes[i % nodes.len()].clone();
            let key = ShardKey {
                file_id: INDEX_FILE_ID,
                chunk: generation,
                index: i as u8,
            };
            let blob = blob.clone();
            writes.push(async move {
                node.shards
                    .put(key, blob)
                    .await
                    .map_err(|source| StoreError::ShardWrite {
                        shard: key.name(),
                        node: node.id.clone(),
                        source,
                    })
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
        self.prune_backups(&nodes).await;
        Ok(BackupReport {
            generation,
            bytes: export.len(),
            shards: written,
        })
    }

    /// Deletes index backups older than the newest [`KEEP`] generations.
    async fn prune_backups(&self, nodes: &[Node]) {
        let mut found = Vec::new();
        for node in nodes {
            if let Ok(gens) = generations(node).await {
                found.push((node, gens));
            }
        }
        let mut all: Vec<u64> = found
            .iter()
            .flat_map(|(_, g)| g.iter().map(|(gen_, _)| *gen_))
            .collect();
        all.sort_unstable();
        all.dedup();
        let keep_from = all.len().saturating_sub(KEEP);
        let old: std::collections::HashSet<u64> = all[..keep_from].iter().copied().collect();
        for (node, gens) in found {
            for (generation, indexes) in gens {
                if old.contains(&generation) {
                    for index in indexes {
                        let key = ShardKey {
                            file_id: INDEX_FILE_ID,
                            chunk: generation,
                            index,
                        };
                        let _ = node.shards.delete(key).await;
                    }
                }
            }
        }
    }

    /// Rebuilds the index at `index_path` (which must hold no files) from the
    /// newest index backup that decodes on `nodes`, and opens the store.
    /// Returns the store and the generation used.
    pub async fn recover_from_nodes(
        index_path: &std::path::Path,
        key: &KeySource,
        nodes: Vec<Node>,
        settings: StoreSettings,
    ) -> Result<(Self, u64), StoreError> {
        let coding = Coding::new(settings.k, settings.m)?;
        let mut holders: std::collections::BTreeMap<u64, Vec<(u8, Node)>> = Default::default();
        for node in nodes.iter().filter(|n| n.is_online()) {
            // A node that cannot list is simply not asked.
            if let Ok(gens) = generations(node).await {
                for (generation, indexes) in gens {
                    for index in indexes {
                        holders
                            .entry(generation)
                            .or_default()
                            .push((index, node.clone()));
                    }
                }
            }
        }
        let mut last_error = None;
        for (generation, shards) in holders.into_iter().rev() {
            match fetch_backup(coding, generation, &shards).await {
                Ok(export) => {
                    let store = Self::recover(index_path, &export, key, nodes, settings)?;
                    return Ok((store, generation));
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            StoreError::NotFound(
                "an index backup (no node holds one: were these the store's nodes?)".to_owned(),
            )
        }))
    }
}

/// Fetches the shards of one backup generation and decodes its export,
/// checking its BLAKE3.
async fn fetch_backup(
    coding: Coding,
    generation: u64,
    holders: &[(u8, Node)],
) -> Result<Vec<u8>, StoreError> {
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; coding.n()];
    let mut payload_len = None;
    for (index, node) in holders {
        let i = usize::from(*index);
        if i >= coding.n() || shards[i].is_some() {
            continue;
        }
        let key = ShardKey {
            file_id: INDEX_FILE_ID,
            chunk: generation,
            index: *index,
        };
        let Ok(blob) = node.shards.get(key).await else {
            continue;
        };
        let Ok(header) = ShardHeader::decode(&blob) else {
            continue;
        };
        if header.key != key || blob.len() != HEADER_LEN + header.shard_len as usize {
            continue;
        }
        payload_len.get_or_insert(header.payload_len as usize);
        shards[i] = Some(blob[HEADER_LEN..].to_vec());
    }
    let unrecoverable = |have: usize| StoreError::Unrecoverable {
        name: "index backup".to_owned(),
        chunk: generation,
        have,
        k: coding.k(),
    };
    let have = shards.iter().filter(|s| s.is_some()).count();
    let payload_len = payload_len.ok_or_else(|| unrecoverable(have))?;
    let payload = coding
        .decode(&shards, payload_len)
        .map_err(|_| unrecoverable(have))?;
    let (export, hash) = payload
        .split_at_checked(payload.len().saturating_sub(32))
        .ok_or_else(|| unrecoverable(have))?;
    if blake3::hash(export).as_bytes() != hash {
        return Err(unrecoverable(have));
    }
    Ok(export.to_vec())
}
