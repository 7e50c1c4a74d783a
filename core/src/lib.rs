//! `maxwell-core`: one node's decisions, as a pure state machine.
//!
//! Role: everything a maxwell node *decides* lives behind [`NodeCore`]:
//! when to read its sensors and observe its peers, what it reports about
//! itself (unknowns made pessimistic), its price (the law of
//! `maxwell_pricing`, fed with the verified members of `maxwell_gossip`),
//! which members may be acted on, where a submitted guest goes
//! ([`placement`]), which guest to move away from heat and when
//! ([`moves`]), and what operators are told. Everything a
//! node *does* (reading sysfs, signing, UDP, HTTP, KVM) is a driver's job.
//! The agent, the turmoil suite, the simulated gossip bench and the rack
//! simulation all drive this same core.
//!
//! The shape is quinn-proto's: inputs go in through `handle_*` with the
//! time (`now_ms`, unix milliseconds, from the driver's clock), outputs come
//! out of [`NodeCore::poll_output`], and [`NodeCore::poll_timeout`] says
//! when the core next wants [`NodeCore::handle_timeout`].
//!
//! Contracts:
//! - no I/O, no clock, no threads and no OS randomness: the same seed and
//!   the same inputs at the same times give the same outputs;
//! - a guest is admitted only while it fits the host's share beside every
//!   guest admitted before it and not seen killed (see [`guests`]); a
//!   leaving node admits none and asks for every guest to be killed;
//! - the sensors are read at least once per `read_every_ms`: each period is
//!   shortened by a random part of up to a tenth, so that hosts started
//!   together do not read (a BMC-backed sensor, say) and re-price in
//!   lockstep;
//! - a stale, dead or vanished peer never makes this node cheaper, and an
//!   unknown reading is never reported as cool (see [`Reading::heat`]);
//! - a refusal of a gossiped record reaches operators at most once per
//!   reason every [`REFUSAL_EVENT_EVERY_MS`]; the rest are counted by the
//!   verifier, not dropped silently;
//! - a time earlier than one already seen is taken as no time passing;
//! - a guest moves away by itself only to a peer cheaper by the margin,
//!   at most `max_per_minute` a minute, and not within its cooldown; a
//!   node takes at most one such guest per `admit_moved_every_ms`.

pub mod guests;
pub mod moves;
pub mod placement;
pub mod publish;
mod reading;
mod view;

pub use guests::{Admission, GuestAction, GuestLoad, Refusal, Ticket};
pub use maxwell_types::rng::Rng;
pub use moves::{Movable, Move, MoveParams};
pub use placement::{Need, PlaceParams, Placement, Skipped, Target};
pub use publish::PublishPolicy;
pub use reading::{Heat, Reading};
pub use view::{MemberRow, Members};

use maxwell_gossip::{HeatReport, Member, MemberStatus, MembershipEvent};
use maxwell_pricing::{OwnSummary, PeerView, PriceController, PriceInput, PriceParams, Quote};
use maxwell_types::{MilliCelsius, Position};
use std::collections::{BTreeMap, VecDeque};

/// At most one refusal event per reason in this many ms.
pub const REFUSAL_EVENT_EVERY_MS: u64 = 10_000;

/// A sensor period is shortened by a random part of up to `1/READ_JITTER`.
pub const READ_JITTER: u64 = 10;

/// What a node is and how often it acts; validated by its owner (the
/// agent's config, a harness, a simulation).
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Where this node sits.
    pub position: Position,
    /// The limit assumed when no temperature can be read.
    pub default_critical: MilliCelsius,
    /// The price law.
    pub pricing: PriceParams,
    /// Sensor period, ms.
    pub read_every_ms: u64,
    /// How often the verified members are observed, ms.
    pub observe_every_ms: u64,
    /// A sensor read outstanding this long is reported stuck, ms.
    pub stuck_after_ms: u64,
    /// A peer's report older than this is stale (the gossip TTL), ms.
    pub report_ttl_ms: u64,
    /// How long a leaving node keeps gossiping its leave, ms.
    pub leave_linger_ms: u64,
    /// The host's share for guests.
    pub admission: Admission,
    /// When a reading is published (see [`publish`]).
    pub publish: PublishPolicy,
    /// A moved guest is taken at most once per this long, ms (0: no limit;
    /// [`MoveParams::admit_every_ms`]).
    pub admit_moved_every_ms: u64,
}

/// What the core asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Read the sensors; answer with [`NodeCore::handle_reading`].
    ReadSensors,
    /// Observe the verified members; answer with [`NodeCore::handle_peers`].
    ObservePeers,
    /// Sign this as our next heat report and gossip it.
    Publish(Heat),
    /// Sign and gossip our leave, keep gossiping for `linger_ms`, then stop.
    Leave { linger_ms: u64 },
    /// Act on this host's guests.
    Guest(GuestAction),
    /// Something an operator should hear of.
    Event(Event),
}

/// What operators are told.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A membership change, or a refused record (rate-limited per reason).
    Member(MembershipEvent),
    /// A sensor read has been outstanding for `running_ms`; the last report
    /// stays in force.
    SensorStuck { running_ms: u64 },
    /// A stuck sensor read returned.
    SensorRecovered,
}

/// What an operator (or a harness) asks of the node.
#[derive(Debug, Clone)]
pub enum Command {
    /// A new price law (a config reload); the price moves from where it is.
    SetPricing(PriceParams),
    /// Leave the cluster gracefully.
    Leave,
}

/// One node's decisions. See the crate documentation.
#[derive(Debug)]
pub struct NodeCore {
    config: CoreConfig,
    controller: PriceController,
    quote: Option<Quote>,
    members: Vec<Member>,
    members_at_ms: u64,
    /// When our latest report was asked for (its age in [`Self::member_rows`]).
    published_at_ms: u64,
    /// What it said.
    published: Option<Heat>,
    /// The latest reading, to re-price on when peers' records arrive.
    last_reading: Option<Reading>,
    now_ms: u64,
    next_read_ms: u64,
    next_observe_ms: u64,
    /// When the outstanding sensor read was asked for.
    asked_at_ms: Option<u64>,
    stuck_reported: bool,
    refusal_event_at: BTreeMap<&'static str, u64>,
    outputs: VecDeque<Output>,
    leaving: bool,
    guests: guests::Book,
    /// When the last moved guest was taken, and its start.
    moved_in: Option<(u64, Ticket)>,
    mover: moves::Mover,
    rng: Rng,
}

impl NodeCore {
    /// A node that has read nothing, seen no one and admitted no guest; its
    /// first read and observation are due at `now_ms`. Its random choices
    /// are the stream of `seed`.
    pub fn new(config: CoreConfig, now_ms: u64, seed: u64) -> Self {
        Self {
            controller: PriceController::new(config.pricing.clone()),
            config,
            quote: None,
            members: Vec::new(),
            members_at_ms: now_ms,
            published_at_ms: now_ms,
            published: None,
            last_reading: None,
            now_ms,
            next_read_ms: now_ms,
            next_observe_ms: now_ms,
            asked_at_ms: None,
            stuck_reported: false,
            refusal_event_at: BTreeMap::new(),
            outputs: VecDeque::new(),
            leaving: false,
            guests: guests::Book::default(),
            moved_in: None,
            mover: moves::Mover::default(),
            rng: Rng::new(seed),
        }
    }

    /// The next sensor period: `read_every_ms`, less up to a tenth.
    fn read_period(&mut self) -> u64 {
        let every = self.config.read_every_ms;
        every - self.rng.below(every / READ_JITTER + 1)
    }

    fn advance(&mut self, now_ms: u64) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        self.now_ms
    }

    /// When the core next wants [`Self::handle_timeout`]; `None` once it leaves.
    pub fn poll_timeout(&self) -> Option<u64> {
        (!self.leaving).then(|| self.next_read_ms.min(self.next_observe_ms))
    }

    /// Fires the timers that are due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let now = self.advance(now_ms);
        if self.leaving {
            return;
        }
        if now >= self.next_read_ms {
            self.next_read_ms = now + self.read_period();
            match self.asked_at_ms {
                None => {
                    self.asked_at_ms = Some(now);
                    self.outputs.push_back(Output::ReadSensors);
                }
                Some(at) => {
                    let running_ms = now - at;
                    if running_ms > self.config.stuck_after_ms && !self.stuck_reported {
                        self.stuck_reported = true;
                        self.event(Event::SensorStuck { running_ms });
                    }
                }
            }
        }
        if now >= self.next_observe_ms {
            self.next_observe_ms = now + self.config.observe_every_ms;
            self.outputs.push_back(Output::ObservePeers);
            if self.config.admission != Admission::NONE {
                self.outputs.push_back(Output::Guest(GuestAction::Survey));
            }
        }
    }

    /// One sensor period's reading: moves the price one step and asks for
    /// a report when the publish policy says so.
    pub fn handle_reading(&mut self, now_ms: u64, reading: &Reading) {
        let now = self.advance(now_ms);
        if self.asked_at_ms.take().is_none() {
            // Read outside the timer (the driver's first read): the next is
            // one period from now.
            self.next_read_ms = now + self.read_period();
        }
        if std::mem::take(&mut self.stuck_reported) {
            self.event(Event::SensorRecovered);
        }
        // The rule's trend is of temperatures read, never of a stand-in.
        match reading.hottest {
            Some((t, _)) => self.mover.observe(now, t),
            None => self.mover.forget_temperatures(),
        }
        self.last_reading = Some(reading.clone());
        self.reprice(now);
    }

    /// Moves the price on the latest reading and publishes what the policy
    /// says is news.
    fn reprice(&mut self, now: u64) {
        let Some(reading) = self.last_reading.as_ref().filter(|_| !self.leaving) else {
            return;
        };
        let input = self.price_input(now, reading);
        let was_held = self.quote.as_ref().is_none_or(|q| q.held);
        let quote = self.controller.update(&input, now);
        let c = &self.config;
        let room = self.guests.room(&c.admission);
        let heat = reading.heat(&c.position, c.default_critical, quote.price_milli, room);
        let unheld = was_held && !quote.held;
        self.quote = Some(quote);
        let why = publish::decide(
            &c.publish,
            self.published.as_ref(),
            self.published_at_ms,
            now,
            &heat,
            unheld,
        );
        if why.is_some() {
            self.published_at_ms = now;
            self.published = Some(heat.clone());
            self.outputs.push_back(Output::Publish(heat));
        }
    }

    /// The verified members as the gossip layer sees them at `now_ms`, and
    /// what changed since the last observation.
    pub fn handle_peers(
        &mut self,
        now_ms: u64,
        members: Vec<Member>,
        events: Vec<MembershipEvent>,
    ) {
        let now = self.advance(now_ms);
        for m in members.iter().filter(|m| m.status == MemberStatus::Left) {
            self.controller.forget(&m.node_id);
        }
        self.members = members;
        self.members_at_ms = now;
        if self.config.publish.reprice_on_arrival {
            self.reprice(now);
        }
        for e in events {
            if let MembershipEvent::Rejected { reason, .. } = &e {
                let label = reason.label();
                let due = self
                    .refusal_event_at
                    .get(label)
                    .is_none_or(|at| now.saturating_sub(*at) >= REFUSAL_EVENT_EVERY_MS);
                if !due {
                    continue;
                }
                self.refusal_event_at.insert(label, now);
            }
            self.event(Event::Member(e));
        }
    }

    /// An operator's command.
    pub fn handle_command(&mut self, now_ms: u64, command: Command) {
        self.advance(now_ms);
        match command {
            Command::SetPricing(params) => self.controller.set_params(params),
            Command::Leave => {
                if !std::mem::replace(&mut self.leaving, true) {
                    self.guests.clear();
                    self.outputs.push_back(Output::Guest(GuestAction::StopAll));
                    let linger_ms = self.config.leave_linger_ms;
                    self.outputs.push_back(Output::Leave { linger_ms });
                }
            }
        }
    }

    /// A request to start a guest that takes `load`: the core answers with
    /// [`GuestAction::Start`] (its share is reserved from now) or
    /// [`GuestAction::Refuse`], for the ticket returned.
    pub fn request_guest(&mut self, now_ms: u64, load: GuestLoad) -> Ticket {
        self.advance(now_ms);
        let ticket = self.guests.ticket();
        let action = match self.leaving {
            true => GuestAction::Refuse(ticket, Refusal::Leaving),
            false => match self.guests.reserve(ticket, &self.config.admission, load) {
                Ok(()) => GuestAction::Start(ticket),
                Err(why) => GuestAction::Refuse(ticket, why),
            },
        };
        self.outputs.push_back(Output::Guest(action));
        ticket
    }

    /// A guest offered by another node's placement (or placed here by our
    /// own): admitted as [`Self::request_guest`] does, once its bid (if it
    /// has one) meets our price now.
    pub fn offer_guest(&mut self, now_ms: u64, load: GuestLoad, bid_milli: Option<u64>) -> Ticket {
        match self.above_bid(bid_milli) {
            Some(why) => self.refuse(now_ms, why),
            None => self.request_guest(now_ms, load),
        }
    }

    /// An offer's bid below our price now (a leaving node refuses for that).
    fn above_bid(&self, bid_milli: Option<u64>) -> Option<Refusal> {
        let price = self.quote.as_ref().map(|q| q.price_milli);
        match (bid_milli, price) {
            (Some(bid), Some(price)) if bid < price && !self.leaving => Some(Refusal::AboveBid {
                bid_milli: bid,
                price_milli: price,
            }),
            _ => None,
        }
    }

    fn refuse(&mut self, now_ms: u64, why: Refusal) -> Ticket {
        self.advance(now_ms);
        let ticket = self.guests.ticket();
        self.outputs
            .push_back(Output::Guest(GuestAction::Refuse(ticket, why)));
        ticket
    }

    /// A guest moving here from another node: taken as
    /// [`Self::offer_guest`] takes an offer, but at most one per
    /// `admit_moved_every_ms` (a start that fails does not count). A
    /// leaving node, or one dearer than the bid, says so rather than this.
    pub fn offer_moved_guest(
        &mut self,
        now_ms: u64,
        load: GuestLoad,
        bid_milli: Option<u64>,
    ) -> Ticket {
        let now = self.advance(now_ms);
        let every_ms = self.config.admit_moved_every_ms;
        let due = self
            .moved_in
            .filter(|(at, _)| now < at.saturating_add(every_ms));
        if let (Some((at, _)), false, None) = (due, self.leaving, self.above_bid(bid_milli)) {
            let why = Refusal::Paced {
                ago_ms: now - at,
                every_ms,
            };
            return self.refuse(now_ms, why);
        }
        let ticket = self.offer_guest(now_ms, load, bid_milli);
        if self.outputs.back() == Some(&Output::Guest(GuestAction::Start(ticket))) {
            self.moved_in = Some((now, ticket));
        }
        ticket
    }

    /// Where to offer a guest that needs `need`: this node and the members
    /// it sees, as [`placement`] chooses among them with the core's random
    /// stream.
    pub fn place(&mut self, now_ms: u64, need: &Need, params: &PlaceParams) -> Placement {
        let now = self.advance(now_ms);
        let local = self.local_seen();
        let extra = now.saturating_sub(self.members_at_ms);
        let ttl = self.config.report_ttl_ms;
        let members = self
            .members
            .iter()
            .map(|m| placement::Seen::member(m, extra, ttl));
        placement::place(
            std::iter::once(local).chain(members),
            need,
            params,
            &mut self.rng,
        )
    }

    /// The guest to move away from this node now, and where, if the rule
    /// of [`moves`] calls for one; `movable` are the guests that could go.
    pub fn plan_move(
        &mut self,
        now_ms: u64,
        movable: &[Movable],
        place: &PlaceParams,
        params: &MoveParams,
    ) -> Option<Move> {
        let now = self.advance(now_ms);
        let price = match (&self.quote, self.leaving) {
            (Some(q), false) => q.price_milli,
            _ => return None,
        };
        let extra = now.saturating_sub(self.members_at_ms);
        let ttl = self.config.report_ttl_ms;
        let peers = self
            .members
            .iter()
            .filter_map(|m| placement::Seen::member(m, extra, ttl).ok())
            .collect();
        let cores = self.config.admission.cores;
        self.mover.plan(
            now,
            (price, cores),
            peers,
            movable,
            (place, params),
            &mut self.rng,
        )
    }

    /// This node as placement sees it: its latest reading at its price now.
    fn local_seen(&self) -> Result<placement::Seen, placement::Why> {
        let c = &self.config;
        let (Some(reading), Some(quote)) = (self.last_reading.as_ref(), self.quote.as_ref()) else {
            return Err(placement::Why::NotCounting);
        };
        if self.leaving || c.admission == Admission::NONE {
            return Err(placement::Why::NotCounting);
        }
        let room = self.guests.room(&c.admission);
        let heat = reading.heat(&c.position, c.default_critical, quote.price_milli, room);
        Ok(placement::Seen {
            target: Target::Local {
                price_milli: quote.price_milli,
            },
            hottest: heat.hottest,
            critical: heat.critical,
            headroom: heat.headroom,
            cap: heat.power_cap,
            room,
        })
    }

    /// The start of `ticket` finished: guest `started` runs, or (`None`)
    /// the start failed and nothing runs.
    pub fn handle_guest_started(&mut self, now_ms: u64, ticket: Ticket, started: Option<u64>) {
        self.advance(now_ms);
        self.guests.started(ticket, started);
        // A moved guest that never started took nothing here.
        if started.is_none() && self.moved_in.is_some_and(|(_, t)| t == ticket) {
            self.moved_in = None;
        }
    }

    /// Guest `guest` was killed; its share is free again.
    pub fn handle_guest_gone(&mut self, now_ms: u64, guest: u64) {
        self.advance(now_ms);
        self.guests.gone(guest);
    }

    /// The backend's live guests (id and load), as a
    /// [`GuestAction::Survey`] found them.
    pub fn handle_guests(&mut self, now_ms: u64, live: &[(u64, GuestLoad)]) {
        self.advance(now_ms);
        if !self.leaving {
            self.guests.surveyed(live);
        }
    }

    /// What the guests admitted and not seen killed take of the host.
    pub fn guest_load(&self) -> GuestLoad {
        self.guests.load()
    }

    /// The next thing to do, oldest first.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The latest quote, with the terms that made it.
    pub fn quote(&self) -> Option<&Quote> {
        self.quote.as_ref()
    }

    /// The members as last observed.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// This node (its latest signed report, `own`) and every member, for
    /// operators; `gossip_peers` counts every gossip peer, verified or not.
    /// Ages are on the core's clock: the members' since they were observed,
    /// ours since the report was asked for.
    pub fn member_rows(
        &self,
        now_ms: u64,
        own: Option<&HeatReport>,
        gossip_peers: usize,
    ) -> Members {
        let own = own.map(|r| (r, now_ms.saturating_sub(self.published_at_ms)));
        let extra = now_ms.saturating_sub(self.members_at_ms);
        view::rows(
            own,
            &self.members,
            extra,
            self.config.report_ttl_ms,
            gossip_peers,
        )
    }

    /// The law's input: our reading and every peer with a verified report.
    /// Dead peers and peers with stale reports go in marked stale (the law
    /// never lets them make us cheaper); peers that left are not neighbours.
    /// A report's age runs on from its observation, so one that went stale
    /// since is stale now.
    fn price_input(&self, now_ms: u64, reading: &Reading) -> PriceInput {
        let (temp, critical) = reading.temperature_or_limit(self.config.default_critical);
        let extra = now_ms.saturating_sub(self.members_at_ms);
        let peers = self
            .members
            .iter()
            .filter(|m| m.status != MemberStatus::Left)
            .filter_map(|m| {
                let r = m.report.as_ref()?;
                Some(PeerView {
                    node: m.node_id,
                    position: r.position.clone(),
                    temp: r.hottest,
                    critical: r.critical,
                    draw: Some(r.power_draw),
                    cap: Some(r.power_cap).filter(|c| c.0 > 0),
                    age_ms: m.age_ms.saturating_add(extra),
                    stale: !view::counts(m, extra, self.config.report_ttl_ms),
                })
            })
            .collect();
        PriceInput {
            own: OwnSummary {
                temp,
                critical,
                draw: reading.power_draw,
                cap: reading.power_cap,
            },
            position: self.config.position.clone(),
            peers,
        }
    }

    fn event(&mut self, e: Event) {
        self.outputs.push_back(Output::Event(e));
    }
}

#[cfg(test)]
mod tests;
