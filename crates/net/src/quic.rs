//! The protocol over QUIC: an agent-side server that answers requests with a
//! [`Service`], and a daemon-side [`Client`] that reconnects.
//!
//! One bidirectional stream per request: the request frame, then the
//! response frame, then both sides finish. Keep-alive packets every few
//! seconds keep NAT mappings open.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use tokio::io::AsyncReadExt as _;
use tokio::sync::Mutex;

use crate::stun::NatKind;
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
    #[error("cannot connect to the agent at {}: {reason}", list(.addrs))]
    Connect {
        /// Where it was tried.
        addrs: Vec<SocketAddr>,
        /// Why.
        reason: String,
    },
    /// The request took longer than the client's request timeout.
    #[error("the agent did not answer {op:?} within {} s", after.as_secs_f32())]
    Timeout {
        /// The request.
        op: Op,
        /// The timeout.
        after: Duration,
    },
    /// The connection broke.
    #[error("connection lost")]
    Lost(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The peer sent bytes that are not the protocol.
    #[error("protocol error: {0}")]
    Wire(#[from] WireError),
    /// The peer speaks another version.
    #[error("the agent speaks another protocol version: {0}")]
    Version(String),
}

fn list(addrs: &[SocketAddr]) -> String {
    let v: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
    v.join(" or ")
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // Invariant: 30 s is within QUIC's idle-timeout range (2^62 ms).
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW);
    t.congestion_controller_factory(Arc::new(cubic));
    Arc::new(t)
}

/// The congestion window a new connection starts with (quinn's default
/// is about 14 KiB). A connection carries one node's shards and nothing
/// else, and an agent's first answers are a get's first shards: from 14
/// KiB, slow start on a 220 ms round trip took a second or more to fill a
/// 4 MB/s link, a sixth of a 128 MiB get. quinn paces what it sends over
/// the round trip, so a larger start is not a burst into the link.
const INITIAL_WINDOW: u64 = 128 * 1024;

/// Socket buffers asked for each way on every QUIC socket. The kernel's
/// default (about 208 KiB) overflowed on the daemon's one socket when nine
/// agents answered reads at once: a twentieth of the datagrams were dropped
/// on loopback (`RcvbufErrors`), and each drop costs QUIC a retransmission
/// and a smaller congestion window. The kernel clamps the request to
/// `net.core.rmem_max` / `wmem_max` (4 MiB on most distributions, less on
/// some), which is as much as an unprivileged process can have.
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Gives `socket` the buffers of [`UDP_BUFFER_BYTES`]; what the kernel
/// grants is what it grants (a smaller buffer only means more drops).
fn widen_buffers(socket: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(UDP_BUFFER_BYTES);
    let _ = s.set_send_buffer_size(UDP_BUFFER_BYTES);
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
        .map_err(|e| TlsError::Config(e.into()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    let runtime = runtime()?;
    widen_buffers(&socket);
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
        .map_err(|e| NetError::Lost(e.into()))?;
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
    let (head, tail) = response.encode_split();
    send.write_all(&head)
        .await
        .map_err(|e| NetError::Lost(e.into()))?;
    if let Some(tail) = tail {
        send.write_chunk(tail)
            .await
            .map_err(|e| NetError::Lost(e.into()))?;
    }
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
    let body = read_body(recv, header.body_len as usize).await?;
    Ok(Request::decode_owned(header, body)?)
}

/// The `len` bytes of a frame's body, read into spare capacity: a shard's
/// worth of zeroes written only to be overwritten showed in the profiles.
async fn read_body(recv: &mut quinn::RecvStream, len: usize) -> Result<Vec<u8>, NetError> {
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        let read = (&mut *recv)
            .take((len - body.len()) as u64)
            .read_buf(&mut body)
            .await
            .map_err(|e| NetError::Lost(e.into()))?;
        if read == 0 {
            return Err(NetError::Lost(
                format!("the frame ended after {} of its {len} bytes", body.len()).into(),
            ));
        }
    }
    Ok(body)
}

/// Where an agent can be reached, as its line said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Addresses tried at once, each punched: the agent's STUN-learned
    /// public address and its local one (the first to answer wins).
    pub addrs: Vec<SocketAddr>,
    /// The agent's NAT as its STUN servers saw it, for the error when
    /// nothing answers.
    pub nat: Option<NatKind>,
}

impl Route {
    /// One address, NAT unknown.
    pub fn direct(addr: SocketAddr) -> Self {
        Self {
            addrs: vec![addr],
            nat: None,
        }
    }
}

/// The daemon's side of every agent: one UDP socket (the one whose public
/// address STUN learned and the agents punch towards) shared by one
/// [`Client`] per agent, each holding one QUIC connection on which every
/// request is its own stream.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    endpoint: quinn::Endpoint,
    /// A clone of the endpoint's socket, for punch datagrams.
    punch: std::net::UdpSocket,
    identity: Identity,
    nat: std::sync::Mutex<Option<NatKind>>,
    clients: std::sync::Mutex<HashMap<Fingerprint, Arc<Client>>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("local_addr", &self.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool on `socket`, as `identity` (the certificate agents pin).
    pub fn new(socket: std::net::UdpSocket, identity: &Identity) -> Result<Self, NetError> {
        let punch = socket.try_clone()?;
        widen_buffers(&socket);
        let endpoint =
            quinn::Endpoint::new(quinn::EndpointConfig::default(), None, socket, runtime()?)?;
        Ok(Self {
            inner: Arc::new(PoolInner {
                endpoint,
                punch,
                identity: identity.clone(),
                nat: std::sync::Mutex::new(None),
                clients: std::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Records this side's NAT (from [`crate::stun::discover`]), which
    /// connection errors then explain.
    pub fn set_nat(&self, nat: Option<NatKind>) {
        *lock(&self.inner.nat) = nat;
    }

    /// The address of the shared socket.
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        Ok(self.inner.endpoint.local_addr()?)
    }

    /// The client of the agent whose certificate is `peer`, made on first
    /// use; a changed `route` (a restarted agent) replaces the old one and
    /// drops its connection.
    pub fn client(&self, peer: Fingerprint, route: Route) -> Result<Arc<Client>, NetError> {
        let mut clients = lock(&self.inner.clients);
        if let Some(c) = clients.get(&peer) {
            c.set_route(route);
            return Ok(c.clone());
        }
        let c = Arc::new(Client::in_pool(self.clone(), peer, route)?);
        clients.insert(peer, c.clone());
        Ok(c)
    }

    /// Forgets the agent `peer` (its connection closes when the last
    /// holder of its client lets go).
    pub fn remove(&self, peer: Fingerprint) {
        lock(&self.inner.clients).remove(&peer);
    }

    /// Closes every connection and the socket.
    pub fn close(&self) {
        self.inner.endpoint.close(0u32.into(), b"daemon closing");
    }
}

/// A poisoned lock only means another task panicked while holding it; the
/// data (a map, an address) is still consistent.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long one attempt to connect (punching and the handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);
/// How long one request may take, connecting included, by default.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed attempt to connect, requests fail at once for this long
/// instead of each waiting out an attempt of their own.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A daemon-side client of one agent: one QUIC connection, remade when it
/// breaks.
pub struct Client {
    pool: Pool,
    peer: Fingerprint,
    config: quinn::ClientConfig,
    /// The route, and how many times it changed.
    route: std::sync::Mutex<(Route, u64)>,
    state: Mutex<Slot>,
    request_timeout: std::sync::Mutex<Duration>,
}

#[derive(Default)]
struct Slot {
    connection: Option<quinn::Connection>,
    /// The route generation the connection (or failure) is for.
    generation: u64,
    /// The last failed attempt: when, and the error it gave.
    failed: Option<(tokio::time::Instant, String)>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.peer)
            .field("route", &lock(&self.route).0)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with a socket of its own that talks to the agent at `addr`
    /// only if its certificate is `peer`. (A daemon with many agents makes
    /// a [`Pool`] and takes its clients from it.)
    pub fn new(
        socket: std::net::UdpSocket,
        identity: &Identity,
        peer: Fingerprint,
        addr: SocketAddr,
    ) -> Result<Self, NetError> {
        Self::in_pool(Pool::new(socket, identity)?, peer, Route::direct(addr))
    }

    fn in_pool(pool: Pool, peer: Fingerprint, route: Route) -> Result<Self, NetError> {
        let crypto = QuicClientConfig::try_from(tls::client_config(&pool.inner.identity, peer)?)
            .map_err(|e| TlsError::Config(e.into()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(crypto));
        config.transport_config(transport());
        Ok(Self {
            pool,
            peer,
            config,
            route: std::sync::Mutex::new((route, 0)),
            state: Mutex::new(Slot::default()),
            request_timeout: std::sync::Mutex::new(REQUEST_TIMEOUT),
        })
    }

    /// The pinned certificate of the agent.
    pub fn peer(&self) -> Fingerprint {
        self.peer
    }

    /// How long a request may take, connecting included (default
    /// [`REQUEST_TIMEOUT`]).
    pub fn set_request_timeout(&self, timeout: Duration) {
        *lock(&self.request_timeout) = timeout;
    }

    /// Points the client at a new route (a restarted agent). If it
    /// changed, the next request connects afresh.
    pub fn set_route(&self, route: Route) {
        let mut current = lock(&self.route);
        if current.0 != route {
            *current = (route, current.1 + 1);
        }
    }

    /// Points the client at one new address.
    pub fn set_addr(&self, addr: SocketAddr) {
        self.set_route(Route::direct(addr));
    }

    async fn connection(&self) -> Result<quinn::Connection, NetError> {
        let mut slot = self.state.lock().await;
        let (route, generation) = lock(&self.route).clone();
        if slot.generation != generation {
            *slot = Slot {
                generation,
                ..Slot::default()
            };
        }
        if let Some(c) = slot.connection.as_ref()
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        if let Some((at, error)) = &slot.failed
            && at.elapsed() < RETRY_AFTER
        {
            return Err(NetError::Connect {
                addrs: route.addrs,
                reason: format!("{error} (tried {} ms ago)", at.elapsed().as_millis()),
            });
        }
        match self.dial(&route).await {
            Ok(c) => {
                // Checked before anyone else may use the connection.
                hello(&c).await?;
                slot.connection = Some(c.clone());
                slot.failed = None;
                Ok(c)
            }
            Err(reason) => {
                slot.connection = None;
                slot.failed = Some((tokio::time::Instant::now(), reason.clone()));
                Err(NetError::Connect {
                    addrs: route.addrs,
                    reason,
                })
            }
        }
    }

    /// Punches every address of `route` while a handshake to each is
    /// attempted; the first to complete wins.
    async fn dial(&self, route: &Route) -> Result<quinn::Connection, String> {
        // A wildcard address is what an agent prints when it could not
        // tell its interface; it cannot be dialled.
        let addrs: Vec<SocketAddr> = route
            .addrs
            .iter()
            .copied()
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
            .collect();
        if addrs.is_empty() {
            return Err("the agent has no address to reach it at".to_owned());
        }
        let punch = self
            .pool
            .inner
            .punch
            .try_clone()
            .map_err(|e| e.to_string())?;
        let punching = crate::punch::burst(punch, addrs.clone(), CONNECT_TIMEOUT);
        let mut failures = Vec::new();
        let mut attempts = futures_util::stream::FuturesUnordered::new();
        for &addr in &addrs {
            match self
                .pool
                .inner
                .endpoint
                .connect_with(self.config.clone(), addr, tls::SERVER_NAME)
            {
                Ok(connecting) => attempts.push(async move { (addr, connecting.await) }),
                Err(e) => failures.push(format!("{addr}: {e}")),
            }
        }
        let first = async {
            use futures_util::StreamExt as _;
            while let Some((addr, result)) = attempts.next().await {
                match result {
                    Ok(c) => return Some(c),
                    Err(e) => failures.push(format!("{addr}: {e}")),
                }
            }
            None
        };
        let outcome = tokio::select! {
            c = first => c,
            () = tokio::time::sleep(CONNECT_TIMEOUT) => None,
            () = punching => None,
        };
        if let Some(c) = outcome {
            return Ok(c);
        }
        Err(self.explain(route, failures))
    }

    /// Why nothing answered, with what the NATs on either side tell.
    fn explain(&self, route: &Route, failures: Vec<String>) -> String {
        if !failures.is_empty() {
            // The handshake got an answer (a refused certificate, say): that
            // is the reason.
            return failures.join("; ");
        }
        let mut causes = Vec::new();
        if route.nat == Some(NatKind::Symmetric) {
            causes.push(
                "the agent is behind a symmetric NAT (its STUN servers saw different ports), \
                 which hole punching cannot cross: run that node where its NAT keeps the port, \
                 or leave it out",
            );
        }
        if *lock(&self.pool.inner.nat) == Some(NatKind::Symmetric) {
            causes.push(
                "this machine is behind a symmetric NAT (its STUN servers saw different ports), \
                 which hole punching cannot cross: run the daemon where its NAT keeps the port \
                 (most home routers do) or where it has a public address",
            );
        }
        if causes.is_empty() {
            causes.push(
                "the agent is not running, or UDP between here and there is blocked, or its NAT \
                 let nothing in because it was not punching towards this daemon",
            );
        }
        format!(
            "no answer within {} s: {}",
            CONNECT_TIMEOUT.as_secs(),
            causes.join("; ")
        )
    }

    /// Sends a request and waits for its answer, within the request
    /// timeout. A broken connection is remade and the request sent once
    /// more (every request is idempotent).
    pub async fn request(&self, request: &Request) -> Result<Response, NetError> {
        let timeout = *lock(&self.request_timeout);
        match tokio::time::timeout(timeout, self.request_once_more(request)).await {
            Ok(r) => r,
            Err(_) => Err(NetError::Timeout {
                op: request.op(),
                after: timeout,
            }),
        }
    }

    async fn request_once_more(&self, request: &Request) -> Result<Response, NetError> {
        let c = self.connection().await?;
        match exchange(&c, request).await {
            Err(NetError::Lost(_)) => {
                let mut slot = self.state.lock().await;
                if slot
                    .connection
                    .as_ref()
                    .is_some_and(|current| current.stable_id() == c.stable_id())
                {
                    slot.connection = None;
                }
                drop(slot);
                let c = self.connection().await?;
                exchange(&c, request).await
            }
            other => other,
        }
    }
}

/// The first exchange on a connection checks the versions.
async fn hello(c: &quinn::Connection) -> Result<(), NetError> {
    match exchange(
        c,
        &Request::Hello {
            software: env!("CARGO_PKG_VERSION").to_owned(),
        },
    )
    .await?
    {
        Response::Hello { .. } => Ok(()),
        Response::Error { message, .. } => Err(NetError::Version(message)),
        other => Err(NetError::Lost(
            format!("unexpected hello answer {other:?}").into(),
        )),
    }
}

async fn exchange(c: &quinn::Connection, request: &Request) -> Result<Response, NetError> {
    fn lost<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> NetError {
        NetError::Lost(e.into())
    }
    let (mut send, mut recv) = c.open_bi().await.map_err(lost)?;
    let (head, tail) = request.encode_split();
    send.write_all(&head).await.map_err(lost)?;
    if let Some(tail) = tail {
        send.write_chunk(tail).await.map_err(lost)?;
    }
    let _ = send.finish();
    let mut head = [0u8; FRAME_HEADER_LEN];
    recv.read_exact(&mut head).await.map_err(lost)?;
    let header = FrameHeader::decode(&head)?;
    let op: Op = request.op();
    header.check_response(op)?;
    let body = read_body(&mut recv, header.body_len as usize).await?;
    Ok(Response::decode_owned(op, header, body)?)
}
