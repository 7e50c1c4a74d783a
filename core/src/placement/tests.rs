use super::*;
use crate::tests::{config, peer, reading, T0};
use crate::NodeCore;
use maxwell_gossip::MemberStatus;

const PARAMS: PlaceParams = PlaceParams {
    choices: 2,
    max_offers: 3,
    hot_margin: MilliCelsius(10_000),
};

const NEED: Need = Need {
    load: GuestLoad {
        vcpus: 1,
        memory_mib: 64,
    },
    bid_milli: Some(5_000),
};

/// A counting peer `k` at `celsius` (limit 95 °C), priced `price_milli`,
/// with room for 4 vCPUs and 1 GiB and an offer endpoint.
fn offering(k: u8, celsius: f64, price_milli: u64) -> maxwell_gossip::Member {
    let mut m = peer(k, u16::from(k), celsius, MemberStatus::Alive);
    let r = m.report.as_mut().expect("report");
    r.price_milli = price_milli;
    r.room = Room {
        guests: 0,
        free_vcpus: 4,
        free_memory_mib: 1024,
    };
    r.p2p = Some(SocketAddr::from(([0, 0, 0, 0], 7948)));
    m
}

fn name(t: &Target) -> String {
    match t {
        Target::Local { .. } => "local".into(),
        Target::Peer { name, .. } => name.clone(),
    }
}

/// A core that has seen `peers` and read nothing yet (so it is no candidate itself).
fn core_with(peers: Vec<maxwell_gossip::Member>) -> NodeCore {
    let mut core = NodeCore::new(config(), T0, 7);
    core.handle_peers(T0, peers, Vec::new());
    core
}

#[test]
fn only_counting_cool_affordable_roomy_reachable_nodes_are_candidates() {
    let mut dead = offering(2, 40.0, 1_000);
    dead.status = MemberStatus::Dead;
    let mut stale = offering(3, 40.0, 1_000);
    stale.age_ms = 60_000;
    let hot = offering(4, 86.0, 1_000);
    let dear = offering(5, 40.0, 6_000);
    let mut full = offering(6, 40.0, 1_000);
    full.report.as_mut().expect("report").room.free_vcpus = 0;
    let mut silent = offering(7, 40.0, 1_000);
    silent.report.as_mut().expect("report").p2p = None;
    let peers = vec![
        offering(1, 40.0, 1_000),
        dead,
        stale,
        hot,
        dear,
        full,
        silent,
    ];
    let mut core = core_with(peers);
    let p = core.place(T0, &NEED, &PARAMS);
    assert_eq!(p.candidates, 1);
    assert_eq!(p.targets.iter().map(name).collect::<Vec<_>>(), ["n1"]);
    assert_eq!(
        p.skipped,
        Skipped {
            // The dead, the stale, and this node (it has read nothing).
            not_counting: 3,
            hot: 1,
            above_bid: 1,
            no_room: 1,
            no_endpoint: 1,
        }
    );
    // An endpoint on the unspecified address is reached at the gossip address's IP.
    let Target::Peer { endpoint, .. } = &p.targets[0] else {
        panic!("a peer");
    };
    assert_eq!(endpoint.to_string(), "127.0.0.1:7948");
}

#[test]
fn this_node_is_a_candidate_once_it_has_read_and_priced() {
    let mut core = core_with(Vec::new());
    assert_eq!(core.place(T0, &NEED, &PARAMS).skipped.not_counting, 1);
    core.handle_reading(T0, &reading(40.0));
    let p = core.place(T0, &NEED, &PARAMS);
    assert!(matches!(p.targets[..], [Target::Local { .. }]), "{p:?}");
    // Its own book is its room: 4 cores x 0.5 admit 2 vCPUs.
    let big = Need {
        load: GuestLoad {
            vcpus: 3,
            memory_mib: 64,
        },
        ..NEED
    };
    assert_eq!(core.place(T0, &big, &PARAMS).skipped.no_room, 1);
}

#[test]
fn offers_are_distinct_bounded_and_cheapest_of_the_sample_first() {
    let peers = (1..=6)
        .map(|k| offering(k, 40.0, 1_000 + u64::from(k)))
        .collect();
    let mut core = core_with(peers);
    for _ in 0..100 {
        let p = core.place(T0, &NEED, &PARAMS);
        let names: Vec<String> = p.targets.iter().map(name).collect();
        assert_eq!(names.len(), 3);
        let unique: std::collections::BTreeSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 3, "{names:?}");
    }
    let all = PlaceParams {
        choices: 6,
        max_offers: 6,
        ..PARAMS
    };
    let names: Vec<String> = core
        .place(T0, &NEED, &all)
        .targets
        .iter()
        .map(name)
        .collect();
    assert_eq!(names, ["n1", "n2", "n3", "n4", "n5", "n6"]);
}

#[test]
fn two_choices_lean_to_the_cheap_without_herding_onto_the_cheapest() {
    // Four candidates priced in order: the first offer goes to the cheaper
    // of two drawn at random, so the cheapest gets half (3 pairs of 6), the
    // next a third, the third a sixth and the dearest none.
    let peers = (1..=4)
        .map(|k| offering(k, 40.0, 1_000 + u64::from(k)))
        .collect();
    let mut core = core_with(peers);
    let mut firsts = std::collections::BTreeMap::<String, u32>::new();
    let draws = 6_000;
    for _ in 0..draws {
        let p = core.place(T0, &NEED, &PARAMS);
        *firsts.entry(name(&p.targets[0])).or_default() += 1;
    }
    let share = |n: &str| f64::from(firsts.get(n).copied().unwrap_or(0)) / f64::from(draws);
    assert!((share("n1") - 0.5).abs() < 0.03, "{firsts:?}");
    assert!((share("n2") - 1.0 / 3.0).abs() < 0.03, "{firsts:?}");
    assert!((share("n3") - 1.0 / 6.0).abs() < 0.03, "{firsts:?}");
    assert_eq!(share("n4"), 0.0, "{firsts:?}");
    // Equal prices: more headroom wins the pair.
    let mut roomy = offering(1, 40.0, 1_000);
    roomy.report.as_mut().expect("report").headroom = MicroWatts::from_watts(390.0);
    let mut core = core_with(vec![roomy, offering(2, 40.0, 1_000)]);
    assert_eq!(name(&core.place(T0, &NEED, &PARAMS).targets[0]), "n1");
}

#[test]
fn an_offer_whose_bid_is_below_our_price_is_refused_and_reserves_nothing() {
    let mut core = core_with(Vec::new());
    core.handle_reading(T0, &reading(40.0));
    let price = core.quote().expect("priced").price_milli;
    let _ = std::iter::from_fn(|| core.poll_output()).count();
    let load = NEED.load;
    core.offer_guest(T0, load, Some(price - 1));
    let refused = std::iter::from_fn(|| core.poll_output()).any(|o| {
        matches!(
            o,
            crate::Output::Guest(crate::GuestAction::Refuse(
                _,
                crate::Refusal::AboveBid { .. }
            ))
        )
    });
    assert!(refused);
    assert_eq!(core.guest_load(), GuestLoad::default());
    core.offer_guest(T0, load, Some(price));
    let started = std::iter::from_fn(|| core.poll_output())
        .any(|o| matches!(o, crate::Output::Guest(crate::GuestAction::Start(_))));
    assert!(started);
    assert_eq!(core.guest_load(), load);
}
