//! The nodes' machinery before any store is opened over them: a CloudShell
//! client per node (from its principal's [`ClientSource`]: AWS, or an
//! endpoint such as an emulator), the daemon's QUIC socket and identity,
//! the agent binary, and one node manager per node.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudshell_net::quic::Pool;
use cloudshell_net::tls::Identity;
use tokio::sync::mpsc;

use crate::config::DaemonConfig;
use crate::error::{DaemonError, io};
use crate::nodes::manager::{AgentBinary, NodeEvent, NodeManager, Shared};
use crate::nodes::node::{NodeHandle, NodeState};
use crate::nodes::sources::Sources;

/// Everything that keeps the nodes up, before a store is opened over them.
pub(crate) struct Fleet {
    pub(crate) pool: Pool,
    pub(crate) nodes: Vec<NodeHandle>,
    pub(crate) store_nodes: Vec<cloudshell_store::Node>,
    managers: Vec<NodeManager>,
    pub(crate) events: mpsc::UnboundedReceiver<NodeEvent>,
    /// Counts every change live views should see.
    pub(crate) changes: Arc<tokio::sync::watch::Sender<u64>>,
    /// What a node added later is made with.
    pub(crate) shared: Arc<Shared>,
    pub(crate) sources: Sources,
}

impl Fleet {
    pub(crate) async fn new(config: &DaemonConfig, sources: Sources) -> Result<Self, DaemonError> {
        config.validate()?;
        let data_dir = config.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(io(format!("cannot create {}", data_dir.display())))?;
        // What the configuration names, with the nodes added and removed
        // while an earlier run of the daemon ran.
        let changes = crate::state::node_changes::NodeChanges::read(&data_dir)?;
        for id in &changes.removed {
            tracing::info!(node = %id, "removed earlier: not started (add it back with add-region)");
        }
        let places = changes.apply(config.node_places()?);
        let mut clients = Vec::new();
        for p in &places {
            clients.push(sources.get(&p.principal)?.client(&p.region).await?);
        }
        let identity = Identity::load_or_create(&data_dir.join("identity")).map_err(
            crate::error::net("cannot load or make the daemon's identity"),
        )?;
        let (pool, endpoints) = quic(config, &identity).await?;
        // Real CloudShell machines, not this one: the binary must suit them.
        let to_aws = clients.iter().any(|c| c.config().is_aws_endpoint());
        let agent = agent_binary(config, to_aws)?;
        let changes = Arc::new(tokio::sync::watch::channel(0u64).0);
        let nodes: Vec<NodeHandle> = places
            .iter()
            .map(|p| NodeHandle::new(p, changes.clone()))
            .collect();
        let store_nodes: Vec<cloudshell_store::Node> =
            nodes.iter().map(NodeHandle::store_node).collect();
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            fingerprint: identity.fingerprint(),
            endpoints,
            stun: config.stun_servers(),
            agent,
            quota: config.agent_quota_bytes()?,
            heartbeat: config.heartbeat(),
            repair_after: config.repair_after(),
            events: events_tx,
            refused: Default::default(),
        });
        let managers = clients
            .into_iter()
            .zip(nodes.iter().zip(&store_nodes))
            .map(|(client, (node, store_node))| {
                NodeManager::new(client, node.clone(), store_node.clone(), shared.clone())
            })
            .collect();
        Ok(Self {
            pool,
            nodes,
            store_nodes,
            managers,
            events,
            changes,
            shared,
            sources,
        })
    }

    /// Starts the node managers.
    pub(crate) fn run(&mut self) -> Vec<tokio::task::JoinHandle<()>> {
        self.managers
            .drain(..)
            .zip(&self.nodes)
            .map(|(m, node)| {
                let task = tokio::spawn(m.run());
                node.set_manager(task.abort_handle());
                task
            })
            .collect()
    }
}

/// Waits until every node in `nodes` is connected.
pub(crate) async fn wait_connected(
    nodes: &[NodeHandle],
    timeout: Duration,
) -> Result<(), DaemonError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let waiting: Vec<String> = nodes
            .iter()
            .map(NodeHandle::status)
            .filter(|s| s.state != NodeState::Connected)
            .map(|s| {
                format!(
                    "{} {:?}{}",
                    s.id,
                    s.state,
                    s.last_error.map(|e| format!(" ({e})")).unwrap_or_default()
                )
            })
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DaemonError::NotReady {
                after: timeout,
                detail: waiting.join("; "),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The daemon's QUIC socket and the endpoints agents punch towards: the
/// public address STUN saw, and the local one.
pub(crate) async fn quic(
    config: &DaemonConfig,
    identity: &Identity,
) -> Result<(Pool, Vec<SocketAddr>), DaemonError> {
    let socket = std::net::UdpSocket::bind(config.quic_listen)
        .map_err(io(format!("cannot bind UDP {}", config.quic_listen)))?;
    let servers = config.stun_servers();
    let probe = socket
        .try_clone()
        .map_err(io("cannot share the QUIC socket"))?;
    let found = {
        let servers = servers.clone();
        tokio::task::spawn_blocking(move || {
            cloudshell_net::stun::discover(&probe, &servers, Duration::from_secs(3))
        })
        .await
        .map_err(crate::error::net("STUN discovery stopped"))?
    };
    for f in &found.failures {
        tracing::warn!("STUN: {f}");
    }
    if let Some(w) = found.symmetric_warning() {
        tracing::warn!("{w}");
    }
    let bound = socket
        .local_addr()
        .map_err(io("the UDP socket has no address"))?;
    let mut endpoints: Vec<SocketAddr> = found.public.into_iter().collect();
    let local = if bound.ip().is_unspecified() {
        // The interface towards the STUN servers, or loopback without any:
        // then only agents on this machine (the emulator's) can reach us.
        let toward = servers.first().and_then(|s| {
            use std::net::ToSocketAddrs as _;
            s.to_socket_addrs().ok()?.next()
        });
        let ip = toward
            .and_then(|t| {
                let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
                s.connect(t).ok()?;
                Some(s.local_addr().ok()?.ip())
            })
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        SocketAddr::new(ip, bound.port())
    } else {
        bound
    };
    if !endpoints.contains(&local) {
        endpoints.push(local);
    }
    let pool =
        Pool::new(socket, identity).map_err(crate::error::net("cannot open the QUIC endpoint"))?;
    pool.set_nat(found.nat);
    Ok((pool, endpoints))
}

/// The agent binary: the configured one, or `cloudshell-agent` next to
/// this program, checked before it is sent anywhere. A binary that is not
/// a Linux x86-64 program is refused; one that needs a newer glibc than
/// CloudShell's is refused when `to_aws` (the shells are real CloudShell
/// machines) and only warned about otherwise (an emulator runs it here).
pub(crate) fn agent_binary(
    config: &DaemonConfig,
    to_aws: bool,
) -> Result<AgentBinary, DaemonError> {
    use super::agent_image::{CLOUDSHELL_GLIBC, inspect};
    let path = match &config.agent_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(io("cannot find this program"))?
            .with_file_name("cloudshell-agent"),
    };
    let bytes = std::fs::read(&path).map_err(io(format!(
        "cannot read the agent binary {} (build it with `scripts/build-agent`, or \
         point agent_binary / --agent-binary at it)",
        path.display()
    )))?;
    let refuse = |why: String| DaemonError::AgentBinary {
        path: path.clone(),
        why,
    };
    let image = inspect(&bytes).map_err(|e| refuse(e.to_string()))?;
    if !image.runs_on_cloudshell_glibc() {
        let needs = image.glibc.map(|v| v.to_string()).unwrap_or_default();
        let why = format!(
            "it needs glibc {needs}, newer than CloudShell's {CLOUDSHELL_GLIBC} (Amazon Linux 2)"
        );
        if to_aws {
            return Err(refuse(why));
        }
        tracing::warn!(
            agent = %path.display(),
            "{why}: fine for an emulator on this machine, not for real CloudShell"
        );
    }
    if to_aws && image.unstripped {
        tracing::warn!(
            agent = %path.display(),
            bytes = image.size,
            "the agent binary is not stripped; every byte goes to every region (`strip` it, or use `scripts/build-agent`)"
        );
    }
    Ok(AgentBinary::new(&path, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_agent(path: &std::path::Path) -> DaemonConfig {
        DaemonConfig {
            agent_binary: Some(path.to_owned()),
            ..DaemonConfig::default()
        }
    }

    #[test]
    fn an_agent_that_cannot_run_in_cloudshell_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        // What a Mac build would hand over.
        let script = dir.path().join("cloudshell-agent");
        std::fs::write(&script, "#!/bin/sh\nexec true\n").unwrap();
        for to_aws in [true, false] {
            let e = agent_binary(&config_with_agent(&script), to_aws)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not a Linux program (a script)"), "{e}");
            assert!(e.contains("scripts/build-agent"), "{e}");
        }

        // A program linked on this machine: against real CloudShell its
        // glibc is checked (this test binary needs a newer one than 2.26
        // on any current Linux); against an emulator it runs here.
        let here = std::env::current_exe().unwrap();
        let image = super::super::agent_image::inspect(&std::fs::read(&here).unwrap()).unwrap();
        let aws = agent_binary(&config_with_agent(&here), true);
        if image.runs_on_cloudshell_glibc() {
            assert!(aws.is_ok());
        } else {
            let e = aws.unwrap_err().to_string();
            assert!(
                e.contains("needs glibc 2.") && e.contains("Amazon Linux 2"),
                "{e}"
            );
        }
        assert!(agent_binary(&config_with_agent(&here), false).is_ok());

        let missing = dir.path().join("nowhere");
        let e = agent_binary(&config_with_agent(&missing), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot read the agent binary") && e.contains("nowhere"),
            "{e}"
        );
    }
}
