//! The emulated host for machines without sensors (laptops, CI, containers):
//! a lumped RC thermal model driven by the host's real CPU utilisation.
//!
//! `P = P_idle + (P_peak − P_idle)·u` and `C·dT/dt = P − (T − T_inlet)/R`,
//! integrated exactly over each step (so any step length is stable):
//! `T ← T_ss + (T − T_ss)·e^(−dt/τ)` with `T_ss = T_inlet + P·R`, `τ = R·C`.
//! Every reading it produces is marked emulated.

use super::{HwmonReadings, PowerReading, TempReading, TempRole};
use crate::sensors::config::EmulatedParams;
use maxwell_gossip::{MicroWatts, MilliCelsius};
use std::time::Duration;

/// Chip name of the emulated readings, so no one mistakes them for hardware.
pub const CHIP: &str = "maxwell_emulated";

/// The model's state: its parameters and the die temperature.
#[derive(Debug, Clone)]
pub struct EmulatedHost {
    params: EmulatedParams,
    temp_c: f64,
    power_w: f64,
}

impl EmulatedHost {
    /// Starts at the idle steady state.
    pub fn new(params: EmulatedParams) -> Self {
        let power_w = params.idle.as_watts();
        Self {
            temp_c: params.inlet.as_celsius() + power_w * params.resistance_k_per_w,
            power_w,
            params,
        }
    }

    /// Changes the parameters (e.g. a new inlet temperature), keeping the state.
    pub fn set_params(&mut self, params: EmulatedParams) {
        self.params = params;
    }

    /// Advances the model by `dt` at host utilisation `u` (clamped to [0, 1],
    /// the configured extra load added).
    pub fn step(&mut self, dt: Duration, u: f64) {
        let p = &self.params;
        let u = (u + p.extra_load).clamp(0.0, 1.0);
        let (idle, peak) = (p.idle.as_watts(), p.peak.as_watts());
        self.power_w = idle + (peak - idle) * u;
        let steady = p.inlet.as_celsius() + self.power_w * p.resistance_k_per_w;
        let decay = (-dt.as_secs_f64() / p.time_constant.as_secs_f64()).exp();
        self.temp_c = steady + (self.temp_c - steady) * decay;
    }

    /// Die temperature now.
    pub fn temperature(&self) -> MilliCelsius {
        MilliCelsius::from_celsius(self.temp_c)
    }

    /// Power draw now.
    pub fn power(&self) -> MicroWatts {
        MicroWatts::from_watts(self.power_w)
    }

    /// The model's state as hwmon-shaped readings.
    pub fn readings(&self) -> HwmonReadings {
        HwmonReadings {
            temperatures: vec![TempReading {
                chip: CHIP.into(),
                device: "emulated".into(),
                sensor: "temp1".into(),
                label: Some("Package (emulated)".into()),
                role: TempRole::Package,
                input_millicelsius: self.temperature(),
                max_millicelsius: None,
                crit_millicelsius: Some(self.params.critical),
                crit_hyst_millicelsius: None,
                held_for_ms: None,
            }],
            power: vec![PowerReading {
                chip: CHIP.into(),
                device: "emulated".into(),
                sensor: "power1".into(),
                label: Some("System (emulated)".into()),
                input_microwatts: None,
                average_microwatts: Some(self.power()),
                cap_microwatts: Some(self.params.cap),
                held_for_ms: None,
            }],
            energy: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> EmulatedParams {
        EmulatedParams::default()
    }

    #[test]
    fn starts_at_idle_steady_state() {
        let h = EmulatedHost::new(params());
        // 25 °C + 100 W × 0.17 K/W = 42 °C.
        assert_eq!(h.temperature(), MilliCelsius(42_000));
        assert_eq!(h.power(), MicroWatts(100_000_000));
    }

    #[test]
    fn power_is_linear_in_utilisation() {
        let mut h = EmulatedHost::new(params());
        h.step(Duration::from_secs(1), 0.5);
        assert_eq!(h.power(), MicroWatts(225_000_000));
        h.step(Duration::from_secs(1), 7.0);
        assert_eq!(h.power(), MicroWatts(350_000_000), "clamped to peak");
    }

    #[test]
    fn one_time_constant_covers_63_percent_of_a_step() {
        let mut h = EmulatedHost::new(params());
        h.step(Duration::from_secs(30), 1.0);
        // Steady state at peak: 25 + 350 × 0.17 = 84.5 °C; from 42 °C.
        let expected = 84.5 + (42.0 - 84.5) * (-1.0f64).exp();
        assert!((h.temperature().as_celsius() - expected).abs() < 0.001);
        for _ in 0..100 {
            h.step(Duration::from_secs(10), 1.0);
        }
        assert_eq!(h.temperature(), MilliCelsius(84_500));
    }

    #[test]
    fn large_steps_never_overshoot() {
        let mut h = EmulatedHost::new(params());
        h.step(Duration::from_secs(100_000), 1.0);
        assert_eq!(h.temperature(), MilliCelsius(84_500));
        h.step(Duration::from_secs(100_000), 0.0);
        assert_eq!(h.temperature(), MilliCelsius(42_000));
    }

    #[test]
    fn extra_load_and_inlet_raise_temperature() {
        let mut p = params();
        p.extra_load = 1.0;
        p.inlet = MilliCelsius(35_000);
        let mut h = EmulatedHost::new(params());
        h.set_params(p);
        h.step(Duration::from_secs(1_000_000), 0.0);
        assert_eq!(h.temperature(), MilliCelsius(94_500));
        let r = h.readings();
        assert_eq!(r.temperatures[0].chip, CHIP);
        assert_eq!(
            r.temperatures[0].crit_millicelsius,
            Some(MilliCelsius(95_000))
        );
        assert_eq!(r.power[0].cap_microwatts, Some(MicroWatts(320_000_000)));
    }
}
