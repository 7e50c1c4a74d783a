//! Where a running agent can be reached: written by the agent into its data
//! dir once it serves, read by whoever started it (the demo, the benches,
//! the process tests). This is how an agent asked for port 0 reports the
//! ports it got: nothing probes a port and hopes.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// The file's name in the data dir.
pub const FILE_NAME: &str = "agent.json";

/// The contents of [`FILE_NAME`]: JSON, written atomically, removed at a
/// clean stop (a file whose `pid` is not running is left by a crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Addresses {
    /// The agent's process id.
    pub pid: u32,
    /// The HTTP API, as bound.
    pub http: SocketAddr,
    /// The gossip socket, as bound.
    pub gossip: SocketAddr,
    /// The p2p endpoint (placement offers), as bound.
    pub p2p: SocketAddr,
}
