//! Where a submitted guest should go: the nodes to offer it to, best first,
//! chosen from this node's verified gossip view by the power of d choices
//! (docs/placement.md).
//!
//! A node is a candidate only while its report counts (alive, verified,
//! fresh), its price is at or below the guest's bid, it is not hot (its
//! hottest sensor within `hot_margin` of its limit), it has room for the
//! guest's vCPUs and memory, and (for a peer) it gossips an offer endpoint.
//! Each offer then samples `choices` candidates not yet offered to, at
//! random, and takes the cheapest of them (more headroom breaks a tie). A
//! submitter therefore never herds every guest onto the one cheapest node
//! its view shows, and still leans hard toward cheap and cool ones: with
//! two choices the most loaded node carries `ln ln n / ln 2 + O(1)`
//! guests over the mean, against `ln n / ln ln n` for one random choice.

use crate::guests::GuestLoad;
use crate::view;
use maxwell_gossip::{Member, Room};
use maxwell_types::rng::Rng;
use maxwell_types::{MicroWatts, MilliCelsius, NodeId};
use std::net::SocketAddr;

/// What a guest to place takes, and what it pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub load: GuestLoad,
    /// Its bid, milli-credits per CPU-second; `None`: not in the market,
    /// so any price will do.
    pub bid_milli: Option<u64>,
}

/// How placement chooses; validated by its owner (the agent's `[placement]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceParams {
    /// `d`: candidates sampled per offer, ≥ 1.
    pub choices: usize,
    /// The most offers one submission makes, ≥ 1.
    pub max_offers: usize,
    /// A node whose hottest sensor is within this of its limit is hot.
    pub hot_margin: MilliCelsius,
}

impl PlaceParams {
    /// The agent's defaults, declared once: two choices, three offers, hot
    /// within 10 °C of the limit.
    pub const DEFAULT: Self = Self {
        choices: 2,
        max_offers: 3,
        hot_margin: MilliCelsius(10_000),
    };
}

/// A node to offer the guest to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// This node.
    Local { price_milli: u64 },
    /// A member, at the offer endpoint its report gives.
    Peer {
        node: NodeId,
        name: String,
        endpoint: SocketAddr,
        price_milli: u64,
    },
}

/// Why nodes were not candidates, counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Skipped {
    /// Dead, left, stale or without a verified report.
    pub not_counting: usize,
    pub hot: usize,
    pub above_bid: usize,
    pub no_room: usize,
    /// A peer that gossips no offer endpoint.
    pub no_endpoint: usize,
}

/// The nodes to offer to, in order, and why the others were left out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    pub targets: Vec<Target>,
    /// Nodes that were candidates (before sampling).
    pub candidates: usize,
    pub skipped: Skipped,
}

/// One node as placement sees it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub target: Target,
    pub hottest: MilliCelsius,
    pub critical: MilliCelsius,
    pub headroom: MicroWatts,
    pub cap: MicroWatts,
    pub room: Room,
}

impl Seen {
    /// A member's latest report, if it counts `extra_age_ms` after it was observed.
    pub(crate) fn member(m: &Member, extra_age_ms: u64, ttl_ms: u64) -> Result<Self, Why> {
        let r = match &m.report {
            Some(r) if view::counts(m, extra_age_ms, ttl_ms) => r,
            _ => return Err(Why::NotCounting),
        };
        let endpoint = r.p2p.ok_or(Why::NoEndpoint)?;
        // An unspecified IP means "where I gossip from".
        let endpoint = match endpoint.ip().is_unspecified() {
            true => SocketAddr::new(m.addr.ip(), endpoint.port()),
            false => endpoint,
        };
        Ok(Self {
            target: Target::Peer {
                node: m.node_id,
                name: r.name.clone(),
                endpoint,
                price_milli: r.price_milli,
            },
            hottest: r.hottest,
            critical: r.critical,
            headroom: r.headroom,
            cap: r.power_cap,
            room: r.room,
        })
    }

    pub(crate) fn price_milli(&self) -> u64 {
        match self.target {
            Target::Local { price_milli } | Target::Peer { price_milli, .. } => price_milli,
        }
    }

    /// Headroom as thousandths of the cap (none known: none spare).
    fn headroom_permille(&self) -> i64 {
        match self.cap.0 {
            c if c > 0 => self.headroom.0.saturating_mul(1000) / c,
            _ => 0,
        }
    }

    pub(crate) fn check(&self, need: &Need, hot_margin: MilliCelsius) -> Result<(), Why> {
        if self.hottest.0 >= self.critical.0.saturating_sub(hot_margin.0) {
            return Err(Why::Hot);
        }
        if need.bid_milli.is_some_and(|bid| self.price_milli() > bid) {
            return Err(Why::AboveBid);
        }
        let room = self.room;
        if u64::from(room.free_vcpus) < need.load.vcpus
            || u64::from(room.free_memory_mib) < need.load.memory_mib
        {
            return Err(Why::NoRoom);
        }
        Ok(())
    }
}

/// Why one node is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    NotCounting,
    Hot,
    AboveBid,
    NoRoom,
    NoEndpoint,
}

impl Why {
    /// What it says of a node.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Why::NotCounting => "dead, stale or unverified",
            Why::Hot => "hot",
            Why::AboveBid => "priced above the bid",
            Why::NoRoom => "without room",
            Why::NoEndpoint => "without an offer endpoint",
        }
    }
}

impl Skipped {
    /// Nodes left out, for any reason.
    pub fn total(&self) -> usize {
        self.not_counting + self.hot + self.above_bid + self.no_room + self.no_endpoint
    }

    fn count(&mut self, why: Why) {
        let n = match why {
            Why::NotCounting => &mut self.not_counting,
            Why::Hot => &mut self.hot,
            Why::AboveBid => &mut self.above_bid,
            Why::NoRoom => &mut self.no_room,
            Why::NoEndpoint => &mut self.no_endpoint,
        };
        *n += 1;
    }
}

/// The offers for `need` among `seen` (each already a counting node, or
/// why not), drawn with `rng`.
pub(crate) fn place(
    seen: impl IntoIterator<Item = Result<Seen, Why>>,
    need: &Need,
    params: &PlaceParams,
    rng: &mut Rng,
) -> Placement {
    let mut skipped = Skipped::default();
    let mut pool: Vec<Seen> = Vec::new();
    for s in seen {
        match s.and_then(|s| s.check(need, params.hot_margin).map(|()| s)) {
            Ok(s) => pool.push(s),
            Err(why) => skipped.count(why),
        }
    }
    let candidates = pool.len();
    let mut targets = Vec::new();
    while targets.len() < params.max_offers && !pool.is_empty() {
        // A partial shuffle puts `d` random candidates in front; the first
        // cheapest of them wins, so ties go to a random one.
        let d = params.choices.clamp(1, pool.len());
        for i in 0..d {
            let j = i + rng.below((pool.len() - i) as u64) as usize;
            pool.swap(i, j);
        }
        let best = (0..d)
            .min_by_key(|&i| {
                let s = &pool[i];
                (s.price_milli(), std::cmp::Reverse(s.headroom_permille()))
            })
            .unwrap_or(0);
        targets.push(pool.swap_remove(best).target);
    }
    Placement {
        targets,
        candidates,
        skipped,
    }
}

#[cfg(test)]
mod tests;
