//! Hedged writes: a put over twelve local-directory nodes (nine shards a
//! chunk, so three spares) where one node misbehaves: stops acknowledging
//! writes, acknowledges them late, fails them, or does not answer at all.
//! The put completes without it, the manifest names where each shard really
//! is, and no copy it does not name is left on any node.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;
use common::{data, unencrypted_over};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use cloudshell_store::{
    LocalDirStore, Node, ShardError, ShardKey, ShardStore, Store, StoreError, StoreStats,
};
use futures_util::future::BoxFuture;

/// How a troubled node behaves.
#[derive(Clone, Copy)]
enum Trouble {
    /// Writes wait until the gate opens, then land.
    Stuck,
    /// Writes land this long after they are asked for.
    Slow(Duration),
    /// Writes fail as a dead connection does.
    Failing,
    /// Nothing is answered until the gate opens.
    Silent,
}

/// A local-directory node with a trouble.
struct Troubled {
    inner: LocalDirStore,
    trouble: Trouble,
    gate: tokio::sync::watch::Receiver<bool>,
    puts: AtomicUsize,
}

impl Troubled {
    async fn opened(&self) {
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
    }
}

impl ShardStore for Troubled {
    fn put(&self, key: ShardKey, blob: Bytes) -> BoxFuture<'_, Result<(), ShardError>> {
        self.puts.fetch_add(1, SeqCst);
        Box::pin(async move {
            match self.trouble {
                Trouble::Stuck | Trouble::Silent => self.opened().await,
                Trouble::Slow(d) => tokio::time::sleep(d).await,
                Trouble::Failing => {
                    return Err(ShardError::Unavailable("connection lost".into()));
                }
            }
            self.inner.put(key, blob).await
        })
    }
    fn get(&self, key: ShardKey) -> BoxFuture<'_, Result<Bytes, ShardError>> {
        self.inner.get(key)
    }
    fn delete(&self, key: ShardKey) -> BoxFuture<'_, Result<(), ShardError>> {
        self.inner.delete(key)
    }
    fn list(
        &self,
        after: Option<ShardKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardKey>, ShardError>> {
        self.inner.list(after, limit)
    }
    fn verify(&self, key: ShardKey) -> BoxFuture<'_, Result<[u8; 32], ShardError>> {
        self.inner.verify(key)
    }
    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, ShardError>> {
        Box::pin(async move {
            if let Trouble::Silent = self.trouble {
                self.opened().await;
            }
            self.inner.stats().await
        })
    }
}

struct Setup {
    dir: tempfile::TempDir,
    store: Store,
    troubled: Arc<Troubled>,
    open_gate: tokio::sync::watch::Sender<bool>,
    nodes: usize,
}

/// An unencrypted store with 4 KiB chunks over `n` nodes in `n` regions,
/// the last of them troubled.
fn setup(n: usize, trouble: Trouble) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let troubled = Arc::new(Troubled {
        inner: LocalDirStore::open(node_dir(dir.path(), n - 1), 1 << 40).unwrap(),
        trouble,
        gate,
        puts: AtomicUsize::new(0),
    });
    let mut nodes: Vec<Node> = (0..n - 1)
        .map(|i| {
            let shards = LocalDirStore::open(node_dir(dir.path(), i), 1 << 40).unwrap();
            Node::new(format!("node{i}"), format!("region{i}"), Arc::new(shards))
        })
        .collect();
    nodes.push(Node::new(
        format!("node{}", n - 1),
        format!("region{}", n - 1),
        troubled.clone(),
    ));
    let store = unencrypted_over(dir.path(), nodes);
    Setup {
        dir,
        store,
        troubled,
        open_gate,
        nodes: n,
    }
}

fn node_dir(root: &Path, i: usize) -> PathBuf {
    root.join(format!("node{i}"))
}

/// The shards on node `i`'s disk, by key name.
fn on_disk(root: &Path, i: usize) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(node_dir(root, i)) else {
        return out;
    };
    for d in dirs {
        let d = d.unwrap();
        if !d.file_type().unwrap().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap() {
            out.push(f.unwrap().file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

impl Setup {
    /// Every shard on every disk as (node, key name), sorted.
    fn everything_on_disk(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in 0..self.nodes {
            for name in on_disk(self.dir.path(), i) {
                out.push((format!("node{i}"), name));
            }
        }
        out.sort();
        out
    }

    /// Every shard the index places, as (node, key name), sorted.
    fn everything_placed(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for record in self.store.index().files().unwrap() {
            let (_, manifest) = self.store.index().file(&record.name).unwrap().unwrap();
            for (c, chunk) in manifest.chunks.iter().enumerate() {
                for (i, loc) in chunk.shards.iter().enumerate() {
                    let key = ShardKey {
                        file_id: manifest.file_id,
                        chunk: c as u64,
                        index: i as u8,
                    };
                    out.push((loc.node.clone(), key.name()));
                }
            }
        }
        out.sort();
        out
    }

    /// Waits (a few seconds at most) until the disks hold exactly what the
    /// index places: late copies collected, nothing recorded missing.
    async fn only_what_is_placed(&self) {
        for _ in 0..500 {
            if self.everything_on_disk() == self.everything_placed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let placed = self.everything_placed();
        let stray: Vec<_> = self
            .everything_on_disk()
            .into_iter()
            .filter(|s| !placed.contains(s))
            .collect();
        panic!(
            "shards on disk that the index does not place: {:?}",
            &stray[..stray.len().min(5)]
        );
    }

    fn manifest_nodes(&self, name: &str) -> Vec<Vec<String>> {
        let (_, manifest) = self.store.index().file(name).unwrap().unwrap();
        manifest
            .chunks
            .iter()
            .map(|c| c.shards.iter().map(|s| s.node.clone()).collect())
            .collect()
    }

    async fn get(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        self.store.get(name, &mut out).await.unwrap();
        out
    }
}

/// Nine distinct nodes per chunk.
fn on_nine_nodes(chunks: &[Vec<String>]) {
    for (c, nodes) in chunks.iter().enumerate() {
        let mut distinct = nodes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 9, "chunk {c} is on {nodes:?}");
    }
}

/// Nine distinct nodes per chunk, none of them `not`.
fn spread_without(chunks: &[Vec<String>], not: &str) {
    on_nine_nodes(chunks);
    for (c, nodes) in chunks.iter().enumerate() {
        assert!(
            !nodes.iter().any(|n| n == not),
            "chunk {c} has a shard on {not}: {nodes:?}"
        );
    }
}

#[tokio::test]
async fn a_node_that_stops_acknowledging_is_written_around_and_its_late_copies_deleted() {
    let s = setup(12, Trouble::Stuck);
    let d = data(40 * 4096, 1);
    let report = tokio::time::timeout(Duration::from_secs(60), s.store.put("f", &d[..]))
        .await
        .expect("the put does not wait for the stuck node")
        .unwrap();
    let sent = s.troubled.puts.load(SeqCst);
    assert!(
        sent > 0,
        "no shard was sent to the stuck node: the test shows nothing"
    );
    // Only the writes that had their turn were sent; those queued behind
    // them went to spares and, landed there, were never sent to it.
    assert!(
        sent <= cloudshell_store::WRITES_PER_NODE,
        "{sent} writes were sent to the stuck node at once"
    );
    assert_eq!(report.survivable_losses, 3);
    spread_without(&s.manifest_nodes("f"), "node11");
    assert!(
        s.store.nodes()[11].is_suspect(),
        "the stuck node is not asked first"
    );
    // The shards recorded on spares read back, the stuck node still stuck.
    assert_eq!(s.get("f").await, d);
    // Its writes land at last; the copies nobody records are deleted.
    s.open_gate.send(true).unwrap();
    s.only_what_is_placed().await;
    assert!(on_disk(s.dir.path(), 11).is_empty());
    assert_eq!(s.get("f").await, d);
}

#[tokio::test]
async fn a_shard_written_twice_is_recorded_once_and_the_other_copy_deleted() {
    // Slower than the first hedge deadline, so every shard sent to it is
    // also written to a spare, and both copies land.
    let slow = cloudshell_store::WRITE_HEDGE_FIRST * 2;
    let s = setup(12, Trouble::Slow(slow));
    let d = data(40 * 4096, 2);
    s.store.put("f", &d[..]).await.unwrap();
    let sent = s.troubled.puts.load(SeqCst);
    assert!(sent > 0, "no shard was sent to the slow node");
    // Recorded once per shard, on nine distinct nodes; the slow node's
    // copies (or, had a spare been slower still, the spare's) are deleted.
    on_nine_nodes(&s.manifest_nodes("f"));
    tokio::time::sleep(slow).await;
    s.only_what_is_placed().await;
    assert_eq!(s.get("f").await, d);
    // A second file, with the slow node suspect, does not go there at all.
    let before = s.troubled.puts.load(SeqCst);
    s.store.put("g", &d[..]).await.unwrap();
    assert_eq!(s.troubled.puts.load(SeqCst), before);
    spread_without(&s.manifest_nodes("g"), "node11");
}

#[tokio::test]
async fn a_node_whose_writes_fail_loses_them_to_spares_and_the_put_succeeds() {
    let s = setup(12, Trouble::Failing);
    let d = data(40 * 4096, 3);
    let report = s.store.put("f", &d[..]).await.unwrap();
    assert!(s.troubled.puts.load(SeqCst) > 0);
    assert_eq!(report.survivable_losses, 3);
    spread_without(&s.manifest_nodes("f"), "node11");
    s.only_what_is_placed().await;
    assert_eq!(s.get("f").await, d);
}

#[tokio::test]
async fn with_no_spare_left_a_failing_nodes_shards_double_up_on_nodes_that_acknowledged() {
    let s = setup(9, Trouble::Failing);
    let d = data(40 * 4096, 4);
    let report = s.store.put("f", &d[..]).await.unwrap();
    assert!(s.troubled.puts.load(SeqCst) > 0);
    // Each chunk the failing node was to hold a shard of is on the eight
    // others, one of them holding two: one loss fewer survived.
    assert_eq!(report.survivable_losses, 2);
    for (c, nodes) in s.manifest_nodes("f").iter().enumerate() {
        assert!(!nodes.iter().any(|n| n == "node8"), "chunk {c}: {nodes:?}");
    }
    s.only_what_is_placed().await;
    assert_eq!(s.get("f").await, d);
}

#[tokio::test]
async fn a_put_that_no_node_acknowledges_fails_and_leaves_nothing() {
    let s = setup(1, Trouble::Failing);
    let e = s.store.put("f", &data(40 * 4096, 4)[..]).await.unwrap_err();
    assert!(
        matches!(&e, StoreError::ShardWrite { node, .. } if node == "node0"),
        "{e:?}"
    );
    assert!(s.store.index().files().unwrap().is_empty());
    assert!(s.everything_on_disk().is_empty());
}

#[tokio::test]
async fn a_failed_chunk_ends_the_put_without_waiting_for_more_input() {
    // A client that sent three chunks and then stalls: the put fails as
    // soon as a chunk has failed, not when (if ever) the client goes on.
    let s = setup(1, Trouble::Failing);
    let first = data(3 * 4096, 6);
    let stalled = tokio::io::AsyncReadExt::chain(&first[..], Stalled);
    let e = tokio::time::timeout(Duration::from_secs(60), s.store.put("f", stalled))
        .await
        .expect("the put waited for input after a chunk failed")
        .unwrap_err();
    assert!(matches!(&e, StoreError::ShardWrite { .. }), "{e:?}");
    assert!(s.store.index().files().unwrap().is_empty());
    assert!(s.everything_on_disk().is_empty());
}

/// Input that never comes.
struct Stalled;

impl tokio::io::AsyncRead for Stalled {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

#[tokio::test]
async fn a_node_that_answers_nothing_is_left_out_when_the_others_suffice() {
    let s = setup(12, Trouble::Silent);
    let d = data(40 * 4096, 5);
    tokio::time::timeout(Duration::from_secs(60), s.store.put("f", &d[..]))
        .await
        .expect("the put does not wait for the silent node")
        .unwrap();
    assert_eq!(s.troubled.puts.load(SeqCst), 0);
    spread_without(&s.manifest_nodes("f"), "node11");
    assert_eq!(s.get("f").await, d);
    s.open_gate.send(true).unwrap();
}

#[tokio::test]
async fn with_no_spare_a_slow_node_is_waited_for_not_doubled_up() {
    // Late, not failed: its shards stay its own and every chunk keeps
    // nine distinct nodes.
    let s = setup(9, Trouble::Slow(cloudshell_store::WRITE_HEDGE_FIRST * 2));
    let d = data(8 * 4096, 6);
    let report = s.store.put("f", &d[..]).await.unwrap();
    assert!(s.troubled.puts.load(SeqCst) > 0);
    assert_eq!(report.survivable_losses, 3);
    for (c, nodes) in s.manifest_nodes("f").iter().enumerate() {
        assert!(nodes.iter().any(|n| n == "node8"), "chunk {c}: {nodes:?}");
    }
    s.only_what_is_placed().await;
    assert_eq!(s.get("f").await, d);
}

#[tokio::test]
async fn the_other_nodes_run_ahead_of_one_that_is_behind() {
    // Nine nodes: no spare, so the stuck node's shards wait for it. The
    // other eight take shards of far more chunks than a get reads ahead
    // meanwhile, while the stuck one is sent no more than its queue's turns.
    let s = setup(9, Trouble::Stuck);
    let chunks = 120;
    let d = data(chunks * 4096, 7);
    let ahead = 90;
    let watch = async {
        while on_disk(s.dir.path(), 0).len() < ahead {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sent = s.troubled.puts.load(SeqCst);
        assert!(
            sent <= cloudshell_store::WRITES_PER_NODE,
            "{sent} writes were sent to the node that is behind at once"
        );
        s.open_gate.send(true).unwrap();
    };
    let (put, ()) = tokio::time::timeout(
        Duration::from_secs(60),
        futures_util::future::join(s.store.put("f", &d[..]), watch),
    )
    .await
    .expect("the other nodes ran ahead of the stuck one");
    let report = put.unwrap();
    assert!(ahead > cloudshell_store::CHUNKS_IN_FLIGHT);
    assert_eq!(report.survivable_losses, 3);
    on_nine_nodes(&s.manifest_nodes("f"));
    s.only_what_is_placed().await;
    assert_eq!(s.get("f").await, d);
}
