//! mDNS seed discovery (`p2p.mdns`, off by default): two agents of one
//! cluster with no seeds find each other on the network segment and form
//! one mesh; with the default, they stay apart.

mod common;

use common::mesh::{mesh_of, until_members, Node};
use std::path::Path;
use std::time::Duration;

/// Two agents sharing a cluster key, neither given a seed.
fn pair(dir: &Path, extra: &[&str]) -> Vec<Node> {
    let layout = [("left", "r1", 1, 40.0), ("right", "r1", 2, 40.0)];
    let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    mesh_of(dir, &layout, &extra, false)
}

/// mDNS answers only with addresses on the interface it was asked on, so
/// the test needs one that is up besides loopback.
fn segment() -> bool {
    let up = std::fs::read_dir("/sys/class/net")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            e.file_name() != "lo"
                && std::fs::read_to_string(e.path().join("operstate"))
                    .is_ok_and(|s| s.trim() == "up")
        });
    if !up {
        eprintln!("SKIP: no network interface is up besides loopback: mDNS has no segment to find peers on");
    }
    up
}

#[test]
fn agents_with_mdns_find_each_other_without_seeds() {
    if !segment() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // The endpoint listens on every interface, so mDNS has an address to
    // give on the segment's; gossip stays on loopback (the answer to a
    // hello names it).
    let flags = [
        "--set",
        "p2p.mdns=true",
        "--set",
        "p2p.listen_addr=\"0.0.0.0:0\"",
    ];
    let nodes = pair(dir.path(), &flags);
    for n in &nodes {
        until_members(n, "the other agent found by mDNS and counting", |m| {
            m.members.len() == 2 && m.members.iter().all(|r| r.counts)
        });
    }
}

#[test]
fn by_default_agents_without_seeds_stay_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nodes = pair(dir.path(), &[]);
    std::thread::sleep(Duration::from_secs(3));
    for n in &nodes {
        assert_eq!(n.members().members.len(), 1, "{} found a peer", n.name);
    }
}
