//! `maxwell-testbed` (library part): a rack thermal physics model, a
//! deterministic in-process simulation of a Maxwell mesh, and the thermal
//! benchmark that compares the price law with baselines and an LP oracle.
//!
//! - [`physics`]: per-host lumped RC model (die+sink, chassis), power linear
//!   in utilisation, hardware throttling near the critical temperature.
//! - [`recirculation`]: the floor [`Layout`] and a linear heat-recirculation
//!   matrix (Tang et al.): `T_in = T_supply + D · P`.
//! - [`scenarios`]: steady load, cooling failure, fan failure, burst, partition.
//! - [`sim`]: guests with seeded demand traces, one step per simulated second.
//! - [`policies`]: the baselines; [`mesh`]: Maxwell (the agent's `NodeCore`
//!   over simulated gossip with delay and loss, moving guests by the
//!   agent's heat rule) and [`hostmarket`]: the agent's market core serving
//!   each host's guests.
//! - [`oracle`]: omniscient divisible placement as a linear program (`microlp`);
//!   [`bound`]: the fewest moves a fan failure can be met with.
//! - [`metrics`], [`plot`] (hand-written SVG), [`bench`](mod@bench):
//!   [`run_thermal_bench_with`] and its printable [`ThermalBenchReport`],
//!   which ends with [`goals`]: the market issue's goals, met or not.
//!
//! Contracts: no I/O except [`ThermalBenchReport::write_plots`]; no wall
//! clock; every random choice comes from the seed, so the same
//! [`BenchConfig`] gives the same report, bit for bit.

pub mod bench;
pub mod bound;
pub mod goals;
pub mod hostmarket;
pub mod mesh;
pub mod metrics;
pub mod oracle;
pub mod physics;
pub mod plot;
pub mod policies;
pub mod recirculation;
pub mod rng;
pub mod scenarios;
pub mod sim;
pub mod world;

pub use bench::{run_thermal_bench_with, BenchConfig, Row, ThermalBenchReport};
pub use recirculation::Layout;
