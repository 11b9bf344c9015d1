//! The store: streaming put and get, delete, repair, over a set of nodes.
//! By concern: [`node`] (a node as the store sees it, with its write
//! queue), [`error`], `put` (the input read into chunks), `write` (a
//! chunk's shards written, hedged), `room` (where shards go), `budget`
//! (memory counted in shards), `repair` (and redistribution), and reads in
//! [`crate::read`]; opening, naming and deleting here.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, FuturesUnordered, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::crypto::{ChunkCipher, DataKey, KdfParams, KeyError, MasterKey};
use crate::erasure::Coding;
use crate::format::{FLAG_ENCRYPTED, FileId, HEADER_LEN, ShardHeader, ShardKey};
use crate::holds::{Garbage, Hold, Holds};
use crate::index::{
    ChunkEntry, Displaced, FileRecord, Index, IndexError, Keyring, Manifest, ShardLocation,
};
use crate::placement::{Candidate, Domains, Tolerance, place, tolerance};
use crate::shard_store::ShardError;

/// Default plaintext bytes per chunk.
pub const DEFAULT_CHUNK_SIZE: u32 = 1 << 20;
/// How long a read waits for the shards it asked first before asking every
/// other node too: a dead node costs this much, not a connection timeout.
pub const HEDGE_DELAY: std::time::Duration = std::time::Duration::from_millis(500);
/// Chunks one get reads ahead: enough to keep the links of the nodes it
/// reads from busy across a wide-area round trip, while memory stays
/// bounded whatever the file size (and within [`STORE_SHARD_BUDGET`]).
pub const CHUNKS_IN_FLIGHT: usize = 16;
/// Nodes beyond a chunk's k + m that a put wants among its candidates
/// before it stops waiting for suspect nodes to say how much room they
/// have: hedged writes need somewhere to go.
const SPARES_WANTED: usize = 2;
/// How long a put waits for its nodes to say how much room they have
/// before going on without those that have not (when the rest suffice).
pub const STATS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// A node's answer to stats older than this is asked again (in the
/// background: the put goes on with the answer it has).
pub const STATS_FRESH: std::time::Duration = std::time::Duration::from_secs(1);
/// A node's answer to stats older than this is not used: the put asks.
/// Writes through this store keep the answer up to date meanwhile, and a
/// node that fills up anyway says so when written to (the shard then goes
/// elsewhere).
pub const STATS_STALE: std::time::Duration = std::time::Duration::from_secs(30);

mod budget;
mod drain;
pub mod error;
pub mod node;
mod put;
mod repair;
mod room;
mod write;

pub(crate) use budget::{Budget, read_cost};
pub use budget::{PUT_SHARD_WINDOW, STORE_SHARD_BUDGET};
pub use drain::DrainReport;
pub use error::{SkippedBackup, StoreError};
pub use node::{
    NO_QUOTA, Node, SUSPECT_FOR, WRITE_HEDGE_FACTOR, WRITE_HEDGE_FIRST, WRITE_HEDGE_MAX,
    WRITE_HEDGE_MIN, WRITES_PER_NODE,
};
pub use put::{PutReport, largest_shard};
pub use repair::{RedistributeReport, RepairReport, ShardGap};
pub(crate) use write::shard_blob;
pub use write::{EncodedChunk, LATE_WRITE_LIMIT, encode_chunk};

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

/// The store's master keys: the one in use, and the one a key change
/// replaced (in memory only: a read that took a file's record just before
/// the change still opens it).
#[derive(Default)]
struct Keys {
    current: Option<Arc<MasterKey>>,
    previous: Option<Arc<MasterKey>>,
    /// Key changes since the store was opened.
    epoch: u64,
}

/// The key a store changes to (see [`Store::change_key`]).
#[derive(Debug, Clone, Copy)]
pub enum NewKey<'a> {
    /// A new passphrase (Argon2id with `params`, calibrated when `None`).
    Passphrase {
        /// The passphrase.
        passphrase: &'a str,
        /// Its Argon2id parameters.
        params: Option<KdfParams>,
    },
    /// A new key file (made with [`MasterKey::generate_key_file`]).
    KeyFile(&'a std::path::Path),
}

/// An erasure-coded, encrypted store over nodes.
pub struct Store {
    pub(crate) index: Arc<Index>,
    /// The master key (none when unencrypted), behind a lock a key change
    /// takes: puts wrap their data key and commit under its read side.
    keys: std::sync::RwLock<Keys>,
    /// The key change (epoch) whose older index backups were deleted.
    pub(crate) backups_pruned_for: std::sync::atomic::AtomicU64,
    /// Behind a lock so a daemon can add nodes to a store in use.
    nodes: std::sync::RwLock<Vec<Node>>,
    /// Files being read, written, repaired or moved: their shards may be
    /// on nodes before the index says so or after it stopped saying so;
    /// garbage of theirs waits, and orphan collection leaves them alone.
    pub(crate) holds: Arc<Holds>,
    /// One lock per file whose manifest is being changed in place (repair,
    /// spread, drain, redistribution): each reads the manifest, moves
    /// shards and writes it back whole, so two at once would undo each
    /// other's moves (and name shards already deleted).
    edits: std::sync::Mutex<HashMap<FileId, Arc<tokio::sync::Mutex<()>>>>,
    settings: StoreSettings,
    coding: Coding,
    /// Room for shards in memory (see [`STORE_SHARD_BUDGET`]).
    pub(crate) shard_budget: Arc<tokio::sync::Semaphore>,
    /// Buffers puts reuse (see [`crate::buffers`]).
    pub(crate) buffers: crate::buffers::PutBuffers,
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
        // A key change whose old backups were not deleted before the last
        // stop: the first backup from now deletes them.
        let epoch = u64::from(index.old_key_backups()?);
        let index = Arc::new(index);
        Ok(Self {
            holds: Holds::new(Arc::clone(&index)),
            edits: std::sync::Mutex::new(HashMap::new()),
            index,
            keys: std::sync::RwLock::new(Keys {
                current: master.map(Arc::new),
                previous: None,
                epoch,
            }),
            backups_pruned_for: std::sync::atomic::AtomicU64::new(0),
            nodes: std::sync::RwLock::new(nodes),
            settings,
            coding,
            shard_budget: Arc::new(tokio::sync::Semaphore::new(STORE_SHARD_BUDGET)),
            buffers: crate::buffers::PutBuffers::default(),
        })
    }

    /// Whether no put or get holds shard memory now (none under way).
    pub fn is_idle(&self) -> bool {
        self.shard_budget.available_permits() >= STORE_SHARD_BUDGET
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

    /// Waits until no other change of `file_id`'s manifest is under way,
    /// and keeps others out until the guard goes. Read the manifest after.
    pub(crate) async fn edit(&self, file_id: FileId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut edits = self
                .edits
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Locks nobody holds or waits for are dropped as others come.
            edits.retain(|_, l| Arc::strong_count(l) > 1);
            Arc::clone(edits.entry(file_id).or_default())
        };
        lock.lock_owned().await
    }

    /// `name`'s record and manifest, read under its edit lock (see
    /// [`Store::edit`]); the guard comes with them.
    pub(crate) async fn file_for_edit(
        &self,
        name: &str,
    ) -> Result<(tokio::sync::OwnedMutexGuard<()>, FileRecord, Manifest), StoreError> {
        loop {
            let (record, _) = self
                .index
                .file(name)?
                .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
            let guard = self.edit(record.file_id).await;
            let (record_now, manifest) = self
                .index
                .file(name)?
                .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
            // Replaced while waiting: the new version's lock is the one.
            if record_now.file_id == record.file_id {
                return Ok((guard, record_now, manifest));
            }
        }
    }

    /// Files held now.
    pub(crate) fn busy_files(&self) -> std::collections::HashSet<FileId> {
        self.holds.held()
    }

    /// Hands the shards of files a change took out of the index to
    /// reclamation: deleted now, or when the last reader holding them is
    /// done.
    pub(crate) async fn reclaim(&self, displaced: Vec<Displaced>) {
        let mut garbage = Vec::new();
        for (_, manifest) in &displaced {
            garbage.extend(self.garbage_of(manifest, |_, _| true));
        }
        self.discard(garbage).await;
    }

    /// The shards of `manifest` that `which(chunk, shard)` picks, with
    /// their nodes (shards on nodes no longer known are left to nobody).
    pub(crate) fn garbage_of(
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

    /// The master key in use (none when unencrypted).
    pub(crate) fn master(&self) -> Option<Arc<MasterKey>> {
        self.read_keys().current.clone()
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, Keys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` with the master key in use, and no key change until it
    /// returns: what a put wraps and commits under it stays openable.
    pub(crate) fn with_master<T>(&self, f: impl FnOnce(Option<&MasterKey>) -> T) -> T {
        self.with_master_epoch(|master, _| f(master))
    }

    /// [`Store::with_master`], also told how many key changes the store
    /// has had since it was opened.
    pub(crate) fn with_master_epoch<T>(&self, f: impl FnOnce(Option<&MasterKey>, u64) -> T) -> T {
        let keys = self.read_keys();
        f(keys.current.as_deref(), keys.epoch)
    }

    /// A file's data key, unwrapped with the master key in use or, for a
    /// record read just before a key change, the one it replaced.
    pub(crate) fn unwrap_data_key(
        &self,
        file_id: FileId,
        wrapped: &[u8],
    ) -> Result<Option<crate::crypto::DataKey>, StoreError> {
        let keys = self.read_keys();
        let Some(current) = &keys.current else {
            return Ok(None);
        };
        match current.unwrap(file_id, wrapped) {
            Ok(k) => Ok(Some(k)),
            Err(e) => match &keys.previous {
                Some(previous) => Ok(Some(previous.unwrap(file_id, wrapped).map_err(|_| e)?)),
                None => Err(e.into()),
            },
        }
    }

    pub(crate) fn node(&self, id: &str) -> Option<Node> {
        self.nodes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|n| n.id == id)
            .cloned()
    }

    /// The online nodes that are not being drained, with the room each has. A node's last answer to
    /// stats stands for [`STATS_STALE`] (a write through this store keeps
    /// it up to date), asked again in the background once it is older
    /// than [`STATS_FRESH`]; so a put does not wait on a round trip to
    /// every node, nor on a node that stopped answering. Nodes without a
    /// usable answer are asked all at once; suspect nodes that have not
    /// answered when the others have, and any that have not within
    /// [`STATS_WAIT`], are left out (and suspect) when the others can take
    /// a chunk between them.
    pub(crate) async fn candidates(&self) -> Vec<Candidate> {
        let online: Vec<Node> = self
            .nodes()
            .into_iter()
            .filter(|n| n.is_online() && !n.is_draining())
            .collect();
        let candidate = |n: &Node, s: &crate::shard_store::StoreStats| Candidate {
            id: n.id.clone(),
            region: n.region.clone(),
            principal: n.principal.clone(),
            free: n.room(s),
        };
        let mut out = Vec::new();
        let mut answered = Vec::new();
        let mut asked = FuturesUnordered::new();
        for n in &online {
            match n.cached_stats() {
                Some((age, stats)) if age < STATS_STALE => {
                    out.push(candidate(n, &stats));
                    answered.push(n.id.clone());
                    if age >= STATS_FRESH {
                        n.refresh_stats();
                    }
                }
                _ => asked.push(async move { (n, n.ask_stats().await) }),
            }
        }
        let wait = tokio::time::sleep(STATS_WAIT);
        tokio::pin!(wait);
        let mut waited = false;
        while !asked.is_empty() {
            tokio::select! {
                next = asked.next() => {
                    let Some((n, result)) = next else { break };
                    answered.push(n.id.clone());
                    if let Ok(s) = result {
                        out.push(candidate(n, &s));
                    }
                    // Nodes already suspect (a write or read lagged on
                    // them just now) are not waited for once the others
                    // can take a chunk with spares to hedge to.
                    let waiting_on_trusted = online
                        .iter()
                        .any(|n| !n.is_suspect() && !answered.contains(&n.id));
                    if !waiting_on_trusted && out.len() >= self.coding.n() + SPARES_WANTED {
                        break;
                    }
                }
                () = &mut wait, if !waited => {
                    waited = true;
                    if out.len() >= self.coding.n() {
                        for n in online.iter().filter(|n| !answered.contains(&n.id)) {
                            tracing::debug!(node = %n.id, "no answer to stats: left out of this put");
                            n.suspect();
                        }
                        break;
                    }
                }
            }
        }
        out
    }

    /// Bytes of the largest shard a chunk makes (a full, encrypted one).
    pub(crate) fn largest_shard(&self) -> u64 {
        largest_shard(&self.settings)
    }

    /// The candidates with room for at least one shard of a full chunk, so
    /// a full node takes no new shards while the others do; an error naming
    /// the full nodes when those with room cannot take a chunk's k + m
    /// shards between them.
    pub(crate) fn with_room(
        &self,
        candidates: Vec<Candidate>,
    ) -> Result<Vec<Candidate>, StoreError> {
        let shard = self.largest_shard();
        let need = self.coding.n();
        let (room, full): (Vec<Candidate>, Vec<Candidate>) =
            candidates.into_iter().partition(|c| c.free >= shard);
        let slots: u64 = room.iter().map(|c| (c.free / shard).min(need as u64)).sum();
        if slots < need as u64 {
            let mut full: Vec<String> = full.into_iter().map(|c| c.id).collect();
            full.sort();
            return Err(StoreError::StoreFull {
                room: usize::try_from(slots).unwrap_or(need),
                need,
                full,
            });
        }
        Ok(room)
    }

    /// Checks that `key` opens the store now (a passphrase change asks for
    /// the old one first): [`KeyError::WrongKey`] if it does not.
    pub fn check_key(&self, key: &KeySource) -> Result<(), StoreError> {
        let keyring = self
            .index
            .keyring()?
            .ok_or(StoreError::KeyMismatch("the store has no keyring yet"))?;
        unlock(&keyring, key).map(|_| ())
    }

    /// Changes the passphrase: see [`Store::change_key`].
    pub fn change_passphrase(
        &self,
        new: &str,
        params: Option<KdfParams>,
    ) -> Result<usize, StoreError> {
        self.change_key(NewKey::Passphrase {
            passphrase: new,
            params,
        })
    }

    /// Changes the master key (a new passphrase or key file): every data
    /// key is rewrapped under the new one, with the new keyring, in one
    /// index transaction (no shard is rewritten), so the old key or the
    /// new one opens the store, never neither; from then on only the new
    /// one does. Puts commit before or after it, never across it. Returns
    /// how many data keys were rewrapped.
    pub fn change_key(&self, new: NewKey<'_>) -> Result<usize, StoreError> {
        // Argon2id takes its half second before any lock is held.
        let (new_master, keyring) = match new {
            NewKey::Passphrase { passphrase, params } => {
                let params = match params {
                    Some(p) => p,
                    None => KdfParams::calibrate(std::time::Duration::from_millis(500))?,
                };
                let salt: [u8; 16] = rand::random();
                let master = MasterKey::from_passphrase(passphrase, &salt, params)?;
                let check = master.check_value();
                (
                    master,
                    Keyring::Passphrase {
                        salt,
                        params,
                        check,
                    },
                )
            }
            NewKey::KeyFile(path) => {
                let master = MasterKey::from_key_file(path)?;
                let check = master.check_value();
                (master, Keyring::KeyFile { check })
            }
        };
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = keys.current.clone().ok_or(StoreError::KeyMismatch(
            "this store is not encrypted: it has no key to change",
        ))?;
        let rewrapped = self.index.rekey(&keyring, |rec, wrapped| {
            let key = old.unwrap(rec.file_id, wrapped).map_err(|e| {
                crate::index::IndexError::Corrupt(format!(
                    "the data key of {:?} does not open with the key in use ({e}); nothing was changed",
                    rec.name
                ))
            })?;
            Ok(new_master.wrap(rec.file_id, &key).to_vec())
        })?;
        keys.previous = Some(old);
        keys.current = Some(Arc::new(new_master));
        keys.epoch += 1;
        Ok(rewrapped)
    }

    /// Deletes shards that nothing refers to (written by a put or repair
    /// that failed); those on nodes away now are deleted when they return.
    pub(crate) async fn delete_shards(&self, shards: &[(String, ShardKey)]) {
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
        self.rename_keeping(from, to, attrs, None).await
    }

    /// [`Store::rename`], keeping the file it replaces (if any) under the
    /// name `keep_replaced_as` instead of deleting it, in the same index
    /// transaction: how a versioned object's earlier version is kept.
    pub async fn rename_keeping(
        &self,
        from: &str,
        to: &str,
        attrs: Option<&[u8]>,
        keep_replaced_as: Option<&str>,
    ) -> Result<(), StoreError> {
        let replaced = self
            .index
            .rename_file(from, to, attrs, keep_replaced_as)
            .map_err(not_found)?;
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
        self.compose_keeping(name, parts, attrs, None).await
    }

    /// [`Store::compose`], keeping the file it replaces (if any) under the
    /// name `keep_replaced_as`, in the same index transaction.
    pub async fn compose_keeping(
        &self,
        name: &str,
        parts: &[String],
        attrs: &[u8],
        keep_replaced_as: Option<&str>,
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
        let (record, replaced) = self
            .index
            .compose(&record, keep_replaced_as)
            .map_err(not_found)?;
        self.reclaim(replaced).await;
        Ok(record)
    }

    /// How many node losses a stored file survives.
    pub fn survivable_losses(&self, name: &str) -> Result<usize, StoreError> {
        Ok(self.tolerance(name)?.nodes)
    }

    /// How many losses of nodes, regions and principals a stored file
    /// survives.
    pub fn tolerance(&self, name: &str) -> Result<Tolerance, StoreError> {
        let (rec, manifest) = self
            .index
            .file(name)?
            .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
        Ok(tolerance(&manifest, usize::from(rec.k), &self.domains()))
    }

    /// Each node's region and principal, by id.
    pub fn domains(&self) -> HashMap<String, Domains> {
        self.nodes()
            .into_iter()
            .map(|n| {
                (
                    n.id,
                    Domains {
                        region: n.region,
                        principal: n.principal,
                    },
                )
            })
            .collect()
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

    use futures_util::FutureExt as _;

    use super::*;

    #[tokio::test]
    async fn one_change_of_a_files_manifest_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("index.redb"),
            &KeySource::NoEncryption,
            Vec::new(),
            StoreSettings::default(),
        )
        .unwrap();
        let (a, b) = (FileId([1; 16]), FileId([2; 16]));
        let first = store.edit(a).await;
        // Another file's changes go on; this file's wait.
        assert!(store.edit(b).now_or_never().is_some());
        let mut waiting = Box::pin(store.edit(a));
        assert!(waiting.as_mut().now_or_never().is_none());
        drop(first);
        assert!(waiting.as_mut().now_or_never().is_some());
        // Locks nobody holds are not kept.
        drop(store.edit(a).await);
        drop(store.edit(b).await);
        assert!(store.edit(FileId([3; 16])).now_or_never().is_some());
        let held = store
            .edits
            .lock()
            .unwrap()
            .values()
            .filter(|l| Arc::strong_count(l) > 1)
            .count();
        assert_eq!(held, 0);
    }
}
