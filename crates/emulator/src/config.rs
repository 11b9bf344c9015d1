//! Emulator configuration: regions, credentials, timings, faults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Access key id of the credentials every emulator accepts unless told otherwise.
pub const DEFAULT_ACCESS_KEY_ID: &str = "AKIAEMULATOR00000001";
/// Secret of the default credentials. Not a secret: the emulator is local.
pub const DEFAULT_SECRET_ACCESS_KEY: &str = "cloudshell-emulator-secret-access-key";
/// Principal of the default credentials.
pub const DEFAULT_PRINCIPAL: &str = "arn:aws:iam::000000000000:user/emulator";

/// Regions where AWS offers CloudShell, served by default (the one list,
/// kept in the `cloudshell` crate).
pub use cloudshell::CLOUDSHELL_REGIONS as DEFAULT_REGIONS;

/// One set of credentials the emulator accepts, and whose they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmulatorCredential {
    /// The access key id.
    pub access_key_id: String,
    /// The secret key requests must be signed with.
    pub secret_access_key: String,
    /// When set, requests must carry this `x-amz-security-token`.
    #[serde(default)]
    pub session_token: Option<String>,
    /// The principal limits are counted against (one default environment each, ...).
    pub principal: String,
    /// When set, the only regions these credentials may sign for.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
}

impl Default for EmulatorCredential {
    fn default() -> Self {
        Self {
            access_key_id: DEFAULT_ACCESS_KEY_ID.to_owned(),
            secret_access_key: DEFAULT_SECRET_ACCESS_KEY.to_owned(),
            session_token: None,
            principal: DEFAULT_PRINCIPAL.to_owned(),
            regions: None,
        }
    }
}

impl EmulatorCredential {
    /// The credentials of an emulated principal called `name` (an IAM user
    /// of the emulator's account): the same for the same name in every run,
    /// so a restarted emulator's environments are that principal's again.
    pub fn for_principal(name: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, name.as_bytes());
        let hex = hex::encode_upper(digest.as_ref());
        Self {
            access_key_id: format!("AKIAEM{}", &hex[..14]),
            secret_access_key: format!("emulator-secret-of-{}", &hex[14..34]),
            session_token: None,
            principal: format!("arn:aws:iam::000000000000:user/{name}"),
            regions: None,
        }
    }
}

/// How long things take. Real CloudShell takes seconds to tens of seconds;
/// tests set these near zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// CREATING -> RUNNING.
    pub create: Duration,
    /// RESUMING -> RUNNING.
    pub start: Duration,
    /// SUSPENDING -> SUSPENDED.
    pub stop: Duration,
    /// DELETING -> DELETED.
    pub delete: Duration,
    /// A RUNNING environment with no heartbeat or session for this long suspends.
    pub inactivity: Duration,
    /// How long a DELETED environment still shows in DescribeEnvironments.
    pub deleted_linger: Duration,
    /// A SUSPENDED environment unused this long has its home wiped (AWS: about 120 days).
    pub reclaim_after: Option<Duration>,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            create: Duration::from_secs(5),
            start: Duration::from_secs(4),
            stop: Duration::from_secs(3),
            delete: Duration::from_secs(3),
            inactivity: Duration::from_secs(20 * 60),
            deleted_linger: Duration::from_secs(5 * 60),
            reclaim_after: None,
        }
    }
}

/// Failures injected on purpose, so clients' retries can be tested.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultConfig {
    /// Every Nth authenticated call is answered with a 429 ThrottlingException.
    pub throttle_every: Option<u64>,
    /// Every Nth authenticated call is answered with a 500 InternalServerException.
    pub fail_every: Option<u64>,
}

/// Faults the data channel injects into what it sends, so clients'
/// reliability layers can be tested. Probabilities are per frame.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataChannelFaults {
    /// Drop a frame.
    pub drop: f64,
    /// Send a frame twice.
    pub duplicate: f64,
    /// Hold a frame back and send it after the next one.
    pub reorder: f64,
    /// End sessions with the service's 112-byte, NUL-padded `channel_closed`.
    pub short_close: bool,
    /// Drop every WebSocket after it has been open this long, to make
    /// clients reconnect.
    pub disconnect_every: Option<std::time::Duration>,
}

/// CloudShell's "1 GB of persistent storage" per home directory.
pub const DEFAULT_HOME_QUOTA: u64 = 1 << 30;

/// Everything an emulator needs.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where state and home directories live.
    pub data_dir: PathBuf,
    /// Regions served.
    pub regions: Vec<String>,
    /// Credentials accepted.
    pub credentials: Vec<EmulatorCredential>,
    /// Lifecycle timings.
    pub timings: Timings,
    /// Injected faults.
    pub faults: FaultConfig,
    /// Faults injected on the SSM data channel.
    pub data_channel_faults: DataChannelFaults,
    /// The shell sessions run (`bash` in a pty).
    pub shell: PathBuf,
    /// Run every session's shell straight in its pty, even when the client
    /// asks for `SessionType: TMUX` (which otherwise runs it inside tmux,
    /// as the Console's sessions are).
    pub plain_sessions: bool,
    /// Bytes a home directory may hold, checked on presigned uploads.
    pub home_quota: u64,
}

impl EmulatorConfig {
    /// Defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            regions: DEFAULT_REGIONS.iter().map(|r| (*r).to_owned()).collect(),
            credentials: vec![EmulatorCredential::default()],
            timings: Timings::default(),
            faults: FaultConfig::default(),
            data_channel_faults: DataChannelFaults::default(),
            shell: PathBuf::from("bash"),
            plain_sessions: false,
            home_quota: DEFAULT_HOME_QUOTA,
        }
    }
}
