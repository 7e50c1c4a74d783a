//! The tiered mesh on real UDP sockets: two racks of two agents' meshes
//! (the agent's `Mesh` driving `Tiered`), each with a rack socket and an
//! upper socket, ports from the OS. A node of one rack becoming the cheapest
//! is known in the other rack, through the carriers, and only the carriers
//! speak the upper tier.

use ed25519_dalek::SigningKey;
use maxwell_core::Heat;
use maxwell_gossip::seal::{ClusterKey, Keyring};
use maxwell_gossip::swim::SwimConfig;
use maxwell_gossip::tier::{rack_cluster_id, upper_cluster_id, TierConfig};
use maxwell_gossip::{MicroWatts, MilliCelsius, Position, SensorSource, VerifierConfig};
use maxwell_node::mesh::transport::{GossipStats, UdpTransport};
use maxwell_node::mesh::{Clock, Mesh, MeshSettings, TierSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: [u8; 32] = [0x42; 32];

fn keys(name: &str) -> Keyring {
    Keyring::new(ClusterKey::derive(&SECRET, name), Vec::new())
}

fn heat(rack: &str, price_milli: u64) -> Heat {
    Heat {
        position: Position::new(rack, 1),
        hottest: MilliCelsius::from_celsius(50.0),
        critical: MilliCelsius::from_celsius(95.0),
        power_draw: MicroWatts::from_watts(300.0),
        power_cap: MicroWatts::from_watts(400.0),
        headroom: MicroWatts::from_watts(100.0),
        price_milli,
        source: SensorSource::Emulated,
        room: Default::default(),
    }
}

async fn start(i: usize, rack: &str, seeds: Vec<SocketAddr>, upper_seeds: Vec<SocketAddr>) -> Mesh {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let swim = SwimConfig {
        probe_period_ms: 200,
        probe_rtt_ms: 60,
        suspect_to_down_ms: 600,
        gossip_every_ms: 50,
        sync_every_ms: 2_000,
        ..SwimConfig::default()
    };
    let settings = MeshSettings {
        listen_addr: loopback,
        advertise_addr: loopback,
        seeds,
        keys: keys("unused"),
        swim,
        verifier: VerifierConfig::default(),
        tiers: Some(TierSettings {
            upper_listen_addr: loopback,
            upper_advertise_addr: loopback,
            upper_seeds,
            rack: rack.into(),
            rack_keys: keys(&rack_cluster_id("t", rack)),
            upper_keys: keys(&upper_cluster_id("t")),
            config: TierConfig::default(),
        }),
    };
    let clock: Clock = Arc::new(maxwell_node::clock::unix_ms);
    let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
    Mesh::start(
        settings,
        key,
        format!("n{i}"),
        1,
        &UdpTransport,
        clock,
        i as u64,
        Arc::new(GossipStats::default()),
    )
    .await
    .expect("the mesh starts on loopback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheapest_node_in_one_rack_is_known_in_the_other_through_the_carriers() {
    let a0 = start(0, "a", vec![], vec![]).await;
    let upper = vec![a0.upper_addr().expect("tiered")];
    let a1 = start(1, "a", vec![a0.local_addr()], upper.clone()).await;
    let b0 = start(2, "b", vec![], upper.clone()).await;
    let b1 = start(3, "b", vec![b0.local_addr()], upper).await;
    let meshes = [a0, a1, b0, b1];
    for (i, m) in meshes.iter().enumerate() {
        let rack = if i < 2 { "a" } else { "b" };
        m.publish(&heat(rack, 500 + i as u64)).expect("signs");
    }
    // Node 3 (rack b) becomes the cheapest anywhere.
    meshes[3].publish(&heat("b", 1)).expect("signs");
    let want = meshes[3].node_id();
    let start = Instant::now();
    loop {
        let views: Vec<_> = meshes
            .iter()
            .map(|m| m.world().first().map(|o| o.node_id))
            .collect();
        if views.iter().all(|v| *v == Some(want)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not every node knows the cheapest: {views:?}, carriers {:?}",
            meshes.iter().map(Mesh::carrier).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Racks of two: both carry; each knows only its rack as members.
    assert!(meshes.iter().all(Mesh::carrier));
    assert!(meshes.iter().all(|m| m.gossip_peers() == 1));
    for m in meshes {
        m.shutdown().await;
    }
}
