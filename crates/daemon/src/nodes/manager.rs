//! The node manager: one task per node (a principal's environment in a
//! region) that keeps an agent serving it.
//!
//! provisioning (environment RUNNING) -> bootstrapping (agent installed,
//! started, punched, connected) -> connected (heartbeats, health checks)
//! -> degraded when the agent stops answering -> bootstrapping again; lost
//! when it has been gone longer than the repair delay.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cloudshell::{Client, EnvironmentId};
use cloudshell_net::quic::Pool;
use cloudshell_net::tls::Fingerprint;
use cloudshell_node::RemoteShards;
use cloudshell_store::shard_store::ShardStore as _;
use tokio::sync::mpsc;

use crate::nodes::bootstrap::{self, AgentArgs, AgentLine, BootstrapError};
use crate::nodes::environment::{self, EnvironmentError};
use crate::nodes::node::{NodeHandle, NodeState};

/// How a node's draining reason begins when its principal's credentials
/// are refused.
const REFUSED: &str = "its principal's credentials are refused";

/// How often a connected agent is asked for its stats.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// How long a health check may take: an agent that was killed answers
/// nothing at all (UDP has no connection to reset), so silence is the sign.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed health checks in a row before the node counts as degraded.
pub const HEALTH_FAILURES: u32 = 2;
/// The longest wait between two attempts to bring a node back.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The agent binary the daemon installs.
#[derive(Debug, Clone)]
pub struct AgentBinary {
    /// Where it is; read again for each install, so the daemon does not
    /// hold it (an unstripped build is 40 MB) for its whole life.
    pub path: std::path::PathBuf,
    /// Its SHA-256, hex, when the daemon started.
    pub sha256: String,
}

impl AgentBinary {
    /// The binary at `path`, whose bytes (read by the caller, who
    /// inspects them too) are `bytes`.
    pub fn new(path: &std::path::Path, bytes: &[u8]) -> Self {
        Self {
            path: path.to_path_buf(),
            sha256: cloudshell_ssm::transfer::Sha256::of(bytes).hex(),
        }
    }

    /// Reads it for an install: the bytes the daemon checked at start, or
    /// an error if the file has changed since (an install must send the
    /// version the daemon announced, checked by its SHA-256).
    pub async fn read(&self) -> Result<bytes::Bytes, NodeError> {
        let bytes = tokio::fs::read(&self.path)
            .await
            .map_err(|e| NodeError::AgentBinary {
                path: self.path.clone(),
                why: e.to_string(),
            })?;
        let sha256 = cloudshell_ssm::transfer::Sha256::of(&bytes).hex();
        if sha256 != self.sha256 {
            return Err(NodeError::AgentBinary {
                path: self.path.clone(),
                why: "it changed since the daemon started (restart the daemon to install the new one)"
                    .to_owned(),
            });
        }
        Ok(bytes::Bytes::from(bytes))
    }
}

/// What every node manager shares.
#[derive(Debug)]
pub struct Shared {
    /// The daemon's QUIC connections.
    pub pool: Pool,
    /// The daemon's certificate, which agents are told to accept.
    pub fingerprint: Fingerprint,
    /// Where agents punch towards.
    pub endpoints: Vec<SocketAddr>,
    /// STUN servers for agents.
    pub stun: Vec<String>,
    /// What to install.
    pub agent: AgentBinary,
    /// Each agent's quota.
    pub quota: u64,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// How long a node may be gone before it is lost.
    pub repair_after: Duration,
    /// Where node events go.
    pub events: mpsc::UnboundedSender<NodeEvent>,
    /// Principals whose credentials the control API refuses, with what it
    /// said: their nodes drain while their agents still answer (their
    /// environments suspend once nobody can send them heartbeats).
    pub refused: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Shared {
    /// Why `principal`'s credentials are refused, if they are.
    pub fn refused(&self, principal: &str) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(principal)
            .cloned()
    }

    fn set_refused(&self, principal: &str, why: Option<String>) {
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match why {
            Some(why) => {
                if refused.insert(principal.to_owned(), why.clone()).is_none() {
                    tracing::warn!(
                        principal,
                        "the control API refuses this principal's credentials ({why}): its \
                         nodes take no new shards, and their shards move to the other nodes \
                         while the agents still answer"
                    );
                }
            }
            None => {
                if refused.remove(principal).is_some() {
                    tracing::info!(principal, "the control API accepts this principal again");
                }
            }
        }
    }
}

/// What the rest of the daemon hears from node managers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    /// A node is serving; `fresh_home` when its agent found no shards (a
    /// new or reclaimed environment).
    Connected {
        /// Which node.
        node: String,
        /// No shards were there.
        fresh_home: bool,
    },
    /// A node has been gone longer than the repair delay.
    Lost {
        /// Which node.
        node: String,
    },
}

/// Why bringing a node up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The environment.
    #[error(transparent)]
    Environment(#[from] EnvironmentError),
    /// The agent's installation or start.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    /// Connecting to the agent.
    #[error("connecting to the agent")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The agent binary could not be read again for an install.
    #[error("cannot install the agent binary {}: {why}", path.display())]
    AgentBinary {
        /// Where it is.
        path: std::path::PathBuf,
        /// What went wrong.
        why: String,
    },
}

/// Keeps one node served.
pub struct NodeManager {
    /// The node's id, for logs and events.
    id: String,
    client: Client,
    node: NodeHandle,
    store_node: cloudshell_store::Node,
    shared: Arc<Shared>,
}

impl NodeManager {
    /// A manager of `node`'s environment, reached through `client` (of its
    /// principal and region).
    pub fn new(
        client: Client,
        node: NodeHandle,
        store_node: cloudshell_store::Node,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            id: store_node.id.clone(),
            client,
            node,
            store_node,
            shared,
        }
    }

    /// Runs until the task is aborted.
    pub async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        let mut down_since = tokio::time::Instant::now();
        let mut lost_reported = false;
        loop {
            match self.bring_up().await {
                Ok((env, remote)) => {
                    backoff = Duration::from_secs(1);
                    lost_reported = false;
                    self.watch(&env, &remote).await;
                    down_since = tokio::time::Instant::now();
                }
                Err(e) => {
                    if let NodeError::Environment(env) = &e
                        && env.credentials_refused()
                    {
                        self.shared
                            .set_refused(&self.principal(), Some(env.to_string()));
                    }
                    self.follow_refusal();
                    tracing::warn!(node = %self.id, "node not up: {}", crate::error::with_sources(&e));
                    let lost = down_since.elapsed() >= self.shared.repair_after;
                    self.node.update(|s| {
                        s.last_error = Some(crate::error::with_sources(&e));
                        if s.state != NodeState::Offline {
                            s.state = if lost {
                                NodeState::Lost
                            } else {
                                NodeState::Degraded
                            };
                        }
                    });
                    if lost && !lost_reported {
                        lost_reported = true;
                        let _ = self.shared.events.send(NodeEvent::Lost {
                            node: self.id.clone(),
                        });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn principal(&self) -> String {
        self.store_node.principal.clone()
    }

    /// Drains the node while its principal's credentials are refused, and
    /// stops once they are accepted again. A node draining for another
    /// reason (being removed) is left to that: accepted credentials must
    /// not put it back in service halfway through its removal.
    fn follow_refusal(&self) {
        let drains_for_other_reason = self
            .node
            .status()
            .draining
            .is_some_and(|d| !d.starts_with(REFUSED));
        if drains_for_other_reason {
            return;
        }
        let why = self.shared.refused(&self.principal()).map(|why| {
            format!("{REFUSED} ({why}); its shards move to the other nodes while its agent answers")
        });
        self.store_node.set_draining(why.is_some());
        if self.node.status().draining != why {
            self.node.update(|s| s.draining = why);
        }
    }

    fn set_state(&self, state: NodeState) {
        self.node.update(|s| {
            if s.state != NodeState::Offline {
                s.state = state;
            }
        });
    }

    /// Environment, agent, connection.
    async fn bring_up(&self) -> Result<(EnvironmentId, RemoteShards), NodeError> {
        let first = self.node.status().fingerprint.is_none();
        self.set_state(if first {
            NodeState::Provisioning
        } else {
            self.node.status().state
        });
        let env = environment::ensure_running(&self.client).await?;
        self.node
            .update(|s| s.environment_id = Some(env.as_str().to_owned()));
        self.set_state(if first {
            NodeState::Bootstrapping
        } else {
            self.node.status().state
        });
        let (line, fresh_home) = self.start_agent(&env).await?;
        let client = self
            .shared
            .pool
            .client(line.fingerprint, line.route())
            .map_err(|e| NodeError::Connect(e.into()))?;
        let remote = RemoteShards::new(client);
        let stats = remote
            .stats()
            .await
            .map_err(|e| NodeError::Connect(e.into()))?;
        self.node.serve(Some(remote.clone()));
        if self.node.status().state != NodeState::Offline {
            self.store_node.set_online(true);
        }
        self.node.update(|s| {
            s.fingerprint = Some(line.fingerprint.to_string());
            s.addresses = line.route().addrs.iter().map(ToString::to_string).collect();
            s.nat = line.nat.map(|n| n.to_string());
            s.agent_pid = Some(line.pid);
            crate::nodes::node::absorb(s, &stats, &self.store_node);
            s.last_error = None;
            if s.state != NodeState::Offline {
                s.state = NodeState::Connected;
            }
        });
        let _ = self.shared.events.send(NodeEvent::Connected {
            node: self.id.clone(),
            fresh_home,
        });
        Ok((env, remote))
    }

    /// Installs the agent if it is missing or another version, starts it,
    /// and reads its line. Also says whether the home held no shards.
    async fn start_agent(&self, env: &EnvironmentId) -> Result<(AgentLine, bool), NodeError> {
        let (_, out) = environment::run(&self.client, env, &bootstrap::prepare_command()).await?;
        let installed = bootstrap::parse_prepare(&out)?;
        if installed.agent_sha256.as_deref() != Some(self.shared.agent.sha256.as_str()) {
            let bytes = self.shared.agent.read().await?;
            if let Err(e) =
                environment::upload(&self.client, env, bootstrap::UPLOAD_PATH, bytes.clone()).await
            {
                tracing::info!(
                    node = %self.id,
                    "the upload form did not take the agent ({e}); sending it through the shell"
                );
                environment::upload_through_shell(&self.client, env, bootstrap::UPLOAD_PATH, bytes)
                    .await?;
            }
            let (code, out) = environment::run(
                &self.client,
                env,
                &bootstrap::install_command(&self.shared.agent.sha256),
            )
            .await?;
            bootstrap::parse_install(code, &out)?;
        }
        let args = AgentArgs {
            daemon: self.shared.fingerprint,
            quota: self.shared.quota,
            stun: self.shared.stun.clone(),
            punch: self.shared.endpoints.clone(),
        };
        let (code, out) =
            environment::run(&self.client, env, &bootstrap::start_command(&args)).await?;
        Ok((bootstrap::parse_start(code, &out)?, !installed.has_shards))
    }

    /// Heartbeats and health checks until the agent stops answering.
    async fn watch(&self, env: &EnvironmentId, remote: &RemoteShards) {
        let mut last_heartbeat: Option<tokio::time::Instant> = None;
        let mut failures = 0;
        let mut first = true;
        loop {
            if !first {
                tokio::time::sleep(HEALTH_INTERVAL).await;
            }
            first = false;
            if last_heartbeat.is_none_or(|t| t.elapsed() >= self.shared.heartbeat) {
                match environment::heartbeat(&self.client, env).await {
                    Ok(()) => {
                        self.shared.set_refused(&self.principal(), None);
                        last_heartbeat = Some(tokio::time::Instant::now());
                        self.node
                            .update(|s| s.last_heartbeat = Some(crate::nodes::node::now_secs()));
                    }
                    Err(e) => {
                        // A failed heartbeat is sent again at the next check,
                        // so the drain stops soon after they work again.
                        if e.credentials_refused() {
                            // Said once for the principal, not every 5 s
                            // for each of its nodes.
                            self.shared
                                .set_refused(&self.principal(), Some(e.to_string()));
                            tracing::debug!(node = %self.id, "heartbeat: {e}");
                        } else {
                            tracing::warn!(node = %self.id, "heartbeat: {e}");
                        }
                    }
                }
            }
            self.follow_refusal();
            let asked = tokio::time::Instant::now();
            let check = tokio::time::timeout(HEALTH_TIMEOUT, remote.stats())
                .await
                .unwrap_or_else(|_| {
                    Err(cloudshell_store::ShardError::Unavailable(format!(
                        "no answer to a health check within {HEALTH_TIMEOUT:?}"
                    )))
                });
            match check {
                Ok(stats) => {
                    failures = 0;
                    let took = asked.elapsed();
                    self.node.update(|s| {
                        crate::nodes::node::absorb(s, &stats, &self.store_node);
                        s.latency_ms = Some(took.as_secs_f64() * 1000.0);
                        if s.state == NodeState::Degraded {
                            s.state = NodeState::Connected;
                        }
                    });
                }
                Err(e) => {
                    failures += 1;
                    self.node
                        .update(|s| s.last_error = Some(crate::error::with_sources(&e)));
                    if failures >= HEALTH_FAILURES {
                        break;
                    }
                }
            }
        }
        self.node.serve(None);
        self.store_node.set_online(false);
        self.set_state(NodeState::Degraded);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.
    use super::*;

    #[tokio::test]
    async fn the_agent_binary_is_read_for_each_install_and_refused_once_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cloudshell-agent");
        std::fs::write(&path, b"\x7fELF version one").unwrap();
        let agent = AgentBinary::new(&path, &std::fs::read(&path).unwrap());
        assert_eq!(&agent.read().await.unwrap()[..], b"\x7fELF version one");
        // Rebuilt in place while the daemon runs: the announced SHA-256
        // no longer matches what an install would send.
        std::fs::write(&path, b"\x7fELF version two").unwrap();
        let e = agent.read().await.unwrap_err().to_string();
        assert!(e.contains("changed since the daemon started"), "{e}");
        assert!(e.contains("restart the daemon"), "{e}");
        std::fs::remove_file(&path).unwrap();
        let e = agent.read().await.unwrap_err().to_string();
        assert!(e.contains("cannot install the agent binary"), "{e}");
    }
}
