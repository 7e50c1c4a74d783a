//! What the law reads ([`PriceInput`]) and what it answers ([`Quote`]).

use maxwell_types::{MicroWatts, MilliCelsius, NodeId, Position};
use serde::{Deserialize, Serialize};

/// This node's own readings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnSummary {
    /// Hottest sensor now.
    pub temp: MilliCelsius,
    /// Critical limit of that sensor.
    pub critical: MilliCelsius,
    /// Power drawn now, if measured.
    pub draw: Option<MicroWatts>,
    /// Power cap in force, if known. Headroom is `cap - draw`.
    pub cap: Option<MicroWatts>,
}

/// One other node as this node last verified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// Who (the key the controller remembers peers by).
    pub node: NodeId,
    /// Where it sits.
    pub position: Position,
    /// Its hottest reading.
    pub temp: MilliCelsius,
    /// The critical limit of that reading.
    pub critical: MilliCelsius,
    /// Its power draw, if it reports one.
    pub draw: Option<MicroWatts>,
    /// Its power cap, if it reports one (a stale peer is assumed to draw it).
    pub cap: Option<MicroWatts>,
    /// Age of the report on our clock.
    pub age_ms: u64,
    /// Set when gossip already considers the report stale.
    pub stale: bool,
}

/// Everything the law reads in one update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceInput {
    /// This node's readings.
    pub own: OwnSummary,
    /// Where this node sits.
    pub position: Position,
    /// The other nodes (this node excluded), fresh or stale.
    pub peers: Vec<PeerView>,
}

/// The terms of the target price, each in thousandths of a price unit, so
/// `raw_target = base + thermal + headroom + rack_power + staleness_penalty
/// - neighbour_relief` (all terms non-negative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Terms {
    /// The configured base price.
    pub base: i64,
    /// Own temperature near its limit.
    pub thermal: i64,
    /// Own power headroom shrinking.
    pub headroom: i64,
    /// Hotter neighbours nearby (subtracted).
    pub neighbour_relief: i64,
    /// The rack's summed draw near its budget.
    pub rack_power: i64,
    /// Stale or vanished neighbours nearby.
    pub staleness_penalty: i64,
    /// Sum of the terms, before clamping.
    pub raw_target: i64,
}

/// One answer of the law: the price to publish and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// The price to publish (in the signed heat report), within
    /// `[floor_milli, ceiling_milli]`.
    pub price_milli: u64,
    /// Where the filter is heading: `raw_target` clamped to floor and ceiling.
    pub target_milli: u64,
    /// The terms of the target.
    pub terms: Terms,
    /// True while the price is held (inside the hysteresis band).
    pub held: bool,
    /// Summed draw of this node's rack as the law counted it, in watts
    /// (stale members counted at their cap).
    pub rack_draw_w: f64,
    /// Neighbours counted fresh.
    pub fresh_peers: usize,
    /// Neighbours counted stale (stale, too old, or vanished but remembered).
    pub stale_peers: usize,
}
