//! The store: streaming put and get, delete, repair, over a set of nodes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, FuturesUnordered, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::crypto::{ChunkCipher, DataKey, KdfParams, KeyError, MasterKey};
use crate::erasure::{Coding, CodingError};
use crate::format::{FLAG_ENCRYPTED, FileId, HEADER_LEN, ShardHeader, ShardKey};
use crate::holds::{Garbage, Hold, Holds};
use crate::index::{
    ChunkEntry, Displaced, FileRecord, Index, IndexError, Keyring, Manifest, ShardLocation,
};
use crate::placement::{Candidate, place, survivable_losses};
use crate::shard_store::{ShardError, ShardStore};

/// Default plaintext bytes per chunk.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// How long a read waits for its first k + 1 shards before asking every
/// other node too: a dead node costs this much, not a connection timeout.
pub const HEDGE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
/// Chunks one put keeps in flight (and one get reads ahead): enough to keep
/// every node's link busy across a wide-area round trip (a node 220 ms away
/// at 4 MB/s holds about five 175 KB shards in the pipe), while memory stays
/// bounded whatever the file size.
pub const CHUNKS_IN_FLIGHT: usize = 16;
/// Chunks in flight across all puts and gets of a store at once: many
/// concurrent transfers share this budget instead of each taking
/// [`CHUNKS_IN_FLIGHT`], so memory stays about this many chunks (times
/// (k+m)/k) however many clients there are.
pub const STORE_CHUNK_BUDGET: usize = 64;

/// A node: an id, a region, and where its shards are.
#[derive(Clone)]
pub struct Node {
    /// Unique id.
    pub id: String,
    /// Region (placement spreads chunks over regions).
    pub region: String,
    /// Its shards.
    pub shards: Arc<dyn ShardStore>,
    online: Arc<AtomicBool>,
    /// Until when (ms on [`clock_ms`]) reads ask it last.
    suspect_until: Arc<AtomicU64>,
    /// Bytes the store may keep on it, whatever its agent allows
    /// ([`NO_QUOTA`]: none set).
    quota: Arc<AtomicU64>,
}

/// A node's quota when none is set.
pub const NO_QUOTA: u64 = u64::MAX;

/// How long a node that failed a shard read, or had not answered one when
/// the read hedged, is asked last: long enough that a file's next chunks do
/// not each wait out the hedge on a node that has just died, short enough
/// that a node merely busy for a moment is soon preferred again.
pub const SUSPECT_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Milliseconds on a process-wide monotonic clock.
fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    u64::try_from(
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis(),
    )
    .unwrap_or(u64::MAX)
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("region", &self.region)
            .field("online", &self.is_online())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// A node, online.
    pub fn new(
        id: impl Into<String>,
        region: impl Into<String>,
        shards: Arc<dyn ShardStore>,
    ) -> Self {
        Self {
            id: id.into(),
            region: region.into(),
            shards,
            online: Arc::new(AtomicBool::new(true)),
            suspect_until: Arc::new(AtomicU64::new(0)),
            quota: Arc::new(AtomicU64::new(NO_QUOTA)),
        }
    }

    /// Caps what the store keeps on it ([`NO_QUOTA`] lifts the cap).
    pub fn set_quota(&self, bytes: u64) {
        self.quota.store(bytes, Ordering::Relaxed);
    }

    /// Its quota, if one is set.
    pub fn quota(&self) -> Option<u64> {
        Some(self.quota.load(Ordering::Relaxed)).filter(|q| *q != NO_QUOTA)
    }

    /// Bytes it can still take, from its stats: the least of what its
    /// agent's quota leaves, its disk has free, and the store's quota for
    /// it leaves.
    pub fn room(&self, stats: &crate::shard_store::StoreStats) -> u64 {
        let ours = self
            .quota
            .load(Ordering::Relaxed)
            .saturating_sub(stats.used);
        stats.room().min(ours)
    }

    /// Whether a recent read failed or lagged on it (see [`SUSPECT_FOR`]).
    pub fn is_suspect(&self) -> bool {
        self.suspect_until.load(Ordering::Relaxed) > clock_ms()
    }

    pub(crate) fn suspect(&self) {
        let until = clock_ms().saturating_add(SUSPECT_FOR.as_millis() as u64);
        self.suspect_until.store(until, Ordering::Relaxed);
    }

    pub(crate) fn trust(&self) {
        self.suspect_until.store(0, Ordering::Relaxed);
    }

    /// Whether reads and writes go to it.
    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Relaxed)
    }

    fn record(&self) -> crate::index::NodeRecord {
        crate::index::NodeRecord {
            id: self.id.clone(),
            region: self.region.clone(),
            added: now_secs(),
        }
    }

    /// Its copy of shard `key`, as garbage to delete.
    pub(crate) fn garbage(&self, key: ShardKey) -> Garbage {
        Garbage {
            node: self.id.clone(),
            shards: Arc::clone(&self.shards),
            key,
        }
    }

    /// Takes it offline or brings it back.
    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Relaxed);
    }
}

/// How the master key is given.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A passphrase (Argon2id).
    Passphrase(String),
    /// A key file (created with [`MasterKey::generate_key_file`]).
    KeyFile(std::path::PathBuf),
    /// No encryption: only when asked for explicitly.
    NoEncryption,
}

/// Settings of a store.
#[derive(Debug, Clone, Copy)]
pub struct StoreSettings {
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Data shards.
    pub k: usize,
    /// Parity shards.
    pub m: usize,
    /// Argon2id parameters for a new passphrase store.
    pub kdf: Option<KdfParams>,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            k: 6,
            m: 3,
            kdf: None,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No file by that name.
    #[error("no file named {0:?}")]
    NotFound(String),
    /// Too many shards of a chunk are lost or corrupt.
    #[error("{name:?} is unrecoverable: chunk {chunk} has {have} good shards of the {k} needed")]
    Unrecoverable {
        /// The file.
        name: String,
        /// The chunk.
        chunk: u64,
        /// Good shards found.
        have: usize,
        /// Needed.
        k: usize,
    },
    /// The store's key was wrong or missing.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The key source does not match how the store was made.
    #[error("{0}")]
    KeyMismatch(&'static str),
    /// Bad redundancy settings.
    #[error(transparent)]
    Coding(#[from] CodingError),
    /// No node to write to.
    #[error("no node is online to store shards on")]
    NoNodes,
    /// The nodes with room cannot take a chunk's shards; nothing was
    /// written.
    #[error(
        "the store is full: the nodes have room for {room} of the {need} shards of a chunk \
         ({} full)",
        full.join(", ")
    )]
    StoreFull {
        /// Shards of a chunk the nodes with room can take.
        room: usize,
        /// Shards a chunk has.
        need: usize,
        /// The nodes without room.
        full: Vec<String>,
    },
    /// Writing shards failed; nothing was made visible.
    #[error("storing shard {shard} on node {node} failed; the file was not stored")]
    ShardWrite {
        /// The shard.
        shard: String,
        /// The node.
        node: String,
        /// Why.
        #[source]
        source: ShardError,
    },
    /// The index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Local input or output failed.
    #[error("input or output failed")]
    Io(#[from] std::io::Error),
    /// A worker task failed.
    #[error("internal task failed: {0}")]
    Task(String),
    /// No index backup on the nodes decodes; each generation found, and
    /// why not. Nothing was written.
    #[error("no index backup on the nodes could be read: {}", list_skipped(.0))]
    NoBackup(Vec<SkippedBackup>),
}

/// An index backup generation recovery passed over, and why
/// ([`crate::backup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedBackup {
    /// Its generation (milliseconds since the epoch when written).
    pub generation: u64,
    /// Why it did not decode.
    pub why: String,
}

impl std::fmt::Display for SkippedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "backup {}: {}", self.generation, self.why)
    }
}

fn list_skipped(s: &[SkippedBackup]) -> String {
    s.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a put stored.
#[derive(Debug, Clone)]
pub struct PutReport {
    /// The file's record.
    pub record: FileRecord,
    /// Node losses every chunk survives.
    pub survivable_losses: usize,
}

/// What a redistribution did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedistributeReport {
    /// Shards moved to less loaded nodes.
    pub shards_moved: usize,
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

/// An erasure-coded, encrypted store over nodes.
pub struct Store {
    pub(crate) index: Arc<Index>,
    pub(crate) master: Option<MasterKey>,
    /// Behind a lock so a daemon can add nodes to a store in use.
    nodes: std::sync::RwLock<Vec<Node>>,
    /// Files being read, written, repaired or moved: their shards may be
    /// on nodes before the index says so or after it stopped saying so;
    /// garbage of theirs waits, and orphan collection leaves them alone.
    pub(crate) holds: Arc<Holds>,
    settings: StoreSettings,
    coding: Coding,
    /// Permits for chunks in flight (see [`STORE_CHUNK_BUDGET`]).
    pub(crate) chunk_budget: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("nodes", &self.nodes())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store whose index is at `index_path`, creating it on first
    /// use. The key must be the one the store was made with; a wrong one is
    /// refused before anything is written.
    pub fn open(
        index_path: &std::path::Path,
        key: &KeySource,
        nodes: Vec<Node>,
        settings: StoreSettings,
    ) -> Result<Self, StoreError> {
        let coding = Coding::new(settings.k, settings.m)?;
        let index = Index::open(index_path)?;
        let master = match (index.keyring()?, key) {
            (None, KeySource::NoEncryption) => {
                index.set_keyring(&Keyring::Unencrypted, &[])?;
                None
            }
            (None, KeySource::Passphrase(p)) => {
                let params = match settings.kdf {
                    Some(p) => p,
                    None => KdfParams::calibrate(std::time::Duration::from_millis(500))?,
                };
                let salt: [u8; 16] = rand::random();
                let master = MasterKey::from_passphrase(p, &salt, params)?;
                let check = master.check_value();
                index.set_keyring(
                    &Keyring::Passphrase {
                        salt,
                        params,
                        check,
                    },
                    &[],
                )?;
                Some(master)
            }
            (None, KeySource::KeyFile(path)) => {
                let master = MasterKey::from_key_file(path)?;
                index.set_keyring(
                    &Keyring::KeyFile {
                        check: master.check_value(),
                    },
                    &[],
                )?;
                Some(master)
            }
            (Some(existing), key) => unlock(&existing, key)?,
        };
        for n in &nodes {
            index.add_node(&n.record())?;
        }
        let index = Arc::new(index);
        Ok(Self {
            holds: Holds::new(Arc::clone(&index)),
            index,
            master,
            nodes: std::sync::RwLock::new(nodes),
            settings,
            coding,
            chunk_budget: Arc::new(tokio::sync::Semaphore::new(STORE_CHUNK_BUDGET)),
        })
    }

    /// A permit for one more chunk in flight. Every operation holding
    /// permits finishes its chunks without asking for more, so waiting here
    /// cannot deadlock.
    pub(crate) async fn chunk_permit(
        &self,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        Arc::clone(&self.chunk_budget)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))
    }

    /// The nodes (handles: taking one offline takes the store's offline).
    pub fn nodes(&self) -> Vec<Node> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Adds a node (new shards may go to it at once) and records it. A node
    /// with the id of one already there replaces it.
    pub fn add_node(&self, node: Node) -> Result<(), StoreError> {
        self.index.add_node(&node.record())?;
        let mut nodes = self
            .nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        nodes.retain(|n| n.id != node.id);
        nodes.push(node);
        Ok(())
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Holds `file_id` (see [`crate::holds`]) until the guard is dropped.
    pub(crate) fn busy(&self, file_id: FileId) -> Hold {
        self.holds.hold(file_id)
    }

    /// Files held now.
    pub(crate) fn busy_files(&self) -> std::collections::HashSet<FileId> {
        self.holds.held()
    }

    /// Hands the shards of files a change took out of the index to
    /// reclamation: deleted now, or when the last reader holding them is
    /// done.
    async fn reclaim(&self, displaced: Vec<Displaced>) {
        let mut garbage = Vec::new();
        for (_, manifest) in &displaced {
            garbage.extend(self.garbage_of(manifest, |_, _| true));
        }
        self.discard(garbage).await;
    }

    /// The shards of `manifest` that `which(chunk, shard)` picks, with
    /// their nodes (shards on nodes no longer known are left to nobody).
    fn garbage_of(
        &self,
        manifest: &Manifest,
        which: impl Fn(usize, usize) -> bool,
    ) -> Vec<Garbage> {
        let nodes = self.nodes();
        let mut out = Vec::new();
        for (c, entry) in manifest.chunks.iter().enumerate() {
            for (i, loc) in entry.shards.iter().enumerate() {
                if !which(c, i) {
                    continue;
                }
                if let Some(node) = nodes.iter().find(|n| n.id == loc.node) {
                    let key = ShardKey {
                        file_id: manifest.file_id,
                        chunk: c as u64,
                        index: i as u8,
                    };
                    out.push(node.garbage(key));
                }
            }
        }
        out
    }

    /// Deletes garbage shards now, or once their file is no longer held.
    pub(crate) async fn discard(&self, garbage: Vec<Garbage>) {
        let now = self.holds.discard(garbage);
        if !now.is_empty() {
            self.holds.delete(now).await;
        }
    }

    /// Tries again to delete shards whose delete failed because their node
    /// was away (the daemon calls this when a node comes back). Returns how
    /// many are still waiting.
    pub async fn retry_strays(&self) -> usize {
        self.holds.retry_strays().await
    }

    pub(crate) fn coding(&self) -> Coding {
        self.coding
    }

    pub(crate) fn master(&self) -> Option<&MasterKey> {
        self.master.as_ref()
    }

    pub(crate) fn node(&self, id: &str) -> Option<Node> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|n| n.id == id)
            .cloned()
    }

    /// The online nodes that answer, with the room each has.
    async fn candidates(&self) -> Vec<Candidate> {
        // All at once: one round trip to the farthest node, not the sum.
        let online: Vec<Node> = self.nodes().into_iter().filter(Node::is_online).collect();
        let stats = futures_util::future::join_all(online.iter().map(|n| n.shards.stats())).await;
        online
            .iter()
            .zip(stats)
            .filter_map(|(n, s)| {
                let s = s.ok()?;
                Some(Candidate {
                    id: n.id.clone(),
                    region: n.region.clone(),
                    free: n.room(&s),
                })
            })
            .collect()
    }

    /// Bytes of the largest shard a chunk makes (a full, encrypted one).
    fn largest_shard(&self) -> u64 {
        largest_shard(&self.settings)
    }

    /// The candidates with room for at least one shard of a full chunk, so
    /// a full node takes no new shards while the others do; an error naming
    /// the full nodes when those with room cannot take a chunk's k + m
    /// shards between them.
    fn with_room(&self, candidates: Vec<Candidate>) -> Result<Vec<Candidate>, StoreError> {
        let shard = self.largest_shard();
        let need = self.coding.n();
        let (room, full): (Vec<Candidate>, Vec<Candidate>) =
            candidates.into_iter().partition(|c| c.free >= shard);
        let slots: u64 = room.iter().map(|c| (c.free / shard).min(need as u64)).sum();
        if slots < need as u64 {
            return Err(StoreError::StoreFull {
                room: usize::try_from(slots).unwrap_or(need),
                need,
                full: full.into_iter().map(|c| c.id).collect(),
            });
        }
        Ok(room)
    }

    /// Changes the passphrase: rewraps every data key under the new master
    /// key in one transaction; shards are not touched.
    pub fn change_passphrase(
        &mut self,
        new: &str,
        params: Option<KdfParams>,
    ) -> Result<(), StoreError> {
        let old = self
            .master
            .clone()
            .ok_or(StoreError::KeyMismatch("this store is not encrypted"))?;
        let params = match params {
            Some(p) => p,
            None => KdfParams::calibrate(std::time::Duration::from_millis(500))?,
        };
        let salt: [u8; 16] = rand::random();
        let new_master = MasterKey::from_passphrase(new, &salt, params)?;
        let mut rewrapped = Vec::new();
        for rec in self.index.files()? {
            if let Some(w) = &rec.wrapped_key {
                let key = old.unwrap(rec.file_id, w)?;
                rewrapped.push((
                    rec.name.clone(),
                    new_master.wrap(rec.file_id, &key).to_vec(),
                ));
            }
        }
        let keyring = Keyring::Passphrase {
            salt,
            params,
            check: new_master.check_value(),
        };
        self.index.set_keyring(&keyring, &rewrapped)?;
        self.master = Some(new_master);
        Ok(())
    }

    /// Stores `input` as `name`: chunked, encrypted, coded and spread over
    /// the nodes; visible only once every shard is durable. A file of that
    /// name is replaced (its shards deleted after the switch, once no
    /// reader holds it).
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        mut input: R,
    ) -> Result<PutReport, StoreError> {
        let file_id = FileId::random();
        let _busy = self.busy(file_id);
        let data_key = self.master.as_ref().map(|_| DataKey::random());
        let cipher = data_key.as_ref().map(|k| Arc::new(k.cipher(file_id)));
        let candidates = self.candidates().await;
        if candidates.is_empty() {
            return Err(StoreError::NoNodes);
        }
        let room = Arc::new(Room::new(self.with_room(candidates)?, self.largest_shard()));
        let chunk_size = self.settings.chunk_size as usize;
        let mut in_flight = FuturesOrdered::new();
        let mut chunks: Vec<ChunkEntry> = Vec::new();
        let mut written: Vec<(String, ShardKey)> = Vec::new();
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut chunk = 0u64;
        let mut failure = None;
        loop {
            let mut buf = Vec::with_capacity(chunk_size + 16);
            let n = match read_full(&mut input, &mut buf, chunk_size).await {
                Ok(n) => n,
                Err(e) => {
                    // The input broke off (a client gone): what was stored
                    // of it is removed below, like any failed put.
                    failure = failure.or(Some(e.into()));
                    break;
                }
            };
            if n > 0 {
                hasher.update(&buf);
                size += n as u64;
                let targets = room.place(file_id, chunk, self.coding.n());
                // Chunks in flight only progress while polled, so never
                // wait for a permit while holding some: finish one of ours
                // first (it frees its permit).
                let permit = loop {
                    if let Ok(p) = Arc::clone(&self.chunk_budget).try_acquire_owned() {
                        break Ok(p);
                    }
                    match in_flight.next().await {
                        Some(done) => absorb(done, &mut chunks, &mut written, &mut failure),
                        None => break self.chunk_permit().await,
                    }
                };
                let permit = match permit {
                    Ok(p) => p,
                    Err(e) => {
                        failure = failure.or(Some(e));
                        break;
                    }
                };
                let stored =
                    self.store_chunk(file_id, chunk, buf, cipher.clone(), targets, room.clone());
                in_flight.push_back(async move {
                    let done = stored.await;
                    drop(permit);
                    done
                });
                chunk += 1;
            }
            // Keep at most CHUNKS_IN_FLIGHT chunks in memory.
            while in_flight.len() >= CHUNKS_IN_FLIGHT || (n < chunk_size && !in_flight.is_empty()) {
                let Some(done) = in_flight.next().await else {
                    break;
                };
                absorb(done, &mut chunks, &mut written, &mut failure);
            }
            if n < chunk_size || failure.is_some() {
                break;
            }
        }
        while let Some(done) = in_flight.next().await {
            absorb(done, &mut chunks, &mut written, &mut failure);
        }
        if let Some(e) = failure {
            self.delete_shards(&written).await;
            return Err(e);
        }
        let record = FileRecord {
            name: name.to_owned(),
            file_id,
            size,
            chunk_size: self.settings.chunk_size,
            k: self.coding.k() as u8,
            m: self.coding.m() as u8,
            wrapped_key: match (&self.master, &data_key) {
                (Some(master), Some(key)) => Some(master.wrap(file_id, key).to_vec()),
                _ => None,
            },
            created: now_secs(),
            blake3: *hasher.finalize().as_bytes(),
            attrs: Vec::new(),
            parts: Vec::new(),
        };
        let manifest = Manifest { file_id, chunks };
        let replaced = match self.index.commit_file(&record, &manifest) {
            Ok(r) => r,
            Err(e) => {
                self.delete_shards(&written).await;
                return Err(e.into());
            }
        };
        self.reclaim(replaced).await;
        Ok(PutReport {
            survivable_losses: survivable_losses(&manifest, self.coding.k()),
            record,
        })
    }

    /// Encrypts, codes, hashes and stores one chunk. Returns its entry (or
    /// the error) and the shards that were written either way.
    async fn store_chunk(
        &self,
        file_id: FileId,
        chunk: u64,
        plain: Vec<u8>,
        cipher: Option<Arc<ChunkCipher>>,
        mut targets: Vec<String>,
        room: Arc<Room>,
    ) -> StoredChunk {
        let coding = self.coding;
        let blobs = tokio::task::spawn_blocking(move || {
            encode_chunk(coding, file_id, chunk, plain, cipher.as_deref())
        })
        .await;
        let EncodedChunk {
            payload_len,
            blobs,
            hashes,
        } = match blobs {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return (None, Vec::new(), Some(e)),
            Err(e) => return (None, Vec::new(), Some(StoreError::Task(e.to_string()))),
        };
        let put = |index: usize, node_id: String| {
            let key = ShardKey {
                file_id,
                chunk,
                index: index as u8,
            };
            let node = self.node(&node_id);
            let blob = blobs[index].clone();
            async move {
                let result = match node {
                    Some(n) => n.shards.put(key, blob).await,
                    None => Err(ShardError::Unavailable(format!(
                        "node {node_id} is not known"
                    ))),
                };
                (index, node_id, key, result)
            }
        };
        let mut puts = FuturesUnordered::new();
        for (index, node_id) in targets.iter().enumerate() {
            puts.push(put(index, node_id.clone()));
        }
        let mut written = Vec::new();
        let mut error = None;
        while let Some((index, node, key, result)) = puts.next().await {
            match result {
                Ok(()) => written.push((node, key)),
                // A node that filled up since the put began: the shard
                // goes to another node with room, as if it had been full
                // from the start.
                Err(source)
                    if source.is_full()
                        && let Some(other) = room.instead_of(&node, &targets) =>
                {
                    tracing::debug!(%node, to = %other, "node full: shard placed elsewhere");
                    targets[index].clone_from(&other);
                    puts.push(put(index, other));
                }
                Err(source) => {
                    error.get_or_insert(StoreError::ShardWrite {
                        shard: key.name(),
                        node: node.clone(),
                        source,
                    });
                    // It may have landed before failing: try to remove it too.
                    written.push((node, key));
                }
            }
        }
        if let Some(e) = error {
            return (None, written, Some(e));
        }
        let shards = hashes
            .into_iter()
            .zip(targets)
            .map(|(blake3, node)| ShardLocation { node, blake3 })
            .collect();
        (
            Some(ChunkEntry {
                payload_len,
                shards,
            }),
            written,
            None,
        )
    }

    /// Deletes shards that nothing refers to (written by a put or repair
    /// that failed); those on nodes away now are deleted when they return.
    async fn delete_shards(&self, shards: &[(String, ShardKey)]) {
        let garbage = shards
            .iter()
            .filter_map(|(node, key)| Some(self.node(node)?.garbage(*key)))
            .collect();
        self.holds.delete(garbage).await;
    }

    /// Removes a file (and the parts it is made of). Its shards go once
    /// no reader holds it.
    pub async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let removed = self
            .index
            .remove_file(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        self.reclaim(removed).await;
        Ok(())
    }

    /// Gives file `from` the name `to`, replacing a file of that name, and
    /// `attrs` as its attributes when given, in one index transaction.
    /// Moves no data: a writer can store under a private name, then make
    /// the file visible under its real one, with its metadata, at the
    /// moment it chooses.
    pub async fn rename(
        &self,
        from: &str,
        to: &str,
        attrs: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let replaced = self.index.rename_file(from, to, attrs).map_err(not_found)?;
        self.reclaim(replaced).await;
        Ok(())
    }

    /// Makes `name` a file made of the files `parts`, in order, with
    /// `attrs`, in one index transaction, replacing a file of that name.
    /// Moves no data; the parts belong to it from then on (they go when it
    /// goes). Returns its record.
    pub async fn compose(
        &self,
        name: &str,
        parts: &[String],
        attrs: &[u8],
    ) -> Result<FileRecord, StoreError> {
        let record = FileRecord {
            name: name.to_owned(),
            file_id: FileId::random(),
            size: 0,
            chunk_size: 0,
            k: self.coding.k() as u8,
            m: self.coding.m() as u8,
            wrapped_key: None,
            created: now_secs(),
            blake3: [0; 32],
            attrs: attrs.to_vec(),
            parts: parts.to_vec(),
        };
        let (record, replaced) = self.index.compose(&record).map_err(not_found)?;
        self.reclaim(replaced).await;
        Ok(record)
    }

    /// How many node losses a stored file survives.
    pub fn survivable_losses(&self, name: &str) -> Result<usize, StoreError> {
        let (rec, manifest) = self
            .index
            .file(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        Ok(survivable_losses(&manifest, usize::from(rec.k)))
    }

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
        let (record, mut manifest) = self
            .index
            .file(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
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
                .map_err(|e| StoreError::Task(e.to_string()))??;
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
            let targets = place(pool, record.file_id, chunk, missing.len());
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
    /// shard again. Each move is read, checked against its BLAKE3, written,
    /// recorded, and only then given up on the crowded node; a shard that
    /// cannot be moved now stays where it is, as good as before.
    async fn spread(
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
            let targets = place(&fresh, record.file_id, c as u64, moves);
            for (&i, node_id) in crowded.iter().zip(targets) {
                let key = ShardKey {
                    file_id: record.file_id,
                    chunk: c as u64,
                    index: i as u8,
                };
                let old = manifest.chunks[c].shards[i].clone();
                let (Some(from), Some(to)) = (self.node(&old.node), self.node(&node_id)) else {
                    continue;
                };
                let blob = match from.shards.get(key).await {
                    Ok(b) if *blake3::hash(&b).as_bytes() == old.blake3 => b,
                    // Missing or damaged: the next repair rebuilds it.
                    _ => continue,
                };
                if let Err(e) = to.shards.put(key, blob).await {
                    tracing::debug!(shard = %key.name(), node = %node_id, "spread: {e}");
                    continue;
                }
                manifest.chunks[c].shards[i] = ShardLocation {
                    node: node_id.clone(),
                    blake3: old.blake3,
                };
                if !self.index.update_manifest(&record.name, manifest)? {
                    let _ = to.shards.delete(key).await;
                    return Err(StoreError::NotFound(record.name.clone()));
                }
                // Another shard of the chunk stays on the crowded node, so
                // this is a copy the index no longer names there.
                self.discard(vec![from.garbage(key)]).await;
                report.shards_spread += 1;
            }
        }
        Ok(())
    }
}

impl Store {
    /// Moves shards from nodes holding more than their share (of the online
    /// nodes) to nodes holding less, never onto a node that already holds a
    /// shard of the same chunk: after adding nodes, usage evens out. Each
    /// moved shard is read, checked against its BLAKE3, written, recorded,
    /// and only then removed from its old node. Shards on offline nodes and
    /// corrupt ones are left to repair.
    pub async fn redistribute(&self) -> Result<RedistributeReport, StoreError> {
        let mut counts: std::collections::BTreeMap<String, usize> = self
            .nodes()
            .iter()
            .filter(|n| n.is_online())
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
        let total: usize = counts.values().sum();
        let target = total.div_ceil(counts.len());
        let mut report = RedistributeReport::default();
        for (rec, mut manifest) in files {
            let busy = self.busy(rec.file_id);
            let mut stale = Vec::new();
            let mut copies = Vec::new();
            for c in 0..manifest.chunks.len() {
                for i in 0..manifest.chunks[c].shards.len() {
                    let from = manifest.chunks[c].shards[i].node.clone();
                    if counts.get(&from).is_none_or(|n| *n <= target) {
                        continue;
                    }
                    let holders: Vec<String> = manifest.chunks[c]
                        .shards
                        .iter()
                        .map(|s| s.node.clone())
                        .collect();
                    let Some(dest) = counts
                        .iter()
                        .filter(|(id, n)| **n < target && !holders.contains(id))
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
                        continue;
                    };
                    if *blake3::hash(&blob).as_bytes() != manifest.chunks[c].shards[i].blake3 {
                        continue;
                    }
                    if dst.shards.put(key, blob).await.is_err() {
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

/// The room a put has on its nodes: placement takes a node's room down by
/// each shard it sends there, and a node that fills up anyway (another
/// writer, another use of the disk) is given up for the rest of the put.
struct Room {
    candidates: std::sync::Mutex<Vec<Candidate>>,
    shard: u64,
}

impl Room {
    fn new(candidates: Vec<Candidate>, shard: u64) -> Self {
        Self {
            candidates: std::sync::Mutex::new(candidates),
            shard,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Candidate>> {
        self.candidates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The nodes for a chunk's `n` shards, among those with room left.
    fn place(&self, file_id: FileId, chunk: u64, n: usize) -> Vec<String> {
        let mut candidates = self.lock();
        let with_room: Vec<Candidate> = candidates
            .iter()
            .filter(|c| c.free >= self.shard)
            .cloned()
            .collect();
        // Nobody has room left by this put's count: place as before and
        // let the nodes say (another put may have freed room).
        let pool = if with_room.is_empty() {
            candidates.clone()
        } else {
            with_room
        };
        let targets = place(&pool, file_id, chunk, n);
        for t in &targets {
            if let Some(c) = candidates.iter_mut().find(|c| c.id == *t) {
                c.free = c.free.saturating_sub(self.shard);
            }
        }
        targets
    }

    /// Marks `full` as out of room and picks another node with room for a
    /// shard, preferring one that holds none of `chunk_targets`.
    fn instead_of(&self, full: &str, chunk_targets: &[String]) -> Option<String> {
        let mut candidates = self.lock();
        if let Some(c) = candidates.iter_mut().find(|c| c.id == full) {
            c.free = 0;
        }
        let best = |fresh: bool| {
            candidates
                .iter()
                .filter(|c| c.free >= self.shard && (!fresh || !chunk_targets.contains(&c.id)))
                .max_by_key(|c| c.free)
                .map(|c| c.id.clone())
        };
        let other = best(true).or_else(|| best(false))?;
        if let Some(c) = candidates.iter_mut().find(|c| c.id == other) {
            c.free = c.free.saturating_sub(self.shard);
        }
        Some(other)
    }
}

/// Bytes of the largest shard a store with `settings` makes (a full chunk,
/// encrypted): a node with less room than this takes no new shards.
pub fn largest_shard(settings: &StoreSettings) -> u64 {
    (HEADER_LEN + crate::format::shard_len(settings.chunk_size as usize + 16, settings.k)) as u64
}

/// An index error naming a missing file, as the store's own.
fn not_found(e: IndexError) -> StoreError {
    match e {
        IndexError::NoSuchFile(name) => StoreError::NotFound(name),
        other => other.into(),
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The master key of an existing store, checked against its keyring.
pub(crate) fn unlock(keyring: &Keyring, key: &KeySource) -> Result<Option<MasterKey>, StoreError> {
    match (keyring, key) {
        (Keyring::Unencrypted, KeySource::NoEncryption) => Ok(None),
        (Keyring::Unencrypted, _) => Err(StoreError::KeyMismatch(
            "this store was created without encryption; open it with --no-encryption",
        )),
        (_, KeySource::NoEncryption) => Err(StoreError::KeyMismatch(
            "this store is encrypted; give its passphrase or key file",
        )),
        (
            Keyring::Passphrase {
                salt,
                params,
                check,
            },
            KeySource::Passphrase(p),
        ) => {
            let master = MasterKey::from_passphrase(p, salt, *params)?;
            if master.check_value() != *check {
                return Err(KeyError::WrongKey.into());
            }
            Ok(Some(master))
        }
        (Keyring::KeyFile { check }, KeySource::KeyFile(path)) => {
            let master = MasterKey::from_key_file(path)?;
            if master.check_value() != *check {
                return Err(KeyError::WrongKey.into());
            }
            Ok(Some(master))
        }
        (Keyring::Passphrase { .. }, KeySource::KeyFile(_)) => Err(StoreError::KeyMismatch(
            "this store is opened with a passphrase, not a key file",
        )),
        (Keyring::KeyFile { .. }, KeySource::Passphrase(_)) => Err(StoreError::KeyMismatch(
            "this store is opened with a key file, not a passphrase",
        )),
    }
}

/// Reads until `limit` bytes or end of input; returns how many.
/// What [`Store::store_chunk`] returns.
type StoredChunk = (
    Option<ChunkEntry>,
    Vec<(String, ShardKey)>,
    Option<StoreError>,
);

/// Takes a stored chunk's outcome into a put's running state: chunks are
/// in order because the put's futures are.
fn absorb(
    done: StoredChunk,
    chunks: &mut Vec<ChunkEntry>,
    written: &mut Vec<(String, ShardKey)>,
    failure: &mut Option<StoreError>,
) {
    let (entry, keys, err) = done;
    written.extend(keys);
    match (entry, err) {
        (Some(e), None) => chunks.push(e),
        (_, e) => {
            if failure.is_none() {
                *failure = e;
            }
        }
    }
}

async fn read_full<R: AsyncRead + Unpin>(
    input: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<usize> {
    while buf.len() < limit {
        let n = (&mut *input)
            .take((limit - buf.len()) as u64)
            .read_buf(buf)
            .await?;
        if n == 0 {
            break;
        }
    }
    Ok(buf.len())
}

/// One shard's header.
fn shard_header(
    coding: &Coding,
    key: ShardKey,
    payload_len: u32,
    encrypted: bool,
    shard_len: usize,
) -> [u8; HEADER_LEN] {
    ShardHeader {
        flags: if encrypted { FLAG_ENCRYPTED } else { 0 },
        k: coding.k() as u8,
        m: coding.m() as u8,
        key,
        payload_len,
        shard_len: shard_len as u32,
    }
    .encode()
}

/// One shard with its header, as stored.
fn shard_blob(
    coding: &Coding,
    key: ShardKey,
    payload_len: u32,
    encrypted: bool,
    data: &[u8],
) -> Bytes {
    let mut blob = Vec::with_capacity(HEADER_LEN + data.len());
    blob.extend_from_slice(&shard_header(
        coding,
        key,
        payload_len,
        encrypted,
        data.len(),
    ));
    blob.extend_from_slice(data);
    Bytes::from(blob)
}

/// A chunk ready to store: its payload length, and each shard with its BLAKE3.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    /// Bytes of payload before padding.
    pub payload_len: u32,
    /// Shard `i`, header included.
    pub blobs: Vec<Bytes>,
    /// BLAKE3 of each blob.
    pub hashes: Vec<[u8; 32]>,
}

/// The CPU part of a put for one chunk: encrypt, code, frame, hash.
pub fn encode_chunk(
    coding: Coding,
    file_id: FileId,
    chunk: u64,
    mut payload: Vec<u8>,
    cipher: Option<&ChunkCipher>,
) -> Result<EncodedChunk, StoreError> {
    if let Some(c) = cipher {
        c.seal(chunk, &mut payload);
    }
    let payload_len = payload.len() as u32;
    let len = crate::format::shard_len(payload.len(), coding.k());
    let blobs = coding.encode_framed(&payload, |i| {
        let key = ShardKey {
            file_id,
            chunk,
            index: i as u8,
        };
        shard_header(&coding, key, payload_len, cipher.is_some(), len)
    })?;
    let hashes = blobs.iter().map(|b| *blake3::hash(b).as_bytes()).collect();
    Ok(EncodedChunk {
        payload_len,
        blobs: blobs.into_iter().map(Bytes::from).collect(),
        hashes,
    })
}
