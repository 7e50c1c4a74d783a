//! The static part of the law: from one snapshot of readings to a target
//! price and its terms. No state, no time; the dynamics are in
//! [`crate::controller`].

use crate::config::PriceParams;
use crate::input::{OwnSummary, PeerView, Terms};
use maxwell_types::{MicroWatts, MilliCelsius, Position};

/// How close a reading is to its limit: 0 at `span` degrees below it or
/// cooler, 1 at the limit, growing on to at most 1.5 above it.
pub fn closeness(temp: MilliCelsius, critical: MilliCelsius, span_c: f64) -> f64 {
    let margin_c = (critical.0 - temp.0) as f64 / 1000.0;
    (1.0 - margin_c / span_c).clamp(0.0, 1.5)
}

/// Proximity weight of a node at `other` seen from `own`.
pub fn proximity(p: &PriceParams, own: &Position, other: &Position) -> f64 {
    let c = p.config();
    let Some(d) = own.slots_apart(other) else {
        return c.other_rack_weight;
    };
    if d > c.neighbour_slots {
        return 0.0;
    }
    c.adjacent_weight * c.slot_decay.powi(i32::from(d.max(1)) - 1)
}

/// A peer as the law counts it: its view and whether it is stale.
#[derive(Debug, Clone, Copy)]
pub struct Counted<'a> {
    /// The last view of the peer.
    pub view: &'a PeerView,
    /// Stale, too old, or vanished.
    pub stale: bool,
}

/// The target and what went into it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The terms (their sum is `terms.raw_target`).
    pub terms: Terms,
    /// `raw_target` clamped to `[floor, ceiling]`.
    pub target_milli: u64,
    /// Rack draw as counted, watts.
    pub rack_draw_w: f64,
    /// Fresh and stale neighbour counts.
    pub fresh: usize,
    /// See `fresh`.
    pub stale: usize,
}

fn watts(p: Option<MicroWatts>) -> Option<f64> {
    p.map(MicroWatts::as_watts)
}

/// What a node is assumed to draw: fresh, its draw (or its cap when it
/// reports none); stale, the larger of the two (it may have grown since).
fn counted_draw_w(draw: Option<MicroWatts>, cap: Option<MicroWatts>, stale: bool) -> f64 {
    let w = match (watts(draw), watts(cap)) {
        (Some(d), Some(c)) if stale => Some(d.max(c)),
        (d, c) => d.or(c),
    };
    w.unwrap_or(0.0).max(0.0)
}

/// Computes the target price of a node from one snapshot.
pub fn target(
    p: &PriceParams,
    own: &OwnSummary,
    position: &Position,
    peers: &[Counted<'_>],
) -> Target {
    let c = p.config();
    let base = c.base_milli as f64;
    let x_own = closeness(own.temp, own.critical, c.thermal_span_c);
    let thermal = c.thermal_gain * x_own * x_own * base;

    let headroom = match (watts(own.draw), watts(own.cap)) {
        (Some(d), Some(cap)) if cap > 0.0 => {
            let used = (d / cap).clamp(0.0, 1.5);
            c.headroom_gain * used * used * base
        }
        _ => 0.0,
    };

    let mut rack_draw_w = counted_draw_w(own.draw, own.cap, false);
    let (mut excess, mut stale_w, mut fresh, mut stale) = (0.0, 0.0, 0usize, 0usize);
    for peer in peers {
        let v = peer.view;
        let is_stale = peer.stale || v.age_ms > c.ttl_ms;
        if v.position.rack == position.rack {
            rack_draw_w += counted_draw_w(v.draw, v.cap, is_stale);
        }
        let w = proximity(p, position, &v.position);
        if is_stale {
            stale += 1;
            stale_w += w;
        } else {
            fresh += 1;
            let trust = 1.0 - v.age_ms as f64 / c.ttl_ms as f64;
            let x = closeness(v.temp, v.critical, c.thermal_span_c);
            excess += w * trust * (x - x_own).max(0.0);
        }
    }
    let relief = c.relief_gain * (excess / c.relief_norm).min(1.0) * base;
    let staleness = c.stale_gain * (stale_w / c.relief_norm).min(1.0) * base;
    let rack_power = match c.rack_budget_w {
        Some(budget) => {
            let over = (rack_draw_w / budget - c.rack_soft_frac).max(0.0);
            c.rack_gain * over / (1.0 - c.rack_soft_frac) * base
        }
        None => 0.0,
    };

    let r = |v: f64| v.round() as i64;
    let mut terms = Terms {
        base: c.base_milli as i64,
        thermal: r(thermal),
        headroom: r(headroom),
        neighbour_relief: r(relief),
        rack_power: r(rack_power.min(1e12)),
        staleness_penalty: r(staleness),
        raw_target: 0,
    };
    terms.raw_target =
        terms.base + terms.thermal + terms.headroom + terms.rack_power + terms.staleness_penalty
            - terms.neighbour_relief;
    let target_milli = (terms.raw_target.max(0) as u64).clamp(c.floor_milli, c.ceiling_milli);
    Target {
        terms,
        target_milli,
        rack_draw_w,
        fresh,
        stale,
    }
}
