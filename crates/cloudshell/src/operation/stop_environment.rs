//! `StopEnvironment`: Suspends a running environment, keeping its home directory (it must be `RUNNING`).

use serde::{Deserialize, Serialize};

use crate::error::operation_error;
use crate::operation::{environment_input, operation};
use crate::types::{EnvironmentId, EnvironmentStatus};

environment_input! {
    /// Which environment.
    StopEnvironmentInput
}

/// The model returns no members; the service has been seen to echo these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StopEnvironmentOutput {
    /// The environment's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<EnvironmentId>,
    /// Its status after the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EnvironmentStatus>,
}

operation_error! {
    /// Errors `StopEnvironment` can return.
    StopEnvironmentError {
        /// `ConflictException`: the environment is not in a state that allows this.
        Conflict = "ConflictException",
    }
}

// Repeating it leaves the environment in the same state.
operation!(
    StopEnvironment,
    "StopEnvironment",
    "/stopEnvironment",
    idempotent = true,
    StopEnvironmentInput,
    StopEnvironmentOutput,
    StopEnvironmentError
);
