//! Hole punching through real NATs: network namespaces with nftables
//! masquerade, built by the test (it needs root, `ip` and `nft`; CI runs it
//! as root).
//!
//! ```text
//!  laptop (this process, root namespace)        node namespace (agent)
//!  10.213.N.2                                   10.214.N.2
//!      |                                            |
//!  router "rl" (masquerade)                     router "rn" (masquerade)
//!  172.31.N.2                                   172.31.N.6
//!      \_____________ public namespace ____________/
//!                     STUN at 172.31.N.65 and 172.31.N.66
//! ```
//!
//! Each router drops unsolicited packets from its WAN side, as home routers
//! do, so nothing gets in without a mapping made from inside: the daemon
//! reaches the agent only because both punched.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.

mod common;

use std::io::{BufRead, BufReader, Read as _};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudshell_net::quic::{CONNECT_TIMEOUT, NetError, Pool, Route};
use cloudshell_net::stun::{self, NatKind};
use cloudshell_net::tls::Identity;
use cloudshell_net::wire::Request;
use cloudshell_node::RemoteShards;
use cloudshell_store::shard_store::ShardStore;
use common::{Agent, shard, start_under};

/// The namespaces, the root-side link, and the processes run in them; all
/// removed on drop.
struct Lab {
    prefix: String,
    n: u32,
    children: Vec<Child>,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_with_stdin(args: &[&str], input: &str) {
    use std::io::Write as _;
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} <<{input}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn ns(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn exec<'a>(&'a self, ns: &'a str) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(ns)]
    }

    fn ip(&self, ns: &str, args: &str) {
        let mut all: Vec<String> = vec!["ip".into(), "-n".into(), self.ns(ns)];
        all.extend(args.split_whitespace().map(str::to_owned));
        run(&all.iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn addr(&self, tail: &str) -> String {
        tail.replace('N', &self.n.to_string())
    }

    /// Builds the topology. `symmetric`: the node's router picks a random
    /// port for every flow.
    fn new() -> Lab {
        let pid = std::process::id();
        let lab = Lab {
            prefix: format!("csnat{pid}"),
            n: pid % 200 + 20,
            children: Vec::new(),
        };
        for ns in ["pub", "rl", "rn", "node"] {
            run(&["ip", "netns", "add", &lab.ns(ns)]);
            lab.ip(ns, "link set lo up");
        }
        // Laptop (root namespace) <-> router rl.
        let laptop_if = format!("csl{pid}");
        run(&[
            "ip",
            "link",
            "add",
            &laptop_if,
            "type",
            "veth",
            "peer",
            "name",
            "lan",
            "netns",
            &lab.ns("rl"),
        ]);
        run(&[
            "ip",
            "addr",
            "add",
            &lab.addr("10.213.N.2/24"),
            "dev",
            &laptop_if,
        ]);
        run(&["ip", "link", "set", &laptop_if, "up"]);
        run(&[
            "ip",
            "route",
            "add",
            &lab.addr("172.31.N.0/24"),
            "via",
            &lab.addr("10.213.N.1"),
        ]);
        lab.ip("rl", &lab.addr("addr add 10.213.N.1/24 dev lan"));
        lab.ip("rl", "link set lan up");
        // Router rl <-> public <-> router rn.
        for (router, wan, public) in [
            ("rl", "172.31.N.2", "172.31.N.1"),
            ("rn", "172.31.N.6", "172.31.N.5"),
        ] {
            run(&[
                "ip",
                "-n",
                &lab.ns(router),
                "link",
                "add",
                "wan",
                "type",
                "veth",
                "peer",
                "name",
                router,
                "netns",
                &lab.ns("pub"),
            ]);
            lab.ip(router, &lab.addr(&format!("addr add {wan}/30 dev wan")));
            lab.ip(router, "link set wan up");
            lab.ip(
                "pub",
                &lab.addr(&format!("addr add {public}/30 dev {router}")),
            );
            lab.ip("pub", &format!("link set {router} up"));
            lab.ip(
                router,
                &lab.addr(&format!("route add default via {public}")),
            );
        }
        lab.ip("pub", &lab.addr("addr add 172.31.N.65/32 dev lo"));
        lab.ip("pub", &lab.addr("addr add 172.31.N.66/32 dev lo"));
        // Router rn <-> node.
        run(&[
            "ip",
            "-n",
            &lab.ns("rn"),
            "link",
            "add",
            "lan",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &lab.ns("node"),
        ]);
        lab.ip("rn", &lab.addr("addr add 10.214.N.1/24 dev lan"));
        lab.ip("rn", "link set lan up");
        lab.ip("node", &lab.addr("addr add 10.214.N.2/24 dev eth0"));
        lab.ip("node", "link set eth0 up");
        lab.ip("node", &lab.addr("route add default via 10.214.N.1"));
        for ns in ["pub", "rl", "rn"] {
            run(&[
                "ip",
                "netns",
                "exec",
                &lab.ns(ns),
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ]);
        }
        lab.nat("rl", false);
        lab.nat("rn", false);
        lab
    }

    /// Masquerade on the router's WAN side, and drop what comes in from
    /// there unasked (dropped before its conntrack entry is confirmed, so a
    /// stray early packet cannot steal the port a later mapping wants).
    fn nat(&self, router: &str, symmetric: bool) {
        let random = if symmetric { " fully-random" } else { "" };
        let rules = format!(
            "flush ruleset
table ip nat {{
  chain post {{ type nat hook postrouting priority srcnat; oifname \"wan\" masquerade{random}; }}
}}
table inet fw {{
  chain input {{ type filter hook input priority filter; iifname \"wan\" ct state new drop; }}
  chain forward {{ type filter hook forward priority filter; iifname \"wan\" ct state new drop; }}
}}
"
        );
        run_with_stdin(
            &["ip", "netns", "exec", &self.ns(router), "nft", "-f", "-"],
            &rules,
        );
    }

    fn stun_servers(&self) -> Vec<String> {
        vec![self.addr("172.31.N.65:3478"), self.addr("172.31.N.66:3478")]
    }

    fn start_stun(&mut self) {
        let servers = self.stun_servers();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns("pub")])
            .arg(env!("CARGO_BIN_EXE_cloudshell-stun"))
            .args(servers.iter().flat_map(|s| ["--listen", s.as_str()]))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        for _ in &servers {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            assert!(line.starts_with("listening on"), "{line:?}");
        }
        self.children.push(child);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The root-side veth and its route go with their peer's namespace.
        for ns in ["node", "rn", "rl", "pub"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(ns)])
                .status();
        }
    }
}

/// Root, `ip` and `nft` are needed; say so plainly instead of failing
/// somewhere in the middle.
fn can_build_a_lab() -> bool {
    if std::env::var_os("CLOUDSHELL_SKIP_NETNS").is_some() {
        eprintln!("skipped: CLOUDSHELL_SKIP_NETNS is set");
        return false;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    let tools = ["ip", "nft"].iter().all(|t| {
        Command::new(t)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    assert!(
        root && tools,
        "the NAT test needs root and the `ip` (iproute2) and `nft` (nftables) commands; \
         .ci/run installs them; set CLOUDSHELL_SKIP_NETNS=1 to skip it on a machine without"
    );
    true
}

fn agent_in_node(
    lab: &Lab,
    daemon: &Identity,
    dir: &std::path::Path,
    punch: &[SocketAddr],
) -> Agent {
    let exec = lab.exec("node");
    let exec: Vec<&str> = exec.iter().map(String::as_str).collect();
    let servers = lab.stun_servers();
    let mut flags = vec!["--listen", "0.0.0.0:0", "--quota", "100M"];
    for s in &servers {
        flags.extend(["--stun", s.as_str()]);
    }
    let punch: Vec<String> = punch.iter().map(SocketAddr::to_string).collect();
    for p in &punch {
        flags.extend(["--punch", p.as_str()]);
    }
    start_under(&exec, daemon, dir, &flags, Stdio::piped())
}

fn route_of(agent: &Agent) -> Route {
    let line = &agent.line;
    let mut addrs = Vec::new();
    if let Some(public) = line["public_addr"].as_str() {
        addrs.push(public.parse().unwrap());
    }
    addrs.push(agent.addr);
    Route {
        addrs,
        nat: line["nat"].as_str().and_then(NatKind::parse),
    }
}

fn stderr_of(agent: &mut Agent) -> String {
    let _ = agent.child.kill();
    let mut s = String::new();
    agent
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hole_punching_through_nftables_masquerade() {
    if !can_build_a_lab() {
        return;
    }
    let mut lab = Lab::new();
    lab.start_stun();
    let servers = lab.stun_servers();

    // The daemon learns its public endpoint on the socket QUIC then uses.
    let socket = UdpSocket::bind(format!("{}:0", lab.addr("10.213.N.2"))).unwrap();
    let local = socket.local_addr().unwrap();
    let found = {
        let (socket, servers) = (socket.try_clone().unwrap(), servers.clone());
        tokio::task::spawn_blocking(move || {
            stun::discover(&socket, &servers, Duration::from_secs(3))
        })
        .await
        .unwrap()
    };
    assert_eq!(found.failures, Vec::<String>::new());
    assert_eq!(found.nat, Some(NatKind::EndpointIndependent), "{found:?}");
    let public = found.public.unwrap();
    assert_eq!(
        public.ip().to_string(),
        lab.addr("172.31.N.2"),
        "masqueraded"
    );
    let daemon = Identity::generate().unwrap();
    let pool = Pool::new(socket, &daemon).unwrap();
    pool.set_nat(found.nat);
    let dir = tempfile::tempdir().unwrap();

    // Without punching from the node's side, its router lets nothing in:
    // the NAT is real, and the failure is an error, not a hang.
    let mut silent = agent_in_node(&lab, &daemon, &dir.path().join("silent"), &[]);
    assert_eq!(
        silent.line["nat"], "endpoint-independent",
        "{}",
        silent.line
    );
    let client = pool.client(silent.fingerprint, route_of(&silent)).unwrap();
    let started = Instant::now();
    match client.request(&Request::Stats).await {
        Err(NetError::Connect { reason, .. }) => {
            assert!(reason.contains("no answer"), "{reason}");
        }
        other => panic!("reached an agent that never punched: {other:?}"),
    }
    assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(5));
    pool.remove(silent.fingerprint);
    drop(stderr_of(&mut silent));

    // Both sides punch: the connection comes through and shards flow.
    let agent = agent_in_node(&lab, &daemon, &dir.path().join("node"), &[public, local]);
    assert_eq!(agent.line["nat"], "endpoint-independent", "{}", agent.line);
    let route = route_of(&agent);
    assert_eq!(
        route.addrs[0].ip().to_string(),
        lab.addr("172.31.N.6"),
        "the agent's public address is its router's"
    );
    assert_eq!(route.addrs[1].ip().to_string(), lab.addr("10.214.N.2"));
    let shards = RemoteShards::new(pool.client(agent.fingerprint, route).unwrap());
    let mut stored = Vec::new();
    for chunk in 0..24 {
        let (k, b) = shard(chunk, (chunk % 9) as u8, 1_048_576);
        shards.put(k, b.clone()).await.unwrap();
        stored.push((k, b));
    }
    for (k, b) in &stored {
        assert_eq!(&shards.get(*k).await.unwrap(), b);
        assert_eq!(
            shards.verify(*k).await.unwrap(),
            *blake3::hash(b).as_bytes()
        );
    }
    let listed = shards.list(None, 1000).await.unwrap();
    assert_eq!(listed.len(), stored.len());
    assert_eq!(shards.stats().await.unwrap().shards, stored.len() as u64);
    drop(shards);
    drop(agent);

    // A node behind a random-port (symmetric) NAT: its STUN servers see
    // two ports; the agent says so, and the daemon's attempt ends in an
    // error that names the cause, within the connect timeout.
    lab.nat("rn", true);
    let mut agent = agent_in_node(&lab, &daemon, &dir.path().join("sym"), &[public, local]);
    assert_eq!(agent.line["nat"], "symmetric", "{}", agent.line);
    let client = pool.client(agent.fingerprint, route_of(&agent)).unwrap();
    let started = Instant::now();
    match client.request(&Request::Stats).await {
        Err(e @ NetError::Connect { .. }) => {
            let message = e.to_string();
            eprintln!("the daemon says: {message}");
            assert!(
                message.contains("symmetric NAT") && message.contains("hole punching cannot"),
                "{message}"
            );
        }
        other => panic!("expected a connection error naming the symmetric NAT, got {other:?}"),
    }
    assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(5));
    let warning = stderr_of(&mut agent);
    eprintln!("the agent says: {warning}");
    assert!(warning.contains("symmetric NAT"), "{warning}");
}
