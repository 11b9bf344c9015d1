//! Well-formed frames with arbitrary contents (types, sequence numbers,
//! payload types, payloads: acks with odd JSON, handshakes, huge jumps) fed
//! to both ends of a data channel, with time moving: no panic, ever.
#![no_main]

use std::time::{Duration, Instant};

use cloudshell_ssm::channel::{ChannelConfig, DataChannel, Role};
use cloudshell_ssm::codec::{ClientMessage, MessageType, PayloadType};
use libfuzzer_sys::fuzz_target;

const TYPES: [MessageType; 6] = [
    MessageType::InputStreamData,
    MessageType::OutputStreamData,
    MessageType::Acknowledge,
    MessageType::ChannelClosed,
    MessageType::StartPublication,
    MessageType::PausePublication,
];

fuzz_target!(|data: &[u8]| {
    let start = Instant::now();
    for role in [Role::Client, Role::Agent] {
        let mut channel = DataChannel::new(role, ChannelConfig::default(), start, 0, 1);
        channel.send(PayloadType::OUTPUT, b"some data in flight", start);
        let mut now = start;
        // Each chunk between 0xFE bytes is one frame: type, sequence number,
        // payload type, delay, then the payload.
        for chunk in data.split(|b| *b == 0xfe) {
            let [t, s0, s1, pt, delay, payload @ ..] = chunk else { continue };
            let frame = ClientMessage {
                message_type: TYPES[usize::from(*t) % TYPES.len()].clone(),
                schema_version: 1,
                created_date: 1,
                sequence_number: i64::from(i16::from_be_bytes([*s0, *s1])),
                flags: 0,
                message_id: uuid::Uuid::nil(),
                payload_type: PayloadType(u32::from(*pt % 14)),
                payload: payload.to_vec(),
            };
            now += Duration::from_millis(u64::from(*delay) * 7);
            let _ = channel.handle_frame(&frame.encode(), now);
            channel.handle_timeout(now);
            if *delay % 5 == 0 {
                channel.send(PayloadType::OUTPUT, payload, now);
            }
            while channel.poll_transmit().is_some() {}
            while channel.poll_event().is_some() {}
        }
    }
});
