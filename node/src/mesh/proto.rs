//! The protocol a [`super::Mesh`] drives: one flat [`Swim`], or the tiered
//! mesh ([`Tiered`]: the rack's `Swim` and, while carrying, the upper
//! tier's). One face for the driver, so it does not care which.

use maxwell_gossip::summary::Offer;
use maxwell_gossip::swim::{Swim, SwimCounters, SwimEvent, Transmit};
use maxwell_gossip::tier::{offers_of, Tier, TierEvent, Tiered};
use std::net::SocketAddr;

/// What changed, for the driver.
#[derive(Debug)]
pub enum ProtoEvent {
    /// From the node's own tier (the flat mesh, or its rack).
    Own(SwimEvent),
    /// From the upper tier (only its refusals and rejoins are news).
    Upper(SwimEvent),
    /// This node began or ceased carrying its rack.
    Carrier(bool),
}

pub enum Proto {
    Flat(Box<Swim>),
    Tiered(Box<Tiered>),
}

impl Proto {
    /// Adds a seed of the node's own tier.
    pub fn add_seed(&mut self, addr: std::net::SocketAddr) {
        match self {
            Proto::Flat(s) => s.add_seed(addr),
            Proto::Tiered(t) => t.add_rack_seed(addr),
        }
    }

    /// The node's own tier: every member it gossips reports with.
    pub fn own(&self) -> &Swim {
        match self {
            Proto::Flat(s) => s,
            Proto::Tiered(t) => t.rack(),
        }
    }

    pub fn publish(&mut self, now_ms: u64, record: &[u8]) {
        match self {
            Proto::Flat(s) => s.publish(now_ms, record),
            Proto::Tiered(t) => t.publish(now_ms, record),
        }
    }

    pub fn leave(&mut self, now_ms: u64, record: &[u8]) {
        match self {
            Proto::Flat(s) => s.leave(now_ms, Some(record)),
            Proto::Tiered(t) => t.leave(now_ms, record),
        }
    }

    pub fn handle_datagram(&mut self, now_ms: u64, tier: Tier, from: SocketAddr, datagram: &[u8]) {
        match self {
            Proto::Flat(s) => s.handle_datagram(now_ms, from, datagram),
            Proto::Tiered(t) => t.handle_datagram(now_ms, tier, from, datagram),
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        match self {
            Proto::Flat(s) => s.handle_timeout(now_ms),
            Proto::Tiered(t) => t.handle_timeout(now_ms),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<(Tier, Transmit)> {
        match self {
            Proto::Flat(s) => s.poll_transmit().map(|t| (Tier::Rack, t)),
            Proto::Tiered(t) => t.poll_transmit(),
        }
    }

    pub fn poll_event(&mut self) -> Option<ProtoEvent> {
        match self {
            Proto::Flat(s) => s.poll_event().map(ProtoEvent::Own),
            Proto::Tiered(t) => t.poll_event().map(|e| match e {
                TierEvent::Rack(e) => ProtoEvent::Own(e),
                TierEvent::Upper(e) => ProtoEvent::Upper(e),
                TierEvent::Carrier(c) => ProtoEvent::Carrier(c),
            }),
        }
    }

    pub fn poll_timeout(&self) -> Option<u64> {
        match self {
            Proto::Flat(s) => s.poll_timeout(),
            Proto::Tiered(t) => t.poll_timeout(),
        }
    }

    /// The cheapest offers known here: in a flat mesh, of every member.
    pub fn world(&self) -> Vec<Offer> {
        match self {
            Proto::Flat(s) => offers_of(&s.reports()),
            Proto::Tiered(t) => t.world(),
        }
    }

    /// Whether this node carries its rack to the upper tier.
    pub fn carrier(&self) -> bool {
        match self {
            Proto::Flat(_) => false,
            Proto::Tiered(t) => t.upper().is_some(),
        }
    }

    /// Both tiers' counters, summed.
    pub fn counters(&self) -> SwimCounters {
        match self {
            Proto::Flat(s) => s.counters(),
            Proto::Tiered(t) => t.counters(),
        }
    }
}
