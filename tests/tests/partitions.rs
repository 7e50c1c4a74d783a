//! The turmoil suite: cluster scenarios written as data, each run under
//! several seeds (every random choice draws from it, so a run replays). Bounds, not exact times.

use maxwell_tests::harness::{run, Op, Scenario, Seen, Who};
use std::time::Duration;

const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];
const GOSSIP: Duration = Duration::from_millis(200);

fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

fn each_seed(name: &'static str, ops: Vec<Op>) {
    for seed in SEEDS {
        let report = run(&Scenario {
            name,
            seed,
            gossip_interval: GOSSIP,
            ops: ops.clone(),
        });
        eprintln!("{name} seed {seed}: expectation waits {:?}", report.waits);
    }
}

fn cold_start(n: usize) -> Vec<Op> {
    vec![Op::AddNodes(n), Op::ExpectConverged { within: s(10) }]
}

/// Remembers every price once it has settled on the converged mesh.
fn settled() -> [Op; 1] {
    [Op::MarkPrices]
}

#[test]
fn cold_start_converges_heat_reaches_all_and_prices_follow() {
    let mut ops = cold_start(8);
    ops.extend(settled());
    ops.extend([
        Op::Heat {
            node: 5,
            celsius: 88.5,
        },
        Op::ExpectHeat {
            node: 5,
            celsius: 88.5,
            seen_by: Who::All,
            within: s(3),
        },
        // The heated node (slot 6) gets dearer; its rack neighbours cheaper.
        Op::ExpectDearer {
            nodes: Who::Nodes(vec![5]),
            within: s(5),
        },
        Op::ExpectCheaper {
            nodes: Who::Nodes(vec![3, 4, 6, 7]),
            within: s(10),
        },
    ]);
    each_seed("cold start, heat", ops);
}

#[test]
fn split_into_halves_and_heal() {
    let (a, b) = ((0..4).collect::<Vec<_>>(), (4..8).collect::<Vec<_>>());
    let mut ops = cold_start(8);
    ops.extend(settled());
    ops.extend([
        Op::Cut {
            a: a.clone(),
            b: b.clone(),
        },
        // Neighbours lost across the cut never make anyone cheaper; the
        // nodes next to the cut (slots 4 and 5) get dearer.
        Op::ExpectNeverCheaper {
            nodes: Who::All,
            over: s(15),
        },
        Op::ExpectDearer {
            nodes: Who::Nodes(vec![3, 4]),
            within: s(5),
        },
        // Across the cut, reports go stale and peers are declared dead: never counted.
        Op::ExpectSeen {
            node: 6,
            seen: Seen::NotCounted,
            seen_by: Who::Nodes(a.clone()),
            within: s(15),
        },
        Op::ExpectSeen {
            node: 1,
            seen: Seen::NotCounted,
            seen_by: Who::Nodes(b.clone()),
            within: s(15),
        },
        // Within a half, heat still flows.
        Op::Heat {
            node: 2,
            celsius: 77.0,
        },
        Op::ExpectHeat {
            node: 2,
            celsius: 77.0,
            seen_by: Who::Nodes(vec![0, 1, 3]),
            within: s(3),
        },
        Op::HealAll,
        Op::ExpectConverged { within: s(15) },
        Op::ExpectHeat {
            node: 2,
            celsius: 77.0,
            seen_by: Who::All,
            within: s(3),
        },
    ]);
    each_seed("halves", ops);
}

#[test]
fn an_isolated_node_is_dropped_then_rejoins() {
    let mut ops = cold_start(6);
    ops.extend(settled());
    ops.extend([
        Op::Isolate(3),
        Op::ExpectNeverCheaper {
            nodes: Who::All,
            over: s(10),
        },
        Op::ExpectSeen {
            node: 3,
            seen: Seen::Dead,
            seen_by: Who::All,
            within: s(20),
        },
        Op::ExpectNeverCheaper {
            nodes: Who::All,
            over: s(2),
        },
        Op::HealAll,
        Op::ExpectConverged { within: s(15) },
    ]);
    each_seed("isolate", ops);
}

#[test]
fn a_one_way_cut_never_makes_a_node_look_cool() {
    let mut ops = cold_start(5);
    ops.extend(settled());
    ops.extend([
        // n4 hears everyone, no one hears n4.
        Op::CutOneWay {
            from: vec![4],
            to: vec![0, 1, 2, 3],
        },
        Op::Heat {
            node: 4,
            celsius: 93.0,
        },
        Op::ExpectSeen {
            node: 4,
            seen: Seen::NotCounted,
            seen_by: Who::Nodes(vec![0, 1, 2, 3]),
            within: s(15),
        },
        // Unheard, n4's heat can relieve no one.
        Op::ExpectNeverCheaper {
            nodes: Who::Nodes(vec![0, 1, 2, 3]),
            over: s(2),
        },
        Op::HealAll,
        Op::ExpectHeat {
            node: 4,
            celsius: 93.0,
            seen_by: Who::All,
            within: s(10),
        },
    ]);
    each_seed("one-way", ops);
}

#[test]
fn an_urgent_change_goes_round_a_one_way_cut_and_through_loss() {
    let mut ops = cold_start(6);
    ops.extend(settled());
    ops.extend([
        // n2 cannot hear n1 (n1 hears n2); a fifth of all datagrams are lost.
        Op::CutOneWay {
            from: vec![1],
            to: vec![2],
        },
        Op::SetLoss(0.2),
        Op::Heat {
            node: 1,
            celsius: 88.0,
        },
        // Pushed: one hop to those it reaches (a lost push waits for a digest).
        Op::ExpectHeat {
            node: 1,
            celsius: 88.0,
            seen_by: Who::Nodes(vec![0, 3, 4, 5]),
            within: s(5),
        },
        // n2 gets it from the others' digests, and still counts n1 (indirect
        // probes answer for it).
        Op::ExpectHeat {
            node: 1,
            celsius: 88.0,
            seen_by: Who::Nodes(vec![2]),
            within: s(8),
        },
    ]);
    each_seed("urgent-one-way", ops);
}

#[test]
fn crash_is_detected_and_bounce_rejoins_with_a_new_generation() {
    let mut ops = cold_start(6);
    ops.extend(settled());
    ops.extend([
        Op::Crash(2),
        // A dead neighbour is priced as stale: dearer, never cheaper.
        Op::ExpectNeverCheaper {
            nodes: Who::All,
            over: s(10),
        },
        Op::ExpectSeen {
            node: 2,
            seen: Seen::Dead,
            seen_by: Who::All,
            within: s(20),
        },
        Op::ExpectDearer {
            nodes: Who::Nodes(vec![1, 3]),
            within: s(5),
        },
        Op::Bounce(2),
        Op::ExpectConverged { within: s(15) },
        Op::Heat {
            node: 2,
            celsius: 66.0,
        },
        Op::ExpectHeat {
            node: 2,
            celsius: 66.0,
            seen_by: Who::All,
            within: s(3),
        },
    ]);
    each_seed("crash+bounce", ops);
}

#[test]
fn graceful_leave_is_seen_within_a_round_or_two() {
    let mut ops = cold_start(6);
    ops.extend([
        Op::Leave(1),
        // Far quicker than failure detection (see the crash scenario).
        Op::ExpectSeen {
            node: 1,
            seen: Seen::Left,
            seen_by: Who::All,
            within: s(2),
        },
    ]);
    each_seed("leave", ops);
}

#[test]
fn loss_and_latency_slow_but_do_not_stop_convergence() {
    for loss in [0.1, 0.3] {
        let mut ops = vec![Op::SetLoss(loss)];
        ops.extend(cold_start(8));
        ops.extend([
            Op::Heat {
                node: 7,
                celsius: 81.0,
            },
            Op::ExpectHeat {
                node: 7,
                celsius: 81.0,
                seen_by: Who::All,
                within: s(6),
            },
        ]);
        each_seed("loss", ops);
    }
    let mut ops = vec![Op::SetLatency(Duration::from_millis(150))];
    ops.extend(cold_start(8));
    ops.extend([
        Op::Heat {
            node: 0,
            celsius: 71.0,
        },
        Op::ExpectHeat {
            node: 0,
            celsius: 71.0,
            seen_by: Who::All,
            within: s(6),
        },
    ]);
    each_seed("latency", ops);
}

#[test]
fn a_rogue_host_is_refused_and_counted_everywhere() {
    let mut ops = cold_start(5);
    ops.extend([
        Op::Heat {
            node: 1,
            celsius: 62.0,
        },
        Op::ExpectHeat {
            node: 1,
            celsius: 62.0,
            seen_by: Who::All,
            within: s(3),
        },
        Op::AddRogue { victim: 1 },
        // Every honest node but the victim (the rogue sends it nothing).
        Op::ExpectRejected {
            reason: "bad-record",
            at_least: 1,
            by: Who::Nodes(vec![0, 2, 3, 4]),
            within: s(10),
        },
        Op::ExpectRejected {
            reason: "stale-record",
            at_least: 1,
            by: Who::Nodes(vec![0, 2, 3, 4]),
            within: s(10),
        },
        Op::ExpectRejected {
            reason: "impostor",
            at_least: 1,
            by: Who::Nodes(vec![0, 2, 3, 4]),
            within: s(10),
        },
        // The victim's real heat stands; the forged FORGED_CELSIUS is believed nowhere.
        Op::Heat {
            node: 1,
            celsius: 64.0,
        },
        Op::ExpectHeat {
            node: 1,
            celsius: 64.0,
            seen_by: Who::All,
            within: s(5),
        },
        Op::Wait(s(3)),
        Op::ExpectHeat {
            node: 1,
            celsius: 64.0,
            seen_by: Who::All,
            within: s(1),
        },
    ]);
    each_seed("rogue", ops);
}

#[test]
fn an_outsider_without_the_key_changes_no_view_and_draws_no_reply() {
    let mut ops = cold_start(5);
    ops.extend([
        Op::AddOutsider { victim: 1 },
        // The seeds (n0..n2) are flooded; each refuses every kind it sent.
        Op::ExpectRejected {
            reason: "bad-tag",
            at_least: 20,
            by: Who::Nodes(vec![0, 1, 2]),
            within: s(5),
        },
        Op::ExpectRejected {
            reason: "unknown-key",
            at_least: 20,
            by: Who::Nodes(vec![0, 1, 2]),
            within: s(5),
        },
        Op::ExpectRejected {
            reason: "not-sealed",
            at_least: 40,
            by: Who::Nodes(vec![0, 1, 2]),
            within: s(5),
        },
        // "n1 is down" and the phantoms were believed nowhere: n1 still
        // counts everywhere and no one gained a member (any reply would have
        // failed the outsider, and so the run).
        Op::Wait(s(10)),
        Op::ExpectSeen {
            node: 1,
            seen: Seen::Counted,
            seen_by: Who::All,
            within: s(1),
        },
        Op::ExpectConverged { within: s(1) },
    ]);
    each_seed("outsider", ops);
}

#[test]
fn a_larger_mesh_converges_and_detects_a_crash() {
    let mut ops = cold_start(24);
    ops.extend([
        Op::Heat {
            node: 17,
            celsius: 90.0,
        },
        Op::ExpectHeat {
            node: 17,
            celsius: 90.0,
            seen_by: Who::All,
            within: s(5),
        },
        Op::Crash(5),
        Op::ExpectSeen {
            node: 5,
            seen: Seen::NotCounted,
            seen_by: Who::All,
            within: s(20),
        },
    ]);
    let report = run(&Scenario {
        name: "24 nodes",
        seed: 11,
        gossip_interval: GOSSIP,
        ops,
    });
    eprintln!("24 nodes: expectation waits {:?}", report.waits);
}
