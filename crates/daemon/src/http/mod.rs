//! The daemon's HTTP side: the JSON API and the web UI on one listener
//! ([`api`]), Prometheus metrics ([`metrics`]), and the strict framing every
//! listener (S3's too) reads requests with ([`framing`]).

pub mod api;
pub mod framing;
pub mod latency;
pub mod metrics;
