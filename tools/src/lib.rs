//! `maxwell-tools`: everything a rack host does not run, kept out of the
//! agent binary: the local demo mesh and the benchmarks (the rack
//! simulation with its LP oracle, the gossip bench beside Serf on a
//! simulated clock, the guest bench).
//!
//! Contracts:
//! - the tools drive the agent's own code: the demo and the loopback
//!   benches start real agents (this binary's `agent` command is the
//!   `maxwell` command line, [`maxwell_node::entry`]); the simulations run
//!   the agent's [`maxwell_core::NodeCore`];
//! - every child process is killed and reaped on every path, and
//!   everything listens on 127.0.0.1 only;
//! - performance is measured here, in a table beside its peer, never as a
//!   wall-clock assert in a test.

pub mod bench;
pub mod demo;
pub mod testbed;
