//! Several AWS principals as fault domains, and draining: placement puts a
//! chunk's shards in distinct regions and spreads them over principals;
//! draining a principal's nodes moves every shard off them, by copy while
//! they answer and by rebuilding when they do not.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use cloudshell_store::placement::Tolerance;
use cloudshell_store::{LocalDirStore, Node, Store};
use common::{data, read_all, unencrypted_over};

const REGIONS: usize = 9;

/// `principals` x nine regions of local nodes, ids `pP:rR` (each a
/// directory under `root`).
fn grid(root: &Path, principals: usize) -> Vec<Node> {
    (0..principals)
        .flat_map(|p| {
            (0..REGIONS).map(move |r| {
                let id = format!("p{p}:r{r}");
                let shards = LocalDirStore::open(root.join(&id), 1 << 40).unwrap();
                Node::new(id, format!("r{r}"), Arc::new(shards)).of_principal(format!("p{p}"))
            })
        })
        .collect()
}

/// How many of every chunk's shards each principal and region holds.
fn spread(store: &Store, name: &str) -> Vec<(HashMap<String, usize>, HashMap<String, usize>)> {
    let domains = store.domains();
    let (_, manifest) = store.index().file(name).unwrap().unwrap();
    manifest
        .chunks
        .iter()
        .map(|c| {
            let mut principals = HashMap::new();
            let mut regions = HashMap::new();
            for s in &c.shards {
                let d = &domains[&s.node];
                *principals.entry(d.principal.clone()).or_insert(0) += 1;
                *regions.entry(d.region.clone()).or_insert(0) += 1;
            }
            (principals, regions)
        })
        .collect()
}

fn on_principal(store: &Store, name: &str, principal: &str) -> usize {
    let prefix = format!("{principal}:");
    let (_, manifest) = store.index().file(name).unwrap().unwrap();
    manifest
        .chunks
        .iter()
        .flat_map(|c| &c.shards)
        .filter(|s| s.node.starts_with(&prefix))
        .count()
}

#[tokio::test]
async fn three_principals_spread_every_chunk_and_a_drained_one_is_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = grid(dir.path(), 3);
    let store = unencrypted_over(dir.path(), nodes.clone());
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("f{i}"), data(10_000 + 7_000 * i, i as u64)))
        .collect();
    for (name, content) in &files {
        let report = store.put(name, &content[..]).await.unwrap();
        assert_eq!(
            report.tolerance,
            Tolerance {
                nodes: 3,
                regions: 3,
                principals: 1
            },
            "{name}"
        );
        for (principals, regions) in spread(&store, name) {
            assert_eq!(regions.len(), 9, "{name}: {regions:?}");
            assert!(
                principals.values().all(|n| *n == 3),
                "{name}: {principals:?}"
            );
        }
    }

    // p1's credentials are revoked: its nodes take nothing new, and their
    // shards move to the others while they still answer.
    // A node that holds shards cannot be removed yet.
    let e = store.remove_node("p1:r0").unwrap_err().to_string();
    assert!(
        e.contains("still holds") && e.contains("drain it first"),
        "{e}"
    );
    for n in nodes.iter().filter(|n| n.principal == "p1") {
        n.set_draining(true);
    }
    let mut names = store.files_to_drain().unwrap();
    names.sort();
    assert_eq!(names.len(), files.len());
    let mut moved = 0;
    for name in &names {
        let report = store.drain_file(name).await.unwrap();
        assert_eq!(
            (report.shards_left, report.shards_rebuilt),
            (0, 0),
            "{report:?}"
        );
        moved += report.shards_moved;
    }
    assert!(moved > 0);
    assert!(store.files_to_drain().unwrap().is_empty());
    for (name, content) in &files {
        assert_eq!(on_principal(&store, name, "p1"), 0, "{name}");
        assert_eq!(&read_all(&store, name).await, content, "{name}");
        // Still nine regions (two principals' nodes in each, the chunk's
        // empty regions first); two principals cannot both hold under four.
        let t = store.tolerance(name).unwrap();
        assert_eq!((t.nodes, t.regions), (3, 3), "{name}");
        for (_, regions) in spread(&store, name) {
            assert_eq!(regions.len(), 9, "{name}: {regions:?}");
        }
    }
    // A new file does not touch the draining principal.
    let d = data(50_000, 99);
    store.put("after", &d[..]).await.unwrap();
    assert_eq!(on_principal(&store, "after", "p1"), 0);
    // Drained, its nodes can go; the store and its index forget them.
    for r in 0..REGIONS {
        store.remove_node(&format!("p1:r{r}")).unwrap();
    }
    assert_eq!(store.nodes().len(), 18);
    assert_eq!(store.index().nodes().unwrap().len(), 18);
    for (name, content) in &files {
        assert_eq!(&read_all(&store, name).await, content, "{name}");
    }
}

#[tokio::test]
async fn a_draining_node_that_cannot_answer_has_its_shards_rebuilt_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = grid(dir.path(), 2);
    let store = unencrypted_over(dir.path(), nodes.clone());
    let d = data(60_000, 3);
    store.put("f", &d[..]).await.unwrap();
    // All of p0's nodes drain; one of them is also gone (its environment
    // suspended before the drain reached it).
    for n in nodes.iter().filter(|n| n.principal == "p0") {
        n.set_draining(true);
    }
    let gone = nodes
        .iter()
        .find(|n| n.principal == "p0" && on_node(&store, "f", &n.id) > 0)
        .unwrap();
    gone.set_online(false);
    let report = store.drain_file("f").await.unwrap();
    assert!(report.shards_rebuilt > 0, "{report:?}");
    assert_eq!(report.shards_left, 0, "{report:?}");
    assert_eq!(on_principal(&store, "f", "p0"), 0);
    assert_eq!(read_all(&store, "f").await, d);

    // Nowhere to go: every node drains. Nothing is lost, the shards stay,
    // and the report says why.
    for n in &nodes {
        n.set_draining(true);
    }
    store.put("g", &d[..]).await.unwrap_err();
    let report = store.drain_file("f").await.unwrap();
    assert_eq!(report.shards_moved, 0);
    assert!(report.shards_left > 0, "{report:?}");
    assert!(
        report
            .failure
            .as_deref()
            .unwrap_or("")
            .contains("no other node"),
        "{report:?}"
    );
    assert_eq!(read_all(&store, "f").await, d);
}

fn on_node(store: &Store, name: &str, id: &str) -> usize {
    let (_, manifest) = store.index().file(name).unwrap().unwrap();
    manifest
        .chunks
        .iter()
        .flat_map(|c| &c.shards)
        .filter(|s| s.node == id)
        .count()
}

#[tokio::test]
async fn redistribution_onto_a_new_principal_keeps_chunks_spread_over_regions_and_principals() {
    let dir = tempfile::tempdir().unwrap();
    let all = grid(dir.path(), 2);
    let (first, second): (Vec<Node>, Vec<Node>) =
        all.into_iter().partition(|n| n.principal == "p0");
    let store = unencrypted_over(dir.path(), first);
    let files: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| (format!("f{i}"), data(30_000 + 11_000 * i, 40 + i as u64)))
        .collect();
    for (name, content) in &files {
        store.put(name, &content[..]).await.unwrap();
    }
    for n in second {
        store.add_node(n).unwrap();
    }
    let report = store.redistribute().await.unwrap();
    assert!(report.shards_moved > 0, "{report:?}");
    let on_p1: usize = files
        .iter()
        .map(|(n, _)| on_principal(&store, n, "p1"))
        .sum();
    assert!(on_p1 > 0, "nothing moved onto p1");
    for (name, content) in &files {
        for (principals, regions) in spread(&store, name) {
            assert_eq!(
                regions.len(),
                9,
                "{name}: two shards of a chunk in one region: {regions:?}"
            );
            // Moves even principals out, never past: no chunk leaves p0
            // for p1 wholesale.
            let on_p1 = principals.get("p1").copied().unwrap_or(0);
            assert!(on_p1 <= 5, "{name}: {principals:?}");
        }
        assert_eq!(store.tolerance(name).unwrap().regions, 3, "{name}");
        assert_eq!(&read_all(&store, name).await, content, "{name}");
    }
}

#[tokio::test]
async fn a_chunk_drained_while_a_region_was_away_is_spread_again_by_repair_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = grid(dir.path(), 3);
    let store = unencrypted_over(dir.path(), nodes.clone());
    let d = data(40_000, 9);
    store.put("f", &d[..]).await.unwrap();
    assert_eq!(store.tolerance("f").unwrap().regions, 3);
    // p1 drains while r8 is away (both its principals' nodes there): the
    // shards p1 held land in the eight regions left, two in one.
    for n in &nodes {
        if n.principal == "p1" {
            n.set_draining(true);
        }
        if n.region == "r8" {
            n.set_online(false);
        }
    }
    let report = store.drain_file("f").await.unwrap();
    assert_eq!(report.shards_left, 0, "{report:?}");
    assert_eq!(on_principal(&store, "f", "p1"), 0);
    let crowded = store.tolerance("f").unwrap();
    assert!(crowded.regions < 3, "{crowded:?}");

    // r8 back: a repair finds nothing missing, and spreads the chunks over
    // the nine regions again.
    for n in nodes.iter().filter(|n| n.region == "r8") {
        n.set_online(true);
    }
    let report = store.repair("f").await.unwrap();
    assert_eq!(report.shards_rebuilt, 0, "{report:?}");
    assert!(report.shards_spread > 0, "{report:?}");
    let after = store.tolerance("f").unwrap();
    assert_eq!((after.nodes, after.regions), (3, 3), "{after:?}");
    assert_eq!(
        on_principal(&store, "f", "p1"),
        0,
        "moved onto a draining node"
    );
    assert_eq!(read_all(&store, "f").await, d);
    // Nothing more to do.
    assert_eq!(store.repair("f").await.unwrap().shards_spread, 0);
}

#[tokio::test]
async fn a_drain_and_a_repair_of_one_file_at_once_keep_each_others_moves() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = grid(dir.path(), 3);
    let store = Arc::new(unencrypted_over(dir.path(), nodes.clone()));
    let d = data(50_000, 4);
    for round in 0..10 {
        store.put("f", &d[..]).await.unwrap();
        // Drain p1 while r8 is away: the repair running beside the drain
        // has moves of its own to make once r8 is back.
        for n in &nodes {
            n.set_draining(n.principal == "p1");
            n.set_online(n.region != "r8");
        }
        store.drain_file("f").await.unwrap();
        for n in &nodes {
            n.set_online(true);
        }
        for n in nodes.iter().filter(|n| n.principal == "p2") {
            n.set_draining(true);
        }
        let (a, b) = (Arc::clone(&store), Arc::clone(&store));
        let (drained, repaired) = tokio::join!(
            tokio::spawn(async move { a.drain_file("f").await }),
            tokio::spawn(async move { b.repair("f").await }),
        );
        drained.unwrap().unwrap();
        repaired.unwrap().unwrap();
        assert_eq!(on_principal(&store, "f", "p2"), 0, "round {round}");
        assert_eq!(on_principal(&store, "f", "p1"), 0, "round {round}");
        assert_eq!(store.tolerance("f").unwrap().nodes, 3, "round {round}");
        assert_eq!(read_all(&store, "f").await, d, "round {round}");
        // Every shard the manifest names is on its node.
        let report = store.repair("f").await.unwrap();
        assert_eq!(report.shards_rebuilt, 0, "round {round}: {report:?}");
        for n in &nodes {
            n.set_draining(false);
        }
    }
}
