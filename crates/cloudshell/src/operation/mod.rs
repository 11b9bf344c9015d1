//! One module per API operation, each with its input, output and error kind.
//!
//! Every operation is `POST /<operationName>` with a JSON body; the path is
//! the operation name in lowerCamelCase (the rest-json binding of the
//! service's model, `models/cloudshell/2019-03-01/service-2.json`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::OperationError;
use crate::types::ValidationError;

pub mod create_environment;
pub mod create_session;
pub mod delete_environment;
pub mod delete_session;
pub mod describe_environments;
pub mod get_environment_status;
pub mod get_file_download_urls;
pub mod get_file_upload_urls;
pub mod put_credentials;
pub mod send_heart_beat;
pub mod start_environment;
pub mod stop_environment;

/// Client-side checks run before a request is signed and sent.
pub trait Validate {
    /// Returns the first problem found, naming the member.
    fn validate(&self) -> Result<(), ValidationError> {
        Ok(())
    }
}

/// Static facts about one operation.
pub(crate) trait Operation {
    /// The operation's name in the model, such as `CreateEnvironment`.
    const NAME: &'static str;
    /// The HTTP path, such as `/createEnvironment`.
    const PATH: &'static str;
    /// Whether repeating the request after it may have reached the service is harmless.
    const IDEMPOTENT: bool;
    type Input: Serialize + Validate + Sync;
    type Output: DeserializeOwned;
    type Error: OperationError;
}

/// Declares the marker type and [`Operation`] impl of one operation.
macro_rules! operation {
    ($marker:ident, $name:literal, $path:literal, idempotent = $idem:literal, $input:ty, $output:ty, $error:ty) => {
        pub(crate) struct $marker;
        impl $crate::operation::Operation for $marker {
            const NAME: &'static str = $name;
            const PATH: &'static str = $path;
            const IDEMPOTENT: bool = $idem;
            type Input = $input;
            type Output = $output;
            type Error = $error;
        }
    };
}
pub(crate) use operation;

/// Declares an input that holds only `EnvironmentId`, as most operations take.
macro_rules! environment_input {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        pub struct $name {
            /// The environment to act on.
            pub environment_id: $crate::types::EnvironmentId,
        }

        impl $name {
            /// An input for this environment.
            pub fn new(environment_id: $crate::types::EnvironmentId) -> Self {
                Self { environment_id }
            }
        }

        impl $crate::operation::Validate for $name {}
    };
}
pub(crate) use environment_input;

/// An output with no members (the service answers `{}` or nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmptyOutput {}

/// Input of `GetFileUploadUrls` and `GetFileDownloadUrls`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileUrlsInput {
    /// The environment whose home directory is the source or destination.
    pub environment_id: crate::types::EnvironmentId,
    /// The file's path relative to the home directory. The Console names the
    /// file; the member's name is not public, so this one is our choice and
    /// the service may ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
}

impl Validate for FileUrlsInput {
    fn validate(&self) -> Result<(), ValidationError> {
        if let Some(name) = &self.file_name
            && (name.is_empty() || name.contains('\0'))
        {
            return Err(ValidationError::new(
                "FileName",
                "must be a non-empty path without NUL characters",
            ));
        }
        Ok(())
    }
}

/// Output of both file operations; each fills in the members of its direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FileUrlsOutput {
    /// Upload: the URL to POST the form to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_upload_presigned_url: Option<String>,
    /// Upload: the form fields to send, in order, before the file part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_upload_presigned_fields: Option<std::collections::BTreeMap<String, String>>,
    /// Download: the URL to GET the file from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_download_presigned_url: Option<String>,
    /// Download: the object key the environment pushes the file to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_download_presigned_key: Option<String>,
    /// Download: a hash identifying that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_download_presigned_key_hash: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path_of<O: Operation>() -> (&'static str, &'static str) {
        (O::NAME, O::PATH)
    }

    /// The path must be the name with its first letter lowercased.
    #[test]
    fn paths_are_lower_camel_case_names() {
        let all = [
            path_of::<create_environment::CreateEnvironment>(),
            path_of::<create_session::CreateSession>(),
            path_of::<delete_environment::DeleteEnvironment>(),
            path_of::<delete_session::DeleteSession>(),
            path_of::<describe_environments::DescribeEnvironments>(),
            path_of::<get_environment_status::GetEnvironmentStatus>(),
            path_of::<get_file_download_urls::GetFileDownloadUrls>(),
            path_of::<get_file_upload_urls::GetFileUploadUrls>(),
            path_of::<put_credentials::PutCredentials>(),
            path_of::<send_heart_beat::SendHeartBeat>(),
            path_of::<start_environment::StartEnvironment>(),
            path_of::<stop_environment::StopEnvironment>(),
        ];
        assert_eq!(all.len(), 12);
        for (name, path) in all {
            let mut expected = String::from("/");
            let mut chars = name.chars();
            expected.extend(chars.next().map(|c| c.to_ascii_lowercase()));
            expected.extend(chars);
            assert_eq!(path, expected);
        }
    }
}
