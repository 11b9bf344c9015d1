//! The store daemon's JSON API as one contract both ends share.
//!
//! - [`types`]: every request and answer (files, nodes, jobs, health,
//!   scrub, S3 keys, errors), serde types the daemon sends and the CLI
//!   reads;
//! - [`openapi`]: the OpenAPI document, generated from those types;
//! - [`Client`]: a typed client, one method per operation.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), cloudshell_store_api::ClientError> {
//! use cloudshell_store_api::Client;
//!
//! let api = Client::new("http://127.0.0.1:8080", None)?;
//! let health = api.health().await?;
//! println!("{} of {} nodes connected", health.connected, health.nodes);
//! for f in api.files().await?.files {
//!     println!("{} {}", f.file.size, f.file.name);
//! }
//! # Ok(())
//! # }
//! ```

mod client;
pub mod openapi;
pub mod types;

pub use client::{Client, ClientError, Download};
pub use types::*;
