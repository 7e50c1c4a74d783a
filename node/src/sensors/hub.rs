//! The sensor hub: picks the source once at start, then reads everything each
//! period into a [`Snapshot`]. Time comes in as parameters.

use super::emulated::EmulatedHost;
use super::summary::summarize;
use super::{hwmon, rapl::RaplMeter, CpuLoad, HwmonReadings, Problem, SensorSource, Snapshot};
use crate::sensors::config::{EmulatedParams, PowerConfig, SensorConfig, SensorMode};
use std::time::Duration;

/// Errors choosing a sensor source.
#[derive(Debug, thiserror::Error)]
pub enum SensorError {
    /// `source = "libsensors"` in a binary built without the feature.
    #[error("sensors.source = \"libsensors\" needs a build with `--features libsensors`")]
    LibsensorsNotBuilt,
    /// libsensors is built in but could not start.
    #[error("{0}")]
    Libsensors(String),
    /// sysinfo cannot read CPU load on this platform.
    #[error("cannot read CPU load: {0}")]
    Sysinfo(String),
}

/// Reads all sensors of one host.
#[derive(Debug)]
pub struct SensorHub {
    source: SensorSource,
    sensors: SensorConfig,
    power: PowerConfig,
    rapl: RaplMeter,
    emulated: Option<EmulatedHost>,
    #[cfg(feature = "libsensors")]
    lib: Option<super::libsensors::LibSensors>,
    system: sysinfo::System,
    last_step: Option<Duration>,
    held: super::held::HeldChannels,
}

impl SensorHub {
    /// Chooses the source: `auto` uses sysfs when it finds any hwmon channel
    /// or RAPL zone, else the emulated model (and says so).
    pub fn new(
        sensors: &SensorConfig,
        power: &PowerConfig,
        emulated: EmulatedParams,
    ) -> Result<Self, SensorError> {
        let sensors = sensors.clone();
        let mut rapl = RaplMeter::new(&sensors.powercap_root);
        let source = match sensors.mode {
            SensorMode::Sysfs => SensorSource::Sysfs,
            SensorMode::Emulated => SensorSource::Emulated,
            SensorMode::Libsensors => SensorSource::Libsensors,
            SensorMode::Auto => {
                let mut scratch = Vec::new();
                let found = !hwmon::read_tree(&sensors.hwmon_root, &mut scratch).is_empty()
                    || !rapl.read(Duration::ZERO, &mut scratch).is_empty();
                if found {
                    SensorSource::Sysfs
                } else {
                    tracing::warn!(
                        hwmon_root = %sensors.hwmon_root.display(),
                        powercap_root = %sensors.powercap_root.display(),
                        "no hwmon or RAPL sensors found: using the EMULATED host model \
                         (readings are not hardware measurements)"
                    );
                    SensorSource::Emulated
                }
            }
        };
        #[cfg(feature = "libsensors")]
        let lib = match source {
            SensorSource::Libsensors => {
                Some(super::libsensors::LibSensors::new().map_err(SensorError::Libsensors)?)
            }
            _ => None,
        };
        #[cfg(not(feature = "libsensors"))]
        if source == SensorSource::Libsensors {
            return Err(SensorError::LibsensorsNotBuilt);
        }
        let emulated = (source == SensorSource::Emulated).then(|| EmulatedHost::new(emulated));
        Ok(Self {
            source,
            sensors,
            power: power.clone(),
            rapl,
            emulated,
            #[cfg(feature = "libsensors")]
            lib,
            system: sysinfo::System::new().map_err(|e| SensorError::Sysinfo(e.to_string()))?,
            last_step: None,
            held: Default::default(),
        })
    }

    /// The source in use.
    pub fn source(&self) -> SensorSource {
        self.source
    }

    /// Replaces the emulated model's parameters; false (and no effect) on real sensors.
    pub fn set_emulated_params(&mut self, params: EmulatedParams) -> bool {
        match &mut self.emulated {
            Some(host) => {
                host.set_params(params);
                true
            }
            None => false,
        }
    }

    /// Replaces the chips left out of the summary (SIGHUP).
    pub fn set_exclude_chips(&mut self, chips: Vec<String>) {
        self.sensors.exclude_chips = chips;
    }

    /// Reads everything. `now` is monotonic time since the agent started;
    /// `wall_ms` is Unix time in milliseconds, stamped on the snapshot.
    pub fn read(&mut self, now: Duration, wall_ms: u64) -> Snapshot {
        let mut problems: Vec<Problem> = Vec::new();
        let cpu = self.cpu_load();
        let dt = self
            .last_step
            .map_or(Duration::ZERO, |t| now.saturating_sub(t));
        self.last_step = Some(now);
        let (mut hwmon, rapl) = match self.source {
            SensorSource::Emulated => {
                let host = self
                    .emulated
                    .get_or_insert_with(|| EmulatedHost::new(EmulatedParams::default()));
                host.step(dt, cpu.utilisation);
                (host.readings(), Vec::new())
            }
            SensorSource::Sysfs => (
                hwmon::read_tree(&self.sensors.hwmon_root, &mut problems),
                self.rapl.read(now, &mut problems),
            ),
            SensorSource::Libsensors => (
                self.read_libsensors(&mut problems),
                self.rapl.read(now, &mut problems),
            ),
        };
        self.held.apply(
            &mut hwmon.temperatures,
            now,
            self.sensors.failed_channel_rise,
            self.sensors.default_critical,
            &self.sensors.exclude_chips,
        );
        self.held.apply_power(
            &mut hwmon.power,
            &mut problems,
            now,
            self.sensors.failed_channel_rise,
            &self.sensors.exclude_chips,
        );
        let summary = summarize(
            &hwmon,
            &rapl,
            &self.power,
            self.sensors.default_critical,
            &self.sensors.exclude_chips,
        );
        problems.sort();
        Snapshot {
            taken_at_unix_ms: wall_ms,
            source: self.source,
            emulated: self.source == SensorSource::Emulated,
            hwmon,
            rapl,
            cpu,
            problems,
            summary,
        }
    }

    #[cfg(feature = "libsensors")]
    fn read_libsensors(&mut self, problems: &mut Vec<Problem>) -> HwmonReadings {
        self.lib
            .as_ref()
            .map(|l| l.read(problems))
            .unwrap_or_default()
    }

    #[cfg(not(feature = "libsensors"))]
    fn read_libsensors(&mut self, _problems: &mut Vec<Problem>) -> HwmonReadings {
        HwmonReadings::default()
    }

    fn cpu_load(&mut self) -> CpuLoad {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        CpuLoad {
            utilisation: (f64::from(self.system.global_cpu_usage()) / 100.0).clamp(0.0, 1.0),
            cpus: self.system.cpus().len(),
            memory_total_bytes: self.system.total_memory(),
            memory_used_bytes: self.system.used_memory(),
        }
    }
}
