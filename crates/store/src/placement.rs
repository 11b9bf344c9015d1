//! Which nodes hold a chunk's shards.
//!
//! Per chunk, nodes are ranked by weighted sampling without replacement
//! (Efraimidis-Spirakis: key = u^(1/weight), u from a hash of the file id,
//! chunk index and node id), the weight being the node's free space. So the
//! choice rotates from chunk to chunk, fuller nodes get fewer shards, and the
//! same inputs always give the same placement.
//!
//! Regions and principals are fault domains: a region can go dark, and an
//! AWS principal's credentials can be revoked, taking every region's
//! environment of it. Each shard goes to the best-ranked node that holds
//! the fewest of the chunk's shards so far, then of those the one in the
//! region holding fewest, then in the principal holding fewest: distinct
//! nodes first, distinct regions second (two principals' nodes in one
//! region share its fate), distinct principals third. With fewer nodes
//! than shards, nodes take several shards each, in turn.

use std::collections::HashMap;

use crate::format::FileId;
use crate::index::Manifest;

/// A node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Node id.
    pub id: String,
    /// Its region.
    pub region: String,
    /// Whose environment it runs in (the AWS principal; empty when the
    /// store has only one).
    pub principal: String,
    /// Bytes it can still take.
    pub free: u64,
}

/// The nodes for shards `0..n` of one chunk, by shard index.
pub fn place(candidates: &[Candidate], file_id: FileId, chunk: u64, n: usize) -> Vec<String> {
    place_beside(candidates, &[], file_id, chunk, n)
}

/// The nodes for `n` more shards of a chunk whose other shards are on
/// nodes in `holders` (a repair's survivors): regions and principals that
/// already hold some count as such.
pub fn place_beside(
    candidates: &[Candidate],
    holders: &[Domains],
    file_id: FileId,
    chunk: u64,
    n: usize,
) -> Vec<String> {
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
    let ranked: Vec<&Candidate> = ranked.into_iter().map(|(_, c)| c).collect();
    let mut on_node = vec![0usize; ranked.len()];
    let mut in_region: HashMap<&str, usize> = HashMap::new();
    let mut in_principal: HashMap<&str, usize> = HashMap::new();
    for h in holders {
        *in_region.entry(&h.region).or_default() += 1;
        *in_principal.entry(&h.principal).or_default() += 1;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        // Ties go to the better rank (the lower position): min_by_key
        // keeps the first of equals.
        let Some((i, c)) = ranked.iter().enumerate().min_by_key(|(i, c)| {
            (
                on_node[*i],
                in_region.get(c.region.as_str()).copied().unwrap_or(0),
                in_principal.get(c.principal.as_str()).copied().unwrap_or(0),
            )
        }) else {
            break;
        };
        on_node[i] += 1;
        *in_region.entry(&c.region).or_default() += 1;
        *in_principal.entry(&c.principal).or_default() += 1;
        out.push(c.id.clone());
    }
    out
}

/// How many whole losses of each kind of fault domain every chunk of a
/// file survives: nodes, regions (every node in one), principals (every
/// node of one AWS principal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tolerance {
    /// Nodes that can go.
    pub nodes: usize,
    /// Regions that can go dark.
    pub regions: usize,
    /// Principals whose every node can go.
    pub principals: usize,
}

/// Where a node is: its region and principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domains {
    /// Its region.
    pub region: String,
    /// Its principal (empty when the store has only one).
    pub principal: String,
}

/// The losses every chunk of `manifest` survives, with `domains` giving
/// each node's region and principal. A node it does not know (one removed
/// from the store) counts as a region and a principal of its own.
pub fn tolerance(manifest: &Manifest, k: usize, domains: &HashMap<String, Domains>) -> Tolerance {
    let by = |pick: fn(&Domains) -> &str| {
        manifest
            .chunks
            .iter()
            .map(|c| {
                let mut per: HashMap<&str, usize> = HashMap::new();
                for s in &c.shards {
                    let domain = domains.get(&s.node).map_or(s.node.as_str(), pick);
                    *per.entry(domain).or_default() += 1;
                }
                losses_survived(per.into_values().collect(), k)
            })
            .min()
            .unwrap_or(usize::MAX)
    };
    Tolerance {
        nodes: survivable_losses(manifest, k),
        regions: by(|d| d.region.as_str()),
        principals: by(|d| d.principal.as_str()),
    }
}

/// How many node losses every chunk of the file survives: for each chunk,
/// the most nodes that can go (worst case: those holding the most of its
/// shards) while k shards remain.
pub fn survivable_losses(manifest: &Manifest, k: usize) -> usize {
    manifest
        .chunks
        .iter()
        .map(|c| {
            let mut per_node: HashMap<&str, usize> = HashMap::new();
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

/// How one chunk whose shards are on `nodes` is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spread {
    /// Node losses it survives.
    nodes: usize,
    /// Region losses it survives.
    regions: usize,
    /// Principal losses it survives.
    principals: usize,
    /// The sum of the squares of its shards per region: lower is more even.
    region_squares: usize,
    /// The same per principal.
    principal_squares: usize,
}

/// The spread of a chunk whose shards are on `nodes` (an unknown node is
/// a domain of its own).
fn chunk_spread(nodes: &[&str], k: usize, domains: &HashMap<String, Domains>) -> Spread {
    let per = |pick: &dyn Fn(&str) -> String| {
        let mut per: HashMap<String, usize> = HashMap::new();
        for n in nodes {
            *per.entry(pick(n)).or_default() += 1;
        }
        let squares = per.values().map(|n| n * n).sum();
        (losses_survived(per.into_values().collect(), k), squares)
    };
    let (nodes_lost, _) = per(&|n: &str| n.to_owned());
    let (regions, region_squares) =
        per(&|n: &str| domains.get(n).map_or(n.to_owned(), |d| d.region.clone()));
    let (principals, principal_squares) =
        per(&|n: &str| domains.get(n).map_or(n.to_owned(), |d| d.principal.clone()));
    Spread {
        nodes: nodes_lost,
        regions,
        principals,
        region_squares,
        principal_squares,
    }
}

/// The most losses of `domains` domains a chunk of `shards` shards can
/// survive: spread as evenly as they allow.
fn best_possible(shards: usize, domains: usize, k: usize) -> usize {
    let d = domains.clamp(1, shards.max(1));
    let even = (0..d)
        .map(|i| shards / d + usize::from(i < shards % d))
        .collect();
    losses_survived(even, k)
}

/// One move that spreads a chunk whose shards are on `holders` (by shard
/// index) better: it survives more lost regions, or as many and more lost
/// principals; or, short of the most it could survive, it spreads more
/// evenly over regions or principals (the steps towards one more loss: a
/// shard moved from a domain holding more to one holding fewer). Never
/// fewer lost nodes. The shard to move and the candidate to
/// move it to, or `None` when no move does better. Repeated, it spreads a
/// chunk placed while a region was away once the region is back, and
/// evens a chunk out over principals added since.
pub fn better_spread(
    holders: &[&str],
    candidates: &[Candidate],
    k: usize,
    domains: &HashMap<String, Domains>,
) -> Option<(usize, String)> {
    let region_of = |n: &str| domains.get(n).map_or(n.to_owned(), |d| d.region.clone());
    let principal_of = |n: &str| domains.get(n).map_or(n.to_owned(), |d| d.principal.clone());
    let reachable = |pick: &dyn Fn(&str) -> String| {
        holders
            .iter()
            .map(|h| pick(h))
            .chain(candidates.iter().map(|c| pick(&c.id)))
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let most_regions = best_possible(holders.len(), reachable(&region_of), k);
    let most_principals = best_possible(holders.len(), reachable(&principal_of), k);
    // What counts, best first; evenness only while one more loss could
    // still be survived (past that, moves would only churn).
    let rank = |s: Spread| {
        (
            s.regions,
            s.principals,
            std::cmp::Reverse(if s.regions < most_regions {
                s.region_squares
            } else {
                0
            }),
            std::cmp::Reverse(if s.principals < most_principals {
                s.principal_squares
            } else {
                0
            }),
        )
    };
    let now = chunk_spread(holders, k, domains);
    let mut best: Option<(_, usize, &str)> = None;
    for c in candidates
        .iter()
        .filter(|c| !holders.contains(&c.id.as_str()))
    {
        for i in 0..holders.len() {
            let mut after = holders.to_vec();
            after[i] = c.id.as_str();
            let then = chunk_spread(&after, k, domains);
            if then.nodes < now.nodes || rank(then) <= rank(now) {
                continue;
            }
            if best.is_none_or(|(b, _, _)| rank(then) > b) {
                best = Some((rank(then), i, c.id.as_str()));
            }
        }
    }
    best.map(|(_, i, id)| (i, id.to_owned()))
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
                principal: String::new(),
                free: 1 << 30,
            })
            .collect()
    }

    #[test]
    fn a_chunk_doubled_in_a_region_moves_a_shard_to_a_region_it_lacks() {
        // Two principals in nine regions; the chunk was placed while r8
        // was away: r0 holds two of its shards.
        let mut all = grid(2, 9);
        let domains = domains_of(&all);
        let holders = [
            "p0:r0", "p1:r0", "p0:r1", "p0:r2", "p0:r3", "p0:r4", "p0:r5", "p0:r6", "p0:r7",
        ];
        let (i, to) = better_spread(&holders, &all, 6, &domains).unwrap();
        assert!(i == 0 || i == 1, "moved shard {i}, not one of r0's");
        assert!(to.ends_with(":r8"), "moved to {to}, not into r8");
        let mut after = holders.to_vec();
        after[i] = &to;
        assert_eq!(chunk_spread(&after, 6, &domains).regions, 3);
        assert_eq!(better_spread(&after, &all, 6, &domains), None);
        // With r8 still away there is nothing better to do.
        all.retain(|c| c.region != "r8");
        assert_eq!(better_spread(&holders, &all, 6, &domains), None);
    }

    #[test]
    fn with_regions_even_a_move_evens_out_principals() {
        // Three principals, nine regions: six shards on p0 survive no
        // principal's loss; three each would survive one.
        let all = grid(3, 9);
        let domains = domains_of(&all);
        let mut holders: Vec<String> = vec![
            "p0:r0", "p0:r1", "p0:r2", "p0:r3", "p0:r4", "p0:r5", "p1:r6", "p1:r7", "p2:r8",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        let start = chunk_spread(
            &holders.iter().map(String::as_str).collect::<Vec<_>>(),
            6,
            &domains,
        );
        assert_eq!((start.regions, start.principals), (3, 0));
        for _ in 0..9 {
            let h: Vec<&str> = holders.iter().map(String::as_str).collect();
            let Some((i, to)) = better_spread(&h, &all, 6, &domains) else {
                break;
            };
            holders[i] = to;
        }
        let h: Vec<&str> = holders.iter().map(String::as_str).collect();
        let end = chunk_spread(&h, 6, &domains);
        assert_eq!((end.nodes, end.regions, end.principals), (3, 3, 1));
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

    /// `principals` x `regions` nodes, ids `p:r`.
    fn grid(principals: usize, regions: usize) -> Vec<Candidate> {
        (0..principals)
            .flat_map(|p| {
                (0..regions).map(move |r| Candidate {
                    id: format!("p{p}:r{r}"),
                    region: format!("r{r}"),
                    principal: format!("p{p}"),
                    free: 1 << 30,
                })
            })
            .collect()
    }

    fn domains_of(c: &[Candidate]) -> HashMap<String, Domains> {
        c.iter()
            .map(|c| {
                (
                    c.id.clone(),
                    Domains {
                        region: c.region.clone(),
                        principal: c.principal.clone(),
                    },
                )
            })
            .collect()
    }

    fn manifest_of(placements: Vec<Vec<String>>) -> Manifest {
        Manifest {
            file_id: FileId([0; 16]),
            chunks: placements
                .into_iter()
                .map(|p| ChunkEntry {
                    payload_len: 1,
                    shards: p
                        .into_iter()
                        .map(|node| ShardLocation {
                            node,
                            blake3: [0; 32],
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn regions_first_then_principals_spread_every_chunk() {
        // Three principals in the same nine regions: nine shards go to nine
        // regions, three to each principal, so a chunk survives any three
        // regions or any one principal going.
        let c = grid(3, 9);
        let domains = domains_of(&c);
        let id = FileId([7; 16]);
        let mut placements = Vec::new();
        let mut firsts = std::collections::HashSet::new();
        for chunk in 0..200 {
            let p = place(&c, id, chunk, 9);
            let regions: std::collections::HashSet<_> =
                p.iter().map(|n| &domains[n].region).collect();
            assert_eq!(regions.len(), 9, "chunk {chunk}: {p:?}");
            for principal in ["p0", "p1", "p2"] {
                let held = p
                    .iter()
                    .filter(|n| domains[*n].principal == principal)
                    .count();
                assert_eq!(held, 3, "chunk {chunk}: {p:?}");
            }
            firsts.insert(p[0].clone());
            placements.push(p);
        }
        assert!(firsts.len() > 20, "placement does not rotate: {firsts:?}");
        let t = tolerance(&manifest_of(placements), 6, &domains);
        assert_eq!(
            t,
            Tolerance {
                nodes: 3,
                regions: 3,
                principals: 1
            }
        );

        // Three principals in three regions each, nine regions in all (each
        // principal its own): the same spread, by construction.
        let c: Vec<Candidate> = (0..9)
            .map(|i| Candidate {
                id: format!("n{i}"),
                region: format!("r{i}"),
                principal: format!("p{}", i / 3),
                free: 1 << 30,
            })
            .collect();
        let t = tolerance(
            &manifest_of((0..50).map(|chunk| place(&c, id, chunk, 9)).collect()),
            6,
            &domains_of(&c),
        );
        assert_eq!((t.regions, t.principals), (3, 1));

        // Two principals in four regions (eight nodes) for nine shards:
        // one node takes two, and losing a region costs at most three.
        let c = grid(2, 4);
        let domains = domains_of(&c);
        for chunk in 0..50 {
            let p = place(&c, id, chunk, 9);
            let mut per_node: HashMap<&str, usize> = HashMap::new();
            let mut per_region: HashMap<&str, usize> = HashMap::new();
            for n in &p {
                *per_node.entry(n).or_default() += 1;
                *per_region.entry(&domains[n].region).or_default() += 1;
            }
            assert_eq!(per_node.len(), 8, "{p:?}");
            assert!(per_region.values().all(|v| *v <= 3), "{p:?}");
        }
    }

    #[test]
    fn a_rebuilt_shard_goes_where_the_chunk_is_thinnest() {
        // Six of nine shards survive, in regions r0-r5, two per principal
        // p0-p2; the three rebuilt go to r6-r8, one per principal.
        let c = grid(3, 9);
        let domains = domains_of(&c);
        let holders: Vec<Domains> = (0..6)
            .map(|i| domains[&format!("p{}:r{i}", i % 3)].clone())
            .collect();
        for chunk in 0..30 {
            let p = place_beside(&c, &holders, FileId([9; 16]), chunk, 3);
            let mut regions: Vec<&str> = p.iter().map(|n| domains[n].region.as_str()).collect();
            regions.sort_unstable();
            assert_eq!(regions, ["r6", "r7", "r8"], "{p:?}");
            let mut principals: Vec<&str> =
                p.iter().map(|n| domains[n].principal.as_str()).collect();
            principals.sort_unstable();
            assert_eq!(principals, ["p0", "p1", "p2"], "{p:?}");
        }
    }

    #[test]
    fn a_removed_node_counts_as_a_domain_of_its_own() {
        let c = grid(1, 9);
        let mut domains = domains_of(&c);
        let p = place(&c, FileId([8; 16]), 0, 9);
        domains.remove(&p[0]);
        let t = tolerance(&manifest_of(vec![p]), 6, &domains);
        assert_eq!((t.nodes, t.regions, t.principals), (3, 3, 0));
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
