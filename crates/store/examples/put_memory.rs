//! Peak memory of a streaming put and get: stores MiB generated on the fly
//! (never held in memory) on nine local nodes, reads it back into a sink,
//! and prints the process's peak RSS.
//!
//! `cargo run --release -p cloudshell-store --example put_memory -- [MIB]`

use std::sync::Arc;

use cloudshell_store::{KeySource, LocalDirStore, Node, Store, StoreSettings};
use tokio::io::AsyncRead;

/// Pseudo-random bytes, `left` of them, made as they are read.
struct Generated {
    left: u64,
    x: u64,
}

impl AsyncRead for Generated {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left) as usize;
        let mut out = vec![0u8; n];
        for b in &mut out {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            *b = self.x as u8;
        }
        buf.put_slice(&out);
        self.left -= n as u64;
        std::task::Poll::Ready(Ok(()))
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: u64 = std::env::args().nth(1).map_or(Ok(1024), |s| s.parse())?;
    let dir = tempfile::tempdir()?;
    let nodes = (0..9)
        .map(|i| {
            let shards = LocalDirStore::open(dir.path().join(format!("node{i}")), u64::MAX)?;
            Ok(Node::new(
                format!("node{i}"),
                format!("region{i}"),
                Arc::new(shards),
            ))
        })
        .collect::<Result<Vec<_>, cloudshell_store::ShardError>>()?;
    let store = Store::open(
        &dir.path().join("index.redb"),
        &KeySource::KeyFile({
            let p = dir.path().join("key");
            cloudshell_store::MasterKey::generate_key_file(&p)?;
            p
        }),
        nodes,
        StoreSettings::default(),
    )?;
    let before = peak_rss_kib();
    let started = std::time::Instant::now();
    store
        .put(
            "big",
            Generated {
                left: mib << 20,
                x: 0x9e37_79b9_7f4a_7c15,
            },
        )
        .await?;
    let put = started.elapsed();
    let after_put = peak_rss_kib();
    let started = std::time::Instant::now();
    let n = store.get("big", tokio::io::sink()).await?;
    let get = started.elapsed();
    println!(
        "{mib} MiB: put {:.1} s, get {:.1} s ({n} bytes); peak RSS {} MiB before, {} MiB after put, {} MiB after get",
        put.as_secs_f64(),
        get.as_secs_f64(),
        before / 1024,
        after_put / 1024,
        peak_rss_kib() / 1024
    );
    Ok(())
}
