//! `maxwell bench gossip`.

pub mod sim;

use crate::bench::GossipBenchArgs;
use std::time::Duration;

/// Runs every part and prints the table.
pub fn run(args: &GossipBenchArgs) -> anyhow::Result<()> {
    let interval = Duration::from_millis(args.interval_ms);
    for &n in &args.sizes {
        let r = sim::run(n, interval, Duration::from_secs(args.timeout_s))?;
        println!("{r:?}");
    }
    Ok(())
}
