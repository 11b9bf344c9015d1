//! Prometheus metrics at `/metrics`, in the text exposition format: what is
//! stored, each node's shards, capacity and state, the repair backlog, and
//! API request latencies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::State;
use crate::node::NodeState;

/// Upper bounds of the latency histogram's buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

/// Request latencies by method, route and status class.
#[derive(Debug, Default)]
pub struct Latencies {
    series: Mutex<BTreeMap<(String, String, u16), Histogram>>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Latencies {
    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = series
            .entry((method.to_owned(), route.to_owned(), status / 100 * 100))
            .or_default();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    fn render(&self, out: &mut String) {
        let series = self
            .series
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        out.push_str("# HELP cloudshell_store_request_duration_seconds API request latency.\n");
        out.push_str("# TYPE cloudshell_store_request_duration_seconds histogram\n");
        for ((method, route, status), h) in series {
            let labels = format!(
                "method=\"{method}\",route=\"{}\",status=\"{status}\"",
                escape(&route)
            );
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "cloudshell_store_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "cloudshell_store_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "cloudshell_store_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "cloudshell_store_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

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
    fn(&crate::node::NodeStatus) -> u64,
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
        .map(crate::node::NodeHandle::status)
        .collect();
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
    let scrub = crate::scrub::status(state);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let l = Latencies::default();
        l.observe("GET", "/api/files", 200, Duration::from_millis(3));
        l.observe("GET", "/api/files", 204, Duration::from_millis(300));
        let mut out = String::new();
        l.render(&mut out);
        assert!(out.contains(
            "cloudshell_store_request_duration_seconds_bucket{method=\"GET\",route=\"/api/files\",status=\"200\",le=\"0.005\"} 1"
        ), "{out}");
        assert!(out.contains(
            "cloudshell_store_request_duration_seconds_bucket{method=\"GET\",route=\"/api/files\",status=\"200\",le=\"0.5\"} 2"
        ), "{out}");
        assert!(out.contains("cloudshell_store_request_duration_seconds_count{method=\"GET\",route=\"/api/files\",status=\"200\"} 2"));
    }
}
