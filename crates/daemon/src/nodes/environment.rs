//! The CloudShell side of a node: its environment made RUNNING, commands run
//! in its shell, the agent uploaded into its home.

use std::time::Duration;

use cloudshell::operation::FileUrlsInput;
use cloudshell::operation::create_environment::CreateEnvironmentInput;
use cloudshell::operation::create_session::CreateSessionInput;
use cloudshell::operation::get_environment_status::GetEnvironmentStatusInput;
use cloudshell::operation::send_heart_beat::SendHeartBeatInput;
use cloudshell::operation::start_environment::StartEnvironmentInput;
use cloudshell::presigned::PresignedPost;
use cloudshell::{Client, EnvironmentId, EnvironmentStatus};
use cloudshell_ssm::driver::{ConnectOptions, Session};
use cloudshell_ssm::exec::capture_command;

/// How long an environment may take to become RUNNING.
pub const RUNNING_TIMEOUT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_secs(1);

/// Why the environment could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvironmentError {
    /// The control API said no or could not be reached.
    #[error("{operation}: {message}")]
    Api {
        /// Which call.
        operation: &'static str,
        /// What it said.
        message: String,
        /// The AWS error code, when the service answered with one.
        code: Option<String>,
    },
    /// The environment settled somewhere it cannot be started from.
    #[error("environment {id} is {status} and cannot be started")]
    Unusable {
        /// Which.
        id: EnvironmentId,
        /// Its status.
        status: EnvironmentStatus,
    },
    /// It did not become RUNNING in time.
    #[error("environment {0} is not RUNNING after {RUNNING_TIMEOUT:?}")]
    Slow(EnvironmentId),
    /// The shell session failed.
    #[error("shell session")]
    Session(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Uploading a file failed.
    #[error("upload")]
    Upload(#[source] Box<dyn std::error::Error + Send + Sync>),
}

fn api<E>(operation: &'static str) -> impl Fn(cloudshell::SdkError<E>) -> EnvironmentError {
    move |e| EnvironmentError::Api {
        operation,
        message: e.to_string(),
        code: e.code().map(str::to_owned),
    }
}

/// The AWS error codes that say the caller's credentials are no good: the
/// access key was deleted or deactivated, the session token expired, the
/// principal lost its permission. Every call by that principal will be
/// refused alike until someone fixes it.
pub const REFUSED_CREDENTIAL_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "AccessDeniedException",
    "ExpiredTokenException",
    "ExpiredToken",
];

impl EnvironmentError {
    /// Whether the control API refused the principal's credentials
    /// themselves (see [`REFUSED_CREDENTIAL_CODES`]).
    pub fn credentials_refused(&self) -> bool {
        matches!(self, Self::Api { code: Some(code), .. } if REFUSED_CREDENTIAL_CODES.contains(&code.as_str()))
    }
}

/// Finds the region's default environment (creating it if there is none)
/// and makes it RUNNING, starting it if suspended.
pub async fn ensure_running(client: &Client) -> Result<EnvironmentId, EnvironmentError> {
    let mut id = match find_default(client).await? {
        Some(id) => id,
        None => create(client).await?,
    };
    let deadline = tokio::time::Instant::now() + RUNNING_TIMEOUT;
    loop {
        let status = status(client, &id).await?;
        match status {
            EnvironmentStatus::Running => return Ok(id),
            EnvironmentStatus::Suspended => {
                client
                    .start_environment(&StartEnvironmentInput::new(id.clone()))
                    .await
                    .map_err(api("StartEnvironment"))?;
            }
            EnvironmentStatus::Deleted => id = create(client).await?,
            s if s.is_transitional() => {}
            status => return Err(EnvironmentError::Unusable { id, status }),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(EnvironmentError::Slow(id));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The environment's status.
pub async fn status(
    client: &Client,
    id: &EnvironmentId,
) -> Result<EnvironmentStatus, EnvironmentError> {
    Ok(client
        .get_environment_status(&GetEnvironmentStatusInput::new(id.clone()))
        .await
        .map_err(api("GetEnvironmentStatus"))?
        .status)
}

async fn find_default(client: &Client) -> Result<Option<EnvironmentId>, EnvironmentError> {
    let envs = client
        .describe_environments()
        .await
        .map_err(api("DescribeEnvironments"))?
        .environments;
    for env in envs.into_iter().filter(|e| e.vpc_config.is_none()) {
        let status = match env.status {
            Some(s) => s,
            None => status(client, &env.environment_id).await?,
        };
        if !matches!(
            status,
            EnvironmentStatus::Deleted | EnvironmentStatus::Deleting
        ) {
            return Ok(Some(env.environment_id));
        }
    }
    Ok(None)
}

async fn create(client: &Client) -> Result<EnvironmentId, EnvironmentError> {
    Ok(client
        .create_environment(&CreateEnvironmentInput::default())
        .await
        .map_err(api("CreateEnvironment"))?
        .environment_id)
}

/// Keeps the environment from being suspended for inactivity.
pub async fn heartbeat(client: &Client, id: &EnvironmentId) -> Result<(), EnvironmentError> {
    client
        .send_heart_beat(&SendHeartBeatInput::new(id.clone()))
        .await
        .map_err(api("SendHeartBeat"))?;
    Ok(())
}

/// Ends a removed node's environment: suspended (its processes, the agent
/// among them, end; its home stays, as AWS keeps a suspended one's), or
/// with `delete` deleted, home and all.
pub async fn retire(
    client: &Client,
    id: &EnvironmentId,
    delete: bool,
) -> Result<(), EnvironmentError> {
    if delete {
        client
            .delete_environment(
                &cloudshell::operation::delete_environment::DeleteEnvironmentInput::new(id.clone()),
            )
            .await
            .map_err(api("DeleteEnvironment"))?;
    } else {
        client
            .stop_environment(
                &cloudshell::operation::stop_environment::StopEnvironmentInput::new(id.clone()),
            )
            .await
            .map_err(api("StopEnvironment"))?;
    }
    Ok(())
}

/// Runs `command` in a new shell session: its exit status and output.
pub async fn run(
    client: &Client,
    id: &EnvironmentId,
    command: &str,
) -> Result<(i32, String), EnvironmentError> {
    let session = session(client, id).await?;
    let (code, out) = capture_command(session, command)
        .await
        .map_err(|e| EnvironmentError::Session(e.into()))?;
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}

async fn session(client: &Client, id: &EnvironmentId) -> Result<Session, EnvironmentError> {
    let s = client
        .create_session(&CreateSessionInput::new(id.clone()))
        .await
        .map_err(api("CreateSession"))?;
    Session::connect(ConnectOptions::new(s.stream_url, s.token_value))
        .await
        .map_err(|e| EnvironmentError::Session(e.into()))
}

/// Uploads `bytes` to `path` (relative to the home) through the
/// environment's presigned upload form.
pub async fn upload(
    client: &Client,
    id: &EnvironmentId,
    path: &str,
    bytes: bytes::Bytes,
) -> Result<(), EnvironmentError> {
    let urls = client
        .get_file_upload_urls(&FileUrlsInput {
            environment_id: id.clone(),
            file_name: Some(path.to_owned()),
        })
        .await
        .map_err(api("GetFileUploadUrls"))?;
    let post = PresignedPost::from_output(&urls).ok_or_else(|| {
        EnvironmentError::Upload("GetFileUploadUrls answered without an upload form".into())
    })?;
    let length = bytes.len() as u64;
    let name = path.rsplit('/').next().unwrap_or(path);
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
    client
        .post_presigned(&post, name, length, body)
        .await
        .map_err(|e| EnvironmentError::Upload(e.into()))
}

/// Uploads `bytes` to `path` (relative to the home) through the shell
/// session itself, for when the upload form is not offered: streamed as
/// base64 lines into a temporary name, its SHA-256 checked on arrival, then
/// renamed into place.
pub async fn upload_through_shell(
    client: &Client,
    id: &EnvironmentId,
    path: &str,
    bytes: bytes::Bytes,
) -> Result<(), EnvironmentError> {
    use cloudshell_ssm::transfer::{self, Kind, UploadPlan};
    let fail = |e: transfer::TransferError| EnvironmentError::Upload(e.into());
    let name = path.rsplit('/').next().unwrap_or(path);
    let plan = UploadPlan::new(path, name, Kind::File);
    // The probe also clears the way (and tells of an earlier partial file,
    // which is simply overwritten from the start).
    transfer::probe_upload(session(client, id).await?, &plan)
        .await
        .map_err(fail)?;
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    transfer::stream_upload(
        session(client, id).await?,
        &plan,
        0,
        std::io::Cursor::new(bytes),
        progress,
    )
    .await
    .map_err(fail)?;
    transfer::commit_upload(session(client, id).await?, &plan, None, None)
        .await
        .map_err(fail)
}
