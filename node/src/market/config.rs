//! The `[market]` config section: the market's settings
//! ([`maxwell_market::MarketConfig`], whose defaults are declared there
//! once), the ledger's retention and the host's idle power.

use crate::check::{invalid, ConfigError};
use maxwell_market::{Curve, LedgerConfig, MarketConfig};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMarket {
    pub tick_ms: Option<u64>,
    pub grace_ms: Option<u64>,
    pub resume_margin_permille: Option<u64>,
    pub resume_hold_ms: Option<u64>,
    pub resume_hold_max_ms: Option<u64>,
    pub memory_rent_milli_per_gib_s: Option<u64>,
    pub release_tax_milli_per_gib: Option<u64>,
    pub critical_floor_milli: Option<u32>,
    pub receipt_every_ms: Option<u64>,
    pub thermal_band_millicelsius: Option<i64>,
    pub headroom_band_permille: Option<u64>,
    pub floor_permille: Option<u64>,
    pub ledger_segment_bytes: Option<u64>,
    pub ledger_keep_segments: Option<usize>,
    /// The host's idle draw, for energy attribution; absent: the lowest
    /// draw measured since the agent started.
    pub idle_watts: Option<f64>,
}

/// Validated market settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketSettings {
    pub market: MarketConfig,
    pub ledger: LedgerConfig,
    pub idle_micro_w: Option<u64>,
}

impl RawMarket {
    pub fn validate(self) -> Result<MarketSettings, ConfigError> {
        let d = MarketConfig::default();
        let c = d.capacity;
        let market = MarketConfig {
            tick_ms: self.tick_ms.unwrap_or(d.tick_ms),
            grace_ms: self.grace_ms.unwrap_or(d.grace_ms),
            resume_margin_permille: self
                .resume_margin_permille
                .unwrap_or(d.resume_margin_permille),
            resume_hold_ms: self.resume_hold_ms.unwrap_or(d.resume_hold_ms),
            resume_hold_max_ms: self.resume_hold_max_ms.unwrap_or(d.resume_hold_max_ms),
            memory_rent_milli_per_gib_s: self
                .memory_rent_milli_per_gib_s
                .unwrap_or(d.memory_rent_milli_per_gib_s),
            release_tax_milli_per_gib: self
                .release_tax_milli_per_gib
                .unwrap_or(d.release_tax_milli_per_gib),
            critical_floor_milli: self.critical_floor_milli.unwrap_or(d.critical_floor_milli),
            receipt_every_ms: self.receipt_every_ms.unwrap_or(d.receipt_every_ms),
            capacity: Curve {
                thermal_band_millicelsius: self
                    .thermal_band_millicelsius
                    .unwrap_or(c.thermal_band_millicelsius),
                headroom_band_permille: self
                    .headroom_band_permille
                    .unwrap_or(c.headroom_band_permille),
                floor_permille: self.floor_permille.unwrap_or(c.floor_permille),
            },
        };
        market
            .validate()
            .map_err(|e| invalid(field_name(e.field), e.why))?;
        let l = LedgerConfig::default();
        let ledger = LedgerConfig {
            segment_bytes: self.ledger_segment_bytes.unwrap_or(l.segment_bytes),
            keep_segments: self.ledger_keep_segments.unwrap_or(l.keep_segments),
        };
        if ledger.segment_bytes < 64 << 10 {
            return Err(invalid(
                "market.ledger_segment_bytes",
                format!("{} is below 65536", ledger.segment_bytes),
            ));
        }
        let idle_micro_w = match self.idle_watts {
            None => None,
            Some(w) if w.is_finite() && (0.0..=100_000.0).contains(&w) => Some((w * 1e6) as u64),
            Some(w) => {
                return Err(invalid(
                    "market.idle_watts",
                    format!("{w} is outside [0, 100000]"),
                ))
            }
        };
        Ok(MarketSettings {
            market,
            ledger,
            idle_micro_w,
        })
    }
}

/// `market.<field>`, as a static name for the config error.
fn field_name(field: &'static str) -> &'static str {
    match field {
        "tick_ms" => "market.tick_ms",
        "grace_ms" => "market.grace_ms",
        "resume_margin_permille" => "market.resume_margin_permille",
        "resume_hold_max_ms" => "market.resume_hold_max_ms",
        "release_tax_milli_per_gib" => "market.release_tax_milli_per_gib",
        "receipt_every_ms" => "market.receipt_every_ms",
        "critical_floor_milli" => "market.critical_floor_milli",
        "capacity.thermal_band_millicelsius" => "market.thermal_band_millicelsius",
        "capacity.headroom_band_permille" => "market.headroom_band_permille",
        "capacity.floor_permille" => "market.floor_permille",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_a_tax_above_a_minute_of_rent_is_refused() {
        let s = RawMarket::default().validate().expect("defaults");
        assert_eq!(s.market, MarketConfig::default());
        let bad = RawMarket {
            release_tax_milli_per_gib: Some(10_000),
            ..RawMarket::default()
        };
        let e = bad.validate().expect_err("hoarding");
        assert!(
            e.to_string().contains("market.release_tax_milli_per_gib"),
            "{e}"
        );
        let bad = RawMarket {
            grace_ms: Some(10),
            ..RawMarket::default()
        };
        assert!(bad.validate().is_err());
    }
}
