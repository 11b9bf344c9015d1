//! Prometheus metrics at `/metrics`, in the text exposition format: what is
//! stored, each node's shards, capacity and state, the repair backlog, and
//! API request latencies.

use std::fmt::Write as _;

use crate::nodes::node::NodeState;
use crate::state::State;
use crate::state::latency::escape;

const STATES: [(NodeState, &str); 6] = [
    (NodeState::Provisioning, "provisioning"),
    (NodeState::Bootstrapping, "bootstrapping"),
    (NodeState::Connected, "connected"),
    (NodeState::Degraded, "degraded"),
    (NodeState::Lost, "lost"),
    (NodeState::Offline, "offline"),
];

/// A per-node gauge: its name, its help, and how to read it.
type NodeGauge = (
    &'static str,
    &'static str,
    fn(&crate::nodes::node::NodeStatus) -> u64,
);

/// The whole exposition.
pub fn render(state: &State) -> String {
    let mut out = String::new();
    let files = state.store.index().files().unwrap_or_default();
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    gauge(
        &mut out,
        "cloudshell_store_files",
        "Files stored.",
        files.len() as f64,
    );
    gauge(
        &mut out,
        "cloudshell_store_bytes_stored",
        "Bytes of files stored (before coding).",
        bytes as f64,
    );

    let statuses: Vec<_> = state
        .nodes()
        .iter()
        .map(crate::nodes::node::NodeHandle::status)
        .collect();
    let settings = cloudshell_store::StoreSettings::default();
    let capacity = crate::state::capacity(&statuses, settings.k, settings.m);
    header(
        &mut out,
        "cloudshell_store_capacity_bytes",
        "Capacity of the nodes that are not draining: raw (shards) and usable (file bytes after coding), total, used and free; per principal, and in all (principal=\"\").",
        "gauge",
    );
    let rows = std::iter::once(("", capacity.total)).chain(
        capacity
            .principals
            .iter()
            .map(|p| (p.principal.as_str(), p.capacity)),
    );
    for (principal, c) in rows {
        for (kind, value) in [
            ("raw", c.raw),
            ("raw_used", c.used),
            ("raw_free", c.free),
            ("usable", c.usable),
            ("usable_free", c.usable_free),
        ] {
            let _ = writeln!(
                out,
                "cloudshell_store_capacity_bytes{{kind=\"{kind}\",principal=\"{}\"}} {value}",
                escape(principal)
            );
        }
    }
    let per_node: [NodeGauge; 3] = [
        (
            "cloudshell_store_node_shards",
            "Shards a node holds.",
            |s| s.shards,
        ),
        (
            "cloudshell_store_node_used_bytes",
            "Bytes of shards a node holds.",
            |s| s.used,
        ),
        (
            "cloudshell_store_node_quota_bytes",
            "A node's quota.",
            |s| s.quota,
        ),
    ];
    for (name, help, value) in per_node {
        header(&mut out, name, help, "gauge");
        for s in &statuses {
            let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", escape(&s.id), value(s));
        }
    }
    header(
        &mut out,
        "cloudshell_store_node_state",
        "1 for the state a node is in.",
        "gauge",
    );
    for s in &statuses {
        for (st, name) in STATES {
            let _ = writeln!(
                out,
                "cloudshell_store_node_state{{node=\"{}\",state=\"{name}\"}} {}",
                escape(&s.id),
                u8::from(s.state == st)
            );
        }
    }

    // Shards placed on nodes that cannot serve them now: what repair would
    // rebuild if those nodes stayed away.
    let serving: std::collections::HashSet<String> = state
        .store
        .nodes()
        .into_iter()
        .filter(|n| n.is_online())
        .map(|n| n.id)
        .collect();
    let mut backlog = 0u64;
    for f in &files {
        if let Ok(Some((_, manifest))) = state.store.index().file(&f.name) {
            backlog += manifest
                .chunks
                .iter()
                .flat_map(|c| &c.shards)
                .filter(|s| !serving.contains(&s.node))
                .count() as u64;
        }
    }
    gauge(
        &mut out,
        "cloudshell_store_repair_backlog_shards",
        "Shards placed on nodes that are not serving.",
        backlog as f64,
    );
    let scrub = crate::upkeep::scrub::status(state);
    gauge(
        &mut out,
        "cloudshell_store_scrub_running",
        "1 while a scrub pass runs.",
        f64::from(u8::from(scrub.running)),
    );
    gauge(
        &mut out,
        "cloudshell_store_scrub_last_finished_seconds",
        "When the last scrub pass finished (seconds since the epoch).",
        scrub.last_finished.unwrap_or(0) as f64,
    );
    state.latencies.render(&mut out);
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    header(out, name, help, "gauge");
    let _ = writeln!(out, "{name} {value}");
}
