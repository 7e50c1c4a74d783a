//! RAPL through the powercap sysfs class: `/sys/class/powercap/intel-rapl:N`.
//!
//! Power is the difference of `energy_uj` between two readings over the time
//! between them, with wraparound at `max_energy_range_uj`. Since Linux 5.10
//! `energy_uj` is readable by root only (CVE-2020-8694): the meter says so
//! once and carries on without RAPL power.

use super::hwmon::{problem, read_int, read_text};
use super::{Problem, ProblemKind, RaplReading};
use maxwell_gossip::{MicroJoules, MicroWatts};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Energy and time of a zone's previous reading.
#[derive(Debug, Clone, Copy)]
struct Last {
    energy: u64,
    at: Duration,
}

/// Reads RAPL zones and turns energy counters into power. State: the previous
/// reading of each zone. Time is a parameter (a monotonic offset), not read here.
#[derive(Debug)]
pub struct RaplMeter {
    root: PathBuf,
    last: BTreeMap<String, Last>,
    warned_permission: bool,
}

impl RaplMeter {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            last: BTreeMap::new(),
            warned_permission: false,
        }
    }

    /// Reads every top-level zone at monotonic time `now`.
    pub fn read(&mut self, now: Duration, problems: &mut Vec<Problem>) -> Vec<RaplReading> {
        let mut zones: Vec<(String, PathBuf)> = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(name, _)| is_top_level_zone(name))
                .collect(),
            Err(_) => return Vec::new(),
        };
        zones.sort();
        zones
            .into_iter()
            .filter_map(|(zone, path)| self.read_zone(&zone, &path, now, problems))
            .collect()
    }

    fn read_zone(
        &mut self,
        zone: &str,
        dir: &Path,
        now: Duration,
        problems: &mut Vec<Problem>,
    ) -> Option<RaplReading> {
        let energy_path = dir.join("energy_uj");
        let energy = match read_int(&energy_path, &(0..=i64::MAX)) {
            Ok(Some(e)) => e.unsigned_abs(),
            Ok(None) => return None,
            Err(p) => {
                if p.kind == ProblemKind::PermissionDenied && !self.warned_permission {
                    self.warned_permission = true;
                    tracing::warn!(
                        path = %energy_path.display(),
                        "RAPL energy_uj is readable by root only since Linux 5.10; \
                         run the agent as root (or grant read access) for RAPL power. \
                         Continuing without it."
                    );
                }
                problems.push(p);
                return None;
            }
        };
        let name = read_text(&dir.join("name"))
            .ok()
            .flatten()
            .unwrap_or_else(|| zone.to_string());
        let range = read_int(&dir.join("max_energy_range_uj"), &(1..=i64::MAX))
            .map_err(|p| problems.push(p))
            .ok()
            .flatten()
            .map(i64::unsigned_abs);
        let limit = read_int(&dir.join("constraint_0_power_limit_uw"), &(0..=i64::MAX))
            .map_err(|p| problems.push(p))
            .ok()
            .flatten()
            .map(MicroWatts);
        let previous = self.last.insert(zone.to_string(), Last { energy, at: now });
        let power = previous.and_then(|last| match power_between(last, energy, now, range) {
            Ok(p) => p,
            Err(()) => {
                problems.push(problem(
                    &energy_path,
                    ProblemKind::CounterReset,
                    "energy counter went backwards with no max_energy_range_uj".into(),
                ));
                None
            }
        });
        Some(RaplReading {
            zone: zone.to_string(),
            name,
            energy_microjoules: MicroJoules(energy),
            power_microwatts: power,
            limit_microwatts: limit,
        })
    }
}

/// `intel-rapl:0` and `intel-rapl:1` but not sub-zones (`intel-rapl:0:0`,
/// already counted in their package) nor the `intel-rapl` control type.
fn is_top_level_zone(name: &str) -> bool {
    match name.split_once(':') {
        Some((kind, rest)) => kind.ends_with("rapl") && rest.parse::<u32>().is_ok(),
        None => false,
    }
}

/// Mean power between `last` and (`energy`, `now`). `Ok(None)` when no time
/// has passed; `Err` when the counter went backwards with no known range.
fn power_between(
    last: Last,
    energy: u64,
    now: Duration,
    range: Option<u64>,
) -> Result<Option<MicroWatts>, ()> {
    let elapsed_us = now.saturating_sub(last.at).as_micros();
    if elapsed_us == 0 {
        return Ok(None);
    }
    let delta_uj = energy_delta(last.energy, energy, range).ok_or(())?;
    // µJ / µs = W; times 10^6 for µW.
    let uw = u128::from(delta_uj) * 1_000_000 / elapsed_us;
    Ok(Some(MicroWatts(i64::try_from(uw).unwrap_or(i64::MAX))))
}

/// Energy used between two counter values; the counter wraps to 0 after `range`.
pub fn energy_delta(previous: u64, current: u64, range: Option<u64>) -> Option<u64> {
    if current >= previous {
        Some(current - previous)
    } else {
        range
            .filter(|r| *r >= previous)
            .map(|r| r - previous + current)
    }
}

#[cfg(test)]
mod tests {
    use super::super::hwmon::io_kind;
    use super::*;

    #[test]
    fn delta_without_wrap() {
        assert_eq!(energy_delta(1_000, 5_000, Some(10_000)), Some(4_000));
        assert_eq!(energy_delta(1_000, 1_000, None), Some(0));
    }

    #[test]
    fn delta_across_wraparound() {
        // 262143328850 is a real max_energy_range_uj (a Xeon package).
        let range = 262_143_328_850;
        assert_eq!(energy_delta(range - 500, 1_500, Some(range)), Some(2_000));
    }

    #[test]
    fn backwards_without_range_is_a_reset() {
        assert_eq!(energy_delta(5_000, 1_000, None), None);
        assert_eq!(
            energy_delta(5_000, 1_000, Some(4_000)),
            None,
            "range below previous"
        );
    }

    #[test]
    fn power_is_energy_over_time() {
        let last = Last {
            energy: 10_000_000,
            at: Duration::from_secs(10),
        };
        // 50 J in 2 s = 25 W.
        let p = power_between(last, 60_000_000, Duration::from_secs(12), None);
        assert_eq!(p, Ok(Some(MicroWatts(25_000_000))));
        assert_eq!(
            power_between(last, 60_000_000, Duration::from_secs(10), None),
            Ok(None)
        );
    }

    #[test]
    fn zone_names() {
        assert!(is_top_level_zone("intel-rapl:0"));
        assert!(is_top_level_zone("intel-rapl:1"));
        assert!(!is_top_level_zone("intel-rapl:0:0"));
        assert!(!is_top_level_zone("intel-rapl"));
        assert!(!is_top_level_zone("dtpm"));
    }

    #[test]
    fn io_kind_maps_permission() {
        let e = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(io_kind(&e), ProblemKind::PermissionDenied);
    }
}
