//! The sysfs value parsers: whatever a driver (or a broken file) holds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_node::sensors::hwmon::{parse_int, parse_temp_input};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(t) = parse_temp_input(text) {
        assert!((-60_000..=200_000).contains(&t.0));
    }
    for range in [0..=1, 0..=i64::MAX, -60_000..=250_000, 1..=i64::MAX] {
        if let Ok(v) = parse_int(text, &range) {
            assert!(range.contains(&v));
        }
    }
});
