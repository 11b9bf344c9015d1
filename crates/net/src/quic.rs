//! The protocol over QUIC: an agent-side server that answers requests with a
//! [`Service`], and a daemon-side [`Client`] that reconnects.
//!
//! One bidirectional stream per request: the request frame, then the
//! response frame, then both sides finish. Keep-alive packets every few
//! seconds keep NAT mappings open.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::sync::Mutex;

use crate::tls::{self, Fingerprint, Identity, TlsError};
use crate::wire::{
    ErrorCode, FRAME_HEADER_LEN, FrameHeader, Op, PROTOCOL_VERSION, Request, Response, WireError,
};

/// How often an idle connection sends a keep-alive (NAT mappings on common
/// routers last 30 s or more for UDP).
pub const KEEP_ALIVE: Duration = Duration::from_secs(3);
/// How long a silent connection lives: also how long a request to an agent
/// that vanished without a word waits before the client reconnects.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers requests (the agent's shard service).
pub trait Service: Send + Sync + 'static {
    /// The answer to one request (never [`Request::Hello`], which the
    /// server answers itself).
    fn handle(&self, request: Request) -> BoxFuture<'_, Response>;
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// TLS setup failed.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The socket or endpoint failed.
    #[error("network endpoint")]
    Io(#[from] std::io::Error),
    /// The connection could not be made (unreachable, refused, or the
    /// peer's certificate is not the pinned one).
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// Where.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The connection broke.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The peer sent bytes that are not the protocol.
    #[error("protocol error: {0}")]
    Wire(#[from] WireError),
    /// The peer speaks another version.
    #[error("the agent speaks another protocol version: {0}")]
    Version(String),
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // Invariant: 30 s is within QUIC's idle-timeout range (2^62 ms).
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    Arc::new(t)
}

/// The tokio runtime quinn runs on (endpoints are made inside one).
fn runtime() -> Result<Arc<dyn quinn::Runtime>, NetError> {
    quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("quinn needs a tokio runtime").into())
}

/// An agent endpoint on `socket` that accepts only `peer`.
pub fn server_endpoint(
    socket: std::net::UdpSocket,
    identity: &Identity,
    peer: Fingerprint,
) -> Result<quinn::Endpoint, NetError> {
    let crypto = QuicServerConfig::try_from(tls::server_config(identity, peer)?)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    let runtime = runtime()?;
    Ok(quinn::Endpoint::new(
        restartable_endpoint_config(identity),
        Some(config),
        socket,
        runtime,
    )?)
}

/// Endpoint settings that survive a restart of the agent: the stateless
/// reset key and the connection-ID hash key both come from the identity.
/// A restarted agent then recognises the connection IDs it handed out
/// before and answers packets on the dead connection with a stateless
/// reset, so the daemon reconnects at once instead of waiting out the idle
/// timeout. (quinn's defaults draw both keys at random per process: the new
/// process would drop those packets as carrying invalid IDs.)
fn restartable_endpoint_config(identity: &Identity) -> quinn::EndpointConfig {
    let secret = identity.reset_secret();
    let reset_key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
    let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
        b"connection id hash key",
    );
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    config
}

/// Serves connections on `endpoint` until it is closed.
pub async fn serve(endpoint: quinn::Endpoint, service: Arc<dyn Service>, software: String) {
    while let Some(incoming) = endpoint.accept().await {
        let service = service.clone();
        let software = software.clone();
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((send, recv)) = connection.accept_bi().await {
                let service = service.clone();
                let software = software.clone();
                tokio::spawn(async move {
                    let _ = answer(send, recv, service.as_ref(), &software).await;
                });
            }
        });
    }
}

/// Reads one request, answers it. Bad requests get an error response; the
/// connection and the server carry on.
async fn answer(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    service: &dyn Service,
    software: &str,
) -> Result<(), NetError> {
    let mut head = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut head)
        .await
        .map_err(|e| NetError::Lost(e.to_string()))?;
    let response = match read_request(&head, &mut recv).await {
        Ok(Request::Hello { .. }) => Response::Hello {
            software: software.to_owned(),
        },
        Ok(request) => service.handle(request).await,
        Err(NetError::Wire(WireError::Version(v))) => Response::Error {
            code: ErrorCode::VersionMismatch,
            message: format!("this agent speaks protocol version {PROTOCOL_VERSION}, not {v}"),
        },
        Err(e) => Response::Error {
            code: ErrorCode::Malformed,
            message: e.to_string(),
        },
    };
    send.write_all(&response.encode())
        .await
        .map_err(|e| NetError::Lost(e.to_string()))?;
    let _ = send.finish();
    // Wait until the peer has the answer (or gives up) before dropping.
    let _ = send.stopped().await;
    Ok(())
}

async fn read_request(
    head: &[u8; FRAME_HEADER_LEN],
    recv: &mut quinn::RecvStream,
) -> Result<Request, NetError> {
    let header = FrameHeader::decode(head)?;
    // Refused before a byte of the body is read or allocated.
    header.check_request()?;
    let mut body = vec![0u8; header.body_len as usize];
    recv.read_exact(&mut body)
        .await
        .map_err(|e| NetError::Lost(e.to_string()))?;
    Ok(Request::decode(header, &body)?)
}

/// A daemon-side client of one agent: one QUIC connection, remade when it
/// breaks.
pub struct Client {
    endpoint: quinn::Endpoint,
    addr: Mutex<SocketAddr>,
    connection: Mutex<Option<quinn::Connection>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client on `socket` that talks to the agent at `addr` only if its
    /// certificate is `peer`.
    pub fn new(
        socket: std::net::UdpSocket,
        identity: &Identity,
        peer: Fingerprint,
        addr: SocketAddr,
    ) -> Result<Self, NetError> {
        let crypto = QuicClientConfig::try_from(tls::client_config(identity, peer)?)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport());
        let runtime = runtime()?;
        let mut endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime)?;
        endpoint.set_default_client_config(config);
        Ok(Self {
            endpoint,
            addr: Mutex::new(addr),
            connection: Mutex::new(None),
        })
    }

    /// Points the client at a new address (a restarted agent), dropping the
    /// current connection.
    pub async fn set_addr(&self, addr: SocketAddr) {
        *self.addr.lock().await = addr;
        *self.connection.lock().await = None;
    }

    async fn connection(&self) -> Result<quinn::Connection, NetError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref()
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let addr = *self.addr.lock().await;
        let connecting =
            self.endpoint
                .connect(addr, tls::SERVER_NAME)
                .map_err(|e| NetError::Connect {
                    addr,
                    reason: e.to_string(),
                })?;
        let c = connecting.await.map_err(|e| NetError::Connect {
            addr,
            reason: e.to_string(),
        })?;
        *slot = Some(c.clone());
        drop(slot);
        // The first exchange on a connection checks the versions.
        match exchange(
            &c,
            &Request::Hello {
                software: env!("CARGO_PKG_VERSION").to_owned(),
            },
        )
        .await?
        {
            Response::Hello { .. } => Ok(c),
            Response::Error { message, .. } => Err(NetError::Version(message)),
            other => Err(NetError::Lost(format!("unexpected hello answer {other:?}"))),
        }
    }

    /// Sends a request and waits for its answer. A broken connection is
    /// remade and the request sent once more (every request is idempotent).
    pub async fn request(&self, request: &Request) -> Result<Response, NetError> {
        let c = self.connection().await?;
        match exchange(&c, request).await {
            Err(NetError::Lost(_)) => {
                *self.connection.lock().await = None;
                let c = self.connection().await?;
                exchange(&c, request).await
            }
            other => other,
        }
    }
}

async fn exchange(c: &quinn::Connection, request: &Request) -> Result<Response, NetError> {
    let lost = |e: &dyn std::fmt::Display| NetError::Lost(e.to_string());
    let (mut send, mut recv) = c.open_bi().await.map_err(|e| lost(&e))?;
    send.write_all(&request.encode())
        .await
        .map_err(|e| lost(&e))?;
    let _ = send.finish();
    let mut head = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut head).await.map_err(|e| lost(&e))?;
    let header = FrameHeader::decode(&head)?;
    let op: Op = request.op();
    header.check_response(op)?;
    let mut body = vec![0u8; header.body_len as usize];
    recv.read_exact(&mut body).await.map_err(|e| lost(&e))?;
    Ok(Response::decode(op, header, &body)?)
}
