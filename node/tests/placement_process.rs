//! Placement across real agents on loopback: `POST /v1/submit` to any node
//! lands the guest on a cool, cheap one over the p2p endpoint; submitters
//! working at once spread their guests; hot, dear and dead nodes get none;
//! and a target that stalls or crashes in the middle of an offer leaves the
//! guest in exactly one place.

mod common;

use common::mesh::{converged, mesh, offers_received, price_of, running, until_members, BIN};
use maxwell_node::client::Api;
use maxwell_node::http::submit::Submitted;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A workload guest that finishes at once (keeping its share), bidding `bid`.
fn spec(name: &str, bid: u64) -> String {
    json!({"name": name, "kind": "workload", "vcpus": 1, "memory_mib": 16,
        "payload": "count", "stop_after": 1, "bid_milli": bid, "wallet_milli": 1_000_000_000u64})
    .to_string()
}

fn submit(api: &Api, spec: &str) -> Submitted {
    let body = api
        .post("/v1/submit", spec, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("submit: {e}"));
    serde_json::from_str(&body).expect("a placement")
}

#[test]
fn submissions_land_on_cool_cheap_nodes_and_spread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Room for 4 one-vCPU guests on every node, whatever the machine.
    let fraction = format!("guests.cpu_fraction={}", 4.0 / cores as f64);
    let layout = [
        ("hot", "r1", 1, 92.0),
        ("warm", "r1", 2, 80.0),
        ("cool-a", "r2", 1, 40.0),
        ("cool-b", "r2", 2, 41.0),
        ("cool-c", "r2", 3, 42.0),
        ("frozen", "r2", 4, 30.0),
    ];
    let extra = ["--set".to_string(), fraction];
    let nodes = mesh(dir.path(), &layout, &extra);
    converged(&nodes, layout.len());
    // The bid sits between the dearest cool node and the warm one.
    let view = nodes[0].members();
    let cool = ["cool-a", "cool-b", "cool-c"];
    let dearest_cool = cool.iter().map(|n| price_of(&view, n)).max().expect("cool");
    let warm = price_of(&view, "warm");
    assert!(
        warm > dearest_cool + 20,
        "the warm node must be dearer: {view:#?}"
    );
    let bid = dearest_cool + (warm - dearest_cool) / 2;
    // The coolest, cheapest node stops answering: it must be passed over
    // once the mesh finds it dead.
    let frozen = &nodes[5];
    frozen.signal(libc::SIGSTOP);
    for n in &nodes[..5] {
        until_members(n, "the frozen node dead", |m| {
            m.members.iter().any(|r| r.name == "frozen" && !r.counts)
        });
    }
    // Three submitters at once, three guests each, to the hot node, the
    // warm one and a cool one.
    let submitters = [0usize, 1, 2];
    let landed: Vec<Submitted> = std::thread::scope(|s| {
        let handles: Vec<_> = submitters
            .iter()
            .map(|&i| {
                let (api, name) = (nodes[i].api.clone(), nodes[i].name.clone());
                s.spawn(move || {
                    (0..3)
                        .map(|k| submit(&api, &spec(&format!("{name}-{k}"), bid)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("submitter"))
            .collect()
    });
    assert_eq!(landed.len(), 9);
    let mut per_node = BTreeMap::<String, usize>::new();
    for s in &landed {
        assert!(
            cool.contains(&s.name.as_str()),
            "landed on {}: {s:#?}",
            s.name
        );
        *per_node.entry(s.name.clone()).or_default() += 1;
    }
    // Each cool node holds 4 at most, so the 9 are spread over all three.
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|&n| n <= 4), "{per_node:?}");
    // Each guest runs in exactly one place, and says who sent it.
    frozen.signal(libc::SIGCONT);
    let runs = running(&nodes);
    assert_eq!(runs.len(), 9, "{runs:#?}");
    for (guest, places) in &runs {
        assert_eq!(places.len(), 1, "{guest}: {places:?}");
        let (node, origin) = &places[0];
        assert!(cool.contains(&node.as_str()), "{guest} on {node}");
        assert!(
            guest.starts_with(origin.as_str()),
            "{guest} came from {origin}"
        );
    }
}

#[test]
fn a_target_that_stalls_or_crashes_mid_offer_leaves_the_guest_in_one_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The submitter gives an offer two seconds. A target frozen just
    // before a submission is still alive in its view when it is offered
    // the guest (the mesh finds it dead about a second later).
    let extra: Vec<String> = ["--set", "p2p.offer_timeout_ms=2000"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let layout = [
        ("submitter", "r1", 1, 92.0),
        ("cheap", "r2", 1, 35.0),
        ("spare", "r2", 2, 78.0),
    ];
    let mut nodes = mesh(dir.path(), &layout, &extra);
    converged(&nodes, layout.len());
    // The spare's heat prices it above the cheap node (the price moves
    // there at a bounded rate).
    until_members(&nodes[0], "the spare dearer than the cheap node", |m| {
        price_of(m, "spare") > price_of(m, "cheap") + 100
    });
    let bid = 10_000;
    // Two candidates, both drawn: the cheap one is offered first, and takes it.
    let first = submit(&nodes[0].api, &spec("one", bid));
    assert_eq!(first.name, "cheap", "{first:#?}");

    // The cheap node stops mid-offer: the offer times out, the spare takes it.
    nodes[1].signal(libc::SIGSTOP);
    let second = submit(&nodes[0].api, &spec("two", bid));
    assert_eq!(second.name, "spare", "{second:#?}");
    assert_eq!(second.offers.len(), 2, "{second:#?}");
    assert_eq!(second.offers[0].name, "cheap");
    assert_ne!(second.offers[0].outcome, "started");
    // ... and crashes holding it. Restarted, it runs neither guest (they
    // died with it), and its ledger has no account of the second.
    nodes[1].crash_and_restart();
    let after = nodes[1].guests();
    assert!(after.guests.is_empty(), "{:#?}", after.guests);
    let closed: Vec<&str> = after
        .market
        .as_ref()
        .map(|m| m.closed.iter().map(|a| a.name.as_str()).collect())
        .unwrap_or_default();
    assert!(!closed.contains(&"two"), "{closed:?}");
    let runs = running(&nodes);
    assert_eq!(
        runs["two"],
        [("spare".to_string(), "submitter".to_string())]
    );
    assert!(!runs.contains_key("one"), "{runs:#?}");
    let two = nodes[2]
        .guests()
        .guests
        .into_iter()
        .find(|g| g.name == "two")
        .and_then(|g| g.market)
        .expect("the spare's account of two");
    assert!(
        two.wallet_milli <= 1_000_000_000 && two.wallet_milli > 999_000_000,
        "{two:#?}"
    );

    // Stalled, then awake again: the late offer's guest must not run on
    // the cheap node beside the copy the spare took.
    converged(&nodes, layout.len());
    until_members(
        &nodes[0],
        "the restarted cheap node cheaper than the spare",
        |m| price_of(m, "spare") > price_of(m, "cheap") + 100,
    );
    let third = submit(&nodes[0].api, &spec("three", bid));
    assert_eq!(third.name, "cheap", "{third:#?}");
    nodes[1].signal(libc::SIGSTOP);
    let fourth = submit(&nodes[0].api, &spec("four", bid));
    assert_eq!(fourth.name, "spare", "{fourth:#?}");
    nodes[1].signal(libc::SIGCONT);
    // Awake, the cheap node takes the late offer (it was in its socket),
    // holds the guest paused before it ran, and kills it: its answer
    // cannot go out, or no confirmation comes within its hold (2 s). While
    // it is there it never runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        for g in nodes[1].guests().guests.iter().filter(|g| g.name == "four") {
            assert_eq!(g.state.as_str(), "paused", "{g:#?}");
            assert_eq!(g.progress, 0, "the held guest ran: {g:#?}");
        }
        let taken = offers_received(&nodes[1]);
        if taken.get("started") == Some(&2)
            && taken.get("undelivered").unwrap_or(&0) + taken.get("expired").unwrap_or(&0) == 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the late offer was not taken and killed: {taken:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let runs = running(&nodes);
    assert_eq!(
        runs["four"],
        [("spare".to_string(), "submitter".to_string())],
        "{runs:#?}"
    );
    assert_eq!(
        runs["three"],
        [("cheap".to_string(), "submitter".to_string())],
        "{runs:#?}"
    );
    // The operator's command does the same, and says where the guest went.
    converged(&nodes, layout.len());
    let file = dir.path().join("five.json");
    std::fs::write(&file, spec("five", bid)).expect("spec file");
    let out = std::process::Command::new(BIN)
        .arg("submit")
        .arg(&file)
        .args(["--http", &nodes[0].api.addr.to_string()])
        .arg("--data-dir")
        .arg(&nodes[0].data)
        .output()
        .expect("maxwell submit");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("guest five runs on cheap as g"), "{text}");
}
