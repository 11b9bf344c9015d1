//! API request latencies, kept as Prometheus histograms by method, route
//! and status class. A leaf: the state holds one, the HTTP middleware
//! fills it, `http::metrics` renders it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

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

    /// Appends the histogram in the text exposition format.
    pub fn render(&self, out: &mut String) {
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

pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
