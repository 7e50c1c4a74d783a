//! `maxwell bench thermal`: the rack simulation of `maxwell-testbed` (4
//! racks × 40 hosts, seeded), every scenario under every baseline, Maxwell's
//! real price law and the LP oracle, in one table.

use clap::Args;
use std::path::PathBuf;

/// `maxwell bench thermal`.
#[derive(Debug, Args)]
pub struct ThermalBenchArgs {
    /// Seed of the simulation (same seed, same table).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// A smaller run (2 racks × 10 hosts, 240 s) for a quick look.
    #[arg(long)]
    pub short: bool,
    /// Write the SVG plots (temperature and price over time) into this directory.
    #[arg(long)]
    pub plots: Option<PathBuf>,
}

/// Runs the simulation and prints its table.
pub fn run(args: &ThermalBenchArgs) -> anyhow::Result<()> {
    let cfg = if args.short {
        maxwell_testbed::BenchConfig::short(args.seed)
    } else {
        maxwell_testbed::BenchConfig::standard(args.seed)
    };
    eprintln!(
        "simulating (seed {}{}) ...",
        args.seed,
        if args.short { ", short" } else { "" }
    );
    let report = maxwell_testbed::run_thermal_bench_with(&cfg);
    println!("{report}");
    if let Some(dir) = &args.plots {
        for path in report.write_plots(dir)? {
            println!("plot: {}", path.display());
        }
    }
    Ok(())
}
