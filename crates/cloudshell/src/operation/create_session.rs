//! `CreateSession`: opens a shell session; the answer is what the Session
//! Manager data channel needs (`StreamUrl` and `TokenValue`).

use serde::{Deserialize, Serialize};

use crate::error::operation_error;
use crate::operation::{Validate, operation};
use crate::types::{EnvironmentId, TabId, ValidationError};

/// The session type every known client sends.
pub const SESSION_TYPE_TMUX: &str = "TMUX";

/// Which environment, and which terminal tab the session is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSessionInput {
    /// The environment to open a shell in; it must be `RUNNING`.
    pub environment_id: EnvironmentId,
    /// `TMUX` in every client seen.
    pub session_type: String,
    /// A UUID v4 the client makes up per terminal tab.
    pub tab_id: TabId,
    /// Turns off the Amazon Q CLI integration in the shell.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "QCliDisabled"
    )]
    pub q_cli_disabled: Option<bool>,
}

impl CreateSessionInput {
    /// A `TMUX` session in a fresh tab.
    pub fn new(environment_id: EnvironmentId) -> Self {
        Self {
            environment_id,
            session_type: SESSION_TYPE_TMUX.to_owned(),
            tab_id: TabId::random(),
            q_cli_disabled: None,
        }
    }
}

impl Validate for CreateSessionInput {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.session_type.is_empty() {
            return Err(ValidationError::new(
                "SessionType",
                format!("must not be empty (use {SESSION_TYPE_TMUX})"),
            ));
        }
        Ok(())
    }
}

/// Where and how to open the data channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateSessionOutput {
    /// The session's id, for `DeleteSession`.
    pub session_id: String,
    /// The token sent in the data channel's opening message.
    pub token_value: String,
    /// The WebSocket URL of the data channel.
    pub stream_url: String,
}

operation_error! {
    /// Errors `CreateSession` can return.
    CreateSessionError {
        /// `ServiceQuotaExceededException`: too many sessions open.
        ServiceQuotaExceeded = "ServiceQuotaExceededException",
    }
}

// Not idempotent: a repeat would open a second session.
operation!(
    CreateSession,
    "CreateSession",
    "/createSession",
    idempotent = false,
    CreateSessionInput,
    CreateSessionOutput,
    CreateSessionError
);
