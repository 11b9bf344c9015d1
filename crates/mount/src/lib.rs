//! The store as a mounted filesystem (FUSE, with the pure-Rust `fuser`):
//! a client of the daemon's JSON API, like the CLI, so it mounts a store
//! served on this machine or (over HTTPS, with a token) elsewhere.
//!
//! - Directories are the `/`-separated segments of the stored names;
//!   `mkdir` makes one that lives in the mount until a file is put in it.
//! - Reads are ranged reads of one version (If-Match on every range after
//!   the first), with a read-ahead window that grows while reading goes
//!   straight on. A file replaced while open fails with ESTALE rather than
//!   mixing two versions' bytes.
//! - Writes go to a local staging file and are stored as one new version
//!   when the file is closed (or synced): nobody sees half a file, and a
//!   store that refuses (ENOSPC, EIO) leaves the previous version.
//! - `rename` renames in the index (no data moves); a directory's files
//!   are renamed one by one.
//! - `df` shows usable capacity (after coding) and what is free of it.
//! - The S3 endpoint's objects (`s3/`) are shown read-only; its uploads,
//!   versions and staging are not shown.
//!
//! The namespace model ([`tree`]) and the read-ahead planning
//! ([`reader::ReadAhead`]) do no I/O and are tested on their own.

mod errors;
mod fs;
pub mod reader;
mod session;
pub mod tree;
mod writer;

pub use fs::{Settings, StoreFs};
pub use session::{MountError, MountRequest, run};
