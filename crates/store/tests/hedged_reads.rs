//! Hedged reads over nine local-directory nodes behind simulated links.
//! Reads ask k shards and a spare only when those are late; a node measured
//! slow (it answers one read at a time, slowly) is asked last, so not at all
//! while the others answer; every byte read is right.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;
use common::{data, read_all, unencrypted_over};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use cloudshell_store::{LocalDirStore, Node, ShardError, ShardKey, ShardStore, StoreStats};
use futures_util::future::BoxFuture;

/// A node whose reads take `delay_ms` each, one at a time if `serial`.
struct SlowLink {
    inner: LocalDirStore,
    delay_ms: AtomicU64,
    serial: bool,
    link: tokio::sync::Mutex<()>,
    gets: AtomicUsize,
}

impl SlowLink {
    fn new(dir: &std::path::Path, delay: Duration, serial: bool) -> Self {
        Self {
            inner: LocalDirStore::open(dir, 1 << 40).unwrap(),
            delay_ms: AtomicU64::new(delay.as_millis() as u64),
            serial,
            link: tokio::sync::Mutex::new(()),
            gets: AtomicUsize::new(0),
        }
    }
}

impl ShardStore for SlowLink {
    fn put(&self, key: ShardKey, blob: Bytes) -> BoxFuture<'_, Result<(), ShardError>> {
        self.inner.put(key, blob)
    }
    fn get(&self, key: ShardKey) -> BoxFuture<'_, Result<Bytes, ShardError>> {
        self.gets.fetch_add(1, SeqCst);
        Box::pin(async move {
            let _link = if self.serial {
                Some(self.link.lock().await)
            } else {
                None
            };
            let delay = self.delay_ms.load(SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            self.inner.get(key).await
        })
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
        self.inner.stats()
    }
}

#[tokio::test]
async fn a_node_measured_slow_is_read_from_last_and_reads_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    // Well under the read hedge (500 ms): the node is slow, not suspect.
    let slow = Arc::new(SlowLink::new(
        &dir.path().join("node8"),
        Duration::from_millis(60),
        true,
    ));
    let mut nodes: Vec<Node> = (0..8)
        .map(|i| {
            let shards = LocalDirStore::open(dir.path().join(format!("node{i}")), 1 << 40).unwrap();
            Node::new(format!("node{i}"), format!("region{i}"), Arc::new(shards))
        })
        .collect();
    nodes.push(Node::new("node8", "region8", slow.clone()));
    let handles = nodes.clone();
    let store = unencrypted_over(dir.path(), nodes);
    // One chunk a file, so each read has the node's link to itself and its
    // time is the link's.
    let files: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("f{i}"), data(3000 + i, i as u64)))
        .collect();
    for (name, bytes) in &files {
        store.put(name, bytes.as_slice()).await.unwrap();
    }
    // Unmeasured, it is a node like the others; a read that needs it (three
    // others offline: six nodes left for six shards) waits for it and so
    // measures it.
    for n in &handles[..3] {
        n.set_online(false);
    }
    assert_eq!(&read_all(&store, &files[0].0).await, &files[0].1);
    assert!(
        slow.gets.load(SeqCst) > 0,
        "the read did not ask the slow node"
    );
    for n in &handles[..3] {
        n.set_online(true);
    }
    // Measured, it is asked last: the eight others make up every k and
    // any spare.
    slow.gets.store(0, SeqCst);
    for (name, bytes) in &files {
        assert_eq!(&read_all(&store, name).await, bytes, "{name}");
    }
    assert_eq!(slow.gets.load(SeqCst), 0, "the slow node was still asked");
}

#[tokio::test]
async fn reads_ask_k_shards_and_a_spare_only_when_they_are_late() {
    let dir = tempfile::tempdir().unwrap();
    // Every link takes 20 ms a read: a read's time is its links', well
    // above the scheduler's noise, so "late" means late.
    let links: Vec<Arc<SlowLink>> = (0..9)
        .map(|i| {
            Arc::new(SlowLink::new(
                &dir.path().join(format!("node{i}")),
                Duration::from_millis(20),
                false,
            ))
        })
        .collect();
    let nodes: Vec<Node> = links
        .iter()
        .enumerate()
        .map(|(i, l)| Node::new(format!("node{i}"), format!("region{i}"), l.clone()))
        .collect();
    let store = unencrypted_over(dir.path(), nodes);
    let files: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("f{i}"), data(3000 + i, 100 + i as u64)))
        .collect();
    for (name, bytes) in &files {
        store.put(name, bytes.as_slice()).await.unwrap();
    }
    let gets = || links.iter().map(|l| l.gets.load(SeqCst)).sum::<usize>();
    // Nodes never measured: the first read asks k + 1 at once.
    let before = gets();
    assert_eq!(&read_all(&store, &files[0].0).await, &files[0].1);
    assert_eq!(gets() - before, 7, "an unmeasured read asks k + 1");
    // Reads until every node is measured (each read measures the k it
    // waited for); then a healthy read asks exactly k.
    for _ in 0..3 {
        for (name, bytes) in &files {
            assert_eq!(&read_all(&store, name).await, bytes, "{name}");
        }
    }
    let mut spares = 0;
    for (name, bytes) in &files {
        let before = gets();
        assert_eq!(&read_all(&store, name).await, bytes, "{name}");
        let asked = gets() - before;
        assert!(asked == 6 || asked == 7, "{name}: {asked} shards asked");
        spares += asked - 6;
    }
    assert!(
        spares < files.len() / 2,
        "healthy reads asked a spare {spares} times in {}",
        files.len()
    );
    // One node turns slow (under the 500 ms hedge, so not suspect): reads
    // whose data shard it holds ask one spare, not every node, and
    // decode around it.
    links[4].delay_ms.store(300, SeqCst);
    let mut with_spare = 0;
    for (name, bytes) in &files {
        let before = gets();
        assert_eq!(&read_all(&store, name).await, bytes, "{name}");
        let asked = gets() - before;
        assert!(
            asked <= 7,
            "{name}: {asked} shards asked (the hedge asked all)"
        );
        with_spare += usize::from(asked == 7);
    }
    assert!(with_spare > 0, "no read asked a spare around the slow node");
}
