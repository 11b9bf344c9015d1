//! `cloudshell-agent`: stores shards under a directory and serves them over
//! QUIC to the one daemon whose certificate fingerprint it is given. Prints
//! one JSON line on stdout with what the daemon needs to reach it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use cloudshell_agent::{ShardService, VERSION};
use cloudshell_net::tls::{Fingerprint, Identity};
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
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 10),
        Some((i, 'M' | 'm')) => (&t[..i], 20),
        Some((i, 'G' | 'g')) => (&t[..i], 30),
        _ => (t, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size; try 900M or a number of bytes"))
}

/// Asks each STUN server for this socket's public address. Failures are
/// reported, not fatal: a daemon on the same network can still connect.
fn learn_public_address(
    socket: &std::net::UdpSocket,
    local: SocketAddr,
    servers: &[String],
) -> (Option<SocketAddr>, &'static str) {
    use cloudshell_net::stun::{self, NatKind};
    use std::net::ToSocketAddrs as _;
    let mut seen = Vec::new();
    for server in servers {
        let addr = match server.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => a,
            _ => {
                eprintln!("cloudshell-agent: warning: cannot resolve STUN server {server}");
                continue;
            }
        };
        match stun::query(socket, addr, std::time::Duration::from_secs(3)) {
            Ok(mapped) => seen.push(mapped),
            Err(e) => eprintln!("cloudshell-agent: warning: {e}"),
        }
    }
    let nat = match seen.as_slice() {
        [] => "unknown",
        [one] if *one == local => "open",
        [_] => "unknown",
        [a, b, ..] => match stun::classify(local, *a, *b) {
            NatKind::Open => "open",
            NatKind::EndpointIndependent => "endpoint-independent",
            NatKind::Symmetric => {
                eprintln!(
                    "cloudshell-agent: warning: symmetric NAT: the STUN servers saw {a} and {b}; \
                     hole punching will fail from here; run the daemon where it can be reached \
                     directly, or behind a NAT that keeps ports (endpoint-independent mapping)"
                );
                "symmetric"
            }
        },
    };
    (seen.first().copied(), nat)
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
    let local = socket.local_addr()?;
    let (public, nat) = learn_public_address(&socket, local, &args.stun);
    let endpoint = cloudshell_net::quic::server_endpoint(socket, &identity, daemon)?;
    let line = serde_json::json!({
        "fingerprint": identity.fingerprint().to_string(),
        "local_addr": local.to_string(),
        "public_addr": public.map(|a| a.to_string()),
        "nat": nat,
        "version": VERSION,
    });
    println!("{line}");
    cloudshell_net::quic::serve(
        endpoint,
        Arc::new(ShardService::new(shards)),
        VERSION.to_owned(),
    )
    .await;
    Ok(())
}
