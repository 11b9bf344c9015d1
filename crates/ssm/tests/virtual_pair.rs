//! A client and an agent state machine connected by a simulated network on a
//! virtual clock: loss, duplication, reordering and delay, all seeded.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

use std::time::{Duration, Instant};

use cloudshell_ssm::channel::{ChannelConfig, DataChannel, Event, Role, session_type_action};
use cloudshell_ssm::codec::{HeaderLayout, PayloadType};
use cloudshell_ssm::payload::RequestedClientAction;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One direction of the network.
struct Link {
    rng: StdRng,
    loss: f64,
    duplicate: f64,
    delay: Duration,
    jitter: Duration,
    in_flight: Vec<(Instant, Vec<u8>)>,
    sent: u64,
}

impl Link {
    fn new(seed: u64, loss: f64, duplicate: f64, delay: Duration, jitter: Duration) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            loss,
            duplicate,
            delay,
            jitter,
            in_flight: Vec::new(),
            sent: 0,
        }
    }

    fn push(&mut self, frame: Vec<u8>, now: Instant) {
        self.sent += 1;
        if self.rng.random_bool(self.loss) {
            return;
        }
        let copies = if self.rng.random_bool(self.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter = self.jitter.mul_f64(self.rng.random::<f64>());
            self.in_flight
                .push((now + self.delay + jitter, frame.clone()));
        }
    }

    fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.iter().map(|(t, _)| *t).min()
    }

    fn arrivals(&mut self, now: Instant) -> Vec<Vec<u8>> {
        let mut ready: Vec<_> = Vec::new();
        let mut i = 0;
        while i < self.in_flight.len() {
            if self.in_flight[i].0 <= now {
                ready.push(self.in_flight.swap_remove(i));
            } else {
                i += 1;
            }
        }
        ready.sort_by_key(|(t, _)| *t);
        ready.into_iter().map(|(_, f)| f).collect()
    }
}

struct Pair {
    now: Instant,
    client: DataChannel,
    agent: DataChannel,
    to_agent: Link,
    to_client: Link,
    client_events: Vec<Event>,
    agent_events: Vec<Event>,
}

impl Pair {
    fn new(seed: u64, loss: f64, duplicate: f64, delay: Duration, jitter: Duration) -> Self {
        let now = Instant::now();
        let config = ChannelConfig::default();
        Self {
            now,
            client: DataChannel::new(Role::Client, config.clone(), now, 1_700_000_000_000, seed),
            agent: DataChannel::new(Role::Agent, config, now, 1_700_000_000_000, seed + 1),
            to_agent: Link::new(seed + 2, loss, duplicate, delay, jitter),
            to_client: Link::new(seed + 3, loss, duplicate, delay, jitter),
            client_events: Vec::new(),
            agent_events: Vec::new(),
        }
    }

    fn perfect() -> Self {
        Self::new(1, 0.0, 0.0, Duration::from_millis(5), Duration::ZERO)
    }

    /// Moves frames and time until `done` holds or the step budget runs out.
    fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..2_000_000 {
            while let Some(f) = self.client.poll_transmit() {
                self.to_agent.push(f, self.now);
            }
            while let Some(f) = self.agent.poll_transmit() {
                self.to_client.push(f, self.now);
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.agent.poll_event() {
                self.agent_events.push(e);
            }
            if done(self) {
                return;
            }
            let next = [
                self.to_agent.next_arrival(),
                self.to_client.next_arrival(),
                self.client.poll_timeout(),
                self.agent.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min()
            .expect("nothing left to happen, but not done");
            self.now = self.now.max(next);
            for f in self.to_agent.arrivals(self.now) {
                self.agent.handle_frame(&f, self.now).unwrap();
            }
            for f in self.to_client.arrivals(self.now) {
                self.client.handle_frame(&f, self.now).unwrap();
            }
            self.client.handle_timeout(self.now);
            self.agent.handle_timeout(self.now);
        }
        panic!("did not finish");
    }
}

fn data_of(events: &[Event], pt: PayloadType) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Data { payload_type, data } if *payload_type == pt => Some(data.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

fn transfer_both_ways(pair: &mut Pair, len: usize) {
    let up = pattern(len, 10);
    let down = pattern(len, 11);
    let now = pair.now;
    pair.client.send(PayloadType::OUTPUT, &up, now);
    pair.agent.send(PayloadType::OUTPUT, &down, now);
    pair.run_until(|p| {
        p.client.is_idle()
            && p.agent.is_idle()
            && data_of(&p.agent_events, PayloadType::OUTPUT).len() == len
            && data_of(&p.client_events, PayloadType::OUTPUT).len() == len
    });
    assert_eq!(
        data_of(&pair.agent_events, PayloadType::OUTPUT),
        up,
        "client -> agent"
    );
    assert_eq!(
        data_of(&pair.client_events, PayloadType::OUTPUT),
        down,
        "agent -> client"
    );
}

#[test]
fn perfect_network_delivers_in_order_without_resends() {
    let mut pair = Pair::perfect();
    transfer_both_ways(&mut pair, 100_000);
    assert_eq!(pair.client.retransmissions(), 0);
    assert_eq!(pair.agent.retransmissions(), 0);
    // 98 messages of at most 1024 bytes each way, plus one ack per message.
    assert_eq!(pair.to_agent.sent, 98 * 2);
}

#[test]
fn loss_duplication_and_reordering_lose_nothing() {
    for (seed, loss) in [(100, 0.05), (200, 0.2), (300, 0.4)] {
        let mut pair = Pair::new(
            seed,
            loss,
            0.1,
            Duration::from_millis(20),
            Duration::from_millis(30),
        );
        transfer_both_ways(&mut pair, 300_000);
        assert!(
            pair.client.retransmissions() > 0,
            "loss {loss} must cause resends"
        );
    }
}

#[test]
fn a_megabyte_through_a_lossy_slow_link() {
    let mut pair = Pair::new(
        7,
        0.1,
        0.05,
        Duration::from_millis(80),
        Duration::from_millis(40),
    );
    transfer_both_ways(&mut pair, 1 << 20);
}

#[test]
fn rto_follows_the_round_trip() {
    let mut pair = Pair::new(3, 0.0, 0.0, Duration::from_millis(50), Duration::ZERO);
    transfer_both_ways(&mut pair, 20_000);
    let rto = pair.client.rto();
    // RTT is 100 ms; RTO = SRTT + max(10 ms, 4 RTTVAR) converges towards it.
    assert!(
        rto >= Duration::from_millis(100) && rto < Duration::from_millis(200),
        "{rto:?}"
    );
}

#[test]
fn duplicates_are_delivered_once_and_re_acknowledged() {
    let mut pair = Pair::new(5, 0.0, 1.0, Duration::from_millis(5), Duration::ZERO);
    transfer_both_ways(&mut pair, 10_000);
    assert_eq!(pair.client.retransmissions(), 0);
}

#[test]
fn handshake_then_data() {
    let mut pair = Pair::perfect();
    let now = pair.now;
    pair.agent
        .start_handshake(vec![session_type_action("NonInteractiveCommands")], now);
    pair.run_until(|p| {
        p.agent_events
            .iter()
            .any(|e| matches!(e, Event::HandshakeComplete { .. }))
    });
    pair.run_until(|p| {
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::HandshakeComplete { .. }))
    });
    assert!(pair.client_events.contains(&Event::HandshakeRequested {
        session_type: Some("NonInteractiveCommands".into())
    }));
    transfer_both_ways(&mut pair, 5_000);
}

#[test]
fn input_typed_before_the_handshake_waits_for_it_and_is_not_lost() {
    let mut pair = Pair::perfect();
    let now = pair.now;
    // The client types at once, as `exec` does; the agent asks for a handshake.
    pair.client.send(PayloadType::OUTPUT, b"echo hi\r", now);
    assert!(
        pair.client.poll_transmit().is_none(),
        "input waits for the agent's first word"
    );
    pair.agent
        .start_handshake(vec![session_type_action("Standard_Stream")], now);
    pair.run_until(|p| data_of(&p.agent_events, PayloadType::OUTPUT) == b"echo hi\r");
    // The agent delivered it after the handshake, not dropped it during.
    let complete = pair
        .agent_events
        .iter()
        .position(|e| matches!(e, Event::HandshakeComplete { .. }))
        .expect("handshake completed");
    let data = pair
        .agent_events
        .iter()
        .position(|e| matches!(e, Event::Data { .. }))
        .unwrap();
    assert!(complete < data, "{:?}", pair.agent_events);
}

#[test]
fn input_flows_after_an_old_agents_first_output_or_after_the_hold() {
    // An agent that never asks for a handshake: its prompt opens the gate.
    let mut pair = Pair::perfect();
    let now = pair.now;
    pair.client.send(PayloadType::OUTPUT, b"ls\r", now);
    pair.agent.send(PayloadType::OUTPUT, b"$ ", now);
    pair.run_until(|p| data_of(&p.agent_events, PayloadType::OUTPUT) == b"ls\r");
    assert!(
        pair.now < now + Duration::from_secs(1),
        "no wait for the hold"
    );

    // An agent that says nothing at all: input goes out once the hold is over.
    let mut pair = Pair::perfect();
    let now = pair.now;
    pair.client.send(PayloadType::OUTPUT, b"ls\r", now);
    let hold = ChannelConfig::default().input_hold;
    assert_eq!(pair.client.poll_timeout(), Some(now + hold));
    pair.run_until(|p| data_of(&p.agent_events, PayloadType::OUTPUT) == b"ls\r");
    assert!(pair.now >= now + hold);
}

#[test]
fn kms_handshake_is_declined_and_fails_cleanly() {
    let mut pair = Pair::perfect();
    let kms = RequestedClientAction {
        action_type: "KMSEncryption".into(),
        action_parameters: serde_json::json!({"KMSKeyId": "arn:aws:kms:us-east-1:1:key/x"}),
    };
    let now = pair.now;
    pair.agent
        .start_handshake(vec![session_type_action("Standard_Stream"), kms], now);
    pair.run_until(|p| !p.agent_events.is_empty());
    assert_eq!(
        pair.agent_events,
        vec![Event::HandshakeFailed(
            "client refused KMSEncryption: KMS-encrypted sessions are not supported by this client"
                .into()
        )]
    );
}

#[test]
fn pause_stops_sending_until_resumed() {
    let mut pair = Pair::perfect();
    let now = pair.now;
    // The shell's prompt: an agent without a handshake, so input may flow.
    pair.agent.send(PayloadType::OUTPUT, b"$ ", now);
    pair.run_until(|p| !p.client.input_held());
    let now = pair.now;
    pair.agent.publication(false, now);
    pair.run_until(|p| p.client_events.contains(&Event::Paused));
    let now = pair.now;
    pair.client.send(PayloadType::OUTPUT, b"held", now);
    assert!(
        pair.client.poll_transmit().is_none(),
        "nothing leaves while paused"
    );
    assert_eq!(pair.client.poll_timeout(), None);
    pair.agent.publication(true, now);
    pair.run_until(|p| data_of(&p.agent_events, PayloadType::OUTPUT) == b"held");
    assert!(pair.client_events.contains(&Event::Resumed));
}

#[test]
fn close_reaches_the_client_in_both_layouts() {
    for layout in [HeaderLayout::Standard, HeaderLayout::ShortNulPadded] {
        let mut pair = Pair::perfect();
        let now = pair.now;
        pair.agent
            .send(PayloadType::EXIT_CODE, b"EXIT_CODE: 3", now);
        pair.run_until(|p| p.agent.is_idle());
        let now = pair.now;
        pair.agent.close("sess-1", "bye", layout, now);
        pair.run_until(|p| p.client.is_closed());
        let Some(Event::Closed(closed)) = pair.client_events.last() else {
            panic!("{:?}", pair.client_events)
        };
        assert_eq!(closed.session_id, "sess-1");
        assert_eq!(closed.output, "bye");
        assert_eq!(
            data_of(&pair.client_events, PayloadType::EXIT_CODE),
            b"EXIT_CODE: 3"
        );
    }
}

#[test]
fn garbage_frames_are_errors_and_change_nothing() {
    let mut pair = Pair::perfect();
    let now = pair.now;
    assert!(pair.client.handle_frame(b"", now).is_err());
    assert!(pair.client.handle_frame(&[0xff; 200], now).is_err());
    transfer_both_ways(&mut pair, 2_000);
}
