use super::*;
use crate::node_id::KeyedNodeId;
use crate::report::tests::sample;
use crate::report::RecordKind;
use crate::units::MilliCelsius;
use crate::wire::{sign_raw, MAX_ENCODED_LEN};
use ed25519_dalek::SigningKey;

/// Our clock in every test: the sample report's timestamp.
const NOW: u64 = 1_764_201_642_000;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn id(key: &SigningKey) -> NodeId {
    NodeId::from_verifying_key(&key.verifying_key())
}

fn report(key: &SigningKey, generation: u64, seq: u64, timestamp_ms: u64) -> HeatReport {
    HeatReport {
        generation,
        seq,
        timestamp_ms,
        ..sample(id(key))
    }
}

fn encode(report: &HeatReport, key: &SigningKey) -> String {
    SignedRecord::sign(report, key).expect("signable").encode()
}

fn leave(key: &SigningKey, generation: u64, seq: u64, timestamp_ms: u64) -> String {
    let leave = Leave {
        node_id: id(key),
        generation,
        seq,
        timestamp_ms,
    };
    SignedRecord::sign(&leave, key).expect("signable").encode()
}

fn verifier() -> Verifier {
    Verifier::new(VerifierConfig::default())
}

#[test]
fn accepts_a_report_and_shows_it_fresh() {
    let k = key(1);
    let mut v = verifier();
    let r = report(&k, 7, 1, NOW);
    assert_eq!(
        v.verify(&id(&k), &encode(&r, &k), NOW),
        Ok(Verified::Report(r.clone()))
    );
    let view = v.view(NOW + 1_000);
    assert_eq!(
        view,
        vec![MemberView {
            node_id: id(&k),
            report: r,
            accepted_at_ms: NOW,
            age_ms: 1_000,
            freshness: Freshness::Fresh,
        }]
    );
    assert_eq!(v.member(&id(&k), NOW + 1_000), view.into_iter().next());
    assert_eq!(v.counters().accepted(RecordKind::Report), 1);
    assert_eq!(v.counters().total_rejected(), 0);
    assert_eq!(v.tracked(), 1);
}

#[test]
fn oversized_and_malformed_values() {
    let k = key(2);
    let mut v = verifier();
    let long = "A".repeat(MAX_ENCODED_LEN + 1);
    assert_eq!(
        v.verify(&id(&k), &long, NOW),
        Err(RejectReason::Oversized {
            len: MAX_ENCODED_LEN + 1
        })
    );
    assert_eq!(
        v.verify(&id(&k), "not base64!", NOW),
        Err(RejectReason::Malformed(DecodeError::NotBase64 { at: 3 }))
    );
    assert_eq!(
        v.verify(&id(&k), "AAAA", NOW),
        Err(RejectReason::Malformed(DecodeError::TooShort { len: 3 }))
    );
    // Signed, but the body is cut short.
    let body =
        postcard::to_allocvec(&(crate::RECORD_VERSION, &report(&k, 1, 1, NOW))).expect("encodable");
    let cut = sign_raw(RecordKind::Report, body[..30].to_vec(), &k).encode();
    assert_eq!(
        v.verify(&id(&k), &cut, NOW),
        Err(RejectReason::Malformed(DecodeError::Body(
            postcard::Error::DeserializeUnexpectedEnd
        )))
    );
    let c = v.counters();
    assert_eq!(c.rejected(&RejectReason::Oversized { len: 0 }), 1);
    assert_eq!(c.rejected(&RejectReason::Malformed(DecodeError::BadKey)), 3);
    assert!(v.view(NOW).is_empty());
    assert_eq!(v.tracked(), 0);
}

#[test]
fn unsupported_version() {
    let k = key(3);
    let body = postcard::to_allocvec(&(crate::RECORD_VERSION + 1, &report(&k, 1, 1, NOW)))
        .expect("encodable");
    let value = sign_raw(RecordKind::Report, body, &k).encode();
    let mut v = verifier();
    assert_eq!(
        v.verify(&id(&k), &value, NOW),
        Err(RejectReason::UnsupportedVersion(crate::RECORD_VERSION + 1))
    );
    assert_eq!(
        v.counters().rejected(&RejectReason::UnsupportedVersion(0)),
        1
    );
}

#[test]
fn forged_and_tampered_reports() {
    let (k, forger) = (key(4), key(5));
    let mut v = verifier();
    let genuine = SignedRecord::sign(&report(&k, 1, 1, NOW), &k).expect("signable");
    // Tampered: flip a bit of the body (the hottest reading lives there).
    let mut bytes = genuine.to_bytes();
    let last = bytes.len() - 10;
    bytes[last] ^= 0x01;
    let tampered = SignedRecord::from_bytes(&bytes).expect("layout intact");
    assert_eq!(
        v.verify(&id(&k), &tampered.encode(), NOW),
        Err(RejectReason::BadSignature)
    );
    // Forged: the victim's key and body, signed by someone else.
    let forged_sig = sign_raw(RecordKind::Report, genuine.body().to_vec(), &forger);
    let mut bytes = genuine.to_bytes();
    bytes[33..97].copy_from_slice(forged_sig.signature());
    let forged = SignedRecord::from_bytes(&bytes).expect("layout intact");
    assert_eq!(
        v.verify(&id(&k), &forged.encode(), NOW),
        Err(RejectReason::BadSignature)
    );
    assert_eq!(v.counters().rejected(&RejectReason::BadSignature), 2);
    assert!(v.view(NOW).is_empty());
}

#[test]
fn key_must_match_the_claimed_node() {
    let (a, b) = (key(6), key(7));
    let mut v = verifier();
    // A's genuine report replayed filed under B's node id.
    let value = encode(&report(&a, 1, 1, NOW), &a);
    assert_eq!(
        v.verify(&id(&b), &value, NOW),
        Err(RejectReason::KeyMismatch {
            claimed: id(&b),
            key: id(&a),
        })
    );
    // Signed by A's key, but naming B in the body.
    let body =
        postcard::to_allocvec(&(crate::RECORD_VERSION, &report(&b, 1, 1, NOW))).expect("encodable");
    let value = sign_raw(RecordKind::Report, body, &a).encode();
    assert_eq!(
        v.verify(&id(&a), &value, NOW),
        Err(RejectReason::KeyMismatch {
            claimed: id(&a),
            key: id(&b),
        })
    );
    let mismatch = RejectReason::KeyMismatch {
        claimed: id(&a),
        key: id(&a),
    };
    assert_eq!(v.counters().rejected(&mismatch), 2);
    assert_eq!(mismatch.label(), "key_mismatch");
}

#[test]
fn allowlist_admits_only_listed_keys() {
    let (member, outsider) = (key(8), key(9));
    let mut v = Verifier::new(VerifierConfig {
        allowlist: Some(Allowlist::from_keys([&member.verifying_key()])),
        ..VerifierConfig::default()
    });
    let r = report(&member, 1, 1, NOW);
    assert_eq!(
        v.verify(&id(&member), &encode(&r, &member), NOW),
        Ok(Verified::Report(r))
    );
    let value = encode(&report(&outsider, 1, 1, NOW), &outsider);
    assert_eq!(
        v.verify(&id(&outsider), &value, NOW),
        Err(RejectReason::NotAllowlisted(id(&outsider)))
    );
    // The allowlist is checked before the claimed id.
    assert_eq!(
        v.verify(&id(&member), &value, NOW),
        Err(RejectReason::NotAllowlisted(id(&outsider)))
    );
    assert_eq!(
        v.counters()
            .rejected(&RejectReason::NotAllowlisted(id(&member))),
        2
    );
    assert_eq!(v.view(NOW).len(), 1);
}

#[test]
fn replays_are_refused() {
    let k = key(10);
    let mut v = verifier();
    let first = encode(&report(&k, 5, 10, NOW - 2_000), &k);
    let second = encode(&report(&k, 5, 11, NOW - 1_000), &k);
    assert!(v.verify(&id(&k), &first, NOW).is_ok());
    assert!(v.verify(&id(&k), &second, NOW).is_ok());
    let replay = |seq| RejectReason::Replay {
        generation: 5,
        seq,
        last_generation: 5,
        last_seq: 11,
    };
    // The same value again is gossip re-delivery, not a replay.
    assert_eq!(v.verify(&id(&k), &second, NOW), Ok(Verified::Unchanged));
    assert_eq!(v.verify(&id(&k), &first, NOW), Err(replay(10)));
    // Same record, re-signed (ed25519 is deterministic, so re-encode a
    // different record with the same order): still a replay.
    let mut again = report(&k, 5, 11, NOW - 1_000);
    again.hottest = MilliCelsius(20_000);
    assert_eq!(v.verify(&id(&k), &encode(&again, &k), NOW), Err(replay(11)));
    // The view still holds the newest report.
    let view = v.view(NOW);
    assert_eq!(view.len(), 1);
    assert_eq!(view[0].report.seq, 11);
    assert_eq!(v.counters().rejected(&replay(0)), 2);
    assert_eq!(v.counters().accepted(RecordKind::Report), 2);
    assert_eq!(v.counters().unchanged, 1);
}

#[test]
fn clock_skew_in_both_directions() {
    let k = key(11);
    let config = VerifierConfig::default();
    let (skew, max_age) = (config.max_clock_skew_ms, config.max_age_ms);
    let mut v = Verifier::new(config);
    let at = |seq, ts| encode(&report(&k, 1, seq, ts), &k);
    assert_eq!(
        v.verify(&id(&k), &at(1, NOW + skew + 1), NOW),
        Err(RejectReason::FromFuture { ahead_ms: skew + 1 })
    );
    assert_eq!(
        v.verify(&id(&k), &at(2, NOW - max_age - 1), NOW),
        Err(RejectReason::TooOld {
            age_ms: max_age + 1
        })
    );
    // Both bounds are inclusive.
    assert!(v.verify(&id(&k), &at(3, NOW - max_age), NOW).is_ok());
    assert!(v.verify(&id(&k), &at(4, NOW + skew), NOW).is_ok());
    let c = v.counters();
    assert_eq!(c.rejected(&RejectReason::FromFuture { ahead_ms: 0 }), 1);
    assert_eq!(c.rejected(&RejectReason::TooOld { age_ms: 0 }), 1);
    assert_eq!(c.accepted(RecordKind::Report), 2);
}

#[test]
fn staleness_across_the_ttl() {
    let k = key(12);
    let config = VerifierConfig::default();
    let ttl = config.ttl_ms;
    let mut v = Verifier::new(config);
    // Sent 1 s before we see it: age counts from the report's timestamp.
    assert!(v
        .verify(&id(&k), &encode(&report(&k, 1, 1, NOW - 1_000), &k), NOW)
        .is_ok());
    let at = |now| v.member(&id(&k), now).map(|m| (m.age_ms, m.freshness));
    assert_eq!(at(NOW - 1_000 + ttl), Some((ttl, Freshness::Fresh)));
    assert_eq!(at(NOW - 999 + ttl), Some((ttl + 1, Freshness::Stale)));
    // Stale members stay in the view, marked stale.
    assert_eq!(v.view(NOW + 10 * ttl).len(), 1);
    assert_eq!(v.view(NOW + 10 * ttl)[0].freshness, Freshness::Stale);

    // A sender whose clock runs 3 s ahead: age counts from our receipt.
    let fast = key(13);
    assert!(v
        .verify(
            &id(&fast),
            &encode(&report(&fast, 1, 1, NOW + 3_000), &fast),
            NOW
        )
        .is_ok());
    let m = v.member(&id(&fast), NOW + ttl + 1).expect("member");
    assert_eq!((m.age_ms, m.freshness), (ttl + 1, Freshness::Stale));
}

#[test]
fn a_restart_with_a_new_generation_resets_the_sequence() {
    let k = key(14);
    let mut v = verifier();
    assert!(v
        .verify(
            &id(&k),
            &encode(&report(&k, 100, 500, NOW - 3_000), &k),
            NOW
        )
        .is_ok());
    // Restarted: newer generation, sequence from zero.
    let restarted = report(&k, 200, 0, NOW - 1_000);
    assert_eq!(
        v.verify(&id(&k), &encode(&restarted, &k), NOW),
        Ok(Verified::Report(restarted))
    );
    // A report of the old generation, even with a higher sequence, is a replay.
    assert_eq!(
        v.verify(&id(&k), &encode(&report(&k, 100, 501, NOW), &k), NOW),
        Err(RejectReason::Replay {
            generation: 100,
            seq: 501,
            last_generation: 200,
            last_seq: 0,
        })
    );
    assert_eq!(
        v.member(&id(&k), NOW).map(|m| m.report.generation),
        Some(200)
    );
}

#[test]
fn replay_order_is_per_node_and_kind_and_a_generation_is_one_incarnation() {
    let k = key(17);
    let mut v = verifier();
    assert!(v
        .verify(&id(&k), &encode(&report(&k, 5, 9, NOW - 2_000), &k), NOW)
        .is_ok());
    // A leave is ordered among leaves: its sequence may be below the last report's.
    assert!(matches!(
        v.verify(&id(&k), &leave(&k, 5, 4, NOW - 1_000), NOW),
        Ok(Verified::Leave(Leave { seq: 4, .. }))
    ));
    assert_eq!(
        v.verify(&id(&k), &leave(&k, 5, 3, NOW - 900), NOW),
        Err(RejectReason::Replay {
            generation: 5,
            seq: 3,
            last_generation: 5,
            last_seq: 4,
        })
    );
    // After a restart, nothing of an older generation, of any kind.
    assert!(v
        .verify(&id(&k), &encode(&report(&k, 6, 1, NOW - 800), &k), NOW)
        .is_ok());
    assert!(matches!(
        v.verify(&id(&k), &leave(&k, 5, 10, NOW - 700), NOW),
        Err(RejectReason::Replay { generation: 5, .. })
    ));
    assert!(!v.has_left(&id(&k)));
    assert_eq!(v.counters().accepted(RecordKind::Report), 2);
    assert_eq!(v.counters().accepted(RecordKind::Leave), 1);
    assert_eq!(
        v.counters().rejected(&RejectReason::Replay {
            generation: 0,
            seq: 0,
            last_generation: 0,
            last_seq: 0,
        }),
        2
    );
}

#[test]
fn a_signed_leave_ends_membership_for_its_generation() {
    let k = key(15);
    let mut v = verifier();
    assert!(v
        .verify(&id(&k), &encode(&report(&k, 1, 1, NOW - 2_000), &k), NOW)
        .is_ok());
    // Another node cannot make k leave: its key does not match k's id.
    let other = key(16);
    assert!(matches!(
        v.verify(&id(&k), &leave(&other, 1, 2, NOW), NOW),
        Err(RejectReason::KeyMismatch { .. })
    ));
    assert_eq!(v.view(NOW).len(), 1);

    let left = v.verify(&id(&k), &leave(&k, 1, 2, NOW - 1_000), NOW);
    assert!(matches!(left, Ok(Verified::Leave(Leave { seq: 2, .. }))));
    assert!(v.has_left(&id(&k)));
    assert!(v.view(NOW).is_empty());
    assert_eq!(v.member(&id(&k), NOW), None);
    assert_eq!(v.counters().accepted(RecordKind::Leave), 1);

    // Its last report, delivered again after the leave, is a replay, not a
    // re-delivery: the leave is what it says now.
    assert!(matches!(
        v.verify(&id(&k), &encode(&report(&k, 1, 1, NOW - 2_000), &k), NOW),
        Err(RejectReason::Replay { .. })
    ));
    // Nothing more from the generation it left, even with a newer sequence.
    assert_eq!(
        v.verify(&id(&k), &encode(&report(&k, 1, 3, NOW), &k), NOW),
        Err(RejectReason::Replay {
            generation: 1,
            seq: 3,
            last_generation: 1,
            last_seq: 2,
        })
    );
    // A restart brings it back.
    assert!(v
        .verify(&id(&k), &encode(&report(&k, 2, 0, NOW), &k), NOW)
        .is_ok());
    assert!(!v.has_left(&id(&k)));
    assert_eq!(v.view(NOW).len(), 1);
}

#[test]
fn tracking_is_capped() {
    let mut v = Verifier::new(VerifierConfig {
        max_tracked_nodes: 2,
        ..VerifierConfig::default()
    });
    let max_age = v.config().max_age_ms;
    let (a, b, c) = (key(17), key(18), key(19));
    assert!(v
        .verify(&id(&a), &encode(&report(&a, 1, 1, NOW - 1_000), &a), NOW)
        .is_ok());
    assert!(v
        .verify(&id(&b), &encode(&report(&b, 1, 1, NOW), &b), NOW)
        .is_ok());
    assert_eq!(
        v.verify(&id(&c), &encode(&report(&c, 1, 1, NOW), &c), NOW),
        Err(RejectReason::TrackingLimit(id(&c)))
    );
    // Known nodes still update at the cap.
    assert!(v
        .verify(&id(&b), &encode(&report(&b, 1, 2, NOW), &b), NOW)
        .is_ok());
    assert_eq!(v.tracked(), 2);
    // Once a's report is older than max_age it can be forgotten safely,
    // which makes room for c.
    let later = NOW - 1_000 + max_age + 1;
    assert!(v
        .verify(&id(&c), &encode(&report(&c, 1, 2, later), &c), later)
        .is_ok());
    assert_eq!(v.tracked(), 2);
    assert!(v.member(&id(&a), later).is_none());
    assert_eq!(
        v.counters().rejected(&RejectReason::TrackingLimit(id(&c))),
        1
    );
}

#[test]
fn prune_and_forget() {
    let (a, b) = (key(20), key(21));
    let mut v = verifier();
    let max_age = v.config().max_age_ms;
    let old = encode(&report(&a, 1, 1, NOW), &a);
    assert!(v.verify(&id(&a), &old, NOW).is_ok());
    assert!(v
        .verify(
            &id(&b),
            &encode(&report(&b, 1, 1, NOW + 5_000), &b),
            NOW + 5_000
        )
        .is_ok());
    assert_eq!(v.prune(NOW + max_age), 0);
    assert_eq!(v.prune(NOW + max_age + 1), 1);
    assert_eq!(v.tracked(), 1);
    assert!(v.forget(&id(&b)));
    assert!(!v.forget(&id(&b)));
    assert_eq!(v.tracked(), 0);
    // Forgetting within max_age lets a replay in again: documented, and why
    // `forget` is only for nodes the mesh itself dropped.
    assert!(v.verify(&id(&a), &old, NOW).is_ok());
    assert!(v.forget(&id(&a)));
    assert!(v.verify(&id(&a), &old, NOW).is_ok());
}

#[test]
fn every_reason_has_a_distinct_label_and_counter() {
    let nid = NodeId([0; 10]);
    let reasons = [
        RejectReason::Oversized { len: 0 },
        RejectReason::Malformed(DecodeError::BadKey),
        RejectReason::UnsupportedVersion(9),
        RejectReason::BadSignature,
        RejectReason::KeyMismatch {
            claimed: nid,
            key: nid,
        },
        RejectReason::NotAllowlisted(nid),
        RejectReason::Replay {
            generation: 0,
            seq: 0,
            last_generation: 0,
            last_seq: 0,
        },
        RejectReason::FromFuture { ahead_ms: 0 },
        RejectReason::TooOld { age_ms: 0 },
        RejectReason::TrackingLimit(nid),
    ];
    let labels: Vec<_> = reasons.iter().map(RejectReason::label).collect();
    assert_eq!(labels, RejectReason::LABELS.to_vec());
    let mut counters = RejectCounters::default();
    for (i, r) in reasons.iter().enumerate() {
        counters.rejected[r.index()] += i as u64 + 1;
    }
    for (i, (label, count)) in counters.rejections().iter().enumerate() {
        assert_eq!((*label, *count), (RejectReason::LABELS[i], i as u64 + 1));
    }
    assert_eq!(counters.total_rejected(), 55);
    assert_eq!(
        RejectReason::FromFuture { ahead_ms: 7 }.to_string(),
        "timestamp is 7 ms in the future"
    );
}

#[test]
fn hot_reading_survives_verification_exactly() {
    let k = key(22);
    let mut r = report(&k, 1, 1, NOW);
    r.hottest = MilliCelsius(-40_250);
    let mut v = verifier();
    assert_eq!(
        v.verify(&id(&k), &encode(&r, &k), NOW),
        Ok(Verified::Report(r))
    );
}
