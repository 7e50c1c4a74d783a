//! The HTTP API's JSON bodies: `PUT /v1/emulated`, `PUT /v1/guests/{id}/cap`
//! and `POST /v1/guests`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_node::sensors::config::EmulatedParams;
use maxwell_node::http::guests::parse_cap_body;
use maxwell_node::http::parse_emulated_body;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = parse_emulated_body(data, EmulatedParams::default()) {
        // Whatever is accepted must be usable by the emulated host.
        assert!(p.peak > p.idle);
        assert!(p.resistance_k_per_w.is_finite() && p.resistance_k_per_w > 0.0);
    }
    if let Ok(cap) = parse_cap_body(data) {
        assert!(cap.fraction() > 0.0 && cap.fraction() <= 1.0);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = maxwell_vmm::GuestSpec::from_json(text);
    }
});
