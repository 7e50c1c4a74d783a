//! The scale simulation: `n` nodes of the tiered mesh ([`Tiered`], the
//! agent's protocol code) in racks of `rack_size`, on a discrete-event
//! network in one process: real sealed datagrams and signed records, a
//! 1 ms hop, no loss, simulated time.
//!
//! What it measures, in order:
//! - **converge**: nodes start over one second; from the last start until
//!   every node holds every live rack neighbour's report and knows the
//!   world's cheapest offers exactly;
//! - **bytes**: gossip payload each node sends per second over a steady
//!   window in which every node re-publishes at random with mean
//!   `change_every_s` (its heat moved) and every 60 s regardless (the
//!   heartbeat);
//! - **rack**: a report until every rack neighbour holds it;
//! - **cheapest**: a node becoming the cheapest anywhere until every node's
//!   world view puts it first;
//! - **carrier lost**: a carrier of a rack is killed (no goodbye), and at
//!   once a node of that rack becomes the cheapest: until every node knows;
//! - **memory**: the growth of this process's resident set, per node.
//!
//! Run at n ≤ 100 in one rack it is the flat mesh the real agents run: the
//! bench shows its bytes beside theirs as the calibration.

use crate::bench::timing::Waited;
use ed25519_dalek::SigningKey;
use maxwell_gossip::summary::MAX_OFFERS;
use maxwell_gossip::swim::{Peer, SwimConfig};
use maxwell_gossip::tier::{tier_keys, upper_swim, Tier, TierConfig, TierSetup, Tiered};
use maxwell_gossip::{
    HeatReport, KeyedNodeId, MicroWatts, MilliCelsius, NodeId, Position, SensorSource, SignedRecord,
};
use maxwell_types::rng::Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Simulated start: any fixed unix time.
const T0: u64 = 1_764_201_600_000;
/// One hop, ms.
const HOP_MS: u64 = 1;
/// How often the waits check who knows, simulated ms.
const CHECK_MS: u64 = 10;
/// How often the cold start checks who has converged (a view of the whole
/// world costs more to check), simulated ms.
const CONVERGE_CHECK_MS: u64 = 100;
/// The agent's default heartbeat.
const HEARTBEAT_MS: u64 = 60_000;
/// Upper-tier seeds: the first node of this many racks.
const UPPER_SEEDS: usize = 3;

/// What one run is.
#[derive(Debug, Clone)]
pub struct ScaleSpec {
    pub n: usize,
    pub rack_size: usize,
    /// Mean time between one node's changes in the steady window, s.
    pub change_every_s: f64,
    pub steady_s: u64,
    pub timeout_s: u64,
    pub seed: u64,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct ScaleResult {
    pub n: usize,
    pub racks: usize,
    pub carriers: usize,
    pub converge: Waited,
    /// Bytes sent per node per second: the mean, and the most any node sent.
    pub bytes_mean: f64,
    pub bytes_max: f64,
    pub rack: Waited,
    pub cheapest: Waited,
    /// `None` when no rack outside the seeds' has two nodes.
    pub carrier_lost: Option<Waited>,
    /// Resident set growth per node, bytes.
    pub memory_per_node: Option<f64>,
    pub wall: Duration,
}

/// The tier timing the agent's LAN preset gives the rack tier (and the
/// upper tier alike).
pub fn lan_config() -> TierConfig {
    let swim = SwimConfig {
        sync_every_ms: 15_000,
        ..SwimConfig::default()
    };
    TierConfig {
        rack: swim.clone(),
        upper: upper_swim(swim),
        ..TierConfig::default()
    }
}

enum Event {
    Deliver {
        to: usize,
        tier: Tier,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Timer(usize),
    /// A node re-publishes; stale once the load's epoch has moved on.
    Publish(usize, u64),
}

struct Node {
    tiered: Tiered,
    key: SigningKey,
    id: NodeId,
    rack: usize,
    seq: u64,
    price: u64,
    hottest: i64,
    up: bool,
    /// The timer event queued for it.
    timer: Option<u64>,
    sent: u64,
    touched: bool,
}

struct Sim {
    nodes: Vec<Node>,
    addrs: HashMap<SocketAddr, (usize, Tier)>,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    events: Vec<Option<Event>>,
    free: Vec<usize>,
    seq: u64,
    now: u64,
    rng: Rng,
    load: Load,
    epoch: u64,
}

/// How nodes re-publish during a steady window.
#[derive(Debug, Clone, Copy)]
enum Load {
    /// Heartbeats only.
    Quiet,
    /// At random, with this mean interval (s), and heartbeats.
    Random(f64),
    /// Every second, as the real agents' busy row.
    EverySecond,
}

/// The calibration: one rack of `spec.n` (the flat mesh the agents run),
/// bytes sent per node per second, quiet and with every node changing each
/// second.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub n: usize,
    pub quiet: f64,
    pub busy: f64,
}

/// Runs the calibration.
pub fn calibrate(spec: &ScaleSpec) -> anyhow::Result<Calibration> {
    let mut sim = Sim::new(spec);
    if let Waited::Timeout { seen, of } = sim.converge(spec.timeout_s * 1_000) {
        anyhow::bail!("the calibration mesh did not converge ({seen}/{of})");
    }
    let (quiet, _) = sim.steady(spec.steady_s, Load::Quiet);
    let (busy, _) = sim.steady(spec.steady_s, Load::EverySecond);
    Ok(Calibration {
        n: spec.n,
        quiet,
        busy,
    })
}

fn rack_addr(i: usize) -> SocketAddr {
    let [_, a, b, c] = (i as u32).to_be_bytes();
    SocketAddr::from(([10, a, b, c], 7946))
}

fn upper_addr(i: usize) -> SocketAddr {
    SocketAddr::new(rack_addr(i).ip(), 7947)
}

/// Runs one size.
pub fn run(spec: &ScaleSpec) -> anyhow::Result<ScaleResult> {
    anyhow::ensure!(
        spec.n >= 2 && spec.rack_size >= 2,
        "need two nodes and racks of two"
    );
    let wall = Instant::now();
    let rss0 = rss_bytes();
    let mut sim = Sim::new(spec);
    let timeout = spec.timeout_s * 1_000;
    let converge = sim.converge(timeout);
    let carriers = sim
        .nodes
        .iter()
        .filter(|n| n.tiered.upper().is_some())
        .count();
    let memory_per_node = rss0
        .zip(rss_bytes())
        .map(|(a, b)| b.saturating_sub(a) as f64 / spec.n as f64);

    let (bytes_mean, bytes_max) = sim.steady(spec.steady_s, Load::Random(spec.change_every_s));

    // A rack neighbour's change.
    let origin = spec.rack_size.min(spec.n) / 2;
    sim.nodes[origin].hottest += 7_000;
    let seq = sim.publish(origin);
    let id = sim.nodes[origin].id;
    let rack_of = sim.nodes[origin].rack;
    let rack = sim.timed(timeout, CHECK_MS, move |s, i| {
        s.nodes[i].rack != rack_of
            || i == origin
            || s.nodes[i]
                .tiered
                .rack()
                .reports()
                .iter()
                .any(|r| r.node_id == id && r.seq >= seq)
    });

    // A node becoming the cheapest anywhere.
    let cheapest = sim.cheapest_from(sim.nodes.len() - 1, timeout);

    // A carrier killed, then its rack's news.
    let victim = sim
        .nodes
        .iter()
        .position(|n| n.tiered.upper().is_some() && n.rack >= UPPER_SEEDS && n.up);
    let carrier_lost = match victim {
        Some(v) => {
            sim.nodes[v].up = false;
            let rack = sim.nodes[v].rack;
            let other = (0..sim.nodes.len())
                .rev()
                .find(|&i| sim.nodes[i].rack == rack && i != v && sim.nodes[i].up);
            other.map(|o| sim.cheapest_from(o, timeout))
        }
        None => None,
    };
    Ok(ScaleResult {
        n: spec.n,
        racks: spec.n.div_ceil(spec.rack_size),
        carriers,
        converge,
        bytes_mean,
        bytes_max,
        rack,
        cheapest,
        carrier_lost,
        memory_per_node,
        wall: wall.elapsed(),
    })
}

impl Sim {
    fn new(spec: &ScaleSpec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let (n, size) = (spec.n, spec.rack_size);
        let secret = [0x5a; 32];
        let upper_seeds: Vec<SocketAddr> = (0..n.div_ceil(size).min(UPPER_SEEDS))
            .map(|r| upper_addr(r * size))
            .collect();
        let mut addrs = HashMap::new();
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let rack = i / size;
            let mut bytes = [0u8; 32];
            bytes[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
            bytes[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            let key = SigningKey::from_bytes(&bytes);
            let id = NodeId::from_verifying_key(&key.verifying_key());
            let (rack_keys, upper_keys) = tier_keys(&secret, "scale", &format!("r{rack}"));
            let first = rack * size;
            let setup = TierSetup {
                me: Peer {
                    id,
                    generation: T0,
                    addr: rack_addr(i),
                },
                upper_addr: upper_addr(i),
                rack_name: format!("r{rack}"),
                rack_keys,
                upper_keys,
                rack_seeds: (first..(first + 3).min(n))
                    .filter(|&s| s != i)
                    .map(rack_addr)
                    .collect(),
                upper_seeds: upper_seeds.clone(),
                seed: rng.next_u64(),
            };
            let start = T0 + rng.below(1_000);
            addrs.insert(rack_addr(i), (i, Tier::Rack));
            addrs.insert(upper_addr(i), (i, Tier::Upper));
            nodes.push(Node {
                tiered: Tiered::new(key.clone(), setup, lan_config(), start),
                key,
                id,
                rack,
                seq: 0,
                price: 200 + rng.below(800),
                hottest: 40_000 + rng.below(30_000) as i64,
                up: true,
                timer: None,
                sent: 0,
                touched: false,
            });
        }
        let mut sim = Self {
            nodes,
            addrs,
            queue: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
            seq: 0,
            now: T0,
            rng,
            load: Load::Quiet,
            epoch: 0,
        };
        for i in 0..n {
            let at = T0 + sim.rng.below(1_000);
            sim.push(at, Event::Publish(i, 0));
        }
        sim
    }

    /// Bytes each node sends per second over `secs` of `load` (after 5 s
    /// to settle into it): the mean, and the most.
    fn steady(&mut self, secs: u64, load: Load) -> (f64, f64) {
        self.load = load;
        self.epoch += 1;
        for i in 0..self.nodes.len() {
            // A random phase: nodes do not change in lock-step.
            let first = self.next_change();
            let at = self.now + self.rng.below(first);
            self.push(at, Event::Publish(i, self.epoch));
        }
        self.run_until(self.now + 5_000);
        let before: Vec<u64> = self.nodes.iter().map(|n| n.sent).collect();
        let t = self.now;
        self.run_until(t + secs * 1_000);
        let elapsed = (self.now - t) as f64 / 1_000.0;
        let rates: Vec<f64> = self
            .nodes
            .iter()
            .zip(&before)
            .filter(|(n, _)| n.up)
            .map(|(n, b)| (n.sent - b) as f64 / elapsed)
            .collect();
        self.load = Load::Quiet;
        self.epoch += 1;
        let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
        (mean, rates.iter().copied().fold(0.0, f64::max))
    }

    fn push(&mut self, at: u64, e: Event) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.events[s] = Some(e);
                s
            }
            None => {
                self.events.push(Some(e));
                self.events.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    fn next_change(&mut self) -> u64 {
        match self.load {
            Load::Quiet => HEARTBEAT_MS,
            // Exponential, so changes are a Poisson stream; capped at the heartbeat.
            Load::Random(mean_s) => {
                let u = self.rng.unit().max(1e-9);
                ((-u.ln() * mean_s * 1_000.0) as u64).clamp(1, HEARTBEAT_MS)
            }
            Load::EverySecond => 1_000,
        }
    }

    /// Signs and publishes node `i`'s next report; returns its seq.
    fn publish(&mut self, i: usize) -> u64 {
        let now = self.now;
        let node = &mut self.nodes[i];
        node.seq += 1;
        let report = HeatReport {
            node_id: node.id,
            name: format!("n{i}"),
            generation: T0,
            seq: node.seq,
            timestamp_ms: now,
            position: Position::new(format!("r{}", node.rack), (i % 64) as u16),
            hottest: MilliCelsius(node.hottest),
            critical: MilliCelsius(95_000),
            power_draw: MicroWatts::from_watts(300.0),
            power_cap: MicroWatts::from_watts(400.0),
            headroom: MicroWatts::from_watts(100.0),
            price_milli: node.price,
            source: SensorSource::Emulated,
            room: Default::default(),
            api: None,
            p2p: None,
        };
        let bytes = SignedRecord::sign(&report, &node.key)
            .expect("a bench report is within bounds")
            .to_bytes();
        node.tiered.publish(now, &bytes);
        let seq = node.seq;
        self.flush(i);
        seq
    }

    /// Moves node `i`'s datagrams onto the wire and re-arms its timer.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        while let Some((tier, t)) = self.nodes[i].tiered.poll_transmit() {
            self.nodes[i].sent += t.bytes.len() as u64;
            let Some(&(to, to_tier)) = self.addrs.get(&t.to) else {
                continue;
            };
            let from = match tier {
                Tier::Rack => rack_addr(i),
                Tier::Upper => upper_addr(i),
            };
            self.push(
                now + HOP_MS,
                Event::Deliver {
                    to,
                    tier: to_tier,
                    from,
                    bytes: t.bytes,
                },
            );
        }
        while self.nodes[i].tiered.poll_event().is_some() {}
        let next = self.nodes[i].tiered.poll_timeout().map(|t| t.max(now));
        if next.is_some() && (self.nodes[i].timer.is_none() || next < self.nodes[i].timer) {
            self.nodes[i].timer = next;
            if let Some(at) = next {
                self.push(at, Event::Timer(i));
            }
        }
    }

    /// Handles events up to `until`.
    fn run_until(&mut self, until: u64) {
        while let Some(&Reverse((at, _, slot))) = self.queue.peek() {
            if at > until {
                break;
            }
            self.queue.pop();
            self.now = self.now.max(at);
            let Some(e) = self.events[slot].take() else {
                continue;
            };
            self.free.push(slot);
            match e {
                Event::Deliver {
                    to,
                    tier,
                    from,
                    bytes,
                } => {
                    if self.nodes[to].up {
                        let now = self.now;
                        self.nodes[to]
                            .tiered
                            .handle_datagram(now, tier, from, &bytes);
                        self.nodes[to].touched = true;
                        self.flush(to);
                    }
                }
                Event::Timer(i) => {
                    if self.nodes[i].timer == Some(at) {
                        self.nodes[i].timer = None;
                    }
                    if self.nodes[i].up && self.nodes[i].timer.is_none() {
                        let now = self.now;
                        self.nodes[i].tiered.handle_timeout(now);
                        self.flush(i);
                    }
                }
                Event::Publish(i, epoch) => {
                    if self.nodes[i].up && epoch == self.epoch {
                        if !matches!(self.load, Load::Quiet) {
                            self.nodes[i].hottest +=
                                if self.rng.below(2) == 0 { 600 } else { -600 };
                        }
                        self.publish(i);
                        let at = self.now + self.next_change();
                        self.push(at, Event::Publish(i, epoch));
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    /// Time until `knows(i)` holds for every live node, checked every
    /// `every_ms`, and for a node only once a datagram reached it since.
    fn timed(
        &mut self,
        timeout: u64,
        every_ms: u64,
        knows: impl Fn(&Sim, usize) -> bool,
    ) -> Waited {
        let start = self.now;
        let mut pending: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].up)
            .collect();
        let of = pending.len();
        for n in &mut self.nodes {
            n.touched = true;
        }
        while self.now < start + timeout {
            pending.retain(|&i| {
                let touched = std::mem::take(&mut self.nodes[i].touched);
                !(touched && knows(self, i))
            });
            if pending.is_empty() {
                return Waited::Done(Duration::from_millis(self.now - start));
            }
            let next = self.now + every_ms;
            self.run_until(next);
        }
        Waited::Timeout {
            seen: of - pending.len(),
            of,
        }
    }

    /// Node `i` drops its price below everyone's: until every live node's
    /// world view puts it first.
    fn cheapest_from(&mut self, i: usize, timeout: u64) -> Waited {
        let floor = self.nodes.iter().map(|n| n.price).min().unwrap_or(1);
        self.nodes[i].price = floor.saturating_sub(1);
        let id = self.nodes[i].id;
        self.publish(i);
        self.timed(timeout, CHECK_MS, move |s, k| {
            s.nodes[k]
                .tiered
                .world()
                .first()
                .is_some_and(|o| o.node_id == id)
        })
    }

    /// From now until every live node holds its live rack's reports and the
    /// true cheapest offers; a final full check confirms it.
    fn converge(&mut self, timeout: u64) -> Waited {
        // Every node has started and signed its first report by then: the
        // truth to converge on stands still after.
        self.run_until(T0 + 1_000);
        let start = self.now;
        loop {
            let left = timeout.saturating_sub(self.now - start);
            let want = self.true_cheapest();
            let per_rack = self.live_per_rack();
            if let w @ Waited::Timeout { .. } = self.timed(left, CONVERGE_CHECK_MS, |s, i| {
                s.node_converged(i, &want, &per_rack)
            }) {
                return w;
            }
            let want = self.true_cheapest();
            let per_rack = self.live_per_rack();
            if (0..self.nodes.len())
                .filter(|&i| self.nodes[i].up)
                .all(|i| self.node_converged(i, &want, &per_rack))
            {
                return Waited::Done(Duration::from_millis(self.now - start));
            }
        }
    }

    fn true_cheapest(&self) -> Vec<NodeId> {
        let mut truth: Vec<(u64, i64, NodeId)> = self
            .nodes
            .iter()
            .filter(|n| n.up && n.seq > 0)
            .map(|n| (n.price, n.hottest, n.id))
            .collect();
        truth.sort();
        truth.iter().take(MAX_OFFERS).map(|t| t.2).collect()
    }

    fn live_per_rack(&self) -> HashMap<usize, usize> {
        let mut per_rack: HashMap<usize, usize> = HashMap::new();
        for n in self.nodes.iter().filter(|n| n.up) {
            *per_rack.entry(n.rack).or_default() += 1;
        }
        per_rack
    }

    fn node_converged(&self, i: usize, want: &[NodeId], per_rack: &HashMap<usize, usize>) -> bool {
        let n = &self.nodes[i];
        let mut held = 0;
        n.tiered.rack().visit_reports(|_| held += 1);
        held == per_rack[&n.rack]
            && n.tiered
                .world()
                .iter()
                .map(|o| o.node_id)
                .eq(want.iter().copied())
    }
}

/// This process's resident set, bytes (Linux).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
