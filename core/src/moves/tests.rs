use super::*;
use crate::placement::Seen;
use maxwell_gossip::Room;
use maxwell_types::{MicroWatts, MilliCelsius, NodeId};
use std::net::SocketAddr;

const PLACE: PlaceParams = PlaceParams {
    choices: 2,
    max_offers: 3,
    hot_margin: MilliCelsius(10_000),
};

const RULE: MoveParams = MoveParams {
    margin_milli: 500,
    after_ms: 10_000,
    max_per_minute: 2,
    cooldown_ms: 120_000,
    admit_every_ms: 10_000,
    full_load_rise: MilliCelsius(45_000),
};

fn peer(k: u8, celsius: i64, price_milli: u64) -> Seen {
    Seen {
        target: Target::Peer {
            node: NodeId([k; 10]),
            name: format!("n{k}"),
            endpoint: SocketAddr::from(([127, 0, 0, k], 7948)),
            price_milli,
        },
        hottest: MilliCelsius(celsius * 1000),
        critical: MilliCelsius(95_000),
        headroom: MicroWatts(50_000_000),
        cap: MicroWatts(100_000_000),
        room: Room {
            guests: 0,
            free_vcpus: 4,
            free_memory_mib: 1024,
        },
    }
}

fn guest(vm: u64, bid_milli: u64) -> Movable {
    Movable {
        vm,
        load: GuestLoad {
            vcpus: 1,
            memory_mib: 64,
        },
        mcores: 1_000,
        bid_milli,
        arrived_at_ms: None,
    }
}

/// A guest of `vcpus`, each busy.
fn sized(vm: u64, bid_milli: u64, vcpus: u64) -> Movable {
    Movable {
        load: GuestLoad {
            vcpus,
            memory_mib: 64,
        },
        mcores: vcpus * 1000,
        ..guest(vm, bid_milli)
    }
}

fn to(m: &Option<Move>) -> Option<(u64, String)> {
    m.as_ref().map(|m| match &m.target {
        Target::Peer { name, .. } => (m.vm, name.clone()),
        Target::Local { .. } => (m.vm, "local".into()),
    })
}

/// Plans at `now` with our price `price` among two peers priced 1000 and 3000.
fn plan(mover: &mut Mover, now: u64, price: u64, movable: &[Movable]) -> Option<(u64, String)> {
    let peers = vec![peer(1, 40, 1_000), peer(2, 40, 3_000)];
    let mut rng = Rng::new(3);
    to(&mover.plan(now, (price, 4), peers, movable, (&PLACE, &RULE), &mut rng))
}

#[test]
fn a_node_dear_for_long_enough_moves_its_lowest_bid_to_a_cheaper_peer() {
    let mut m = Mover::default();
    let g = [guest(7, 5_000), guest(8, 2_000), guest(9, 9_000)];
    assert_eq!(plan(&mut m, 0, 4_000, &g), None, "dear only just now");
    assert_eq!(
        plan(&mut m, 9_999, 4_000, &g),
        None,
        "not yet for long enough"
    );
    // The lowest bid goes, to the one peer cheaper by the margin that its
    // bid affords (3000 is within 500 of 4000 in any case).
    assert_eq!(plan(&mut m, 10_000, 4_000, &g), Some((8, "n1".into())));
    // Then it waits out `after` again, and the next lowest goes.
    assert_eq!(plan(&mut m, 15_000, 4_000, &g), None);
    assert_eq!(plan(&mut m, 20_000, 4_000, &g), Some((7, "n1".into())));
    // Two in a minute is the bound.
    assert_eq!(plan(&mut m, 45_000, 4_000, &g), None);
    assert_eq!(plan(&mut m, 70_000, 4_000, &g), Some((9, "n1".into())));
}

#[test]
fn the_largest_goes_first_for_the_most_heat_per_move_then_the_lowest_bid() {
    let g = [
        sized(1, 2_000, 1),
        sized(2, 9_000, 3),
        sized(3, 2_000, 3),
        sized(4, 2_000, 2),
    ];
    let mut m = Mover::default();
    assert_eq!(plan(&mut m, 0, 4_000, &g), None);
    // Of the two largest, the lower bid; then the other, whatever it bids.
    assert_eq!(plan(&mut m, 10_000, 4_000, &g), Some((3, "n1".into())));
    assert_eq!(plan(&mut m, 20_000, 4_000, &g), Some((2, "n1".into())));
    assert_eq!(plan(&mut m, 70_000, 4_000, &g), Some((4, "n1".into())));
    // One the peers have no room for is passed over for the next.
    let g = [sized(5, 2_000, 5), sized(6, 2_000, 1)];
    let mut m = Mover::default();
    assert_eq!(plan(&mut m, 0, 4_000, &g), None);
    assert_eq!(plan(&mut m, 10_000, 4_000, &g), Some((6, "n1".into())));
}

#[test]
fn a_guest_goes_only_where_its_heat_leaves_the_peer_no_hotter_than_this_node_is_heading() {
    // Of 4 cores at 45 °C fully loaded, the big guest (2 cores' worth)
    // carries 22.5 °C, the small one 11.25.
    let g = [sized(1, 5_000, 2), sized(2, 5_000, 1)];
    let first = |temps: [i64; 2], peers: Vec<Seen>| {
        let mut m = Mover::default();
        m.observe(0, MilliCelsius(temps[0] * 1000));
        m.observe(TREND_MS, MilliCelsius(temps[1] * 1000));
        let mut rng = Rng::new(3);
        let _ = m.plan(0, (4_000, 4), peers.clone(), &g, (&PLACE, &RULE), &mut rng);
        to(&m.plan(
            RULE.after_ms,
            (4_000, 4),
            peers,
            &g,
            (&PLACE, &RULE),
            &mut rng,
        ))
    };
    // At 70 °C a peer at 55 is cool enough for the small guest only: the
    // big one would take it to 77.5, a hotter spot than this one.
    assert_eq!(
        first([70, 70], vec![peer(1, 55, 1_000)]),
        Some((2, "n1".into()))
    );
    // A cooler peer takes the big one (67.5 there).
    assert_eq!(
        first([70, 70], vec![peer(1, 45, 1_000)]),
        Some((1, "n1".into()))
    );
    // Rising 8 °C in the window, this node is heading for 78: the big one
    // goes to the peer at 55 after all.
    assert_eq!(
        first([62, 70], vec![peer(1, 55, 1_000)]),
        Some((1, "n1".into()))
    );
    // A reading older than the window is no part of the trend.
    let mut m = Mover::default();
    m.observe(0, MilliCelsius(50_000));
    m.observe(TREND_MS + 1, MilliCelsius(70_000));
    assert_eq!(m.heading(), Some(70_000));
    m.observe(TREND_MS + 2, MilliCelsius(71_000));
    assert_eq!(m.heading(), Some(72_000));
    // Cooling by more than 0.3 °C over the window, it waits for what it
    // did to take effect; by 0.3 or less, it does not, and a fall counts
    // as no trend.
    assert_eq!(first([71, 70], vec![peer(1, 45, 1_000)]), None);
    let mut m = Mover::default();
    m.observe(0, MilliCelsius(70_300));
    m.observe(TREND_MS, MilliCelsius(70_000));
    assert!(!m.cooling());
    assert_eq!(m.heading(), Some(70_000));
    // No peer cool enough for either: nothing moves.
    assert_eq!(first([70, 70], vec![peer(1, 60, 1_000)]), None);
    // The check switched off: the big one goes anywhere cheaper, even to
    // a peer hotter than this node.
    let off = MoveParams {
        full_load_rise: MilliCelsius(0),
        ..RULE
    };
    let mut m = Mover::default();
    m.observe(0, MilliCelsius(70_000));
    let mut rng = Rng::new(3);
    let peers = || vec![peer(1, 75, 1_000)];
    let _ = m.plan(0, (4_000, 4), peers(), &g, (&PLACE, &off), &mut rng);
    let planned = m.plan(
        off.after_ms,
        (4_000, 4),
        peers(),
        &g,
        (&PLACE, &off),
        &mut rng,
    );
    assert_eq!(to(&planned), Some((1, "n1".into())));
}

/// The first move a core at `temps` (one reading a second, the last
/// repeated) plans for a 2-core and a 1-core guest, with one cheap peer
/// at 55 °C; `None` if none within 30 s.
fn first_move_of_a_core(temps: &[f64], hottest_known: bool) -> Option<u64> {
    use crate::tests::{config, peer as member, reading, T0};
    let mut core = crate::NodeCore::new(config(), T0, 7);
    let g = [sized(1, 50_000, 2), sized(2, 50_000, 1)];
    for s in 0..30u64 {
        let now = T0 + s * 1000;
        let t = temps[(s as usize).min(temps.len() - 1)];
        let mut r = reading(t);
        if !hottest_known {
            r.hottest = None;
        }
        core.handle_reading(now, &r);
        let mut cool = member(1, 3, 55.0, maxwell_gossip::MemberStatus::Alive);
        let rep = cool.report.as_mut().expect("a report");
        rep.timestamp_ms = now;
        rep.price_milli = 100;
        rep.p2p = Some(SocketAddr::from(([127, 0, 0, 1], 7948)));
        rep.room = Room {
            guests: 0,
            free_vcpus: 8,
            free_memory_mib: 4096,
        };
        core.handle_peers(now, vec![cool], Vec::new());
        if let Some(m) = core.plan_move(now, &g, &PLACE, &RULE) {
            return Some(m.vm);
        }
    }
    None
}

#[test]
fn the_core_feeds_the_rule_its_own_temperature_and_trend() {
    // At a steady 70 °C of 4 cores, the peer at 55 takes the 1-core guest
    // (11.25 °C) but not the 2-core one (22.5).
    assert_eq!(first_move_of_a_core(&[70.0], true), Some(2));
    // Rising from 62 to 70 over 10 s, the node is heading for 78: the
    // 2-core guest goes first.
    let rising: Vec<f64> = (0..=10).map(|s| 62.0 + 0.8 * s as f64).collect();
    assert_eq!(first_move_of_a_core(&rising, true), Some(1));
    // A node that reads no temperature prices itself at its limit, and
    // the check has nothing to go on: the largest goes.
    assert_eq!(first_move_of_a_core(&[70.0], false), Some(1));
}

#[test]
fn no_second_guest_goes_to_a_peer_before_it_takes_one_again() {
    // Both peers are cheaper by the margin; n1 is the cheapest.
    let quick = MoveParams {
        after_ms: 1_000,
        max_per_minute: 6,
        ..RULE
    };
    let g = [guest(7, 5_000), guest(8, 5_000), guest(9, 5_000)];
    let mut m = Mover::default();
    let mut rng = Rng::new(3);
    let mut at = |now| {
        let peers = vec![peer(1, 40, 1_000), peer(2, 40, 3_000)];
        to(&m.plan(now, (4_000, 4), peers, &g, (&PLACE, &quick), &mut rng)).map(|(_, n)| n)
    };
    assert_eq!(at(0), None);
    let first = at(1_000).expect("a move");
    // n1 took one 1 s ago, and takes one per 10 s: the next goes elsewhere.
    let second = at(2_000).expect("a move");
    assert_ne!(first, second);
    // Both have taken one within 10 s: nowhere to send the third yet.
    assert_eq!(at(3_000), None);
    assert!(at(11_000).is_some(), "the first peer takes one again");
}

#[test]
fn a_guest_whose_move_failed_may_go_again_without_its_cooldown() {
    let g = [guest(7, 5_000), guest(8, 6_000)];
    let mut m = Mover::default();
    assert_eq!(plan(&mut m, 0, 4_000, &g), None);
    assert_eq!(plan(&mut m, 10_000, 4_000, &g), Some((7, "n1".into())));
    m.failed(7);
    // The wait still counts the try; then the same guest goes again.
    assert_eq!(plan(&mut m, 15_000, 4_000, &g), None);
    assert_eq!(plan(&mut m, 20_000, 4_000, &g), Some((7, "n1".into())));
    // One that moved stays picked: the next is another.
    assert_eq!(plan(&mut m, 70_000, 4_000, &g), Some((8, "n1".into())));
}

#[test]
fn a_price_within_the_margin_or_a_dip_below_it_restarts_the_wait() {
    let mut m = Mover::default();
    let g = [guest(7, 5_000)];
    assert_eq!(
        plan(&mut m, 0, 1_400, &g),
        None,
        "within the margin of 1000"
    );
    assert_eq!(plan(&mut m, 20_000, 1_400, &g), None);
    assert_eq!(plan(&mut m, 21_000, 4_000, &g), None, "dear from 21 s");
    assert_eq!(plan(&mut m, 25_000, 1_200, &g), None, "cheap again");
    assert_eq!(plan(&mut m, 31_000, 4_000, &g), None, "dear from 31 s");
    assert_eq!(plan(&mut m, 41_000, 4_000, &g), Some((7, "n1".into())));
}

#[test]
fn guests_arrived_or_picked_recently_stay_and_hot_or_unaffordable_peers_are_no_target() {
    let mut m = Mover::default();
    let mut arrived = guest(7, 5_000);
    arrived.arrived_at_ms = Some(0);
    assert_eq!(plan(&mut m, 0, 4_000, &[arrived]), None);
    assert_eq!(
        plan(&mut m, 60_000, 4_000, &[arrived]),
        None,
        "arrived 60 s ago"
    );
    assert_eq!(
        plan(&mut m, 120_000, 4_000, &[arrived]),
        Some((7, "n1".into()))
    );
    // Picked (the move may have failed): not picked again until cooled.
    assert_eq!(plan(&mut m, 200_000, 4_000, &[arrived]), None);
    assert_eq!(
        plan(&mut m, 240_001, 4_000, &[arrived]),
        Some((7, "n1".into()))
    );
    // A bid below every cheaper peer's price: nowhere to go.
    let mut m = Mover::default();
    assert_eq!(plan(&mut m, 0, 4_000, &[guest(3, 900)]), None);
    assert_eq!(plan(&mut m, 10_000, 4_000, &[guest(3, 900)]), None);
    // The only cheaper peer is hot: no move, and no wait running.
    let mut m = Mover::default();
    let mut rng = Rng::new(3);
    let hot = || vec![peer(1, 90, 1_000)];
    let g = [guest(7, 5_000)];
    for now in [0, 10_000, 20_000] {
        let planned = m.plan(now, (4_000, 4), hot(), &g, (&PLACE, &RULE), &mut rng);
        assert_eq!(planned, None);
    }
    // Switched off.
    let mut m = Mover::default();
    let off = MoveParams {
        max_per_minute: 0,
        ..RULE
    };
    for now in [0, 10_000, 20_000] {
        let peers = vec![peer(1, 40, 1_000)];
        assert_eq!(
            m.plan(now, (4_000, 4), peers, &g, (&PLACE, &off), &mut rng),
            None
        );
    }
}

#[test]
fn a_core_without_a_price_plans_no_move() {
    let mut core = crate::NodeCore::new(crate::tests::config(), crate::tests::T0, 7);
    let g = [guest(7, 5_000)];
    assert_eq!(
        core.plan_move(crate::tests::T0 + 60_000, &g, &PLACE, &RULE),
        None
    );
}
