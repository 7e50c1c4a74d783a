//! The tiered mesh under turmoil: no single node's loss stops anything.

use maxwell_tests::tiered::TierNet;
use std::time::Duration;

const RACKS: usize = 3;
const PER_RACK: usize = 4;

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// For every node in turn: a fresh mesh of three racks of four converges;
/// the node is crashed; then a node of its rack becomes the cheapest
/// anywhere, and every live node learns it within 5 s, its rack neighbours
/// hold its report, and its rack still has a carrier. Whichever node is
/// lost (a seed, the rack's primary or second carrier, or neither), work
/// still finds the cheapest node.
#[test]
fn the_tiered_mesh_survives_the_loss_of_any_single_node() {
    for victim in 0..RACKS * PER_RACK {
        let mut net = TierNet::new(victim as u64 + 1, RACKS, PER_RACK, 2);
        net.until(s(10), "cold start", |n| {
            n.all_know_cheapest()
                && (0..RACKS).all(|r| n.rack_of(r * PER_RACK).iter().any(|&k| n.carrying(k)))
        })
        .unwrap_or_else(|e| panic!("victim {victim}: {e}"));
        let was_carrier = net.carrying(victim);
        net.crash(victim);
        let rack = net.rack_of(victim);
        let newcomer = *rack.last().expect("the rack has other nodes");
        net.set_price(newcomer, 1);
        let took = net
            .until(s(5), "the new cheapest known everywhere", |n| {
                n.all_know_cheapest() && n.rack_holds(newcomer)
            })
            .unwrap_or_else(|e| panic!("victim {victim}: {e}"));
        net.until(s(5), "the rack carried", |n| {
            rack.iter().any(|&k| n.carrying(k))
        })
        .unwrap_or_else(|e| panic!("victim {victim}: {e}"));
        // And a change in another rack still reaches the victim's rack.
        let far = (victim / PER_RACK + 1) % RACKS * PER_RACK + 1;
        net.set_price(far, 0);
        net.until(s(5), "another rack's cheapest known everywhere", |n| {
            n.all_know_cheapest()
        })
        .unwrap_or_else(|e| panic!("victim {victim}: {e}"));
        eprintln!(
            "victim {victim} (carrier: {was_carrier}): the rack's news reached all in {took:?}"
        );
    }
}

/// The cheapest node dies without a goodbye: every live node stops offering
/// it and agrees on the next cheapest. (Carriers once echoed a dead node's
/// offer to each other through their world summaries, so it lived on.)
#[test]
fn a_dead_cheapest_node_is_forgotten_everywhere() {
    for seed in [1, 2, 3] {
        let mut net = TierNet::new(seed, RACKS, PER_RACK, 2);
        let cheapest = PER_RACK + 3;
        net.set_price(cheapest, 1);
        net.until(s(10), "cold start", TierNet::all_know_cheapest)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.crash(cheapest);
        net.until(
            s(8),
            "the next cheapest known everywhere",
            TierNet::all_know_cheapest,
        )
        .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // And it stays so past the summaries' heartbeat.
        net.until(s(7), "a quiet spell", |_| false)
            .expect_err("runs out");
        assert!(
            net.all_know_cheapest(),
            "seed {seed}: the dead node came back"
        );
    }
}
