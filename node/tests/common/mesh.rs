//! A mesh of real agents on loopback, each on its own fixture tree, for
//! the process tests that need several nodes.

use maxwell_node::client::{self, Api};
use maxwell_node::http::guests::GuestList;
use maxwell_node::http::Members;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_maxwell");

/// One agent of a test mesh; killed on drop.
pub struct Node {
    pub name: String,
    pub child: Child,
    pub tree: PathBuf,
    pub data: PathBuf,
    pub api: Api,
    pub flags: Vec<String>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    pub fn signal(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, sig) };
    }

    /// SIGKILL, then the same agent again on its data dir (a new generation).
    pub fn crash_and_restart(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
        let mut child = super::spawn_on_tree(BIN, &self.tree, &self.data, &self.flags);
        let bound = super::served(&mut child, &self.data);
        self.child = child;
        self.api.addr = bound.http;
    }

    pub fn guests(&self) -> GuestList {
        self.api
            .get_json("/v1/guests", Duration::from_secs(5))
            .expect("guests")
    }

    pub fn members(&self) -> Members {
        self.api
            .get_json("/v1/members", Duration::from_secs(5))
            .expect("members")
    }
}

/// Starts one agent per `(name, rack, slot, °C)` on its own fixture tree,
/// all in one cluster, each with `extra` flags; all but the first are
/// given the first as their seed when `seeded`.
pub fn mesh_of(
    dir: &Path,
    layout: &[(&str, &str, u16, f64)],
    extra: &[String],
    seeded: bool,
) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut seed = None;
    for (i, (name, rack, slot, celsius)) in layout.iter().enumerate() {
        let tree = dir.join(format!("tree{i}"));
        super::write_tree(&tree, (celsius * 1000.0) as i64);
        let data = dir.join(format!("data{i}"));
        if i > 0 {
            super::share_key(&dir.join("data0"), &data);
        }
        let mut flags: Vec<String> = ["--name", name, "--rack", rack, "--slot", &slot.to_string()]
            .iter()
            .map(|s| s.to_string())
            .collect();
        flags.extend(super::seed_flags(seed.filter(|_| seeded)));
        flags.extend(extra.iter().cloned());
        let mut child = super::spawn_on_tree(BIN, &tree, &data, &flags);
        let bound = super::served(&mut child, &data);
        seed.get_or_insert(bound.gossip);
        let api = Api {
            addr: bound.http,
            token: client::read_token(None, &data).expect("token"),
        };
        nodes.push(Node {
            name: name.to_string(),
            child,
            tree,
            data,
            api,
            flags,
        });
    }
    nodes
}

/// [`mesh_of`], seeded.
pub fn mesh(dir: &Path, layout: &[(&str, &str, u16, f64)], extra: &[String]) -> Vec<Node> {
    mesh_of(dir, layout, extra, true)
}

/// Waits until `node` sees `pred` hold of its members view.
pub fn until_members(node: &Node, what: &str, pred: impl Fn(&Members) -> bool) -> Members {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let m = node.members();
        if pred(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: not seen; last: {m:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every node counts every other, with its offer endpoint and price.
pub fn converged(nodes: &[Node], n: usize) {
    for node in nodes {
        until_members(
            node,
            "every member counting, with a price and an endpoint",
            |m| {
                m.members.len() == n
                    && m.members
                        .iter()
                        .all(|r| r.counts && r.p2p.is_some() && r.price_milli.is_some())
            },
        );
    }
}

pub fn price_of(m: &Members, name: &str) -> u64 {
    m.members
        .iter()
        .find(|r| r.name == name)
        .and_then(|r| r.price_milli)
        .unwrap_or_else(|| panic!("{name} has no price: {m:#?}"))
}

/// Where each guest runs, by guest name: (node, origin's name).
pub fn running(nodes: &[Node]) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for n in nodes {
        for g in n.guests().guests {
            let origin = g.origin.map_or("-".into(), |o| o.name);
            out.entry(g.name)
                .or_default()
                .push((n.name.clone(), origin));
        }
    }
    out
}

/// `maxwell_p2p_offers_received_total` by outcome, from the node's metrics.
pub fn offers_received(node: &Node) -> BTreeMap<String, u64> {
    let text = node
        .api
        .get("/metrics", Duration::from_secs(5))
        .expect("metrics");
    text.lines()
        .filter_map(|l| l.strip_prefix("maxwell_p2p_offers_received_total{outcome=\""))
        .filter_map(|l| {
            let (outcome, value) = l.split_once("\"} ")?;
            Some((outcome.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}
