//! Convergence in simulation: `n` nodes (a [`NodeCore`] deciding, a
//! [`Mesh`] gossiping, at the LAN preset's timing) in one process on an
//! in-memory [`ChannelTransport`], on a current-thread tokio runtime with a
//! paused clock, so a round costs no wall time and CPU load cannot stretch
//! the measured times.
//!
//! Each node publishes one report at start, nodes start spread over one
//! interval (so their rounds are not in lock-step), and once every node
//! counts every other as a member, the last node publishes a report with a
//! distinctive temperature. We then check every `interval / 4` which of the
//! others' cores count it (each observing its members through the agent's
//! [`NodeCore`], as the agent does); then the next-to-last node does, and so
//! on for [`TRIALS`] changes (one when n > 200).

use super::channel::ChannelTransport;
use super::TRIALS;
use crate::bench::timing::{median, quantile, secs, Waited};
use ed25519_dalek::SigningKey;
use maxwell_core::{CoreConfig, NodeCore, Output, Reading};
use maxwell_gossip::seal::{ClusterKey, Keyring};
use maxwell_gossip::swim::SwimConfig;
use maxwell_gossip::Position;
use maxwell_gossip::{MicroWatts, MilliCelsius, NodeId, SensorSource, VerifierConfig};
use maxwell_node::mesh::transport::GossipStats;
use maxwell_node::mesh::{Clock, Mesh, MeshSettings};
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The temperature the changed node reports in the first trial (+1 °mC a
/// trial; no other node reports any of them).
const MARK: MilliCelsius = MilliCelsius(87_654);
/// Reports are published once: no TTL may expire during a run.
const HOUR_MS: u64 = 3_600_000;
/// Rounds over which steady-state bytes are counted (fewer for big meshes:
/// a round of 1000 nodes costs seconds of CPU in one process).
fn steady_rounds(n: usize) -> u32 {
    if n > 200 {
        2
    } else {
        10
    }
}

/// The outcome for one mesh size.
#[derive(Debug, Clone)]
pub struct SimResult {
    pub n: usize,
    /// Simulated time until every node counted every other.
    pub join: Waited,
    /// Simulated time until 50 %, 99 % and 100 % of the other nodes saw a
    /// change: the median over `trials` changes.
    pub reached: [Waited; 3],
    pub trials: usize,
    /// Gossip payload bytes sent per node per simulated second, steady state.
    pub bytes_per_node_s: Option<f64>,
    /// Wall-clock time the simulation took.
    pub wall: Duration,
}

/// Simulates a mesh of `n` nodes gossiping every `interval`; `timeout` is
/// in simulated time, per wait.
pub fn run(n: usize, interval: Duration, timeout: Duration) -> anyhow::Result<SimResult> {
    anyhow::ensure!(
        (2..=10_000).contains(&n),
        "a simulated mesh has 2 to 10 000 nodes (got {n})"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()?;
    let wall = Instant::now();
    // Keep the table readable.
    let quiet = tracing::subscriber::NoSubscriber::default();
    let mut result =
        tracing::subscriber::with_default(quiet, || rt.block_on(simulate(n, interval, timeout)))?;
    drop(rt);
    result.wall = wall.elapsed();
    Ok(result)
}

async fn simulate(n: usize, interval: Duration, timeout: Duration) -> anyhow::Result<SimResult> {
    let wall = Instant::now();
    let stats = Arc::new(GossipStats::default());
    let mut nodes = start_nodes(n, interval, &stats).await?;
    let join = wait_joined(&mut nodes, interval, timeout).await;
    let progress = format!("{join} simulated, {} wall", secs(wall.elapsed()));
    eprintln!("bench gossip: sim n={n}: all joined after {progress}");
    let trials = trials(n);
    let (bytes_per_node_s, reached) = match join {
        Waited::Done(_) => (
            Some(steady_bytes(&stats, n, interval * steady_rounds(n)).await),
            time_changes(&mut nodes, trials, interval / 4, timeout).await?,
        ),
        Waited::Timeout { .. } => (None, [Waited::Timeout { seen: 0, of: n - 1 }; 3]),
    };
    for node in nodes {
        node.mesh.shutdown().await;
    }
    Ok(SimResult {
        n,
        join,
        reached,
        trials,
        bytes_per_node_s,
        wall: Duration::ZERO,
    })
}

/// One simulated node: the agent's core and its mesh.
struct SimNode {
    core: NodeCore,
    mesh: Mesh,
    clock: Clock,
}

impl SimNode {
    /// The core observes its members, as the agent's does each round.
    async fn observe(&mut self) {
        let events = self.mesh.refresh();
        self.core
            .handle_peers((self.clock)(), self.mesh.members(), events);
        // Events are for operators; the bench has none.
        while self.core.poll_output().is_some() {}
    }

    /// The core reads `hottest`; its report (with its price) is gossiped.
    async fn read(&mut self, hottest: MilliCelsius) -> anyhow::Result<()> {
        self.core.handle_reading((self.clock)(), &reading(hottest));
        while let Some(output) = self.core.poll_output() {
            if let Output::Publish(heat) = output {
                self.mesh.publish(&heat)?;
            }
        }
        Ok(())
    }
}

/// Starts `n` nodes spread over one interval, each with one report out.
async fn start_nodes(
    n: usize,
    interval: Duration,
    stats: &Arc<GossipStats>,
) -> anyhow::Result<Vec<SimNode>> {
    let transport = ChannelTransport::default();
    let start = tokio::time::Instant::now();
    let base = maxwell_node::clock::unix_ms();
    let clock: Clock =
        Arc::new(move || base + u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    let seeds: Vec<SocketAddr> = (0..n.min(3)).map(addr).collect();
    let stagger = interval / u32::try_from(n).unwrap_or(u32::MAX);
    let mut nodes = Vec::with_capacity(n);
    for k in 0..n {
        let settings = settings(k, &seeds, interval);
        let name = format!("sim-{k}");
        let clock = Arc::clone(&clock);
        let mesh = Mesh::start(
            settings,
            key(k),
            name,
            base,
            &transport,
            Arc::clone(&clock),
            k as u64,
            Arc::clone(stats),
        )
        .await?;
        let core = NodeCore::new(core_config(k, interval), clock(), k as u64);
        let mut node = SimNode { core, mesh, clock };
        node.read(MilliCelsius(40_000)).await?;
        nodes.push(node);
        tokio::time::sleep(stagger).await;
    }
    Ok(nodes)
}

/// Until every node counts every other as a member. Joining is not what is
/// measured: checked once a round, and only on nodes whose mesh already
/// knows every peer (a cheap test).
async fn wait_joined(nodes: &mut [SimNode], interval: Duration, timeout: Duration) -> Waited {
    let n = nodes.len();
    let mut joined = vec![None; n];
    let start = tokio::time::Instant::now();
    while joined.iter().any(Option::is_none) && start.elapsed() < timeout {
        tokio::time::sleep(interval).await;
        for (node, time) in nodes.iter_mut().zip(&mut joined) {
            if time.is_none() && node.mesh.gossip_peers() + 1 == n {
                node.observe().await;
                if node.core.members().iter().filter(|m| m.counts()).count() + 1 == n {
                    *time = Some(start.elapsed());
                }
            }
        }
    }
    quantile(&joined, 1.0)
}

/// `trials` changes from the last nodes in turn; the median time until
/// 50 %, 99 % and 100 % of the others show each.
async fn time_changes(
    nodes: &mut [SimNode],
    trials: usize,
    step: Duration,
    timeout: Duration,
) -> anyhow::Result<[Waited; 3]> {
    let n = nodes.len();
    let mut per_quantile: [Vec<Waited>; 3] = Default::default();
    for t in 0..trials {
        let mark = MilliCelsius(MARK.0 + i64::try_from(t)?);
        let seen = change(nodes, n - 1 - t, mark, step, timeout).await?;
        for (q, fraction) in [0.5, 0.99, 1.0].into_iter().enumerate() {
            per_quantile[q].push(quantile(&seen, fraction));
        }
    }
    Ok(per_quantile.map(|q| median(&q)))
}

/// Node `origin` publishes `mark`; when each other node first shows it.
async fn change(
    nodes: &mut [SimNode],
    origin: usize,
    mark: MilliCelsius,
    step: Duration,
    timeout: Duration,
) -> anyhow::Result<Vec<Option<Duration>>> {
    nodes[origin].read(mark).await?;
    let id = nodes[origin].mesh.node_id();
    let mut others: Vec<&mut SimNode> = nodes
        .iter_mut()
        .enumerate()
        .filter(|(k, _)| *k != origin)
        .map(|(_, n)| n)
        .collect();
    Ok(wait_each(&mut others, step, timeout, |n| shows(n, id, mark)).await)
}

/// Changes timed per mesh size, each from another node (one for big meshes:
/// it costs about a minute of CPU at n = 1000).
fn trials(n: usize) -> usize {
    if n > 200 {
        1
    } else {
        TRIALS.min(n - 1)
    }
}

/// Gossip rounds a time spans: `ceil(t / interval)`.
pub fn rounds(t: Duration, interval: Duration) -> u128 {
    t.as_nanos().div_ceil(interval.as_nanos().max(1))
}

/// Gossip bytes sent per node per second over a quiet `window`.
async fn steady_bytes(stats: &GossipStats, n: usize, window: Duration) -> f64 {
    let before = stats.bytes_out.load(Relaxed);
    tokio::time::sleep(window).await;
    let sent = stats.bytes_out.load(Relaxed).saturating_sub(before);
    #[allow(clippy::cast_precision_loss)]
    let per_node = sent as f64 / n as f64;
    per_node / window.as_secs_f64()
}

/// Every `step`, has the nodes that do not satisfy `done` yet observe
/// their members and records when each first does; stops when all do or
/// after `timeout`.
async fn wait_each(
    nodes: &mut [&mut SimNode],
    step: Duration,
    timeout: Duration,
    done: impl Fn(&SimNode) -> bool,
) -> Vec<Option<Duration>> {
    let start = tokio::time::Instant::now();
    let mut times: Vec<Option<Duration>> = vec![None; nodes.len()];
    while times.iter().any(Option::is_none) && start.elapsed() < timeout {
        tokio::time::sleep(step).await;
        for (node, time) in nodes.iter_mut().zip(&mut times) {
            if time.is_none() {
                node.observe().await;
                if done(node) {
                    *time = Some(start.elapsed());
                }
            }
        }
    }
    times
}

/// Whether `node`'s core, as it just observed them, has node `id` as a
/// member that counts, at temperature `mark`.
fn shows(node: &SimNode, id: NodeId, mark: MilliCelsius) -> bool {
    node.core.members().iter().any(|m| {
        m.node_id == id && m.counts() && m.report.as_ref().is_some_and(|r| r.hottest == mark)
    })
}

fn addr(k: usize) -> SocketAddr {
    let port = u16::try_from(10_000 + k).expect("at most 55 535 simulated nodes");
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn key(k: usize) -> SigningKey {
    let mut seed = [0x6d_u8; 32];
    seed[..8].copy_from_slice(&(k as u64).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn settings(k: usize, seeds: &[SocketAddr], interval: Duration) -> MeshSettings {
    MeshSettings {
        listen_addr: addr(k),
        advertise_addr: addr(k),
        seeds: seeds.to_vec(),
        keys: Keyring::new(ClusterKey::derive(&[0x6d; 32], "maxwell-bench"), Vec::new()),
        swim: SwimConfig {
            gossip_every_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
            ..SwimConfig::default()
        },
        // Reports are published once: nothing may go stale during the run.
        verifier: VerifierConfig {
            max_age_ms: HOUR_MS,
            ttl_ms: HOUR_MS,
            ..VerifierConfig::default()
        },
        tiers: None,
    }
}

fn core_config(k: usize, interval: Duration) -> CoreConfig {
    let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
    CoreConfig {
        position: Position::new("sim", u16::try_from(k % 1000).unwrap_or(0)),
        default_critical: MilliCelsius(95_000),
        pricing: maxwell_pricing::PriceParams::default(),
        read_every_ms: ms,
        observe_every_ms: ms,
        stuck_after_ms: 10 * ms,
        report_ttl_ms: HOUR_MS,
        leave_linger_ms: 3 * ms,
        admission: maxwell_core::Admission::NONE,
        // Every reading is news: the changes timed here are the ones published.
        publish: maxwell_core::PublishPolicy::EVERY_READING,
        admit_moved_every_ms: 0,
    }
}

fn reading(hottest: MilliCelsius) -> Reading {
    Reading {
        hottest: Some((hottest, MilliCelsius(95_000))),
        power_draw: Some(MicroWatts(200_000_000)),
        power_cap: Some(MicroWatts(320_000_000)),
        headroom: Some(MicroWatts(120_000_000)),
        source: SensorSource::Emulated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_simulated_mesh_converges() {
        let interval = Duration::from_millis(200);
        let r = run(5, interval, Duration::from_secs(60)).expect("simulation runs");
        assert_eq!(r.n, 5);
        assert!(
            r.join.done().is_some(),
            "every node counts every other: {:?}",
            r.join
        );
        for (label, w) in ["50%", "99%", "100%"].iter().zip(r.reached) {
            let t = w
                .done()
                .unwrap_or_else(|| panic!("{label} of the nodes never saw the change: {w:?}"));
            assert!(
                rounds(t, interval) >= 1,
                "{label}: seen in no round ({t:?})"
            );
        }
        assert!(
            r.reached[0].done() <= r.reached[2].done(),
            "quantiles are ordered"
        );
        assert!(
            r.bytes_per_node_s.is_some_and(|b| b > 0.0),
            "gossip sent bytes"
        );
    }
}
