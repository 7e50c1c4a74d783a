//! Real `maxwell agent` processes on loopback forming one mesh: fixture
//! sensor files changed at one node are seen at every node; garbage on a
//! gossip port is dropped and counted; SIGKILL is detected by all; a restart
//! rejoins with a new generation; SIGTERM is seen as a leave.

mod common;

use maxwell_gossip::MemberStatus;
use maxwell_node::client;
use maxwell_node::http::{MemberRow, Members};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maxwell");
const N: usize = 4;

struct Node {
    child: Option<Child>,
    http: SocketAddr,
    gossip: SocketAddr,
    tree: PathBuf,
    data: PathBuf,
    name: String,
}

impl Node {
    /// Starts the agent on ports of the kernel's choosing (seeded by `seed`,
    /// if any) and waits until it reports them.
    fn spawn(&mut self, seed: Option<SocketAddr>) {
        let mut flags: Vec<String> = ["--name", &self.name, "--rack", "r1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        flags.extend(common::seed_flags(seed));
        let mut child = common::spawn_on_tree(BIN, &self.tree, &self.data, &flags);
        let bound = common::served(&mut child, &self.data);
        (self.http, self.gossip) = (bound.http, bound.gossip);
        self.child = Some(child);
    }

    fn members(&self) -> Option<Members> {
        client::get_json(self.http, "/v1/members", Duration::from_secs(2)).ok()
    }

    fn signal(&mut self, sig: i32) {
        if let Some(child) = &self.child {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, sig) };
        }
    }

    fn reap(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write_tree(dir: &Path, celsius_milli: i64) {
    let chip = dir.join("hwmon/hwmon0");
    std::fs::create_dir_all(&chip).expect("mkdir");
    std::fs::create_dir_all(dir.join("powercap")).expect("mkdir");
    std::fs::write(chip.join("name"), "coretemp\n").expect("write");
    std::fs::write(chip.join("temp1_label"), "Package id 0\n").expect("write");
    std::fs::write(chip.join("temp1_crit"), "100000\n").expect("write");
    std::fs::write(chip.join("temp1_input"), format!("{celsius_milli}\n")).expect("write");
}

/// Polls until `ok` holds for every node in `observers`, or panics after `within`.
fn until(
    nodes: &[Node],
    observers: &[usize],
    within: Duration,
    what: &str,
    ok: impl Fn(&Members) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let pending: Vec<usize> = observers
            .iter()
            .copied()
            .filter(|o| !nodes[*o].members().is_some_and(|m| ok(&m)))
            .collect();
        if pending.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let views: Vec<_> = pending.iter().map(|o| nodes[*o].members()).collect();
            panic!("{what}: not reached within {within:?} at nodes {pending:?}: {views:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn row<'a>(m: &'a Members, name: &str) -> Option<&'a MemberRow> {
    m.members.iter().find(|r| r.name == name)
}

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = client::get(addr, "/metrics", Duration::from_secs(2)).expect("metrics");
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[test]
fn real_agents_form_one_mesh_and_survive_faults() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut nodes: Vec<Node> = (0..N)
        .map(|i| {
            let tree = scratch.path().join(format!("tree{i}"));
            write_tree(&tree, 45_000 + i as i64 * 1_000);
            Node {
                child: None,
                http: SocketAddr::from(([127, 0, 0, 1], 0)),
                gossip: SocketAddr::from(([127, 0, 0, 1], 0)),
                tree,
                data: scratch.path().join(format!("data{i}")),
                name: format!("node{i}"),
            }
        })
        .collect();
    nodes[0].spawn(None);
    let seed = Some(nodes[0].gossip);
    for n in &mut nodes[1..] {
        n.spawn(seed);
    }
    let all: Vec<usize> = (0..N).collect();
    until(&nodes, &all, Duration::from_secs(30), "one mesh", |m| {
        m.members.len() == N && m.members.iter().all(|r| r.counts)
    });

    // A sensor file changed at node 2 reaches everyone.
    std::fs::write(nodes[2].tree.join("hwmon/hwmon0/temp1_input"), "83500\n").expect("write");
    until(
        &nodes,
        &[0, 1, 3],
        Duration::from_secs(10),
        "heat change",
        |m| {
            row(m, "node2")
                .and_then(|r| r.hottest_millicelsius)
                .map(|t| t.0)
                == Some(83_500)
        },
    );

    // Garbage on node 1's gossip port is dropped and counted; node 1 works on.
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for payload in [&b"garbage"[..], &[0xff; 300][..], &b"\x00\x01\x02"[..]] {
        raw.send_to(payload, nodes[1].gossip).expect("send garbage");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(nodes[1].http, "maxwell_gossip_invalid_datagrams_total") < 3.0 {
        assert!(Instant::now() < deadline, "garbage was not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::write(nodes[2].tree.join("hwmon/hwmon0/temp1_input"), "84500\n").expect("write");
    until(
        &nodes,
        &[1],
        Duration::from_secs(10),
        "node 1 still gossips",
        |m| {
            row(m, "node2")
                .and_then(|r| r.hottest_millicelsius)
                .map(|t| t.0)
                == Some(84_500)
        },
    );

    // SIGKILL: detected by all.
    let old_generation = nodes[0]
        .members()
        .and_then(|m| row(&m, "node3").map(|r| r.generation))
        .expect("gen");
    nodes[3].signal(libc::SIGKILL);
    nodes[3].reap();
    until(
        &nodes,
        &[0, 1, 2],
        Duration::from_secs(20),
        "crash detected",
        |m| row(m, "node3").is_some_and(|r| r.status == MemberStatus::Dead && !r.counts),
    );

    // Restart with the same data dir: same id, a new generation, counted again.
    nodes[3].spawn(seed);
    until(&nodes, &[0, 1, 2], Duration::from_secs(20), "rejoin", |m| {
        row(m, "node3").is_some_and(|r| {
            r.status == MemberStatus::Alive && r.counts && r.generation > old_generation
        })
    });

    // SIGTERM: a signed leave, seen as `left` (not `dead`).
    nodes[0].signal(libc::SIGTERM);
    until(
        &nodes,
        &[1, 2, 3],
        Duration::from_secs(10),
        "leave seen",
        |m| row(m, "node0").is_some_and(|r| r.status == MemberStatus::Left),
    );
    assert_eq!(nodes[0].reap(), Some(0), "clean exit after the leave");
}
