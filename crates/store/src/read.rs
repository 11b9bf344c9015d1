//! Reading: a name resolved once into a held [`Version`], and a version's
//! bytes, chunk by chunk, from the first k good shards of each.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{FuturesOrdered, FuturesUnordered, StreamExt as _};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::crypto::ChunkCipher;
use crate::erasure::Coding;
use crate::format::{FileId, HEADER_LEN, ShardHeader, ShardKey};
use crate::holds::Hold;
use crate::index::{ChunkEntry, FileRecord, Manifest};
use crate::store::{Budget, CHUNKS_IN_FLIGHT, HEDGE_DELAY, Node, Store, StoreError, read_cost};

/// At most how long a read waits for a data shard still on its way when a
/// parity shard has made up the k (as long as the k took, within this).
/// Waiting costs no CPU and the read has other chunks in flight meanwhile;
/// restoring the data shard costs a Reed-Solomon decode. With 10 ms, reads
/// through S3 (ten ranges at once, the client on the same cores) spent a
/// sixth of the daemon's CPU decoding; with 50 ms, a twentieth.
const DATA_SHARD_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// A read asks k shards and one more only when they are late: once the
/// read has taken this many times what its slowest node was expected to
/// take (its usual time per shard times the reads sharing its link).
/// Asking k + 1 from the start cost a sixth more of every byte read (on
/// the links, in the agents, in QUIC) for a hedge most reads never need;
/// a node's time varies within twice its mean when it is merely busy.
const SPARE_AFTER_EXPECTED: u32 = 2;
/// Never ask the spare sooner than this: below it, differences are the
/// scheduler's, not the nodes'.
const SPARE_FLOOR: std::time::Duration = std::time::Duration::from_millis(2);

/// One version of a file, as it was when opened: its record (size,
/// BLAKE3, attributes) and where its bytes are. It is held while it
/// lives: an overwrite or delete of its name changes what the name
/// means at once, but this version's shards stay on the nodes until the
/// last reader holding it is done.
pub struct Version {
    record: FileRecord,
    /// The files holding its bytes, in order: itself, or its parts.
    pieces: Vec<(FileRecord, Manifest)>,
    _holds: Vec<Hold>,
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Version")
            .field("name", &self.record.name)
            .field("file_id", &self.record.file_id)
            .field("size", &self.record.size)
            .finish_non_exhaustive()
    }
}

impl Version {
    /// Its record.
    pub fn record(&self) -> &FileRecord {
        &self.record
    }

    /// Bytes.
    pub fn size(&self) -> u64 {
        self.record.size
    }

    /// What the store's user keeps with it ([`FileRecord::attrs`]).
    pub fn attrs(&self) -> &[u8] {
        &self.record.attrs
    }
}

impl Store {
    /// Resolves `name` to its current version and holds it: reads of the
    /// version give these bytes whatever happens to the name meanwhile.
    pub fn version(&self, name: &str) -> Result<Version, StoreError> {
        let index = &self.index;
        let ((record, pieces), holds) = self.holds.resolve_and_hold(|| {
            let (record, pieces) = index
                .resolve(name)?
                .ok_or_else(|| StoreError::NotFound(name.to_owned()))?;
            let mut ids: Vec<FileId> = pieces.iter().map(|(r, _)| r.file_id).collect();
            if !record.parts.is_empty() {
                ids.push(record.file_id);
            }
            Ok::<_, StoreError>(((record, pieces), ids))
        })?;
        Ok(Version {
            record,
            pieces,
            _holds: holds,
        })
    }

    /// Writes bytes `range` of `version` (clamped to its size) to `output`,
    /// reading only the chunks that hold them. Returns the bytes written.
    pub async fn read<W: AsyncWrite + Unpin + Send>(
        &self,
        version: &Version,
        range: std::ops::Range<u64>,
        output: W,
    ) -> Result<u64, StoreError> {
        let mut sink = Written(output);
        let written = self.read_into(version, range, &mut sink).await?;
        sink.0.flush().await?;
        Ok(written)
    }

    /// Sends bytes `range` of `version` (clamped to its size) into `chunks`
    /// as they are decoded, each chunk's plaintext moved rather than copied
    /// (an HTTP body made of them: see [`chunk_channel`]). On failure the
    /// stream's last item is the error, so a body built on it breaks off
    /// rather than ending early as if complete. Returns the bytes sent.
    pub async fn read_chunks(
        &self,
        version: &Version,
        range: std::ops::Range<u64>,
        mut chunks: ChunkSender,
    ) -> Result<u64, StoreError> {
        match self.read_into(version, range, &mut chunks).await {
            Ok(n) => Ok(n),
            Err(e) => {
                let _ = chunks
                    .0
                    .send(Err(std::io::Error::other(format!("the read failed: {e}"))))
                    .await;
                Err(e)
            }
        }
    }

    async fn read_into<S: ChunkSink>(
        &self,
        version: &Version,
        range: std::ops::Range<u64>,
        output: &mut S,
    ) -> Result<u64, StoreError> {
        let end = range.end.min(version.size());
        let start = range.start.min(end);
        let mut offset = 0u64;
        let mut written = 0u64;
        for (record, manifest) in &version.pieces {
            let (from, to) = (offset, offset + record.size);
            offset = to;
            if to <= start || from >= end {
                continue;
            }
            let piece = start.max(from) - from..end.min(to) - from;
            written += self.read_piece(record, manifest, piece, output).await?;
        }
        Ok(written)
    }

    /// Writes the file `name` to `output`, chunk by chunk, from the first k
    /// good shards of each (k asked, a spare when they are late; corrupt
    /// ones skipped).
    pub async fn get<W: AsyncWrite + Unpin + Send>(
        &self,
        name: &str,
        output: W,
    ) -> Result<u64, StoreError> {
        self.get_range(name, 0..u64::MAX, output).await
    }

    /// Writes bytes `range` of the file `name` (clamped to its size) to
    /// `output`: [`Store::version`], then [`Store::read`].
    pub async fn get_range<W: AsyncWrite + Unpin + Send>(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
        output: W,
    ) -> Result<u64, StoreError> {
        let version = self.version(name)?;
        self.read(&version, range, output).await
    }

    /// Writes bytes `range` of one file with chunks of its own.
    async fn read_piece<S: ChunkSink>(
        &self,
        record: &FileRecord,
        manifest: &Manifest,
        range: std::ops::Range<u64>,
        output: &mut S,
    ) -> Result<u64, StoreError> {
        let end = range.end.min(record.size);
        let start = range.start.min(end);
        let chunk_size = u64::from(record.chunk_size.max(1));
        let cipher = self.cipher_for(record)?.map(Arc::new);
        let coding = Coding::new(usize::from(record.k), usize::from(record.m))?;
        let mut reads = FuturesOrdered::new();
        // Chunks are chunk_size plaintext bytes each but the last.
        let mut next = usize::try_from(start / chunk_size).unwrap_or(usize::MAX);
        let last = if end == 0 {
            0
        } else {
            usize::try_from(end.div_ceil(chunk_size)).unwrap_or(usize::MAX)
        }
        .min(manifest.chunks.len());
        let mut offset = next as u64 * chunk_size;
        let mut written = 0u64;
        loop {
            // As many chunks ahead as a put keeps in flight: memory stays
            // bounded, and shards of several chunks are fetched at once.
            while reads.len() < CHUNKS_IN_FLIGHT && next < last {
                // The first chunk waits for a permit; read-ahead takes one
                // only when the store has one free, so a busy store reads
                // fewer chunks ahead rather than none at all.
                let cost = read_cost(coding.k());
                let permit = if reads.is_empty() {
                    Some(Budget::acquire(&self.shard_budget, None, cost).await?)
                } else {
                    Budget::try_acquire(&self.shard_budget, cost)
                };
                let Some(permit) = permit else { break };
                let read = self.read_chunk(record, manifest, next, coding, cipher.clone());
                reads.push_back(async move {
                    let plain = read.await;
                    drop(permit);
                    plain
                });
                next += 1;
            }
            let Some(chunk) = reads.next().await else {
                break;
            };
            let plain = Bytes::from(chunk?);
            let from = start.saturating_sub(offset).min(plain.len() as u64) as usize;
            let to = (end - offset).min(plain.len() as u64) as usize;
            if to > from {
                output.take(plain.slice(from..to)).await?;
            }
            written += (to - from) as u64;
            offset += plain.len() as u64;
        }
        Ok(written)
    }

    fn cipher_for(&self, record: &FileRecord) -> Result<Option<ChunkCipher>, StoreError> {
        let Some(w) = &record.wrapped_key else {
            return Ok(None);
        };
        match self.unwrap_data_key(record.file_id, w)? {
            Some(key) => Ok(Some(key.cipher(record.file_id))),
            None => Err(StoreError::KeyMismatch(
                "this file is encrypted and no key was given",
            )),
        }
    }

    /// Fetches good shards of one chunk: asks `ask_first` at once (data
    /// shards first, which decode by concatenation; slow and suspect nodes
    /// last), then the next one whenever an answer fails, one spare if
    /// they are late (see [`SPARE_AFTER_EXPECTED`]; at once when a node
    /// asked has no measured time yet), and every remaining one if
    /// [`HEDGE_DELAY`] passes; stops once `need` good ones are in or none
    /// are left. A node that fails, or has not answered by the hedge,
    /// becomes suspect; one that answers well, trusted again.
    pub(crate) async fn fetch_shards(
        &self,
        file_id: FileId,
        chunk: u64,
        entry: &ChunkEntry,
        ask_first: usize,
        need: usize,
    ) -> Vec<Option<Bytes>> {
        let mut got: Vec<Option<Bytes>> = vec![None; entry.shards.len()];
        let node_of = |i: usize| self.node(&entry.shards[i].node);
        let online: Vec<(usize, Node)> = (0..entry.shards.len())
            .filter_map(|i| node_of(i).filter(Node::is_online).map(|n| (i, n)))
            .collect();
        let slow = slow_nodes(online.iter().map(|(_, n)| n.usual_read()));
        let mut candidates: Vec<(bool, bool, usize)> = online
            .iter()
            .zip(&slow)
            .map(|((i, n), slow)| (n.is_suspect(), *slow, *i))
            .collect();
        let slow_shards: std::collections::HashSet<usize> = candidates
            .iter()
            .filter(|(_, slow, _)| *slow)
            .map(|(_, _, i)| *i)
            .collect();
        candidates.sort_unstable();
        let mut order = candidates.into_iter().map(|(_, _, i)| i);
        let mut outstanding = std::collections::HashSet::new();
        let mut pending = FuturesUnordered::new();
        let ask = |i: usize| {
            let loc = &entry.shards[i];
            let node = self.node(&loc.node);
            let key = ShardKey {
                file_id,
                chunk,
                index: i as u8,
            };
            let timer = node.as_ref().map(Node::start_read);
            async move {
                let blob = match node {
                    Some(n) => match n.shards.get(key).await {
                        Ok(b) => {
                            if let Some(t) = &timer {
                                n.read_took(t);
                            }
                            Some(b)
                        }
                        Err(e) => {
                            tracing::debug!(node = %n.id, shard = %key.name(), "shard read failed: {e}");
                            None
                        }
                    },
                    None => None,
                };
                (i, blob)
            }
        };
        // How long the first asked should take, all of them measured.
        let mut expected = Some(std::time::Duration::ZERO);
        for i in order.by_ref().take(ask_first) {
            let e = node_of(i).and_then(|n| n.expected_read());
            expected = expected.zip(e).map(|(a, b)| a.max(b));
            outstanding.insert(i);
            pending.push(ask(i));
        }
        let spare_after = match expected {
            Some(e) => e.saturating_mul(SPARE_AFTER_EXPECTED).max(SPARE_FLOOR),
            None => std::time::Duration::ZERO,
        };
        let good_shard = |i: usize, b: &Bytes| {
            *blake3::hash(b).as_bytes() == entry.shards[i].blake3
                && ShardHeader::decode(b).is_ok_and(|h| {
                    h.key.file_id == file_id
                        && h.key.chunk == chunk
                        && usize::from(h.key.index) == i
                })
        };
        let started = std::time::Instant::now();
        let mut good = 0;
        let hedge = tokio::time::sleep(HEDGE_DELAY);
        tokio::pin!(hedge);
        let mut hedged = false;
        let spare = tokio::time::sleep(spare_after);
        tokio::pin!(spare);
        // Only a read that asked just what it needs wants a spare.
        let mut spared = ask_first > need;
        loop {
            let next = tokio::select! {
                biased;
                next = pending.next() => next,
                () = &mut spare, if !spared && !hedged => {
                    spared = true;
                    if let Some(j) = order.next() {
                        outstanding.insert(j);
                        pending.push(ask(j));
                    }
                    continue;
                }
                () = &mut hedge, if !hedged => {
                    // Slow or silent nodes: ask every remaining shard.
                    hedged = true;
                    for i in &outstanding {
                        if let Some(n) = node_of(*i) {
                            n.suspect();
                        }
                    }
                    for j in order.by_ref() {
                        outstanding.insert(j);
                        pending.push(ask(j));
                    }
                    continue;
                }
            };
            let Some((i, blob)) = next else { break };
            outstanding.remove(&i);
            let ok = blob.filter(|b| good_shard(i, b));
            if let Some(n) = node_of(i) {
                if ok.is_some() {
                    n.trust();
                } else {
                    n.suspect();
                }
            }
            match ok {
                Some(b) => {
                    // The payload after the header, not copied.
                    got[i] = Some(b.slice(HEADER_LEN..));
                    good += 1;
                    if good >= need {
                        break;
                    }
                }
                None => {
                    if let Some(j) = order.next() {
                        outstanding.insert(j);
                        pending.push(ask(j));
                    }
                }
            }
        }
        // A read (need k of more): when a parity shard answered before a
        // data shard that is still on its way, wait a moment for the data
        // shard. Restoring it costs a Reed-Solomon decode; all k data shards
        // are one concatenation. (Through S3 under load, decodes were a
        // tenth of the daemon's CPU on a healthy store.)
        let data_on_way =
            |got: &[Option<Bytes>], outstanding: &std::collections::HashSet<usize>| {
                (0..need).any(|d| got[d].is_none() && outstanding.contains(&d))
            };
        // Not worth waiting for a data shard from a slow node (see
        // [`slow_nodes`]): it is decoded around at once.
        let took = started.elapsed();
        let worth_waiting = (0..need)
            .all(|d| got[d].is_some() || !outstanding.contains(&d) || !slow_shards.contains(&d));
        if good >= need && need < got.len() && data_on_way(&got, &outstanding) && worth_waiting {
            let grace = took.min(DATA_SHARD_GRACE);
            let wait = async {
                while let Some((i, blob)) = pending.next().await {
                    outstanding.remove(&i);
                    if let Some(b) = blob.filter(|b| good_shard(i, b)) {
                        got[i] = Some(b.slice(HEADER_LEN..));
                    }
                    if !data_on_way(&got, &outstanding) {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(grace, wait).await;
        }
        if good < need {
            tracing::debug!(
                chunk,
                good,
                need,
                offline = ?entry.shards.iter().filter(|l| !self.node(&l.node).is_some_and(|n| n.is_online())).map(|l| l.node.as_str()).collect::<Vec<_>>(),
                "too few good shards"
            );
        }
        got
    }

    async fn read_chunk(
        &self,
        record: &FileRecord,
        manifest: &Manifest,
        chunk: usize,
        coding: Coding,
        cipher: Option<Arc<ChunkCipher>>,
    ) -> Result<Vec<u8>, StoreError> {
        let entry = &manifest.chunks[chunk];
        // k asked (and a spare if they are late), the first k good used.
        let mut shards = self
            .fetch_shards(record.file_id, chunk as u64, entry, coding.k(), coding.k())
            .await;
        let have = shards.iter().filter(|s| s.is_some()).count();
        if have < coding.k() {
            return Err(StoreError::Unrecoverable {
                name: record.name.clone(),
                chunk: chunk as u64,
                have,
                k: coding.k(),
            });
        }
        // Keep exactly k, preferring data shards.
        let mut kept = 0;
        for s in &mut shards {
            if s.is_some() {
                if kept == coding.k() {
                    *s = None;
                } else {
                    kept += 1;
                }
            }
        }
        let payload_len = entry.payload_len as usize;
        let chunk_index = chunk as u64;
        tokio::task::spawn_blocking(move || {
            let mut payload = coding.decode(&shards, payload_len)?;
            if let Some(c) = cipher {
                c.open(chunk_index, &mut payload)?;
            }
            Ok(payload)
        })
        .await
        .map_err(|e| StoreError::Task(e.into()))?
    }
}

/// Which of some nodes (their usual shard read times, `None` when not
/// measured) reads ask after the others: those that usually take more than
/// [`SLOW_FACTOR`] times the median of the measured ones, and more than
/// [`SLOW_FLOOR`] (below it, differences are scheduling noise). A chunk's
/// data shards are asked first because they need no decoding, but not from
/// a node that would make every chunk wait for its link: the k asked are
/// then the fastest, and the spare and the hedge go to the next-fastest.
fn slow_nodes(usual: impl Iterator<Item = Option<std::time::Duration>>) -> Vec<bool> {
    let usual: Vec<Option<std::time::Duration>> = usual.collect();
    let mut measured: Vec<std::time::Duration> = usual.iter().flatten().copied().collect();
    if measured.is_empty() {
        return vec![false; usual.len()];
    }
    measured.sort_unstable();
    let median = measured[measured.len() / 2];
    let bar = median.saturating_mul(SLOW_FACTOR).max(SLOW_FLOOR);
    usual.iter().map(|u| u.is_some_and(|u| u > bar)).collect()
}

/// See [`slow_nodes`].
const SLOW_FACTOR: u32 = 2;
/// See [`slow_nodes`].
const SLOW_FLOOR: std::time::Duration = std::time::Duration::from_millis(20);

/// Where a read's bytes go, in order.
pub(crate) trait ChunkSink: Send {
    /// Takes the next bytes of the range.
    fn take(&mut self, bytes: Bytes) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// A writer as a sink: each chunk is copied into it.
struct Written<W>(W);

impl<W: AsyncWrite + Unpin + Send> ChunkSink for Written<W> {
    async fn take(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.0.write_all(&bytes).await
    }
}

/// The sending end of [`chunk_channel`].
pub struct ChunkSender(tokio::sync::mpsc::Sender<std::io::Result<Bytes>>);

impl ChunkSink for ChunkSender {
    async fn take(&mut self, bytes: Bytes) -> std::io::Result<()> {
        self.0.send(Ok(bytes)).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the reader went away")
        })
    }
}

/// The chunks of a read as a stream of bytes (an HTTP body), from
/// [`Store::read_chunks`].
pub struct ChunkStream(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_util::Stream for ChunkStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A channel for [`Store::read_chunks`]: two chunks in it at most (the
/// read's own read-ahead is bounded by the store's budget).
pub fn chunk_channel() -> (ChunkSender, ChunkStream) {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    (ChunkSender(tx), ChunkStream(rx))
}

#[cfg(test)]
mod tests {
    use super::slow_nodes;
    use std::time::Duration;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn a_node_far_slower_than_the_median_is_asked_last() {
        // Unequal wide-area links: one node at a quarter of the others' speed.
        let usual = [ms(60), ms(70), ms(80), ms(265), ms(90), None, ms(75)];
        assert_eq!(
            slow_nodes(usual.into_iter()),
            [false, false, false, true, false, false, false]
        );
    }

    #[test]
    fn small_differences_and_unmeasured_nodes_are_not_slow() {
        // Loopback: a few milliseconds apart is scheduling, not a slow link.
        let usual = [ms(1), ms(2), ms(9), ms(1), ms(15)];
        assert_eq!(slow_nodes(usual.into_iter()), [false; 5]);
        assert_eq!(slow_nodes([None, None].into_iter()), [false; 2]);
        assert!(slow_nodes(std::iter::empty()).is_empty());
    }
}
