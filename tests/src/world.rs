//! What every simulated host shares: the gossip port, the simulated
//! clock, the deterministic keys and the seed list. A leaf of this crate:
//! the honest hosts ([`crate::harness`]) and the rogue ([`crate::rogue`])
//! both build on it.

use ed25519_dalek::SigningKey;
use maxwell_gossip::seal::{ClusterKey, Keyring};
use maxwell_gossip::{KeyedNodeId, NodeId};
use maxwell_node::mesh::Clock;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The gossip port every simulated host uses.
pub const GOSSIP_PORT: u16 = 7946;
/// Unix ms at simulated time zero.
pub const EPOCH_MS: u64 = 1_800_000_000_000;
/// The deterministic key of node `i`.
pub fn key_of(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    seed[31] = 0x4d;
    SigningKey::from_bytes(&seed)
}

/// The node id of node `i`.
pub fn id_of(i: usize) -> NodeId {
    NodeId::from_verifying_key(&key_of(i).verifying_key())
}

/// The cluster's shared secret and name.
pub const CLUSTER_SECRET: [u8; 32] = [0x5e; 32];
pub const CLUSTER_ID: &str = "sim";

/// The cluster's keyring: every honest host and the insider rogue hold it.
pub fn cluster_keys() -> Keyring {
    Keyring::new(ClusterKey::derive(&CLUSTER_SECRET, CLUSTER_ID), Vec::new())
}

/// Simulated unix time, ms.
pub fn sim_clock() -> Clock {
    Arc::new(|| EPOCH_MS + turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64))
}

/// Seed addresses: the first three nodes, filled in as they are added.
pub type Seeds = Arc<Mutex<Vec<IpAddr>>>;
