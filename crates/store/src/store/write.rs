//! A chunk encoded (encrypted, coded, framed, hashed) and its shards
//! written to their nodes, hedged: a shard its node has not acknowledged
//! within that node's deadline ([`Node::write_deadline`]) is written to a
//! spare node as well (one holding no shard of the chunk), and so is one
//! whose write failed; the first copy acknowledged is the one the manifest
//! records. The other copies are garbage: deleted once the put lets go of
//! its file, those still being written once they end (or are given up
//! after [`LATE_WRITE_LIMIT`]). So a put does not wait on a node that
//! stopped answering, or fail because one died, while enough others serve;
//! and no copy the manifest does not name stays behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::node::QueuedWrite;
use super::room::Room;
use super::*;
use crate::buffers::PutBuffers;

/// Tries at most per shard: its planned node and three spares.
const TRIES_PER_SHARD: usize = 4;

/// How long a copy that lost the race may go on being written before it
/// is given up (and deleted regardless: it may land as it is dropped).
/// Longer than a remote request's own timeout, so this bounds only a
/// store that never answers.
pub const LATE_WRITE_LIMIT: Duration = Duration::from_secs(60);

/// What [`Store::store_chunk`] returns: the chunk's entry (or why not),
/// and the shards it left on nodes (to delete when the put fails).
pub(crate) type StoredChunk = (
    Option<ChunkEntry>,
    Vec<(String, ShardKey)>,
    Option<StoreError>,
);

/// One shard's header.
pub(crate) fn shard_header(
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
pub(crate) fn shard_blob(
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
    payload: Vec<u8>,
    cipher: Option<&ChunkCipher>,
) -> Result<EncodedChunk, StoreError> {
    encode_chunk_in(coding, file_id, chunk, payload, cipher, None)
}

/// [`encode_chunk`] with its buffers from `buffers`: the payload's is
/// given back once encoded, each shard's when its last write lets go of it.
pub(crate) fn encode_chunk_in(
    coding: Coding,
    file_id: FileId,
    chunk: u64,
    mut payload: Vec<u8>,
    cipher: Option<&ChunkCipher>,
    buffers: Option<&PutBuffers>,
) -> Result<EncodedChunk, StoreError> {
    if let Some(c) = cipher {
        c.seal(chunk, &mut payload);
    }
    let payload_len = payload.len() as u32;
    let len = crate::format::shard_len(payload.len(), coding.k());
    let header = |i: usize| {
        let key = ShardKey {
            file_id,
            chunk,
            index: i as u8,
        };
        shard_header(&coding, key, payload_len, cipher.is_some(), len)
    };
    let Some(buffers) = buffers else {
        let (blobs, hashes) = coding.encode_framed(&payload, header)?;
        return Ok(EncodedChunk {
            payload_len,
            blobs: blobs.into_iter().map(Bytes::from).collect(),
            hashes,
        });
    };
    let (blobs, hashes) = coding.encode_framed_in(&payload, header, |n| buffers.shards.take(n))?;
    buffers.chunks.give_back(payload);
    Ok(EncodedChunk {
        payload_len,
        blobs: blobs
            .into_iter()
            .map(|b| buffers.shards.shared(b))
            .collect(),
        hashes,
    })
}

/// What one try at writing a shard came to.
struct Tried {
    index: usize,
    bytes: u64,
    node: Node,
    key: ShardKey,
    result: Result<(), ShardError>,
    took: Duration,
    /// Given up while it waited for its turn: nothing was sent.
    skipped: bool,
}

/// One try as its chunk and the try itself see it.
#[derive(Default)]
struct TryState {
    /// It had its turn on the node and is sending.
    started: AtomicBool,
    /// Its shard landed elsewhere (or the put failed): if it has not
    /// started, it never will.
    unwanted: AtomicBool,
    wake: tokio::sync::Notify,
}

impl TryState {
    fn give_up(&self) {
        self.unwanted.store(true, Ordering::Release);
        // One waiter at most (the try), and a permit is kept for it if it
        // is not waiting yet.
        self.wake.notify_one();
    }
}

/// One try at writing shard `index` (`blob`) to `node`: it waits its turn
/// in the node's queue, then writes, unless it is given up meanwhile.
fn try_write(
    index: usize,
    node: Node,
    key: ShardKey,
    blob: Bytes,
    queued: QueuedWrite,
    state: Arc<TryState>,
) -> BoxFuture<'static, Tried> {
    Box::pin(async move {
        let bytes = blob.len() as u64;
        let _queued = queued;
        let turn = tokio::select! {
            biased;
            () = state.wake.notified() => None,
            turn = node.write_turn() => Some(turn),
        };
        if turn.is_none() || state.unwanted.load(Ordering::Acquire) {
            return Tried {
                index,
                bytes,
                node,
                key,
                result: Ok(()),
                took: Duration::ZERO,
                skipped: true,
            };
        }
        state.started.store(true, Ordering::Release);
        let started = Instant::now();
        let result = node.shards.put(key, blob).await;
        Tried {
            index,
            bytes,
            node,
            key,
            result,
            took: started.elapsed(),
            skipped: false,
        }
    })
}

/// When shard `index`'s try on `node`, queued behind `ahead` others, is
/// due: after the node's deadline for each round of writes before it, or
/// at once if the node is made suspect while the try still waits its turn
/// (a node that stopped answering holds its whole queue).
fn due(
    index: usize,
    node: &Node,
    ahead: usize,
    state: Arc<TryState>,
) -> BoxFuture<'static, (usize, String)> {
    let (deadline, id, stalled) = (node.queued_deadline(ahead), node.id.clone(), node.stalled());
    Box::pin(async move {
        let sleep = tokio::time::sleep(deadline);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                () = stalled.notified() => {
                    if !state.started.load(Ordering::Acquire) {
                        break;
                    }
                }
            }
        }
        (index, id)
    })
}

/// What every chunk of a file being written shares.
#[derive(Clone)]
pub(crate) struct FileWrite {
    pub(crate) file_id: FileId,
    /// The file's cipher (none: not encrypted).
    pub(crate) cipher: Option<Arc<ChunkCipher>>,
    pub(crate) room: Arc<Room>,
}

/// A try under way.
struct Running {
    node: Node,
    /// Its deadline passed.
    late: bool,
    state: Arc<TryState>,
}

/// Why a shard is written to another node too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hedge {
    /// Its tries so far are past their deadlines.
    Late,
    /// Its last try failed and none is running.
    Failed,
}

impl Hedge {
    fn as_str(self) -> &'static str {
        match self {
            Hedge::Late => "late",
            Hedge::Failed => "failed",
        }
    }
}

/// The shards of one chunk as they are being written.
struct Chunk<'a> {
    store: &'a Store,
    room: &'a Room,
    file_id: FileId,
    chunk: u64,
    /// Each shard, until it lands (then empty: the tries hold what they send).
    blobs: Vec<Bytes>,
    /// The room each shard takes in memory, given back as it lands.
    budget: Vec<Option<Budget>>,
    /// The node each shard goes to: planned, then where it landed.
    targets: Vec<String>,
    /// Whether each shard has a copy acknowledged (on `targets[i]`).
    landed: Vec<bool>,
    /// Tries running (or waiting their turn), per shard.
    running: Vec<Vec<Running>>,
    /// The nodes each shard's tries went to.
    tried: Vec<Vec<String>>,
    /// Every node a shard of this chunk was sent to.
    used: Vec<String>,
    writes: FuturesUnordered<BoxFuture<'static, Tried>>,
    timers: FuturesUnordered<BoxFuture<'static, (usize, String)>>,
    /// Copies that are not the recorded one (or may have landed although
    /// their write failed).
    garbage: Vec<Garbage>,
    /// Shards whose every try failed with no node left to try: the next
    /// shard acknowledged offers one. With the node and error of the last.
    stranded: Vec<(usize, String, ShardError)>,
    error: Option<StoreError>,
}

impl Chunk<'_> {
    fn key(&self, index: usize) -> ShardKey {
        ShardKey {
            file_id: self.file_id,
            chunk: self.chunk,
            index: index as u8,
        }
    }

    /// Starts a try of shard `index` on node `id`.
    fn start(&mut self, index: usize, id: &str) -> bool {
        let Some(node) = self.store.node(id) else {
            return false;
        };
        self.tried[index].push(id.to_owned());
        if !self.used.iter().any(|u| u == id) {
            self.used.push(id.to_owned());
        }
        let (ahead, queued) = node.queue_write();
        let state = Arc::new(TryState::default());
        self.timers
            .push(due(index, &node, ahead, Arc::clone(&state)));
        self.writes.push(try_write(
            index,
            node.clone(),
            self.key(index),
            self.blobs[index].clone(),
            queued,
            Arc::clone(&state),
        ));
        self.running[index].push(Running {
            node,
            late: false,
            state,
        });
        true
    }

    /// Writes shard `index` to a spare node too; false when there is none
    /// (or the shard had its tries). When its write failed (`Hedge::Failed`)
    /// and no node that holds nothing of the chunk is left, a node that
    /// has just acknowledged another of its shards takes this one as well:
    /// the put succeeds surviving one loss fewer for that chunk, and repair
    /// spreads it out later. A write that is only late is waited for
    /// instead: a slow link is not a lost node, and doubling up would cost
    /// redundancy for good.
    fn hedge(&mut self, index: usize, why: Hedge, from: &str) -> bool {
        if self.tried[index].len() >= TRIES_PER_SHARD {
            return false;
        }
        let spare = self.room.spare(&self.used).or_else(|| {
            if why == Hedge::Late {
                return None;
            }
            let tried = &self.tried[index];
            let alive: Vec<&String> = (0..self.targets.len())
                .filter(|j| self.landed[*j])
                .map(|j| &self.targets[j])
                .filter(|id| !tried.contains(id))
                .collect();
            alive.into_iter().find(|id| self.room.take(id)).cloned()
        });
        let Some(spare) = spare else {
            return false;
        };
        tracing::debug!(
            shard = %self.key(index).name(),
            from,
            to = %spare,
            "shard write {}: written to a spare node too",
            why.as_str()
        );
        self.start(index, &spare)
    }

    fn finished(&mut self, done: Tried) {
        let Tried {
            index,
            bytes,
            node,
            key,
            result,
            took,
            skipped,
        } = done;
        self.running[index].retain(|r| r.node.id != node.id);
        if skipped {
            return;
        }
        match result {
            Ok(()) => {
                node.wrote(took, bytes);
                if self.landed[index] {
                    // A slower copy of a shard another node acknowledged.
                    self.garbage.push(node.garbage(key));
                } else {
                    self.landed[index] = true;
                    self.targets[index].clone_from(&node.id);
                    // The other tries need not start, and its bytes and
                    // room are no longer this chunk's to keep.
                    for other in &self.running[index] {
                        other.state.give_up();
                    }
                    self.blobs[index] = Bytes::new();
                    self.budget[index] = None;
                    // A node that just acknowledged can take the shards
                    // that had nowhere left to go.
                    for waiting in std::mem::take(&mut self.stranded) {
                        if !self.hedge(waiting.0, Hedge::Failed, &waiting.1) {
                            self.stranded.push(waiting);
                        }
                    }
                }
            }
            // A node that filled up since the put began: the shard goes to
            // another node with room, as if it had been full from the start.
            Err(source) if source.is_full() => {
                if self.landed[index] || !self.running[index].is_empty() {
                    return;
                }
                match self.room.instead_of(&node.id, &self.used) {
                    Some(other) => {
                        tracing::debug!(node = %node.id, to = %other, "node full: shard placed elsewhere");
                        if self.start(index, &other) {
                            return;
                        }
                        self.fail(index, &node.id, source);
                    }
                    None => self.fail(index, &node.id, source),
                }
            }
            Err(source) => {
                // It may have landed before failing: remove it either way.
                self.garbage.push(node.garbage(key));
                node.suspect();
                if self.covered(index) {
                    return;
                }
                // With no spare left, a late try may still land it, or
                // a node that acknowledges another shard may take it.
                if !self.hedge(index, Hedge::Failed, &node.id) && self.running[index].is_empty() {
                    self.stranded.push((index, node.id.clone(), source));
                }
            }
        }
    }

    /// Whether shard `index` has landed, or has a try still within its
    /// deadline that may yet land it.
    fn covered(&self, index: usize) -> bool {
        self.landed[index] || self.running[index].iter().any(|r| !r.late)
    }

    fn fail(&mut self, index: usize, node: &str, source: ShardError) {
        self.error.get_or_insert(StoreError::ShardWrite {
            shard: self.key(index).name(),
            node: node.to_owned(),
            source,
        });
    }

    /// Shard `index`'s try on `node` passed its deadline: when no try of
    /// that shard is in time any more, one more goes to a spare.
    fn overdue(&mut self, index: usize, node: &str) {
        let Some(try_) = self.running[index].iter_mut().find(|r| r.node.id == node) else {
            return;
        };
        try_.late = true;
        // Asked last by reads and by the next chunks' placement meanwhile.
        try_.node.suspect();
        if self.covered(index) {
            return;
        }
        self.hedge(index, Hedge::Late, node);
    }

    fn done(&mut self) -> bool {
        if self.writes.is_empty()
            && let Some((index, node, source)) = self.stranded.pop()
        {
            // Nothing is being written that could land it any more.
            self.fail(index, &node, source);
        }
        self.error.is_some() || self.landed.iter().all(|l| *l)
    }
}

impl Store {
    /// Encrypts, codes, hashes and stores one chunk. Returns its entry (or
    /// the error) and the shards that were written either way.
    pub(crate) async fn store_chunk(
        &self,
        file: FileWrite,
        chunk: u64,
        plain: Vec<u8>,
        targets: Vec<String>,
        mut budget: Budget,
    ) -> StoredChunk {
        let FileWrite {
            file_id,
            cipher,
            room,
        } = file;
        let coding = self.coding;
        let buffers = self.buffers.clone();
        let blobs = tokio::task::spawn_blocking(move || {
            encode_chunk_in(
                coding,
                file_id,
                chunk,
                plain,
                cipher.as_deref(),
                Some(&buffers),
            )
        })
        .await;
        let EncodedChunk {
            payload_len,
            blobs,
            hashes,
        } = match blobs {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return (None, Vec::new(), Some(e)),
            Err(e) => return (None, Vec::new(), Some(StoreError::Task(e.into()))),
        };
        let n = targets.len();
        let mut c = Chunk {
            store: self,
            room: &room,
            file_id,
            chunk,
            blobs,
            budget: (0..n).map(|_| budget.take_one()).collect(),
            targets: targets.clone(),
            landed: vec![false; n],
            running: (0..n).map(|_| Vec::new()).collect(),
            tried: vec![Vec::new(); n],
            used: Vec::new(),
            writes: FuturesUnordered::new(),
            timers: FuturesUnordered::new(),
            garbage: Vec::new(),
            stranded: Vec::new(),
            error: None,
        };
        for (index, node) in targets.iter().enumerate() {
            if !c.start(index, node) && !c.hedge(index, Hedge::Failed, node) {
                c.fail(
                    index,
                    node,
                    ShardError::Unavailable(format!("node {node} is not known")),
                );
            }
        }
        while !c.done() {
            tokio::select! {
                Some(tried) = c.writes.next() => c.finished(tried),
                Some((index, node)) = c.timers.next(), if !c.timers.is_empty() => {
                    c.overdue(index, &node);
                }
                else => break,
            }
        }
        // What waits its turn is not needed any more.
        for r in c.running.iter().flatten() {
            r.state.give_up();
        }
        if c.error.is_some() {
            // The put fails: what the other tries leave is deleted before
            // it says so, unless a node holds its answer back.
            let drain = async {
                while let Some(t) = c.writes.next().await {
                    c.running[t.index].retain(|r| r.node.id != t.node.id);
                    if !t.skipped {
                        c.garbage.push(t.node.garbage(t.key));
                    }
                }
            };
            let _ = tokio::time::timeout(WRITE_HEDGE_MIN, drain).await;
        }
        let landed: Vec<(String, ShardKey)> = (0..n)
            .filter(|i| c.landed[*i])
            .map(|i| (c.targets[i].clone(), c.key(i)))
            .collect();
        let late: Vec<Garbage> = (0..n)
            .flat_map(|i| c.running[i].iter().map(move |r| (i, &r.node)))
            .map(|(i, node)| node.garbage(c.key(i)))
            .collect();
        let Chunk {
            targets,
            writes,
            garbage,
            error,
            ..
        } = c;
        // Deleted once the put lets go of the file, when the manifest (if
        // committed) says which copy is the one.
        self.discard(garbage).await;
        if !late.is_empty() {
            self.collect_late(writes, late);
        }
        if let Some(e) = error {
            return (None, landed, Some(e));
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
            landed,
            None,
        )
    }

    /// Lets the copies still being written finish (or gives them up after
    /// [`LATE_WRITE_LIMIT`]) in the background, then deletes them.
    fn collect_late(
        &self,
        mut writes: FuturesUnordered<BoxFuture<'static, Tried>>,
        late: Vec<Garbage>,
    ) {
        let holds = Arc::clone(&self.holds);
        tokio::spawn(async move {
            let finish = async {
                while let Some(tried) = writes.next().await {
                    if tried.result.is_ok() && !tried.skipped {
                        tried.node.wrote(tried.took, tried.bytes);
                    }
                }
            };
            if tokio::time::timeout(LATE_WRITE_LIMIT, finish)
                .await
                .is_err()
            {
                tracing::debug!(
                    copies = late.len(),
                    "late shard writes given up; deleting what they may have left"
                );
            }
            let now = holds.discard(late);
            if !now.is_empty() {
                holds.delete(now).await;
            }
        });
    }
}
