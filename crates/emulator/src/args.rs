//! Command-line flags of the emulator, shared by `cloudshell-emulator` and `cloudshell emulator`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::Emulator;
use crate::config::{
    DEFAULT_PRINCIPAL, DataChannelFaults, EmulatorConfig, EmulatorCredential, FaultConfig, Timings,
};

/// Flags that configure an emulator.
#[derive(Debug, Clone, clap::Args)]
pub struct EmulatorArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(
        long,
        default_value = "127.0.0.1:4599",
        env = "CLOUDSHELL_EMULATOR_LISTEN"
    )]
    pub listen: SocketAddr,

    /// Directory for the emulator's state and the environments' home directories
    /// [default: the user data directory's cloudshell/emulator].
    #[arg(long, env = "CLOUDSHELL_EMULATOR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Regions to serve, comma-separated [default: every region with CloudShell].
    #[arg(long, value_delimiter = ',')]
    pub regions: Vec<String>,

    /// Credentials to accept, as ACCESS_KEY_ID:SECRET or ACCESS_KEY_ID:SECRET:PRINCIPAL_ARN; repeat for
    /// several principals [default: the emulator's built-in pair].
    #[arg(long = "credentials", value_name = "AK:SECRET[:ARN]")]
    pub credentials: Vec<String>,

    /// How long CREATING lasts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub create_delay: Duration,

    /// How long RESUMING lasts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "4s")]
    pub start_delay: Duration,

    /// How long SUSPENDING lasts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub stop_delay: Duration,

    /// How long DELETING lasts.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub delete_delay: Duration,

    /// A RUNNING environment without heartbeat or session for this long suspends.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "20m")]
    pub inactivity_timeout: Duration,

    /// How long a deleted environment still shows in DescribeEnvironments.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub deleted_linger: Duration,

    /// Wipe the home of an environment suspended this long (AWS: about 120 days) [default: never].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub reclaim_after: Option<Duration>,

    /// Answer every Nth call with a 429 ThrottlingException.
    #[arg(long, value_name = "N")]
    pub throttle_every: Option<u64>,

    /// Answer every Nth call with a 500 InternalServerException.
    #[arg(long, value_name = "N")]
    pub fail_every: Option<u64>,

    /// Data channel: drop this fraction of the frames sent to clients.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub ssm_drop: f64,

    /// Data channel: send this fraction of frames twice.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub ssm_duplicate: f64,

    /// Data channel: deliver this fraction of frames after the next one.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    pub ssm_reorder: f64,

    /// Data channel: end sessions with the 112-byte, NUL-padded channel_closed AWS sends.
    #[arg(long)]
    pub ssm_short_close: bool,

    /// Data channel: drop each WebSocket after it has been open this long, so clients must reconnect.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub ssm_disconnect_every: Option<Duration>,

    /// Shell to run in sessions.
    #[arg(long, default_value = "bash", value_name = "PATH")]
    pub shell: PathBuf,

    /// Run shells straight in their pty even for `SessionType: TMUX`
    /// sessions (which otherwise run inside tmux, as the Console's do).
    #[arg(long)]
    pub plain_sessions: bool,

    /// Bytes each home directory may hold through presigned uploads (suffixes
    /// K, M, G for powers of 1024).
    #[arg(long, default_value = "1G", value_parser = parse_size, value_name = "SIZE")]
    pub home_quota: u64,
}

impl EmulatorArgs {
    /// Checks the flags and turns them into a configuration.
    pub fn into_config(self) -> anyhow::Result<EmulatorConfig> {
        let data_dir = match self.data_dir {
            Some(d) => d,
            None => default_data_dir()?,
        };
        let mut config = EmulatorConfig::new(data_dir);
        if !self.regions.is_empty() {
            for r in &self.regions {
                cloudshell::Region::new(r.as_str())
                    .with_context(|| format!("--regions: {r:?} is not a region name"))?;
            }
            config.regions = self.regions;
        }
        if !self.credentials.is_empty() {
            config.credentials = self
                .credentials
                .iter()
                .map(|c| parse_credential(c))
                .collect::<anyhow::Result<_>>()?;
        }
        config.timings = Timings {
            create: self.create_delay,
            start: self.start_delay,
            stop: self.stop_delay,
            delete: self.delete_delay,
            inactivity: self.inactivity_timeout,
            deleted_linger: self.deleted_linger,
            reclaim_after: self.reclaim_after,
        };
        config.data_channel_faults = DataChannelFaults {
            drop: self.ssm_drop,
            duplicate: self.ssm_duplicate,
            reorder: self.ssm_reorder,
            short_close: self.ssm_short_close,
            disconnect_every: self.ssm_disconnect_every.filter(|d| !d.is_zero()),
        };
        config.shell = self.shell;
        config.plain_sessions = self.plain_sessions;
        config.home_quota = self.home_quota;
        config.faults = FaultConfig {
            throttle_every: self.throttle_every.filter(|n| *n > 0),
            fail_every: self.fail_every.filter(|n| *n > 0),
        };
        Ok(config)
    }
}

/// `1073741824`, `1G`, `512M`, `64K` (powers of 1024; an optional `iB`/`B`).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        Some((i, 'T' | 't')) => (&t[..i], 40),
        _ => (t, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size; try 1G, 512M or a number of bytes"))
}

fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability in [0, 1)")),
    }
}

/// `$XDG_DATA_HOME/cloudshell/emulator` or the platform's equivalent.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    let base = dirs::data_dir().context("no user data directory is known here; pass --data-dir")?;
    Ok(base.join("cloudshell").join("emulator"))
}

fn parse_credential(s: &str) -> anyhow::Result<EmulatorCredential> {
    // The principal is an ARN, which has colons of its own: split twice only.
    let mut parts = s.splitn(3, ':');
    let (Some(ak), Some(secret)) = (parts.next(), parts.next()) else {
        bail!("--credentials {s:?}: expected ACCESS_KEY_ID:SECRET[:PRINCIPAL_ARN]");
    };
    if ak.is_empty() || secret.is_empty() {
        bail!("--credentials {s:?}: the access key id and the secret must not be empty");
    }
    let principal = parts.next().map_or_else(
        || {
            format!(
                "{}/{ak}",
                DEFAULT_PRINCIPAL
                    .rsplit_once('/')
                    .map_or(DEFAULT_PRINCIPAL, |p| p.0)
            )
        },
        str::to_owned,
    );
    Ok(EmulatorCredential {
        access_key_id: ak.to_owned(),
        secret_access_key: secret.to_owned(),
        session_token: None,
        principal,
        regions: None,
    })
}

/// Runs an emulator in the foreground until Ctrl-C, printing how to reach it:
/// one JSON line on stdout for programs, instructions on stderr for people.
pub async fn run(args: EmulatorArgs) -> anyhow::Result<()> {
    let listen = args.listen;
    let config = args.into_config()?;
    let emulator = Emulator::start(config, listen).await?;
    let config = emulator.config();
    let cred = config
        .credentials
        .first()
        .context("no credentials configured")?;
    let first_region = config.regions.first().map_or("us-east-1", String::as_str);
    println!(
        "{}",
        serde_json::json!({
            "endpoint": emulator.endpoint(),
            "access_key_id": cred.access_key_id,
            "secret_access_key": cred.secret_access_key,
            "regions": config.regions,
            "data_dir": config.data_dir,
        })
    );
    eprintln!(
        "cloudshell-emulator listening on {} ({} regions, state in {})\n\
         Point AWS tools at it:\n  \
         export AWS_ENDPOINT_URL_CLOUDSHELL={}\n  \
         export AWS_ACCESS_KEY_ID={} AWS_SECRET_ACCESS_KEY={} AWS_REGION={first_region}\n\
         Press Ctrl-C to stop.",
        emulator.endpoint(),
        config.regions.len(),
        config.data_dir.display(),
        emulator.endpoint(),
        cred.access_key_id,
        cred.secret_access_key,
    );
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("could not wait for Ctrl-C")?,
        r = emulator.wait() => return r,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_with_arn_principal() {
        let c = parse_credential("AK:SK:arn:aws:iam::123456789012:user/alice").unwrap();
        assert_eq!(c.access_key_id, "AK");
        assert_eq!(c.secret_access_key, "SK");
        assert_eq!(c.principal, "arn:aws:iam::123456789012:user/alice");
        let c = parse_credential("AK2:SK2").unwrap();
        assert_eq!(c.principal, "arn:aws:iam::000000000000:user/AK2");
        assert!(parse_credential("AK").is_err());
        assert!(parse_credential(":SK").is_err());
    }
}
