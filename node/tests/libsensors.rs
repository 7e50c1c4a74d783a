//! libsensors against the direct sysfs reader on this machine's real hwmon
//! class: both must see the same channels and values. (libsensors always
//! reads the system's sysfs, so fixture trees cannot drive it.)
#![cfg(feature = "libsensors")]

use maxwell_node::config::RawConfig;
use maxwell_node::sensors::hub::SensorHub;
use maxwell_node::sensors::{hwmon, SensorSource};
use std::path::Path;
use std::time::Duration;

#[test]
fn libsensors_agrees_with_the_sysfs_reader() {
    let config = RawConfig::from_toml(
        "[sensors]\nsource = \"libsensors\"\npowercap_root = \"/nonexistent\"\n",
    )
    .expect("toml")
    .validate()
    .expect("valid");
    let mut hub = SensorHub::new(&config.sensors, &config.power, config.emulated)
        .expect("libsensors initialises");
    assert_eq!(hub.source(), SensorSource::Libsensors);
    let via_lib = hub.read(Duration::ZERO, 1);
    let mut problems = Vec::new();
    let via_sysfs = hwmon::read_tree(Path::new("/sys/class/hwmon"), &mut problems);
    let key = |t: &maxwell_node::sensors::TempReading| (t.device.clone(), t.sensor.clone());
    let mut lib: Vec<_> = via_lib.hwmon.temperatures.iter().map(key).collect();
    let mut sys: Vec<_> = via_sysfs.temperatures.iter().map(key).collect();
    lib.sort();
    sys.sort();
    assert_eq!(lib, sys, "same temperature channels");
    eprintln!(
        "libsensors and sysfs both see {} temperature channels on this host",
        lib.len()
    );
}
