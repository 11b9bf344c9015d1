//! Which nodes hold a chunk's shards.
//!
//! Per chunk, nodes are ranked by weighted sampling without replacement
//! (Efraimidis-Spirakis: key = u^(1/weight), u from a hash of the file id,
//! chunk index and node id), the weight being the node's free space. So the
//! choice rotates from chunk to chunk, fuller nodes get fewer shards, and the
//! same inputs always give the same placement. Distinct regions come first:
//! the best-ranked node of each region, then the rest by rank. With fewer
//! nodes than shards, nodes take several shards each, round-robin.

use crate::format::FileId;
use crate::index::Manifest;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub id: String,
    /// Its region.
    pub region: String,
    /// Bytes it can still take.
    pub free: u64,
}

/// The nodes for shards `0..n` of one chunk, by shard index.
pub fn place(candidates: &[Candidate], file_id: FileId, chunk: u64, n: usize) -> Vec<String> {
    if candidates.is_empty() || n == 0 {
        return Vec::new();
    }
    let mut ranked: Vec<(f64, &Candidate)> = candidates
        .iter()
        .map(|c| {
            let mut h = blake3::Hasher::new();
            h.update(&file_id.0);
            h.update(&chunk.to_le_bytes());
            h.update(c.id.as_bytes());
            let bytes = h.finalize();
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&bytes.as_bytes()[..8]);
            // u in (0, 1]; weight at least 1 so a full node still ranks last.
            let u = ((u64::from_le_bytes(eight) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            let weight = (c.free as f64).max(1.0);
            (u.ln() / weight, c)
        })
        .collect();
    // Larger key = u^(1/w) = exp(ln u / w) ranks first.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    let mut order: Vec<&Candidate> = Vec::with_capacity(ranked.len());
    let mut seen_regions: Vec<&str> = Vec::new();
    for (_, c) in &ranked {
        if !seen_regions.contains(&c.region.as_str()) {
            seen_regions.push(&c.region);
            order.push(c);
        }
    }
    for (_, c) in &ranked {
        if !order.iter().any(|o| o.id == c.id) {
            order.push(c);
        }
    }
    (0..n).map(|i| order[i % order.len()].id.clone()).collect()
}

/// How many node losses every chunk of the file survives: for each chunk,
/// the most nodes that can go (worst case: those holding the most of its
/// shards) while k shards remain.
pub fn survivable_losses(manifest: &Manifest, k: usize) -> usize {
    manifest
        .chunks
        .iter()
        .map(|c| {
            let mut per_node: std::collections::HashMap<&str, usize> = Default::default();
            for s in &c.shards {
                *per_node.entry(s.node.as_str()).or_default() += 1;
            }
            losses_survived(per_node.into_values().collect(), k)
        })
        .min()
        .unwrap_or(usize::MAX)
}

/// How many node losses a chunk survives, given how many of its shards
/// each node holds: the worst case loses the fullest nodes first.
pub fn losses_survived(mut per_node: Vec<usize>, k: usize) -> usize {
    per_node.sort_unstable_by(|a, b| b.cmp(a));
    let mut left: usize = per_node.iter().sum();
    let mut lost = 0;
    for n in per_node {
        if left < k + n {
            break;
        }
        left -= n;
        lost += 1;
    }
    lost
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{ChunkEntry, ShardLocation};

    fn nodes(n: usize, regions: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: format!("n{i}"),
                region: format!("r{}", i % regions),
                free: 1 << 30,
            })
            .collect()
    }

    #[test]
    fn nine_nodes_in_nine_regions_take_one_shard_each_and_rotate() {
        let c = nodes(9, 9);
        let id = FileId([1; 16]);
        let a = place(&c, id, 0, 9);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 9);
        assert!(
            (1..20).any(|chunk| place(&c, id, chunk, 9) != a),
            "never rotates"
        );
        assert_eq!(place(&c, id, 0, 9), a, "deterministic");
    }

    #[test]
    fn distinct_regions_come_first() {
        let c = nodes(12, 3);
        let p = place(&c, FileId([2; 16]), 5, 3);
        let regions: std::collections::HashSet<_> = p
            .iter()
            .map(|id| c.iter().find(|n| &n.id == id).unwrap().region.clone())
            .collect();
        assert_eq!(regions.len(), 3);
    }

    #[test]
    fn free_space_weighs() {
        let mut c = nodes(10, 10);
        c[0].free = 1;
        let id = FileId([3; 16]);
        let hits = (0..500)
            .filter(|chunk| place(&c, id, *chunk, 5).contains(&"n0".to_owned()))
            .count();
        assert!(hits < 50, "a full node got shards of {hits} chunks of 500");
    }

    #[test]
    fn losses_survived() {
        let chunk = |nodes: &[&str]| ChunkEntry {
            payload_len: 1,
            shards: nodes
                .iter()
                .map(|n| ShardLocation {
                    node: (*n).into(),
                    blake3: [0; 32],
                })
                .collect(),
        };
        let m = |chunks| Manifest {
            file_id: FileId([0; 16]),
            chunks,
        };
        let nine: Vec<String> = (0..9).map(|i| format!("n{i}")).collect();
        let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
        assert_eq!(survivable_losses(&m(vec![chunk(&nine)]), 6), 3);
        // Three nodes with three shards each: one loss leaves 6.
        let three = ["a", "b", "c", "a", "b", "c", "a", "b", "c"];
        assert_eq!(survivable_losses(&m(vec![chunk(&three)]), 6), 1);
        assert_eq!(
            survivable_losses(&m(vec![chunk(&nine), chunk(&three)]), 6),
            1
        );
    }
}
