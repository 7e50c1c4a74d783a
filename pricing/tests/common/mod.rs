//! Shared helpers of the property tests: a seeded generator and builders.
#![allow(dead_code)]

use maxwell_pricing::{
    OwnSummary, PeerView, PriceConfig, PriceController, PriceInput, PriceParams, Quote,
};
use maxwell_types::{MicroWatts, MilliCelsius, NodeId, Position};

pub use maxwell_types::rng::Rng;

/// The draws the property tests make, on the one seeded generator.
pub trait Draws {
    /// Uniform in [lo, hi).
    fn range(&mut self, lo: i64, hi: i64) -> i64;
    fn chance(&mut self, p: f64) -> bool;
}

impl Draws for Rng {
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

pub const CASES: u64 = 300;

pub fn node(i: u16) -> NodeId {
    let mut id = [0u8; maxwell_types::NODE_ID_LEN];
    id[..2].copy_from_slice(&i.to_be_bytes());
    NodeId(id)
}

pub fn mc(c: i64) -> MilliCelsius {
    MilliCelsius(c)
}

pub fn w(watts: i64) -> Option<MicroWatts> {
    Some(MicroWatts(watts * 1_000_000))
}

pub fn peer(i: u16, rack: &str, slot: u16, temp_mc: i64, draw_w: i64) -> PeerView {
    PeerView {
        node: node(i),
        position: Position::new(rack, slot),
        temp: mc(temp_mc),
        critical: mc(95_000),
        draw: w(draw_w),
        cap: w(400),
        age_ms: 500,
        stale: false,
    }
}

/// A random snapshot: this node in rack "r0" at a random slot with random
/// readings, and up to 12 random peers across two racks.
pub fn random_input(rng: &mut Rng) -> PriceInput {
    let slot = rng.range(0, 40) as u16;
    let own = OwnSummary {
        temp: mc(rng.range(20_000, 105_000)),
        critical: mc(rng.range(85_000, 105_000)),
        draw: if rng.chance(0.9) {
            w(rng.range(80, 450))
        } else {
            None
        },
        cap: if rng.chance(0.9) {
            w(rng.range(250, 500))
        } else {
            None
        },
    };
    let n = rng.range(0, 13) as u16;
    let peers = (0..n)
        .map(|i| {
            let rack = if rng.chance(0.7) { "r0" } else { "r1" };
            let mut p = peer(
                i + 1,
                rack,
                rng.range(0, 40) as u16,
                rng.range(20_000, 105_000),
                rng.range(80, 450),
            );
            p.age_ms = rng.range(0, 20_000) as u64;
            p.stale = rng.chance(0.1);
            if rng.chance(0.1) {
                p.draw = None;
            }
            p
        })
        .collect();
    PriceInput {
        own,
        position: Position::new("r0", slot),
        peers,
    }
}

/// A random valid configuration (with a rack budget).
pub fn random_params(rng: &mut Rng) -> PriceParams {
    let floor = rng.range(1, 500) as u64;
    let cfg = PriceConfig {
        floor_milli: floor,
        base_milli: floor + rng.range(1, 2_000) as u64,
        ceiling_milli: floor + rng.range(2_001, 50_000) as u64,
        thermal_gain: rng.unit() * 8.0,
        headroom_gain: rng.unit() * 3.0,
        relief_gain: rng.unit() * 0.9,
        rack_budget_w: Some(rng.range(1_000, 6_000) as f64),
        rack_gain: rng.unit() * 5.0,
        stale_gain: rng.unit() * 2.0,
        filter_gain: 0.05 + rng.unit() * 0.95,
        ..PriceConfig::default()
    };
    cfg.validate().expect("generated config is valid")
}

/// The target of `input` (a fresh controller's first quote is its target).
pub fn target(params: &PriceParams, input: &PriceInput) -> Quote {
    PriceController::new(params.clone()).update(input, 0)
}
