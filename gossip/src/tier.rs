//! The tiered mesh: each rack is its own [`Swim`], and an upper tier of
//! carriers, a few from each rack, carries signed summaries between racks.
//!
//! A flat mesh makes every node hold, digest and receive every node's
//! report: O(n) bytes per node, which passes 10 kB/s per node long before
//! 10 000 nodes. Here a node holds its rack's reports, and a summary of the
//! world: the cheapest [`MAX_OFFERS`] offers anywhere.
//!
//! - **The rack tier** is the flat mesh, per rack: a report is pushed
//!   straight to every rack neighbour, so they learn it in one hop.
//! - **Carriers** are the [`TierConfig::carriers`] live rack members with the
//!   lowest node ids, as each member's own view of its rack says; a node
//!   that is an upper-tier seed always carries (so the tier can start).
//!   No node is special for long: when a carrier dies, the rack declares it
//!   down and the next id carries, so no single loss stops anything.
//! - **A carrier** joins the upper tier (a [`Swim`] of carriers only) and
//!   publishes there a [`Scope::Rack`] summary of its rack: its count, its
//!   hottest reading and its cheapest offers. Into its own rack it publishes
//!   a [`Scope::World`] summary: the cheapest offers of every rack it hears,
//!   in two hops ([`Swim::publish_spread`]).
//! - **Every node's view of the world** ([`Tiered::world`]) merges what it
//!   holds: its rack's reports (its own rack is known from those alone) and,
//!   on a carrier, the other racks' summaries; elsewhere, its rack's
//!   carriers' world summaries. For each other node the offer taken is the
//!   one built from its newest report.
//!
//! When a summary goes out: a change to the offers that moves the world's
//! cheapest set is urgent, and both carriers send it (after
//! [`TierConfig::summary_min_gap_ms`] since their last); anything else rides
//! the primary carrier's (the lowest id's) heartbeat, every
//! [`TierConfig::summary_heartbeat_ms`]. A carrier that becomes primary
//! sends at once. The upper tier pushes a summary to every carrier, one
//! copy each, in at most two hops (see [`upper_swim`]), as it must reach
//! them all within seconds; a carrier sending straight to all of 500 others
//! would send 200 kB at once.
//!
//! Contracts: as [`Swim`]'s, per tier. Each tier seals under its own key
//! ([`tier_keys`]), and each rack under its own, so no datagram of one tier
//! or rack opens in another: a replay across them is refused by the seal.

use crate::node_id::NodeId;
use crate::report::HeatReport;
use crate::seal::{ClusterKey, Keyring};
use crate::summary::{Offer, Scope, Summary, MAX_OFFERS};
use crate::swim::{Peer, Push, Swim, SwimConfig, SwimCounters, SwimEvent, Transmit};
use crate::units::MilliCelsius;
use crate::wire::SignedRecord;
use ed25519_dalek::SigningKey;
use index::{Index, Reader};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

/// A summary or offer stamped further ahead of our clock than this is
/// ignored, ms (as the verifier's default clock skew).
pub const MAX_SKEW_MS: u64 = 5_000;

/// Timing of the tiers and of the summaries.
#[derive(Debug, Clone)]
pub struct TierConfig {
    pub rack: SwimConfig,
    pub upper: SwimConfig,
    /// Carriers per rack.
    pub carriers: usize,
    /// A node carries only once it has known its rack this long (a node
    /// just started knows no lower id yet), ms; an upper seed carries at once.
    pub settle_ms: u64,
    /// Least time between two summaries of one scope, ms.
    pub summary_min_gap_ms: u64,
    /// The primary carrier re-sends its summaries this often, ms.
    pub summary_heartbeat_ms: u64,
    /// A summary older than this is ignored, ms.
    pub summary_ttl_ms: u64,
    /// A price moving by less than this many percent is no change.
    pub price_step_pct: u64,
}

impl Default for TierConfig {
    /// Two carriers a rack, after 1 s; urgent summaries at most once a
    /// second, the rest every 60 s, ignored after 180 s; 5 % price steps.
    fn default() -> Self {
        Self {
            rack: SwimConfig::default(),
            upper: upper_swim(SwimConfig::default()),
            carriers: 2,
            settle_ms: 1_000,
            summary_min_gap_ms: 1_000,
            summary_heartbeat_ms: 60_000,
            summary_ttl_ms: 180_000,
            price_step_pct: 5,
        }
    }
}

/// The upper tier's timing from a rack tier's: a summary is pushed
/// straight to up to `push_max` carriers, and past that in two hops (see
/// [`Push::TwoHop`]): every carrier gets it once, within two hops, and no
/// carrier sends more than about √n copies of anything.
pub fn upper_swim(rack: SwimConfig) -> SwimConfig {
    SwimConfig {
        push: Push::TwoHop,
        ..rack
    }
}

/// The name a rack's tier derives its key under (see [`ClusterKey::derive`]).
pub fn rack_cluster_id(cluster_id: &str, rack: &str) -> String {
    format!("{cluster_id}/rack/{rack}")
}

/// The name the upper tier derives its key under.
pub fn upper_cluster_id(cluster_id: &str) -> String {
    format!("{cluster_id}/upper")
}

/// The keys of a rack's tier and of the upper tier, from the cluster secret.
pub fn tier_keys(secret: &[u8; 32], cluster_id: &str, rack: &str) -> (Keyring, Keyring) {
    let rack = ClusterKey::derive(secret, &rack_cluster_id(cluster_id, rack));
    let upper = ClusterKey::derive(secret, &upper_cluster_id(cluster_id));
    (
        Keyring::new(rack, Vec::new()),
        Keyring::new(upper, Vec::new()),
    )
}

/// Which socket a datagram came in on or goes out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    Rack,
    Upper,
}

/// What changed, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TierEvent {
    Rack(SwimEvent),
    Upper(SwimEvent),
    /// This node began (`true`) or ceased carrying its rack.
    Carrier(bool),
}

/// Where this node is and what it starts from.
#[derive(Debug, Clone)]
pub struct TierSetup {
    /// This node in its rack's tier.
    pub me: Peer,
    /// Where it would speak the upper tier.
    pub upper_addr: SocketAddr,
    pub rack_name: String,
    pub rack_keys: Keyring,
    pub upper_keys: Keyring,
    /// Rack neighbours to join through.
    pub rack_seeds: Vec<SocketAddr>,
    /// Upper-tier addresses of carriers to join through (seeds carry).
    pub upper_seeds: Vec<SocketAddr>,
    pub seed: u64,
}

/// One summary scope's publishing state.
#[derive(Debug, Default)]
struct Outbox {
    /// What was last sent, and when.
    sent: Option<(Content, u64)>,
    /// When the next one is due, if anything is to be sent.
    due: Option<u64>,
}

/// A summary's content, without its envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Content {
    members: u32,
    hottest: MilliCelsius,
    offers: Vec<Offer>,
}

/// What the summaries held say of everything but this rack, as last read
/// (see [`Tiered::others`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Others {
    /// Other racks heard of by their own summaries.
    racks: u32,
    /// The most racks a world summary counted.
    counted: u32,
    hottest: MilliCelsius,
    /// The cheapest offers of other racks' nodes.
    offers: Vec<Offer>,
    /// The reading holds until then: a summary or offer ages out, or one
    /// stamped ahead of our clock comes into time.
    until_ms: u64,
}

/// One node of the tiered mesh.
pub struct Tiered {
    key: SigningKey,
    me: Peer,
    upper_addr: SocketAddr,
    rack_name: String,
    upper_keys: Keyring,
    upper_seeds: Vec<SocketAddr>,
    config: TierConfig,
    rack: Swim,
    upper: Option<Swim>,
    /// Counters of upper tiers this node has left (counters never go back).
    retired: SwimCounters,
    upper_generation: u64,
    /// Until then the node does not carry (see [`TierConfig::settle_ms`]).
    settle_at_ms: Option<u64>,
    seed: u64,
    seq: u64,
    boxes: [Outbox; 2],
    /// Read at each review; the world view is this and the rack's reports.
    others: Others,
    /// The upper tier's summaries, while carrying, and the signers to read
    /// again at the next review.
    index: Index,
    stale: BTreeSet<NodeId>,
    /// The upper tier's live members, by generation (as its events tell).
    upper_up: HashMap<NodeId, u64>,
    /// The world view as of the last review.
    view: Content,
    /// Carrying, with the lowest id of the rack: the heartbeat is ours.
    primary: bool,
    dirty: bool,
    out: VecDeque<(Tier, Transmit)>,
    events: VecDeque<TierEvent>,
    now_ms: u64,
}

impl std::fmt::Debug for Tiered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiered")
            .field("me", &self.me)
            .field("rack", &self.rack_name)
            .field("carrier", &self.upper.is_some())
            .finish()
    }
}

impl Tiered {
    pub fn new(key: SigningKey, setup: TierSetup, config: TierConfig, now_ms: u64) -> Self {
        let rack = Swim::new(
            setup.me.clone(),
            setup.rack_keys,
            config.rack.clone(),
            setup.rack_seeds,
            setup.seed,
            now_ms,
        );
        let mut tiered = Self {
            key,
            upper_generation: setup.me.generation,
            me: setup.me,
            upper_addr: setup.upper_addr,
            rack_name: setup.rack_name,
            upper_keys: setup.upper_keys,
            upper_seeds: setup.upper_seeds,
            rack,
            upper: None,
            retired: SwimCounters::default(),
            settle_at_ms: Some(now_ms + config.settle_ms),
            config,
            seed: setup.seed,
            seq: 0,
            boxes: Default::default(),
            others: Others::default(),
            index: Index::default(),
            stale: BTreeSet::new(),
            upper_up: HashMap::new(),
            view: Content::default(),
            primary: false,
            dirty: true,
            out: VecDeque::new(),
            events: VecDeque::new(),
            now_ms,
        };
        tiered.review();
        tiered
    }

    /// Publishes this node's signed report to its rack.
    pub fn publish(&mut self, now_ms: u64, record: &[u8]) {
        self.advance(now_ms);
        self.rack.publish(now_ms, record);
        self.dirty = true;
        self.drain();
    }

    /// Leaves both tiers; `record` (a signed leave) goes to the rack.
    pub fn leave(&mut self, now_ms: u64, record: &[u8]) {
        self.advance(now_ms);
        if let Some(upper) = self.upper.as_mut() {
            upper.leave(now_ms, None);
        }
        self.rack.leave(now_ms, Some(record));
        self.drain();
    }

    /// One datagram that came in on `tier`'s socket.
    pub fn handle_datagram(&mut self, now_ms: u64, tier: Tier, from: SocketAddr, datagram: &[u8]) {
        self.advance(now_ms);
        match (tier, self.upper.as_mut()) {
            (Tier::Rack, _) => self.rack.handle_datagram(now_ms, from, datagram),
            (Tier::Upper, Some(upper)) => upper.handle_datagram(now_ms, from, datagram),
            // Not carrying: the upper socket is deaf, as to an outsider.
            (Tier::Upper, None) => {}
        }
        self.drain();
    }

    /// Fires due timers (both tiers', and the summaries'); call at
    /// [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
        self.advance(now_ms);
        let now = self.now_ms;
        if self.rack.poll_timeout().is_some_and(|t| t <= now) {
            self.rack.handle_timeout(now);
        }
        if let Some(upper) = self.upper.as_mut() {
            if upper.poll_timeout().is_some_and(|t| t <= now) {
                upper.handle_timeout(now);
            }
        }
        self.drain();
        if self.settle_at_ms.is_some_and(|at| at <= now) {
            self.settle_at_ms = None;
            self.dirty = true;
        }
        if !self.fresh() {
            self.review();
        }
        self.send_due();
        self.drain();
    }

    /// When [`Self::handle_timeout`] is next due (`None` once left).
    pub fn poll_timeout(&self) -> Option<u64> {
        let rack = self.rack.poll_timeout()?;
        let upper = self.upper.as_ref().and_then(Swim::poll_timeout);
        let carrying = self.upper.is_some();
        let due = self.boxes.iter().filter_map(|b| b.due.filter(|_| carrying));
        let next = due
            .chain(upper)
            .chain(self.settle_at_ms)
            .chain(Some(self.others.until_ms))
            .fold(rack, u64::min);
        Some(if self.dirty { self.now_ms } else { next })
    }

    pub fn poll_transmit(&mut self) -> Option<(Tier, Transmit)> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TierEvent> {
        self.events.pop_front()
    }

    /// The rack's tier (its members and their reports).
    pub fn rack(&self) -> &Swim {
        &self.rack
    }

    /// Adds a seed of the rack's tier (one found on the network segment).
    pub fn add_rack_seed(&mut self, addr: std::net::SocketAddr) {
        self.rack.add_seed(addr);
    }

    /// The upper tier, while this node carries its rack.
    pub fn upper(&self) -> Option<&Swim> {
        self.upper.as_ref()
    }

    /// Both tiers' counters, summed (and those of upper tiers left).
    pub fn counters(&self) -> SwimCounters {
        let mut c = self.rack.counters();
        c.add(&self.retired);
        if let Some(upper) = &self.upper {
            c.add(&upper.counters());
        }
        c
    }

    /// The cheapest offers this node knows of, cheapest first.
    pub fn world(&self) -> Vec<Offer> {
        self.view().offers
    }

    fn advance(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// Moves what the tiers sent and said into our queues.
    fn drain(&mut self) {
        while let Some(t) = self.rack.poll_transmit() {
            self.out.push_back((Tier::Rack, t));
        }
        while let Some(e) = self.rack.poll_event() {
            self.dirty |= changes_view(&e);
            self.events.push_back(TierEvent::Rack(e));
        }
        let Some(upper) = self.upper.as_mut() else {
            return;
        };
        while let Some(t) = upper.poll_transmit() {
            self.out.push_back((Tier::Upper, t));
        }
        while let Some(e) = upper.poll_event() {
            self.dirty |= changes_view(&e);
            match &e {
                SwimEvent::Up(p) => {
                    self.upper_up.insert(p.id, p.generation);
                    self.stale.insert(p.id);
                }
                // An older identity's death says nothing of a newer one.
                SwimEvent::Down(p) if self.upper_up.get(&p.id) == Some(&p.generation) => {
                    self.upper_up.remove(&p.id);
                    self.stale.insert(p.id);
                }
                SwimEvent::Records(ids) => self.stale.extend(ids),
                _ => {}
            }
            self.events.push_back(TierEvent::Upper(e));
        }
    }

    /// Re-decides who carries, and what each summary should say.
    fn review(&mut self) {
        self.dirty = false;
        let carry = self.should_carry();
        if carry != self.upper.is_some() {
            self.set_carrier(carry);
        }
        self.others = self.others_now();
        let rack = self.rack_content();
        self.view = self.merge(&self.others, Some(&rack));
        if self.upper.is_none() {
            return;
        }
        if let Some(upper) = self.upper.as_mut() {
            if upper.num_members() == 0 {
                // Alone up there: try every carrier our rack has heard of.
                for s in self.rack.summaries() {
                    if s.node_id != self.me.id {
                        upper.add_seed(s.upper);
                    }
                }
            }
        }
        let primary = self.rank() == 0;
        if primary != self.primary {
            self.primary = primary;
            // A new primary speaks at once; a former one leaves the
            // heartbeat to the new.
            let due = primary.then_some(self.now_ms);
            for b in &mut self.boxes {
                b.due = due;
            }
        }
        let world = self.view.clone();
        // The world as it stood before the rack's latest news: what the
        // other racks were last told of this one, in place of its reports.
        let sent = self.boxes[0].sent.as_ref().map(|(sent, _)| sent);
        let was = self.merge(&self.others, sent);
        let moves_world = offers_differ(&world.offers, &was.offers, self.config.price_step_pct);
        // The rack hears at once only of other offers; the rest (the
        // hottest anywhere, the count) rides the heartbeat.
        let news = self.boxes[1].sent.as_ref().is_none_or(|(sent, _)| {
            offers_differ(&sent.offers, &world.offers, self.config.price_step_pct)
        });
        self.schedule(0, rack, moves_world);
        self.schedule(1, world, news);
    }

    /// The `carriers` lowest ids among the live rack, or an upper seed.
    fn should_carry(&self) -> bool {
        if self.upper_seeds.contains(&self.upper_addr) {
            return true;
        }
        if self.settle_at_ms.is_some() {
            return false;
        }
        self.rank() < self.config.carriers
    }

    /// Live rack members with a lower id than ours.
    fn rank(&self) -> usize {
        self.rack
            .alive()
            .iter()
            .filter(|p| p.id < self.me.id)
            .count()
    }

    fn set_carrier(&mut self, carry: bool) {
        let now = self.now_ms;
        if carry {
            // A new identity each stint: an earlier one was declared down.
            self.upper_generation = (self.upper_generation + 1).max(now);
            let mut seeds = self.upper_seeds.clone();
            seeds.extend(
                self.rack
                    .summaries()
                    .iter()
                    .filter(|s| s.node_id != self.me.id)
                    .map(|s| s.upper),
            );
            let me = Peer {
                id: self.me.id,
                generation: self.upper_generation,
                addr: self.upper_addr,
            };
            let seed = self.seed ^ self.upper_generation;
            let upper = Swim::new(
                me,
                self.upper_keys.clone(),
                self.config.upper.clone(),
                seeds,
                seed,
                now,
            );
            self.upper = Some(upper);
            self.index = Index::default();
            self.stale.clear();
            self.upper_up.clear();
            self.boxes = Default::default();
            self.primary = false;
        } else if let Some(mut upper) = self.upper.take() {
            upper.leave(now, None);
            // Counters never go back; what is held went with the tier.
            self.retired.add(&SwimCounters {
                records_held: 0,
                ..upper.counters()
            });
            while let Some(t) = upper.poll_transmit() {
                self.out.push_back((Tier::Upper, t));
            }
            while let Some(e) = upper.poll_event() {
                self.events.push_back(TierEvent::Upper(e));
            }
        }
        self.events.push_back(TierEvent::Carrier(carry));
    }

    /// This rack, from the reports held.
    fn rack_content(&self) -> Content {
        let (mut members, mut hottest, mut offers) = (0, MilliCelsius::default(), Vec::new());
        self.rack.visit_reports(|r| {
            members += 1;
            hottest = hottest.max(r.hottest);
            offers.push(offer_of(r));
        });
        Content {
            members,
            hottest,
            offers: cheapest(offers),
        }
    }

    /// Whether the last review still holds.
    fn fresh(&self) -> bool {
        !self.dirty && self.now_ms < self.others.until_ms
    }

    /// The world as this node holds it now.
    fn view(&self) -> Content {
        if self.fresh() {
            return self.view.clone();
        }
        self.merge(&self.others(), Some(&self.rack_content()))
    }

    /// [`Self::others`], a carrier's from its index: what changed is read
    /// again, the rest stands.
    fn others_now(&mut self) -> Others {
        let Some(upper) = self.upper.as_ref() else {
            return self.others();
        };
        let reader = Reader {
            now_ms: self.now_ms,
            ttl_ms: self.config.summary_ttl_ms,
            me: self.me.id,
            rack: &self.rack_name,
        };
        let mut stale = std::mem::take(&mut self.stale);
        stale.extend(self.index.due(self.now_ms));
        for signer in stale {
            let mut held = None;
            if self.upper_up.contains_key(&signer) {
                upper.visit_summary_of(signer, |s| held = Some(s.clone()));
            }
            self.index.set(signer, held.as_ref(), &reader);
        }
        let others = self.index.read(&self.rack.member_ids());
        debug_assert_eq!(others, self.others(), "the index reads as all summaries do");
        others
    }

    /// The world: `own` (what stands for this rack: its content now, or as
    /// last sent) and the others. The two hold disjoint nodes, so the
    /// cheapest of both are the cheapest of `own` and of the others' cheapest.
    fn merge(&self, others: &Others, own: Option<&Content>) -> Content {
        let (mut hottest, mut offers) = (others.hottest, others.offers.clone());
        if let Some(own) = own {
            hottest = hottest.max(own.hottest);
            offers.extend(own.offers.iter().cloned());
        }
        Content {
            members: others.counted.max(others.racks + u32::from(own.is_some())),
            hottest,
            offers: cheapest(offers),
        }
    }

    /// What this node holds of the world beyond its rack. Three rules keep
    /// news from being undone by echoes or forgeries:
    /// - a node of our own rack is known from its report alone (no report
    ///   held: it is gone), never from a summary;
    /// - a carrier builds only from other racks' own summaries, never from
    ///   world summaries (which carry what carriers already heard), and a
    ///   node takes world summaries only from its rack's carriers;
    /// - a summary or offer from the future (past [`MAX_SKEW_MS`]) or older
    ///   than the TTL is ignored.
    fn others(&self) -> Others {
        let (now, ttl) = (self.now_ms, self.config.summary_ttl_ms);
        let mut until = u64::MAX;
        let mut in_time = |at: u64| in_time(at, now, ttl, &mut until);
        let ours = self.rack.member_ids();
        let carriers = self.carrier_ids();
        let mut racks: Vec<String> = Vec::new();
        let mut offers: Vec<Offer> = Vec::new();
        let (mut counted, mut hottest) = (0, MilliCelsius::default());
        let mut take = |s: &Summary| {
            if s.node_id == self.me.id || !in_time(s.timestamp_ms) {
                return;
            }
            match s.scope {
                Scope::Rack if s.rack != self.rack_name => racks.push(s.rack.clone()),
                // Our own rack is known from its reports.
                Scope::Rack => return,
                // A world summary counts racks itself: take the widest.
                Scope::World => counted = counted.max(s.members),
            }
            hottest = hottest.max(s.hottest);
            for o in &s.offers {
                if in_time(o.at_ms) && o.node_id != self.me.id && !ours.contains(&o.node_id) {
                    offers.push(o.clone());
                }
            }
        };
        match &self.upper {
            Some(upper) => upper.visit_summaries(&mut take),
            None => self.rack.visit_summaries(|s| {
                if carriers.contains(&s.node_id) || self.upper_seeds.contains(&s.upper) {
                    take(s);
                }
            }),
        }
        racks.sort_unstable();
        racks.dedup();
        Others {
            racks: racks.len() as u32,
            counted,
            hottest,
            offers: cheapest(offers),
            until_ms: until,
        }
    }

    /// The ids that carry this rack by rank (seeds aside), ours included.
    fn carrier_ids(&self) -> Vec<NodeId> {
        let mut ids: Vec<NodeId> = self.rack.alive().iter().map(|p| p.id).collect();
        ids.push(self.me.id);
        ids.sort();
        ids.truncate(self.config.carriers);
        ids
    }

    /// Queues scope `i`'s summary when its content is news the world needs
    /// now; the heartbeat carries the rest.
    fn schedule(&mut self, i: usize, content: Content, urgent: bool) {
        let now = self.now_ms;
        let step = self.config.price_step_pct;
        let min_gap = self.config.summary_min_gap_ms;
        let outbox = &mut self.boxes[i];
        let due = match &outbox.sent {
            None => now,
            Some((sent, at)) if urgent && material(sent, &content, step) => at + min_gap,
            Some(_) => return,
        };
        outbox.due = Some(outbox.due.map_or(due, |d| d.min(due)).max(now));
    }

    /// Sends the summaries that are due, and schedules their heartbeats.
    fn send_due(&mut self) {
        let now = self.now_ms;
        for i in 0..2 {
            if self.upper.is_none() {
                return;
            }
            if self.boxes[i].due.is_none_or(|due| due > now) {
                continue;
            }
            let content = if i == 0 {
                self.rack_content()
            } else {
                self.view()
            };
            let scope = if i == 0 { Scope::Rack } else { Scope::World };
            self.seq += 1;
            let summary = Summary {
                node_id: self.me.id,
                generation: self.me.generation,
                seq: self.seq,
                timestamp_ms: now,
                scope,
                rack: self.rack_name.clone(),
                upper: self.upper_addr,
                members: content.members,
                hottest: content.hottest,
                offers: content.offers.clone(),
            };
            let Ok(signed) = SignedRecord::sign(&summary, &self.key) else {
                // An over-long rack name (config refuses one): not again.
                self.boxes[i].due = None;
                continue;
            };
            let bytes = signed.to_bytes();
            match (scope, self.upper.as_mut()) {
                (Scope::Rack, Some(upper)) => upper.publish(now, &bytes),
                // Both carriers straight to 39 neighbours, up to once a
                // second each, was 35 kB/s; in two hops it is about 7 copies.
                _ => self.rack.publish_spread(now, &bytes),
            }
            self.boxes[i] = Outbox {
                sent: Some((content, now)),
                due: self
                    .primary
                    .then_some(now + self.config.summary_heartbeat_ms),
            };
        }
    }
}

/// Whether a summary or offer stamped `at` is in time `now`; `until` comes
/// down to when that changes.
fn in_time(at: u64, now: u64, ttl: u64, until: &mut u64) -> bool {
    if at > now + MAX_SKEW_MS {
        *until = (*until).min(at - MAX_SKEW_MS);
        false
    } else if now.saturating_sub(at) <= ttl {
        *until = (*until).min(at.saturating_add(ttl + 1));
        true
    } else {
        false
    }
}

fn changes_view(e: &SwimEvent) -> bool {
    matches!(
        e,
        SwimEvent::Up(_) | SwimEvent::Down(_) | SwimEvent::Records(_) | SwimEvent::Rejoined(_)
    )
}

fn offer_of(r: &HeatReport) -> Offer {
    Offer {
        node_id: r.node_id,
        price_milli: r.price_milli,
        headroom: r.headroom,
        hottest: r.hottest,
        at_ms: r.timestamp_ms,
    }
}

/// The offers of these reports, as a summary would carry them.
pub fn offers_of(reports: &[HeatReport]) -> Vec<Offer> {
    cheapest(reports.iter().map(offer_of))
}

/// The [`MAX_OFFERS`] cheapest, one per node (its newest; of two as new,
/// the cheaper), cheapest first.
fn cheapest(offers: impl IntoIterator<Item = Offer>) -> Vec<Offer> {
    let mut all: Vec<Offer> = offers.into_iter().collect();
    all.sort_unstable_by(|a, b| {
        (a.node_id, b.at_ms, a.rank()).cmp(&(b.node_id, a.at_ms, b.rank()))
    });
    all.dedup_by_key(|o| o.node_id);
    if all.len() > MAX_OFFERS {
        all.select_nth_unstable_by_key(MAX_OFFERS, Offer::rank);
        all.truncate(MAX_OFFERS);
    }
    all.sort_unstable_by_key(Offer::rank);
    all
}

/// Other nodes, or a price moved by `step_pct` percent or more.
fn offers_differ(a: &[Offer], b: &[Offer], step_pct: u64) -> bool {
    let moved = |x: u64, y: u64| {
        u128::from(x.abs_diff(y)) * 100 >= u128::from(step_pct) * u128::from(x.max(y).max(1))
    };
    !a.iter().map(|o| o.node_id).eq(b.iter().map(|o| o.node_id))
        || a.iter()
            .zip(b)
            .any(|(x, y)| moved(x.price_milli, y.price_milli))
}

/// Whether `new` says something `old` did not: other offers, another
/// count, or the hottest moved by 1 °C.
fn material(old: &Content, new: &Content, step_pct: u64) -> bool {
    offers_differ(&old.offers, &new.offers, step_pct)
        || old.members != new.members
        || old.hottest.0.abs_diff(new.hottest.0) >= 1_000
}

mod index;
#[cfg(test)]
mod tests;
