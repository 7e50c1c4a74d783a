//! Guest specs, as TOML files and JSON bodies (no kernel dir: nothing is opened).
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_vmm::GuestSpec;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = GuestSpec::from_json(text);
    let _ = GuestSpec::from_toml(text);
});
