//! The real `cloudshell-agent` binary on loopback, driven through the
//! store's `ShardStore` trait over pinned QUIC.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::net::UdpSocket;
use std::sync::Arc;

use cloudshell_net::quic::{Client, NetError, Pool, Route};
use cloudshell_net::tls::Identity;
use cloudshell_node::RemoteShards;
use cloudshell_store::format::HEADER_LEN;
use cloudshell_store::shard_store::{ShardError, ShardStore};
use cloudshell_store::{KeySource, Node, Store, StoreSettings};
use std::process::Command;

mod common;

use common::{Agent, shard, start, start_with};

fn remote(daemon: &Identity, agent: &Agent) -> RemoteShards {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    RemoteShards::new(Client::new(socket, daemon, agent.fingerprint, agent.addr).unwrap())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_restarted_under_load_is_reconnected_and_loses_nothing() {
    let daemon = Identity::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let agent = start(&daemon, dir.path(), "1G", &listen);
    let fingerprint = agent.fingerprint;
    let shards = Arc::new(remote(&daemon, &agent));
    let acknowledged = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Four writers, each putting its shards one after another and retrying
    // a failed put (as the store would place it again) until it is taken.
    let writers: Vec<_> = (0..4u64)
        .map(|w| {
            let shards = shards.clone();
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                let mut stored = Vec::new();
                for i in 0..30 {
                    let (k, b) = shard(w * 1000 + i, 0, 100_000);
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while let Err(e) = shards.put(k, b.clone()).await {
                        assert!(std::time::Instant::now() < deadline, "never taken: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                    acknowledged.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    stored.push((k, b));
                }
                stored
            })
        })
        .collect();
    while acknowledged.load(std::sync::atomic::Ordering::SeqCst) < 30 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Killed mid-stream, back on the same port with the same identity.
    drop(agent);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let agent = start(&daemon, dir.path(), "1G", &listen);
    assert_eq!(agent.fingerprint, fingerprint, "same identity");
    let mut stored = Vec::new();
    for w in writers {
        stored.extend(w.await.unwrap());
    }
    assert_eq!(stored.len(), 120);
    for (k, b) in &stored {
        assert_eq!(&shards.get(*k).await.unwrap(), b, "{}", k.name());
    }
    let stats = shards.stats().await.unwrap();
    assert_eq!(stats.shards, 120, "no shard lost, no stray shard");
    // No temporary file of a killed write is left behind.
    let leftovers: Vec<_> = walkdir(&dir.path().join("shards"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert_eq!(leftovers, Vec::<std::path::PathBuf>::new());
}

fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walkdir(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_request_to_a_silent_agent_times_out_and_the_agent_is_used_again_after() {
    let daemon = Identity::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&daemon, dir.path(), "1G", "127.0.0.1:0");
    let client = Arc::new(
        Client::new(
            UdpSocket::bind("127.0.0.1:0").unwrap(),
            &daemon,
            agent.fingerprint,
            agent.addr,
        )
        .unwrap(),
    );
    client.set_request_timeout(std::time::Duration::from_secs(2));
    let shards = RemoteShards::new(client.clone());
    let (k, b) = shard(1, 0, 100_000);
    shards.put(k, b.clone()).await.unwrap();
    // Stopped, not dead: its socket stays open, and nothing answers.
    let pid = agent.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_stopped(agent.child.id());
    let (k2, b2) = shard(2, 0, 100_000);
    let request = cloudshell_net::wire::Request::PutShard {
        id: cloudshell_net::wire::ShardId(k2.to_bytes()),
        blob: b2.clone(),
    };
    let started = std::time::Instant::now();
    match client.request(&request).await {
        Err(e @ NetError::Timeout { .. }) => {
            assert!(
                e.to_string().contains("did not answer PutShard within 2 s"),
                "{e}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(8));
    // Through the store's trait it is an unavailable node, which placement
    // then avoids.
    match shards.put(k2, b2.clone()).await {
        Err(ShardError::Unavailable(m)) => assert!(m.contains("did not answer"), "{m}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    shards.put(k2, b2.clone()).await.unwrap();
    assert_eq!(shards.get(k).await.unwrap(), b);
    assert_eq!(shards.get(k2).await.unwrap(), b2);
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
    // One socket for all nine, as the daemon has.
    let pool = Pool::new(UdpSocket::bind("127.0.0.1:0").unwrap(), &daemon).unwrap();
    let nodes = agents
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let client = pool.client(a.fingerprint, Route::direct(a.addr)).unwrap();
            Node::new(
                format!("agent{i}"),
                format!("region{i}"),
                Arc::new(RemoteShards::new(client)),
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

/// Waits until every thread of `pid` is stopped: `kill -STOP` returns once
/// the signal is sent, and on a loaded machine a thread may still be
/// running (or finishing a system call) a moment later.
fn wait_stopped(pid: u32) {
    let started = std::time::Instant::now();
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
        let all_stopped = tasks.filter_map(Result::ok).all(|t| {
            std::fs::read_to_string(t.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(") ")
                        .map(|(_, rest)| rest.starts_with(['T', 't']))
                })
                .unwrap_or(true)
        });
        if all_stopped {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the agent did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
