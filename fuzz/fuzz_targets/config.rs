//! The config parser and validator: any file an operator can write.
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_node::config::RawConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(raw) = RawConfig::from_toml(text) {
        let _ = raw.validate();
    }
});
