//! The AWS Session Manager data-channel protocol, spoken natively.
//!
//! CloudShell's `CreateSession` (like SSM's `StartSession`) returns a
//! WebSocket `StreamUrl` and a `TokenValue`; the shell runs over that socket
//! as a stream of binary `ClientMessage` frames with sequence numbers,
//! acknowledgements and retransmission. This crate implements it without
//! AWS's `session-manager-plugin`:
//!
//! - [`codec`]: frames to and from bytes ([`ClientMessage`]), no I/O.
//! - [`payload`]: the JSON and binary payloads (acknowledgements, handshake,
//!   terminal size, flags, exit codes, `channel_closed`).
//! - [`channel`]: the sans-IO data channel (acknowledgements, retransmission,
//!   ordering); [`driver`] runs it over a WebSocket.
//! - [`exec`]: one command through an interactive shell, byte-exact, with
//!   its exit status; [`transfer`]: file and tree copies on top of it, with
//!   SHA-256 checked on both ends, temporary names and resume.
//!
//! The byte layout follows the reference notes in `shared/reference/ssm-protocol.md`
//! and is pinned by golden frames in the tests.
//!
//! # Example
//!
//! ```
//! use cloudshell_ssm::codec::{ClientMessage, MessageType, PayloadType};
//!
//! let frame = ClientMessage {
//!     message_type: MessageType::InputStreamData,
//!     schema_version: 1,
//!     created_date: 1_700_000_000_000,
//!     sequence_number: 0,
//!     flags: 0,
//!     message_id: uuid::Uuid::new_v4(),
//!     payload_type: PayloadType::OUTPUT,
//!     payload: b"ls\r".to_vec(),
//! };
//! let bytes = frame.encode();
//! assert_eq!(ClientMessage::decode(&bytes).unwrap(), frame);
//! ```

pub mod channel;
pub mod codec;
pub mod driver;
pub mod exec;
pub mod payload;
pub mod transfer;

pub use codec::{ClientMessage, DecodeError, MessageType, PayloadType};
