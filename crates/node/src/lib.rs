//! The node protocol between the daemon and its agents, over
//! [`cloudshell_net::wire`] and QUIC: the agent's side and the daemon's.
//!
//! - [`ShardService`]: answers the wire protocol's requests from a
//!   [`LocalDirStore`] (temp file, fsync, rename; quota refused whole).
//! - [`RemoteShards`]: a [`ShardStore`] whose shards live on an agent, over
//!   a pinned QUIC connection, so the store works unchanged against remote
//!   nodes.
//!
//! The binary `cloudshell-agent` runs a [`ShardService`] on a QUIC endpoint
//! that accepts only the daemon whose certificate fingerprint it was given;
//! the daemon reaches each agent through a [`RemoteShards`]. Both live here,
//! in a library, so neither side depends on the other's crate.

use std::sync::Arc;

use bytes::Bytes;
use cloudshell_net::quic::{Client, NetError, Service};
use cloudshell_net::wire::{AgentStats, ErrorCode, Request, Response, ShardId};
use cloudshell_store::shard_store::{ShardError, ShardStore, StoreStats};
use cloudshell_store::{LocalDirStore, ShardKey};
use futures_util::future::BoxFuture;

/// The line an agent prints on its standard output once it serves: how
/// the daemon reaches it. One compact JSON object on one line (the
/// daemon's start command reads it through the environment's shell, and
/// finds the old agent's `"pid":N` in it to stop that one first); the
/// agent writes it with this type and the daemon reads it with this type.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announcement {
    /// The agent's certificate fingerprint, hex.
    pub fingerprint: String,
    /// Its local address.
    pub local_addr: std::net::SocketAddr,
    /// Its public address, when STUN answered.
    pub public_addr: Option<std::net::SocketAddr>,
    /// Its NAT as STUN saw it (`cloudshell_net::stun::NatKind`'s names).
    #[serde(default)]
    pub nat: Option<String>,
    /// Its process id in the environment.
    pub pid: u32,
    /// Its software version.
    #[serde(default)]
    pub version: Option<String>,
}

/// The node protocol's software version, reported in Hello and Stats.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Serves shards from a local directory.
#[derive(Debug, Clone)]
pub struct ShardService {
    shards: LocalDirStore,
}

impl ShardService {
    /// A service over `shards`.
    pub fn new(shards: LocalDirStore) -> Self {
        Self { shards }
    }
}

fn key(id: &ShardId) -> ShardKey {
    ShardKey::from_bytes(&id.0)
}

fn error(e: ShardError) -> Response {
    let code = match &e {
        ShardError::NotFound(_) => ErrorCode::NotFound,
        ShardError::QuotaExceeded { .. } | ShardError::Full(_) | ShardError::DiskFull { .. } => {
            ErrorCode::QuotaExceeded
        }
        ShardError::Malformed(_) => ErrorCode::Malformed,
        _ => ErrorCode::Internal,
    };
    Response::Error {
        code,
        message: e.to_string(),
    }
}

impl Service for ShardService {
    fn handle(&self, request: Request) -> BoxFuture<'_, Response> {
        Box::pin(async move {
            let result = match request {
                Request::PutShard { id, blob } => self
                    .shards
                    .put(key(&id), blob)
                    .await
                    .map(|()| Response::Done),
                Request::GetShard(id) => self.shards.get(key(&id)).await.map(Response::Blob),
                Request::DeleteShard(id) => {
                    self.shards.delete(key(&id)).await.map(|()| Response::Done)
                }
                Request::ListShards { after, limit } => self
                    .shards
                    .list(after.as_ref().map(key), limit as usize)
                    .await
                    .map(|keys| {
                        Response::List(keys.iter().map(|k| ShardId(k.to_bytes())).collect())
                    }),
                Request::VerifyShard(id) => self.shards.verify(key(&id)).await.map(Response::Hash),
                Request::Stats => self.shards.stats().await.map(|s| {
                    Response::Stats(AgentStats {
                        used: s.used,
                        quota: s.quota,
                        shards: s.shards,
                        uptime_secs: s.uptime_secs,
                        software: VERSION.to_owned(),
                        disk_free: s.disk_free,
                    })
                }),
                other => {
                    return Response::Error {
                        code: ErrorCode::Malformed,
                        message: format!("unexpected request {:?}", other.op()),
                    };
                }
            };
            result.unwrap_or_else(error)
        })
    }
}

/// An agent's shards, seen from the daemon.
#[derive(Debug, Clone)]
pub struct RemoteShards {
    client: Arc<Client>,
}

impl RemoteShards {
    /// Shards behind `client` (a [`Client`] of its own, or one from a
    /// [`cloudshell_net::quic::Pool`]).
    pub fn new(client: impl Into<Arc<Client>>) -> Self {
        Self {
            client: client.into(),
        }
    }

    /// The connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn call(&self, request: Request, key: Option<ShardKey>) -> Result<Response, ShardError> {
        let unavailable = |e: NetError| ShardError::Unavailable(e.to_string());
        match self.client.request(&request).await.map_err(unavailable)? {
            Response::Error { code, message } => Err(match code {
                ErrorCode::NotFound => ShardError::NotFound(key.map_or(message, |k| k.name())),
                ErrorCode::Malformed => ShardError::Malformed(message),
                // The agent's message names used, quota and need.
                ErrorCode::QuotaExceeded => ShardError::Full(message),
                _ => ShardError::Unavailable(message),
            }),
            r => Ok(r),
        }
    }
}

fn unexpected(r: &Response) -> ShardError {
    ShardError::Unavailable(format!("unexpected answer {r:?}"))
}

impl ShardStore for RemoteShards {
    fn put(&self, key: ShardKey, blob: Bytes) -> BoxFuture<'_, Result<(), ShardError>> {
        Box::pin(async move {
            let request = Request::PutShard {
                id: ShardId(key.to_bytes()),
                blob,
            };
            match self.call(request, Some(key)).await? {
                Response::Done => Ok(()),
                r => Err(unexpected(&r)),
            }
        })
    }

    fn get(&self, key: ShardKey) -> BoxFuture<'_, Result<Bytes, ShardError>> {
        Box::pin(async move {
            match self
                .call(Request::GetShard(ShardId(key.to_bytes())), Some(key))
                .await?
            {
                Response::Blob(b) => Ok(b),
                r => Err(unexpected(&r)),
            }
        })
    }

    fn delete(&self, key: ShardKey) -> BoxFuture<'_, Result<(), ShardError>> {
        Box::pin(async move {
            match self
                .call(Request::DeleteShard(ShardId(key.to_bytes())), Some(key))
                .await?
            {
                Response::Done => Ok(()),
                r => Err(unexpected(&r)),
            }
        })
    }

    fn list(
        &self,
        after: Option<ShardKey>,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<ShardKey>, ShardError>> {
        Box::pin(async move {
            let request = Request::ListShards {
                after: after.map(|k| ShardId(k.to_bytes())),
                limit: u32::try_from(limit)
                    .unwrap_or(u32::MAX)
                    .min(cloudshell_net::wire::MAX_LIST),
            };
            match self.call(request, None).await? {
                Response::List(ids) => Ok(ids.iter().map(key).collect()),
                r => Err(unexpected(&r)),
            }
        })
    }

    fn verify(&self, key: ShardKey) -> BoxFuture<'_, Result<[u8; 32], ShardError>> {
        Box::pin(async move {
            match self
                .call(Request::VerifyShard(ShardId(key.to_bytes())), Some(key))
                .await?
            {
                Response::Hash(h) => Ok(h),
                r => Err(unexpected(&r)),
            }
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<StoreStats, ShardError>> {
        Box::pin(async move {
            match self.call(Request::Stats, None).await? {
                Response::Stats(s) => Ok(StoreStats {
                    used: s.used,
                    quota: s.quota,
                    shards: s.shards,
                    uptime_secs: s.uptime_secs,
                    disk_free: s.disk_free,
                }),
                r => Err(unexpected(&r)),
            }
        })
    }
}
