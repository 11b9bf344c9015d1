//! `StartEnvironment`: Resumes a suspended environment (it must be `SUSPENDED`).

use serde::{Deserialize, Serialize};

use crate::error::operation_error;
use crate::operation::{environment_input, operation};
use crate::types::{EnvironmentId, EnvironmentStatus};

environment_input! {
    /// Which environment.
    StartEnvironmentInput
}

/// The model returns no members; the service has been seen to echo these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartEnvironmentOutput {
    /// The environment's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<EnvironmentId>,
    /// Its status after the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EnvironmentStatus>,
}

operation_error! {
    /// Errors `StartEnvironment` can return.
    StartEnvironmentError {
        /// `ConflictException`: the environment is not in a state that allows this.
        Conflict = "ConflictException",
    }
}

// Repeating it leaves the environment in the same state.
operation!(
    StartEnvironment,
    "StartEnvironment",
    "/startEnvironment",
    idempotent = true,
    StartEnvironmentInput,
    StartEnvironmentOutput,
    StartEnvironmentError
);
