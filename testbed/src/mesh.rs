//! Maxwell in the simulation: every host runs the agent's own
//! [`NodeCore`] (the price law and its reading of the members) on what
//! simulated gossip brought it (reports `delay` rounds old, each lost with
//! probability `loss`, nothing across a partition; a report older than the
//! gossip TTL is stale, as the verifier would say), the agent's market core
//! on every host ([`crate::hostmarket`]: who gets how much of the host),
//! and trading between hosts: a host whose price is well above
//! a cheaper offer it has heard of lets its lowest-value guest go there, if
//! the destination (the authority on its own admission) has room.

use crate::policies::Policy;
use crate::rng::Rng;
use crate::world::World;
use maxwell_core::{CoreConfig, NodeCore, Output, Reading};
use maxwell_gossip::Position;
use maxwell_gossip::{
    node_id::NODE_ID_LEN, Freshness, HeatReport, Member, MemberStatus, MicroWatts, MilliCelsius,
    NodeId, SensorSource, VerifierConfig,
};
use maxwell_pricing::PriceParams;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Power cap of every simulated host, W.
pub const CAP_W: f64 = 400.0;
/// A host sells a guest when its price exceeds an offer by this much (milli).
pub const MOVE_MARGIN_MILLI: u64 = 250;
/// Rounds a host waits after letting a guest go.
pub const COOLDOWN_S: u64 = 5;
/// A host admits at most one incoming guest per this many rounds.
pub const ADMIT_EVERY_S: u64 = 10;
/// A host admits a guest only if its demand stays under this.
pub const ADMIT_LIMIT: f64 = 0.75;
/// A seller asks at most this many destinations per round, each the
/// cheaper of two random offers that qualify (power of two choices).
pub const OFFER_TRIES: usize = 6;
/// Offers older than this are ignored by the market, ms.
pub const OFFER_TTL_MS: u64 = 5_000;

/// What a node gossips about itself each round.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    at_ms: u64,
    temp: MilliCelsius,
    critical: MilliCelsius,
    draw_w: f64,
    demand: f64,
    price: u64,
}

/// The Maxwell policy.
#[derive(Debug)]
pub struct Maxwell {
    cores: Vec<NodeCore>,
    /// Age past which a report is stale (the agent's default).
    ttl_ms: u64,
    /// Every rack's name, made once.
    racks: Vec<String>,
    prices: Vec<u64>,
    published: VecDeque<Vec<Report>>,
    view: Vec<Vec<Option<Report>>>,
    cooldown: Vec<u64>,
    admitted_at: Vec<Option<u64>>,
    rng: Rng,
    delay: usize,
    loss: f64,
    /// The agent's market core, one per host.
    markets: crate::hostmarket::HostMarkets,
}

fn node(h: usize) -> NodeId {
    let mut id = [0u8; NODE_ID_LEN];
    id[..8].copy_from_slice(&(h as u64).to_be_bytes());
    NodeId(id)
}

fn watts(w: f64) -> Option<MicroWatts> {
    Some(MicroWatts::from_watts(w))
}

/// Host `h`'s core: its rack and slot, the law under test, a sensor and an
/// observation each simulated second.
fn core_config(
    layout: &crate::recirculation::Layout,
    h: usize,
    pricing: PriceParams,
) -> CoreConfig {
    CoreConfig {
        position: Position::new(
            layout.rack_name(layout.rack_of(h)),
            layout.slot_of(h) as u16,
        ),
        default_critical: MilliCelsius::from_celsius(95.0),
        pricing,
        read_every_ms: 1_000,
        observe_every_ms: 1_000,
        stuck_after_ms: 10_000,
        report_ttl_ms: VerifierConfig::default().ttl_ms,
        leave_linger_ms: 3_000,
        admission: maxwell_core::Admission::NONE,
        publish: maxwell_core::PublishPolicy::EVERY_READING,
    }
}

impl Maxwell {
    /// `hosts` controllers with `params`; gossip `delay` rounds late, each
    /// report lost with probability `loss`.
    pub fn new(
        layout: &crate::recirculation::Layout,
        params: PriceParams,
        delay: usize,
        loss: f64,
        seed: u64,
    ) -> Self {
        let hosts = layout.hosts();
        Self {
            cores: (0..hosts)
                .map(|h| NodeCore::new(core_config(layout, h, params.clone()), 0, seed ^ h as u64))
                .collect(),
            ttl_ms: VerifierConfig::default().ttl_ms,
            racks: (0..layout.racks).map(|r| layout.rack_name(r)).collect(),
            prices: vec![params.config().base_milli; hosts],
            published: VecDeque::new(),
            view: vec![vec![None; hosts]; hosts],
            cooldown: vec![0; hosts],
            admitted_at: vec![None; hosts],
            rng: Rng::derive(seed, 0x3E5),
            delay,
            loss,
            markets: crate::hostmarket::HostMarkets::new(hosts),
        }
    }

    fn publish_and_gossip(&mut self, w: &World) {
        let now_ms = w.t * 1000;
        let own: Vec<Report> = (0..w.layout.hosts())
            .map(|h| Report {
                at_ms: now_ms,
                temp: MilliCelsius::from_celsius(w.thermal[h].die_c),
                critical: MilliCelsius::from_celsius(w.models[h].critical_c),
                draw_w: w.power_w[h],
                demand: w.host_demand[h],
                price: self.prices[h],
            })
            .collect();
        self.published.push_back(own);
        while self.published.len() > self.delay + 1 {
            self.published.pop_front();
        }
        if self.published.len() <= self.delay {
            return;
        }
        let src = &self.published[0];
        for (i, row) in self.view.iter_mut().enumerate() {
            for (j, slot) in row.iter_mut().enumerate() {
                if i != j && w.reachable(i, j) && self.rng.unit() >= self.loss {
                    *slot = Some(src[j]);
                }
            }
        }
    }

    /// Host `h`'s core observes what gossip brought it and reads its
    /// sensors; its report's price is the host's price.
    fn quote(&mut self, w: &World, h: usize) {
        let now_ms = w.t * 1000;
        let members = self.view[h]
            .iter()
            .enumerate()
            .filter_map(|(j, r)| Some((j, (*r)?)))
            .map(|(j, r)| self.member(w, j, r, now_ms))
            .collect();
        let core = &mut self.cores[h];
        core.handle_peers(now_ms, members, Vec::new());
        let reading = Reading {
            hottest: Some((
                MilliCelsius::from_celsius(w.thermal[h].die_c),
                MilliCelsius::from_celsius(w.models[h].critical_c),
            )),
            power_draw: watts(w.power_w[h]),
            power_cap: watts(CAP_W),
            headroom: watts(CAP_W - w.power_w[h]),
            source: SensorSource::Emulated,
        };
        core.handle_reading(now_ms, &reading);
        while let Some(output) = core.poll_output() {
            if let Output::Publish(heat) = output {
                self.prices[h] = heat.price_milli;
            }
        }
    }

    /// Host `j` as a verified member, from its last report that arrived.
    fn member(&self, w: &World, j: usize, r: Report, now_ms: u64) -> Member {
        let l = &w.layout;
        let age_ms = now_ms.saturating_sub(r.at_ms);
        let draw = MicroWatts::from_watts(r.draw_w);
        Member {
            node_id: node(j),
            addr: SocketAddr::from(([127, 0, 0, 1], 7946)),
            generation: 1,
            status: MemberStatus::Alive,
            report: Some(HeatReport {
                node_id: node(j),
                name: String::new(),
                generation: 1,
                seq: r.at_ms,
                timestamp_ms: r.at_ms,
                position: Position::new(self.racks[l.rack_of(j)].clone(), l.slot_of(j) as u16),
                hottest: r.temp,
                critical: r.critical,
                power_draw: draw,
                power_cap: MicroWatts::from_watts(CAP_W),
                headroom: MicroWatts::from_watts(CAP_W - r.draw_w),
                price_milli: r.price,
                source: SensorSource::Emulated,
                room: Default::default(),
                api: None,
                p2p: None,
            }),
            age_ms,
            freshness: Freshness::of(age_ms, self.ttl_ms),
        }
    }

    /// The market step of host `h`: offer its lowest-value guest (the
    /// smallest of them) to a few fresh offers it has heard of that have
    /// room for it and undercut it by the margin, each the cheaper of two
    /// picked at random. The destination decides on what it knows
    /// now: it admits one guest per [`ADMIT_EVERY_S`], if the guest fits
    /// under [`ADMIT_LIMIT`] and its own current price still undercuts the
    /// seller's by the margin.
    fn trade(&mut self, w: &World, h: usize, moves: &mut Vec<(usize, usize)>) {
        if self.cooldown[h] > w.t {
            return;
        }
        let now_ms = w.t * 1000;
        let mine = self.prices[h];
        let Some((g, d)) = w.on_host[h]
            .iter()
            .filter(|&&g| w.guests[g].frozen_until <= w.t)
            .map(|&g| (g, w.demand(g, w.t), w.guests[g].class))
            .min_by(|a, b| a.2.cmp(&b.2).then(a.1.total_cmp(&b.1)))
            .map(|(g, d, _)| (g, d))
        else {
            return;
        };
        let offers: Vec<(u64, usize)> = self.view[h]
            .iter()
            .enumerate()
            .filter_map(|(j, r)| r.map(|r| (j, r)))
            .filter(|(_, r)| {
                now_ms.saturating_sub(r.at_ms) <= OFFER_TTL_MS && r.demand + d <= ADMIT_LIMIT
            })
            .filter(|(_, r)| r.price + MOVE_MARGIN_MILLI < mine)
            .map(|(j, r)| (r.price, j))
            .collect();
        // Power of two choices over every offer that qualifies: everyone
        // hears of the same cheapest hosts, and asking only those queues.
        let mut tries = Vec::with_capacity(OFFER_TRIES);
        for _ in 0..OFFER_TRIES.min(offers.len()) {
            let a = offers[self.rng.below(offers.len())];
            let b = offers[self.rng.below(offers.len())];
            tries.push(a.min(b));
        }
        for &(_, dest) in &tries {
            let busy = self.admitted_at[dest].is_some_and(|at| w.t < at + ADMIT_EVERY_S);
            let fits = w.host_demand[dest] + d <= ADMIT_LIMIT;
            let cheaper = self.prices[dest] + MOVE_MARGIN_MILLI < mine;
            if !busy && fits && cheaper && w.reachable(h, dest) {
                moves.push((g, dest));
                self.admitted_at[dest] = Some(w.t);
                self.cooldown[h] = w.t + COOLDOWN_S;
                return;
            }
        }
    }
}

impl Policy for Maxwell {
    fn name(&self) -> &'static str {
        "maxwell"
    }
    fn act(&mut self, w: &World, moves: &mut Vec<(usize, usize)>) {
        self.publish_and_gossip(w);
        for h in 0..w.layout.hosts() {
            self.quote(w, h);
        }
        for h in 0..w.layout.hosts() {
            self.trade(w, h, moves);
        }
    }
    fn serve(&mut self, w: &World, h: usize, capacity: f64) -> Option<(f64, f64)> {
        Some(self.markets.serve(w, h, capacity, self.prices[h], CAP_W))
    }
    fn prices(&self) -> Option<&[u64]> {
        Some(&self.prices)
    }
}
