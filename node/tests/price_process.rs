//! The price law inside real agents: three hosts in one rack read fixture
//! sensor files; when the middle one heats up, its price rises and both its
//! neighbours' prices fall, with no coordinator.

mod common;

use maxwell_node::client;
use maxwell_node::http::Status;
use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maxwell");

struct Agent {
    child: Child,
    http: SocketAddr,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn price(a: &Agent) -> (u64, u64) {
    let s: Status = client::get_json(a.http, "/v1/status", Duration::from_secs(2)).expect("status");
    let q = s.price.expect("a quote");
    (q.price_milli, q.target_milli)
}

/// Waits until every agent's price has reached its target (the filter settled,
/// within the hysteresis band); returns the targets.
fn settled(agents: &[Agent], peers_expected: usize) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let quotes: Vec<_> = agents
            .iter()
            .map(|a| {
                client::get_json::<Status>(a.http, "/v1/status", Duration::from_secs(2))
                    .ok()
                    .and_then(|s| s.price)
            })
            .collect();
        let done = quotes.iter().all(|q| {
            q.as_ref().is_some_and(|q| {
                q.fresh_peers == peers_expected && q.price_milli.abs_diff(q.target_milli) <= 20
            })
        });
        if done {
            return agents.iter().map(|a| price(a).1).collect();
        }
        assert!(
            Instant::now() < deadline,
            "prices did not settle: {quotes:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_hot_node_gets_dearer_and_its_neighbours_cheaper() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut seed: Option<SocketAddr> = None;
    let mut agents: Vec<Agent> = Vec::new();
    for i in 0..3 {
        let tree = scratch.path().join(format!("t{i}"));
        common::write_temp(&tree, 60_000);
        std::fs::create_dir_all(tree.join("powercap")).expect("mkdir");
        let data = scratch.path().join(format!("d{i}"));
        // Ports of the kernel's choosing; the first agent's is the others' seed.
        let (name, slot) = (format!("u{}", i + 1), (i + 1).to_string());
        let mut flags: Vec<String> = ["--name", &name, "--rack", "r1", "--slot", &slot]
            .iter()
            .map(|s| s.to_string())
            .collect();
        flags.extend(common::seed_flags(seed));
        if i > 0 {
            common::share_key(&scratch.path().join("d0"), &data);
        }
        let mut child = common::spawn_on_tree(BIN, &tree, &data, &flags);
        let bound = common::served(&mut child, &data);
        seed = seed.or(Some(bound.gossip));
        agents.push(Agent {
            child,
            http: bound.http,
        });
    }
    let before = settled(&agents, 2);
    assert_eq!(
        before[0], before[2],
        "symmetric neighbours, same target: {before:?}"
    );

    common::write_temp(&scratch.path().join("t1"), 92_000);
    // The hot node's target rises; its neighbours', once they hear of it, fall.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t: Vec<u64> = agents.iter().map(|a| price(a).1).collect();
        if t[1] > before[1] && t[0] < before[0] && t[2] < before[2] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets {before:?} became {t:?}: no drain away from heat"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // And the published prices follow the targets there.
    let after = settled(&agents, 2);
    let published: Vec<u64> = agents.iter().map(|a| price(a).0).collect();
    assert!(
        published[1] > before[1] && published[0] < before[0] && published[2] < before[2],
        "{before:?} -> {after:?}, published {published:?}"
    );
    assert!(
        after[0].abs_diff(after[2]) <= 20,
        "neighbours equally close, about equally relieved: {after:?}"
    );
}
