//! The sensors' config sections, owned here: `[sensors]` (where and how
//! often to read), `[power]` (where the cap comes from) and `[emulated]`
//! (the model of a host without sensors). Each default is declared once, in
//! its section's `validate`.

use crate::check::{celsius, invalid, opt_watts, watts, ConfigError};
use maxwell_types::{MicroWatts, MilliCelsius};
use serde::Deserialize;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::time::Duration;

/// Where sensor readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorMode {
    /// Real sensors (sysfs) when any exist, else the emulated model.
    Auto,
    /// hwmon and RAPL through sysfs only.
    Sysfs,
    /// libsensors (needs the `libsensors` build feature) plus RAPL through sysfs.
    Libsensors,
    /// The emulated RC model driven by this host's real CPU utilisation.
    Emulated,
}

/// A place a power cap may come from, in the order the operator prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CapSource {
    /// A hwmon `power*_cap` (for example an ACPI power meter's cap).
    Hwmon,
    /// RAPL `constraint_0_power_limit_uw` summed over packages.
    Rapl,
    /// The configured `power.budget_w`.
    Config,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSensors {
    pub source: Option<SensorMode>,
    pub interval_ms: Option<u64>,
    pub hwmon_root: Option<PathBuf>,
    pub powercap_root: Option<PathBuf>,
    pub default_critical_celsius: Option<f64>,
    pub exclude_chips: Option<Vec<String>>,
    pub failed_channel_rise_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPower {
    pub budget_w: Option<f64>,
    pub cap_sources: Option<Vec<CapSource>>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmulated {
    pub idle_w: Option<f64>,
    pub peak_w: Option<f64>,
    pub cap_w: Option<f64>,
    pub inlet_celsius: Option<f64>,
    pub thermal_resistance_c_per_w: Option<f64>,
    pub time_constant_s: Option<f64>,
    pub critical_celsius: Option<f64>,
    pub extra_load: Option<f64>,
}

/// Validated sensor settings.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    pub mode: SensorMode,
    pub interval: Duration,
    pub hwmon_root: PathBuf,
    pub powercap_root: PathBuf,
    /// Limit used for a temperature channel that exposes no `_crit`.
    pub default_critical: MilliCelsius,
    /// hwmon chip names (the `name` file) left out of the summary.
    pub exclude_chips: Vec<String>,
    /// Time constant of the rise of a failed channel's held value toward its
    /// critical limit (docs/operations.md, "Failed sensors").
    pub failed_channel_rise: Duration,
}

/// Validated power settings.
#[derive(Debug, Clone)]
pub struct PowerConfig {
    pub budget: Option<MicroWatts>,
    /// Non-empty, without repeats.
    pub cap_sources: Vec<CapSource>,
}

/// Parameters of the emulated host (a lumped RC thermal model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmulatedParams {
    pub idle: MicroWatts,
    pub peak: MicroWatts,
    pub cap: MicroWatts,
    pub inlet: MilliCelsius,
    /// Kelvin per watt from die to inlet air.
    pub resistance_k_per_w: f64,
    /// R·C, in seconds.
    pub time_constant: Duration,
    pub critical: MilliCelsius,
    /// Synthetic utilisation added to the host's real one, in [0, 1].
    pub extra_load: f64,
}

impl Default for EmulatedParams {
    /// A 1U two-socket server: ~100 W idle, ~350 W peak, 25 °C inlet,
    /// about 85 °C at sustained peak, time constant 30 s, critical 95 °C.
    fn default() -> Self {
        Self {
            idle: MicroWatts::from_watts(100.0),
            peak: MicroWatts::from_watts(350.0),
            cap: MicroWatts::from_watts(320.0),
            inlet: MilliCelsius::from_celsius(25.0),
            resistance_k_per_w: 0.17,
            time_constant: Duration::from_secs(30),
            critical: MilliCelsius::from_celsius(95.0),
            extra_load: 0.0,
        }
    }
}

impl RawSensors {
    /// Validates the section.
    pub fn validate(self) -> Result<SensorConfig, ConfigError> {
        let interval_ms = self.interval_ms.unwrap_or(100);
        let interval_ms = NonZeroU64::new(interval_ms)
            .filter(|ms| (100..=3_600_000).contains(&ms.get()))
            .ok_or_else(|| {
                invalid(
                    "sensors.interval_ms",
                    format!("{interval_ms} is outside 100 to 3600000"),
                )
            })?;
        let crit = celsius(
            "sensors.default_critical_celsius",
            self.default_critical_celsius.unwrap_or(95.0),
            20.0,
            150.0,
        )?;
        Ok(SensorConfig {
            mode: self.source.unwrap_or(SensorMode::Auto),
            interval: Duration::from_millis(interval_ms.get()),
            hwmon_root: self.hwmon_root.unwrap_or_else(|| "/sys/class/hwmon".into()),
            powercap_root: self
                .powercap_root
                .unwrap_or_else(|| "/sys/class/powercap".into()),
            default_critical: crit,
            exclude_chips: self.exclude_chips.unwrap_or_default(),
            failed_channel_rise: {
                let s = self.failed_channel_rise_s.unwrap_or(60.0);
                if !(s.is_finite() && (1.0..=86_400.0).contains(&s)) {
                    return Err(invalid(
                        "sensors.failed_channel_rise_s",
                        format!("{s} is outside 1 to 86400"),
                    ));
                }
                Duration::from_secs_f64(s)
            },
        })
    }
}

impl RawPower {
    /// Validates the section.
    pub fn validate(self) -> Result<PowerConfig, ConfigError> {
        let budget = self
            .budget_w
            .map(|w| watts("power.budget_w", w, 1.0, 1_000_000.0))
            .transpose()?;
        let sources = self
            .cap_sources
            .unwrap_or_else(|| vec![CapSource::Hwmon, CapSource::Rapl, CapSource::Config]);
        if sources.is_empty() {
            return Err(invalid(
                "power.cap_sources",
                "must name at least one source".into(),
            ));
        }
        for (i, s) in sources.iter().enumerate() {
            if sources[..i].contains(s) {
                return Err(invalid(
                    "power.cap_sources",
                    format!("{s:?} is listed twice"),
                ));
            }
        }
        Ok(PowerConfig {
            budget,
            cap_sources: sources,
        })
    }
}

impl RawEmulated {
    /// Validates the section.
    pub fn validate(self) -> Result<EmulatedParams, ConfigError> {
        self.validate_over(EmulatedParams::default())
    }

    /// Validates, taking absent fields from `d` (used to change a running
    /// emulated host through the API).
    pub fn validate_over(self, d: EmulatedParams) -> Result<EmulatedParams, ConfigError> {
        let idle = opt_watts("emulated.idle_w", self.idle_w, d.idle, 0.0, 100_000.0)?;
        let peak = opt_watts("emulated.peak_w", self.peak_w, d.peak, 1.0, 100_000.0)?;
        if peak <= idle {
            return Err(invalid(
                "emulated.peak_w",
                "must be greater than emulated.idle_w".into(),
            ));
        }
        let r = self
            .thermal_resistance_c_per_w
            .unwrap_or(d.resistance_k_per_w);
        if !(r.is_finite() && r > 0.0 && r <= 10.0) {
            return Err(invalid(
                "emulated.thermal_resistance_c_per_w",
                format!("{r} is outside (0, 10]"),
            ));
        }
        let tau = self
            .time_constant_s
            .unwrap_or(d.time_constant.as_secs_f64());
        if !(tau.is_finite() && (0.1..=3600.0).contains(&tau)) {
            return Err(invalid(
                "emulated.time_constant_s",
                format!("{tau} is outside 0.1 to 3600"),
            ));
        }
        let extra = self.extra_load.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&extra) {
            return Err(invalid(
                "emulated.extra_load",
                format!("{extra} is outside 0 to 1"),
            ));
        }
        Ok(EmulatedParams {
            idle,
            peak,
            cap: opt_watts("emulated.cap_w", self.cap_w, d.cap, 1.0, 100_000.0)?,
            inlet: celsius(
                "emulated.inlet_celsius",
                self.inlet_celsius.unwrap_or(d.inlet.as_celsius()),
                -20.0,
                60.0,
            )?,
            resistance_k_per_w: r,
            time_constant: Duration::from_secs_f64(tau),
            critical: celsius(
                "emulated.critical_celsius",
                self.critical_celsius.unwrap_or(d.critical.as_celsius()),
                20.0,
                150.0,
            )?,
            extra_load: extra,
        })
    }
}
