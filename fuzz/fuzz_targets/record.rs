//! The signed-record decoder and verifier: any text a peer can gossip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_gossip::{KeyedNodeId, NodeId, SignedRecord, Verifier, VerifierConfig};

fuzz_target!(|data: &[u8]| {
    let _ = SignedRecord::from_bytes(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(record) = SignedRecord::decode(text) {
        let _ = record.open();
    }
    // Verify under the id the record claims and under another one.
    let mut verifier = Verifier::new(VerifierConfig::default());
    let claimed = SignedRecord::decode(text)
        .map(|r| r.key_node_id())
        .unwrap_or_else(|_| {
            NodeId::from_verifying_key(
                &ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key(),
            )
        });
    for now in [0, 1_700_000_000_000, u64::MAX] {
        let _ = verifier.verify(&claimed, text, now);
        let _ = verifier.view(now);
    }
});
