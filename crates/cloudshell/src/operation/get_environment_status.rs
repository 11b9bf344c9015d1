//! `GetEnvironmentStatus`: one environment's status and details.

use serde::{Deserialize, Serialize};

use crate::error::operation_error;
use crate::operation::{environment_input, operation};
use crate::types::{EnvironmentId, EnvironmentStatus, VpcConfig};

environment_input! {
    /// Which environment.
    GetEnvironmentStatusInput
}

/// The environment's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetEnvironmentStatusOutput {
    /// The status.
    pub status: EnvironmentStatus,
    /// Why it is in that status, when the service says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The id, when the service echoes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<EnvironmentId>,
    /// The name, for a named environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// The VPC configuration, for a VPC environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

operation_error! {
    /// Errors `GetEnvironmentStatus` can return.
    GetEnvironmentStatusError {}
}

operation!(
    GetEnvironmentStatus,
    "GetEnvironmentStatus",
    "/getEnvironmentStatus",
    idempotent = true,
    GetEnvironmentStatusInput,
    GetEnvironmentStatusOutput,
    GetEnvironmentStatusError
);
