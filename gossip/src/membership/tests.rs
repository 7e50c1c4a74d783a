use super::*;
use crate::node_id::KeyedNodeId;
use crate::report::tests::sample;
use crate::report::Leave;
use crate::verify::VerifierConfig;
use crate::wire::SignedRecord;
use ed25519_dalek::SigningKey;

const T0: u64 = 1_764_201_600_000;

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn id(k: &SigningKey) -> NodeId {
    NodeId::from_verifying_key(&k.verifying_key())
}

fn value(k: &SigningKey, generation: u64, seq: u64, at: u64) -> String {
    let report = HeatReport {
        generation,
        seq,
        timestamp_ms: at,
        ..sample(id(k))
    };
    SignedRecord::sign(&report, k).expect("sign").encode()
}

fn leave(k: &SigningKey, generation: u64, seq: u64, at: u64) -> String {
    let l = Leave {
        node_id: id(k),
        generation,
        seq,
        timestamp_ms: at,
    };
    SignedRecord::sign(&l, k).expect("sign").encode()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn obs<'a>(
    gid: &'a str,
    generation: u64,
    liveness: Liveness,
    record: Option<&'a str>,
) -> PeerObservation<'a> {
    PeerObservation {
        gossip_id: gid,
        generation,
        addr: addr(7946),
        liveness,
        record,
    }
}

fn table() -> Membership {
    Membership::new(id(&key(0)), Verifier::new(VerifierConfig::default()))
}

#[test]
fn a_verified_report_makes_a_member_and_self_is_never_listed() {
    let (a, me) = (key(1), key(0));
    let (gid, self_gid) = (id(&a).to_string(), id(&me).to_string());
    let v = value(&a, T0, 1, T0);
    let own = value(&me, T0, 1, T0);
    let mut m = table();
    let events = m.observe(
        [
            obs(&gid, T0, Liveness::Alive, Some(&v)),
            obs(&self_gid, T0, Liveness::Alive, Some(&own)),
        ],
        T0,
    );
    assert_eq!(
        events,
        vec![MembershipEvent::Joined {
            node: id(&a),
            generation: T0
        }]
    );
    let members = m.members(T0);
    assert_eq!(members.len(), 1);
    assert!(members[0].counts());
    assert_eq!(members[0].report.as_ref().map(|r| r.seq), Some(1));
}

#[test]
fn a_peer_without_a_record_is_not_a_member() {
    let gid = id(&key(1)).to_string();
    let mut m = table();
    assert!(m
        .observe([obs(&gid, T0, Liveness::Alive, None)], T0)
        .is_empty());
    assert!(m.members(T0).is_empty());
}

#[test]
fn a_forged_value_is_rejected_once_not_every_round() {
    let (a, rogue) = (key(1), key(9));
    let gid = id(&a).to_string();
    // The rogue signs a report claiming to be `a`'s node id.
    let forged = {
        let report = HeatReport {
            generation: T0,
            seq: 5,
            timestamp_ms: T0,
            ..sample(id(&a))
        };
        let text = SignedRecord::sign(&report, &a).expect("sign").encode();
        // Flip one character of the signature region: a forgery.
        flip(&text, 60)
    };
    let mut m = table();
    for round in 0..5 {
        let events = m.observe([obs(&gid, T0, Liveness::Alive, Some(&forged))], T0 + round);
        assert_eq!(
            events.len(),
            usize::from(round == 0),
            "round {round}: {events:?}"
        );
    }
    assert_eq!(m.verifier().counters().total_rejected(), 1);
    assert!(m.members(T0).is_empty());
    // And a report signed by another key under a's id is a key mismatch.
    let other = value(&rogue, T0, 1, T0);
    let events = m.observe([obs(&gid, T0, Liveness::Alive, Some(&other))], T0);
    assert!(
        matches!(
            &events[..],
            [MembershipEvent::Rejected {
                reason: RejectReason::KeyMismatch { .. },
                ..
            }]
        ),
        "{events:?}"
    );
}

fn flip(text: &str, at: usize) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[test]
fn a_bad_gossip_id_is_rejected_once() {
    let mut m = table();
    for _ in 0..3 {
        let _ = m.observe([obs("not-a-node-id", T0, Liveness::Alive, Some("x"))], T0);
    }
    let events = m.observe([obs("not-a-node-id", T0, Liveness::Alive, Some("x"))], T0);
    assert!(events.is_empty());
}

#[test]
fn death_recovery_leave_and_restart() {
    let a = key(1);
    let gid = id(&a).to_string();
    let v1 = value(&a, T0, 1, T0);
    let mut m = table();
    m.observe([obs(&gid, T0, Liveness::Alive, Some(&v1))], T0);
    let events = m.observe([obs(&gid, T0, Liveness::Dead, Some(&v1))], T0 + 1);
    assert_eq!(events, vec![MembershipEvent::Died { node: id(&a) }]);
    assert!(!m.members(T0 + 1)[0].counts());
    let events = m.observe([obs(&gid, T0, Liveness::Alive, Some(&v1))], T0 + 2);
    assert_eq!(events, vec![MembershipEvent::Recovered { node: id(&a) }]);

    let bye = leave(&a, T0, 2, T0 + 3);
    let events = m.observe([obs(&gid, T0, Liveness::Alive, Some(&bye))], T0 + 3);
    assert_eq!(events, vec![MembershipEvent::Left { node: id(&a) }]);
    let row = &m.members(T0 + 3)[0];
    // The last report is kept for display; it no longer counts.
    assert_eq!(
        (row.status, row.report.is_some(), row.counts()),
        (MemberStatus::Left, true, false)
    );

    // Restart: a new generation beside the old one; the new one speaks.
    let g2 = T0 + 10_000;
    let v2 = value(&a, g2, 0, g2);
    let events = m.observe(
        [
            obs(&gid, T0, Liveness::Dead, Some(&bye)),
            obs(&gid, g2, Liveness::Alive, Some(&v2)),
        ],
        g2,
    );
    assert_eq!(
        events,
        vec![MembershipEvent::Joined {
            node: id(&a),
            generation: g2
        }]
    );
    let row = &m.members(g2)[0];
    assert_eq!((row.status, row.generation), (MemberStatus::Alive, g2));
    assert!(row.counts());
}

#[test]
fn stale_reports_do_not_count_and_gc_forgets() {
    let a = key(1);
    let gid = id(&a).to_string();
    let v = value(&a, T0, 1, T0);
    let mut m = table();
    m.observe([obs(&gid, T0, Liveness::Alive, Some(&v))], T0);
    let ttl = VerifierConfig::default().ttl_ms;
    let later = m.members(T0 + ttl + 1);
    assert_eq!(later[0].freshness, Freshness::Stale);
    assert!(!later[0].counts(), "a stale report is never acted on");
    m.observe([], T0 + ttl + 2);
    assert!(m.members(T0).is_empty());
    assert_eq!(m.verifier().tracked(), 0);
}

#[test]
fn a_replayed_old_value_is_rejected() {
    let a = key(1);
    let gid = id(&a).to_string();
    let (v1, v2) = (value(&a, T0, 1, T0), value(&a, T0, 2, T0 + 1000));
    let mut m = table();
    m.observe([obs(&gid, T0, Liveness::Alive, Some(&v1))], T0);
    m.observe([obs(&gid, T0, Liveness::Alive, Some(&v2))], T0 + 1000);
    let events = m.observe([obs(&gid, T0, Liveness::Alive, Some(&v1))], T0 + 2000);
    assert!(
        matches!(
            &events[..],
            [MembershipEvent::Rejected {
                reason: RejectReason::Replay { .. },
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(
        m.members(T0 + 2000)[0].report.as_ref().map(|r| r.seq),
        Some(2)
    );
}

#[test]
fn an_impostor_gossiping_under_a_members_id_changes_nothing() {
    let (a, rogue) = (key(1), key(9));
    let gid = id(&a).to_string();
    let real = value(&a, T0, 1, T0);
    let forged = value(&rogue, T0 + 50, 1, T0);
    let mut m = table();
    m.observe([obs(&gid, T0, Liveness::Alive, Some(&real))], T0);
    // The real incarnation dies; an impostor with a newer generation claims the id.
    let events = m.observe(
        [
            obs(&gid, T0, Liveness::Dead, Some(&real)),
            obs(&gid, T0 + 50, Liveness::Alive, Some(&forged)),
        ],
        T0 + 1,
    );
    assert!(
        events.contains(&MembershipEvent::Died { node: id(&a) }),
        "{events:?}"
    );
    let row = &m.members(T0 + 1)[0];
    assert_eq!((row.status, row.generation), (MemberStatus::Dead, T0));
    assert!(!row.counts());
}
