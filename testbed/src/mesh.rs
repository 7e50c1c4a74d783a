//! Maxwell in the simulation: every host runs the agent's own
//! [`NodeCore`] (the price law and its reading of the members) on what
//! simulated gossip brought it (reports `delay` rounds old, each lost with
//! probability `loss`, nothing across a partition; a report older than the
//! gossip TTL is stale, as the verifier would say), the agent's market core
//! on every host ([`crate::hostmarket`]: who gets how much of the host),
//! and the agent's heat rule between hosts ([`NodeCore::plan_move`] at the
//! agent's default `[placement]`, and [`NodeCore::offer_moved_guest`] at
//! the destination, the authority on its own admission).

use crate::hostmarket::bid_milli;
use crate::policies::Policy;
use crate::rng::Rng;
use crate::world::World;
use maxwell_core::{
    Admission, CoreConfig, GuestAction, GuestLoad, Movable, MoveParams, NodeCore, Output,
    PlaceParams, Reading, Target,
};
use maxwell_gossip::{
    node_id::NODE_ID_LEN, Freshness, HeatReport, Member, MemberStatus, MicroWatts, MilliCelsius,
    NodeId, SensorSource, VerifierConfig,
};
use maxwell_gossip::{Position, Room};
use maxwell_pricing::PriceParams;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

/// Power cap of every simulated host, W.
pub const CAP_W: f64 = 400.0;
/// A host admits a guest only if its demand stays under this (the agent's
/// admission share).
pub const ADMIT_LIMIT: f64 = 0.75;
/// A simulated vCPU is this fraction of a host: room and guests' loads are
/// counted in them, as the agent counts its admission share.
pub const VCPUS_PER_HOST: f64 = 1000.0;
/// Memory every simulated guest holds, MiB, and every host has room for.
const GUEST_MIB: u64 = 1024;
const HOST_MIB: u64 = 1 << 20;

/// What a node gossips about itself each round.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Report {
    at_ms: u64,
    temp: MilliCelsius,
    critical: MilliCelsius,
    draw_w: f64,
    price: u64,
    room: Room,
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
    /// Each host's room, as its core last published it.
    rooms: Vec<Room>,
    /// When each moved guest arrived where it is, ms.
    arrived_at: HashMap<usize, u64>,
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

/// Host `h`'s offer endpoint, as its report gives it.
fn endpoint(h: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (h >> 8) as u8, h as u8], 7948))
}

fn host_of(node: NodeId) -> usize {
    let mut b = [0u8; 8];
    b.copy_from_slice(&node.0[..8]);
    u64::from_be_bytes(b) as usize
}

/// What guest `g` takes of its host now, in simulated vCPUs (rounded up).
fn load(w: &World, g: usize) -> GuestLoad {
    GuestLoad {
        vcpus: (w.demand(g, w.t).max(0.0) * VCPUS_PER_HOST).ceil() as u64,
        memory_mib: GUEST_MIB,
    }
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
        admission: Admission {
            cores: VCPUS_PER_HOST as u64,
            memory_mib: HOST_MIB,
            cpu_fraction: ADMIT_LIMIT,
            memory_fraction: 1.0,
        },
        publish: maxwell_core::PublishPolicy::EVERY_READING,
        admit_moved_every_ms: MoveParams::DEFAULT.admit_every_ms,
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
            rooms: vec![Room::default(); hosts],
            arrived_at: HashMap::new(),
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
                price: self.prices[h],
                room: self.rooms[h],
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
        let live: Vec<(u64, GuestLoad)> = w.on_host[h]
            .iter()
            .map(|&g| (g as u64, load(w, g)))
            .collect();
        let core = &mut self.cores[h];
        core.handle_guests(now_ms, &live);
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
                self.rooms[h] = heat.room;
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
                room: r.room,
                api: None,
                p2p: Some(endpoint(j)),
            }),
            age_ms,
            freshness: Freshness::of(age_ms, self.ttl_ms),
        }
    }

    /// The market step of host `h`: the agent's own heat rule
    /// ([`NodeCore::plan_move`], with the agent's default `[placement]`)
    /// picks a guest and a cheaper, cool peer with room for it, from what
    /// gossip brought. The destination's core takes it or not, on what it
    /// knows now, as the agent's target does
    /// ([`NodeCore::offer_moved_guest`]: room, price within the bid, one
    /// moved guest per `admit_every_ms`).
    fn trade(&mut self, w: &World, h: usize, moves: &mut Vec<(usize, usize)>) {
        let now_ms = w.t * 1000;
        let movable: Vec<Movable> = w.on_host[h]
            .iter()
            .filter(|&&g| w.guests[g].frozen_until <= w.t)
            .map(|&g| Movable {
                vm: g as u64,
                load: load(w, g),
                // A simulated vCPU is busy all of this second.
                mcores: load(w, g).vcpus * 1000,
                bid_milli: bid_milli(w.guests[g].class),
                arrived_at_ms: self.arrived_at.get(&g).copied(),
            })
            .collect();
        if movable.is_empty() {
            return;
        }
        let (place, rule) = (&PlaceParams::DEFAULT, &MoveParams::DEFAULT);
        let Some(mv) = self.cores[h].plan_move(now_ms, &movable, place, rule) else {
            return;
        };
        let Target::Peer { node, .. } = mv.target else {
            return;
        };
        let (g, dest) = (mv.vm as usize, host_of(node));
        if dest >= w.layout.hosts() || !w.reachable(h, dest) {
            self.cores[h].handle_move_failed(now_ms, mv.vm);
            return;
        }
        let core = &mut self.cores[dest];
        let bid = Some(bid_milli(w.guests[g].class));
        let ticket = core.offer_moved_guest(now_ms, load(w, g), bid);
        let mut taken = false;
        while let Some(output) = core.poll_output() {
            if output == Output::Guest(GuestAction::Start(ticket)) {
                core.handle_guest_started(now_ms, ticket, Some(mv.vm));
                taken = true;
            }
        }
        if taken {
            moves.push((g, dest));
            self.arrived_at.insert(g, now_ms);
        } else {
            self.cores[h].handle_move_failed(now_ms, mv.vm);
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
        // Hosts trade in a new random order each second: a destination
        // takes one moved guest per pace, and no host wins every race.
        let mut order: Vec<usize> = (0..w.layout.hosts()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.below(i + 1));
        }
        for h in order {
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
