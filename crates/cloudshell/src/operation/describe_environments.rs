//! `DescribeEnvironments`: the caller's environments in the region.

use serde::{Deserialize, Serialize};

use crate::error::operation_error;
use crate::operation::{Validate, operation};
use crate::types::EnvironmentSummary;

/// Takes no members.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DescribeEnvironmentsInput {}

impl Validate for DescribeEnvironmentsInput {}

/// The environments; deleted ones may linger for a while.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeEnvironmentsOutput {
    /// One entry per environment; often only the id is filled in.
    #[serde(default)]
    pub environments: Vec<EnvironmentSummary>,
}

operation_error! {
    /// Errors `DescribeEnvironments` can return.
    DescribeEnvironmentsError {}
}

operation!(
    DescribeEnvironments,
    "DescribeEnvironments",
    "/describeEnvironments",
    idempotent = true,
    DescribeEnvironmentsInput,
    DescribeEnvironmentsOutput,
    DescribeEnvironmentsError
);
