//! Value types shared by the operations: identifiers, statuses, VPC configuration.
//!
//! Each type is parsed once, at the edge, so that a value that exists is a
//! valid one ("parse, don't validate"). Parsing errors name the field.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Input that failed validation before anything was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ValidationError {
    /// The request member (or CLI field) that was wrong, as the API names it.
    pub field: &'static str,
    /// What was wrong with it, and what is accepted.
    pub reason: String,
}

impl ValidationError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// The regions where AWS offers CloudShell: the one list the emulator
/// serves, `store serve --regions all` names, and the daemon checks against.
pub const CLOUDSHELL_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "eu-south-1",
    "me-south-1",
    "sa-east-1",
];

/// An AWS region name such as `us-east-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// Parses a region name: lowercase letters, digits and hyphens, starting with a letter.
    pub fn new(name: impl Into<String>) -> Result<Self, ValidationError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.contains('-')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if ok {
            Ok(Self(name))
        } else {
            Err(ValidationError::new(
                "region",
                format!("{name:?} is not a region name (expected something like us-east-1)"),
            ))
        }
    }

    /// The region name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Every region in [`CLOUDSHELL_REGIONS`].
    pub fn cloudshell() -> Vec<Region> {
        CLOUDSHELL_REGIONS
            .iter()
            .map(|r| Region((*r).to_owned()))
            .collect()
    }

    /// Whether AWS offers CloudShell here (as far as this build knows).
    pub fn offers_cloudshell(&self) -> bool {
        CLOUDSHELL_REGIONS.contains(&self.as_str())
    }
}

impl AsRef<str> for Region {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Region {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for Region {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> Self {
        r.0
    }
}

/// The identifier of a CloudShell environment.
///
/// AWS does not document the format; all that is checked is that it is
/// non-empty, printable and free of whitespace, so ids of any shape round-trip.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvironmentId(String);

impl EnvironmentId {
    /// Parses an environment id.
    pub fn new(id: impl Into<String>) -> Result<Self, ValidationError> {
        let id = id.into();
        if id.is_empty() {
            return Err(ValidationError::new(
                "EnvironmentId",
                "must not be empty (see `cloudshell list` for the ids in this region)",
            ));
        }
        if id.len() > 256 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::new(
                "EnvironmentId",
                format!(
                    "{id:?} is not an environment id (no spaces or control characters, at most 256 characters)"
                ),
            ));
        }
        Ok(Self(id))
    }

    /// The id as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvironmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EnvironmentId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for EnvironmentId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl From<EnvironmentId> for String {
    fn from(id: EnvironmentId) -> Self {
        id.0
    }
}

/// The lifecycle state of an environment.
///
/// Unknown statuses are kept verbatim so a new state on the service side does
/// not break clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
#[non_exhaustive]
pub enum EnvironmentStatus {
    /// Being created; becomes `Running`.
    Creating,
    /// Ready for sessions.
    Running,
    /// Being stopped; becomes `Suspended`.
    Suspending,
    /// Stopped, home directory kept; `StartEnvironment` resumes it.
    Suspended,
    /// Being started again; becomes `Running`.
    Resuming,
    /// Being deleted; becomes `Deleted`.
    Deleting,
    /// Gone; may linger in `DescribeEnvironments` for a while.
    Deleted,
    /// A status this client does not know.
    Unknown(String),
}

impl EnvironmentStatus {
    /// The status as the API spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Creating => "CREATING",
            Self::Running => "RUNNING",
            Self::Suspending => "SUSPENDING",
            Self::Suspended => "SUSPENDED",
            Self::Resuming => "RESUMING",
            Self::Deleting => "DELETING",
            Self::Deleted => "DELETED",
            Self::Unknown(s) => s,
        }
    }

    /// True for states that change by themselves (creating, suspending, ...).
    pub fn is_transitional(&self) -> bool {
        matches!(
            self,
            Self::Creating | Self::Suspending | Self::Resuming | Self::Deleting
        )
    }
}

impl From<String> for EnvironmentStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "CREATING" => Self::Creating,
            "RUNNING" => Self::Running,
            "SUSPENDING" => Self::Suspending,
            "SUSPENDED" => Self::Suspended,
            "RESUMING" => Self::Resuming,
            "DELETING" => Self::Deleting,
            "DELETED" => Self::Deleted,
            _ => Self::Unknown(s),
        }
    }
}

impl From<EnvironmentStatus> for String {
    fn from(s: EnvironmentStatus) -> Self {
        s.as_str().to_owned()
    }
}

impl fmt::Display for EnvironmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a VPC environment's network interface lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VpcConfig {
    /// `vpc-` followed by 8 or 17 hex digits.
    pub vpc_id: String,
    /// At least one `subnet-` id.
    pub subnet_ids: Vec<String>,
    /// One to five `sg-` ids.
    pub security_group_ids: Vec<String>,
}

/// Most security groups a VPC environment accepts.
pub const MAX_SECURITY_GROUPS: usize = 5;
/// Most subnets accepted; AWS has not said, EC2 allows one per availability zone.
pub const MAX_SUBNETS: usize = 16;
/// Longest environment name seen accepted.
pub const MAX_ENVIRONMENT_NAME_LEN: usize = 28;

impl VpcConfig {
    /// Checks the shape of every id and the list sizes, naming the member at fault.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_ec2_id("VpcConfig.VpcId", "vpc", &self.vpc_id)?;
        if self.subnet_ids.is_empty() {
            return Err(ValidationError::new(
                "VpcConfig.SubnetIds",
                "at least one subnet is required",
            ));
        }
        if self.subnet_ids.len() > MAX_SUBNETS {
            return Err(ValidationError::new(
                "VpcConfig.SubnetIds",
                format!(
                    "at most {MAX_SUBNETS} subnets, got {}",
                    self.subnet_ids.len()
                ),
            ));
        }
        for id in &self.subnet_ids {
            check_ec2_id("VpcConfig.SubnetIds", "subnet", id)?;
        }
        if self.security_group_ids.is_empty() || self.security_group_ids.len() > MAX_SECURITY_GROUPS
        {
            return Err(ValidationError::new(
                "VpcConfig.SecurityGroupIds",
                format!(
                    "between 1 and {MAX_SECURITY_GROUPS} security groups are required, got {}",
                    self.security_group_ids.len()
                ),
            ));
        }
        for id in &self.security_group_ids {
            check_ec2_id("VpcConfig.SecurityGroupIds", "sg", id)?;
        }
        Ok(())
    }
}

/// EC2 resource ids are `<prefix>-` and 8 (older) or 17 lowercase hex digits.
fn check_ec2_id(field: &'static str, prefix: &str, id: &str) -> Result<(), ValidationError> {
    let hex = id
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'));
    let ok = hex.is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    });
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!(
                "{id:?} is not a {prefix} id (expected {prefix}- and 8 or 17 lowercase hex digits)"
            ),
        ))
    }
}

/// Checks an environment name: 1 to 28 letters, digits, `-` or `_`.
pub fn validate_environment_name(name: &str) -> Result<(), ValidationError> {
    if name.is_empty() || name.len() > MAX_ENVIRONMENT_NAME_LEN {
        return Err(ValidationError::new(
            "EnvironmentName",
            format!(
                "must be 1 to {MAX_ENVIRONMENT_NAME_LEN} characters, got {}",
                name.len()
            ),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ValidationError::new(
            "EnvironmentName",
            format!("{name:?} may hold only letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

/// The identifier of one terminal tab: a UUID version 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TabId(uuid::Uuid);

impl TabId {
    /// A fresh random tab id, as the Console makes one per tab.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// Parses a tab id; only UUID version 4 is accepted.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let uuid = uuid::Uuid::parse_str(s)
            .map_err(|_| ValidationError::new("TabId", format!("{s:?} is not a UUID")))?;
        if uuid.get_version_num() != 4 {
            return Err(ValidationError::new(
                "TabId",
                format!(
                    "{s:?} is a version {} UUID; a version 4 UUID is required",
                    uuid.get_version_num()
                ),
            ));
        }
        Ok(Self(uuid))
    }
}

impl fmt::Display for TabId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl TryFrom<String> for TabId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TabId> for String {
    fn from(t: TabId) -> Self {
        t.to_string()
    }
}

/// One environment as `DescribeEnvironments` lists it.
///
/// Real CloudShell often fills in only the id; follow with
/// `GetEnvironmentStatus` for the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EnvironmentSummary {
    /// The environment's id.
    pub environment_id: EnvironmentId,
    /// Its status, when the service says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EnvironmentStatus>,
    /// Its name, when it has one and the service says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// Its VPC configuration, for a VPC environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_config: Option<VpcConfig>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpc() -> VpcConfig {
        VpcConfig {
            vpc_id: "vpc-0123456789abcdef0".into(),
            subnet_ids: vec!["subnet-01234567".into()],
            security_group_ids: vec!["sg-0123456789abcdef0".into()],
        }
    }

    #[test]
    fn valid_vpc_config_passes() {
        assert_eq!(vpc().validate(), Ok(()));
    }

    #[test]
    fn vpc_config_errors_name_the_member() {
        let mut v = vpc();
        v.subnet_ids.clear();
        assert_eq!(v.validate().unwrap_err().field, "VpcConfig.SubnetIds");

        let mut v = vpc();
        v.security_group_ids = (0..6).map(|i| format!("sg-0000000{i}")).collect();
        assert_eq!(
            v.validate().unwrap_err().field,
            "VpcConfig.SecurityGroupIds"
        );

        let mut v = vpc();
        v.security_group_ids.clear();
        assert_eq!(
            v.validate().unwrap_err().field,
            "VpcConfig.SecurityGroupIds"
        );

        let mut v = vpc();
        v.vpc_id = "vpc-xyz".into();
        assert_eq!(v.validate().unwrap_err().field, "VpcConfig.VpcId");

        let mut v = vpc();
        v.subnet_ids.push("sg-01234567".into());
        assert_eq!(v.validate().unwrap_err().field, "VpcConfig.SubnetIds");

        let mut v = vpc();
        v.security_group_ids = vec!["sg-0123456G".into()];
        assert_eq!(
            v.validate().unwrap_err().field,
            "VpcConfig.SecurityGroupIds"
        );
    }

    #[test]
    fn tab_id_must_be_uuid_v4() {
        assert!(TabId::parse(&uuid::Uuid::new_v4().to_string()).is_ok());
        assert_eq!(TabId::parse("not-a-uuid").unwrap_err().field, "TabId");
        // A version 1 UUID.
        let err = TabId::parse("c232ab00-9414-11ec-b3c8-9f6bdeced846").unwrap_err();
        assert!(err.reason.contains("version 1"), "{err}");
    }

    #[test]
    fn environment_id_rejects_empty_and_blank() {
        assert!(EnvironmentId::new("").is_err());
        assert!(EnvironmentId::new("a b").is_err());
        assert!(EnvironmentId::new("0fd9c0ec-3b49-4e51-9f8b-1d4b2f5a1c2d").is_ok());
    }

    #[test]
    fn region_names() {
        assert!(Region::new("us-east-1").is_ok());
        assert!(Region::new("ap-southeast-4").is_ok());
        assert!(Region::new("").is_err());
        assert!(Region::new("US-EAST-1").is_err());
        assert!(Region::new("useast1").is_err());
    }

    #[test]
    fn environment_names() {
        assert!(validate_environment_name("my-env_1").is_ok());
        assert!(validate_environment_name("").is_err());
        assert!(validate_environment_name(&"a".repeat(29)).is_err());
        assert!(validate_environment_name("a b").is_err());
    }

    #[test]
    fn unknown_status_round_trips() {
        let s: EnvironmentStatus = serde_json::from_str("\"HIBERNATING\"").unwrap();
        assert_eq!(s, EnvironmentStatus::Unknown("HIBERNATING".into()));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"HIBERNATING\"");
    }
}
