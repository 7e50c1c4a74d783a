//! `maxwell-types`: the few small types every maxwell crate shares, so that
//! the pure price law needs neither keys nor wire formats.
//!
//! - [`units`]: [`MilliCelsius`], [`MicroWatts`], [`MicroJoules`]: integers
//!   in the kernel's own scales, never confused with one another;
//! - [`node_id`]: [`NodeId`], 10 bytes shown as 20 hex digits (hex in
//!   human-readable formats, bytes in binary ones). Deriving one from a key
//!   is `maxwell-gossip`'s job;
//! - [`hex`]: the one hex codec; [`sync`]: the one lock helper;
//! - [`position`]: [`Position`], a host's rack and slot;
//! - [`addresses`]: where a running agent reports the ports it bound;
//! - [`rng`]: the one seeded generator (SplitMix64).
//!
//! Contract: no I/O, no dependencies beyond serde and thiserror.

pub mod addresses;
pub mod hex;
pub mod node_id;
pub mod position;
pub mod rng;
pub mod sync;
pub mod units;

pub use node_id::{NodeId, ParseNodeIdError, NODE_ID_LEN};
pub use position::Position;
pub use units::{MicroJoules, MicroWatts, MilliCelsius};
