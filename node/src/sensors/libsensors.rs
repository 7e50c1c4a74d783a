//! hwmon through libsensors (the `lm-sensors` crate), behind the `libsensors`
//! feature. libsensors applies `/etc/sensors3.conf` (labels, ignores,
//! compute lines), which some operators rely on. It always reads the system's
//! own sysfs, so fixture trees exercise the direct reader instead.

use super::hwmon::classify;
use super::{EnergyReading, HwmonReadings, PowerReading, Problem, ProblemKind, TempReading};
use maxwell_gossip::{MicroJoules, MicroWatts, MilliCelsius};

type Reply = (HwmonReadings, Vec<Problem>);

/// libsensors on a thread of its own: the library keeps process-global state
/// and its handle is not `Send`, so every call goes through that thread.
#[derive(Debug)]
pub struct LibSensors {
    requests: std::sync::mpsc::Sender<std::sync::mpsc::Sender<Reply>>,
    chips: usize,
}

impl LibSensors {
    /// Initialises libsensors with the system configuration.
    pub fn new() -> Result<Self, String> {
        let (req_tx, req_rx) = std::sync::mpsc::channel::<std::sync::mpsc::Sender<Reply>>();
        let (init_tx, init_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("libsensors".into())
            .spawn(move || {
                let reader = match lm_sensors::Initializer::default().initialize() {
                    Ok(inner) => Reader { inner },
                    Err(e) => {
                        let _ = init_tx.send(Err(format!("libsensors failed to initialise: {e}")));
                        return;
                    }
                };
                let _ = init_tx.send(Ok(reader.inner.chip_iter(None).count()));
                // Ends when the hub (and its sender) is dropped.
                while let Ok(reply) = req_rx.recv() {
                    let mut problems = Vec::new();
                    let readings = reader.read(&mut problems);
                    let _ = reply.send((readings, problems));
                }
            })
            .map_err(|e| format!("cannot start the libsensors thread: {e}"))?;
        let chips = init_rx
            .recv()
            .map_err(|_| "libsensors thread died during start".to_string())??;
        Ok(Self {
            requests: req_tx,
            chips,
        })
    }

    /// Number of chips libsensors saw at start.
    pub fn chip_count(&self) -> usize {
        self.chips
    }

    /// Reads every chip through the libsensors thread.
    pub fn read(&self, problems: &mut Vec<Problem>) -> HwmonReadings {
        let (tx, rx) = std::sync::mpsc::channel();
        let reply = self.requests.send(tx).ok().and_then(|()| rx.recv().ok());
        match reply {
            Some((readings, mut found)) => {
                problems.append(&mut found);
                readings
            }
            None => {
                problems.push(Problem {
                    path: "libsensors".into(),
                    kind: ProblemKind::Unreadable,
                    detail: "the libsensors thread is gone".into(),
                });
                HwmonReadings::default()
            }
        }
    }
}

/// The handle, owned by the libsensors thread.
struct Reader {
    inner: lm_sensors::LMSensors,
}

impl Reader {
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
                        held_for_ms: None,
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
                        held_for_ms: None,
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
