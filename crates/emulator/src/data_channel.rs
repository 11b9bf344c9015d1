//! The emulator's side of the Session Manager data channel: a WebSocket at
//! the session's `StreamUrl`, the agent end of the ssm state machine, and a
//! real shell in a pty.
//!
//! A session's shell and channel state live in their own task, independent
//! of any one WebSocket: a client that reconnects (presenting the same token)
//! re-attaches to the same shell, and whatever was in flight is resent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use cloudshell_ssm::channel::{ChannelConfig, DataChannel, Event, Role, session_type_action};
use cloudshell_ssm::codec::{HeaderLayout, PayloadType};
use cloudshell_ssm::payload::{Flag, OpenDataChannelInput, SizeData};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::config::DataChannelFaults;
use crate::live::{Attachment, LiveSession};
use crate::state::{AppState, now_millis};

/// How long a client has to send its opening frame.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages in flight before the shell's output stops being read.
const MAX_BACKLOG: usize = 2048;
/// Keystrokes waiting for the terminal beyond which new input frames are
/// left unacknowledged (the client resends them later): the shell may stop
/// reading its terminal at any time, and the session must neither block on
/// it nor buffer without bound.
const MAX_PENDING_INPUT: usize = 4 << 20;
/// How long a finished session waits for the client to acknowledge its output.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the agent waits for the client's HandshakeResponse (the real
/// agent's `handshakeTimeout`).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a shell whose terminal closed is given to be reaped, to learn
/// whether it exited or was killed.
const SHELL_EXIT_WAIT: Duration = Duration::from_secs(2);
/// The agent version the handshake announces: a current SSM agent's form
/// (clients compare it against thresholds such as `3.0.0.0`).
pub const AGENT_VERSION: &str = "3.3.1802.0";
/// The session type a shell session's handshake asks the client to agree to.
const SHELL_SESSION_TYPE: &str = "Standard_Stream";

/// `GET /v1/data-channel/{session_id}`: upgrades to the data channel.
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    Path(session_id): Path<String>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| serve(state, session_id, socket))
}

/// Waits for the opening text frame. Pings and pongs may come first (AWS's
/// session-manager-plugin starts its keep-alive pings as soon as it has
/// dialled, racing its OpenDataChannelInput); they are answered and
/// skipped, as the real service does.
async fn opening(socket: &mut WebSocket) -> Result<OpenDataChannelInput, String> {
    let deadline = tokio::time::Instant::now() + OPEN_TIMEOUT;
    loop {
        let message = tokio::time::timeout_at(deadline, socket.recv())
            .await
            .map_err(|_| format!("no OpenDataChannelInput within {OPEN_TIMEOUT:?}"))?;
        match message {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str::<OpenDataChannelInput>(&text).map_err(|e| {
                    format!("the first text frame is not an OpenDataChannelInput: {e}")
                });
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Binary(_))) => {
                return Err("a binary frame came before the OpenDataChannelInput".to_owned());
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err("closed before sending an OpenDataChannelInput".to_owned());
            }
            Some(Err(e)) => return Err(format!("the WebSocket failed before opening: {e}")),
        }
    }
}

/// Closes a data channel that may not open, logging why: 1008 (policy
/// violation), with the reason for the client to show.
async fn refuse(mut socket: WebSocket, session_id: &str, reason: String) {
    warn!(%session_id, %reason, "data channel refused");
    let frame = axum::extract::ws::CloseFrame {
        code: 1008,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn serve(state: Arc<AppState>, session_id: String, mut socket: WebSocket) {
    let open = match opening(&mut socket).await {
        Ok(open) => open,
        Err(reason) => return refuse(socket, &session_id, reason).await,
    };
    let service = Arc::clone(&state);
    let sid = session_id.clone();
    let token = open.token_value.clone();
    let authorized = tokio::task::spawn_blocking(move || {
        service
            .service
            .open_data_channel(&sid, &token, now_millis())
    })
    .await;
    let opened = match authorized {
        Ok(Ok(v)) => v,
        Ok(Err(reason)) => return refuse(socket, &session_id, reason).await,
        Err(_) => return,
    };

    let attach = match state.live.attach_sender(&session_id) {
        Some(a) => a,
        None => {
            let (attach_tx, attach_rx) = mpsc::channel(4);
            let (end_tx, end_rx) = watch::channel(None);
            state.live.insert(
                &session_id,
                LiveSession {
                    environment_id: opened.environment_id.clone(),
                    attach: attach_tx.clone(),
                    end: end_tx,
                },
            );
            let shell = ShellSession {
                state: Arc::clone(&state),
                session_id: session_id.clone(),
                environment_id: opened.environment_id,
                region: opened.region,
                home: opened.home,
                in_tmux: opened.in_tmux,
            };
            tokio::spawn(shell.run(attach_rx, end_rx));
            attach_tx
        }
    };

    // Reading from the client must never wait on the session (which may be
    // waiting to write to the client), or the two directions deadlock; when
    // the session falls behind, frames are dropped as a lossy link would, and
    // retransmission recovers them.
    let (to_client_tx, mut to_client_rx) = mpsc::channel::<Vec<u8>>(1024);
    let (from_client_tx, from_client_rx) = mpsc::channel::<Vec<u8>>(4096);
    if attach
        .send(Attachment {
            to_client: to_client_tx,
            from_client: from_client_rx,
        })
        .await
        .is_err()
    {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let disconnect_after = state.service.config().data_channel_faults.disconnect_every;
    let (mut sink, mut stream) = socket.split();
    let reading = async move {
        while let Some(Ok(message)) = stream.next().await {
            let frame = match message {
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            if let Err(mpsc::error::TrySendError::Closed(_)) = from_client_tx.try_send(frame) {
                break;
            }
        }
    };
    let writing = async move {
        while let Some(frame) = to_client_rx.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        // The session is over and everything was sent.
        let _ = sink.send(Message::Close(None)).await;
    };
    // Fault switch: vanish after a while without a close frame, as a dead network would.
    let cut = async move {
        match disconnect_after {
            Some(after) => tokio::time::sleep(after).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = reading => {}
        () = writing => {}
        () = cut => debug!(%session_id, "fault: dropping the data channel"),
    }
}

struct ShellSession {
    state: Arc<AppState>,
    session_id: String,
    environment_id: String,
    region: String,
    home: PathBuf,
    /// Run the shell inside tmux, as a Console (`TMUX`) session does.
    in_tmux: bool,
}

impl ShellSession {
    async fn run(
        self,
        mut attach_rx: mpsc::Receiver<Attachment>,
        mut end_rx: watch::Receiver<Option<String>>,
    ) {
        let reason = match self.drive(&mut attach_rx, &mut end_rx).await {
            Ok(reason) => reason,
            Err(e) => {
                warn!(session_id = %self.session_id, "shell session failed: {e}");
                format!("the emulator could not run the shell: {e}")
            }
        };
        self.state.live.remove(&self.session_id);
        let state = Arc::clone(&self.state);
        let sid = self.session_id.clone();
        let _ = tokio::task::spawn_blocking(move || state.service.end_session(&sid)).await;
        debug!(session_id = %self.session_id, %reason, "session over");
    }

    /// The name of the environment's tmux server socket (`tmux -L`).
    fn tmux_socket(&self) -> String {
        format!("cloudshell-{}", self.environment_id)
    }

    /// Runs the shell until it exits or the session is ended; returns why it ended.
    async fn drive(
        &self,
        attach_rx: &mut mpsc::Receiver<Attachment>,
        end_rx: &mut watch::Receiver<Option<String>>,
    ) -> std::io::Result<String> {
        let config = self.state.service.config();
        let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
        pty.resize(pty_process::Size::new(24, 80))
            .map_err(std::io::Error::other)?;
        let mut command = if self.in_tmux {
            // One tmux server per environment (its own socket name), one
            // tmux session per SSM session, the shell in its only pane.
            pty_process::Command::new("tmux")
                .arg("-L")
                .arg(self.tmux_socket())
                .arg("new-session")
                .arg("-s")
                .arg(&self.session_id)
                .arg("--")
                .arg(&config.shell)
                .arg("--noprofile")
                .arg("--norc")
        } else {
            pty_process::Command::new(&config.shell)
                .arg("--noprofile")
                .arg("--norc")
        };
        command = command
            .env_clear()
            .env("HOME", &self.home)
            .env("PWD", &self.home)
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
            )
            .env("TERM", "xterm-256color")
            .env("LANG", "C.UTF-8")
            .env("USER", "cloudshell-user")
            .env("SHELL", &config.shell)
            .env(crate::processes::MARKER, &self.environment_id)
            .env("AWS_REGION", &self.region)
            .env("AWS_DEFAULT_REGION", &self.region)
            .env("PS1", r"[cloudshell-user@emulator \W]\$ ")
            .current_dir(&self.home)
            .kill_on_drop(true);
        let mut child = command.spawn(pts).map_err(|e| {
            std::io::Error::other(format!(
                "{}: {e}",
                if self.in_tmux {
                    "cannot start tmux for a TMUX session (install tmux, or start the emulator with --plain-sessions)"
                } else {
                    "cannot start the shell"
                }
            ))
        })?;
        let (mut pty_out, pty_in) = pty.into_split();
        // Writes to the terminal block while the shell does not read; they
        // happen on their own task so output and acknowledgements keep flowing.
        let (input_tx, input_rx) = mpsc::unbounded_channel::<TerminalInput>();
        let pending_input = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writer = tokio::spawn(write_terminal(pty_in, input_rx, Arc::clone(&pending_input)));

        let started = Instant::now();
        let unix_ms = now_millis();
        let mut channel = DataChannel::new(
            Role::Agent,
            ChannelConfig {
                version: AGENT_VERSION.to_owned(),
                ..ChannelConfig::default()
            },
            started,
            unix_ms,
            rand::random(),
        );
        // A current agent starts every session with a handshake and starts
        // the shell's output only once it is complete; input that arrives
        // before then is acknowledged and dropped (the channel does that).
        channel.start_handshake(vec![session_type_action(SHELL_SESSION_TYPE)], started);
        let mut handshake_until = Some(tokio::time::Instant::now() + HANDSHAKE_TIMEOUT);
        let mut faults = FaultInjector::new(config.data_channel_faults.clone());
        let mut link: Option<Attachment> = None;
        let keep_alive_every = (config.timings.inactivity / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(60));
        let mut keep_alive = tokio::time::interval(keep_alive_every);
        let mut buf = vec![0u8; 8192];
        let mut shell_done = false;
        let mut reason = String::new();

        // Phase 1: the shell runs.
        loop {
            self.flush(&mut channel, &mut faults, &mut link).await;
            while let Some(event) = channel.poll_event() {
                match event {
                    Event::Data {
                        payload_type: PayloadType::OUTPUT,
                        data,
                    } => {
                        pending_input.fetch_add(data.len(), std::sync::atomic::Ordering::Relaxed);
                        // A writer that is gone means the terminal is gone: drop the input.
                        let _ = input_tx.send(TerminalInput::Keys(data));
                    }
                    Event::Data {
                        payload_type: PayloadType::SIZE,
                        data,
                    } => {
                        // A client with no terminal sends 0x0: no size, not a 1x1 pane.
                        if let Ok(size) = serde_json::from_slice::<SizeData>(&data)
                            && size.rows > 0
                            && size.cols > 0
                        {
                            let rows = u16::try_from(size.rows).unwrap_or(u16::MAX);
                            let cols = u16::try_from(size.cols).unwrap_or(u16::MAX);
                            let _ = input_tx.send(TerminalInput::Resize(rows, cols));
                        }
                    }
                    Event::Data {
                        payload_type: PayloadType::FLAG,
                        data,
                    } if Flag::decode(&data) == Some(Flag::TerminateSession) => {
                        reason = "terminated by the client".to_owned();
                        shell_done = true;
                    }
                    Event::HandshakeComplete { .. } => handshake_until = None,
                    Event::HandshakeFailed(why) => {
                        warn!(session_id = %self.session_id, "handshake failed: {why}");
                        reason = format!("the handshake failed: {why}");
                        shell_done = true;
                    }
                    _ => {}
                }
            }
            if shell_done {
                break;
            }
            let deadline = channel.poll_timeout().map(tokio::time::Instant::from_std);
            let read_output = handshake_until.is_none() && channel.backlog() < MAX_BACKLOG;
            tokio::select! {
                attachment = attach_rx.recv() => reattach(&mut link, &mut channel, attachment),
                frame = recv_frame(&mut link) => {
                    let full = pending_input.load(std::sync::atomic::Ordering::Relaxed) > MAX_PENDING_INPUT;
                    if !(full && frame.as_deref().is_some_and(carries_input)) {
                        receive(&mut link, &mut channel, frame);
                    }
                }
                n = pty_out.read(&mut buf), if read_output => match n {
                    // EOF or EIO: every process holding the terminal has exited.
                    Ok(0) | Err(_) => shell_done = true,
                    Ok(n) => channel.send(PayloadType::OUTPUT, &buf[..n], Instant::now()),
                },
                () = sleep_until(deadline), if deadline.is_some() => channel.handle_timeout(Instant::now()),
                () = sleep_until(handshake_until), if handshake_until.is_some() => {
                    warn!(session_id = %self.session_id, "the client never answered the handshake");
                    reason = "Handshake timed out. Please ensure that you have the latest version of the session manager plugin.".to_owned();
                    shell_done = true;
                }
                _ = keep_alive.tick() => {
                    let state = Arc::clone(&self.state);
                    let env = self.environment_id.clone();
                    let _ = tokio::task::spawn_blocking(move || state.service.keep_alive(&env, now_millis())).await;
                }
                changed = end_rx.changed() => {
                    reason = match changed {
                        Ok(()) => end_rx.borrow().clone().unwrap_or_default(),
                        Err(_) => "the emulator is shutting down".to_owned(),
                    };
                    shell_done = true;
                }
            }
        }
        writer.abort();
        if reason.is_empty() {
            // The terminal closed: the shell has exited (or is about to).
            // A shell that was killed, not exited, is worth saying so: the
            // client otherwise sees a session that just stopped.
            if let Ok(Ok(status)) = tokio::time::timeout(SHELL_EXIT_WAIT, child.wait()).await {
                use std::os::unix::process::ExitStatusExt as _;
                if let Some(signal) = status.signal() {
                    warn!(session_id = %self.session_id, signal, "the session's shell was killed");
                    reason = format!("the shell was killed by signal {signal}");
                }
            }
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
        if self.in_tmux {
            // The tmux client is gone, but its server would keep the pane's
            // shell: the session's shell ends with the session here.
            let _ = tokio::process::Command::new("tmux")
                .arg("-L")
                .arg(self.tmux_socket())
                .args(["kill-session", "-t", &self.session_id])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .await;
        }

        // Phase 2: let the client acknowledge everything, then say goodbye.
        let drain_until = Instant::now() + DRAIN_TIMEOUT;
        while !channel.is_idle() && Instant::now() < drain_until {
            self.flush(&mut channel, &mut faults, &mut link).await;
            let deadline = channel
                .poll_timeout()
                .unwrap_or(drain_until)
                .min(drain_until);
            tokio::select! {
                attachment = attach_rx.recv() => reattach(&mut link, &mut channel, attachment),
                frame = recv_frame(&mut link) => receive(&mut link, &mut channel, frame),
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => channel.handle_timeout(Instant::now()),
            }
            while channel.poll_event().is_some() {}
        }
        let layout = if config.data_channel_faults.short_close {
            HeaderLayout::ShortNulPadded
        } else {
            HeaderLayout::Standard
        };
        channel.close(&self.session_id, &reason, layout, Instant::now());
        // The goodbye itself is never dropped: a client has no other way to learn the end.
        if let Some(a) = &link {
            while let Some(frame) = channel.poll_transmit() {
                let _ = a.to_client.send(frame).await;
            }
        }
        Ok(reason)
    }

    /// Sends what the channel has queued, through the fault injector.
    async fn flush(
        &self,
        channel: &mut DataChannel,
        faults: &mut FaultInjector,
        link: &mut Option<Attachment>,
    ) {
        while let Some(frame) = channel.poll_transmit() {
            for frame in faults.apply(frame) {
                if let Some(a) = link.as_ref()
                    && a.to_client.send(frame).await.is_err()
                {
                    *link = None;
                }
            }
        }
        if let Some(held) = faults.release()
            && let Some(a) = link.as_ref()
        {
            let _ = a.to_client.send(held).await;
        }
    }
}

/// What the session task hands the terminal writer.
enum TerminalInput {
    Keys(Vec<u8>),
    Resize(u16, u16),
}

/// Types input into the terminal, counting down what is pending (the
/// session refuses new input frames past [`MAX_PENDING_INPUT`], which bounds
/// this queue).
async fn write_terminal(
    mut pty_in: pty_process::OwnedWritePty,
    mut input: mpsc::UnboundedReceiver<TerminalInput>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
) {
    while let Some(next) = input.recv().await {
        match next {
            TerminalInput::Keys(data) => {
                let n = data.len();
                let written = pty_in.write_all(&data).await;
                pending.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
                if written.is_err() {
                    // The terminal is gone; the session notices on its read side.
                    return;
                }
            }
            TerminalInput::Resize(rows, cols) => {
                let _ = pty_in.resize(pty_process::Size::new(rows, cols));
            }
        }
    }
}

/// Whether a raw frame carries client input (as opposed to an acknowledgement
/// or a control message): only those are refused while the terminal lags.
fn carries_input(frame: &[u8]) -> bool {
    cloudshell_ssm::codec::ClientMessage::decode(frame).is_ok_and(|m| {
        m.message_type == cloudshell_ssm::codec::MessageType::InputStreamData
            && m.payload_type == PayloadType::OUTPUT
    })
}

/// A (re)connected client: everything unacknowledged is presumed lost.
fn reattach(
    link: &mut Option<Attachment>,
    channel: &mut DataChannel,
    attachment: Option<Attachment>,
) {
    if let Some(a) = attachment {
        *link = Some(a);
        channel.retransmit_all(Instant::now());
    }
}

/// A frame from the client, or `None` when its socket went away.
fn receive(link: &mut Option<Attachment>, channel: &mut DataChannel, frame: Option<Vec<u8>>) {
    match frame {
        Some(frame) => {
            if let Err(e) = channel.handle_frame(&frame, Instant::now()) {
                debug!("ignoring a bad frame from the client: {e}");
            }
        }
        None => *link = None,
    }
}

async fn recv_frame(link: &mut Option<Attachment>) -> Option<Vec<u8>> {
    match link {
        Some(a) => a.from_client.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Drops, duplicates and reorders outgoing frames.
struct FaultInjector {
    faults: DataChannelFaults,
    held: Option<Vec<u8>>,
}

impl FaultInjector {
    fn new(faults: DataChannelFaults) -> Self {
        Self { faults, held: None }
    }

    fn apply(&mut self, frame: Vec<u8>) -> Vec<Vec<u8>> {
        let mut rng = rand::rng();
        if rng.random_bool(self.faults.drop) {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(3);
        if rng.random_bool(self.faults.duplicate) {
            out.push(frame.clone());
        }
        if self.held.is_none() && rng.random_bool(self.faults.reorder) {
            self.held = Some(frame);
            return out;
        }
        out.push(frame);
        // A held frame goes out after the one that overtook it.
        if let Some(held) = self.held.take() {
            out.push(held);
        }
        out
    }

    /// A frame still held when nothing else is being sent.
    fn release(&mut self) -> Option<Vec<u8>> {
        self.held.take()
    }
}
