//! The data channel as a deterministic state machine (no sockets, no clock).
//!
//! Feed it received frames with [`DataChannel::handle_frame`] and the time
//! with [`DataChannel::handle_timeout`]; give it data to send with
//! [`DataChannel::send`]; take frames to put on the wire from
//! [`DataChannel::poll_transmit`] and delivered data and session events from
//! [`DataChannel::poll_event`]; sleep until [`DataChannel::poll_timeout`].
//!
//! It implements the reliability layer both ends of Session Manager share:
//! a sequence number per direction starting at 0, an acknowledgement for
//! every stream-data message, in-order delivery through a reorder buffer,
//! re-acknowledgement of duplicates (so a lost ack cannot stall the peer),
//! and retransmission after a timeout estimated from round trips the way
//! the plugin does (Jacobson/Karels: SRTT, RTTVAR, RTO = SRTT + max(10 ms,
//! 4 RTTVAR), at most 1 s). On top: the handshake when the agent asks for
//! one (answered automatically on the client side), pause and start of
//! publication, and `channel_closed`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::codec::{ClientMessage, DecodeError, HeaderLayout, MessageType, PayloadType};
use crate::payload::{
    Acknowledge, ActionStatus, ChannelClosed, HandshakeComplete, HandshakeRequest,
    HandshakeResponse, ProcessedClientAction, RequestedClientAction,
};

/// Which end of the channel this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends `input_stream_data`, receives `output_stream_data`.
    Client,
    /// Sends `output_stream_data`, receives `input_stream_data`.
    Agent,
}

impl Role {
    fn outgoing_type(self) -> MessageType {
        match self {
            Self::Client => MessageType::InputStreamData,
            Self::Agent => MessageType::OutputStreamData,
        }
    }

    fn incoming_type(self) -> MessageType {
        match self {
            Self::Client => MessageType::OutputStreamData,
            Self::Agent => MessageType::InputStreamData,
        }
    }
}

/// Tunables; the defaults are the plugin's.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Largest payload per stream-data message (the plugin and agent use 1024).
    pub max_payload: usize,
    /// Most unacknowledged messages in flight; more wait in a queue.
    pub send_window: usize,
    /// Most out-of-order messages held for reordering.
    pub reorder_capacity: usize,
    /// Retransmission timeout before any round trip was measured.
    pub initial_rto: Duration,
    /// Ceiling of the retransmission timeout computed from round trips.
    pub max_rto: Duration,
    /// Ceiling of the timeout after repeated backoff.
    pub max_backoff_rto: Duration,
    /// Version sent in the handshake response or request.
    pub version: String,
    /// Client: how long input waits for the agent's first word. A current
    /// agent starts with a HandshakeRequest and drops input that arrives
    /// before its handshake completes (acknowledged, never delivered), so
    /// the client holds input until HandshakeComplete, or until the first
    /// output of an agent too old to ask for one. Past this, input goes out
    /// anyway.
    pub input_hold: Duration,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        Self {
            max_payload: 1024,
            send_window: 4096,
            reorder_capacity: 10_000,
            initial_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(1),
            max_backoff_rto: Duration::from_secs(8),
            // Numeric only: the agent compares ClientVersion against
            // thresholds such as "1.1.70" to choose features.
            version: "1.2.0.0".to_owned(),
            // Longer than the agent's own 15 s handshake timeout.
            input_hold: Duration::from_secs(20),
        }
    }
}

/// What the channel tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// In-order stream data (terminal output or input, size, flag, exit code...).
    Data {
        /// What it is.
        payload_type: PayloadType,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Client: the agent asked for a handshake, and it was answered.
    HandshakeRequested {
        /// The session type the agent named (`Standard_Stream`, `NonInteractiveCommands`, `Port`...).
        session_type: Option<String>,
    },
    /// The handshake finished: data may flow.
    HandshakeComplete {
        /// Text for the user, possibly empty.
        customer_message: String,
    },
    /// Agent: the client refused a handshake action; the session should end.
    HandshakeFailed(String),
    /// The far end paused publication: sending stops until it resumes.
    Paused,
    /// The far end resumed publication.
    Resumed,
    /// The session is over.
    Closed(ChannelClosed),
}

#[derive(Debug)]
struct Sent {
    frame: Vec<u8>,
    last_sent: Instant,
    retransmitted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handshake {
    /// None asked for (a plain shell).
    NotStarted,
    /// Agent: request sent, waiting for the response.
    AwaitingResponse { started: Instant },
    /// Client: request answered, waiting for HandshakeComplete.
    Answered,
    /// Finished.
    Complete,
}

/// The `SessionType` handshake action every handshake starts with.
pub fn session_type_action(session_type: &str) -> RequestedClientAction {
    RequestedClientAction {
        action_type: "SessionType".to_owned(),
        action_parameters: serde_json::json!({
            "SessionType": session_type,
            "Properties": serde_json::Value::Null,
        }),
    }
}

/// Round-trip estimator (RFC 6298 gains, as the plugin uses them).
#[derive(Debug, Clone, Copy)]
struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
}

/// Clock granularity term of the RTO.
const CLOCK_GRANULARITY: Duration = Duration::from_millis(10);

impl Rtt {
    fn sample(&mut self, r: Duration, max_rto: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(srtt * 7 / 8 + r / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + CLOCK_GRANULARITY.max(self.rttvar * 4)).min(max_rto);
    }
}

/// One end of a Session Manager data channel.
#[derive(Debug)]
pub struct DataChannel {
    role: Role,
    config: ChannelConfig,
    rng: StdRng,
    epoch: Instant,
    epoch_unix_ms: u64,
    next_seq: i64,
    expected_seq: i64,
    unacked: BTreeMap<i64, Sent>,
    /// (sent at, seq) in sending order; entries for acked or resent messages are stale.
    timers: VecDeque<(Instant, i64)>,
    queued: VecDeque<(PayloadType, Vec<u8>)>,
    reorder: BTreeMap<i64, ClientMessage>,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    rtt: Rtt,
    paused: bool,
    closed: bool,
    handshake: Handshake,
    /// Client: until when input is held back (see [`ChannelConfig::input_hold`]);
    /// `None` once it flows.
    input_held_until: Option<Instant>,
    retransmissions: u64,
}

impl DataChannel {
    /// A channel starting at `now`, which is `unix_ms` on the wall clock
    /// (frames carry creation dates). `seed` makes message ids reproducible.
    pub fn new(role: Role, config: ChannelConfig, now: Instant, unix_ms: u64, seed: u64) -> Self {
        let rto = config.initial_rto;
        let config_hold = config.input_hold;
        Self {
            role,
            config,
            rng: StdRng::seed_from_u64(seed),
            epoch: now,
            epoch_unix_ms: unix_ms,
            next_seq: 0,
            expected_seq: 0,
            unacked: BTreeMap::new(),
            timers: VecDeque::new(),
            queued: VecDeque::new(),
            reorder: BTreeMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            rtt: Rtt {
                srtt: None,
                rttvar: Duration::ZERO,
                rto,
            },
            paused: false,
            closed: false,
            handshake: Handshake::NotStarted,
            input_held_until: (role == Role::Client).then(|| now + config_hold),
            retransmissions: 0,
        }
    }

    /// Queues `data` for the far end, split into messages of at most
    /// `max_payload` bytes. Empty data sends nothing: neither reference end
    /// ever sends an empty stream payload.
    pub fn send(&mut self, payload_type: PayloadType, data: &[u8], now: Instant) {
        if self.closed {
            return;
        }
        for chunk in data.chunks(self.config.max_payload.max(1)) {
            self.queued.push_back((payload_type, chunk.to_vec()));
        }
        self.flush_queue(now);
    }

    /// Messages accepted by [`send`](Self::send) but not yet acknowledged:
    /// what a driver watches to apply back-pressure to its input.
    pub fn backlog(&self) -> usize {
        self.unacked.len() + self.queued.len()
    }

    /// True once `channel_closed` was received or sent.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// True when nothing sent is waiting for an acknowledgement.
    pub fn is_idle(&self) -> bool {
        self.unacked.is_empty() && self.queued.is_empty()
    }

    /// Messages resent so far.
    pub fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto
    }

    /// Agent: asks the client for a handshake with these actions (normally
    /// just [`session_type_action`]).
    pub fn start_handshake(&mut self, actions: Vec<RequestedClientAction>, now: Instant) {
        let request = HandshakeRequest {
            agent_version: self.config.version.clone(),
            requested_client_actions: actions,
        };
        let payload = serde_json::to_vec(&request).unwrap_or_default();
        self.handshake = Handshake::AwaitingResponse { started: now };
        self.send(PayloadType::HANDSHAKE_REQUEST, &payload, now);
    }

    /// Agent: ends the session with `channel_closed` (not acknowledged, not retransmitted).
    pub fn close(&mut self, session_id: &str, output: &str, layout: HeaderLayout, now: Instant) {
        if self.closed {
            return;
        }
        let id = self.new_id();
        let payload = ChannelClosed {
            message_id: id.hyphenated().to_string(),
            created_date: self.unix_ms(now).to_string(),
            destination_id: String::new(),
            session_id: session_id.to_owned(),
            message_type: MessageType::ChannelClosed.as_str().to_owned(),
            schema_version: 1,
            output: output.to_owned(),
        };
        let frame = ClientMessage {
            message_type: MessageType::ChannelClosed,
            schema_version: 1,
            created_date: self.unix_ms(now),
            sequence_number: 0,
            flags: 0,
            message_id: id,
            payload_type: PayloadType::NONE,
            payload: serde_json::to_vec(&payload).unwrap_or_default(),
        };
        self.transmit.push_back(frame.encode_with(layout));
        self.closed = true;
    }

    /// Pause or resume publication towards the far end (an emulator's fault switch).
    pub fn publication(&mut self, start: bool, now: Instant) {
        let message_type = if start {
            MessageType::StartPublication
        } else {
            MessageType::PausePublication
        };
        let frame = self.control_frame(message_type, Vec::new(), now);
        self.transmit.push_back(frame);
    }

    /// Processes one received frame.
    pub fn handle_frame(&mut self, bytes: &[u8], now: Instant) -> Result<(), DecodeError> {
        let message = ClientMessage::decode(bytes)?;
        if self.closed {
            return Ok(());
        }
        match &message.message_type {
            t if *t == self.role.incoming_type() => {
                self.resume_on_traffic(now);
                self.handle_stream_data(message, now);
            }
            MessageType::Acknowledge => {
                self.resume_on_traffic(now);
                self.handle_ack(&message.payload, now);
            }
            MessageType::PausePublication if !self.paused => {
                self.paused = true;
                self.events.push_back(Event::Paused);
            }
            MessageType::StartPublication => self.resume_on_traffic(now),
            MessageType::ChannelClosed => {
                let payload = serde_json::from_slice(&message.payload).unwrap_or_default();
                self.closed = true;
                self.events.push_back(Event::Closed(payload));
            }
            // Our own direction echoed back, or agent-only types: not for us.
            _ => {}
        }
        Ok(())
    }

    /// Retransmits what has waited longer than the RTO, then backs the RTO
    /// off (RFC 6298 5.5): a slow receiver must not be flooded with copies.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.input_held_until.is_some_and(|until| until <= now) {
            self.release_input(now);
        }
        if self.paused || self.closed {
            return;
        }
        let rto = self.rtt.rto;
        let mut resent = false;
        while let Some(&(sent_at, seq)) = self.timers.front() {
            let live = self
                .unacked
                .get(&seq)
                .is_some_and(|s| s.last_sent == sent_at);
            if !live {
                self.timers.pop_front();
                continue;
            }
            if sent_at + rto > now {
                break;
            }
            self.timers.pop_front();
            if let Some(sent) = self.unacked.get_mut(&seq) {
                sent.last_sent = now;
                sent.retransmitted = true;
                self.transmit.push_back(sent.frame.clone());
                self.timers.push_back((now, seq));
                self.retransmissions += 1;
                resent = true;
            }
        }
        if resent {
            self.rtt.rto = (self.rtt.rto * 2).min(self.config.max_backoff_rto);
        }
    }

    /// Resends everything unacknowledged now: after a reconnect, whatever was
    /// in flight on the old socket is presumed lost.
    pub fn retransmit_all(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.timers.clear();
        for (seq, sent) in &mut self.unacked {
            sent.last_sent = now;
            sent.retransmitted = true;
            self.transmit.push_back(sent.frame.clone());
            self.timers.push_back((now, *seq));
            self.retransmissions += 1;
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) next has work.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let hold = self.input_held_until;
        if self.paused {
            return hold;
        }
        let mut resend = None;
        while let Some(&(sent_at, seq)) = self.timers.front() {
            if self
                .unacked
                .get(&seq)
                .is_some_and(|s| s.last_sent == sent_at)
            {
                resend = Some(sent_at + self.rtt.rto);
                break;
            }
            self.timers.pop_front();
        }
        match (resend, hold) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next frame to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event for the owner.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Publication starts again on `start_publication`, or on any stream
    /// data or ack (the agent's rule), and held data goes out.
    fn resume_on_traffic(&mut self, now: Instant) {
        if self.paused {
            self.paused = false;
            self.events.push_back(Event::Resumed);
            self.flush_queue(now);
        }
    }

    fn handle_stream_data(&mut self, message: ClientMessage, now: Instant) {
        let seq = message.sequence_number;
        if seq < self.expected_seq {
            // A duplicate: our ack was lost. Ack again so the peer stops resending.
            self.ack(&message, now);
            return;
        }
        if seq > self.expected_seq {
            if self.reorder.len() < self.config.reorder_capacity || self.reorder.contains_key(&seq)
            {
                self.ack(&message, now);
                self.reorder.insert(seq, message);
            }
            // Otherwise drop it unacknowledged: the peer will resend.
            return;
        }
        self.ack(&message, now);
        self.deliver(message, now);
        self.expected_seq += 1;
        while let Some(next) = self.reorder.remove(&self.expected_seq) {
            self.deliver(next, now);
            self.expected_seq += 1;
        }
    }

    fn deliver(&mut self, message: ClientMessage, now: Instant) {
        let pt = message.payload_type;
        match (self.role, pt) {
            (Role::Client, PayloadType::HANDSHAKE_REQUEST) => {
                self.answer_handshake(&message.payload, now)
            }
            (Role::Client, PayloadType::HANDSHAKE_COMPLETE) => {
                let done: Option<HandshakeComplete> = serde_json::from_slice(&message.payload).ok();
                self.handshake = Handshake::Complete;
                self.release_input(now);
                self.events.push_back(Event::HandshakeComplete {
                    customer_message: done.map(|d| d.customer_message).unwrap_or_default(),
                });
            }
            (Role::Agent, PayloadType::HANDSHAKE_RESPONSE) => {
                self.finish_handshake(&message.payload, now)
            }
            // The agent discards input while its handshake is in progress.
            (Role::Agent, _) if matches!(self.handshake, Handshake::AwaitingResponse { .. }) => {}
            _ => {
                // Output before any handshake: an agent that does not ask for one.
                if self.role == Role::Client && self.handshake == Handshake::NotStarted {
                    self.release_input(now);
                }
                self.events.push_back(Event::Data {
                    payload_type: pt,
                    data: message.payload,
                });
            }
        }
    }

    /// Client: lets held input flow.
    fn release_input(&mut self, now: Instant) {
        if self.input_held_until.take().is_some() {
            self.flush_queue(now);
        }
    }

    /// Client: true while input waits for the agent's handshake.
    pub fn input_held(&self) -> bool {
        self.input_held_until.is_some()
    }

    /// Client: agree to the session type, decline encryption (no KMS support).
    fn answer_handshake(&mut self, payload: &[u8], now: Instant) {
        let request: Option<HandshakeRequest> = serde_json::from_slice(payload).ok();
        let actions = request
            .map(|r| r.requested_client_actions)
            .unwrap_or_default();
        let mut session_type = None;
        let processed = actions
            .iter()
            .map(|a| {
                let (status, error) = match a.action_type.as_str() {
                    "SessionType" => {
                        session_type = a
                            .action_parameters
                            .get("SessionType")
                            .and_then(|v| v.as_str())
                            .map(str::to_owned);
                        (ActionStatus::Success, String::new())
                    }
                    "KMSEncryption" => (
                        ActionStatus::Failed,
                        "KMS-encrypted sessions are not supported by this client".to_owned(),
                    ),
                    other => (
                        ActionStatus::Unsupported,
                        format!("unsupported action {other}"),
                    ),
                };
                ProcessedClientAction {
                    action_type: a.action_type.clone(),
                    action_status: status,
                    action_result: serde_json::Value::Null,
                    error,
                }
            })
            .collect();
        let response = HandshakeResponse {
            client_version: self.config.version.clone(),
            processed_client_actions: processed,
            errors: None,
        };
        self.handshake = Handshake::Answered;
        self.events
            .push_back(Event::HandshakeRequested { session_type });
        let bytes = serde_json::to_vec(&response).unwrap_or_default();
        self.send(PayloadType::HANDSHAKE_RESPONSE, &bytes, now);
    }

    /// Agent: every action must have succeeded.
    fn finish_handshake(&mut self, payload: &[u8], now: Instant) {
        let Handshake::AwaitingResponse { started } = self.handshake else {
            return;
        };
        let response: Result<HandshakeResponse, _> = serde_json::from_slice(payload);
        let failure = match response {
            Err(e) => Some(format!("unreadable handshake response: {e}")),
            Ok(r) => r
                .processed_client_actions
                .iter()
                .find(|a| a.action_status != ActionStatus::Success)
                .map(|a| format!("client refused {}: {}", a.action_type, a.error)),
        };
        if let Some(reason) = failure {
            self.events.push_back(Event::HandshakeFailed(reason));
            return;
        }
        self.handshake = Handshake::Complete;
        let done = HandshakeComplete {
            handshake_time_to_complete: u64::try_from(
                now.saturating_duration_since(started).as_nanos(),
            )
            .unwrap_or(u64::MAX),
            customer_message: String::new(),
        };
        let bytes = serde_json::to_vec(&done).unwrap_or_default();
        self.send(PayloadType::HANDSHAKE_COMPLETE, &bytes, now);
        self.events.push_back(Event::HandshakeComplete {
            customer_message: String::new(),
        });
    }

    fn handle_ack(&mut self, payload: &[u8], now: Instant) {
        let Ok(ack) = serde_json::from_slice::<Acknowledge>(payload) else {
            return;
        };
        if let Some(sent) = self
            .unacked
            .remove(&ack.acknowledged_message_sequence_number)
        {
            // Karn: a resent message's ack cannot tell which copy it answers.
            if !sent.retransmitted {
                self.rtt.sample(
                    now.saturating_duration_since(sent.last_sent),
                    self.config.max_rto,
                );
            }
        }
        self.flush_queue(now);
    }

    fn ack(&mut self, message: &ClientMessage, now: Instant) {
        let ack = Acknowledge::of(
            &message.message_type,
            message.message_id,
            message.sequence_number,
        );
        let payload = serde_json::to_vec(&ack).unwrap_or_default();
        let frame = self.control_frame(MessageType::Acknowledge, payload, now);
        self.transmit.push_back(frame);
    }

    /// Moves queued data into flight while the window has room.
    fn flush_queue(&mut self, now: Instant) {
        if self.paused {
            return;
        }
        while self.unacked.len() < self.config.send_window {
            // Held input waits; the handshake's own answer goes first
            // (sequence numbers are given here, so it may overtake).
            let next = match self.input_held_until {
                None => self.queued.pop_front(),
                Some(_) => self
                    .queued
                    .iter()
                    .position(|(t, _)| *t == PayloadType::HANDSHAKE_RESPONSE)
                    .and_then(|at| self.queued.remove(at)),
            };
            let Some((payload_type, payload)) = next else {
                break;
            };
            let seq = self.next_seq;
            self.next_seq += 1;
            let message = ClientMessage {
                message_type: self.role.outgoing_type(),
                schema_version: 1,
                created_date: self.unix_ms(now),
                sequence_number: seq,
                // The agent marks its first message SYN; the plugin sends 0 throughout.
                flags: u64::from(seq == 0 && self.role == Role::Agent),
                message_id: self.new_id(),
                payload_type,
                payload,
            };
            let frame = message.encode();
            self.transmit.push_back(frame.clone());
            self.unacked.insert(
                seq,
                Sent {
                    frame,
                    last_sent: now,
                    retransmitted: false,
                },
            );
            self.timers.push_back((now, seq));
        }
    }

    /// Acks and publication messages: sequence 0, flags 3 (SYN|FIN), as both references send.
    fn control_frame(
        &mut self,
        message_type: MessageType,
        payload: Vec<u8>,
        now: Instant,
    ) -> Vec<u8> {
        ClientMessage {
            message_type,
            schema_version: 1,
            created_date: self.unix_ms(now),
            sequence_number: 0,
            flags: 3,
            message_id: self.new_id(),
            payload_type: PayloadType::NONE,
            payload,
        }
        .encode()
    }

    fn new_id(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid()
    }

    fn unix_ms(&self, now: Instant) -> u64 {
        let elapsed = u64::try_from(now.saturating_duration_since(self.epoch).as_millis())
            .unwrap_or(u64::MAX);
        self.epoch_unix_ms.saturating_add(elapsed)
    }
}
