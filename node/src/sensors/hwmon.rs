//! The hwmon sysfs reader: `/sys/class/hwmon/hwmon*/{name, temp*_*, power*_*, energy*_*}`.
//!
//! Values are read in the kernel's own units (millidegrees, microwatts,
//! microjoules) into typed integers. See Documentation/hwmon/sysfs-interface
//! in the kernel tree for the file names.

use super::{
    EnergyReading, HwmonReadings, PowerReading, Problem, ProblemKind, TempReading, TempRole,
};
use maxwell_gossip::{MicroJoules, MicroWatts, MilliCelsius};
use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// Plausible range for a temperature input: outside it the value is garbage
/// (a disconnected diode or a driver placeholder), not a measurement.
const TEMP_INPUT_RANGE: std::ops::RangeInclusive<i64> = -60_000..=200_000;
/// Plausible range for a limit (`_max`, `_crit`, `_crit_hyst`).
const TEMP_LIMIT_RANGE: std::ops::RangeInclusive<i64> = -60_000..=250_000;
type Range = std::ops::RangeInclusive<i64>;

/// 100 kW: nothing in one host draws more.
const POWER_RANGE: std::ops::RangeInclusive<i64> = 0..=100_000_000_000;

/// Reads every chip under `root`. Never fails as a whole: what cannot be read
/// is appended to `problems` and skipped.
pub fn read_tree(root: &Path, problems: &mut Vec<Problem>) -> HwmonReadings {
    let mut out = HwmonReadings::default();
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return out,
        Err(e) => {
            problems.push(problem(root, io_kind(&e), e.to_string()));
            return out;
        }
    };
    let mut devices: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| name.starts_with("hwmon"))
        .collect();
    devices.sort_by_key(|(name, _)| device_order(name));
    for (device, path) in devices {
        read_chip(&path, &device, &mut out, problems);
    }
    out
}

/// `hwmon10` sorts after `hwmon9`.
fn device_order(name: &str) -> (u64, String) {
    let n = name.trim_start_matches("hwmon").parse().unwrap_or(u64::MAX);
    (n, name.to_string())
}

fn read_chip(dev: &Path, device: &str, out: &mut HwmonReadings, problems: &mut Vec<Problem>) {
    // Kernels before 3.x (and a few drivers still) keep the attributes in `device/`.
    let dir = if !dev.join("name").exists() && dev.join("device/name").exists() {
        dev.join("device")
    } else {
        dev.to_path_buf()
    };
    let chip = match read_text(&dir.join("name")) {
        Ok(Some(name)) if !name.is_empty() => name,
        Ok(_) => {
            problems.push(problem(
                &dir.join("name"),
                ProblemKind::Missing,
                "chip has no name".into(),
            ));
            device.to_string()
        }
        Err(p) => {
            problems.push(p);
            device.to_string()
        }
    };
    let channels = match list_channels(&dir) {
        Ok(c) => c,
        Err(e) => {
            problems.push(problem(&dir, io_kind(&e), e.to_string()));
            return;
        }
    };
    let ch = Chan {
        dir: &dir,
        chip: &chip,
        device,
    };
    for (kind, index) in channels {
        match kind {
            Kind::Temp => ch.temp(index, problems).map(|t| out.temperatures.push(t)),
            Kind::Power => ch.power(index, problems).map(|p| out.power.push(p)),
            Kind::Energy => ch.energy(index, problems).map(|e| out.energy.push(e)),
        };
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Temp,
    Power,
    Energy,
}

/// Channels present in a chip directory, by type and index, in order.
fn list_channels(dir: &Path) -> io::Result<BTreeSet<(Kind, u32)>> {
    let mut set = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some((prefix, _attr)) = name.split_once('_') else {
            continue;
        };
        let (kind, digits) = if let Some(d) = prefix.strip_prefix("temp") {
            (Kind::Temp, d)
        } else if let Some(d) = prefix.strip_prefix("power") {
            (Kind::Power, d)
        } else if let Some(d) = prefix.strip_prefix("energy") {
            (Kind::Energy, d)
        } else {
            continue;
        };
        if let Ok(index) = digits.parse::<u32>() {
            set.insert((kind, index));
        }
    }
    Ok(set)
}

/// One chip's directory and names, for reading its channels.
struct Chan<'a> {
    dir: &'a Path,
    chip: &'a str,
    device: &'a str,
}

impl Chan<'_> {
    fn path(&self, sensor: &str, attr: &str) -> PathBuf {
        self.dir.join(format!("{sensor}_{attr}"))
    }

    fn temp(&self, index: u32, problems: &mut Vec<Problem>) -> Option<TempReading> {
        let sensor = format!("temp{index}");
        let fault = self.path(&sensor, "fault");
        if let Ok(Some(v)) = read_int(&fault, &(0..=1)) {
            if v == 1 {
                problems.push(problem(
                    &fault,
                    ProblemKind::Faulty,
                    "driver flags the channel faulty".into(),
                ));
                return None;
            }
        }
        let input = self.required(&sensor, "input", &TEMP_INPUT_RANGE, problems)?;
        let label = self.label(&sensor, problems);
        let limit = |attr: &str, problems: &mut Vec<Problem>| {
            self.optional(&sensor, attr, &TEMP_LIMIT_RANGE, problems)
                .map(MilliCelsius)
        };
        Some(TempReading {
            role: classify(self.chip, label.as_deref()),
            chip: self.chip.to_string(),
            device: self.device.to_string(),
            label,
            input_millicelsius: MilliCelsius(input),
            max_millicelsius: limit("max", problems),
            crit_millicelsius: limit("crit", problems),
            crit_hyst_millicelsius: limit("crit_hyst", problems),
            held_for_ms: None,
            sensor,
        })
    }

    fn power(&self, index: u32, problems: &mut Vec<Problem>) -> Option<PowerReading> {
        let sensor = format!("power{index}");
        let watts = |attr: &str, problems: &mut Vec<Problem>| {
            self.optional(&sensor, attr, &POWER_RANGE, problems)
                .map(MicroWatts)
        };
        let reading = PowerReading {
            input_microwatts: watts("input", problems),
            average_microwatts: watts("average", problems),
            cap_microwatts: watts("cap", problems),
            held_for_ms: None,
            label: self.label(&sensor, problems),
            chip: self.chip.to_string(),
            device: self.device.to_string(),
            sensor: sensor.clone(),
        };
        if reading.draw().is_none() && reading.cap_microwatts.is_none() {
            // Only auxiliary files (e.g. power1_average_interval): nothing to report.
            return None;
        }
        Some(reading)
    }

    fn energy(&self, index: u32, problems: &mut Vec<Problem>) -> Option<EnergyReading> {
        let sensor = format!("energy{index}");
        let input = self.required(&sensor, "input", &(0..=i64::MAX), problems)?;
        Some(EnergyReading {
            label: self.label(&sensor, problems),
            chip: self.chip.to_string(),
            device: self.device.to_string(),
            input_microjoules: MicroJoules(input.unsigned_abs()),
            sensor,
        })
    }

    /// A value the channel cannot do without: absent is a problem too.
    fn required(
        &self,
        sensor: &str,
        attr: &str,
        range: &Range,
        problems: &mut Vec<Problem>,
    ) -> Option<i64> {
        self.read(sensor, attr, range, problems, true)
    }

    /// A value that may be absent; unreadable or garbage is reported and treated as absent.
    fn optional(
        &self,
        sensor: &str,
        attr: &str,
        range: &Range,
        problems: &mut Vec<Problem>,
    ) -> Option<i64> {
        self.read(sensor, attr, range, problems, false)
    }

    fn read(
        &self,
        sensor: &str,
        attr: &str,
        range: &Range,
        problems: &mut Vec<Problem>,
        required: bool,
    ) -> Option<i64> {
        let path = self.path(sensor, attr);
        match read_int(&path, range) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                if required {
                    problems.push(problem(
                        &path,
                        ProblemKind::Missing,
                        "channel has no input".into(),
                    ));
                }
                None
            }
            Err(p) => {
                problems.push(p);
                None
            }
        }
    }

    fn label(&self, sensor: &str, problems: &mut Vec<Problem>) -> Option<String> {
        read_text(&self.path(sensor, "label"))
            .map_err(|p| problems.push(p))
            .ok()
            .flatten()
            .filter(|l| !l.is_empty())
    }
}

/// What a channel measures, from the chip's name and the channel's label.
pub fn classify(chip: &str, label: Option<&str>) -> TempRole {
    let label = label.unwrap_or("");
    match chip {
        "k10temp" | "zenpower" if label == "Tctl" => TempRole::Control,
        "k10temp" | "zenpower" if label == "Tdie" || label.starts_with("Tccd") => TempRole::Die,
        "coretemp" if label.starts_with("Package id") || label.starts_with("Physical id") => {
            TempRole::Package
        }
        "coretemp" if label.starts_with("Core") => TempRole::Core,
        "nvme" | "drivetemp" => TempRole::Drive,
        _ => TempRole::Other,
    }
}

/// Largest sysfs attribute read: the kernel's own limit is one page.
const MAX_ATTR_BYTES: usize = 4096;

/// Reads a sysfs text file. `Ok(None)` when it does not exist. Anything
/// but a regular file (a FIFO, a directory) is refused without waiting on it.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>, Problem> {
    match crate::fsutil::read_regular(path, MAX_ATTR_BYTES, crate::fsutil::Links::Follow) {
        Ok(r) => match String::from_utf8(r.bytes) {
            Ok(s) => Ok(Some(s.trim().to_string())),
            Err(_) => Err(problem(path, ProblemKind::Garbage, "not text".into())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(problem(path, io_kind(&e), e.to_string())),
    }
}

/// Reads an integer file and checks it is plausible. `Ok(None)` when absent.
pub(crate) fn read_int(
    path: &Path,
    range: &std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, Problem> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    parse_int(&text, range)
        .map(Some)
        .map_err(|detail| problem(path, ProblemKind::Garbage, detail))
}

/// The value of an integer attribute, if it is one and plausible; else why not.
pub fn parse_int(text: &str, range: &std::ops::RangeInclusive<i64>) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(v) if range.contains(&v) => Ok(v),
        Ok(v) => Err(format!("implausible value {v}")),
        Err(_) => Err(format!(
            "not an integer: {}",
            crate::fsutil::excerpt(text, 32)
        )),
    }
}

/// Parses one temperature input as the reader does (the fuzzer's entry point).
pub fn parse_temp_input(text: &str) -> Option<MilliCelsius> {
    parse_int(text, &TEMP_INPUT_RANGE).ok().map(MilliCelsius)
}

pub(crate) fn io_kind(e: &io::Error) -> ProblemKind {
    match e.kind() {
        io::ErrorKind::NotFound => ProblemKind::Missing,
        io::ErrorKind::PermissionDenied => ProblemKind::PermissionDenied,
        _ => ProblemKind::Unreadable,
    }
}

pub(crate) fn problem(path: &Path, kind: ProblemKind, detail: String) -> Problem {
    Problem {
        path: path.display().to_string(),
        kind,
        detail,
    }
}
