//! Real `maxwell agent` processes on loopback forming one mesh: the first
//! makes the cluster key and the others join with a copy of it; fixture
//! sensor files changed at one node are seen at every node, and move a
//! neighbour's price with no gossip round in between; an attacker that
//! knows only the addresses and the cluster's name can neither get a node
//! declared dead, nor plant a peer, nor draw a reply; SIGKILL is detected by
//! all; a restart rejoins with a new generation; SIGTERM is seen as a leave.

mod common;

use maxwell_gossip::MemberStatus;
use maxwell_node::client;
use maxwell_node::http::{MemberRow, Members};
use std::net::SocketAddr;
use std::path::PathBuf;
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
    fn spawn(&mut self, seed: Option<SocketAddr>, slot: usize) {
        let slot = slot.to_string();
        // No gossip round, probe or digest falls within the test's changes:
        // what moves there was pushed.
        let mut flags: Vec<String> = [
            "--name",
            &self.name,
            "--rack",
            "r1",
            "--slot",
            &slot,
            "--set",
            "gossip.interval_ms=30000",
            "--set",
            "gossip.sync_interval_ms=60000",
        ]
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

/// What an outsider can do with the addresses and the cluster's name alone:
/// a flood of datagrams claiming node 3 is down and announcing phantom
/// peers (in foca's own encoding, unsealed, and sealed under keys derived
/// from guessed secrets), plus garbage. Nothing may come back, no view may
/// change, and every datagram must be counted.
fn attack(nodes: &[Node]) {
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    raw.set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let victim = row(&nodes[0].members().expect("members"), "node3")
        .expect("node3")
        .id;
    let claim = |phantom: u8| {
        let peer = |id: maxwell_gossip::NodeId, port: u16| maxwell_gossip::swim::Peer {
            id,
            generation: 0,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let header = foca::Header {
            src: peer(maxwell_gossip::NodeId([phantom; 10]), 9),
            src_incarnation: 0,
            dst: peer(victim, nodes[3].gossip.port()),
            message: foca::Message::<maxwell_gossip::swim::Peer>::Announce,
        };
        let mut f = vec![0u8];
        f.extend(postcard::to_allocvec(&header).expect("encode"));
        f
    };
    let guessed = [
        maxwell_gossip::seal::ClusterKey::derive(&[0; 32], "maxwell"),
        maxwell_gossip::seal::ClusterKey::derive(b"maxwellmaxwellmaxwellmaxwellmaxw", "maxwell"),
    ];
    let mut sent = 0u64;
    let mut back = 0usize;
    let mut buf = [0u8; 65_536];
    let t0 = Instant::now();
    for round in 0..2_000u32 {
        let frame = claim((round % 250) as u8);
        let mut datagrams = vec![frame.clone(), b"\x00\x00garbage".to_vec()];
        for key in &guessed {
            let ring = maxwell_gossip::seal::Keyring::new(key.clone(), Vec::new());
            let mut sealer =
                maxwell_gossip::seal::Sealer::new(ring, victim, maxwell_node::clock::unix_ms());
            let mut d = Vec::new();
            sealer.seal(maxwell_node::clock::unix_ms(), &frame, &mut d);
            datagrams.push(d);
        }
        for n in &nodes[..3] {
            for d in &datagrams {
                raw.send_to(d, n.gossip).expect("send");
                sent += d.len() as u64;
            }
        }
        while let Ok((got, _)) = raw.recv_from(&mut buf) {
            back += got;
        }
    }
    let flood = t0.elapsed();
    // Longer than a suspicion and a probe round at the LAN preset.
    std::thread::sleep(Duration::from_secs(4));
    while let Ok((got, _)) = raw.recv_from(&mut buf) {
        back += got;
    }
    assert_eq!(
        back, 0,
        "{sent} bytes of forgeries drew {back} bytes in reply"
    );
    until(
        nodes,
        &[0, 1, 2],
        Duration::from_secs(1),
        "nothing believed",
        |m| m.members.len() == N && m.members.iter().all(|r| r.counts) && m.unverified_peers == 0,
    );
    for n in &nodes[..3] {
        let refused: f64 = ["not-sealed", "bad-tag", "unknown-key", "short"]
            .iter()
            .map(|r| {
                metric(
                    n.http,
                    &format!("maxwell_gossip_refused_total{{reason=\"{r}\"}}"),
                )
                .max(0.0)
            })
            .sum();
        assert!(
            refused >= 8_000.0,
            "{} counted only {refused} refusals of 8 000 in {flood:?}",
            n.name
        );
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
            common::write_tree(&tree, 45_000 + i as i64 * 1_000);
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
    nodes[0].spawn(None, 1);
    let seed = Some(nodes[0].gossip);
    // The founder made the cluster key; the others get a copy, as an
    // operator would hand it out.
    let founder = nodes[0].data.clone();
    for (i, n) in nodes.iter_mut().enumerate().skip(1) {
        common::share_key(&founder, &n.data);
        n.spawn(seed, i + 1);
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

    // A sensor file changed at node 1 moves node 2's price (its slot
    // neighbour) with no gossip round in between: the report was pushed and
    // node 2 re-priced on arrival.
    let price = |n: &Node| {
        client::get_json::<maxwell_node::http::Status>(n.http, "/v1/status", Duration::from_secs(2))
            .ok()
            .and_then(|s| s.price)
            .map(|q| q.price_milli)
    };
    let before = price(&nodes[2]);
    std::fs::write(nodes[1].tree.join("hwmon/hwmon0/temp1_input"), "92000\n").expect("write");
    let deadline = Instant::now() + Duration::from_secs(10);
    while price(&nodes[2]) == before {
        assert!(Instant::now() < deadline, "node 2's price never moved");
        std::thread::sleep(Duration::from_millis(5));
    }

    attack(&nodes);

    // Garbage on node 1's gossip port is dropped and counted; node 1 works on.
    let short = "maxwell_gossip_refused_total{reason=\"short\"}";
    let unsealed = "maxwell_gossip_refused_total{reason=\"not-sealed\"}";
    let counted =
        || metric(nodes[1].http, short).max(0.0) + metric(nodes[1].http, unsealed).max(0.0);
    // Read before sending: the node may count all three before we look.
    let floor = counted();
    let raw = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for payload in [&b"garbage"[..], &[0xff; 300][..], &b"\x00\x01\x02"[..]] {
        raw.send_to(payload, nodes[1].gossip).expect("send garbage");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted() < floor + 3.0 {
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
    nodes[3].spawn(seed, 4);
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
