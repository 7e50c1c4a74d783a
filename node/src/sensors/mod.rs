//! Sensor readings: hwmon and RAPL through sysfs, libsensors (feature
//! `libsensors`), CPU load through `sysinfo`, and an emulated RC model for
//! hosts without sensors. [`hub::SensorHub`] reads them all each period and
//! derives the [`Summary`] the mesh gossips.
//!
//! Contract: reading never fails as a whole. A channel that is missing,
//! faulty, unreadable or holds garbage is skipped and listed as a [`Problem`].

pub mod config;
pub mod emulated;
pub mod held;
pub mod hub;
pub mod hwmon;
#[cfg(feature = "libsensors")]
pub mod libsensors;
pub mod rapl;
pub mod reader;
pub mod summary;

use maxwell_gossip::{MicroJoules, MicroWatts, MilliCelsius};
use serde::{Deserialize, Serialize};

/// Which reader produced a snapshot: the gossiped [`SensorSource`], one enum.
pub use maxwell_gossip::SensorSource;

/// What a temperature channel measures, which decides whether it counts
/// towards the host's hottest temperature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TempRole {
    /// A die or CCD sensor (k10temp `Tdie`, `Tccd*`).
    Die,
    /// A CPU package (coretemp `Package id N`).
    Package,
    /// One CPU core (coretemp `Core N`).
    Core,
    /// A control value, not a physical temperature (k10temp `Tctl`); counts only
    /// when its chip has nothing better.
    Control,
    /// A drive (nvme `Composite`, `Sensor N`).
    Drive,
    /// Anything else, labelled or not.
    Other,
}

/// One temperature channel (`tempN_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TempReading {
    /// The chip's `name` (k10temp, coretemp, nvme, ...).
    pub chip: String,
    /// The hwmon device, e.g. `hwmon2`.
    pub device: String,
    /// The channel, e.g. `temp1`.
    pub sensor: String,
    /// `tempN_label` as the kernel gives it.
    pub label: Option<String>,
    pub role: TempRole,
    pub input_millicelsius: MilliCelsius,
    pub max_millicelsius: Option<MilliCelsius>,
    pub crit_millicelsius: Option<MilliCelsius>,
    pub crit_hyst_millicelsius: Option<MilliCelsius>,
    /// Set when the channel failed this long ago: the value is then the held
    /// estimate of [`held::HeldChannels`], never a measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_for_ms: Option<u64>,
}

/// One power channel (`powerN_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PowerReading {
    pub chip: String,
    pub device: String,
    pub sensor: String,
    pub label: Option<String>,
    pub input_microwatts: Option<MicroWatts>,
    pub average_microwatts: Option<MicroWatts>,
    pub cap_microwatts: Option<MicroWatts>,
    /// Set when the channel's draw failed this long ago: the draw is then
    /// the held estimate of [`held::HeldChannels`], never a measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_for_ms: Option<u64>,
}

impl PowerReading {
    /// The draw this channel reports: the average when there is one (smoother), else the input.
    pub fn draw(&self) -> Option<MicroWatts> {
        self.average_microwatts.or(self.input_microwatts)
    }
}

/// One energy counter (`energyN_input`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReading {
    pub chip: String,
    pub device: String,
    pub sensor: String,
    pub label: Option<String>,
    pub input_microjoules: MicroJoules,
}

/// One RAPL powercap zone (`intel-rapl:N`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaplReading {
    /// The zone directory, e.g. `intel-rapl:0`.
    pub zone: String,
    /// Its `name`, e.g. `package-0`, `psys`, `dram`.
    pub name: String,
    pub energy_microjoules: MicroJoules,
    /// Mean power since the previous reading; absent on the first reading
    /// and after a counter reset.
    pub power_microwatts: Option<MicroWatts>,
    /// `constraint_0_power_limit_uw`.
    pub limit_microwatts: Option<MicroWatts>,
}

/// Host CPU and memory load.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct CpuLoad {
    /// Busy fraction of all CPUs, in [0, 1].
    pub utilisation: f64,
    pub cpus: usize,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
}

/// Why a channel or file was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A file a channel needs is absent.
    Missing,
    /// Reading failed (I/O error, EIO from the driver, a directory).
    Unreadable,
    /// Reading was refused (RAPL `energy_uj` is root-only since Linux 5.10).
    PermissionDenied,
    /// The file holds something that is not a number, or an implausible one.
    Garbage,
    /// The driver flags the channel faulty (`tempN_fault` = 1).
    Faulty,
    /// A counter went backwards without a known wrap range.
    CounterReset,
}

impl ProblemKind {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Unreadable => "unreadable",
            Self::PermissionDenied => "permission_denied",
            Self::Garbage => "garbage",
            Self::Faulty => "faulty",
            Self::CounterReset => "counter_reset",
        }
    }
}

/// A skipped channel or file, with the path and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub path: String,
    pub kind: ProblemKind,
    pub detail: String,
}

/// Everything one read of the hwmon tree found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HwmonReadings {
    pub temperatures: Vec<TempReading>,
    pub power: Vec<PowerReading>,
    pub energy: Vec<EnergyReading>,
}

impl HwmonReadings {
    /// True when no channel at all was found.
    pub fn is_empty(&self) -> bool {
        self.temperatures.is_empty() && self.power.is_empty() && self.energy.is_empty()
    }
}

/// One period's readings, summary included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Wall-clock time of the reading, Unix milliseconds.
    pub taken_at_unix_ms: u64,
    pub source: SensorSource,
    /// True when the values come from the emulated model, not hardware.
    pub emulated: bool,
    pub hwmon: HwmonReadings,
    pub rapl: Vec<RaplReading>,
    pub cpu: CpuLoad,
    pub problems: Vec<Problem>,
    pub summary: summary::Summary,
}

impl Snapshot {
    /// What the node core reads of this snapshot.
    pub fn reading(&self) -> maxwell_core::Reading {
        let s = &self.summary;
        maxwell_core::Reading {
            hottest: s
                .hottest
                .as_ref()
                .map(|h| (h.millicelsius, h.critical_millicelsius)),
            power_draw: s.power_draw.as_ref().map(|p| p.microwatts),
            power_cap: s.power_cap.as_ref().map(|p| p.microwatts),
            headroom: s.headroom_microwatts,
            source: self.source,
        }
    }
}
