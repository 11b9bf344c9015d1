//! PutShard and GetShard over pinned QUIC on loopback, against a plain TCP
//! loopback copy of the same bytes, in one run.
//!
//! Shards of 174,763 bytes (a 1 MiB chunk split 6 ways), 64 per iteration,
//! 8 requests in flight; the agent side keeps shards in memory so the
//! figure is the transport's. `cargo bench -p cloudshell-net --bench loopback`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // A benchmark that cannot set up should stop loudly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cloudshell_net::quic::{Client, Service, serve, server_endpoint};
use cloudshell_net::tls::Identity;
use cloudshell_net::wire::{Request, Response, ShardId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::BoxFuture;
use futures_util::stream::{self, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SHARD: usize = 174_763;
const SHARDS: usize = 64;
const IN_FLIGHT: usize = 8;

#[derive(Default)]
struct Memory(Mutex<HashMap<ShardId, Vec<u8>>>);

impl Service for Memory {
    fn handle(&self, request: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            let mut m = self.0.lock().unwrap();
            match request {
                Request::PutShard { id, blob } => {
                    m.insert(id, blob.to_vec());
                    Response::Done
                }
                Request::GetShard(id) => {
                    Response::Blob(m.get(&id).cloned().unwrap_or_default().into())
                }
                _ => Response::Done,
            }
        })
    }
}

fn id(n: usize) -> ShardId {
    let mut b = [0u8; 25];
    b[..8].copy_from_slice(&(n as u64).to_le_bytes());
    ShardId(b)
}

fn loopback(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (client, tcp_addr) = rt.block_on(async {
        let daemon = Identity::generate().unwrap();
        let agent = Identity::generate().unwrap();
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let endpoint = server_endpoint(socket, &agent, daemon.fingerprint()).unwrap();
        tokio::spawn(serve(endpoint, Arc::new(Memory::default()), "bench".into()));
        let client = Client::new(
            std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
            &daemon,
            agent.fingerprint(),
            addr,
        )
        .unwrap();
        // A TCP sink: reads N bytes, then answers one byte.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = vec![0u8; SHARD * SHARDS];
                    while s.read_exact(&mut buf).await.is_ok() {
                        if s.write_all(&[1]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (Arc::new(client), tcp_addr)
    });
    let blob = bytes::Bytes::from(vec![0x5a_u8; SHARD]);

    let mut g = c.benchmark_group("loopback-64x174763B");
    g.throughput(Throughput::Bytes((SHARD * SHARDS) as u64));
    g.sample_size(10);
    g.bench_function("PutShard over QUIC", |b| {
        b.to_async(&rt).iter(|| {
            let client = client.clone();
            let blob = blob.clone();
            async move {
                stream::iter(0..SHARDS)
                    .map(|n| {
                        let client = client.clone();
                        let blob = blob.clone();
                        async move {
                            client
                                .request(&Request::PutShard { id: id(n), blob })
                                .await
                                .unwrap()
                        }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await
            }
        })
    });
    g.bench_function("GetShard over QUIC", |b| {
        b.to_async(&rt).iter(|| {
            let client = client.clone();
            async move {
                stream::iter(0..SHARDS)
                    .map(|n| {
                        let client = client.clone();
                        async move { client.request(&Request::GetShard(id(n))).await.unwrap() }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect::<Vec<_>>()
                    .await
            }
        })
    });
    let mut tcp = rt
        .block_on(tokio::net::TcpStream::connect(tcp_addr))
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let payload = vec![0x5a_u8; SHARD * SHARDS];
    g.bench_function("TCP copy", |b| {
        b.iter(|| {
            rt.block_on(async {
                tcp.write_all(&payload).await.unwrap();
                let mut ack = [0u8; 1];
                tcp.read_exact(&mut ack).await.unwrap();
            })
        })
    });
    g.finish();
}

criterion_group!(benches, loopback);
criterion_main!(benches);
