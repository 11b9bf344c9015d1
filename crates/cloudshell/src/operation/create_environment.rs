//! `CreateEnvironment`: a new default (public) or VPC environment.

use serde::{Deserialize, Serialize};

use crate::error::operation_error;
use crate::operation::{Validate, operation};
use crate::types::{
    EnvironmentId, EnvironmentStatus, ValidationError, VpcConfig, validate_environment_name,
};

/// What to create. With no members, the region's default environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEnvironmentInput {
    /// A name; required for a VPC environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// Makes a VPC environment in these subnets and security groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

impl Validate for CreateEnvironmentInput {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(name) = &self.environment_name {
            validate_environment_name(name)?;
        }
        if let Some(vpc) = &self.vpc_config {
            if self.environment_name.is_none() {
                return Err(ValidationError::new(
                    "EnvironmentName",
                    "a VPC environment needs a name",
                ));
            }
            vpc.validate()?;
        }
        Ok(())
    }
}

/// The new environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEnvironmentOutput {
    /// Its id.
    pub environment_id: EnvironmentId,
    /// Its status, normally `CREATING`.
    pub status: EnvironmentStatus,
    /// Its name, when the service echoes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// Its VPC configuration, when the service echoes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

operation_error! {
    /// Errors `CreateEnvironment` can return.
    CreateEnvironmentError {
        /// `ServiceQuotaExceededException`: the default environment already
        /// exists, or the VPC environment limit is reached.
        ServiceQuotaExceeded = "ServiceQuotaExceededException",
        /// `LimitExceededException`: an older spelling of the quota error.
        LimitExceeded = "LimitExceededException",
        /// `ConflictException`: a conflicting request is in progress.
        Conflict = "ConflictException",
    }
}

// Not idempotent: a repeat after the first reached the service would make a
// second environment or fail on the quota, so only provably unsent attempts
// are retried.
operation!(
    CreateEnvironment,
    "CreateEnvironment",
    "/createEnvironment",
    idempotent = false,
    CreateEnvironmentInput,
    CreateEnvironmentOutput,
    CreateEnvironmentError
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpc_environment_needs_a_name() {
        let input = CreateEnvironmentInput {
            environment_name: None,
            vpc_config: Some(VpcConfig {
                vpc_id: "vpc-01234567".into(),
                subnet_ids: vec!["subnet-01234567".into()],
                security_group_ids: vec!["sg-01234567".into()],
            }),
        };
        assert_eq!(input.validate().unwrap_err().field, "EnvironmentName");
    }

    #[test]
    fn serializes_as_the_model_does() {
        let input = CreateEnvironmentInput {
            environment_name: Some("dev".into()),
            vpc_config: Some(VpcConfig {
                vpc_id: "vpc-01234567".into(),
                subnet_ids: vec!["subnet-01234567".into()],
                security_group_ids: vec!["sg-01234567".into()],
            }),
        };
        let json = serde_json::to_value(&input).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "EnvironmentName": "dev",
                "VpcConfig": {"VpcId": "vpc-01234567", "SubnetIds": ["subnet-01234567"], "SecurityGroupIds": ["sg-01234567"]}
            })
        );
        assert_eq!(
            serde_json::to_string(&CreateEnvironmentInput::default()).unwrap(),
            "{}"
        );
    }
}
