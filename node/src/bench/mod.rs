//! `maxwell bench`: benchmarks that print one table each.
//!
//! The project's rule: performance is measured here, side by side with the
//! peer to beat in the same run, and never asserted as a wall-clock limit in
//! a test. Every wait has a timeout and shows up as "timeout" in the table;
//! every child process is killed and reaped on every path ([`procs::Procs`]);
//! everything listens on 127.0.0.1 only.

pub mod gossip;
pub mod procs;
pub mod thermal;
pub mod vmm;

use clap::{Args, Subcommand};
use std::time::Duration;

/// `maxwell bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub kind: BenchKind,
}

/// The benchmarks there are.
#[derive(Debug, Subcommand)]
pub enum BenchKind {
    /// Gossip: convergence in simulation (n = 10..1000), and on loopback
    /// UDP (n = 30) propagation, failure detection, leave and bytes, beside Serf.
    Gossip(GossipBenchArgs),
    /// Guests: create-to-first-exit, pause and resume latency (p50, p99),
    /// cap accuracy at 10/30/70 % and kill time, on this host's backend.
    Vmm(vmm::VmmBenchArgs),
    /// Thermal: the 4 × 40 host rack simulation, every scenario under the
    /// baselines, Maxwell's price law and the LP oracle, with Maxwell's ratio.
    Thermal(thermal::ThermalBenchArgs),
}

/// `maxwell bench gossip`.
#[derive(Debug, Args)]
pub struct GossipBenchArgs {
    /// Mesh sizes simulated in memory with a paused clock (1000 takes ~5 min and ~13 GB here).
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub sizes: Vec<usize>,
    /// Gossip round period for every run, ms (Serf's LAN profile gossips every 200 ms).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub interval_ms: u64,
    /// Real agents on loopback UDP, and as many Serf agents (0 skips both).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=200))]
    pub udp_nodes: u64,
    /// Do not run Serf beside our agents.
    #[arg(long)]
    pub no_serf: bool,
    /// Longest wait for any one event (simulated seconds in the simulation), s.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_s: u64,
    /// Window over which steady-state gossip bytes are counted, s.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub steady_s: u64,
}

/// Runs the chosen benchmark and prints its table on stdout (progress on stderr).
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.kind {
        BenchKind::Gossip(a) => gossip::run(&a),
        BenchKind::Vmm(a) => vmm::run(&a),
        BenchKind::Thermal(a) => thermal::run(&a),
    }
}

/// What a bounded wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Reached after this long.
    Done(Duration),
    /// Not reached in time: `seen` of `of` had got there.
    Timeout { seen: usize, of: usize },
}

impl Waited {
    /// The time taken, if reached.
    pub fn done(self) -> Option<Duration> {
        match self {
            Waited::Done(d) => Some(d),
            Waited::Timeout { .. } => None,
        }
    }
}

impl std::fmt::Display for Waited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waited::Done(d) => write!(f, "{}", secs(*d)),
            Waited::Timeout { seen, of } => write!(f, "timeout ({seen}/{of})"),
        }
    }
}

/// When the `fraction` quantile of `times` was reached: the k-th smallest
/// time with k = ceil(fraction * len); a timeout if fewer got there.
pub fn quantile(times: &[Option<Duration>], fraction: f64) -> Waited {
    let of = times.len();
    let mut reached: Vec<Duration> = times.iter().flatten().copied().collect();
    reached.sort();
    // A fraction of a node rounds up: 99 % of 9 nodes is all 9.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    let k = ((fraction * of as f64).ceil() as usize).clamp(1, of.max(1));
    match reached.get(k - 1) {
        Some(d) if of > 0 => Waited::Done(*d),
        _ => Waited::Timeout { seen: reached.len(), of },
    }
}

/// `0.35 s`, `12 ms`.
pub fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_round_up_and_report_timeouts() {
        let ms = |v: u64| Some(Duration::from_millis(v));
        let t = [ms(30), ms(10), None, ms(20)];
        assert_eq!(quantile(&t, 0.5), Waited::Done(Duration::from_millis(20)));
        assert_eq!(quantile(&t, 0.75), Waited::Done(Duration::from_millis(30)));
        assert_eq!(quantile(&t, 1.0), Waited::Timeout { seen: 3, of: 4 });
        assert_eq!(quantile(&[], 0.5), Waited::Timeout { seen: 0, of: 0 });
    }
}
