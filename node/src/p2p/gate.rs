//! Who may connect: a peer whose key is that of a verified, counting member
//! of our gossip view. Every other connection, inbound or outbound, is
//! denied as it is established (after Noise has proved the peer's key) and
//! counted.

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use maxwell_gossip::KeyedNodeId;
use maxwell_types::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The node id of a peer, when its PeerId carries an ed25519 key (ours all
/// do: the PeerId of a key that short is the key itself).
pub fn node_of(peer: &PeerId) -> Option<NodeId> {
    Some(NodeId::from_public_key_bytes(key_of(peer)?.as_bytes()))
}

/// The ed25519 key a peer id holds.
pub fn key_of(peer: &PeerId) -> Option<ed25519_dalek::VerifyingKey> {
    let key = libp2p::identity::PublicKey::try_decode_protobuf(peer.as_ref().digest()).ok()?;
    let key = key.try_into_ed25519().ok()?;
    ed25519_dalek::VerifyingKey::from_bytes(&key.to_bytes()).ok()
}

/// Found peers let through at once to say hello: a segment full of
/// strangers opens no more than this.
const MAX_DISCOVERED: usize = 64;
/// How long a found peer is let through to say hello: two of mDNS's
/// query intervals (5 min), so that a peer that finds this node only at
/// its next query still gets through to ask where it gossips.
const FOUND_FOR: Duration = Duration::from_secs(600);

/// The peer is not a counting member.
#[derive(Debug, thiserror::Error)]
#[error("peer {0} is not a verified member of the mesh")]
pub struct NotAMember(pub PeerId);

/// The members allowed, and how many connections were denied.
#[derive(Debug)]
pub struct Gate {
    members: BTreeSet<NodeId>,
    /// Peers found by mDNS, not yet members, and until when: they may
    /// connect to say hello (and nothing more: requests need membership).
    discovered: BTreeMap<NodeId, Instant>,
    denied: Arc<AtomicU64>,
}

impl Gate {
    /// A gate that admits no one yet; it counts denials in `denied`.
    pub fn new(denied: Arc<AtomicU64>) -> Self {
        Self {
            members: BTreeSet::new(),
            discovered: BTreeMap::new(),
            denied,
        }
    }

    /// From now on, only these may connect.
    pub fn set_members(&mut self, members: BTreeSet<NodeId>) {
        self.discovered.retain(|n, _| !members.contains(n));
        self.members = members;
    }

    /// A peer found by mDNS may connect for [`FOUND_FOR`], long enough for
    /// it to find this node too and ask where it gossips (a peer lets
    /// through only those it found); false if too many are let through.
    pub fn discover(&mut self, node: NodeId) -> bool {
        if self.members.contains(&node) {
            return true;
        }
        let now = Instant::now();
        self.discovered.retain(|_, until| *until > now);
        if self.discovered.len() >= MAX_DISCOVERED && !self.discovered.contains_key(&node) {
            return false;
        }
        self.discovered.insert(node, now + FOUND_FOR);
        true
    }

    /// True when `peer` is a member now.
    pub fn admits(&self, peer: &PeerId) -> bool {
        node_of(peer).is_some_and(|n| self.members.contains(&n))
    }

    fn enforce(&self, peer: PeerId) -> Result<THandler<Self>, ConnectionDenied> {
        let now = Instant::now();
        let found = node_of(&peer)
            .and_then(|n| self.discovered.get(&n))
            .is_some_and(|until| *until > now);
        if found || self.admits(&peer) {
            return Ok(dummy::ConnectionHandler);
        }
        self.denied.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%peer, "p2p connection denied: not a member");
        Err(ConnectionDenied::new(NotAMember(peer)))
    }
}

impl NetworkBehaviour for Gate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(peer)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.enforce(peer)
    }

    fn on_swarm_event(&mut self, _: FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}
