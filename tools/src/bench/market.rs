//! `maxwell bench market`: what the market costs, and what it does, in
//! one table each.
//!
//! - the market core alone (no KVM) at 1k, 10k and 100k guests: the cost
//!   of a bid change, an arrival, a departure, the price step's search for
//!   the fill level (beside a naive re-sort, the peer of the O(log n)
//!   book), and a whole tick;
//! - a live agent at its default config on fixture sensors, with 50 real
//!   guests: the market's CPU (its own counter, `maxwell_market_cpu_seconds`)
//!   as a share of one core;
//! - the same agent's timeline with three guests: the fixture heated at t,
//!   then the low bidder's share cut, its pause, the poor guest's kill;
//!   cooled, its resume;
//! - energy per guest on the emulated host, whose truth is known, against
//!   the attribution (Kepler's and Scaphandre's model).

mod core_cost;
mod live;

use clap::Args;

/// `maxwell bench market`.
#[derive(Debug, Args)]
pub struct MarketBenchArgs {
    /// Guest counts of the core-alone rows.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    pub sizes: Vec<usize>,
    /// Guests on the live agent.
    #[arg(long, default_value_t = 50)]
    pub live_guests: usize,
    /// How long the live agent's overhead is sampled, s.
    #[arg(long, default_value_t = 30)]
    pub live_seconds: u64,
    /// Which parts to run: core, overhead, timeline, energy.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "core,overhead,timeline,energy"
    )]
    pub parts: Vec<String>,
}

pub fn run(args: &MarketBenchArgs) -> anyhow::Result<()> {
    for part in &args.parts {
        match part.as_str() {
            "core" => println!("{}", core_cost::run(&args.sizes)),
            "overhead" => println!("{}", live::overhead(args.live_guests, args.live_seconds)?),
            "timeline" => println!("{}", live::timeline()?),
            "energy" => println!("{}", live::energy(args.live_seconds)?),
            other => {
                anyhow::bail!("--parts: unknown part {other:?} (core, overhead, timeline, energy)")
            }
        }
    }
    Ok(())
}
