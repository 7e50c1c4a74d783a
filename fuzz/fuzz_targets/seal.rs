//! Sealed datagrams: any bytes a host on the network can send, and the
//! round trip of any payload (a mutated one never opens).
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_gossip::seal::{ClusterKey, Keyring, Opener, SealConfig, Sealer};
use maxwell_gossip::NodeId;

const NOW: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(ClusterKey::new(1, [7; 32]), Vec::new());
    let mut opener = Opener::new(ring.clone(), SealConfig::default());
    assert!(opener.open(data, NOW).is_err(), "unsealed bytes opened");
    let mut sealer = Sealer::new(ring, NodeId([3; 10]), NOW);
    let mut sealed = Vec::new();
    sealer.seal(NOW, data, &mut sealed);
    let at = data.first().map_or(0, |b| usize::from(*b)) % sealed.len();
    let mut mutated = sealed.clone();
    mutated[at] ^= data.get(1).copied().unwrap_or(1).max(1);
    assert!(opener.open(&mutated, NOW).is_err(), "a mutated datagram opened");
    let opened = opener.open(&sealed, NOW).expect("the sealed datagram opens");
    assert_eq!(opened.payload, data);
    assert!(opener.open(&sealed, NOW).is_err(), "a replay opened");
});
