//! The protocol over real QUIC on loopback: pinned certificates both ways,
//! every request, bad input answered without stopping the server.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use cloudshell_net::quic::{Client, NetError, Service, serve, server_endpoint};
use cloudshell_net::tls::Identity;
use cloudshell_net::wire::{AgentStats, ErrorCode, Request, Response, ShardId};
use futures_util::future::BoxFuture;

/// Shards in memory.
#[derive(Default)]
struct Memory(Mutex<BTreeMap<ShardId, Vec<u8>>>);

impl Service for Memory {
    fn handle(&self, request: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            let mut m = self.0.lock().unwrap();
            match request {
                Request::PutShard { id, blob } => {
                    m.insert(id, blob.to_vec());
                    Response::Done
                }
                Request::GetShard(id) => match m.get(&id) {
                    Some(b) => Response::Blob(b.clone().into()),
                    None => Response::Error {
                        code: ErrorCode::NotFound,
                        message: "no such shard".into(),
                    },
                },
                Request::DeleteShard(id) => {
                    m.remove(&id);
                    Response::Done
                }
                Request::ListShards { after, limit } => Response::List(
                    m.keys()
                        .filter(|k| after.is_none_or(|a| **k > a))
                        .take(limit as usize)
                        .copied()
                        .collect(),
                ),
                Request::VerifyShard(id) => {
                    Response::Hash([m.get(&id).map_or(0, |b| b.len() as u8); 32])
                }
                Request::Stats => Response::Stats(AgentStats {
                    used: m.values().map(|b| b.len() as u64).sum(),
                    quota: 1 << 30,
                    shards: m.len() as u64,
                    uptime_secs: 0,
                    software: "test".into(),
                    disk_free: u64::MAX,
                }),
                other => Response::Error {
                    code: ErrorCode::Malformed,
                    message: format!("unexpected {other:?}"),
                },
            }
        })
    }
}

fn udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// An agent that accepts only `daemon`; returns its address and identity.
fn agent(daemon: &Identity) -> (SocketAddr, Identity) {
    let id = Identity::generate().unwrap();
    let socket = udp();
    let addr = socket.local_addr().unwrap();
    let endpoint = server_endpoint(socket, &id, daemon.fingerprint()).unwrap();
    tokio::spawn(serve(
        endpoint,
        Arc::new(Memory::default()),
        "agent-test".into(),
    ));
    (addr, id)
}

fn sid(n: u8) -> ShardId {
    ShardId([n; 25])
}

#[tokio::test]
async fn every_request_round_trips() {
    let daemon = Identity::generate().unwrap();
    let (addr, agent_id) = agent(&daemon);
    let client = Client::new(udp(), &daemon, agent_id.fingerprint(), addr).unwrap();
    let blob = bytes::Bytes::from(vec![42u8; 174_763]);
    for n in 0..3 {
        let r = client
            .request(&Request::PutShard {
                id: sid(n),
                blob: blob.clone(),
            })
            .await
            .unwrap();
        assert_eq!(r, Response::Done);
    }
    assert_eq!(
        client.request(&Request::GetShard(sid(1))).await.unwrap(),
        Response::Blob(blob.clone())
    );
    assert_eq!(
        client
            .request(&Request::ListShards {
                after: Some(sid(0)),
                limit: 1
            })
            .await
            .unwrap(),
        Response::List(vec![sid(1)])
    );
    assert!(matches!(
        client.request(&Request::VerifyShard(sid(2))).await.unwrap(),
        Response::Hash(_)
    ));
    assert_eq!(
        client.request(&Request::DeleteShard(sid(2))).await.unwrap(),
        Response::Done
    );
    match client.request(&Request::GetShard(sid(2))).await.unwrap() {
        Response::Error {
            code: ErrorCode::NotFound,
            ..
        } => {}
        other => panic!("{other:?}"),
    }
    match client.request(&Request::Stats).await.unwrap() {
        Response::Stats(s) => assert_eq!(s.shards, 2),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn only_the_pinned_certificates_connect() {
    let daemon = Identity::generate().unwrap();
    let (addr, agent_id) = agent(&daemon);
    // Another daemon, with the right agent fingerprint: the agent refuses it.
    let stranger = Identity::generate().unwrap();
    let c = Client::new(udp(), &stranger, agent_id.fingerprint(), addr).unwrap();
    assert!(
        c.request(&Request::Stats).await.is_err(),
        "an unknown client was served"
    );
    // The right daemon expecting another agent: the daemon refuses it.
    let impostor = Identity::generate().unwrap();
    let c = Client::new(udp(), &daemon, impostor.fingerprint(), addr).unwrap();
    match c.request(&Request::Stats).await {
        Err(NetError::Connect { reason, .. }) => assert!(
            reason.contains("pinned") || reason.contains("certificate"),
            "{reason}"
        ),
        other => panic!("expected a refused connection, got {other:?}"),
    }
    // And the right pair works.
    let c = Client::new(udp(), &daemon, agent_id.fingerprint(), addr).unwrap();
    assert!(matches!(
        c.request(&Request::Stats).await.unwrap(),
        Response::Stats(_)
    ));
}

#[tokio::test]
async fn malformed_and_oversized_requests_get_errors_and_the_agent_keeps_serving() {
    let daemon = Identity::generate().unwrap();
    let (addr, agent_id) = agent(&daemon);
    let client = Client::new(udp(), &daemon, agent_id.fingerprint(), addr).unwrap();
    assert!(matches!(
        client.request(&Request::Stats).await.unwrap(),
        Response::Stats(_)
    ));

    // A raw connection sending garbage and an oversized announcement.
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(
        cloudshell_net::tls::client_config(&daemon, agent_id.fingerprint()).unwrap(),
    )
    .unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let conn = endpoint
        .connect(addr, "cloudshell-agent")
        .unwrap()
        .await
        .unwrap();
    for frame in [
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        // GetShard announcing a 4 GiB body.
        vec![b'C', b'S', b'N', b'P', 1, 3, 0, 0, 0xff, 0xff, 0xff, 0xff],
        // Version 9.
        vec![b'C', b'S', b'N', b'P', 9, 7, 0, 0, 0, 0, 0, 0],
    ] {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&frame).await.unwrap();
        send.finish().unwrap();
        let answer = recv.read_to_end(1 << 16).await.unwrap();
        assert_eq!(&answer[..4], b"CSNP", "{answer:?}");
        assert_ne!(answer[5], 0, "bad input must get an error status");
    }
    assert!(matches!(
        client.request(&Request::Stats).await.unwrap(),
        Response::Stats(_)
    ));
}

/// What the kernel lets an unprivileged socket have, both ways (it doubles
/// what was asked, up to twice `rmem_max`).
fn granted_at_least() -> usize {
    let max = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(0)
    };
    max("rmem_max").min(max("wmem_max")).min(4 << 20)
}

#[tokio::test]
async fn quic_sockets_get_wide_buffers_both_ways() {
    // The default (about 208 KiB) dropped one datagram in twenty on the
    // daemon's socket when nine agents answered reads at once.
    let want = granted_at_least();
    let identity = Identity::generate().unwrap();
    let agent_socket = udp();
    let seen = agent_socket.try_clone().unwrap();
    let _endpoint = server_endpoint(agent_socket, &identity, identity.fingerprint()).unwrap();
    let pool_socket = udp();
    let seen_pool = pool_socket.try_clone().unwrap();
    let _pool = cloudshell_net::quic::Pool::new(pool_socket, &identity).unwrap();
    for s in [&seen, &seen_pool] {
        let s = socket2::SockRef::from(s);
        assert!(s.recv_buffer_size().unwrap() >= want, "receive buffer");
        assert!(s.send_buffer_size().unwrap() >= want, "send buffer");
    }
}
