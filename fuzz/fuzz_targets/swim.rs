//! Datagrams from a member: anything sealed under the cluster key (a foca
//! message, records, a digest, or no frame at all), fed to a node that has
//! a peer, with its timers run in between. Nothing may panic, and what the
//! node sends stays within the datagram size.
#![no_main]
use libfuzzer_sys::fuzz_target;
use maxwell_gossip::seal::{ClusterKey, Keyring, Sealer};
use maxwell_gossip::swim::{Peer, Swim, SwimConfig};
use maxwell_gossip::NodeId;
use std::net::SocketAddr;

const NOW: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(ClusterKey::derive(&[7; 32], "fuzz"), Vec::new());
    let me = Peer {
        id: NodeId([1; 10]),
        generation: 1,
        addr: SocketAddr::from(([10, 0, 0, 1], 7946)),
    };
    let other = SocketAddr::from(([10, 0, 0, 2], 7946));
    let config = SwimConfig::default();
    let max = config.max_datagram;
    let mut swim = Swim::new(me, ring.clone(), config, vec![other], 3, NOW);
    let mut sealer = Sealer::new(ring, NodeId([2; 10]), NOW);
    let mut now = NOW;
    // Each chunk is one datagram: the first byte says how far time moves.
    for chunk in data.split(|b| *b == 0xfe) {
        let (step, payload) = chunk.split_first().map_or((0, chunk), |(s, p)| (*s, p));
        now += u64::from(step) * 37;
        let mut sealed = Vec::new();
        sealer.seal(now, payload, &mut sealed);
        swim.handle_datagram(now, other, &sealed);
        swim.handle_datagram(now, other, payload);
        swim.handle_timeout(now);
        while let Some(t) = swim.poll_transmit() {
            assert!(t.bytes.len() <= max, "a datagram of {} bytes", t.bytes.len());
        }
        while swim.poll_event().is_some() {}
        let _ = swim.members();
    }
});
