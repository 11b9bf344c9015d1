//! The network between the store's daemon and its agents.
//!
//! - [`wire`]: the request/response protocol as bytes (frame header with
//!   magic, version, op and checked body length; PutShard, GetShard,
//!   DeleteShard, ListShards, VerifyShard, Stats, and a Hello first);
//! - [`tls`]: self-signed identities and mutual TLS that pins the peer's
//!   certificate fingerprint;
//! - [`quic`]: the protocol over QUIC (quinn): an agent-side server around a
//!   [`quic::Service`], and on the daemon's side a [`quic::Pool`] of
//!   reconnecting [`quic::Client`]s sharing one socket;
//! - [`stun`]: RFC 8489 Binding on the socket QUIC will use, a small server,
//!   and NAT classification (a symmetric NAT is told apart);
//! - [`punch`]: UDP hole punching from that same socket.
//!
//! This crate knows nothing about files: shard ids and blobs are opaque.
//!
//! # Example
//!
//! ```
//! use cloudshell_net::wire::{Op, Request, Response, ShardId, split_frame};
//!
//! let frame = Request::GetShard(ShardId([1; 25])).encode();
//! let (header, body) = split_frame(&frame).unwrap();
//! assert_eq!(Request::decode(header, body).unwrap(), Request::GetShard(ShardId([1; 25])));
//!
//! let answer = Response::Blob(b"shard".as_slice().into()).encode();
//! let (header, body) = split_frame(&answer).unwrap();
//! assert_eq!(Response::decode(Op::GetShard, header, body).unwrap(), Response::Blob(b"shard".as_slice().into()));
//! ```

pub mod punch;
pub mod quic;
pub mod stun;
pub mod tls;
pub mod wire;
