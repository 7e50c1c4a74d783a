//! `maxwell bench`: benchmarks that print one table each.
//!
//! The project's rule: performance is measured here, side by side with the
//! peer to beat in the same run, and never asserted as a wall-clock limit in
//! a test. Every wait has a timeout and shows up as "timeout" in the table;
//! every child process is killed and reaped on every path
//! ([`maxwell_supervise::Procs`]);
//! everything listens on 127.0.0.1 only.

pub mod dashboard;
pub mod gossip;
pub mod market;
pub mod placement;
pub mod thermal;
pub mod timing;
pub mod vmm;

use clap::{Args, Subcommand};

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
    Gossip(gossip::GossipBenchArgs),
    /// Guests: create-to-first-exit, pause and resume latency (p50, p99),
    /// cap accuracy at 10/30/70 % and kill time, on this host's backend.
    Vmm(vmm::VmmBenchArgs),
    /// Market: the core's cost per change at 1k/10k/100k guests, its CPU on
    /// a live agent with 50 guests, and the heat-to-pause-and-kill timeline.
    Market(market::MarketBenchArgs),
    /// Thermal: the 4 × 40 host rack simulation, every scenario under the
    /// baselines, Maxwell's price law and the LP oracle, with Maxwell's ratio.
    Thermal(thermal::ThermalBenchArgs),
    /// Dashboard: what `/ui` open in a headless Chromium costs the agent
    /// serving it (CPU, requests and bytes per update), 24 agents.
    Dashboard(dashboard::DashboardBenchArgs),
    /// Placement: 500 submissions at once across 24 agents (hot and frozen
    /// ones among them): latency, offers, load against the ideal, one random
    /// choice and the two-choice bound, and where the guests landed.
    Placement(placement::PlacementBenchArgs),
}

/// Runs the chosen benchmark and prints its table on stdout (progress on stderr).
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.kind {
        BenchKind::Gossip(a) => gossip::run(&a),
        BenchKind::Vmm(a) => vmm::run(&a),
        BenchKind::Thermal(a) => thermal::run(&a),
        BenchKind::Market(a) => market::run(&a),
        BenchKind::Dashboard(a) => dashboard::run(&a),
        BenchKind::Placement(a) => placement::run(&a),
    }
}
