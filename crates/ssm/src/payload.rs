//! The JSON and binary payloads carried inside frames.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::MessageType;

/// The first, text frame on a new WebSocket: authenticates the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct OpenDataChannelInput {
    /// `"1.0"`. Read as a string or a number: independent clients send `1`.
    #[serde(deserialize_with = "string_or_number")]
    pub message_schema_version: String,
    /// A fresh UUID per connection.
    pub request_id: String,
    /// `TokenValue` from CreateSession / StartSession.
    pub token_value: String,
    /// One UUID per client process (optional on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client version; the agent gates features on it (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_version: Option<String>,
}

/// A JSON string, or a number read as its text.
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(serde_json::Number),
    }
    Ok(match Either::deserialize(d)? {
        Either::Text(s) => s,
        Either::Number(n) => n.to_string(),
    })
}

impl OpenDataChannelInput {
    /// The opening message for a token.
    pub fn new(token: &str, request_id: Uuid, client_id: Uuid, client_version: &str) -> Self {
        Self {
            message_schema_version: "1.0".to_owned(),
            request_id: request_id.hyphenated().to_string(),
            token_value: token.to_owned(),
            client_id: Some(client_id.hyphenated().to_string()),
            client_version: Some(client_version.to_owned()),
        }
    }
}

/// The payload of an `acknowledge` frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Acknowledge {
    /// Type of the message acknowledged.
    pub acknowledged_message_type: String,
    /// Its id, canonical hyphenated form.
    pub acknowledged_message_id: String,
    /// Its sequence number: the only field receivers match on.
    pub acknowledged_message_sequence_number: i64,
    /// Always true.
    pub is_sequential_message: bool,
}

impl Acknowledge {
    /// The acknowledgement of one stream-data message.
    pub fn of(message_type: &MessageType, id: Uuid, sequence_number: i64) -> Self {
        Self {
            acknowledged_message_type: message_type.as_str().to_owned(),
            acknowledged_message_id: id.hyphenated().to_string(),
            acknowledged_message_sequence_number: sequence_number,
            is_sequential_message: true,
        }
    }
}

/// Terminal size; lowercase keys on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeData {
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// The u32 carried by a [`PayloadType::FLAG`](crate::codec::PayloadType::FLAG) payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Port forwarding: the local connection closed.
    DisconnectToPort,
    /// End the session.
    TerminateSession,
    /// Port forwarding: the agent could not reach the target.
    ConnectToPortError,
}

impl Flag {
    /// The 4-byte big-endian payload.
    pub fn encode(self) -> [u8; 4] {
        let v: u32 = match self {
            Self::DisconnectToPort => 1,
            Self::TerminateSession => 2,
            Self::ConnectToPortError => 3,
        };
        v.to_be_bytes()
    }

    /// Parses a flag payload.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let v = u32::from_be_bytes(payload.try_into().ok()?);
        match v {
            1 => Some(Self::DisconnectToPort),
            2 => Some(Self::TerminateSession),
            3 => Some(Self::ConnectToPortError),
            _ => None,
        }
    }
}

/// `EXIT_CODE: <n>`, as the agent sends for non-interactive commands.
pub fn encode_exit_code(code: i32) -> Vec<u8> {
    format!("EXIT_CODE: {code}").into_bytes()
}

/// Parses an exit-code payload.
pub fn decode_exit_code(payload: &[u8]) -> Option<i32> {
    std::str::from_utf8(payload)
        .ok()?
        .trim()
        .strip_prefix("EXIT_CODE:")?
        .trim()
        .parse()
        .ok()
}

/// One action the agent asks the client to take during the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestedClientAction {
    /// `SessionType` or `KMSEncryption`.
    pub action_type: String,
    /// The action's parameters, opaque here.
    #[serde(default)]
    pub action_parameters: serde_json::Value,
}

/// The agent's HandshakeRequest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeRequest {
    /// The agent's version.
    pub agent_version: String,
    /// What the client must do.
    pub requested_client_actions: Vec<RequestedClientAction>,
}

/// Outcome of one handshake action; anything but success cancels the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "u32", into = "u32")]
pub enum ActionStatus {
    /// 1.
    Success,
    /// 2.
    Failed,
    /// 3.
    Unsupported,
    /// Anything else.
    Other(u32),
}

impl From<u32> for ActionStatus {
    fn from(v: u32) -> Self {
        match v {
            1 => Self::Success,
            2 => Self::Failed,
            3 => Self::Unsupported,
            n => Self::Other(n),
        }
    }
}

impl From<ActionStatus> for u32 {
    fn from(s: ActionStatus) -> Self {
        match s {
            ActionStatus::Success => 1,
            ActionStatus::Failed => 2,
            ActionStatus::Unsupported => 3,
            ActionStatus::Other(n) => n,
        }
    }
}

/// The client's answer to one action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessedClientAction {
    /// The action answered.
    pub action_type: String,
    /// Whether it was done.
    pub action_status: ActionStatus,
    /// Its result, if any.
    #[serde(default)]
    pub action_result: serde_json::Value,
    /// Why it failed, or empty.
    #[serde(default)]
    pub error: String,
}

/// The client's HandshakeResponse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeResponse {
    /// Client version.
    pub client_version: String,
    /// One answer per requested action.
    pub processed_client_actions: Vec<ProcessedClientAction>,
    /// Errors, `null` when none.
    #[serde(default)]
    pub errors: Option<Vec<String>>,
}

/// The agent's HandshakeComplete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HandshakeComplete {
    /// Nanoseconds the handshake took.
    pub handshake_time_to_complete: u64,
    /// A message to show the user, or empty.
    #[serde(default)]
    pub customer_message: String,
}

/// The payload of `channel_closed`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ChannelClosed {
    /// Id of this message.
    pub message_id: String,
    /// Creation time, epoch milliseconds as a string.
    pub created_date: String,
    /// The target.
    pub destination_id: String,
    /// The session.
    pub session_id: String,
    /// `channel_closed`.
    pub message_type: String,
    /// 1.
    pub schema_version: u32,
    /// Why, if anything was said.
    pub output: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(decode_exit_code(&encode_exit_code(42)), Some(42));
        assert_eq!(decode_exit_code(b"EXIT_CODE: -1\n"), Some(-1));
        assert_eq!(decode_exit_code(b"EXIT: 1"), None);
        assert_eq!(decode_exit_code(&[0xff]), None);
    }

    #[test]
    fn flags() {
        assert_eq!(Flag::TerminateSession.encode(), [0, 0, 0, 2]);
        assert_eq!(Flag::decode(&[0, 0, 0, 3]), Some(Flag::ConnectToPortError));
        assert_eq!(Flag::decode(&[0, 0, 2]), None);
        assert_eq!(Flag::decode(&[0, 0, 0, 9]), None);
    }

    #[test]
    fn acknowledge_json_matches_the_plugin() {
        let id = Uuid::parse_str("dd01e56b-ff48-483e-a508-b5f073f31b16").unwrap();
        let ack = Acknowledge::of(&MessageType::OutputStreamData, id, 5);
        assert_eq!(
            serde_json::to_string(&ack).unwrap(),
            r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":5,"IsSequentialMessage":true}"#
        );
    }

    #[test]
    fn open_data_channel_json() {
        let id = Uuid::nil();
        // Independent clients send the schema version as a number.
        let numeric: OpenDataChannelInput = serde_json::from_str(
            r#"{"MessageSchemaVersion": 1, "RequestId": "r", "TokenValue": "t"}"#,
        )
        .unwrap();
        assert_eq!(numeric.message_schema_version, "1");
        let open = OpenDataChannelInput::new("tok", id, id, "1.2.0.0");
        let json = serde_json::to_value(&open).unwrap();
        assert_eq!(json["MessageSchemaVersion"], "1.0");
        assert_eq!(json["TokenValue"], "tok");
        // Older clients send only three members; they must still parse.
        let minimal: OpenDataChannelInput = serde_json::from_str(
            r#"{"MessageSchemaVersion":"1.0","RequestId":"r","TokenValue":"t"}"#,
        )
        .unwrap();
        assert_eq!(minimal.client_id, None);
    }

    #[test]
    fn handshake_response_statuses_are_numbers() {
        let r = HandshakeResponse {
            client_version: "1".into(),
            processed_client_actions: vec![ProcessedClientAction {
                action_type: "SessionType".into(),
                action_status: ActionStatus::Success,
                action_result: serde_json::Value::Null,
                error: String::new(),
            }],
            errors: None,
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["ProcessedClientActions"][0]["ActionStatus"], 1);
        assert_eq!(json["Errors"], serde_json::Value::Null);
    }
}
