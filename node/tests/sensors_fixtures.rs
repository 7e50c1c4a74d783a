//! The sysfs readers against realistic fixture trees (node/testdata), value by value.

mod common;

use common::{copy_tree, testdata};
use maxwell_gossip::{MicroJoules, MicroWatts, MilliCelsius};
use maxwell_node::config::RawConfig;
use maxwell_node::sensors::config::CapSource;
use maxwell_node::sensors::hub::SensorHub;
use maxwell_node::sensors::summary::LimitSource;
use maxwell_node::sensors::{hwmon, ProblemKind, SensorSource, Snapshot, TempRole};
use std::path::Path;
use std::time::Duration;

fn hub_for(tree: &Path, extra: &str) -> SensorHub {
    let text = format!(
        "data_dir = \"/nonexistent\"\n[sensors]\nsource = \"sysfs\"\nhwmon_root = \"{}\"\npowercap_root = \"{}\"\n{extra}",
        tree.join("hwmon").display(),
        tree.join("powercap").display()
    );
    let config = RawConfig::from_toml(&text)
        .expect("toml")
        .validate()
        .expect("valid");
    SensorHub::new(&config.sensors, &config.power, config.emulated).expect("hub")
}

fn temp<'a>(s: &'a Snapshot, device: &str, sensor: &str) -> &'a maxwell_node::sensors::TempReading {
    s.hwmon
        .temperatures
        .iter()
        .find(|t| t.device == device && t.sensor == sensor)
        .unwrap_or_else(|| panic!("{device}/{sensor} missing"))
}

#[test]
fn amd_epyc_tree_is_read_exactly() {
    let mut hub = hub_for(&testdata("amd-epyc"), "");
    let s = hub.read(Duration::ZERO, 1);
    assert_eq!(s.source, SensorSource::Sysfs);
    assert!(!s.emulated);
    assert_eq!(s.hwmon.temperatures.len(), 5);
    let tctl = temp(&s, "hwmon0", "temp1");
    assert_eq!(
        (tctl.chip.as_str(), tctl.label.as_deref()),
        ("k10temp", Some("Tctl"))
    );
    assert_eq!(tctl.role, TempRole::Control);
    assert_eq!(tctl.input_millicelsius, MilliCelsius(62_500));
    let ccd2 = temp(&s, "hwmon0", "temp4");
    assert_eq!(
        (ccd2.role, ccd2.input_millicelsius),
        (TempRole::Die, MilliCelsius(60_125))
    );
    let composite = temp(&s, "hwmon1", "temp1");
    assert_eq!(composite.label.as_deref(), Some("Composite"));
    assert_eq!(composite.role, TempRole::Drive);
    assert_eq!(composite.max_millicelsius, Some(MilliCelsius(81_850)));
    assert_eq!(composite.crit_millicelsius, Some(MilliCelsius(84_850)));
    // "Sensor 1" has an implausible max (65261.85 °C, as some firmware reports): reported, channel kept.
    let sensor1 = temp(&s, "hwmon1", "temp2");
    assert_eq!(
        (sensor1.input_millicelsius, sensor1.max_millicelsius),
        (MilliCelsius(45_850), None)
    );
    assert!(s
        .problems
        .iter()
        .any(|p| p.path.ends_with("hwmon1/temp2_max") && p.kind == ProblemKind::Garbage));

    let meter = &s.hwmon.power[0];
    assert_eq!(
        (meter.chip.as_str(), meter.sensor.as_str()),
        ("power_meter", "power1")
    );
    assert_eq!(meter.average_microwatts, Some(MicroWatts(231_000_000)));
    assert_eq!(meter.cap_microwatts, Some(MicroWatts(450_000_000)));
    assert_eq!(s.hwmon.power.len(), 1);

    assert_eq!(
        s.rapl.len(),
        1,
        "sub-zone intel-rapl:0:0 is part of its package"
    );
    assert_eq!(s.rapl[0].name, "package-0");
    assert_eq!(s.rapl[0].energy_microjoules, MicroJoules(81_234_567_890));
    assert_eq!(s.rapl[0].limit_microwatts, Some(MicroWatts(225_000_000)));
    assert_eq!(
        s.rapl[0].power_microwatts, None,
        "no power on the first reading"
    );

    // Summary: Tctl ignored (Tccd present); the NVMe (41.85/84.85) is farther
    // from its limit than Tccd2 (60.125/95 default), so Tccd2 is hottest.
    let sum = &s.summary;
    let hottest = sum.hottest.as_ref().expect("hottest");
    assert_eq!(
        (hottest.chip.as_str(), hottest.label.as_deref()),
        ("k10temp", Some("Tccd2"))
    );
    assert_eq!(hottest.millicelsius, MilliCelsius(60_125));
    assert_eq!(
        (hottest.critical_millicelsius, hottest.critical_source),
        (MilliCelsius(95_000), LimitSource::Default)
    );
    let draw = sum.power_draw.as_ref().expect("draw");
    assert_eq!(
        (draw.microwatts, draw.source.as_str()),
        (MicroWatts(231_000_000), "hwmon:power_meter")
    );
    let cap = sum.power_cap.as_ref().expect("cap");
    assert_eq!(
        (cap.microwatts, cap.source.as_str()),
        (MicroWatts(450_000_000), "hwmon:power_meter")
    );
    assert_eq!(sum.headroom_microwatts, Some(MicroWatts(219_000_000)));
}

#[test]
fn cap_source_order_is_configurable() {
    let mut hub = hub_for(
        &testdata("amd-epyc"),
        "[power]\nbudget_w = 300\ncap_sources = [\"rapl\", \"config\"]\n",
    );
    let s = hub.read(Duration::ZERO, 1);
    let cap = s.summary.power_cap.as_ref().expect("cap");
    assert_eq!(
        (cap.microwatts, cap.source.as_str()),
        (MicroWatts(225_000_000), "rapl:package")
    );
    let mut hub = hub_for(
        &testdata("amd-epyc"),
        "[power]\nbudget_w = 300\ncap_sources = [\"config\"]\n",
    );
    let s = hub.read(Duration::ZERO, 1);
    assert_eq!(
        s.summary.power_cap.as_ref().map(|c| c.microwatts),
        Some(MicroWatts(300_000_000))
    );
    assert_eq!(s.summary.headroom_microwatts, Some(MicroWatts(69_000_000)));
    assert_eq!(CapSource::Config, CapSource::Config);
}

#[test]
fn intel_xeon_tree_with_rapl_power_over_time() {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("intel-xeon"), tree.path());
    let mut hub = hub_for(tree.path(), "");
    let first = hub.read(Duration::from_secs(10), 1);
    // acpitz has no labels: kept, named by channel.
    let acpi = temp(&first, "hwmon0", "temp2");
    assert_eq!((acpi.label.as_deref(), acpi.role), (None, TempRole::Other));
    assert_eq!(acpi.crit_millicelsius, Some(MilliCelsius(119_000)));
    let pkg1 = temp(&first, "hwmon2", "temp1");
    assert_eq!(
        (pkg1.label.as_deref(), pkg1.role),
        (Some("Package id 1"), TempRole::Package)
    );
    assert_eq!(temp(&first, "hwmon1", "temp3").role, TempRole::Core);
    let hottest = first.summary.hottest.as_ref().expect("hottest");
    assert_eq!(
        (hottest.chip.as_str(), hottest.millicelsius),
        ("coretemp", MilliCelsius(71_000))
    );
    assert_eq!(
        (hottest.critical_millicelsius, hottest.critical_source),
        (MilliCelsius(94_000), LimitSource::Sensor)
    );
    assert_eq!(
        first.summary.power_draw, None,
        "no power meter and no RAPL power yet"
    );
    let cap = first.summary.power_cap.as_ref().expect("RAPL limits");
    assert_eq!(
        (cap.microwatts, cap.source.as_str()),
        (MicroWatts(330_000_000), "rapl:package")
    );
    assert_eq!(first.summary.headroom_microwatts, None);

    // 2 s later: package 0 used 150 J (75 W); package 1 wrapped past
    // max_energy_range_uj and used 328.85 J + 100 J... see below.
    let p = tree.path().join("powercap");
    std::fs::write(p.join("intel-rapl:0/energy_uj"), "250000000\n").expect("write");
    // 262143000000 -> wrap at 262143328850 -> 171150000: delta 328850 + 171150000 = 171478850 µJ.
    std::fs::write(p.join("intel-rapl:1/energy_uj"), "171150000\n").expect("write");
    let second = hub.read(Duration::from_secs(12), 2);
    assert_eq!(
        second.rapl[0].power_microwatts,
        Some(MicroWatts(75_000_000))
    );
    assert_eq!(
        second.rapl[1].power_microwatts,
        Some(MicroWatts(85_739_425))
    );
    let draw = second.summary.power_draw.as_ref().expect("draw");
    assert_eq!(
        (draw.microwatts, draw.source.as_str()),
        (MicroWatts(160_739_425), "rapl:package")
    );
    assert_eq!(
        second.summary.headroom_microwatts,
        Some(MicroWatts(330_000_000 - 160_739_425))
    );
}

#[test]
fn legacy_layout_and_broken_channels() {
    let mut problems = Vec::new();
    let r = hwmon::read_tree(&testdata("legacy").join("hwmon"), &mut problems);
    // k10temp from device/: Tdie present, so Tctl is not the hottest.
    let names: Vec<_> = r
        .temperatures
        .iter()
        .map(|t| (t.chip.as_str(), t.sensor.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("k10temp", "temp1"),
            ("k10temp", "temp2"),
            ("nct6775", "temp1"),
            ("nct6775", "temp2"),
            ("nct6775", "temp7")
        ]
    );
    let kinds: Vec<_> = problems
        .iter()
        .map(|p| (p.path.rsplit('/').next().unwrap_or(""), p.kind))
        .collect();
    assert!(
        kinds.contains(&("temp3_input", ProblemKind::Garbage)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("temp4_input", ProblemKind::Garbage)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("temp5_fault", ProblemKind::Faulty)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("temp6_input", ProblemKind::Missing)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("temp7_crit", ProblemKind::Garbage)),
        "{kinds:?}"
    );
    let t7 = r
        .temperatures
        .iter()
        .find(|t| t.sensor == "temp7")
        .expect("temp7 kept");
    assert_eq!(
        (t7.input_millicelsius, t7.crit_millicelsius),
        (MilliCelsius(40_000), None)
    );
    let mut hub = hub_for(&testdata("legacy"), "");
    let s = hub.read(Duration::ZERO, 1);
    let hottest = s.summary.hottest.as_ref().expect("hottest");
    assert_eq!(
        (hottest.label.as_deref(), hottest.millicelsius),
        (Some("Tdie"), MilliCelsius(48_000))
    );
}

#[test]
fn unreadable_files_and_symlinked_devices() {
    let tree = tempfile::tempdir().expect("tempdir");
    let devices = tree.path().join("devices/platform/coretemp.0/hwmon/hwmon7");
    std::fs::create_dir_all(&devices).expect("mkdir");
    std::fs::write(devices.join("name"), "coretemp\n").expect("write");
    std::fs::write(devices.join("temp1_input"), "51000\n").expect("write");
    std::fs::write(devices.join("temp1_label"), "Package id 0\n").expect("write");
    // A directory where a file should be reads as an I/O error (EISDIR), like EIO from a driver.
    std::fs::create_dir(devices.join("temp2_input")).expect("mkdir");
    std::fs::write(devices.join("temp3_input"), [0xff, 0xfe, 0x00]).expect("write");
    let class = tree.path().join("class/hwmon");
    std::fs::create_dir_all(&class).expect("mkdir");
    std::os::unix::fs::symlink(&devices, class.join("hwmon7")).expect("symlink");
    let mut problems = Vec::new();
    let r = hwmon::read_tree(&class, &mut problems);
    assert_eq!(r.temperatures.len(), 1);
    assert_eq!(r.temperatures[0].input_millicelsius, MilliCelsius(51_000));
    assert_eq!(r.temperatures[0].device, "hwmon7");
    let kinds: Vec<_> = problems.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [ProblemKind::Unreadable, ProblemKind::Garbage]);
}

#[test]
fn missing_roots_give_nothing_and_no_problem() {
    let mut problems = Vec::new();
    let r = hwmon::read_tree(Path::new("/nonexistent/hwmon"), &mut problems);
    assert!(r.is_empty());
    assert!(problems.is_empty());
}

#[test]
fn auto_falls_back_to_emulated_without_sensors() {
    let text = "[sensors]\nhwmon_root = \"/nonexistent/a\"\npowercap_root = \"/nonexistent/b\"\n";
    let config = RawConfig::from_toml(text)
        .expect("toml")
        .validate()
        .expect("valid");
    let mut hub = SensorHub::new(&config.sensors, &config.power, config.emulated).expect("hub");
    assert_eq!(hub.source(), SensorSource::Emulated);
    let s = hub.read(Duration::ZERO, 1);
    assert!(s.emulated);
    let h = s.summary.hottest.as_ref().expect("emulated temperature");
    assert_eq!(
        (h.chip.as_str(), h.critical_millicelsius),
        ("maxwell_emulated", MilliCelsius(95_000))
    );
    assert_eq!(
        s.summary.power_cap.as_ref().map(|c| c.microwatts),
        Some(MicroWatts(320_000_000))
    );
    assert!(s.summary.headroom_microwatts.is_some());
}
