//! Cluster tests as data: a [`Scenario`] is a list of [`Op`]s (add nodes,
//! heat a node, cut links, heal, crash, bounce, leave, set loss or latency,
//! wait, expect) run by [`run`] on a turmoil simulation in which every host
//! runs the agent's [`NodeCore`] (the real price law) over a real [`Mesh`]
//! on the [`TurmoilTransport`]. Only the sensor is synthetic: it reads the
//! temperature the scenario sets.
//!
//! Every random choice (turmoil's, the wire's loss, each node's protocol
//! and core) draws from the scenario's seed, so a run replays from it; the
//! expectations are still bounds ("within 5 s"), and each scenario runs
//! under several seeds.

use crate::rogue;
use crate::transport::{TurmoilTransport, Wire};
use crate::world::{cluster_keys, id_of, key_of, sim_clock, Seeds, GOSSIP_PORT};
use maxwell_core::{Command, CoreConfig, NodeCore, Output, Reading};
use maxwell_gossip::swim::SwimConfig;
use maxwell_gossip::Position;
use maxwell_gossip::{
    Member, MemberStatus, MicroWatts, MilliCelsius, RejectCounters, SensorSource,
};
use maxwell_node::mesh::transport::GossipStats;
use maxwell_node::mesh::{Mesh, MeshSettings};
use maxwell_types::sync::lock;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Sensor period of every node (it publishes a report each period).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);
/// Age past which a peer's report is stale, ms.
pub const REPORT_TTL_MS: u64 = 3_000;
/// How often a node observes its members.
pub const OBSERVE_EVERY: Duration = Duration::from_millis(100);
/// Temperature every node starts at.
pub const START_CELSIUS: f64 = 40.0;

/// Which nodes an expectation is checked at.
#[derive(Debug, Clone, PartialEq)]
pub enum Who {
    /// Every running honest node other than the subject.
    All,
    /// These nodes.
    Nodes(Vec<usize>),
}

/// What a node is expected to be, as seen by others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Alive, verified, fresh: counts downstream.
    Counted,
    Dead,
    Left,
    /// Present but not counted (dead, left or stale).
    NotCounted,
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Starts `n` more honest nodes.
    AddNodes(usize),
    /// Sets a node's hottest temperature.
    Heat { node: usize, celsius: f64 },
    /// Partitions two groups from each other (both ways).
    Cut { a: Vec<usize>, b: Vec<usize> },
    /// Drops datagrams from one group to another only.
    CutOneWay { from: Vec<usize>, to: Vec<usize> },
    /// Cuts a node from every other host.
    Isolate(usize),
    /// Repairs every link.
    HealAll,
    /// Stops a host's software at once.
    Crash(usize),
    /// Restarts a host's software (a new generation).
    Bounce(usize),
    /// Asks a node to leave gracefully.
    Leave(usize),
    /// Drops each datagram with this probability.
    SetLoss(f64),
    /// Delivers datagrams with up to this latency.
    SetLatency(Duration),
    /// Starts a rogue host that holds the cluster key (a compromised
    /// member) and sends forged and replayed records for `victim`, and foca
    /// messages in its name.
    AddRogue { victim: usize },
    /// Starts a host without the cluster key that floods the gossip port:
    /// "`victim` is dead", phantom members, garbage, replays.
    AddOutsider { victim: usize },
    /// Lets simulated time pass.
    Wait(Duration),
    /// Every running honest node counts every other one.
    ExpectConverged { within: Duration },
    /// `seen_by` see `node` at `celsius`.
    ExpectHeat {
        node: usize,
        celsius: f64,
        seen_by: Who,
        within: Duration,
    },
    /// `seen_by` see `node` as `seen`.
    ExpectSeen {
        node: usize,
        seen: Seen,
        seen_by: Who,
        within: Duration,
    },
    /// `by` have refused at least `at_least` records or datagrams for
    /// `reason` (a verifier or a protocol refusal label).
    ExpectRejected {
        reason: &'static str,
        at_least: u64,
        by: Who,
        within: Duration,
    },
    /// Waits (up to 60 s) until every running node's price has settled,
    /// then remembers each, for the price expectations.
    MarkPrices,
    /// `nodes` price below their marked price.
    ExpectCheaper { nodes: Who, within: Duration },
    /// `nodes` price above their marked price.
    ExpectDearer { nodes: Who, within: Duration },
    /// At every step for all of `over`, no node of `nodes` prices below its
    /// marked price.
    ExpectNeverCheaper { nodes: Who, over: Duration },
}

/// A named list of operations run on one turmoil seed.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub seed: u64,
    pub gossip_interval: Duration,
    pub ops: Vec<Op>,
}

/// What a scenario measured: for each expectation, the simulated time it took.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub waits: Vec<(usize, Duration)>,
    pub datagrams_lost: u64,
}

/// What the driver and a host share about one node.
#[derive(Debug, Default)]
pub struct Ctl {
    pub celsius: f64,
    pub leave: bool,
    pub running: bool,
    pub starts: u32,
    pub generation: u64,
    pub view: Vec<Member>,
    pub counters: RejectCounters,
    /// Members the protocol holds up, verified or not.
    pub gossip_peers: usize,
    /// Datagrams and records the protocol refused, by reason.
    pub refused: std::collections::BTreeMap<maxwell_gossip::swim::Refusal, u64>,
    /// The core's latest price, thousandths.
    pub price_milli: Option<u64>,
    /// Whether that price is held (settled inside the law's hysteresis band).
    pub price_held: bool,
}

fn host_name(i: usize) -> String {
    format!("n{i}")
}

/// Gossip settings of a simulated node: the seeds other than itself, the
/// test preset's timing around the scenario's gossip round.
pub fn settings(i: usize, interval: Duration, seeds: &Seeds) -> MeshSettings {
    let me = turmoil::lookup(host_name(i));
    let seeds = lock(seeds)
        .iter()
        .filter(|ip| **ip != me)
        .map(|ip| SocketAddr::new(*ip, GOSSIP_PORT))
        .collect();
    MeshSettings {
        listen_addr: SocketAddr::from(([0, 0, 0, 0], GOSSIP_PORT)),
        advertise_addr: SocketAddr::new(me, GOSSIP_PORT),
        seeds,
        keys: cluster_keys(),
        swim: swim_config(interval),
        verifier: maxwell_gossip::VerifierConfig {
            ttl_ms: REPORT_TTL_MS,
            max_age_ms: REPORT_TTL_MS * 2,
            ..Default::default()
        },
        tiers: None,
    }
}

/// The protocol's timing for a gossip round of `interval`.
pub fn swim_config(interval: Duration) -> SwimConfig {
    SwimConfig {
        probe_period_ms: 200,
        probe_rtt_ms: 60,
        suspect_to_down_ms: 600,
        gossip_every_ms: interval.as_millis() as u64,
        sync_every_ms: 2_000,
        forget_down_after_ms: 120_000,
        ..SwimConfig::default()
    }
}

/// Node `i`'s core: rack r1, slot `i + 1`, the default price law.
pub fn core_config(i: usize, interval: Duration) -> CoreConfig {
    let ms = |d: Duration| d.as_millis() as u64;
    CoreConfig {
        position: Position::new("r1", u16::try_from(i + 1).unwrap_or(u16::MAX)),
        default_critical: MilliCelsius::from_celsius(95.0),
        pricing: maxwell_pricing::PriceParams::default(),
        read_every_ms: ms(PUBLISH_EVERY),
        observe_every_ms: ms(OBSERVE_EVERY),
        stuck_after_ms: 10_000,
        report_ttl_ms: REPORT_TTL_MS,
        leave_linger_ms: ms(interval * 3),
        admission: maxwell_core::Admission::NONE,
        publish: maxwell_core::PublishPolicy {
            min_gap_ms: ms(PUBLISH_EVERY),
            heartbeat_ms: REPORT_TTL_MS / 3,
            deadband: true,
            reprice_on_arrival: true,
        },
        admit_moved_every_ms: 0,
    }
}

/// The synthetic sensor: the temperature the scenario set, 200 W of 400.
fn reading(celsius: f64) -> Reading {
    Reading {
        hottest: Some((
            MilliCelsius::from_celsius(celsius),
            MilliCelsius::from_celsius(95.0),
        )),
        power_draw: Some(MicroWatts::from_watts(200.0)),
        power_cap: Some(MicroWatts::from_watts(400.0)),
        headroom: Some(MicroWatts::from_watts(200.0)),
        source: SensorSource::Emulated,
    }
}

/// The software of one honest host, driven as the agent drives it: the
/// core's timers, its reads (answered by the synthetic sensor), its
/// observations, its reports and its leave.
async fn node_main(
    i: usize,
    ctl: Arc<Mutex<Ctl>>,
    wire: Wire,
    interval: Duration,
    seeds: Seeds,
    core_seed: u64,
) -> turmoil::Result {
    let clock = sim_clock();
    let generation = clock();
    let transport = TurmoilTransport::new(wire);
    let mesh = Mesh::start(
        settings(i, interval, &seeds),
        key_of(i),
        host_name(i),
        generation,
        &transport,
        Arc::clone(&clock),
        core_seed ^ generation ^ 0x5357,
        Arc::new(GossipStats::default()),
    )
    .await?;
    // Each start is a new incarnation with its own stream, as in the agent.
    let mut core = NodeCore::new(core_config(i, interval), clock(), core_seed ^ generation);
    {
        let mut c = lock(&ctl);
        c.running = true;
        c.starts += 1;
        c.generation = generation;
    }
    loop {
        let wake = core.poll_timeout().map_or(OBSERVE_EVERY, |at| {
            Duration::from_millis(at.saturating_sub(clock()))
        });
        let arrived = tokio::select! {
            biased;
            () = tokio::time::sleep(wake) => false,
            () = mesh.changed() => true,
        };
        let now = clock();
        if lock(&ctl).leave {
            core.handle_command(now, Command::Leave);
        }
        if arrived {
            // Records arrived: re-price now, as the agent does.
            observe(&mesh, &mut core, &ctl, now);
        }
        core.handle_timeout(now);
        while let Some(output) = core.poll_output() {
            match output {
                Output::ReadSensors => {
                    let celsius = lock(&ctl).celsius;
                    core.handle_reading(now, &reading(celsius));
                }
                Output::ObservePeers => observe(&mesh, &mut core, &ctl, now),
                Output::Publish(heat) => {
                    mesh.publish(&heat)?;
                    let mut c = lock(&ctl);
                    c.price_milli = Some(heat.price_milli);
                    c.price_held = core.quote().is_some_and(|q| q.held);
                }
                Output::Leave { linger_ms } => {
                    mesh.leave(Duration::from_millis(linger_ms)).await?;
                    lock(&ctl).running = false;
                    return Ok(());
                }
                // Harness hosts run no guests; nothing is ever admitted.
                Output::Event(_) | Output::Guest(_) => {}
            }
        }
    }
}

/// Hands the core what the mesh holds, and shows it to the driver.
fn observe(mesh: &Mesh, core: &mut NodeCore, ctl: &Mutex<Ctl>, now: u64) {
    let events = mesh.refresh();
    core.handle_peers(now, mesh.members(), events);
    let mut c = lock(ctl);
    c.view = core.members().to_vec();
    c.counters = mesh.counters();
    c.refused = mesh.protocol_counters().refused;
    c.gossip_peers = mesh.gossip_peers();
}

/// Runs a scenario; panics with the failing step and what was seen.
pub fn run(s: &Scenario) -> Report {
    Driver::new(s).run(s)
}

struct Driver<'a> {
    sim: turmoil::Sim<'a>,
    wire: Wire,
    nodes: Vec<Arc<Mutex<Ctl>>>,
    interval: Duration,
    rogues: usize,
    /// Rogues that hold the cluster key (members; the others never are).
    insiders: usize,
    seeds: Seeds,
    /// The scenario's seed, from which each node's core draws.
    seed: u64,
    /// Nodes the scenario means to be up: added, not crashed, not left.
    up: std::collections::BTreeSet<usize>,
    /// Prices remembered by [`Op::MarkPrices`].
    marks: std::collections::BTreeMap<usize, u64>,
}

impl<'a> Driver<'a> {
    fn new(s: &Scenario) -> Self {
        let sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(3600))
            .tick_duration(Duration::from_millis(10))
            .udp_capacity(4096)
            .rng_seed(s.seed)
            .build();
        Self {
            sim,
            wire: Wire::new(s.seed),
            nodes: Vec::new(),
            interval: s.gossip_interval,
            rogues: 0,
            insiders: 0,
            seeds: Seeds::default(),
            seed: s.seed,
            up: std::collections::BTreeSet::new(),
            marks: std::collections::BTreeMap::new(),
        }
    }

    fn run(mut self, s: &Scenario) -> Report {
        let mut report = Report::default();
        for (step, op) in s.ops.iter().enumerate() {
            let started = self.sim.elapsed();
            let ok = self.apply(op);
            if let Err(why) = ok {
                panic!(
                    "scenario {:?} (seed {}), step {step} {op:?} at {:?}: {why}",
                    s.name,
                    s.seed,
                    self.sim.elapsed()
                );
            }
            if is_expectation(op) {
                report.waits.push((step, self.sim.elapsed() - started));
            }
        }
        report.datagrams_lost = self.wire.stats().dropped_by_loss;
        report
    }

    fn step(&mut self) -> Result<(), String> {
        self.sim
            .step()
            .map(|_| ())
            .map_err(|e| format!("simulation error: {e}"))
    }

    fn wait(&mut self, d: Duration) -> Result<(), String> {
        let until = self.sim.elapsed() + d;
        while self.sim.elapsed() < until {
            self.step()?;
        }
        Ok(())
    }

    /// Steps until `check` passes or `within` runs out; the error says what was last seen.
    fn until(
        &mut self,
        within: Duration,
        check: impl Fn(&Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = self.sim.elapsed() + within;
        loop {
            match check(self) {
                Ok(()) => return Ok(()),
                Err(why) if self.sim.elapsed() >= deadline => {
                    return Err(format!("not within {within:?}: {why}"))
                }
                Err(_) => self.step()?,
            }
        }
    }

    fn add_node(&mut self) {
        let i = self.nodes.len();
        let ctl = Arc::new(Mutex::new(Ctl {
            celsius: START_CELSIUS,
            ..Ctl::default()
        }));
        self.nodes.push(Arc::clone(&ctl));
        let (wire, interval, seeds) = (self.wire.clone(), self.interval, Arc::clone(&self.seeds));
        let core_seed = self.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.sim.host(host_name(i), move || {
            node_main(
                i,
                Arc::clone(&ctl),
                wire.clone(),
                interval,
                Arc::clone(&seeds),
                core_seed,
            )
        });
        if i < 3 {
            let ip = self.sim.lookup(host_name(i).as_str());
            lock(&self.seeds).push(ip);
        }
    }

    fn names(&self, ids: &[usize]) -> Vec<String> {
        ids.iter().map(|i| host_name(*i)).collect()
    }

    fn others(&self, i: usize) -> Vec<String> {
        let mut v: Vec<String> = (0..self.nodes.len())
            .filter(|j| *j != i)
            .map(host_name)
            .collect();
        v.extend((0..self.rogues).map(rogue::host_name));
        v
    }

    fn running(&self) -> Vec<usize> {
        self.up.iter().copied().collect()
    }

    /// Steps until node `i` has started `starts` times.
    fn await_start(&mut self, i: usize, starts: u32) -> Result<(), String> {
        let ctl = Arc::clone(&self.nodes[i]);
        self.until(Duration::from_secs(5), move |_| {
            if lock(&ctl).starts >= starts {
                Ok(())
            } else {
                Err(format!("n{i} did not start"))
            }
        })
    }

    fn observers(&self, who: &Who, subject: Option<usize>) -> Vec<usize> {
        match who {
            Who::All => self
                .running()
                .into_iter()
                .filter(|i| Some(*i) != subject)
                .collect(),
            Who::Nodes(v) => v.clone(),
        }
    }

    fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::AddNodes(n) => {
                let first = self.nodes.len();
                (0..*n).for_each(|_| self.add_node());
                for i in first..first + n {
                    self.await_start(i, 1)?;
                    self.up.insert(i);
                }
            }
            Op::Heat { node, celsius } => lock(&self.nodes[*node]).celsius = *celsius,
            Op::Cut { a, b } => {
                let (a, b) = (self.names(a), self.names(b));
                for x in &a {
                    for y in &b {
                        self.sim.partition(x.as_str(), y.as_str());
                    }
                }
            }
            Op::CutOneWay { from, to } => {
                for x in self.names(from) {
                    for y in self.names(to) {
                        self.sim.partition_oneway(x.as_str(), y.as_str());
                    }
                }
            }
            Op::Isolate(i) => {
                for other in self.others(*i) {
                    self.sim.partition(host_name(*i).as_str(), other.as_str());
                }
            }
            Op::HealAll => {
                let all: Vec<String> = (0..self.nodes.len())
                    .map(host_name)
                    .chain((0..self.rogues).map(rogue::host_name))
                    .collect();
                for x in &all {
                    for y in &all {
                        if x != y {
                            self.sim.repair(x.as_str(), y.as_str());
                        }
                    }
                }
            }
            Op::Crash(i) => {
                self.sim.crash(host_name(*i).as_str());
                lock(&self.nodes[*i]).running = false;
                self.up.remove(i);
            }
            Op::Bounce(i) => {
                let before = lock(&self.nodes[*i]).starts;
                self.sim.bounce(host_name(*i).as_str());
                self.await_start(*i, before + 1)?;
                self.up.insert(*i);
            }
            Op::Leave(i) => {
                lock(&self.nodes[*i]).leave = true;
                self.up.remove(i);
            }
            Op::SetLoss(p) => self.wire.set_loss(*p),
            Op::SetLatency(d) => self.sim.set_max_message_latency(*d),
            Op::AddRogue { victim } => {
                let k = self.rogues;
                let name = rogue::host_name(k);
                self.rogues += 1;
                self.insiders += 1;
                let (wire, interval, victim, seeds) = (
                    self.wire.clone(),
                    self.interval,
                    *victim,
                    Arc::clone(&self.seeds),
                );
                self.sim.host(name, move || {
                    rogue::rogue_main(k, victim, wire.clone(), interval, Arc::clone(&seeds))
                });
            }
            Op::AddOutsider { victim } => {
                let k = self.rogues;
                let name = rogue::host_name(k);
                self.rogues += 1;
                let (victim, seeds) = (*victim, Arc::clone(&self.seeds));
                self.sim.host(name, move || {
                    rogue::outsider_main(victim, Arc::clone(&seeds))
                });
            }
            Op::Wait(d) => self.wait(*d)?,
            Op::ExpectConverged { within } => self.until(*within, |d| d.converged())?,
            Op::ExpectHeat {
                node,
                celsius,
                seen_by,
                within,
            } => {
                let observers = self.observers(seen_by, Some(*node));
                let want = MilliCelsius::from_celsius(*celsius);
                self.until(*within, |d| {
                    d.check_each(&observers, *node, |m| {
                        m.filter(|m| m.counts())
                            .and_then(|m| m.report.as_ref())
                            .map(|r| r.hottest)
                            == Some(want)
                    })
                })?;
            }
            Op::ExpectSeen {
                node,
                seen,
                seen_by,
                within,
            } => {
                let observers = self.observers(seen_by, Some(*node));
                let seen = *seen;
                self.until(*within, |d| {
                    d.check_each(&observers, *node, |m| matches_seen(m, seen))
                })?;
            }
            Op::ExpectRejected {
                reason,
                at_least,
                by,
                within,
            } => {
                let observers = self.observers(by, None);
                if observers.is_empty() {
                    return Err("no observer is up".into());
                }
                self.until(*within, |d| {
                    for o in &observers {
                        let c = lock(&d.nodes[*o]);
                        // A record refusal (the verifier's label) or a
                        // datagram refusal (the protocol's).
                        let records = c.counters.rejections();
                        let n = records
                            .iter()
                            .find(|(l, _)| l == reason)
                            .map(|(_, n)| *n)
                            .or_else(|| {
                                c.refused
                                    .iter()
                                    .find(|(r, _)| r.label() == *reason)
                                    .map(|(_, n)| *n)
                            })
                            .unwrap_or(0);
                        if n < *at_least {
                            return Err(format!(
                                "n{o} refused {n} `{reason}`; records: {records:?}, datagrams: {:?}",
                                c.refused
                            ));
                        }
                    }
                    Ok(())
                })?;
            }
            Op::MarkPrices => {
                let running = self.running();
                self.until(Duration::from_secs(60), |d| {
                    match running.iter().find(|i| !lock(&d.nodes[**i]).price_held) {
                        Some(i) => Err(format!("n{i}'s price is still moving")),
                        None => Ok(()),
                    }
                })?;
                self.marks = self
                    .running()
                    .into_iter()
                    .filter_map(|i| Some((i, lock(&self.nodes[i]).price_milli?)))
                    .collect();
            }
            Op::ExpectCheaper { nodes, within } => {
                let observers = self.observers(nodes, None);
                self.until(*within, |d| {
                    d.check_prices(&observers, "cheaper", |p, m| p < m)
                })?;
            }
            Op::ExpectDearer { nodes, within } => {
                let observers = self.observers(nodes, None);
                self.until(*within, |d| {
                    d.check_prices(&observers, "dearer", |p, m| p > m)
                })?;
            }
            Op::ExpectNeverCheaper { nodes, over } => {
                let observers = self.observers(nodes, None);
                let until = self.sim.elapsed() + *over;
                while self.sim.elapsed() < until {
                    self.check_prices(&observers, "never cheaper", |p, m| p >= m)?;
                    self.step()?;
                }
            }
        }
        Ok(())
    }

    /// Every observer's price against its mark.
    fn check_prices(
        &self,
        observers: &[usize],
        want: &str,
        ok: impl Fn(u64, u64) -> bool,
    ) -> Result<(), String> {
        if observers.is_empty() {
            return Err("no node is up: the expectation would hold vacuously".into());
        }
        for o in observers {
            let mark = self
                .marks
                .get(o)
                .ok_or(format!("n{o} has no marked price"))?;
            let price = lock(&self.nodes[*o])
                .price_milli
                .ok_or(format!("n{o} has quoted no price"))?;
            if !ok(price, *mark) {
                return Err(format!(
                    "n{o} prices {price} milli, marked {mark}: not {want}"
                ));
            }
        }
        Ok(())
    }

    fn converged(&self) -> Result<(), String> {
        let running = self.running();
        if running.len() < 2 {
            return Err(format!(
                "only {} node(s) up: nothing to converge",
                running.len()
            ));
        }
        for o in &running {
            for t in &running {
                if o != t {
                    self.check_each(&[*o], *t, |m| m.is_some_and(Member::counts))?;
                }
            }
            // No phantom: only honest nodes and insiders are ever members.
            let peers = lock(&self.nodes[*o]).gossip_peers;
            if peers > self.nodes.len() - 1 + self.insiders {
                return Err(format!("n{o} holds {peers} members"));
            }
        }
        Ok(())
    }

    fn check_each(
        &self,
        observers: &[usize],
        node: usize,
        ok: impl Fn(Option<&Member>) -> bool,
    ) -> Result<(), String> {
        if observers.is_empty() {
            return Err("no observer is up: the expectation would hold vacuously".into());
        }
        let target = id_of(node);
        for o in observers {
            let c = lock(&self.nodes[*o]);
            let m = c.view.iter().find(|m| m.node_id == target);
            if !ok(m) {
                let seen = m.map(|m| (m.status, m.freshness, m.report.as_ref().map(|r| r.hottest)));
                return Err(format!("n{o} sees n{node} as {seen:?}"));
            }
        }
        Ok(())
    }
}

fn matches_seen(m: Option<&Member>, seen: Seen) -> bool {
    match seen {
        Seen::Counted => m.is_some_and(Member::counts),
        Seen::Dead => m.is_some_and(|m| m.status == MemberStatus::Dead),
        Seen::Left => m.is_some_and(|m| m.status == MemberStatus::Left),
        Seen::NotCounted => m.is_none_or(|m| !m.counts()),
    }
}

fn is_expectation(op: &Op) -> bool {
    matches!(
        op,
        Op::ExpectConverged { .. }
            | Op::ExpectHeat { .. }
            | Op::ExpectSeen { .. }
            | Op::ExpectRejected { .. }
            | Op::ExpectCheaper { .. }
            | Op::ExpectDearer { .. }
            | Op::ExpectNeverCheaper { .. }
    )
}
