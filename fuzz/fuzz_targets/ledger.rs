//! The ledger's segment reader, and replay: any bytes a crash, a bad disk
//! or someone with the data dir can leave. The reader must stop at a
//! reason, never panic; any entries at all (checksums aside, so that the
//! fuzzer reaches them) must apply to a market without a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_market::{ledger, Entry, Market, MarketConfig};
use maxwell_types::NodeId;

fuzz_target!(|data: &[u8]| {
    let mut bytes = ledger::SEGMENT_MAGIC.to_vec();
    bytes.extend_from_slice(data);
    let (mut entries, good, _why) = ledger::scan_bytes(&bytes);
    assert!(good as usize <= bytes.len());
    let mut rest = data;
    while let Ok((e, tail)) = postcard::take_from_bytes::<Entry>(rest) {
        entries.push(e);
        rest = tail;
    }
    let mut m = Market::new(MarketConfig::default(), NodeId([0; 10]));
    for e in &entries {
        m.apply(e, false);
    }
    let _ = m.snapshot();
});
