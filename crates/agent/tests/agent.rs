//! The real `cloudshell-agent` binary on loopback, driven through the
//! store's `ShardStore` trait over pinned QUIC.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use cloudshell_agent::RemoteShards;
use cloudshell_net::quic::Client;
use cloudshell_net::tls::{Fingerprint, Identity};
use cloudshell_store::format::{FileId, HEADER_LEN, ShardHeader, shard_len};
use cloudshell_store::shard_store::{ShardError, ShardStore};
use cloudshell_store::{KeySource, Node, ShardKey, Store, StoreSettings};

struct Agent {
    child: Child,
    addr: SocketAddr,
    fingerprint: Fingerprint,
    dir: PathBuf,
    /// The line it printed on start.
    line: serde_json::Value,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(daemon: &Identity, dir: &Path, quota: &str, listen: &str) -> Agent {
    start_with(daemon, dir, &["--quota", quota, "--listen", listen])
}

/// Starts the agent with these flags and reads the line it prints.
fn start_with(daemon: &Identity, dir: &Path, flags: &[&str]) -> Agent {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cloudshell-agent"))
        .arg("--daemon-fingerprint")
        .arg(daemon.fingerprint().to_string())
        .arg("--data-dir")
        .arg(dir)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
    Agent {
        child,
        addr: v["local_addr"].as_str().unwrap().parse().unwrap(),
        fingerprint: Fingerprint::parse(v["fingerprint"].as_str().unwrap()).unwrap(),
        dir: dir.to_path_buf(),
        line: v,
    }
}

fn remote(daemon: &Identity, agent: &Agent) -> RemoteShards {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    RemoteShards::new(Client::new(socket, daemon, agent.fingerprint, agent.addr).unwrap())
}

fn shard(chunk: u64, index: u8, payload: usize) -> (ShardKey, Bytes) {
    let key = ShardKey {
        file_id: FileId([3; 16]),
        chunk,
        index,
    };
    let len = shard_len(payload, 6);
    let mut b = ShardHeader {
        flags: 0,
        k: 6,
        m: 3,
        key,
        payload_len: payload as u32,
        shard_len: len as u32,
    }
    .encode()
    .to_vec();
    b.resize(HEADER_LEN + len, index.wrapping_add(chunk as u8));
    (key, Bytes::from(b))
}

#[tokio::test]
async fn every_request_against_the_real_agent() {
    let daemon = Identity::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&daemon, dir.path(), "10M", "127.0.0.1:0");
    let shards = remote(&daemon, &agent);
    let (key, blob) = shard(0, 1, 1 << 20);
    shards.put(key, blob.clone()).await.unwrap();
    assert_eq!(shards.get(key).await.unwrap(), blob);
    assert_eq!(
        shards.verify(key).await.unwrap(),
        *blake3::hash(&blob).as_bytes()
    );
    assert_eq!(shards.list(None, 10).await.unwrap(), vec![key]);
    let s = shards.stats().await.unwrap();
    assert_eq!(
        (s.shards, s.used, s.quota),
        (1, blob.len() as u64, 10 << 20)
    );

    // A shard changed on the agent's disk: VerifyShard reports another hash.
    let name = key.name();
    let path = agent.dir.join("shards").join(&name[..2]).join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_LEN + 5] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    assert_ne!(
        shards.verify(key).await.unwrap(),
        *blake3::hash(&blob).as_bytes()
    );

    shards.delete(key).await.unwrap();
    assert!(matches!(
        shards.get(key).await,
        Err(ShardError::NotFound(_))
    ));

    // Quota: a write past it is refused whole, with a clear message.
    let mut refused = None;
    for chunk in 0..100 {
        let (k, b) = shard(chunk, 0, 3 << 20);
        if let Err(e) = shards.put(k, b).await {
            refused = Some((k, e));
            break;
        }
    }
    let (k, e) = refused.expect("the quota was never reached");
    assert!(e.to_string().contains("full"), "{e}");
    assert!(
        matches!(shards.get(k).await, Err(ShardError::NotFound(_))),
        "a refused shard was kept"
    );
    assert!(shards.stats().await.unwrap().used <= 10 << 20);
}

#[tokio::test]
async fn the_agent_learns_its_address_by_stun() {
    let mut servers = Vec::new();
    for _ in 0..2 {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        servers.push(s.local_addr().unwrap().to_string());
        tokio::spawn(cloudshell_net::stun::serve(s));
    }
    let daemon = Identity::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Started off the runtime thread: the STUN servers answer on it.
    let data_dir = dir.path().to_path_buf();
    let agent = tokio::task::spawn_blocking(move || {
        let flags = [
            "--listen",
            "127.0.0.1:0",
            "--stun",
            &servers[0],
            "--stun",
            &servers[1],
        ];
        start_with(&daemon, &data_dir, &flags)
    })
    .await
    .unwrap();
    let (v, line) = (&agent.line, agent.line.to_string());
    // On loopback the servers see the socket itself: no NAT.
    assert_eq!(v["public_addr"], v["local_addr"], "{line}");
    assert_eq!(v["nat"], "open", "{line}");
}

#[tokio::test]
async fn the_agent_serves_nobody_but_its_daemon() {
    let daemon = Identity::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&daemon, dir.path(), "10M", "127.0.0.1:0");
    let stranger = Identity::generate().unwrap();
    let shards = remote(&stranger, &agent);
    assert!(shards.stats().await.is_err(), "a stranger was served");
    let (key, blob) = shard(0, 0, 100);
    assert!(shards.put(key, blob).await.is_err());
    assert!(
        std::fs::read_dir(dir.path().join("shards"))
            .unwrap()
            .next()
            .is_none(),
        "a stranger wrote"
    );
    // An agent that is not the one expected is refused by the daemon side.
    let wrong = RemoteShards::new(
        Client::new(
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            &daemon,
            Identity::generate().unwrap().fingerprint(),
            agent.addr,
        )
        .unwrap(),
    );
    assert!(wrong.stats().await.is_err());
}

#[tokio::test]
async fn a_restarted_agent_is_reconnected_and_loses_nothing() {
    let daemon = Identity::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let agent = start(&daemon, dir.path(), "1G", &listen);
    let shards = Arc::new(remote(&daemon, &agent));
    let mut stored = Vec::new();
    for chunk in 0..20 {
        let (k, b) = shard(chunk, 0, 100_000);
        shards.put(k, b.clone()).await.unwrap();
        stored.push((k, b));
    }
    drop(agent);
    let agent = start(&daemon, dir.path(), "1G", &listen);
    assert_eq!(
        agent.fingerprint,
        remote(&daemon, &agent)
            .client()
            .request(&cloudshell_net::wire::Request::Stats)
            .await
            .map(|_| agent.fingerprint)
            .unwrap(),
        "same identity"
    );
    for chunk in 20..40 {
        let (k, b) = shard(chunk, 0, 100_000);
        shards.put(k, b.clone()).await.unwrap();
        stored.push((k, b));
    }
    for (k, b) in &stored {
        assert_eq!(&shards.get(*k).await.unwrap(), b);
    }
}

#[tokio::test]
async fn the_store_works_unchanged_over_nine_agents() {
    let daemon = Identity::generate().unwrap();
    let root = tempfile::tempdir().unwrap();
    let agents: Vec<Agent> = (0..9)
        .map(|i| {
            start(
                &daemon,
                &root.path().join(format!("agent{i}")),
                "1G",
                "127.0.0.1:0",
            )
        })
        .collect();
    let nodes = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            Node::new(
                format!("agent{i}"),
                format!("region{i}"),
                Arc::new(remote(&daemon, a)),
            )
        })
        .collect();
    let store = Store::open(
        &root.path().join("index.redb"),
        &KeySource::NoEncryption,
        nodes,
        StoreSettings::default(),
    )
    .unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let report = store.put("f", &data[..]).await.unwrap();
    assert_eq!(report.survivable_losses, 3);
    let mut agents = agents;
    // Three agents die: the file still reads.
    agents.truncate(6);
    let mut out = Vec::new();
    store.get("f", &mut out).await.unwrap();
    assert!(out == data);
}
