//! Hedged reads order nodes by how fast they have been: over nine
//! local-directory nodes, one answers reads slowly, one at a time (a slow
//! link). Once a read has had to wait for it, reads ask the other eight
//! first, so it is not asked at all while they answer, and every byte read
//! is right.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;
use common::data;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

use bytes::Bytes;
use cloudshell_store::{
    KeySource, LocalDirStore, Node, ShardError, ShardKey, ShardStore, Store, StoreSettings,
    StoreStats,
};
use futures_util::future::BoxFuture;

/// A node whose reads go one at a time and take `delay` each.
struct SlowLink {
    inner: LocalDirStore,
    delay: Duration,
    link: tokio::sync::Mutex<()>,
    gets: AtomicUsize,
}

impl ShardStore for SlowLink {
    fn put(&self, key: ShardKey, blob: Bytes) -> BoxFuture<'_, Result<(), ShardError>> {
        self.inner.put(key, blob)
    }
    fn get(&self, key: ShardKey) -> BoxFuture<'_, Result<Bytes, ShardError>> {
        self.gets.fetch_add(1, SeqCst);
        Box::pin(async move {
            let _link = self.link.lock().await;
            tokio::time::sleep(self.delay).await;
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
    let slow = Arc::new(SlowLink {
        inner: LocalDirStore::open(dir.path().join("node8"), 1 << 40).unwrap(),
        // Well under the read hedge (500 ms): the node is slow, not suspect.
        delay: Duration::from_millis(60),
        link: tokio::sync::Mutex::new(()),
        gets: AtomicUsize::new(0),
    });
    let mut nodes: Vec<Node> = (0..8)
        .map(|i| {
            let shards = LocalDirStore::open(dir.path().join(format!("node{i}")), 1 << 40).unwrap();
            Node::new(format!("node{i}"), format!("region{i}"), Arc::new(shards))
        })
        .collect();
    nodes.push(Node::new("node8", "region8", slow.clone()));
    let handles = nodes.clone();
    let store = Store::open(
        &dir.path().join("index.redb"),
        &KeySource::NoEncryption,
        nodes,
        StoreSettings {
            chunk_size: 4096,
            ..StoreSettings::default()
        },
    )
    .unwrap();
    // One chunk a file, so each read has the node's link to itself and its
    // time is the link's.
    let files: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("f{i}"), data(3000 + i, i as u64)))
        .collect();
    for (name, bytes) in &files {
        store.put(name, bytes.as_slice()).await.unwrap();
    }
    let read = |name: String| {
        let store = &store;
        async move {
            let mut out = Vec::new();
            store.get(&name, &mut out).await.unwrap();
            out
        }
    };
    // Unmeasured, it is a node like the others; a read that needs it (three
    // others offline: six nodes left for six shards) waits for it and so
    // measures it.
    for n in &handles[..3] {
        n.set_online(false);
    }
    assert_eq!(&read(files[0].0.clone()).await, &files[0].1);
    assert!(
        slow.gets.load(SeqCst) > 0,
        "the read did not ask the slow node"
    );
    for n in &handles[..3] {
        n.set_online(true);
    }
    // Measured, it is asked last: the eight others make up every k + 1.
    slow.gets.store(0, SeqCst);
    for (name, bytes) in &files {
        assert_eq!(&read(name.clone()).await, bytes, "{name}");
    }
    assert_eq!(slow.gets.load(SeqCst), 0, "the slow node was still asked");
}
