//! Physical units shared by every crate: integers in the kernel's own scales,
//! so a value read from sysfs is carried without rounding and can never be
//! confused with another unit.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The most credit, in milli-credits, that one order may bid or bring, or
/// one top-up add (10^12 credits): so that sums never overflow, and so that
/// a guest spec is refused before anything is started, not after.
pub const MAX_CREDIT_MILLI: u64 = 1_000_000_000_000_000;

/// A temperature in thousandths of a degree Celsius (hwmon's `temp*_input` scale).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct MilliCelsius(pub i64);

/// A power in microwatts (hwmon's `power*_*` scale). Signed because a
/// headroom (cap minus draw) is negative when a host draws over its cap.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct MicroWatts(pub i64);

/// An energy counter reading in microjoules (hwmon `energy*_input`, RAPL `energy_uj`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct MicroJoules(pub u64);

impl MilliCelsius {
    /// Converts from degrees Celsius, rounding to the nearest millidegree.
    pub fn from_celsius(c: f64) -> Self {
        Self((c * 1000.0).round() as i64)
    }
    /// Degrees Celsius, for display and arithmetic in models.
    pub fn as_celsius(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl MicroWatts {
    /// Converts from watts, rounding to the nearest microwatt.
    pub fn from_watts(w: f64) -> Self {
        Self((w * 1_000_000.0).round() as i64)
    }
    /// Watts, for display and arithmetic in models.
    pub fn as_watts(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl MicroJoules {
    /// Joules, for display.
    pub fn as_joules(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl fmt::Display for MilliCelsius {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} °C", self.as_celsius())
    }
}

impl fmt::Display for MicroWatts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1} W", self.as_watts())
    }
}

impl fmt::Display for MicroJoules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} J", self.as_joules())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_trip() {
        assert_eq!(MilliCelsius::from_celsius(45.5), MilliCelsius(45_500));
        assert_eq!(MilliCelsius(-12_250).as_celsius(), -12.25);
        assert_eq!(MicroWatts::from_watts(12.5), MicroWatts(12_500_000));
        assert_eq!(MicroWatts(-3_000_000).as_watts(), -3.0);
        assert_eq!(MicroJoules(1_500_000).as_joules(), 1.5);
        assert_eq!(MilliCelsius(45_500).to_string(), "45.5 °C");
        assert_eq!(MicroWatts(12_345_678).to_string(), "12.3 W");
    }
}
