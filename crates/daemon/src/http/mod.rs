//! The daemon's HTTP side: the JSON API and the web UI on one listener
//! ([`api`], its handlers by concern beside it), Prometheus metrics
//! ([`metrics`]; request latencies are kept in `state::latency`), and the
//! strict framing every listener (S3's too) reads requests with
//! ([`framing`]).

pub mod api;
mod error;
mod files;
pub mod framing;
mod guard;
mod jobs;
mod keys;
pub mod metrics;
mod nodes;
pub mod tls;
mod ui;

pub use error::ApiError;
pub(crate) use guard::{close_after_refused_body, one_length, s3_cors, s3_post_form, s3_precheck};
