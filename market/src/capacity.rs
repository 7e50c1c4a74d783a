//! The sellable CPU: the guests' cores, reduced smoothly as the host nears
//! its critical temperature and as its power headroom nears zero.
//!
//! `capacity = cores · max(floor, s(x_T) · s(x_P))` where
//! `x_T = (critical − T) / thermal_band` and `x_P = headroom / (cap ·
//! headroom_band)`, each clamped to [0, 1], and `s(x) = x²(3 − 2x)` (the
//! smoothstep: flat at both ends, so capacity does not jump when a reading
//! crosses into the band). Below the band the host sells every core; at the
//! critical limit, or with no headroom, it sells only the floor. An unknown
//! reading is taken as the worst (the core's rule: never cooler than known).

use crate::order::Invalid;
use serde::{Deserialize, Serialize};

/// The curve's settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// Capacity starts to fall this far below the critical limit, m°C.
    pub thermal_band_millicelsius: i64,
    /// ... and as headroom falls below this fraction of the cap, thousandths.
    pub headroom_band_permille: u64,
    /// Never below this fraction of the cores, thousandths.
    pub floor_permille: u64,
}

impl Default for Curve {
    fn default() -> Self {
        Self {
            thermal_band_millicelsius: 15_000,
            headroom_band_permille: 200,
            floor_permille: 50,
        }
    }
}

/// What the curve is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// The cores guests may take, milli-cores.
    pub cores_mcores: u64,
    /// The hottest reading and its critical limit, m°C; `None` if unknown.
    pub temperature: Option<(i64, i64)>,
    /// Power headroom and the cap, watts; `None` where no cap is known
    /// (the power term is then 1).
    pub headroom: Option<(f64, f64)>,
}

fn smooth(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

impl Curve {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.thermal_band_millicelsius <= 0 {
            return Err(Invalid {
                field: "capacity.thermal_band_millicelsius",
                why: "must be positive".into(),
            });
        }
        if !(1..=1000).contains(&self.headroom_band_permille) {
            return Err(Invalid {
                field: "capacity.headroom_band_permille",
                why: "must be in 1..=1000".into(),
            });
        }
        if self.floor_permille > 1000 {
            return Err(Invalid {
                field: "capacity.floor_permille",
                why: "must be at most 1000".into(),
            });
        }
        Ok(())
    }

    /// The fraction of the cores on sale, in [floor, 1].
    pub fn fraction(&self, c: &Conditions) -> f64 {
        let thermal = match c.temperature {
            Some((t, crit)) => smooth((crit - t) as f64 / self.thermal_band_millicelsius as f64),
            None => 0.0,
        };
        let power = match c.headroom {
            Some((head, cap)) if cap > 0.0 && head.is_finite() => {
                smooth(head / (cap * self.headroom_band_permille as f64 / 1000.0))
            }
            Some(_) => 0.0,
            None => 1.0,
        };
        (thermal * power).max(self.floor_permille as f64 / 1000.0)
    }

    /// The milli-cores on sale.
    pub fn capacity(&self, c: &Conditions) -> u64 {
        (c.cores_mcores as f64 * self.fraction(c)).floor() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: i64, head: f64) -> u64 {
        Curve::default().capacity(&Conditions {
            cores_mcores: 2_000,
            temperature: Some((t, 90_000)),
            headroom: Some((head, 100.0)),
        })
    }

    #[test]
    fn capacity_falls_smoothly_with_heat_and_headroom() {
        assert_eq!(at(60_000, 50.0), 2_000);
        assert_eq!(at(75_000, 50.0), 2_000);
        assert_eq!(at(82_500, 50.0), 1_000);
        assert_eq!(at(90_000, 50.0), 100);
        assert_eq!(at(95_000, 50.0), 100);
        assert_eq!(at(60_000, 10.0), 1_000);
        assert_eq!(at(60_000, -5.0), 100);
        let mut last = u64::MAX;
        for t in (70_000..=90_000).step_by(100) {
            let c = at(t, 50.0);
            assert!(c <= last);
            assert!(
                last == u64::MAX || last - c <= 20,
                "a step of {} at {t}",
                last - c
            );
            last = c;
        }
    }

    #[test]
    fn an_unknown_temperature_sells_only_the_floor() {
        let c = Conditions {
            cores_mcores: 2_000,
            temperature: None,
            headroom: None,
        };
        assert_eq!(Curve::default().capacity(&c), 100);
    }
}
