//! The ClientMessage binary frame: encode and decode, no I/O.
//!
//! Layout (all integers big-endian), as the Session Manager plugin and agent
//! write it:
//!
//! | offset | len | field |
//! |---:|---:|---|
//! | 0 | 4 | HeaderLength (116: the offset of PayloadLength) |
//! | 4 | 32 | MessageType, ASCII, padded with spaces |
//! | 36 | 4 | SchemaVersion (1) |
//! | 40 | 8 | CreatedDate, Unix milliseconds |
//! | 48 | 8 | SequenceNumber |
//! | 56 | 8 | Flags |
//! | 64 | 16 | MessageId: the UUID's low 8 bytes, then its high 8 bytes |
//! | 80 | 32 | PayloadDigest: SHA-256 of the payload |
//! | 112 | 4 | PayloadType |
//! | 116 | 4 | PayloadLength |
//! | 120 | n | Payload |
//!
//! Receivers must be lenient where the far end is: the payload is found
//! through HeaderLength, not a fixed offset, because the service's
//! `channel_closed` has HeaderLength 112 and no PayloadType; the type may be
//! padded with NULs instead of spaces, on either side; digests are not checked
//! on publication control messages or empty payloads.

use std::fmt;

use aws_lc_rs::digest;
use uuid::Uuid;

/// HeaderLength of every frame we write: the offset of PayloadLength.
pub const HEADER_LENGTH: u32 = 116;
/// HeaderLength of the service's `channel_closed`, which has no PayloadType.
pub const SHORT_HEADER_LENGTH: u32 = 112;
/// Bytes before the payload in a standard frame.
pub const FRAME_OVERHEAD: usize = 120;
/// Width of the MessageType field.
const TYPE_FIELD_LEN: usize = 32;
/// The largest HeaderLength accepted: the header is fixed, so anything much
/// larger is garbage, and refusing it bounds what a peer can make us skip.
const MAX_HEADER_LENGTH: u32 = 1024;

/// The kind of a frame, from its MessageType field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageType {
    /// Sequenced data from client to agent.
    InputStreamData,
    /// Sequenced data from agent to client.
    OutputStreamData,
    /// Acknowledges one stream-data message.
    Acknowledge,
    /// The session is over.
    ChannelClosed,
    /// The far end is active again.
    StartPublication,
    /// The far end is inactive: stop sending.
    PausePublication,
    /// A type this crate does not handle (the service has agent-only ones).
    Other(String),
}

impl MessageType {
    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        match self {
            Self::InputStreamData => "input_stream_data",
            Self::OutputStreamData => "output_stream_data",
            Self::Acknowledge => "acknowledge",
            Self::ChannelClosed => "channel_closed",
            Self::StartPublication => "start_publication",
            Self::PausePublication => "pause_publication",
            Self::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "input_stream_data" => Self::InputStreamData,
            "output_stream_data" => Self::OutputStreamData,
            "acknowledge" => Self::Acknowledge,
            "channel_closed" => Self::ChannelClosed,
            "start_publication" => Self::StartPublication,
            "pause_publication" => Self::PausePublication,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Stream data is sequenced, acknowledged and retransmitted.
    pub fn is_stream_data(&self) -> bool {
        matches!(self, Self::InputStreamData | Self::OutputStreamData)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a stream-data payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadType(pub u32);

impl PayloadType {
    /// Unset (acknowledgements).
    pub const NONE: Self = Self(0);
    /// Terminal or socket bytes: stdin one way, stdout the other.
    pub const OUTPUT: Self = Self(1);
    /// Error text.
    pub const ERROR: Self = Self(2);
    /// Terminal size JSON `{"cols":..,"rows":..}`.
    pub const SIZE: Self = Self(3);
    /// Parameters (unused).
    pub const PARAMETER: Self = Self(4);
    /// Agent's handshake request JSON.
    pub const HANDSHAKE_REQUEST: Self = Self(5);
    /// Client's handshake response JSON.
    pub const HANDSHAKE_RESPONSE: Self = Self(6);
    /// Agent's handshake completion JSON.
    pub const HANDSHAKE_COMPLETE: Self = Self(7);
    /// KMS challenge from the agent.
    pub const ENC_CHALLENGE_REQUEST: Self = Self(8);
    /// KMS challenge answer from the client.
    pub const ENC_CHALLENGE_RESPONSE: Self = Self(9);
    /// A 4-byte big-endian [`Flag`](crate::payload::Flag).
    pub const FLAG: Self = Self(10);
    /// Standard error of a non-interactive command.
    pub const STDERR: Self = Self(11);
    /// `EXIT_CODE: <n>` of a non-interactive command.
    pub const EXIT_CODE: Self = Self(12);
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// What kind of frame this is.
    pub message_type: MessageType,
    /// Always 1.
    pub schema_version: u32,
    /// Unix milliseconds when it was made.
    pub created_date: u64,
    /// Position in its direction's stream (stream data only; 0 otherwise).
    pub sequence_number: i64,
    /// Bit 0 SYN (first message), bit 1 FIN; informational only.
    pub flags: u64,
    /// Unique id.
    pub message_id: Uuid,
    /// What the payload holds.
    pub payload_type: PayloadType,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the header needs.
    #[error("frame of {len} bytes is shorter than its header ({needed} bytes)")]
    Truncated {
        /// Bytes received.
        len: usize,
        /// Bytes the header says are needed.
        needed: usize,
    },
    /// HeaderLength outside what any sender writes.
    #[error("header length {0} is not between 112 and 1024")]
    BadHeaderLength(u32),
    /// The MessageType is not text or is empty.
    #[error("message type is empty or not ASCII")]
    BadMessageType,
    /// PayloadLength claims more bytes than the frame has.
    #[error("payload length {claimed} exceeds the {available} bytes left in the frame")]
    PayloadOverrun {
        /// PayloadLength field.
        claimed: u32,
        /// Bytes after it.
        available: usize,
    },
    /// The payload does not match its SHA-256 digest.
    #[error("payload digest mismatch on {0} message")]
    DigestMismatch(MessageType),
}

/// How to lay out the header when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderLayout {
    /// HeaderLength 116, space-padded type: what the plugin and agent write.
    #[default]
    Standard,
    /// HeaderLength 112, no PayloadType, NUL-padded type: the service's
    /// `channel_closed`, reproduced so clients can be tested against it.
    ShortNulPadded,
}

impl ClientMessage {
    /// Encodes with the standard layout.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(HeaderLayout::Standard)
    }

    /// Encodes with the given layout.
    pub fn encode_with(&self, layout: HeaderLayout) -> Vec<u8> {
        let (header_length, pad) = match layout {
            HeaderLayout::Standard => (HEADER_LENGTH, b' '),
            HeaderLayout::ShortNulPadded => (SHORT_HEADER_LENGTH, 0),
        };
        let mut out = Vec::with_capacity(FRAME_OVERHEAD + self.payload.len());
        out.extend_from_slice(&header_length.to_be_bytes());
        let mut type_field = [pad; TYPE_FIELD_LEN];
        let name = self.message_type.as_str().as_bytes();
        let n = name.len().min(TYPE_FIELD_LEN);
        type_field[..n].copy_from_slice(&name[..n]);
        out.extend_from_slice(&type_field);
        out.extend_from_slice(&self.schema_version.to_be_bytes());
        out.extend_from_slice(&self.created_date.to_be_bytes());
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        let id = self.message_id.as_bytes();
        // The plugin writes the UUID's second half first (Java's lsb, msb).
        out.extend_from_slice(&id[8..]);
        out.extend_from_slice(&id[..8]);
        out.extend_from_slice(sha256(&self.payload).as_ref());
        if layout == HeaderLayout::Standard {
            out.extend_from_slice(&self.payload_type.0.to_be_bytes());
        }
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// Decodes one frame, checking the digest where the reference client does:
    /// stream data and acknowledgements with a non-empty payload.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let header_length = read_u32(bytes, 0)?;
        if !(SHORT_HEADER_LENGTH..=MAX_HEADER_LENGTH).contains(&header_length) {
            return Err(DecodeError::BadHeaderLength(header_length));
        }
        let hl = header_length as usize;
        if bytes.len() < hl + 4 {
            return Err(DecodeError::Truncated {
                len: bytes.len(),
                needed: hl + 4,
            });
        }
        let raw_type = &bytes[4..4 + TYPE_FIELD_LEN];
        let name = std::str::from_utf8(raw_type)
            .map_err(|_| DecodeError::BadMessageType)?
            .trim_matches(|c| c == '\0' || c == ' ');
        if name.is_empty() || !name.is_ascii() {
            return Err(DecodeError::BadMessageType);
        }
        let message_type = MessageType::parse(name);
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&bytes[72..80]);
        id[8..].copy_from_slice(&bytes[64..72]);
        let digest = &bytes[80..112];
        // With the short header there is no PayloadType field.
        let payload_type = if hl >= 116 {
            PayloadType(read_u32(bytes, 112)?)
        } else {
            PayloadType::NONE
        };
        let claimed = read_u32(bytes, hl)?;
        let available = bytes.len() - (hl + 4);
        if claimed as usize > available {
            return Err(DecodeError::PayloadOverrun { claimed, available });
        }
        let payload = bytes[hl + 4..hl + 4 + claimed as usize].to_vec();
        let checked = matches!(
            message_type,
            MessageType::InputStreamData | MessageType::OutputStreamData | MessageType::Acknowledge
        );
        if checked && !payload.is_empty() && sha256(&payload).as_ref() != digest {
            return Err(DecodeError::DigestMismatch(message_type));
        }
        Ok(Self {
            message_type,
            schema_version: read_u32(bytes, 36)?,
            created_date: read_u64(bytes, 40)?,
            sequence_number: read_u64(bytes, 48)? as i64,
            flags: read_u64(bytes, 56)?,
            message_id: Uuid::from_bytes(id),
            payload_type,
            payload,
        })
    }
}

fn sha256(data: &[u8]) -> digest::Digest {
    digest::digest(&digest::SHA256, data)
}

fn read_u32(bytes: &[u8], at: usize) -> Result<u32, DecodeError> {
    bytes
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(DecodeError::Truncated {
            len: bytes.len(),
            needed: at + 4,
        })
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, DecodeError> {
    bytes
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(DecodeError::Truncated {
            len: bytes.len(),
            needed: at + 8,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn golden_message() -> ClientMessage {
        ClientMessage {
            message_type: MessageType::InputStreamData,
            schema_version: 1,
            created_date: 1_503_434_274_948,
            sequence_number: 0,
            flags: 0,
            message_id: Uuid::parse_str("dd01e56b-ff48-483e-a508-b5f073f31b16").unwrap(),
            payload_type: PayloadType::SIZE,
            payload: br#"{"cols":80,"rows":24}"#.to_vec(),
        }
    }

    /// The reference's golden frame: input_stream_data, size payload.
    const GOLDEN: &str = "\
        00000074696e7075745f73747265616d\
        5f646174612020202020202020202020\
        2020202000000001 0000015e0baa7884\
        00000000000000000000000000000000\
        a508b5f073f31b16dd01e56bff48483e\
        d53ca1ea7dce87c11432052a8550ed26\
        15cf715ca843c89710ed83325b691cba\
        0000000300000015 7b22636f6c73223a\
        38302c22726f7773223a32347d";

    fn golden_bytes() -> Vec<u8> {
        hex::decode(GOLDEN.replace(' ', "")).unwrap()
    }

    #[test]
    fn encodes_the_golden_frame() {
        assert_eq!(
            hex::encode(golden_message().encode()),
            hex::encode(golden_bytes())
        );
    }

    #[test]
    fn decodes_the_golden_frame() {
        assert_eq!(
            ClientMessage::decode(&golden_bytes()).unwrap(),
            golden_message()
        );
    }

    #[test]
    fn golden_terminate_flag_frame() {
        let msg = ClientMessage {
            sequence_number: 7,
            payload_type: PayloadType::FLAG,
            payload: vec![0, 0, 0, 2],
            ..golden_message()
        };
        let bytes = msg.encode();
        assert_eq!(&bytes[0x30..0x38], &[0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(hex::encode(&bytes[80..84]), "433ebf5b");
        assert_eq!(hex::encode(&bytes[108..112]), "db12cf1a");
        assert_eq!(hex::encode(&bytes[112..]), "0000000a0000000400000002");
    }

    #[test]
    fn message_id_halves_are_swapped_on_the_wire() {
        let bytes = golden_message().encode();
        assert_eq!(
            hex::encode(&bytes[64..80]),
            "a508b5f073f31b16dd01e56bff48483e"
        );
    }

    #[test]
    fn short_nul_padded_channel_closed_round_trips() {
        let msg = ClientMessage {
            message_type: MessageType::ChannelClosed,
            payload_type: PayloadType::NONE,
            payload: br#"{"SessionId":"s","Output":"bye"}"#.to_vec(),
            ..golden_message()
        };
        let bytes = msg.encode_with(HeaderLayout::ShortNulPadded);
        assert_eq!(&bytes[..4], &[0, 0, 0, 112]);
        assert_eq!(bytes[4 + "channel_closed".len()], 0, "NUL padding");
        assert_eq!(bytes.len(), 116 + msg.payload.len());
        assert_eq!(ClientMessage::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn type_padding_is_trimmed_on_both_sides() {
        let mut bytes = golden_bytes();
        // Right-aligned with leading NULs, as one JavaScript client writes it.
        let name = b"input_stream_data";
        let field = &mut bytes[4..36];
        field.fill(0);
        field[32 - name.len()..].copy_from_slice(name);
        assert_eq!(
            ClientMessage::decode(&bytes).unwrap().message_type,
            MessageType::InputStreamData
        );
    }

    #[test]
    fn corrupted_stream_payload_is_refused() {
        let mut bytes = golden_bytes();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(
            ClientMessage::decode(&bytes),
            Err(DecodeError::DigestMismatch(MessageType::InputStreamData))
        );
    }

    #[test]
    fn publication_messages_skip_the_digest_check() {
        let msg = ClientMessage {
            message_type: MessageType::PausePublication,
            payload: b"x".to_vec(),
            ..golden_message()
        };
        let mut bytes = msg.encode();
        bytes[80..112].fill(0);
        assert!(ClientMessage::decode(&bytes).is_ok());
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let good = golden_bytes();
        for len in 0..good.len() {
            let r = ClientMessage::decode(&good[..len]);
            assert!(r.is_err(), "a {len}-byte prefix must not decode");
        }
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            ClientMessage::decode(&huge),
            Err(DecodeError::BadHeaderLength(u32::MAX))
        );
        let mut over = good.clone();
        over[116..120].copy_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(
            ClientMessage::decode(&over),
            Err(DecodeError::PayloadOverrun { .. })
        ));
        let mut blank = good;
        blank[4..36].fill(b' ');
        assert_eq!(
            ClientMessage::decode(&blank),
            Err(DecodeError::BadMessageType)
        );
    }
}
