//! The crate through its public API only, as the agent uses it: every node
//! publishes a signed value under its node id, every node verifies every
//! other node's value, and after one exchange each knows every other's heat.

use ed25519_dalek::SigningKey;
use maxwell_gossip::KeyedNodeId;
use maxwell_gossip::Position;
use maxwell_gossip::{
    Allowlist, Freshness, HeatReport, Leave, MicroWatts, MilliCelsius, NodeId, RejectReason,
    SensorSource, SignedRecord, Verified, Verifier, VerifierConfig,
};

const T0: u64 = 1_764_201_600_000;

struct Node {
    key: SigningKey,
    id: NodeId,
    seq: u64,
    verifier: Verifier,
}

fn report(node: &Node, now_ms: u64, celsius: f64) -> HeatReport {
    HeatReport {
        node_id: node.id,
        name: format!("n{}", node.id.0[0]),
        generation: T0,
        seq: node.seq,
        timestamp_ms: now_ms,
        position: Position::new("r1", node.id.0[0].into()),
        hottest: MilliCelsius::from_celsius(celsius),
        critical: MilliCelsius::from_celsius(95.0),
        power_draw: MicroWatts::from_watts(300.0),
        power_cap: MicroWatts::from_watts(400.0),
        headroom: MicroWatts::from_watts(100.0),
        price_milli: 0,
        source: SensorSource::Emulated,
        room: Default::default(),
        api: None,
        p2p: None,
    }
}

#[test]
fn every_node_learns_every_heat_and_every_leave() {
    let keys: Vec<SigningKey> = (1..=4u8)
        .map(|s| SigningKey::from_bytes(&[s; 32]))
        .collect();
    let allowlist = Allowlist::from_keys(keys.iter().map(SigningKey::as_ref));
    let mut nodes: Vec<Node> = keys
        .into_iter()
        .map(|key| Node {
            id: NodeId::from_verifying_key(&key.verifying_key()),
            key,
            seq: 0,
            verifier: Verifier::new(VerifierConfig {
                allowlist: Some(allowlist.clone()),
                ..VerifierConfig::default()
            }),
        })
        .collect();

    // Round 1: everyone publishes; everyone verifies everyone else.
    let now = T0 + 1_000;
    let published: Vec<(NodeId, String)> = nodes
        .iter_mut()
        .enumerate()
        .map(|(i, n)| {
            n.seq += 1;
            let r = report(n, now, 40.0 + i as f64);
            let value = SignedRecord::sign(&r, &n.key)
                .expect("own report signs")
                .encode();
            (n.id, value)
        })
        .collect();
    for n in &mut nodes {
        for (id, value) in &published {
            if *id != n.id {
                assert!(matches!(
                    n.verifier.verify(id, value, now + 200),
                    Ok(Verified::Report(_))
                ));
            }
        }
        let view = n.verifier.view(now + 200);
        assert_eq!(view.len(), 3);
        assert!(view.iter().all(|m| m.freshness == Freshness::Fresh));
    }
    let mut seen_by_0: Vec<i64> = nodes[0]
        .verifier
        .view(now)
        .iter()
        .map(|m| m.report.hottest.0)
        .collect();
    seen_by_0.sort_unstable();
    assert_eq!(seen_by_0, vec![41_000, 42_000, 43_000]);

    // Gossip re-delivers the same values every round: recognised, not counted
    // as rejections.
    let (id3, value3) = published[3].clone();
    assert_eq!(
        nodes[0].verifier.verify(&id3, &value3, now + 300),
        Ok(Verified::Unchanged)
    );
    // A value from node 3 offered under node 2's id is refused.
    assert!(matches!(
        nodes[0]
            .verifier
            .verify(&published[2].0, &value3, now + 300),
        Err(RejectReason::KeyMismatch { .. })
    ));

    // Node 3 leaves cleanly.
    let leave = Leave {
        node_id: nodes[3].id,
        generation: T0,
        seq: nodes[3].seq + 1,
        timestamp_ms: now + 500,
    };
    let value = SignedRecord::sign(&leave, &nodes[3].key)
        .expect("own leave signs")
        .encode();
    assert_eq!(
        nodes[0].verifier.verify(&id3, &value, now + 600),
        Ok(Verified::Leave(leave))
    );
    assert_eq!(nodes[0].verifier.view(now + 600).len(), 2);

    // Silence past the TTL: the remaining members are shown stale.
    let later = now + nodes[0].verifier.config().ttl_ms + 1_000;
    assert!(nodes[0]
        .verifier
        .view(later)
        .iter()
        .all(|m| m.freshness == Freshness::Stale));
    let c = nodes[0].verifier.counters();
    assert_eq!(
        (
            c.accepted(maxwell_gossip::RecordKind::Report),
            c.accepted(maxwell_gossip::RecordKind::Leave),
            c.unchanged
        ),
        (3, 1, 1)
    );
    assert_eq!(c.total_rejected(), 1);
}
