//! `cloudshell-agent`: stores shards under a directory and serves them over
//! QUIC to the one daemon whose certificate fingerprint it is given. Prints
//! one JSON line on stdout with what the daemon needs to reach it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use cloudshell_net::punch;
use cloudshell_net::stun::{self, NatKind};
use cloudshell_net::tls::{Fingerprint, Identity};
use cloudshell_node::{Announcement, ShardService, VERSION};
use cloudshell_store::LocalDirStore;

/// Stores the file store's shards and serves them to one daemon over QUIC.
#[derive(Debug, Parser)]
#[command(name = "cloudshell-agent", version)]
struct Args {
    /// SHA-256 fingerprint of the daemon's certificate: the only peer served.
    #[arg(long, value_name = "HEX")]
    daemon_fingerprint: String,

    /// Where shards and the agent's identity live [default: ~/.cloudshell-agent].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Bytes of shards to hold at most (suffixes K, M, G).
    #[arg(long, default_value = "900M", value_parser = parse_size, value_name = "SIZE")]
    quota: u64,

    /// UDP address to listen on.
    #[arg(long, default_value = "0.0.0.0:0", value_name = "ADDR")]
    listen: SocketAddr,

    /// STUN server to learn the public address from, on the socket QUIC then
    /// uses (repeat: two servers tell a symmetric NAT apart).
    #[arg(long, value_name = "HOST:PORT")]
    stun: Vec<String>,

    /// The daemon's endpoint (its public and its local address: repeat) to
    /// send hole-punching datagrams to whenever it is not connected, so its
    /// connection can come in through this side's NAT.
    #[arg(long, value_name = "ADDR")]
    punch: Vec<SocketAddr>,
}

/// How long each STUN server gets to answer (retransmitting meanwhile).
const STUN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

fn parse_size(s: &str) -> Result<u64, String> {
    cloudshell_store::shard_store::parse_size(s)
        .ok_or_else(|| format!("{s:?} is not a size; try 900M or a number of bytes"))
}

/// The local address to print: a wildcard bind is replaced by the address
/// of the interface that leads towards the daemon (or the STUN servers),
/// which a peer on the same network can use.
fn reachable_local(bound: SocketAddr, toward: &[SocketAddr]) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let Some(toward) = toward.first() else {
        return bound;
    };
    // A connected UDP socket sends nothing; it only asks the kernel's
    // routing table which source address it would use.
    let probe = std::net::UdpSocket::bind(SocketAddr::new(bound.ip(), 0))
        .and_then(|s| s.connect(toward).map(|()| s))
        .and_then(|s| s.local_addr());
    match probe {
        Ok(a) => SocketAddr::new(a.ip(), bound.port()),
        Err(_) => bound,
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    cloudshell_store::malloc::settle();
    // One thread (and the blocking pool for file work): an agent serves one
    // daemon over one link, which a thread keeps busy many times over, and
    // nine agents on one machine (the emulated store) woke each other's
    // idle workers for nothing.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cloudshell-agent: error: cannot start: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cloudshell-agent: error: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let daemon = Fingerprint::parse(&args.daemon_fingerprint).context(
        "--daemon-fingerprint must be 64 hex digits (the SHA-256 of the daemon's certificate)",
    )?;
    let dir = match args.data_dir {
        Some(d) => d,
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("HOME is not set; pass --data-dir")?
            .join(".cloudshell-agent"),
    };
    let identity = Identity::load_or_create(&dir.join("identity"))?;
    let shards = LocalDirStore::open(dir.join("shards"), args.quota)
        .with_context(|| format!("cannot open {}", dir.join("shards").display()))?;
    let socket = std::net::UdpSocket::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let toward: Vec<SocketAddr> = {
        use std::net::ToSocketAddrs as _;
        let stun = args
            .stun
            .iter()
            .filter_map(|s| s.to_socket_addrs().ok()?.next());
        args.punch.iter().copied().chain(stun).collect()
    };
    let local = reachable_local(socket.local_addr()?, &toward);
    let found = stun::discover(&socket, &args.stun, STUN_TIMEOUT);
    for failure in &found.failures {
        eprintln!("cloudshell-agent: warning: {failure}");
    }
    if let Some(warning) = found.symmetric_warning() {
        eprintln!("cloudshell-agent: warning: {warning}");
    }
    let punch_socket = socket
        .try_clone()
        .context("cannot share the socket for hole punching")?;
    let endpoint = cloudshell_net::quic::server_endpoint(socket, &identity, daemon)?;
    let line = Announcement {
        fingerprint: identity.fingerprint().to_string(),
        local_addr: local,
        public_addr: found.public,
        nat: Some(found.nat.map_or("unknown", NatKind::as_str).to_owned()),
        pid: std::process::id(),
        version: Some(VERSION.to_owned()),
    };
    println!(
        "{}",
        serde_json::to_string(&line).context("cannot write the announcement")?
    );
    let watched = endpoint.clone();
    tokio::spawn(punch::while_unconnected(
        punch_socket,
        args.punch,
        move || watched.open_connections() > 0,
    ));
    cloudshell_net::quic::serve(
        endpoint,
        Arc::new(ShardService::new(shards)),
        VERSION.to_owned(),
    )
    .await;
    Ok(())
}
