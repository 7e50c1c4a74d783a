//! `maxwell-pricing`: the price law. Every maxwell agent sets its own compute
//! price from its own heat, its rack neighbours' heat and the power headroom,
//! so that work drains away from heat with no one in charge.
//!
//! Pure code: no I/O, no clock, no randomness; time is a parameter (`now_ms`).
//!
//! - [`config`]: [`PriceConfig`] (serde, operator-facing) validated into
//!   [`PriceParams`] (the only thing a controller accepts).
//! - [`input`]: what the law reads ([`PriceInput`]: own readings, rack, slot,
//!   verified peer views) and answers ([`Quote`]: price and its [`Terms`]).
//! - [`law`]: the static target, `base + thermal + headroom + rack_power +
//!   staleness_penalty - neighbour_relief`, clamped to `[floor, ceiling]`.
//! - [`controller`]: [`PriceController`], the rate-limited first-order filter
//!   with hysteresis that turns targets into published prices, and remembers
//!   vanished neighbours.
//!
//! Contracts (each covered by a property test in `tests/`):
//! - every quoted price lies in `[floor_milli, ceiling_milli]`;
//! - the target rises (weakly) with own temperature and with shrinking
//!   headroom, and with the rack's summed draw once it passes
//!   `rack_soft_frac` of `rack_budget_w`;
//! - a hotter neighbour lowers (weakly) a cooler node's target, weighted by
//!   proximity (same rack, adjacent slots most);
//! - fail-safe: marking a neighbour stale, or dropping it from the input,
//!   never lowers the quote compared with seeing it fresh;
//! - stability: with the default gain the closed loop (price → load → heat,
//!   delayed by gossip) settles, see `docs/pricing.md` for the argument.

pub mod config;
pub mod controller;
pub mod input;
pub mod law;

pub use config::{ConfigError, PriceConfig, PriceParams};
pub use controller::PriceController;
pub use input::{OwnSummary, PeerView, PriceInput, Quote, Terms};
