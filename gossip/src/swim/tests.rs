//! The protocol over an in-memory network: every datagram is real bytes,
//! delivered one 10 ms step after it is sent, with seeded loss.

use super::*;
use crate::node_id::KeyedNodeId;
use crate::report::tests::sample;
use crate::report::{HeatReport, Leave};
use crate::seal::ClusterKey;
use crate::wire::SignedRecord;
use ed25519_dalek::SigningKey;

const T0: u64 = 1_764_201_642_000;
const STEP: u64 = 10;

fn keyring() -> Keyring {
    Keyring::new(ClusterKey::new(1, [9; 32]), Vec::new())
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, (i + 1) as u8], 7946))
}

struct Node {
    swim: Swim,
    key: SigningKey,
    seq: u64,
    rack: String,
    up: bool,
}

impl Node {
    fn id(&self) -> NodeId {
        NodeId::from_verifying_key(&self.key.verifying_key())
    }
}

struct Net {
    nodes: Vec<Node>,
    now: u64,
    wire: Vec<(usize, Transmit)>,
    loss: f64,
    rng: Rng,
    cut: BTreeSet<(usize, usize)>,
    /// Events seen, per node.
    events: Vec<Vec<(u64, SwimEvent)>>,
    /// Bytes sent, per node.
    sent: Vec<u64>,
}

impl Net {
    /// `n` nodes in racks of `per_rack`, each seeded with node 0.
    fn new(n: usize, per_rack: usize) -> Self {
        let mut net = Self {
            nodes: Vec::new(),
            now: T0,
            wire: Vec::new(),
            loss: 0.0,
            rng: Rng::new(7),
            cut: BTreeSet::new(),
            events: Vec::new(),
            sent: Vec::new(),
        };
        for i in 0..n {
            let key = SigningKey::from_bytes(&[i as u8 + 1; 32]);
            let me = Peer {
                id: NodeId::from_verifying_key(&key.verifying_key()),
                generation: 1,
                addr: addr(i),
            };
            let seeds = if i == 0 { vec![] } else { vec![addr(0)] };
            let swim = Swim::new(me, keyring(), SwimConfig::default(), seeds, i as u64, T0);
            net.nodes.push(Node {
                swim,
                key,
                seq: 0,
                rack: format!("r{}", i / per_rack),
                up: true,
            });
            net.events.push(Vec::new());
            net.sent.push(0);
        }
        for i in 0..n {
            net.publish(i, 40.0);
        }
        net
    }

    fn record(&mut self, i: usize, celsius: f64) -> Vec<u8> {
        let node = &mut self.nodes[i];
        node.seq += 1;
        let report = HeatReport {
            generation: 1,
            seq: node.seq,
            timestamp_ms: self.now,
            position: crate::Position::new(node.rack.clone(), i as u16),
            hottest: crate::MilliCelsius::from_celsius(celsius),
            ..sample(node.id())
        };
        SignedRecord::sign(&report, &node.key)
            .expect("sign")
            .to_bytes()
    }

    fn publish(&mut self, i: usize, celsius: f64) {
        let record = self.record(i, celsius);
        let now = self.now;
        self.nodes[i].swim.publish(now, &record);
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].swim.poll_transmit() {
            self.sent[i] += t.bytes.len() as u64;
            self.wire.push((i, t));
        }
        while let Some(e) = self.nodes[i].swim.poll_event() {
            self.events[i].push((self.now, e));
        }
    }

    fn index_of(&self, to: SocketAddr) -> Option<usize> {
        (0..self.nodes.len()).find(|i| addr(*i) == to)
    }

    fn step(&mut self) {
        self.now += STEP;
        let now = self.now;
        for (from, t) in std::mem::take(&mut self.wire) {
            let Some(to) = self.index_of(t.to) else {
                continue;
            };
            let lost = self.loss > 0.0 && self.rng.unit() < self.loss;
            if lost || !self.nodes[to].up || self.cut.contains(&(from, to)) {
                continue;
            }
            self.nodes[to]
                .swim
                .handle_datagram(now, addr(from), &t.bytes);
            self.flush(to);
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].up
                && self.nodes[i]
                    .swim
                    .poll_timeout()
                    .is_some_and(|at| at <= now)
            {
                self.nodes[i].swim.handle_timeout(now);
                self.flush(i);
            }
        }
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms / STEP {
            self.step();
        }
    }

    /// Runs until `done` holds or `ms` pass; returns the time it took, to
    /// the 50 ms it is checked at.
    fn until(&mut self, ms: u64, done: impl Fn(&Net) -> bool) -> Option<u64> {
        let start = self.now;
        while self.now - start < ms {
            if (self.now - start).is_multiple_of(50) && done(self) {
                return Some(self.now - start);
            }
            self.step();
        }
        done(self).then(|| self.now - start)
    }

    /// What `observer` holds of `subject`: alive, and the hottest reading.
    fn view(&self, observer: usize, subject: usize) -> Option<(bool, Option<i64>)> {
        let id = self.nodes[subject].id();
        self.nodes[observer]
            .swim
            .members()
            .into_iter()
            .find(|(p, _, _)| p.id == id)
            .map(|(_, alive, record)| {
                let hottest =
                    record.and_then(|r| match SignedRecord::from_bytes(&r).ok()?.open().ok()? {
                        crate::Record::Report(r) => Some(r.hottest.0),
                        crate::Record::Leave(_) | crate::Record::Summary(_) => None,
                    });
                (alive, hottest)
            })
    }

    fn all_see(&self, subject: usize, want: impl Fn(Option<(bool, Option<i64>)>) -> bool) -> bool {
        (0..self.nodes.len())
            .filter(|o| *o != subject && self.nodes[*o].up)
            .all(|o| want(self.view(o, subject)))
    }
}

fn hot(c: f64) -> Option<i64> {
    Some(crate::MilliCelsius::from_celsius(c).0)
}

#[test]
fn a_mesh_forms_from_one_seed_and_every_record_reaches_everyone() {
    let mut net = Net::new(12, 4);
    let took = net.until(10_000, |net| {
        (0..12).all(|s| net.all_see(s, |v| v == Some((true, hot(40.0)))))
    });
    assert!(took.is_some(), "every node holds every record within 10 s");
}

#[test]
fn a_change_is_one_hop_from_everyone_and_each_receives_it_once() {
    let mut net = Net::new(12, 4);
    net.run(8_000);
    let before = net.sent.clone();
    net.publish(5, 80.0);
    net.step();
    assert!(net.all_see(5, |v| v == Some((true, hot(80.0)))));
    for o in (0..12).filter(|o| *o != 5) {
        assert!(net.events[o]
            .iter()
            .any(|(at, e)| *at == net.now && matches!(e, SwimEvent::Records(_))));
    }
    // The origin sent one datagram per member; no one relayed it.
    let record = net.record(5, 80.0).len() as u64;
    let pushed = net.sent[5] - before[5];
    assert!(
        pushed >= 11 * record && pushed < 11 * (record + 64),
        "{pushed} bytes"
    );
}

#[test]
fn past_the_push_set_infection_carries_a_change_to_everyone() {
    let mut net = Net::new(40, 10);
    for n in &mut net.nodes {
        n.swim.config.push_max = 8;
    }
    net.run(10_000);
    net.publish(5, 80.0);
    let took = net.until(3_000, |net| {
        net.all_see(5, |v| v == Some((true, hot(80.0))))
    });
    assert!(
        took.is_some_and(|t| t <= 1_000),
        "infection reaches all 40 within 1 s: {took:?}"
    );
}

/// Who on the wire is being sent `record`, as (from, to).
fn carrying(net: &Net, record: &[u8]) -> Vec<(usize, usize)> {
    net.wire
        .iter()
        .filter_map(|(from, t)| {
            let records = match frame::parse(&t.bytes[frame_range(&t.bytes)]).ok()? {
                Frame::Records(r, _) | Frame::Forward { records: r, .. } => r,
                _ => return None,
            };
            records
                .contains(&record)
                .then(|| (*from, net.index_of(t.to).expect("a node")))
        })
        .collect()
}

#[test]
fn past_the_push_set_two_hops_carry_a_change_to_everyone_once_and_a_replay_nowhere() {
    let mut net = Net::new(40, 40);
    for n in &mut net.nodes {
        n.swim.config.push_max = 8;
        n.swim.config.push = Push::TwoHop;
    }
    net.run(10_000);
    let record = net.record(5, 80.0);
    let now = net.now;
    net.nodes[5].swim.publish(now, &record);
    net.flush(5);
    let first = carrying(&net, &record);
    // ⌈√39⌉ ranges: the origin sends 7 copies, one to a relay in each.
    assert_eq!(first.len(), 7, "{first:?}");
    assert!(first.iter().all(|(from, _)| *from == 5));
    net.step();
    let second = carrying(&net, &record);
    net.step();
    assert!(
        net.all_see(5, |v| v == Some((true, hot(80.0)))),
        "two hops reach all 39"
    );
    let mut got: Vec<usize> = first.iter().chain(&second).map(|(_, to)| *to).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..40).filter(|i| *i != 5).collect::<Vec<_>>(),
        "each once"
    );
    assert!(
        carrying(&net, &record).is_empty(),
        "nothing is sent a third time"
    );

    // A member replaying the forward to a relay: the record is no longer
    // new there, so it goes no further.
    let (_, relay) = first[0];
    let mut f = Vec::new();
    let forward = frame::forward(LOWEST, HIGHEST, [record.as_slice()], 1_000);
    net.nodes[9].swim.sealer.seal(net.now, &forward[0], &mut f);
    net.nodes[relay].swim.handle_datagram(net.now, addr(9), &f);
    net.flush(relay);
    assert!(carrying(&net, &record).is_empty());
}

/// The digests (and their answer flags) on the wire from `from` to `to`.
fn digests(net: &Net, from: usize, to: usize) -> Vec<Digest> {
    net.wire
        .iter()
        .filter(|(f, t)| *f == from && t.to == addr(to))
        .filter_map(
            |(_, t)| match frame::parse(&t.bytes[frame_range(&t.bytes)]).ok()? {
                Frame::Digest(d) => Some(d),
                _ => None,
            },
        )
        .collect()
}

#[test]
fn a_sync_costs_a_checksum_a_part_and_a_digest_only_where_they_differ() {
    let mut net = Net::new(60, 60);
    net.run(10_000);
    assert!((0..60).all(|s| net.all_see(s, |v| v == Some((true, hot(40.0))))));
    // In step: node 1 answers node 0's sums with nothing.
    net.step();
    net.nodes[0].swim.send_checksums(addr(1));
    net.flush(0);
    let sums: usize = net
        .wire
        .iter()
        .filter(|(f, t)| *f == 0 && t.to == addr(1))
        .filter(|(_, t)| {
            matches!(
                frame::parse(&t.bytes[frame_range(&t.bytes)]),
                Ok(Frame::Checksums(_))
            )
        })
        .map(|(_, t)| t.bytes.len())
        .sum();
    assert!(sums < 400, "60 records summed in {sums} bytes");
    net.step();
    assert!(digests(&net, 1, 0).is_empty(), "in step, nothing to say");

    // Node 1 missed node 7's change: its answer to node 2's sums is a
    // digest of the one part that holds node 7, asking for node 2's; then
    // it holds it.
    net.cut.insert((7, 1));
    net.publish(7, 75.0);
    net.step();
    net.cut.clear();
    assert_eq!(net.view(1, 7), Some((true, hot(40.0))));
    net.nodes[2].swim.send_checksums(addr(1));
    net.flush(2);
    net.step();
    let asked = digests(&net, 1, 2);
    assert_eq!(asked.len(), 1, "one part differs: {asked:?}");
    let id7 = net.nodes[7].id();
    assert!(asked[0].answer && asked[0].lo <= id7 && id7 <= asked[0].hi);
    assert!(asked[0].entries.len() < 60);
    net.step();
    net.step();
    assert_eq!(net.view(1, 7), Some((true, hot(75.0))));

    // Parts must move forward: an empty or backward one is refused.
    let part = |b: u8| frame::Part {
        hi: NodeId([b; NODE_ID_LEN]),
        sum: 0,
    };
    for parts in [
        vec![part(3), part(3)],
        vec![part(5), part(4)],
        vec![part(0)],
    ] {
        let f = frame::checksums(&Checksums {
            lo: NodeId([1; NODE_ID_LEN]),
            parts,
        });
        assert!(matches!(frame::parse(&f), Err(frame::FrameError::Range)));
    }
}

#[test]
fn a_push_that_never_arrived_is_carried_by_digests() {
    let mut net = Net::new(8, 4);
    net.run(8_000);
    // Node 1 cannot hear node 3: it misses the push, and gets the record
    // from the others' digests.
    net.cut.insert((3, 1));
    net.publish(3, 70.0);
    net.step();
    assert_eq!(net.view(1, 3), Some((true, hot(40.0))));
    assert!((0..8)
        .filter(|o| ![1, 3].contains(o))
        .all(|o| net.view(o, 3) == Some((true, hot(70.0)))));
    let took = net.until(30_000, |net| net.view(1, 3) == Some((true, hot(70.0))));
    assert!(took.is_some(), "digests carry the missed record");
}

#[test]
fn a_killed_node_is_declared_down_within_five_seconds_and_a_leave_at_once() {
    let mut net = Net::new(10, 5);
    net.run(8_000);
    net.nodes[4].up = false;
    let took = net.until(10_000, |net| {
        net.all_see(4, |v| v.is_some_and(|(alive, _)| !alive))
    });
    assert!(took.is_some_and(|t| t <= 5_000), "kill detected: {took:?}");

    let leave = Leave {
        node_id: net.nodes[7].id(),
        generation: 1,
        seq: 99,
        timestamp_ms: net.now,
    };
    let leave = SignedRecord::sign(&leave, &net.nodes[7].key)
        .expect("sign")
        .to_bytes();
    let now = net.now;
    net.nodes[7].swim.leave(now, Some(&leave));
    net.flush(7);
    assert_eq!(net.nodes[7].swim.poll_timeout(), None);
    net.step();
    let left = |v: Option<(bool, Option<i64>)>| v.is_some_and(|(_, hottest)| hottest.is_none());
    assert!(
        net.all_see(7, left),
        "every live node holds the leave one step later"
    );
}

#[test]
fn no_false_deaths_in_a_simulated_hour_at_ten_percent_loss() {
    let mut net = Net::new(10, 5);
    net.run(8_000);
    net.loss = 0.10;
    net.run(3_600_000);
    for (i, events) in net.events.iter().enumerate() {
        let false_deaths = events
            .iter()
            .filter(|(at, e)| {
                *at > T0 + 8_000 && matches!(e, SwimEvent::Down(_) | SwimEvent::Rejoined(_))
            })
            .count();
        assert_eq!(
            false_deaths, 0,
            "node {i} saw a live member (or itself) declared down"
        );
    }
}

#[test]
fn datagrams_without_the_cluster_key_change_nothing_and_get_no_answer() {
    let mut net = Net::new(4, 4);
    net.run(5_000);
    let target = 1;
    let before = net.nodes[target].swim.members().len();
    // A stranger with its own key, a mutated real datagram, a replay and
    // plain garbage.
    let mut stranger = Sealer::new(
        Keyring::new(ClusterKey::new(1, [3; 32]), Vec::new()),
        NodeId([1; 10]),
        T0,
    );
    let mut forged = Vec::new();
    stranger.seal(
        T0,
        &frame::digest(&Digest {
            answer: true,
            lo: NodeId([0; 10]),
            hi: NodeId([0xff; 10]),
            entries: vec![],
        }),
        &mut forged,
    );
    net.publish(0, 41.0);
    let real = net
        .wire
        .iter()
        .find(|(_, t)| t.to == addr(target))
        .expect("a datagram to the target")
        .1
        .bytes
        .clone();
    let mut mutated = real.clone();
    mutated[20] ^= 1;
    net.step();
    let now = net.now;
    let swim = &mut net.nodes[target].swim;
    for datagram in [&forged, &mutated, &real, &b"\x00garbage".to_vec()] {
        swim.handle_datagram(now, SocketAddr::from(([6, 6, 6, 6], 1)), datagram);
        assert_eq!(swim.poll_transmit(), None, "never answered");
    }
    let c = swim.counters();
    assert_eq!(c.seal.refused(SealRefusal::BadTag), 2);
    assert_eq!(c.seal.refused(SealRefusal::Replay), 1);
    assert_eq!(
        c.seal.refused(SealRefusal::Short) + c.seal.refused(SealRefusal::Magic),
        1
    );
    assert_eq!(swim.members().len(), before);
    // One event per reason, however many arrive.
    for _ in 0..100 {
        swim.handle_datagram(now, SocketAddr::from(([6, 6, 6, 6], 1)), &forged);
    }
    let events: Vec<SwimEvent> = std::iter::from_fn(|| swim.poll_event()).collect();
    let bad_tag = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                SwimEvent::Refused {
                    reason: Refusal::Seal(SealRefusal::BadTag),
                    ..
                }
            )
        })
        .count();
    assert_eq!(bad_tag, 1, "{events:?}");
}

#[test]
fn a_member_cannot_speak_for_another_nor_spread_an_unsigned_record() {
    let mut net = Net::new(3, 3);
    net.run(5_000);
    // Node 2 holds the cluster key: it seals a foca message naming node 0
    // as its source, and a record it did not sign.
    let header = foca::Header {
        src: net.nodes[0].swim.identity().clone(),
        src_incarnation: 0,
        dst: net.nodes[1].swim.identity().clone(),
        message: foca::Message::Ping(1),
    };
    let mut message = Vec::new();
    Codec::<Peer>::encode_header(&mut PostcardCodec, &header, &mut message).expect("encode");
    let mut frame_bytes = Vec::new();
    frame::foca(&message, &mut frame_bytes);
    let mut sealer = Sealer::new(keyring(), net.nodes[2].id(), T0 + 60_000);
    let mut datagram = Vec::new();
    sealer.seal(net.now, &frame_bytes, &mut datagram);
    let mut record = net.record(0, 99.0);
    let last = record.len() - 1;
    record[last] ^= 1;
    let mut unsigned = Vec::new();
    sealer.seal(
        net.now,
        &frame::records([record.as_slice()], 1_000, true)[0],
        &mut unsigned,
    );
    let now = net.now + 1;
    let swim = &mut net.nodes[1].swim;
    swim.handle_datagram(now, addr(2), &datagram);
    swim.handle_datagram(now, addr(2), &unsigned);
    let c = swim.counters();
    assert_eq!(c.refused.get(&Refusal::Impostor), Some(&1));
    assert_eq!(c.refused.get(&Refusal::Record), Some(&1));
    assert_eq!(net.view(1, 0), Some((true, hot(40.0))));
}

#[test]
fn idle_traffic_is_probes_and_digests_only() {
    let mut net = Net::new(30, 10);
    net.run(30_000);
    let before = net.sent.clone();
    net.run(60_000);
    let per_node_per_s: Vec<u64> = net
        .sent
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) / 60)
        .collect();
    let max = per_node_per_s.iter().max().copied().unwrap_or(0);
    // The ring's probe of the next id up each period and foca's of a
    // member in turn every other period, each a ping and an ack of
    // ~110 B, and a digest exchange every 10 s: under a kilobyte a second.
    assert!(
        max < 1_000,
        "idle bytes per node per second: {per_node_per_s:?}"
    );
}

#[test]
fn a_hundred_nodes_started_at_once_all_know_each_other_within_thirty_seconds() {
    // Infection alone leaves a few members unknown to a few nodes in a
    // burst of joins this size; the relays grow with the mesh and periodic
    // announces fill the rest.
    let mut net = Net::new(100, 10);
    let took = net.until(40_000, |net| {
        net.nodes
            .iter()
            .all(|n| n.swim.num_members() == 99 && n.swim.counters().records_held == 100)
    });
    assert!(took.is_some(), "a mesh of 100 never converged");
    assert!((0..100).all(|s| net.all_see(s, |v| v == Some((true, hot(40.0))))));
}

#[test]
fn a_digest_is_answered_at_the_members_own_address_once_a_second_and_a_bad_range_is_refused() {
    let mut net = Net::new(4, 4);
    net.run(5_000);
    let now = net.now + 1;
    let mut member = Sealer::new(keyring(), net.nodes[2].id(), now + 50);
    let full = Digest {
        answer: true,
        lo: NodeId([0; 10]),
        hi: NodeId([0xff; 10]),
        entries: vec![],
    };
    let spoofed = SocketAddr::from(([6, 6, 6, 6], 1));
    let swim = &mut net.nodes[0].swim;
    while swim.poll_transmit().is_some() {}
    for _ in 0..2 {
        let mut d = Vec::new();
        member.seal(now, &frame::digest(&full), &mut d);
        swim.handle_datagram(now, spoofed, &d);
    }
    let out: Vec<Transmit> = std::iter::from_fn(|| swim.poll_transmit()).collect();
    assert!(!out.is_empty(), "a member's digest is answered");
    assert!(
        out.iter().all(|t| t.to == addr(2)),
        "only at its own address: {out:?}"
    );
    let records = out.len();
    // Within the second, the same range again draws nothing.
    let mut d = Vec::new();
    member.seal(now, &frame::digest(&full), &mut d);
    swim.handle_datagram(now, spoofed, &d);
    assert!(swim.poll_transmit().is_none());
    assert!(records <= 4, "one answer: {records} datagrams");
    // A range that ends before it starts is refused, not a panic.
    let backwards = Digest {
        lo: NodeId([0xff; 10]),
        hi: NodeId([0; 10]),
        ..full
    };
    let mut d = Vec::new();
    member.seal(now, &frame::digest(&backwards), &mut d);
    swim.handle_datagram(now, spoofed, &d);
    assert_eq!(swim.counters().refused.get(&Refusal::Frame), Some(&1));
}

/// Nodes started together, each publishing before it knows anyone, all
/// hold every report within two seconds. Each announces itself to every
/// member it hears of: without that, a member learned by hearsay heard of
/// us only when its probes came round to us, up to n probe periods (and
/// our record with it).
#[test]
fn forty_nodes_started_together_all_hold_every_report_within_two_seconds() {
    let mut net = Net::new(40, 40);
    // They come up one every 25 ms, as hosts booted together do.
    for node in &mut net.nodes[1..] {
        node.up = false;
    }
    for i in 1..40 {
        net.run(25);
        net.nodes[i].up = true;
    }
    let took = net.until(10_000, |net| {
        net.nodes
            .iter()
            .all(|n| n.swim.reports().len() == net.nodes.len())
    });
    assert!(took.is_some_and(|ms| ms <= 2_000), "took {took:?} ms");
}

/// A node's summary is held beside its report, not in its place, and is
/// carried to members like any record.
#[test]
fn a_summary_is_held_beside_the_report_of_its_signer() {
    let mut net = Net::new(3, 3);
    net.run(2_000);
    let node = &net.nodes[1];
    let summary = crate::Summary {
        node_id: node.id(),
        generation: 1,
        seq: 99,
        timestamp_ms: net.now,
        scope: crate::Scope::World,
        rack: node.rack.clone(),
        upper: addr(1),
        members: 1,
        hottest: crate::MilliCelsius::from_celsius(40.0),
        offers: Vec::new(),
    };
    let bytes = SignedRecord::sign(&summary, &node.key)
        .expect("sign")
        .to_bytes();
    let now = net.now;
    net.nodes[1].swim.publish(now, &bytes);
    net.flush(1);
    net.run(500);
    for o in [0, 2] {
        let swim = &net.nodes[o].swim;
        assert_eq!(swim.summaries(), vec![summary.clone()], "node {o}");
        assert!(
            swim.reports().iter().any(|r| r.node_id == summary.node_id),
            "node {o} lost the report"
        );
    }
}

/// 120 kills at n = 30 (24 in turn, from five starting phases): the time
/// until every live node holds the victim down. Each is within 5 s: the
/// ring probe has the victim's predecessor ask it every period, and the
/// node that declares it down tells every member at once.
#[test]
fn kills_at_thirty_nodes_are_known_everywhere_within_five_seconds() {
    let mut took = Vec::new();
    for warm in [10_000, 10_130, 10_270, 10_410, 10_550] {
        let mut net = Net::new(30, 40);
        net.run(warm);
        for v in 5..29 {
            net.nodes[v].up = false;
            let t = net.until(15_000, |net| {
                net.all_see(v, |x| x.is_none_or(|(alive, _)| !alive))
            });
            took.push(t.expect("every kill is detected within 15 s"));
            net.run(3_000);
        }
    }
    took.sort_unstable();
    let at = |q: usize| took[(took.len() - 1) * q / 100];
    assert!(at(50) <= 3_200, "median {} ms: {took:?}", at(50));
    assert!(at(95) <= 4_000, "95th percentile {} ms: {took:?}", at(95));
    assert!(at(100) <= 5_000, "slowest {} ms: {took:?}", at(100));
}

#[test]
fn a_sync_round_visits_every_member_once_before_any_twice() {
    let mut net = Net::new(6, 6);
    net.run(5_000);
    assert_eq!(net.nodes[2].swim.num_members(), 5);
    let others: BTreeSet<NodeId> = (0..6)
        .filter(|i| *i != 2)
        .map(|i| net.nodes[i].id())
        .collect();
    // Start at a round's beginning (the run has been syncing already).
    net.nodes[2].swim.sync_round.clear();
    for _round in 0..4 {
        let picked: BTreeSet<NodeId> = (0..5)
            .filter_map(|_| net.nodes[2].swim.next_sync_partner())
            .map(|p| p.id)
            .collect();
        // A random pick each time would repeat one within five picks at
        // odds of 1 - 5!/5^5 = 96 %.
        assert_eq!(picked, others);
    }
}
