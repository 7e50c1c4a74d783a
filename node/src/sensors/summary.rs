//! The host summary the mesh gossips: hottest relevant temperature with its
//! critical limit, power draw, power cap and headroom (cap − draw), each with
//! where it came from.
//!
//! Rules (docs/operations.md repeats them for operators):
//! - *Hottest* is the relevant channel closest to its critical limit (ties:
//!   the hotter one), so an NVMe at 70/80 °C outranks a CPU at 75/100 °C. A
//!   channel without `_crit` uses `sensors.default_critical_celsius`. k10temp
//!   `Tctl` counts only when its chip has no `Tdie`/`Tccd*`.
//! - *Draw* is a whole-system power meter (ACPI `power_meter`) when there is
//!   one, else the sum of RAPL packages (or `psys`). Other hwmon power channels
//!   (GPUs, VRMs) are shown but are parts of the host, not its total.
//! - *Cap* follows `power.cap_sources`: hwmon cap, RAPL limit, config budget.

use super::{emulated, HwmonReadings, RaplReading, TempReading, TempRole};
use crate::sensors::config::{CapSource, PowerConfig};
use maxwell_gossip::{MicroWatts, MilliCelsius};
use serde::{Deserialize, Serialize};

/// Where the hottest temperature's limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    /// The channel's own `tempN_crit`.
    Sensor,
    /// `sensors.default_critical_celsius`.
    Default,
}

/// The hottest relevant temperature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hottest {
    pub millicelsius: MilliCelsius,
    pub critical_millicelsius: MilliCelsius,
    pub critical_source: LimitSource,
    pub chip: String,
    pub sensor: String,
    pub label: Option<String>,
    /// Set when the channel has failed: the value is held (`sensors::held`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_for_ms: Option<u64>,
}

/// A power figure and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sourced {
    pub microwatts: MicroWatts,
    /// E.g. `hwmon:power_meter`, `rapl:package`, `config:power.budget_w`.
    pub source: String,
}

/// What the mesh gossips about this host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Summary {
    pub hottest: Option<Hottest>,
    pub power_draw: Option<Sourced>,
    pub power_cap: Option<Sourced>,
    /// Cap − draw; negative when over the cap; absent when either is unknown.
    pub headroom_microwatts: Option<MicroWatts>,
}

/// Derives the summary from one period's readings.
pub fn summarize(
    hwmon: &HwmonReadings,
    rapl: &[RaplReading],
    power: &PowerConfig,
    default_critical: MilliCelsius,
    exclude_chips: &[String],
) -> Summary {
    let hottest = hottest(&hwmon.temperatures, default_critical, exclude_chips);
    let meters: Vec<_> = hwmon
        .power
        .iter()
        .filter(|p| is_system_meter(&p.chip) && !exclude_chips.contains(&p.chip))
        .collect();
    let meter_draw = sum(meters.iter().map(|p| p.draw()));
    let packages: Vec<_> = {
        let psys: Vec<_> = rapl.iter().filter(|z| z.name == "psys").collect();
        if psys.is_empty() {
            rapl.iter()
                .filter(|z| z.name.starts_with("package"))
                .collect()
        } else {
            psys
        }
    };
    let rapl_kind =
        packages.first().map_or(
            "package",
            |z| if z.name == "psys" { "psys" } else { "package" },
        );
    let power_draw = match meter_draw {
        Some(w) => Some(sourced(w, format!("hwmon:{}", meters[0].chip))),
        None => sum(packages.iter().map(|z| z.power_microwatts))
            .map(|w| sourced(w, format!("rapl:{rapl_kind}"))),
    };
    let power_cap = power.cap_sources.iter().find_map(|s| match s {
        CapSource::Hwmon => sum(meters.iter().map(|p| p.cap_microwatts))
            .map(|w| sourced(w, format!("hwmon:{}", meters[0].chip))),
        CapSource::Rapl => sum(packages.iter().map(|z| z.limit_microwatts))
            .map(|w| sourced(w, format!("rapl:{rapl_kind}"))),
        CapSource::Config => power
            .budget
            .map(|w| sourced(w, "config:power.budget_w".into())),
    });
    let headroom_microwatts = match (&power_cap, &power_draw) {
        (Some(cap), Some(draw)) => Some(MicroWatts(cap.microwatts.0 - draw.microwatts.0)),
        _ => None,
    };
    Summary {
        hottest,
        power_draw,
        power_cap,
        headroom_microwatts,
    }
}

fn is_system_meter(chip: &str) -> bool {
    chip == "power_meter" || chip == emulated::CHIP
}

/// Sum of all values, or `None` if there are none or any is missing (a
/// partial sum would under-report draw, the unsafe direction).
fn sum(values: impl Iterator<Item = Option<MicroWatts>>) -> Option<MicroWatts> {
    let mut total = None;
    for v in values {
        let v = v?;
        total = Some(MicroWatts(total.map_or(0, |t: MicroWatts| t.0) + v.0));
    }
    total
}

fn sourced(microwatts: MicroWatts, source: String) -> Sourced {
    Sourced { microwatts, source }
}

fn hottest(temps: &[TempReading], default: MilliCelsius, exclude: &[String]) -> Option<Hottest> {
    let relevant = temps.iter().filter(|t| {
        if exclude.contains(&t.chip) {
            return false;
        }
        // Tctl is a fan-control value, sometimes offset by +10..27 °C: use it
        // only when its chip offers nothing physical.
        t.role != TempRole::Control
            || !temps
                .iter()
                .any(|o| o.device == t.device && o.role == TempRole::Die)
    });
    relevant
        .map(|t| {
            let (crit, source) = match t.crit_millicelsius {
                Some(c) => (c, LimitSource::Sensor),
                None => (default, LimitSource::Default),
            };
            (t, crit, source)
        })
        .min_by_key(|(t, crit, _)| (crit.0 - t.input_millicelsius.0, -t.input_millicelsius.0))
        .map(|(t, crit, source)| Hottest {
            millicelsius: t.input_millicelsius,
            critical_millicelsius: crit,
            critical_source: source,
            chip: t.chip.clone(),
            sensor: t.sensor.clone(),
            label: t.label.clone(),
            held_for_ms: t.held_for_ms,
        })
}
