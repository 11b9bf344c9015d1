//! The nodes: one per principal and region, each an agent in a CloudShell
//! environment.
//!
//! - [`environment`]: an environment made RUNNING, commands in its shell,
//!   uploads into its home;
//! - [`agent_image`]: whether an agent binary can run in CloudShell;
//! - [`bootstrap`]: the shell commands that install and start the agent;
//! - [`manager`]: [`manager::NodeManager`], one task per region that keeps
//!   its agent serving;
//! - [`node`]: a region's node: its status, and the store's view of it;
//! - [`health`]: what is known about the shards' health;
//! - [`sources`]: where each principal's CloudShell clients come from;
//! - `fleet`: every node's machinery, before a store is opened over them.

pub mod agent_image;
pub mod bootstrap;
pub mod environment;
pub(crate) mod fleet;
pub mod health;
pub mod manager;
pub mod node;
pub mod sources;
