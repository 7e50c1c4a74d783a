//! Who a member is to foca, and the seeded generator foca draws from.

use crate::node_id::NodeId;
use maxwell_types::rng::Rng;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// A member as the membership protocol names it: its node id, the
/// incarnation of its process, and where it listens.
///
/// Two identities with one node id are one member: the higher generation
/// wins (a restarted agent replaces its old self at once).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Peer {
    pub id: NodeId,
    pub generation: u64,
    pub addr: SocketAddr,
}

impl foca::Identity for Peer {
    type Addr = NodeId;

    /// A member the cluster declared down (a partition, a pause) rejoins as
    /// its next generation, as Serf's refutation would have it.
    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation.saturating_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeId {
        self.id
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// [`Rng`] as foca's `rand` generator: the core's stream, so a run is
/// replayable from its seed.
#[derive(Debug, Clone)]
pub struct SeededRng(pub Rng);

impl rand_core::RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        (self.0.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for chunk in dst.chunks_mut(8) {
            let bytes = self.0.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}
