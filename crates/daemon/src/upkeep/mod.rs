//! What runs in the background once the store is open.
//!
//! - [`repair`]: rebuilds what a lost or wiped node held, retries
//!   unfinished repairs;
//! - [`scrub`]: the scrubber, which verifies every shard in place;
//! - `backup`: the index backup after changes;
//! - `drain`: shards moved off draining nodes (a principal whose
//!   credentials are refused);
//! - [`jobs`]: the work of the jobs the API starts (repair of every file,
//!   redistribution);
//! - `memory`: freed memory given back to the system after transfers.

pub(crate) mod backup;
pub(crate) mod drain;
pub mod jobs;
pub(crate) mod memory;
pub mod repair;
pub mod scrub;
