//! The daemon's configuration: one serde struct, a doc on every field, read
//! from a TOML file and overridden by flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cloudshell::Region;
use serde::{Deserialize, Serialize};

/// The nine regions (of [`cloudshell::CLOUDSHELL_REGIONS`]) an emulated
/// store runs when none are named: three continents, so placement has real
/// regions to spread over.
pub const EMULATED_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "eu-north-1",
    "ap-southeast-1",
    "ap-northeast-1",
    "ap-south-1",
];

/// Public STUN servers used against real AWS when none are configured.
pub const PUBLIC_STUN_SERVERS: &[&str] = &["stun.l.google.com:19302", "stun1.l.google.com:19302"];

/// Everything `cloudshell store serve` needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// Where the index, the daemon's identity and (when emulated) the
    /// emulator's state live.
    pub data_dir: PathBuf,
    /// Address of the JSON API, web UI and metrics. Anything but loopback
    /// needs `token`.
    pub listen: SocketAddr,
    /// Address of the S3-compatible endpoint (`None`: no S3 endpoint).
    pub s3_listen: Option<SocketAddr>,
    /// Bearer token required on every API request when set (and always
    /// when `listen` is not a loopback address).
    pub token: Option<String>,
    /// Serve HTTPS on the API, UI and S3 listeners with a self-signed
    /// certificate kept in `DATA_DIR/tls` (made on first start); its
    /// SHA-256 is printed for clients to pin (`cloudshell store --pin`).
    /// Needed on any listener off loopback.
    pub tls: bool,
    /// Serve HTTPS with this certificate (PEM, its chain after it) ...
    pub tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Regions to keep a node in; empty means the nine emulated regions
    /// when emulated, and is an error otherwise.
    pub regions: Vec<Region>,
    /// The AWS principals whose environments hold nodes, each with its
    /// regions (a node per principal and region). Empty means one, named
    /// `default`: the standard credential chain (`--profile`,
    /// `AWS_PROFILE`, the environment). Other names are AWS profiles.
    pub principals: Vec<PrincipalConfig>,
    /// Run against an emulator started beside the daemon instead of AWS
    /// (the command starts it and hands the daemon its endpoint).
    pub emulated: bool,
    /// The embedded emulator's state (environments and their homes)
    /// [default: DATA_DIR/emulator]. Like AWS's, it outlives the store's own
    /// data directory: `recover` into an empty one finds the nodes here.
    pub emulator_data_dir: Option<PathBuf>,
    /// A CloudShell endpoint to use instead of AWS's (an emulator started
    /// elsewhere); credentials then come from the usual chain.
    pub endpoint_url: Option<String>,
    /// The store's key: a key file (64 hex digits, mode 0600) ...
    pub key_file: Option<PathBuf>,
    /// ... or the name of an environment variable holding a passphrase.
    pub passphrase_env: Option<String>,
    /// Store without encryption (only when asked for explicitly).
    pub no_encryption: bool,
    /// The agent binary to install on nodes; by default the
    /// `cloudshell-agent` next to this program.
    pub agent_binary: Option<PathBuf>,
    /// Bytes of shards each agent may hold (suffixes K, M, G).
    pub agent_quota: String,
    /// The store's own cap on some nodes, below their agent's quota:
    /// node -> size (suffixes K, M, G), e.g. `{ "us-east-1" = "200M" }`
    /// (a node's id is its region for the `default` principal, and
    /// `PRINCIPAL:REGION` for the others). `cloudshell store nodes --quota
    /// NODE=SIZE` changes it while the daemon runs (kept in
    /// `DATA_DIR/node-quotas.json`, which wins).
    pub node_quotas: std::collections::BTreeMap<String, String>,
    /// STUN servers (HOST:PORT) for the daemon and its agents; empty means
    /// public ones against AWS and none when emulated (agents on this
    /// machine reach the daemon directly).
    pub stun: Vec<String>,
    /// UDP address of the daemon's QUIC socket.
    pub quic_listen: SocketAddr,
    /// How often each environment is sent a heartbeat, in seconds
    /// (CloudShell suspends an environment after about 20 idle minutes).
    pub heartbeat_secs: u64,
    /// How long a node may be unreachable before repair rebuilds its shards
    /// elsewhere, in seconds.
    pub repair_after_secs: u64,
    /// Seconds between two passes of the scrubber over every shard.
    pub scrub_interval_secs: u64,
    /// Shards verified per second at most by the scrubber.
    pub scrub_rate: u32,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("cloudshell-store"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            s3_listen: Some(SocketAddr::from(([127, 0, 0, 1], 8081))),
            token: None,
            tls: false,
            tls_cert: None,
            tls_key: None,
            regions: Vec::new(),
            principals: Vec::new(),
            emulated: false,
            emulator_data_dir: None,
            endpoint_url: None,
            key_file: None,
            passphrase_env: None,
            no_encryption: false,
            agent_binary: None,
            agent_quota: "900M".to_owned(),
            node_quotas: std::collections::BTreeMap::new(),
            stun: Vec::new(),
            quic_listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            heartbeat_secs: 300,
            repair_after_secs: 600,
            scrub_interval_secs: 24 * 3600,
            scrub_rate: 50,
        }
    }
}

/// The principal the standard credential chain gives: what a store with
/// no principals configured runs as. Its nodes' ids are their regions.
pub const DEFAULT_PRINCIPAL: &str = "default";

/// One AWS principal whose environments hold nodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PrincipalConfig {
    /// Its name: an AWS profile, or `default` for the standard chain.
    pub name: String,
    /// Its regions; empty means the configuration's `regions`.
    #[serde(default)]
    pub regions: Vec<Region>,
}

impl PrincipalConfig {
    /// Parses `PROFILE` or `PROFILE:REGION,REGION,...` (`--principal`).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let (name, regions) = match text.split_once(':') {
            Some((name, list)) => {
                let regions = list
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(Region::new)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        ConfigError::Invalid(format!(
                            "--principal {text:?}: {e}; give PROFILE or \
                             PROFILE:REGION,REGION (say work:us-east-1,eu-west-1)"
                        ))
                    })?;
                if regions.is_empty() {
                    return Err(ConfigError::Invalid(format!(
                        "--principal {text:?} names no region after the colon; give PROFILE \
                         (the store's regions) or PROFILE:REGION,REGION"
                    )));
                }
                (name, regions)
            }
            None => (text, Vec::new()),
        };
        let principal = Self {
            name: name.trim().to_owned(),
            regions,
        };
        principal.check_name()?;
        Ok(principal)
    }

    fn check_name(&self) -> Result<(), ConfigError> {
        check_principal_name(&self.name)
    }
}

/// The default key file, created for a new store when no key was given.
pub fn default_key_file(data_dir: &Path) -> PathBuf {
    data_dir.join("store.key")
}

/// Checks that `name` can name a principal (an AWS profile's name, or
/// `default`); it goes into node ids, before a colon.
pub fn check_principal_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{name:?} is not a usable principal name: give the AWS profile's name (letters, \
             digits and - _ . @ +), or `default` for the standard credential chain"
        )))
    }
}

/// Where a node is: its principal and region, and the id they give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlace {
    /// The node's id: [`node_id`].
    pub id: String,
    /// Whose environment it runs in.
    pub principal: String,
    /// The region.
    pub region: Region,
}

/// A node's id: its region for the [`DEFAULT_PRINCIPAL`] (the one a store
/// made before principals has), `PRINCIPAL:REGION` for any other.
pub fn node_id(principal: &str, region: &Region) -> String {
    if principal == DEFAULT_PRINCIPAL {
        region.to_string()
    } else {
        format!("{principal}:{region}")
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct.
    #[error("{path} is not a valid configuration: {message}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// What is wrong, with line and column.
        message: String,
    },
    /// The values do not fit together.
    #[error("{0}")]
    Invalid(String),
}

impl DaemonConfig {
    /// Reads a TOML file; fields it does not name keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// The regions to run, defaults applied.
    pub fn regions(&self) -> Result<Vec<Region>, ConfigError> {
        if !self.regions.is_empty() {
            return Ok(self.regions.clone());
        }
        if self.emulated {
            return EMULATED_REGIONS
                .iter()
                .map(|r| Region::new(*r).map_err(|e| ConfigError::Invalid(e.to_string())))
                .collect();
        }
        Err(ConfigError::Invalid(
            "no regions: pass --regions (say us-east-1,eu-west-1,ap-southeast-1) or set \
             `regions` in the configuration file"
                .to_owned(),
        ))
    }

    /// The principals, defaults applied: [`DEFAULT_PRINCIPAL`] when none
    /// are configured.
    pub fn principals(&self) -> Vec<PrincipalConfig> {
        if self.principals.is_empty() {
            return vec![PrincipalConfig {
                name: DEFAULT_PRINCIPAL.to_owned(),
                regions: Vec::new(),
            }];
        }
        self.principals.clone()
    }

    /// Every node the configuration names, principal by principal.
    pub fn node_places(&self) -> Result<Vec<NodePlace>, ConfigError> {
        let mut places: Vec<NodePlace> = Vec::new();
        for p in self.principals() {
            p.check_name()?;
            let regions = if p.regions.is_empty() {
                self.regions()?
            } else {
                p.regions.clone()
            };
            for region in regions {
                let id = node_id(&p.name, &region);
                if places.iter().any(|have| have.id == id) {
                    return Err(ConfigError::Invalid(format!(
                        "{id} is named twice: give each principal once, and each of its \
                         regions once"
                    )));
                }
                places.push(NodePlace {
                    id,
                    principal: p.name.clone(),
                    region,
                });
            }
        }
        Ok(places)
    }

    /// The STUN servers, defaults applied.
    pub fn stun_servers(&self) -> Vec<String> {
        if !self.stun.is_empty() || self.emulated || self.endpoint_url.is_some() {
            return self.stun.clone();
        }
        PUBLIC_STUN_SERVERS
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }

    /// The agent quota in bytes.
    pub fn agent_quota_bytes(&self) -> Result<u64, ConfigError> {
        cloudshell_store::shard_store::parse_size(&self.agent_quota).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "agent_quota {:?} is not a size; try 900M or a number of bytes",
                self.agent_quota
            ))
        })
    }

    /// The heartbeat interval.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_secs.max(1))
    }

    /// How long a node may be gone before its shards are rebuilt elsewhere.
    pub fn repair_after(&self) -> Duration {
        Duration::from_secs(self.repair_after_secs)
    }

    /// Checks what can be checked before starting anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.node_places()?;
        self.agent_quota_bytes()?;
        let keys = [
            self.key_file.is_some(),
            self.passphrase_env.is_some(),
            self.no_encryption,
        ];
        if keys.iter().filter(|k| **k).count() > 1 {
            return Err(ConfigError::Invalid(
                "give one of --key-file, --passphrase-env and --no-encryption".to_owned(),
            ));
        }
        let tls = self.tls || self.tls_cert.is_some();
        if !self.listen.ip().is_loopback() && (self.token.is_none() || !tls) {
            return Err(ConfigError::Invalid(format!(
                "{} is not a loopback address: serve it with TLS (--tls for a self-signed \
                 certificate whose fingerprint clients pin, or --tls-cert and --tls-key) and \
                 a token (--token) so that nobody else on the network can read or use the \
                 store",
                self.listen
            )));
        }
        if let Some(s3) = self.s3_listen
            && !s3.ip().is_loopback()
            && !tls
        {
            return Err(ConfigError::Invalid(format!(
                "the S3 endpoint's {s3} is not a loopback address: serve it with TLS (--tls, or \
                 --tls-cert and --tls-key) so that objects do not cross the network in clear"
            )));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "give both --tls-cert and --tls-key (PEM files), or --tls for a self-signed \
                 certificate"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_sets_what_it_names_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.toml");
        std::fs::write(
            &path,
            "regions = [\"us-east-1\", \"eu-west-1\"]\nheartbeat_secs = 60\n",
        )
        .unwrap();
        let c = DaemonConfig::from_file(&path).unwrap();
        let names: Vec<String> = c.regions().unwrap().iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["us-east-1", "eu-west-1"]);
        assert_eq!(c.heartbeat(), Duration::from_secs(60));
        assert_eq!(c.agent_quota_bytes().unwrap(), 900 << 20);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.toml");
        std::fs::write(&path, "regoins = [\"us-east-1\"]\n").unwrap();
        let e = DaemonConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("regoins"), "{e}");
        std::fs::write(&path, "regions = [\"US East\"]\n").unwrap();
        let e = DaemonConfig::from_file(&path).unwrap_err().to_string();
        assert!(e.contains("not a region name"), "{e}");
        let c = DaemonConfig {
            agent_quota: "lots".into(),
            emulated: true,
            ..DaemonConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("lots"));
        let c = DaemonConfig::default();
        assert!(c.validate().unwrap_err().to_string().contains("--regions"));
        let c = DaemonConfig {
            emulated: true,
            listen: "0.0.0.0:8080".parse().unwrap(),
            ..DaemonConfig::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("token"));
        // A token without TLS would cross the network in clear.
        let c = DaemonConfig {
            token: Some("t".into()),
            ..c
        };
        assert!(c.validate().unwrap_err().to_string().contains("--tls"));
        let c = DaemonConfig { tls: true, ..c };
        c.validate().unwrap();
        let c = DaemonConfig {
            listen: "127.0.0.1:8080".parse().unwrap(),
            s3_listen: Some("0.0.0.0:8081".parse().unwrap()),
            tls: false,
            ..c
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("S3 endpoint")
        );
    }

    #[test]
    fn defaults_follow_the_mode() {
        let emulated = DaemonConfig {
            emulated: true,
            ..DaemonConfig::default()
        };
        let nine = emulated.regions().unwrap();
        assert_eq!(nine.len(), 9);
        assert!(nine.iter().all(Region::offers_cloudshell));
        assert!(emulated.stun_servers().is_empty());
        let aws = DaemonConfig {
            regions: vec![Region::new("us-east-1").unwrap()],
            ..DaemonConfig::default()
        };
        assert_eq!(aws.stun_servers().len(), 2);
    }

    #[test]
    fn principals_give_a_node_each_in_their_regions_and_bad_ones_are_named() {
        let c = DaemonConfig {
            emulated: true,
            principals: vec![
                PrincipalConfig::parse("default").unwrap(),
                PrincipalConfig::parse("work:us-east-1, eu-west-1").unwrap(),
            ],
            ..DaemonConfig::default()
        };
        let ids: Vec<String> = c.node_places().unwrap().into_iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), 9 + 2);
        assert_eq!(
            ids[0], "us-east-1",
            "the default principal's ids are its regions"
        );
        assert_eq!(&ids[9..], ["work:us-east-1", "work:eu-west-1"]);
        assert_eq!(c.principals().len(), 2);
        // None configured: the default principal, as before principals.
        let plain = DaemonConfig {
            emulated: true,
            ..DaemonConfig::default()
        };
        assert_eq!(plain.principals()[0].name, DEFAULT_PRINCIPAL);
        assert_eq!(plain.node_places().unwrap()[0].id, "us-east-1");
        // The same in a file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.toml");
        std::fs::write(
            &path,
            "regions = [\"us-east-1\"]\n[[principals]]\nname = \"default\"\n\
             [[principals]]\nname = \"home\"\nregions = [\"ap-south-1\"]\n",
        )
        .unwrap();
        let ids: Vec<String> = DaemonConfig::from_file(&path)
            .unwrap()
            .node_places()
            .unwrap()
            .into_iter()
            .map(|p| p.id)
            .collect();
        assert_eq!(ids, ["us-east-1", "home:ap-south-1"]);

        for (text, says) in [
            ("work:", "names no region"),
            ("work:mars", "not a region name"),
            ("a:b:us-east-1", "not a region name"),
            ("", "not a usable principal name"),
            ("my profile", "not a usable principal name"),
        ] {
            let e = PrincipalConfig::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text:?}: {e}");
        }
        let twice = DaemonConfig {
            emulated: true,
            principals: vec![
                PrincipalConfig::parse("work").unwrap(),
                PrincipalConfig::parse("work:us-east-1").unwrap(),
            ],
            ..DaemonConfig::default()
        };
        let e = twice.validate().unwrap_err().to_string();
        assert!(e.contains("work:us-east-1 is named twice"), "{e}");
    }
}
