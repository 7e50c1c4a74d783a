//! Configuration of the price law: [`PriceConfig`] is what an operator writes
//! (serde, unknown fields refused, every field defaulted), [`PriceParams`] is
//! the same after [`PriceConfig::validate`], and the only thing a
//! [`crate::PriceController`] accepts, so a controller can never run with a
//! floor above its ceiling or a gain that would make it unstable.

use serde::{Deserialize, Serialize};

/// Operator-facing configuration of the price law. Prices are in thousandths
/// of a price unit (`_milli`); gains are fractions of the base price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriceConfig {
    /// Price of an idle, cool node with cool neighbours and a slack rack.
    pub base_milli: u64,
    /// Lowest price ever quoted.
    pub floor_milli: u64,
    /// Highest price ever quoted.
    pub ceiling_milli: u64,
    /// The thermal term starts this many degrees below the critical limit and
    /// grows quadratically to `thermal_gain` at the limit.
    pub thermal_span_c: f64,
    /// Thermal term at the critical limit, as a fraction of the base price.
    pub thermal_gain: f64,
    /// Headroom term when the host draws its whole cap (quadratic in the used
    /// fraction of the cap), as a fraction of the base price.
    pub headroom_gain: f64,
    /// Largest neighbour relief, as a fraction of the base price; below 1 so
    /// that relief alone can never drive the price to zero.
    pub relief_gain: f64,
    /// Proximity-weighted excess heat of the neighbours that earns the full
    /// relief (2.0: both adjacent slots at the limit while this node is cool).
    pub relief_norm: f64,
    /// Weight of a neighbour in the next slot of the same rack.
    pub adjacent_weight: f64,
    /// Each further slot of distance multiplies the weight by this.
    pub slot_decay: f64,
    /// Neighbours further than this many slots away (same rack) weigh nothing.
    pub neighbour_slots: u16,
    /// Weight of any node of another rack (0: other racks do not matter).
    pub other_rack_weight: f64,
    /// Power budget of a rack, in watts; `None` disables rack power capping.
    pub rack_budget_w: Option<f64>,
    /// The rack term starts when the rack draws this fraction of its budget.
    pub rack_soft_frac: f64,
    /// Rack term when the rack draws its whole budget (fraction of the base
    /// price); it keeps growing, at the same slope, above the budget.
    pub rack_gain: f64,
    /// Penalty for stale or vanished neighbours, as a fraction of the base
    /// price, reached when their proximity weight sums to `relief_norm`.
    pub stale_gain: f64,
    /// A neighbour whose report is older than this is stale.
    pub ttl_ms: u64,
    /// A neighbour absent from the input is remembered (as stale) this long.
    pub forget_after_ms: u64,
    /// Gain of the first-order filter per round, in (0, 1].
    pub filter_gain: f64,
    /// Length of one round (the gossip / update period) the gain refers to.
    pub round_ms: u64,
    /// Largest price change in one round.
    pub max_step_milli: u64,
    /// Hysteresis: a held price starts moving when the target is further
    /// than this from it...
    pub band_on_milli: u64,
    /// ...and is held again once it is within this of the target.
    pub band_off_milli: u64,
}

impl Default for PriceConfig {
    fn default() -> Self {
        Self {
            base_milli: 1_000,
            floor_milli: 100,
            ceiling_milli: 20_000,
            thermal_span_c: 30.0,
            thermal_gain: 4.0,
            headroom_gain: 1.0,
            relief_gain: 0.5,
            relief_norm: 2.0,
            adjacent_weight: 1.0,
            slot_decay: 0.5,
            neighbour_slots: 4,
            other_rack_weight: 0.0,
            rack_budget_w: None,
            rack_soft_frac: 0.85,
            rack_gain: 3.0,
            stale_gain: 0.5,
            ttl_ms: 15_000,
            forget_after_ms: 600_000,
            filter_gain: 0.3,
            round_ms: 1_000,
            max_step_milli: 2_000,
            band_on_milli: 50,
            band_off_milli: 15,
        }
    }
}

/// Why a [`PriceConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `floor_milli` must be strictly below `ceiling_milli`.
    #[error("price floor {floor} must be below the ceiling {ceiling}")]
    FloorNotBelowCeiling {
        /// The configured floor.
        floor: u64,
        /// The configured ceiling.
        ceiling: u64,
    },
    /// `base_milli` must lie within `[floor_milli, ceiling_milli]`.
    #[error("base price {base} is outside [{floor}, {ceiling}]")]
    BaseOutOfBounds {
        /// The configured base price.
        base: u64,
        /// The configured floor.
        floor: u64,
        /// The configured ceiling.
        ceiling: u64,
    },
    /// A real-valued field is NaN, infinite or outside its range.
    #[error("{field} = {value} is out of range: expected {expected}")]
    OutOfRange {
        /// Name of the field, as written in the configuration.
        field: &'static str,
        /// The value given.
        value: f64,
        /// The accepted range, in words.
        expected: &'static str,
    },
    /// A duration or step that must be positive is zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// Name of the field.
        field: &'static str,
    },
    /// `forget_after_ms` must be at least `ttl_ms`: a vanished neighbour is
    /// remembered as stale at least as long as a silent one would be.
    #[error("forget_after_ms {forget} must be at least ttl_ms {ttl}")]
    ForgetBeforeTtl {
        /// The configured memory.
        forget: u64,
        /// The configured time to live.
        ttl: u64,
    },
    /// `band_off_milli` must be below `band_on_milli` (hysteresis needs two
    /// distinct thresholds).
    #[error("band_off_milli {off} must be below band_on_milli {on}")]
    BandsInverted {
        /// The configured engage threshold.
        on: u64,
        /// The configured release threshold.
        off: u64,
    },
}

/// A validated [`PriceConfig`]: every invariant the law relies on holds.
/// Built only by [`PriceConfig::validate`]; read it with [`PriceParams::config`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PriceParams(PriceConfig);

impl PriceParams {
    /// The configuration these parameters were validated from.
    pub fn config(&self) -> &PriceConfig {
        &self.0
    }
}

fn check(
    field: &'static str,
    value: f64,
    lo: f64,
    hi: f64,
    lo_open: bool,
    expected: &'static str,
) -> Result<(), ConfigError> {
    let ok = value.is_finite() && value <= hi && if lo_open { value > lo } else { value >= lo };
    if ok {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            expected,
        })
    }
}

impl PriceConfig {
    /// Checks every invariant and returns the parameters a controller runs on.
    pub fn validate(self) -> Result<PriceParams, ConfigError> {
        let c = &self;
        if c.floor_milli >= c.ceiling_milli {
            return Err(ConfigError::FloorNotBelowCeiling {
                floor: c.floor_milli,
                ceiling: c.ceiling_milli,
            });
        }
        if c.base_milli < c.floor_milli || c.base_milli > c.ceiling_milli {
            return Err(ConfigError::BaseOutOfBounds {
                base: c.base_milli,
                floor: c.floor_milli,
                ceiling: c.ceiling_milli,
            });
        }
        const BIG: f64 = 1e6;
        check(
            "thermal_span_c",
            c.thermal_span_c,
            0.0,
            200.0,
            true,
            "in (0, 200]",
        )?;
        check(
            "thermal_gain",
            c.thermal_gain,
            0.0,
            100.0,
            false,
            "in [0, 100]",
        )?;
        check(
            "headroom_gain",
            c.headroom_gain,
            0.0,
            100.0,
            false,
            "in [0, 100]",
        )?;
        check(
            "relief_gain",
            c.relief_gain,
            0.0,
            0.95,
            false,
            "in [0, 0.95]",
        )?;
        check("relief_norm", c.relief_norm, 0.0, BIG, true, "positive")?;
        check(
            "adjacent_weight",
            c.adjacent_weight,
            0.0,
            BIG,
            false,
            "non-negative",
        )?;
        check("slot_decay", c.slot_decay, 0.0, 1.0, false, "in [0, 1]")?;
        check(
            "other_rack_weight",
            c.other_rack_weight,
            0.0,
            BIG,
            false,
            "non-negative",
        )?;
        if let Some(b) = c.rack_budget_w {
            check("rack_budget_w", b, 0.0, 1e9, true, "positive watts")?;
        }
        check(
            "rack_soft_frac",
            c.rack_soft_frac,
            0.0,
            1.0,
            true,
            "in (0, 1)",
        )?;
        if c.rack_soft_frac >= 1.0 {
            return Err(ConfigError::OutOfRange {
                field: "rack_soft_frac",
                value: c.rack_soft_frac,
                expected: "in (0, 1)",
            });
        }
        check("rack_gain", c.rack_gain, 0.0, 100.0, false, "in [0, 100]")?;
        check("stale_gain", c.stale_gain, 0.0, 100.0, false, "in [0, 100]")?;
        check("filter_gain", c.filter_gain, 0.0, 1.0, true, "in (0, 1]")?;
        for (field, v) in [
            ("ttl_ms", c.ttl_ms),
            ("round_ms", c.round_ms),
            ("max_step_milli", c.max_step_milli),
            ("band_on_milli", c.band_on_milli),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero { field });
            }
        }
        if c.forget_after_ms < c.ttl_ms {
            return Err(ConfigError::ForgetBeforeTtl {
                forget: c.forget_after_ms,
                ttl: c.ttl_ms,
            });
        }
        if c.band_off_milli >= c.band_on_milli {
            return Err(ConfigError::BandsInverted {
                on: c.band_on_milli,
                off: c.band_off_milli,
            });
        }
        Ok(PriceParams(self))
    }
}
