//! Moving running guests between real agents on loopback
//! (docs/placement.md, "Moving a guest"): a KVM workload guest moves with
//! its wallet and counts on from where it stopped; a crash of either side
//! at any point of a move never leaves the guest running on both, and the
//! wallet ends up in exactly one ledger; a node that stays dear moves its
//! guests to a cheaper one by itself.

mod common;

use common::mesh::{converged, mesh, price_of, until_members, Node};
use maxwell_market::Totals;
use maxwell_node::http::guests::GuestRow;
use maxwell_node::p2p::migrate::Moved;
use serde_json::json;
use std::time::{Duration, Instant};

fn kvm() -> bool {
    let ok = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !ok {
        eprintln!("SKIP: /dev/kvm cannot be opened; the KVM migration tests need it");
    }
    ok
}

/// A workload guest that runs until killed, bidding high, with a wallet.
fn spec(name: &str) -> String {
    json!({"name": name, "kind": "workload", "vcpus": 1, "memory_mib": 4,
        "payload": "count", "bid_milli": 50_000, "wallet_milli": 1_000_000})
    .to_string()
}

fn start(node: &Node, name: &str) -> GuestRow {
    let body = node
        .api
        .post("/v1/guests", &spec(name), Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    serde_json::from_str(&body).expect("a guest")
}

fn guest(node: &Node, name: &str) -> Option<GuestRow> {
    node.guests().guests.into_iter().find(|g| g.name == name)
}

fn totals(node: &Node) -> Totals {
    node.guests().market.expect("a market").totals
}

fn move_to(node: &Node, id: u64, to: &str) -> Result<Moved, String> {
    let body = json!({ "to": to }).to_string();
    node.api
        .post(
            &format!("/v1/guests/{id}/move"),
            &body,
            Duration::from_secs(60),
        )
        .map(|b| serde_json::from_str(&b).expect("a move"))
        .map_err(|e| e.to_string())
}

fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The guest `name` runs (not paused) on at most one of `nodes`.
fn running_on(nodes: &[Node], name: &str) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| guest(n, name).is_some_and(|g| g.state.as_str() == "running"))
        .map(|n| n.name.clone())
        .collect()
}

fn flags(moves_per_minute: u32) -> Vec<String> {
    vec![
        "--set".into(),
        format!("placement.max_moves_per_minute={moves_per_minute}"),
        "--set".into(),
        "p2p.offer_timeout_ms=2000".into(),
    ]
}

#[test]
fn a_running_kvm_guest_moves_with_its_wallet_and_counts_on() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = [("src", "r1", 1, 70.0), ("dst", "r1", 2, 35.0)];
    let nodes = mesh(dir.path(), &layout, &flags(0));
    converged(&nodes, 2);
    let g = start(&nodes[0], "mover");
    let before = until("the guest counting", 10, || {
        guest(&nodes[0], "mover").filter(|g| g.progress > 1000)
    });
    let wallet = before.market.as_ref().expect("an account").wallet_milli;
    let moved = move_to(&nodes[0], g.id, "dst").expect("moved");
    assert!(moved.restored, "{moved:?}");
    assert_eq!(moved.to, "dst");
    let carried = moved.wallet_milli.expect("a wallet");
    assert!(
        carried <= wallet && carried > wallet - 10_000,
        "{carried} of {wallet}"
    );
    // Gone from the source; running on the target, said to come from it,
    // with the wallet and from where it stopped.
    assert!(guest(&nodes[0], "mover").is_none());
    let there = guest(&nodes[1], "mover").expect("on the target");
    assert_eq!(there.id, moved.to_guest);
    let origin = there.origin.clone().expect("an origin");
    assert!(
        origin.moved && !origin.by_rule && origin.name == "src",
        "an operator's move: {origin:?}"
    );
    assert!(
        there.progress >= before.progress,
        "{there:#?} went back from {}",
        before.progress
    );
    let account = there.market.clone().expect("an account there");
    assert!(account.wallet_milli <= carried && account.wallet_milli > carried - 10_000);
    let mut last = there.progress;
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        let now = guest(&nodes[1], "mover").expect("still there").progress;
        assert!(now >= last, "the counter went back: {now} < {last}");
        last = now;
    }
    assert!(last > there.progress, "it does not run on the target");
    // The wallet left one ledger and arrived in the other, whole.
    let (out, inn) = (totals(&nodes[0]), totals(&nodes[1]));
    assert_eq!(out.escrow_micro, 0, "{out:?}");
    assert_eq!(out.moved_out_micro, inn.moved_in_micro, "{out:?} {inn:?}");
    assert_eq!(
        out.moved_out_micro,
        carried * 1000 + out.moved_out_micro % 1000
    );
    // The operator's command moves it back.
    let out = std::process::Command::new(common::mesh::BIN)
        .args(["move", &format!("g{}", moved.to_guest), "--to", "src"])
        .args(["--http", &nodes[1].api.addr.to_string()])
        .arg("--data-dir")
        .arg(&nodes[1].data)
        .output()
        .expect("maxwell move");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("moved to src as g") && text.contains("restored"),
        "{text}"
    );
    assert_eq!(running_on(&nodes, "mover"), ["src"]);
}

/// Two agents on the process backend, `src` and `dst`, converged, with the
/// heat rule off.
fn process_pair(dir: &std::path::Path) -> Vec<Node> {
    let layout = [("src", "r1", 1, 40.0), ("dst", "r1", 2, 40.0)];
    let mut extra = flags(0);
    extra.extend(["--set".into(), "guests.backend=\"process\"".into()]);
    let nodes = mesh(dir, &layout, &extra);
    converged(&nodes, 2);
    nodes
}

#[test]
fn a_process_guest_restarts_on_the_target_with_its_wallet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = process_pair(dir.path());
    let g = start(&nodes[0], "proc");
    until("the guest counting", 10, || {
        guest(&nodes[0], "proc").filter(|g| g.progress > 0)
    });
    let moved = move_to(&nodes[0], g.id, "dst").expect("moved");
    assert!(!moved.restored, "a process guest restarts: {moved:?}");
    assert!(guest(&nodes[0], "proc").is_none());
    let there = until("running on the target", 10, || {
        guest(&nodes[1], "proc").filter(|g| g.state.as_str() == "running" && g.progress > 0)
    });
    assert_eq!(there.backend.as_str(), "process");
    let wallet = there.market.expect("an account there").wallet_milli;
    assert!(wallet > 0 && wallet <= moved.wallet_milli.expect("a wallet"));
    assert_eq!(
        totals(&nodes[0]).moved_out_micro,
        totals(&nodes[1]).moved_in_micro
    );
}

#[test]
fn a_guest_an_operator_paused_does_not_move_and_stays_paused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = process_pair(dir.path());
    let g = start(&nodes[0], "held-still");
    let t = Duration::from_secs(10);
    nodes[0]
        .api
        .post(&format!("/v1/guests/{}/pause", g.id), "", t)
        .expect("paused");
    let err = move_to(&nodes[0], g.id, "dst").expect_err("an operator's pause does not move");
    assert!(err.contains("paused by an operator"), "{err}");
    let here = guest(&nodes[0], "held-still").expect("still on the source");
    assert_eq!(here.state.as_str(), "paused");
    assert!(guest(&nodes[1], "held-still").is_none());
}

#[test]
fn a_crash_of_either_side_mid_move_leaves_one_copy_and_one_wallet() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The seed never crashes (a restarted node finds the mesh through it).
    let layout = [
        ("seed", "r1", 1, 40.0),
        ("a", "r1", 2, 40.0),
        ("b", "r1", 3, 40.0),
    ];
    let mut nodes = mesh(dir.path(), &layout, &flags(0));
    converged(&nodes, 3);
    // Each round moves a guest from a to b while one side is killed after
    // a delay that falls somewhere in the move, then restarts it.
    // A move takes some tens of ms here (its dial included): the delays
    // sweep it, so the kill falls before the offer, while the guest is
    // held there, after the wallet left and after the commit.
    let rounds = [2usize, 1]
        .into_iter()
        .flat_map(|victim| (0..12).map(move |k| (victim, k * 8)));
    for (round, (victim, delay_ms)) in rounds.enumerate() {
        let name = format!("g{round}");
        let g = start(&nodes[1], &name);
        until("the guest counting", 10, || {
            guest(&nodes[1], &name).filter(|g| g.progress > 0)
        });
        let api = nodes[1].api.clone();
        let id = g.id;
        let mover = std::thread::spawn(move || {
            let body = json!({ "to": "b" }).to_string();
            api.post(
                &format!("/v1/guests/{id}/move"),
                &body,
                Duration::from_secs(60),
            )
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        nodes[victim].crash_and_restart();
        let answer = mover.join().expect("mover");
        let copies: Vec<String> = nodes
            .iter()
            .filter(|n| guest(n, &name).is_some())
            .map(|n| n.name.clone())
            .collect();
        eprintln!(
            "round {round}: killed {} after {delay_ms} ms: {answer:?}; copies on {copies:?}",
            nodes[victim].name
        );
        converged(&nodes, 3);
        // Never on both; and once every pending transfer is settled, the
        // credits that left a are those that arrived at b.
        let settled = until("every transfer settled", 30, || {
            assert!(running_on(&nodes, &name).len() <= 1, "{name} runs twice");
            let (ta, tb) = (totals(&nodes[1]), totals(&nodes[2]));
            (ta.escrow_micro == 0).then_some((ta, tb))
        });
        let (ta, tb) = settled;
        assert_eq!(
            ta.moved_out_micro, tb.moved_in_micro,
            "round {round}: {ta:?} {tb:?}"
        );
        for n in &nodes {
            if let Some(g) = guest(n, &name) {
                let _ = n.api.post(
                    &format!("/v1/guests/{}/kill", g.id),
                    "",
                    Duration::from_secs(10),
                );
            }
        }
    }
}

#[test]
fn a_target_stalled_mid_move_never_runs_the_guest_beside_its_source() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = [("a", "r1", 1, 40.0), ("b", "r1", 2, 40.0)];
    let nodes = mesh(dir.path(), &layout, &flags(0));
    converged(&nodes, 2);
    let g = start(&nodes[0], "stalled");
    until("the guest counting", 10, || {
        guest(&nodes[0], "stalled").filter(|g| g.progress > 0)
    });
    // The offer lands in a frozen target's socket: the source gives up
    // and the guest runs on where it was.
    nodes[1].signal(libc::SIGSTOP);
    let refused = move_to(&nodes[0], g.id, "b").expect_err("a frozen target takes nothing");
    assert!(refused.contains("did not take the guest"), "{refused}");
    nodes[1].signal(libc::SIGCONT);
    // Awake, the target takes the late offer and holds the copy, paused
    // before it ran, until its hold ends; it never runs there.
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        assert_eq!(running_on(&nodes, "stalled"), ["a"]);
        if let Some(copy) = guest(&nodes[1], "stalled") {
            assert_eq!(copy.state.as_str(), "paused", "{copy:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        guest(&nodes[1], "stalled").is_none(),
        "the held copy outlived its hold"
    );
    let t = totals(&nodes[0]);
    assert_eq!((t.escrow_micro, t.moved_out_micro), (0, 0), "{t:?}");
}

#[test]
fn a_node_that_stays_dear_moves_a_guest_to_a_cheaper_one() {
    if !kvm() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The hot node prices well above the cool one; the rule waits 2 s
    // (the default 3 s).
    let layout = [("hot", "r1", 1, 88.0), ("cool", "r2", 1, 30.0)];
    let mut extra = flags(2);
    extra.extend(["--set".into(), "placement.move_after_ms=2000".into()]);
    let nodes = mesh(dir.path(), &layout, &extra);
    converged(&nodes, 2);
    until_members(&nodes[0], "the hot node dearer by the margin", |m| {
        price_of(m, "hot") > price_of(m, "cool") + 500
    });
    start(&nodes[0], "drifter");
    let there = until("the guest moved to the cool node", 40, || {
        guest(&nodes[1], "drifter")
    });
    // Moved by the rule, which the target paces (an operator's move is not).
    assert!(there
        .origin
        .is_some_and(|o| o.moved && o.by_rule && o.name == "hot"));
    until("gone from the hot node", 10, || {
        guest(&nodes[0], "drifter").is_none().then_some(())
    });
    assert_eq!(running_on(&nodes, "drifter"), ["cool"]);
    // The cool node is cheaper: it does not send the guest back.
    std::thread::sleep(Duration::from_secs(4));
    assert!(guest(&nodes[1], "drifter").is_some());
}
