//! hwmon through libsensors (the `lm-sensors` crate), behind the `libsensors`
//! feature. libsensors applies `/etc/sensors3.conf` (labels, ignores,
//! compute lines), which some operators rely on. It always reads the system's
//! own sysfs, so fixture trees exercise the direct reader instead.

use super::hwmon::classify;
use super::{EnergyReading, HwmonReadings, PowerReading, Problem, ProblemKind, TempReading};
use maxwell_gossip::{MicroJoules, MicroWatts, MilliCelsius};

/// An initialised libsensors.
pub struct LibSensors {
    inner: lm_sensors::LMSensors,
}

impl std::fmt::Debug for LibSensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibSensors").finish_non_exhaustive()
    }
}

impl LibSensors {
    /// Initialises libsensors with the system configuration.
    pub fn new() -> Result<Self, String> {
        lm_sensors::Initializer::default()
            .initialize()
            .map(|inner| Self { inner })
            .map_err(|e| format!("libsensors failed to initialise: {e}"))
    }

    /// Number of chips libsensors sees.
    pub fn chip_count(&self) -> usize {
        self.inner.chip_iter(None).count()
    }

    /// Reads every chip, in the same shape as the sysfs reader.
    pub fn read(&self, problems: &mut Vec<Problem>) -> HwmonReadings {
        let mut out = HwmonReadings::default();
        for chip in self.inner.chip_iter(None) {
            let name = chip
                .prefix()
                .and_then(Result::ok)
                .unwrap_or("unknown")
                .to_string();
            let device = chip
                .path()
                .and_then(|p| p.file_name())
                .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
            for feature in chip.feature_iter() {
                let Some(Ok(sensor)) = feature.name() else {
                    continue;
                };
                let label = feature.label().ok().filter(|l| l != sensor);
                let value = |attr: &str| -> Option<f64> {
                    let sub = feature.sub_feature_iter().find(|s| {
                        s.name().and_then(Result::ok) == Some(&format!("{sensor}_{attr}"))
                    })?;
                    sub.raw_value().ok().filter(|v| v.is_finite())
                };
                let milli =
                    |attr: &str| value(attr).map(|c| MilliCelsius((c * 1e3).round() as i64));
                let micro = |attr: &str| value(attr).map(|w| MicroWatts((w * 1e6).round() as i64));
                let path = format!("{device}/{sensor}");
                if sensor.starts_with("temp") {
                    let Some(input) = milli("input") else {
                        problems.push(Problem {
                            path,
                            kind: ProblemKind::Unreadable,
                            detail: "libsensors gave no input".into(),
                        });
                        continue;
                    };
                    out.temperatures.push(TempReading {
                        role: classify(&name, label.as_deref()),
                        chip: name.clone(),
                        device: device.clone(),
                        sensor: sensor.to_string(),
                        label,
                        input_millicelsius: input,
                        max_millicelsius: milli("max"),
                        crit_millicelsius: milli("crit"),
                        crit_hyst_millicelsius: milli("crit_hyst"),
                    });
                } else if sensor.starts_with("power") {
                    out.power.push(PowerReading {
                        chip: name.clone(),
                        device: device.clone(),
                        sensor: sensor.to_string(),
                        label,
                        input_microwatts: micro("input"),
                        average_microwatts: micro("average"),
                        cap_microwatts: micro("cap"),
                    });
                } else if sensor.starts_with("energy") {
                    if let Some(j) = value("input") {
                        out.energy.push(EnergyReading {
                            chip: name.clone(),
                            device: device.clone(),
                            sensor: sensor.to_string(),
                            label,
                            input_microjoules: MicroJoules((j * 1e6).round().max(0.0) as u64),
                        });
                    }
                }
            }
        }
        out
    }
}
