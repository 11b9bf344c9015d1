//! A tokio driver that runs a client-side [`DataChannel`] over the
//! `StreamUrl` WebSocket (`ws://` or `wss://`), with reconnection.
//!
//! [`Session::connect`] dials, sends the opening `OpenDataChannelInput` text
//! frame with the token, and spawns one task that owns the socket and the
//! state machine. The caller talks to it through [`SessionWriter`] (data in,
//! with back-pressure) and [`SessionReader`] (events out).

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use tracing::{debug, warn};
use uuid::Uuid;

use crate::channel::{ChannelConfig, DataChannel, Event, Role};
use crate::codec::PayloadType;
use crate::payload::{Flag, OpenDataChannelInput};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How many messages may wait unacknowledged before the driver stops taking
/// more input: bounds memory and applies back-pressure to the writer.
const MAX_BACKLOG: usize = 2048;
/// WebSocket ping interval; the plugin pings every 5 minutes, a NAT may forget sooner.
const PING_INTERVAL: Duration = Duration::from_secs(60);

/// How to reach a session.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `StreamUrl` from CreateSession, used verbatim.
    pub stream_url: String,
    /// `TokenValue` from CreateSession.
    pub token: String,
    /// Redials after the socket drops before giving up.
    pub max_reconnects: u32,
    /// State machine tunables.
    pub channel: ChannelConfig,
}

impl ConnectOptions {
    /// Defaults for a URL and token.
    pub fn new(stream_url: impl Into<String>, token: impl Into<String>) -> Self {
        Self {
            stream_url: stream_url.into(),
            token: token.into(),
            max_reconnects: 5,
            channel: ChannelConfig::default(),
        }
    }
}

/// Why a session could not be opened or went away.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The WebSocket could not be opened.
    #[error("could not open the data channel at {url}")]
    Connect {
        /// The URL dialled.
        url: String,
        /// Why.
        #[source]
        source: tokio_tungstenite::tungstenite::Error,
    },
    /// The connection dropped and could not be re-established.
    #[error("the data channel dropped and {attempts} reconnection attempts failed")]
    Disconnected {
        /// Attempts made.
        attempts: u32,
    },
    /// The far end refused the token (WebSocket close code 1008).
    #[error("the data channel refused the session: {0}")]
    Refused(String),
    /// The session task is gone.
    #[error("the session has ended")]
    Ended,
}

enum Command {
    Send(PayloadType, Vec<u8>),
}

/// Sends data into a session.
#[derive(Debug, Clone)]
pub struct SessionWriter {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send(pt, d) => write!(f, "Send({pt:?}, {} bytes)", d.len()),
        }
    }
}

impl SessionWriter {
    /// Queues data; waits while too much is unacknowledged.
    pub async fn send(&self, payload_type: PayloadType, data: Vec<u8>) -> Result<(), DriverError> {
        if data.is_empty() {
            return Ok(());
        }
        self.commands
            .send(Command::Send(payload_type, data))
            .await
            .map_err(|_| DriverError::Ended)
    }

    /// Sends terminal input.
    pub async fn input(&self, data: Vec<u8>) -> Result<(), DriverError> {
        self.send(PayloadType::OUTPUT, data).await
    }

    /// Sends the terminal size.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), DriverError> {
        let size = crate::payload::SizeData {
            cols: cols.into(),
            rows: rows.into(),
        };
        let bytes = serde_json::to_vec(&size).unwrap_or_default();
        self.send(PayloadType::SIZE, bytes).await
    }

    /// Asks the agent to end the session.
    pub async fn terminate(&self) -> Result<(), DriverError> {
        self.send(PayloadType::FLAG, Flag::TerminateSession.encode().to_vec())
            .await
    }
}

/// Receives what the session delivers.
#[derive(Debug)]
pub struct SessionReader {
    events: mpsc::Receiver<Event>,
    task: tokio::task::JoinHandle<Result<(), DriverError>>,
}

impl SessionReader {
    /// The next event; `None` once the session task has ended (see [`finish`](Self::finish)).
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Waits for the session task and returns how it ended.
    pub async fn finish(self) -> Result<(), DriverError> {
        drop(self.events);
        self.task.await.map_err(|_| DriverError::Ended)?
    }
}

/// An open session, to be split into its two halves.
#[derive(Debug)]
pub struct Session {
    /// Input side.
    pub writer: SessionWriter,
    /// Output side.
    pub reader: SessionReader,
}

impl Session {
    /// Dials the stream URL, authenticates and starts the session task.
    pub async fn connect(options: ConnectOptions) -> Result<Self, DriverError> {
        let client_id = Uuid::new_v4();
        let socket = dial(&options, client_id).await?;
        let now = Instant::now();
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
        let channel = DataChannel::new(
            Role::Client,
            options.channel.clone(),
            now.into_std(),
            unix_ms,
            rand::random(),
        );
        let (commands_tx, commands_rx) = mpsc::channel(64);
        let (events_tx, events_rx) = mpsc::channel(256);
        let task = tokio::spawn(run(
            socket,
            options,
            client_id,
            channel,
            commands_rx,
            events_tx,
        ));
        Ok(Self {
            writer: SessionWriter {
                commands: commands_tx,
            },
            reader: SessionReader {
                events: events_rx,
                task,
            },
        })
    }
}

async fn dial(options: &ConnectOptions, client_id: Uuid) -> Result<Socket, DriverError> {
    let connect_err = |source| DriverError::Connect {
        url: redact(&options.stream_url),
        source,
    };
    let (mut socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        options.stream_url.as_str(),
        None,
        false,
        Some(tls_connector()),
    )
    .await
    .map_err(connect_err)?;
    let open = OpenDataChannelInput::new(
        &options.token,
        Uuid::new_v4(),
        client_id,
        &options.channel.version,
    );
    let text = serde_json::to_string(&open).unwrap_or_default();
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(connect_err)?;
    Ok(socket)
}

/// rustls with the aws-lc-rs provider chosen explicitly (other crates in the
/// tree enable ring too, and then rustls cannot pick a default), and the
/// Mozilla root store compiled in.
fn tls_connector() -> Connector {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(builder) => Connector::Rustls(Arc::new(
            builder.with_root_certificates(roots).with_no_client_auth(),
        )),
        // Only fails if the provider supports no protocol version at all.
        Err(_) => Connector::Plain,
    }
}

/// Stream URLs carry routing data, not secrets, but keep logs short.
fn redact(url: &str) -> String {
    url.split('?').next().unwrap_or(url).to_owned()
}

/// Frames queued for the socket writer. When full, frames are dropped, not
/// waited for: every frame is either retransmitted or re-provoked (acks), and
/// reading must never wait on writing or the two directions can deadlock.
const WRITE_QUEUE: usize = 4096;

/// The socket split so that reading never waits on writing.
struct Link {
    outgoing: mpsc::Sender<Message>,
    incoming: futures_util::stream::SplitStream<Socket>,
    writer: tokio::task::JoinHandle<()>,
}

impl Link {
    fn new(socket: Socket) -> Self {
        let (mut sink, incoming) = socket.split();
        let (outgoing, mut queue) = mpsc::channel::<Message>(WRITE_QUEUE);
        let writer = tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
            let _ = sink.close().await;
        });
        Self {
            outgoing,
            incoming,
            writer,
        }
    }

    /// Dropping a link ends its writer once the queue is drained.
    /// False once the writer is gone (the socket broke).
    fn send(&self, message: Message) -> bool {
        match self.outgoing.try_send(message) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

async fn run(
    socket: Socket,
    options: ConnectOptions,
    client_id: Uuid,
    mut channel: DataChannel,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Event>,
) -> Result<(), DriverError> {
    let mut link = Link::new(socket);
    let mut commands_open = true;
    // Reconnections since a frame last arrived: a far end that accepts the
    // socket and then drops it every time must not keep us redialling forever.
    let mut fruitless_reconnects = 0;
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.reset();
    loop {
        let mut broken = false;
        while let Some(frame) = channel.poll_transmit() {
            // Unacknowledged data stays in the channel and is resent after reconnecting.
            broken |= !link.send(Message::Binary(frame.into()));
        }
        while let Some(event) = channel.poll_event() {
            let closed = matches!(event, Event::Closed(_));
            // A reader that went away just means nobody listens any more.
            let _ = events.send(event).await;
            if closed {
                link.send(Message::Close(None));
                drop(link.outgoing);
                let _ = link.writer.await;
                return Ok(());
            }
        }
        if !broken {
            let deadline = channel.poll_timeout().map(Instant::from_std);
            let take_input = commands_open && channel.backlog() < MAX_BACKLOG;
            tokio::select! {
                message = link.incoming.next() => match message {
                    Some(Ok(Message::Binary(bytes))) => {
                        match channel.handle_frame(&bytes, Instant::now().into_std()) {
                            Ok(()) => fruitless_reconnects = 0,
                            Err(e) => warn!("ignoring a bad frame: {e}"),
                        }
                    }
                    Some(Ok(Message::Text(text))) => {
                        if let Err(e) = channel.handle_frame(text.as_bytes(), Instant::now().into_std()) {
                            warn!("ignoring a bad text frame: {e}");
                        }
                    }
                    Some(Ok(Message::Close(Some(close)))) if u16::from(close.code) == 1008 => {
                        return Err(DriverError::Refused(close.reason.to_string()));
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => broken = true,
                    Some(Ok(_)) => {}
                },
                command = commands.recv(), if take_input => match command {
                    Some(Command::Send(payload_type, data)) => {
                        channel.send(payload_type, &data, Instant::now().into_std());
                    }
                    None => commands_open = false,
                },
                () = sleep_until(deadline), if deadline.is_some() => {
                    channel.handle_timeout(Instant::now().into_std());
                }
                _ = ping.tick() => {
                    broken |= !link.send(Message::Ping(b"keepalive".to_vec().into()));
                }
            }
        }
        if broken {
            fruitless_reconnects += 1;
            if fruitless_reconnects > options.max_reconnects {
                return Err(DriverError::Disconnected {
                    attempts: options.max_reconnects,
                });
            }
            link = Link::new(reconnect(&options, client_id).await?);
            // Whatever was in flight on the old socket is presumed lost.
            channel.retransmit_all(Instant::now().into_std());
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Redials with exponential backoff (100 ms doubling, at most 5 s), as the plugin does.
async fn reconnect(options: &ConnectOptions, client_id: Uuid) -> Result<Socket, DriverError> {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=options.max_reconnects {
        tokio::time::sleep(delay).await;
        match dial(options, client_id).await {
            Ok(socket) => {
                debug!(attempt, "data channel reconnected");
                return Ok(socket);
            }
            Err(e) => debug!(attempt, "reconnect failed: {e}"),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    Err(DriverError::Disconnected {
        attempts: options.max_reconnects,
    })
}
