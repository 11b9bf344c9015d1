//! The flags of `cloudshell store` and its subcommands.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `cloudshell store ...`
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The daemon's API.
    #[arg(
        long,
        global = true,
        env = "CLOUDSHELL_STORE_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub url: String,

    /// The daemon's token, when it has one.
    #[arg(
        long,
        global = true,
        env = "CLOUDSHELL_STORE_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    /// Trust the daemon's HTTPS certificate with this SHA-256 (what `store
    /// serve --tls` prints), whoever signed it.
    #[arg(
        long,
        global = true,
        env = "CLOUDSHELL_STORE_PIN",
        value_name = "SHA256"
    )]
    pub pin: Option<String>,

    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: StoreCommand,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Run the daemon: keep a node in every region, serve the API.
    ///
    /// With --emulated (or with no AWS credentials at all), an emulator runs
    /// in this process with nine local regions, each with a real agent.
    Serve(ServeArgs),
    /// Store a local file (or standard input with `-`).
    Put {
        /// The local file, or `-`.
        local: PathBuf,
        /// The name to store it under [default: the file's name].
        name: Option<String>,
    },
    /// Fetch a stored file into a local file (or standard output with `-`).
    Get {
        /// The stored name.
        name: String,
        /// Where to write it [default: its base name in this directory].
        local: Option<PathBuf>,
    },
    /// List stored files.
    Ls,
    /// Delete a stored file and its shards.
    Rm {
        /// The stored name.
        name: String,
    },
    /// The daemon's health, or one file with its shard map.
    Status {
        /// A stored name.
        name: Option<String>,
    },
    /// The nodes: state, region, capacity; `--quota` caps the store on one.
    Nodes {
        /// Cap what the store keeps on a node, below its agent's quota
        /// (`us-east-1=200M`; `us-east-1=none` lifts it; a principal's
        /// other than `default`: `work:us-east-1=200M`). Repeatable.
        #[arg(long, value_name = "NODE=SIZE")]
        quota: Vec<String>,
    },
    /// Rebuild missing and corrupt shards of every file now.
    Repair,
    /// Move shards from fuller nodes to emptier ones (after adding a region).
    Redistribute,
    /// The S3 endpoint's access keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Add a region: the daemon creates an environment there and installs an agent.
    AddRegion {
        /// The region, say sa-east-1.
        region: String,
        /// Whose environment: one of the principals the daemon runs
        /// [default: default].
        #[arg(long)]
        principal: Option<String>,
    },
    /// Change the store's passphrase: every data key is rewrapped under
    /// the new one (no shard is rewritten) and the old one stops working.
    #[command(subcommand)]
    Passphrase(PassphraseAction),
    /// Replace the store's key file with a new random key (a key file
    /// store); the old key stops working.
    #[command(subcommand)]
    KeyFile(KeyFileAction),
    /// Add or remove an AWS principal while the daemon runs.
    #[command(subcommand)]
    Principal(PrincipalAction),
    /// Mount the store on a directory (FUSE) until Ctrl-C or `umount DIR`.
    ///
    /// Directories come from the `/` in stored names; a file written there
    /// is stored as one new version when it is closed. See docs/mount.md.
    Mount {
        /// The directory to mount on (it must exist).
        dir: PathBuf,
        /// Refuse every change (writes fail with "Read-only file system").
        #[arg(long)]
        read_only: bool,
        /// Where written files wait until they are closed and stored; needs
        /// room for the largest file written at once [default: the system's
        /// temporary directory].
        #[arg(long, value_name = "DIR")]
        staging: Option<PathBuf>,
    },
    /// Remove a node: every shard it holds moves to the other nodes
    /// (checked), then it stops and its environment is suspended. Refused
    /// when the others are too few or too full to take its place.
    RemoveRegion {
        /// The node: its region, or PRINCIPAL:REGION for a principal other
        /// than `default`.
        node: String,
        /// Delete its environment (home and all) instead of suspending it.
        #[arg(long)]
        delete_environment: bool,
    },
    /// Run a scrub pass now (agents hash their shards in place; what is
    /// missing or corrupt is repaired; orphans are removed) and wait for it.
    Scrub,
    /// Rebuild the index in an empty data directory from the backups the
    /// daemon keeps on the nodes, with the store's key and its regions;
    /// then `store serve` with the same flags carries on.
    Recover(ServeArgs),
}

/// `cloudshell store passphrase ...`
#[derive(Debug, Subcommand)]
pub enum PassphraseAction {
    /// Change it: asks for the old one and the new one twice (or reads
    /// them from the environment, or as lines on standard input when it is
    /// not a terminal). Restart the daemon with the new one afterwards.
    Change {
        /// Take the old passphrase from this environment variable.
        #[arg(long, value_name = "VAR")]
        old_env: Option<String>,
        /// Take the new passphrase from this environment variable.
        #[arg(long, value_name = "VAR")]
        new_env: Option<String>,
    },
}

/// `cloudshell store key-file ...`
#[derive(Debug, Subcommand)]
pub enum KeyFileAction {
    /// Write a new random key to the daemon's key file (the old one is
    /// replaced once the index has switched to it). Copy it somewhere safe.
    Rotate,
}

/// `cloudshell store principal ...`
#[derive(Debug, Subcommand)]
pub enum PrincipalAction {
    /// Add a principal (an AWS profile) with a node in each of its regions;
    /// new writes spread over them at once (`store redistribute` moves
    /// older shards too).
    Add {
        /// PROFILE, or PROFILE:REGION,REGION [default regions: the daemon's].
        #[arg(value_name = "PROFILE[:REGIONS]")]
        principal: String,
    },
    /// Remove a principal: every shard on its nodes moves to the others
    /// (checked), then its nodes stop and their environments are suspended.
    /// Refused when the rest are too few or too full.
    Remove {
        /// The principal's name.
        name: String,
        /// Delete its environments (homes and all) instead of suspending them.
        #[arg(long)]
        delete_environments: bool,
    },
}

/// `cloudshell store keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Make an access key and print its secret (shown only now).
    Create {
        /// The S3 user the key acts as: what it creates is that user's,
        /// and ACLs and bucket policies name users [default: default].
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// List the access keys (without secrets).
    List,
    /// Delete an access key.
    Delete {
        /// Its access key id.
        access_key_id: String,
    },
}

/// `cloudshell store serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with the same settings as these flags (flags win).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Regions to keep a node in: `all`, or a comma-separated list
    /// [default: nine regions when emulated].
    #[arg(long, value_name = "all|LIST")]
    pub regions: Option<String>,
    /// Address of the API and web UI.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Index, identity and key live here [default: the user data directory].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store's key file (64 hex digits, mode 0600) [default: DATA_DIR/store.key, created for a new store].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["passphrase_env", "no_encryption"])]
    pub key_file: Option<PathBuf>,
    /// Take the passphrase from this environment variable.
    #[arg(long, value_name = "VAR", conflicts_with = "no_encryption")]
    pub passphrase_env: Option<String>,
    /// Store without encryption.
    #[arg(long)]
    pub no_encryption: bool,
    /// The agent binary to install on nodes [default: cloudshell-agent next to this program].
    #[arg(long, value_name = "FILE")]
    pub agent_binary: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate kept in DATA_DIR/tls
    /// (made on first start); clients pin the SHA-256 it prints. Needed
    /// off loopback.
    #[arg(long)]
    pub tls: bool,
    /// Serve HTTPS with this certificate (PEM, with its chain) ...
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls"
    )]
    pub tls_cert: Option<PathBuf>,
    /// ... and this private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require this bearer token on API requests (needed off loopback).
    #[arg(long, env = "CLOUDSHELL_STORE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// STUN server for the daemon and agents (repeat).
    #[arg(long, value_name = "HOST:PORT")]
    pub stun: Vec<String>,
    /// Address of the S3-compatible endpoint.
    #[arg(long, value_name = "ADDR")]
    pub s3_listen: Option<std::net::SocketAddr>,
    /// Seconds a node may be unreachable before its shards are rebuilt elsewhere.
    #[arg(long, value_name = "SECS")]
    pub repair_after: Option<u64>,
    /// An AWS principal whose environments hold nodes: an AWS profile
    /// (`default` for the standard credential chain), with its own regions
    /// after a colon or the store's (`--regions`). Repeat for several;
    /// without any, the store runs as `default`.
    #[arg(long = "principal", value_name = "PROFILE[:REGIONS]")]
    pub principals: Vec<String>,
    /// With --emulated: emulate this many principals (`default`, `p2`,
    /// `p3`, ...), each with its own credentials and a node in every region.
    #[arg(long, value_name = "N", conflicts_with = "principals")]
    pub emulate_principals: Option<usize>,
}
