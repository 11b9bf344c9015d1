//! A put: the input read a chunk at a time, each chunk encrypted, coded
//! and written to its nodes (several chunks in flight within the store's
//! budget), room accounted per node, the file switched in at the end.

use super::room::Room;
use super::write::{FileWrite, StoredChunk};
use super::*;

/// What a put stored.
#[derive(Debug, Clone)]
pub struct PutReport {
    /// The file's record.
    pub record: FileRecord,
    /// Node losses every chunk survives.
    pub survivable_losses: usize,
    /// Losses of nodes, regions and principals every chunk survives.
    pub tolerance: Tolerance,
}

impl Store {
    /// Stores `input` as `name`: chunked, encrypted, coded and spread over
    /// the nodes; visible only once every shard is durable. A file of that
    /// name is replaced (its shards deleted after the switch, once no
    /// reader holds it).
    pub async fn put<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        input: R,
    ) -> Result<PutReport, StoreError> {
        self.put_with_attrs(name, input, Vec::new()).await
    }

    /// [`Store::put`] with the file's attributes (opaque to the store:
    /// what its writer keeps with it), switched in with its bytes.
    pub async fn put_with_attrs<R: AsyncRead + Unpin>(
        &self,
        name: &str,
        mut input: R,
        attrs: Vec<u8>,
    ) -> Result<PutReport, StoreError> {
        let file_id = FileId::random();
        let busy = self.busy(file_id);
        let data_key = self.master().map(|_| DataKey::random());
        let cipher = data_key.as_ref().map(|k| Arc::new(k.cipher(file_id)));
        let candidates = self.candidates().await;
        if candidates.is_empty() {
            return Err(StoreError::NoNodes);
        }
        let with_room = match self.with_room(candidates) {
            Ok(room) => room,
            // The nodes' last answers may predate deletes: ask them again
            // before refusing.
            Err(StoreError::StoreFull { .. }) => {
                for n in self.nodes() {
                    n.forget_stats();
                }
                self.with_room(self.candidates().await)?
            }
            Err(e) => return Err(e),
        };
        let room = Arc::new(Room::new(with_room, self.nodes(), self.largest_shard()));
        let file = FileWrite {
            file_id,
            cipher,
            room: Arc::clone(&room),
        };
        let chunk_size = self.settings.chunk_size as usize;
        let shards = u32::try_from(self.coding.n()).unwrap_or(u32::MAX);
        // How far this put's nodes may run ahead of its slowest one.
        let window = Arc::new(tokio::sync::Semaphore::new(PUT_SHARD_WINDOW));
        let mut in_flight = FuturesOrdered::new();
        let mut chunks: Vec<ChunkEntry> = Vec::new();
        let mut written: Vec<(String, ShardKey)> = Vec::new();
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        let mut chunk = 0u64;
        let mut failure = None;
        loop {
            let mut buf = self.buffers.chunks.take(chunk_size + 16);
            // The chunks in flight go on while the input is read (a client
            // sending slowly does not stall the nodes' writes); reading
            // is picked up where it was after each one that finishes.
            // A chunk that failed ends the put at once: no more input is
            // read, no more room waited for.
            let read = loop {
                tokio::select! {
                    biased;
                    Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                        absorb(done, &mut chunks, &mut written, &mut failure);
                        if failure.is_some() {
                            break None;
                        }
                    }
                    read = read_full(&mut input, &mut buf, chunk_size) => break Some(read),
                }
            };
            let n = match read {
                None => break,
                Some(Ok(n)) => n,
                Some(Err(e)) => {
                    // The input broke off (a client gone): what was stored
                    // of it is removed below, like any failed put.
                    failure = failure.or(Some(e.into()));
                    break;
                }
            };
            if failure.is_some() {
                break;
            }
            if n > 0 {
                hasher.update(&buf);
                size += n as u64;
                // Room for this chunk's shards, in this put's window and in
                // the store's budget. The chunks in flight give theirs back
                // a shard at a time as nodes acknowledge, but only while
                // polled: so they are, while this waits.
                let budget = loop {
                    tokio::select! {
                        biased;
                        Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                            absorb(done, &mut chunks, &mut written, &mut failure);
                            if failure.is_some() {
                                break None;
                            }
                        }
                        budget = Budget::acquire(&self.shard_budget, Some(&window), shards) => {
                            break Some(budget);
                        }
                    }
                };
                let budget = match budget {
                    Some(Ok(b)) if failure.is_none() => b,
                    None | Some(Ok(_)) => break,
                    Some(Err(e)) => {
                        failure = failure.or(Some(e));
                        break;
                    }
                };
                let targets = room.place(file_id, chunk, self.coding.n());
                let stored = self.store_chunk(file.clone(), chunk, buf, targets, budget);
                in_flight.push_back(stored);
                chunk += 1;
            }
            if n < chunk_size {
                break;
            }
        }
        while let Some(done) = in_flight.next().await {
            absorb(done, &mut chunks, &mut written, &mut failure);
        }
        if let Some(e) = failure {
            self.delete_shards(&written).await;
            // The copies hedging left are deleted before the error is said.
            busy.release().await;
            return Err(e);
        }
        let manifest = Manifest { file_id, chunks };
        // Wrapped with the master key in use and committed before a key
        // change can replace it (the change rewraps what is committed).
        let committed = self.with_master(|master| {
            let record = FileRecord {
                name: name.to_owned(),
                file_id,
                size,
                chunk_size: self.settings.chunk_size,
                k: self.coding.k() as u8,
                m: self.coding.m() as u8,
                wrapped_key: match (master, &data_key) {
                    (Some(master), Some(key)) => Some(master.wrap(file_id, key).to_vec()),
                    _ => None,
                },
                created: now_secs(),
                blake3: *hasher.finalize().as_bytes(),
                attrs: attrs.clone(),
                parts: Vec::new(),
            };
            self.index
                .commit_file(&record, &manifest)
                .map(|replaced| (replaced, record))
        });
        let (replaced, record) = match committed {
            Ok(r) => r,
            Err(e) => {
                self.delete_shards(&written).await;
                busy.release().await;
                return Err(e.into());
            }
        };
        self.reclaim(replaced).await;
        drop(busy);
        let tolerance = tolerance(&manifest, self.coding.k(), &self.domains());
        Ok(PutReport {
            survivable_losses: tolerance.nodes,
            tolerance,
            record,
        })
    }
}

/// Bytes of the largest shard a store with `settings` makes (a full chunk,
/// encrypted): a node with less room than this takes no new shards.
pub fn largest_shard(settings: &StoreSettings) -> u64 {
    (HEADER_LEN + crate::format::shard_len(settings.chunk_size as usize + 16, settings.k)) as u64
}

/// Reads until `limit` bytes or end of input; returns how many.
pub(crate) async fn read_full<R: AsyncRead + Unpin>(
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

/// Takes a stored chunk's outcome into a put's running state: chunks are
/// in order because the put's futures are.
pub(crate) fn absorb(
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
