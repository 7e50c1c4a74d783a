//! Moving away from heat: which of this node's guests to hand to a cheaper
//! node, and when (docs/placement.md, "Moving away from heat").
//!
//! The rule: once this node's price has stayed at least `margin` above the
//! cheapest counting, cool peer's for `after`, it moves the largest of its
//! movable guests (the most heat per move; the lowest bidder among guests
//! of one size) to a peer chosen as a submission's would be (power of d
//! choices among those with room, at or below the guest's bid), and only to
//! one at least `margin` cheaper than here. Then it waits `after` again.
//! A move must take the hot spot down, not carry it: a peer is a target
//! for a guest only if it would still be no hotter than this node once the
//! guest's heat lands there, counting a guest that may burn `m`
//! milli-cores of this node's `c` cores as `m / 1000c` of
//! `full_load_rise`, and this node as hot as its rise over the last
//! [`TREND_MS`] would take it in as long again (a node heating up is
//! hotter than it reads). A guest no peer is cool enough for stays, and a
//! smaller one may go instead. A node that cooled by more than
//! [`COOLING_MC`] over that window moves nothing yet: its last move, or
//! the market's pauses, are still taking effect. A node that reads no
//! temperature has nothing to check against (its price is at the limit):
//! the check waits for a reading.
//! The target takes one such guest per `admit_every_ms`
//! ([`crate::NodeCore::offer_moved_guest`]), so for that long this node
//! sends no other there.
//! At most `max_per_minute` moves start in any minute; a guest that arrived
//! here, or was picked, within `cooldown` is not picked, unless the driver
//! says its move did not happen ([`crate::NodeCore::handle_move_failed`]).
//! A guest that just moved to a cheaper node can only come back once that
//! node is dearer by the margin than this one, and not before its cooldown:
//! no ping-pong.

use crate::guests::GuestLoad;
use crate::placement::{self, Need, PlaceParams, Target};
use maxwell_types::{rng::Rng, MilliCelsius, NodeId};
use std::collections::{BTreeMap, VecDeque};

/// The rule's settings; validated by their owner (the agent's `[placement]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveParams {
    /// How much dearer than the cheapest peer this node must be, milli-credits.
    pub margin_milli: u64,
    /// For how long, ms.
    pub after_ms: u64,
    /// The most moves started per minute; 0: guests never move by themselves.
    pub max_per_minute: usize,
    /// How long a guest that arrived or was picked stays put, ms.
    pub cooldown_ms: u64,
    /// A node takes at most one moved guest per this long, ms (0: no
    /// limit): hot nodes that all heard of the same cheap one cannot pile
    /// onto it before its heat, and so its price, shows what it took.
    pub admit_every_ms: u64,
    /// How much hotter than idle this node runs fully loaded: a guest is
    /// taken to carry its share of it to where it lands (0: no check).
    pub full_load_rise: MilliCelsius,
}

/// How far back the rule looks at this node's own temperature trend, ms.
pub const TREND_MS: u64 = 10_000;
/// A node that cooled by more than this over [`TREND_MS`], milli-°C, moves
/// nothing yet: what it already did (a move, the market's pauses) is
/// still taking effect, and its price lags its heat.
pub const COOLING_MC: i64 = 300;

impl MoveParams {
    /// The agent's defaults, declared once: a node 0.5 dearer than its
    /// cheapest cool peer for 3 s moves a guest, at most 6 a minute, each
    /// then staying 2 minutes; a node takes one moved guest per 10 s; a
    /// fully loaded node runs 45 °C above idle (docs/placement.md says
    /// why, from the rack simulation).
    pub const DEFAULT: Self = Self {
        margin_milli: 500,
        after_ms: 3_000,
        max_per_minute: 6,
        cooldown_ms: 120_000,
        admit_every_ms: 10_000,
        full_load_rise: MilliCelsius(45_000),
    };
}

/// A guest the driver could move (in the market, not held, of a kind that
/// moves), with what it pays and when it arrived, if it was moved here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Movable {
    pub vm: u64,
    pub load: GuestLoad,
    /// The most CPU it may burn (its vCPUs at its `max_cpu`), milli-cores:
    /// the heat it takes with it is that share of this node's
    /// `full_load_rise`. Not its share now: a guest the market paused
    /// burns nothing here and all it may where it resumes.
    pub mcores: u64,
    pub bid_milli: u64,
    pub arrived_at_ms: Option<u64>,
}

/// Move guest `vm` to `target` (a peer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub vm: u64,
    pub target: Target,
}

/// The rule's memory.
#[derive(Debug, Default)]
pub(crate) struct Mover {
    /// Since when this node has been dearer by the margin.
    dear_since: Option<u64>,
    /// When recent moves started.
    started: VecDeque<u64>,
    /// Guests picked, until when they are not picked again.
    cooling: BTreeMap<u64, u64>,
    /// Peers sent a guest, and when: each takes one per `admit_every_ms`,
    /// so another sent there sooner would be refused.
    sent: BTreeMap<NodeId, u64>,
    /// This node's own temperature over the last [`TREND_MS`].
    temps: VecDeque<(u64, MilliCelsius)>,
}

impl Mover {
    /// This node's hottest sensor read `t` at `now`.
    pub(crate) fn observe(&mut self, now: u64, t: MilliCelsius) {
        self.temps.push_back((now, t));
        while self
            .temps
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > TREND_MS)
        {
            self.temps.pop_front();
        }
    }

    /// This node read no temperature: no trend, and no check, until it does.
    pub(crate) fn forget_temperatures(&mut self) {
        self.temps.clear();
    }

    /// This node's latest temperature and its change over the window.
    fn trend(&self) -> Option<(i64, i64)> {
        let (&(_, first), &(_, last)) = (self.temps.front()?, self.temps.back()?);
        Some((last.0, last.0.saturating_sub(first.0)))
    }

    /// Whether this node cooled by more than [`COOLING_MC`] over the window.
    fn cooling(&self) -> bool {
        self.trend().is_some_and(|(_, change)| -change > COOLING_MC)
    }

    /// Where this node's temperature is heading: its latest reading plus
    /// its rise over the window (a fall counts as none).
    fn heading(&self) -> Option<i64> {
        self.trend()
            .map(|(last, change)| last.saturating_add(change.max(0)))
    }

    /// The move to start now, if the rule calls for one. `peers` are the
    /// counting peers as placement sees them; `price` is ours; `cores` the
    /// vCPUs this node sells.
    pub(crate) fn plan(
        &mut self,
        now: u64,
        (price, cores): (u64, u64),
        peers: Vec<placement::Seen>,
        movable: &[Movable],
        (place, p): (&PlaceParams, &MoveParams),
        rng: &mut Rng,
    ) -> Option<Move> {
        self.cooling.retain(|_, until| *until > now);
        self.sent
            .retain(|_, at| now < at.saturating_add(p.admit_every_ms));
        while self
            .started
            .front()
            .is_some_and(|t| now.saturating_sub(*t) >= 60_000)
        {
            self.started.pop_front();
        }
        let cool =
            |s: &&placement::Seen| s.hottest.0 < s.critical.0.saturating_sub(place.hot_margin.0);
        let cheapest = peers
            .iter()
            .filter(cool)
            .map(placement::Seen::price_milli)
            .min();
        if p.max_per_minute == 0
            || cheapest.is_none_or(|c| c.saturating_add(p.margin_milli) > price)
        {
            self.dear_since = None;
            return None;
        }
        let since = *self.dear_since.get_or_insert(now);
        if now.saturating_sub(since) < p.after_ms
            || self.started.len() >= p.max_per_minute
            || self.cooling()
        {
            return None;
        }
        let sent = &self.sent;
        let cheap: Vec<placement::Seen> = peers
            .into_iter()
            .filter(|s| s.price_milli().saturating_add(p.margin_milli) <= price)
            .filter(|s| !matches!(&s.target, Target::Peer { node, .. } if sent.contains_key(node)))
            .collect();
        let mut order: Vec<&Movable> = movable
            .iter()
            .filter(|m| !self.cooling.contains_key(&m.vm))
            .filter(|m| {
                m.arrived_at_ms
                    .is_none_or(|t| now.saturating_sub(t) >= p.cooldown_ms)
            })
            .collect();
        // The largest first, the most heat per move (and so the fewest
        // moves); among equals, the lowest bidder.
        order.sort_by_key(|m| (std::cmp::Reverse(m.load.vcpus), m.bid_milli, m.vm));
        // No check when it is switched off, or with no temperature read.
        let heading = self.heading().filter(|_| p.full_load_rise.0 != 0);
        for m in order {
            // The heat this guest takes with it, by its share of the node.
            let carried = i128::from(p.full_load_rise.0) * i128::from(m.mcores)
                / (i128::from(cores.max(1)) * 1000);
            let carried = i64::try_from(carried).unwrap_or(i64::MAX);
            let cool_enough = |s: &&placement::Seen| {
                heading.is_none_or(|h| s.hottest.0.saturating_add(carried) <= h)
            };
            let need = Need {
                load: m.load,
                bid_milli: Some(m.bid_milli),
            };
            let one = PlaceParams {
                max_offers: 1,
                ..*place
            };
            let seen = cheap.iter().filter(cool_enough).cloned().map(Ok);
            if let Some(target) = placement::place(seen, &need, &one, rng).targets.pop() {
                if let Target::Peer { node, .. } = &target {
                    self.sent.insert(*node, now);
                }
                self.started.push_back(now);
                self.cooling.insert(m.vm, now.saturating_add(p.cooldown_ms));
                self.dear_since = Some(now);
                return Some(Move { vm: m.vm, target });
            }
        }
        None
    }
}

impl Mover {
    /// Guest `vm`'s move did not happen: it may be picked again at once.
    pub(crate) fn failed(&mut self, vm: u64) {
        self.cooling.remove(&vm);
    }
}

impl crate::NodeCore {
    /// The move of guest `vm` that [`crate::NodeCore::plan_move`] asked for
    /// did not happen (refused, unreachable, or aborted): the guest is not
    /// held to its cooldown; the rule's wait and rate still count the try.
    pub fn handle_move_failed(&mut self, now_ms: u64, vm: u64) {
        self.advance(now_ms);
        self.mover.failed(vm);
    }

    /// Where member `node` takes offers, as its latest report says (an
    /// unspecified IP read as the one it gossips from).
    pub fn endpoint_of(
        &mut self,
        now_ms: u64,
        node: maxwell_types::NodeId,
    ) -> Option<std::net::SocketAddr> {
        let now = self.advance(now_ms);
        let extra = now.saturating_sub(self.members_at_ms);
        let ttl = self.config.report_ttl_ms;
        let m = self.members.iter().find(|m| m.node_id == node)?;
        match placement::Seen::member(m, extra, ttl).ok()?.target {
            Target::Peer { endpoint, .. } => Some(endpoint),
            Target::Local { .. } => None,
        }
    }

    /// Where a guest that needs `need` could move now: the peer named (or
    /// with the id) `to`, if it is a candidate, else a peer drawn as a
    /// submission's first offer would be. The error says why not.
    pub fn move_target(
        &mut self,
        now_ms: u64,
        need: &Need,
        to: Option<&str>,
        place: &PlaceParams,
    ) -> Result<Target, String> {
        let now = self.advance(now_ms);
        let extra = now.saturating_sub(self.members_at_ms);
        let ttl = self.config.report_ttl_ms;
        let seen = self
            .members
            .iter()
            .map(|m| (m, placement::Seen::member(m, extra, ttl)));
        let Some(to) = to else {
            let one = PlaceParams {
                max_offers: 1,
                ..*place
            };
            let p = placement::place(seen.map(|(_, s)| s), need, &one, &mut self.rng);
            return p
                .targets
                .into_iter()
                .next()
                .ok_or_else(|| format!("no peer is a candidate ({} left out)", p.skipped.total()));
        };
        let named = |m: &&maxwell_gossip::Member| {
            m.node_id.to_string() == to || m.report.as_ref().is_some_and(|r| r.name == to)
        };
        let (_, s) = seen
            .into_iter()
            .find(|(m, _)| named(m))
            .ok_or_else(|| format!("no member {to} is known here"))?;
        let s = s.map_err(|why| format!("{to} is {}", why.as_str()))?;
        s.check(need, place.hot_margin)
            .map_err(|why| format!("{to} is {}", why.as_str()))?;
        Ok(s.target)
    }
}

#[cfg(test)]
mod tests;
