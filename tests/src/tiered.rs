//! The tiered mesh under turmoil: racks of hosts, each running the agent's
//! [`Tiered`] core over two sockets of the [`TurmoilTransport`] (its rack
//! tier and the upper tier), publishing signed reports at the price the test
//! sets. The test reads what every host believes through [`Seen`].

use crate::harness::swim_config;
use crate::transport::{TurmoilTransport, Wire};
use crate::world::{id_of, key_of, sim_clock, CLUSTER_ID, CLUSTER_SECRET};
use maxwell_gossip::swim::Peer;
use maxwell_gossip::tier::{tier_keys, upper_swim, Tier, TierConfig, TierSetup, Tiered};
use maxwell_gossip::{
    HeatReport, MicroWatts, MilliCelsius, NodeId, Position, SensorSource, SignedRecord,
};
use maxwell_node::mesh::transport::Transport;
use maxwell_types::sync::lock;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const RACK_PORT: u16 = 7946;
pub const UPPER_PORT: u16 = 7947;
/// Each host re-publishes this often even when nothing changed, ms.
const HEARTBEAT_MS: u64 = 2_000;
/// How often a host looks at what the test asks of it.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Timing of every host: the test preset of the rack tier.
pub fn tier_config() -> TierConfig {
    let swim = swim_config(Duration::from_millis(50));
    TierConfig {
        rack: swim.clone(),
        upper: upper_swim(swim),
        summary_heartbeat_ms: 5_000,
        summary_ttl_ms: 15_000,
        ..TierConfig::default()
    }
}

/// What a host believes, and the price the test sets for it.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub price_milli: u64,
    /// Its world view's cheapest node.
    pub cheapest: Option<NodeId>,
    pub carrier: bool,
    /// The reports it holds: (node, seq).
    pub reports: Vec<(NodeId, u64)>,
    /// The seq of its own latest report.
    pub seq: u64,
}

/// A tiered mesh of `racks` × `per_rack` hosts on one turmoil simulation.
#[allow(missing_debug_implementations)] // turmoil's Sim is not Debug
pub struct TierNet<'a> {
    pub sim: turmoil::Sim<'a>,
    pub hosts: Vec<Arc<Mutex<Seen>>>,
    pub per_rack: usize,
    pub up: BTreeSet<usize>,
}

pub fn host_name(i: usize) -> String {
    format!("t{i}")
}

impl<'a> TierNet<'a> {
    /// Starts the hosts; the first host of each of `seed_racks` racks is an
    /// upper-tier seed.
    pub fn new(seed: u64, racks: usize, per_rack: usize, seed_racks: usize) -> Self {
        let mut sim = turmoil::Builder::new()
            .simulation_duration(Duration::from_secs(3600))
            .tick_duration(Duration::from_millis(10))
            .udp_capacity(4096)
            .rng_seed(seed)
            .build();
        let wire = Wire::new(seed);
        let n = racks * per_rack;
        let hosts: Vec<Arc<Mutex<Seen>>> = (0..n)
            .map(|i| {
                Arc::new(Mutex::new(Seen {
                    price_milli: 500 + 10 * i as u64,
                    ..Seen::default()
                }))
            })
            .collect();
        for (i, host) in hosts.iter().enumerate() {
            let rack = i / per_rack;
            let first = rack * per_rack;
            let rack_seeds: Vec<usize> = (first..first + per_rack.min(2))
                .filter(|&s| s != i)
                .collect();
            let upper_seeds: Vec<usize> =
                (0..seed_racks.min(racks)).map(|r| r * per_rack).collect();
            let (seen, wire) = (Arc::clone(host), wire.clone());
            let host_seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            sim.host(host_name(i), move || {
                host_main(
                    i,
                    rack,
                    rack_seeds.clone(),
                    upper_seeds.clone(),
                    Arc::clone(&seen),
                    wire.clone(),
                    host_seed,
                )
            });
        }
        Self {
            sim,
            hosts,
            per_rack,
            up: (0..n).collect(),
        }
    }

    /// Steps until `check` holds, or fails after `within` saying what is seen.
    pub fn until(
        &mut self,
        within: Duration,
        what: &str,
        check: impl Fn(&Self) -> bool,
    ) -> Result<Duration, String> {
        let start = self.sim.elapsed();
        loop {
            if check(self) {
                return Ok(self.sim.elapsed() - start);
            }
            if self.sim.elapsed() - start > within {
                let seen: Vec<String> = self
                    .up
                    .iter()
                    .map(|&i| {
                        let s = lock(&self.hosts[i]);
                        format!("t{i}: carrier={} cheapest={:?}", s.carrier, s.cheapest)
                    })
                    .collect();
                return Err(format!("{what}: not within {within:?}; seen: {seen:?}"));
            }
            self.sim
                .step()
                .map_err(|e| format!("simulation error: {e}"))?;
        }
    }

    /// The live host with the lowest price.
    pub fn cheapest(&self) -> NodeId {
        let i = self
            .up
            .iter()
            .copied()
            .min_by_key(|&i| (lock(&self.hosts[i]).price_milli, id_of(i)))
            .unwrap_or(0);
        id_of(i)
    }

    /// Whether every live host's world view puts the true cheapest first.
    pub fn all_know_cheapest(&self) -> bool {
        let want = self.cheapest();
        self.up
            .iter()
            .all(|&i| lock(&self.hosts[i]).cheapest == Some(want))
    }

    /// Whether every live host of `i`'s rack holds `i`'s latest report.
    pub fn rack_holds(&self, i: usize) -> bool {
        let (id, seq) = (id_of(i), lock(&self.hosts[i]).seq);
        self.rack_of(i).iter().all(|&k| {
            lock(&self.hosts[k])
                .reports
                .iter()
                .any(|(n, s)| *n == id && *s >= seq)
        })
    }

    /// Live hosts of `i`'s rack.
    pub fn rack_of(&self, i: usize) -> Vec<usize> {
        let first = i / self.per_rack * self.per_rack;
        (first..first + self.per_rack)
            .filter(|k| self.up.contains(k))
            .collect()
    }

    /// Stops a host at once (no goodbye).
    pub fn crash(&mut self, i: usize) {
        self.sim.crash(host_name(i));
        self.up.remove(&i);
    }

    /// Whether host `i` carries its rack now.
    pub fn carrying(&self, i: usize) -> bool {
        lock(&self.hosts[i]).carrier
    }

    pub fn set_price(&self, i: usize, price_milli: u64) {
        lock(&self.hosts[i]).price_milli = price_milli;
    }
}

#[allow(clippy::too_many_arguments)]
async fn host_main(
    i: usize,
    rack: usize,
    rack_seeds: Vec<usize>,
    upper_seeds: Vec<usize>,
    seen: Arc<Mutex<Seen>>,
    wire: Wire,
    seed: u64,
) -> turmoil::Result {
    let at = |k: usize, port: u16| SocketAddr::new(turmoil::lookup(host_name(k).as_str()), port);
    let ip = at(i, RACK_PORT).ip();
    let rack_seeds = rack_seeds.into_iter().map(|k| at(k, RACK_PORT)).collect();
    let upper_seeds = upper_seeds.into_iter().map(|k| at(k, UPPER_PORT)).collect();
    let transport = TurmoilTransport::new(wire);
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let rack_socket = transport.bind(SocketAddr::new(any, RACK_PORT)).await?;
    let upper_socket = transport.bind(SocketAddr::new(any, UPPER_PORT)).await?;
    let clock = sim_clock();
    let key = key_of(i);
    let generation = clock();
    let (rack_keys, upper_keys) = tier_keys(&CLUSTER_SECRET, CLUSTER_ID, &format!("r{rack}"));
    let setup = TierSetup {
        me: Peer {
            id: id_of(i),
            generation,
            addr: SocketAddr::new(ip, RACK_PORT),
        },
        upper_addr: SocketAddr::new(ip, UPPER_PORT),
        rack_name: format!("r{rack}"),
        rack_keys,
        upper_keys,
        rack_seeds,
        upper_seeds,
        seed,
    };
    let mut tiered = Tiered::new(key.clone(), setup, tier_config(), clock());
    let (mut seq, mut published, mut last_at) = (0u64, None, 0u64);
    let mut rack_buf = vec![0u8; 2048];
    let mut upper_buf = vec![0u8; 2048];
    loop {
        let now = clock();
        let price = lock(&seen).price_milli;
        if published != Some(price) || now >= last_at + HEARTBEAT_MS {
            seq += 1;
            let report = report(i, rack, generation, seq, now, price);
            let bytes = SignedRecord::sign(&report, &key)?.to_bytes();
            tiered.publish(now, &bytes);
            (published, last_at) = (Some(price), now);
        }
        while let Some((tier, t)) = tiered.poll_transmit() {
            let socket = match tier {
                Tier::Rack => &rack_socket,
                Tier::Upper => &upper_socket,
            };
            socket.send_to(&t.bytes, t.to).await?;
        }
        while tiered.poll_event().is_some() {}
        {
            let mut s = lock(&seen);
            s.seq = seq;
            s.carrier = tiered.upper().is_some();
            s.cheapest = tiered.world().first().map(|o| o.node_id);
            s.reports = tiered
                .rack()
                .reports()
                .iter()
                .map(|r| (r.node_id, r.seq))
                .collect();
        }
        let wake = tiered.poll_timeout().unwrap_or(u64::MAX);
        let sleep = Duration::from_millis(wake.saturating_sub(clock())).min(LOOK_EVERY);
        tokio::select! {
            biased;
            got = rack_socket.recv_from(&mut rack_buf) => {
                let (len, from) = got?;
                tiered.handle_datagram(clock(), Tier::Rack, from, &rack_buf[..len]);
            }
            got = upper_socket.recv_from(&mut upper_buf) => {
                let (len, from) = got?;
                tiered.handle_datagram(clock(), Tier::Upper, from, &upper_buf[..len]);
            }
            () = tokio::time::sleep(sleep) => {}
        }
        let now = clock();
        if tiered.poll_timeout().is_some_and(|t| t <= now) {
            tiered.handle_timeout(now);
        }
    }
}

fn report(i: usize, rack: usize, generation: u64, seq: u64, now: u64, price: u64) -> HeatReport {
    HeatReport {
        node_id: id_of(i),
        name: host_name(i),
        generation,
        seq,
        timestamp_ms: now,
        position: Position::new(format!("r{rack}"), u16::try_from(i).unwrap_or(u16::MAX)),
        hottest: MilliCelsius::from_celsius(50.0),
        critical: MilliCelsius::from_celsius(95.0),
        power_draw: MicroWatts::from_watts(300.0),
        power_cap: MicroWatts::from_watts(400.0),
        headroom: MicroWatts::from_watts(100.0),
        price_milli: price,
        source: SensorSource::Emulated,
        room: Default::default(),
        api: None,
        p2p: None,
    }
}
