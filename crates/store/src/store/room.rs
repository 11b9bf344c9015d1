//! The room a put has on its nodes: where each chunk's shards go
//! (placement among nodes with room, suspect ones last), the spare a
//! hedged or failed write goes to, and the node that takes a shard when
//! its planned one fills up.

use super::*;

/// The room a put has on its nodes: placement takes a node's room down by
/// each shard it sends there, and a node that fills up anyway (another
/// writer, another use of the disk) is given up for the rest of the put.
/// Nodes that are suspect (a write or read lagged or failed on them lately)
/// are left out of placement while enough others can take a chunk.
pub(crate) struct Room {
    candidates: std::sync::Mutex<Vec<Candidate>>,
    nodes: Vec<Node>,
    shard: u64,
}

impl Room {
    pub(crate) fn new(candidates: Vec<Candidate>, nodes: Vec<Node>, shard: u64) -> Self {
        Self {
            candidates: std::sync::Mutex::new(candidates),
            nodes,
            shard,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Candidate>> {
        self.candidates
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one more shard against `id`'s room.
    fn claim(&self, candidates: &mut [Candidate], id: &str) {
        if let Some(c) = candidates.iter_mut().find(|c| c.id == id) {
            c.free = c.free.saturating_sub(self.shard);
        }
    }

    fn is_suspect(&self, id: &str) -> bool {
        self.nodes.iter().any(|n| n.id == id && n.is_suspect())
    }

    /// Whether `id` began draining since the put started: it takes no more
    /// of the put's shards (a drain waits for puts under way, then moves
    /// what they left there).
    fn is_draining(&self, id: &str) -> bool {
        self.nodes.iter().any(|n| n.id == id && n.is_draining())
    }

    /// The nodes for a chunk's `n` shards, among those with room left.
    pub(crate) fn place(&self, file_id: FileId, chunk: u64, n: usize) -> Vec<String> {
        let mut candidates = self.lock();
        let with_room: Vec<Candidate> = candidates
            .iter()
            .filter(|c| c.free >= self.shard && !self.is_draining(&c.id))
            .cloned()
            .collect();
        // Nobody has room left by this put's count: place as before and
        // let the nodes say (another put may have freed room).
        let pool = if with_room.is_empty() {
            candidates
                .iter()
                .filter(|c| !self.is_draining(&c.id))
                .cloned()
                .collect()
        } else {
            with_room
        };
        let trusted: Vec<Candidate> = pool
            .iter()
            .filter(|c| !self.is_suspect(&c.id))
            .cloned()
            .collect();
        let pool = if trusted.len() >= n { trusted } else { pool };
        let targets = place(&pool, file_id, chunk, n);
        for t in &targets {
            self.claim(&mut candidates, t);
        }
        targets
    }

    /// A node with room for one more shard that is not in `used` (the
    /// nodes a chunk's shards went to), taking its room: trusted nodes
    /// first, then those in a region none of `used` is in, then of a
    /// principal none of `used` is, then the roomiest.
    pub(crate) fn spare(&self, used: &[String]) -> Option<String> {
        let mut candidates = self.lock();
        let used_regions: Vec<String> = candidates
            .iter()
            .filter(|c| used.contains(&c.id))
            .map(|c| c.region.clone())
            .collect();
        let used_principals: Vec<String> = candidates
            .iter()
            .filter(|c| used.contains(&c.id))
            .map(|c| c.principal.clone())
            .collect();
        let best = candidates
            .iter()
            .filter(|c| c.free >= self.shard && !used.contains(&c.id) && !self.is_draining(&c.id))
            .max_by_key(|c| {
                (
                    !self.is_suspect(&c.id),
                    !used_regions.contains(&c.region),
                    !used_principals.contains(&c.principal),
                    c.free,
                )
            })?
            .id
            .clone();
        self.claim(&mut candidates, &best);
        Some(best)
    }

    /// Takes room for one more shard on `id`; false when it has none (or
    /// is suspect).
    pub(crate) fn take(&self, id: &str) -> bool {
        if self.is_suspect(id) || self.is_draining(id) {
            return false;
        }
        let mut candidates = self.lock();
        match candidates.iter_mut().find(|c| c.id == id) {
            Some(c) if c.free >= self.shard => {
                c.free -= self.shard;
                true
            }
            _ => false,
        }
    }

    /// Marks `full` as out of room and picks another node with room for a
    /// shard: a spare if there is one, else any node with room (a chunk
    /// crowded onto fewer nodes is spread out by repair later).
    pub(crate) fn instead_of(&self, full: &str, used: &[String]) -> Option<String> {
        {
            let mut candidates = self.lock();
            if let Some(c) = candidates.iter_mut().find(|c| c.id == full) {
                c.free = 0;
            }
        }
        if let Some(spare) = self.spare(used) {
            return Some(spare);
        }
        let mut candidates = self.lock();
        let other = candidates
            .iter()
            .filter(|c| c.free >= self.shard && !self.is_draining(&c.id))
            .max_by_key(|c| c.free)?
            .id
            .clone();
        self.claim(&mut candidates, &other);
        Some(other)
    }
}
