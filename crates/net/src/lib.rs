//! The network between the store's daemon and its agents.
//!
//! So far: [`wire`], the request/response protocol as bytes (frame header
//! with magic, version, op and checked body length; PutShard, GetShard,
//! DeleteShard, ListShards, VerifyShard, Stats, and a Hello first). QUIC
//! with pinned certificates, STUN and hole punching come next (issue 6).
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
//! let answer = Response::Blob(b"shard".to_vec()).encode();
//! let (header, body) = split_frame(&answer).unwrap();
//! assert_eq!(Response::decode(Op::GetShard, header, body).unwrap(), Response::Blob(b"shard".to_vec()));
//! ```

pub mod wire;
