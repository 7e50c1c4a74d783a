//! The endpoint over real loopback TCP: only members get through, and a
//! peer at a member's address holding another key is an impostor.

use super::config::P2pConfig;
use super::*;
use crate::guests::config::{GuestBackendKind, RawGuests};
use crate::guests::Guests;
use crate::identity::Identity;
use std::time::Duration;

/// An endpoint on a loopback port of the OS's choosing, with no guests.
async fn endpoint(seed: u8) -> (Identity, P2p) {
    let identity = Identity::from_seed([seed; 32]);
    let cfg = RawGuests {
        backend: Some(GuestBackendKind::None),
        ..RawGuests::default()
    }
    .validate()
    .expect("guests config");
    let (guests, _inbox) = Guests::open(&cfg).expect("no guests");
    let config = P2pConfig {
        listen_addr: "127.0.0.1:0".parse().expect("addr"),
        offer_timeout: Duration::from_secs(5),
        mdns: false,
    };
    let gossip = "127.0.0.1:7946".parse().expect("addr");
    let (p2p, _seeds) = start(&config, &identity, Arc::new(guests), gossip)
        .await
        .expect("endpoint");
    (identity, p2p)
}

fn offer() -> Request {
    Request::Offer {
        spec_json: r#"{"kind": "workload", "vcpus": 1, "memory_mib": 16, "payload": "count"}"#
            .into(),
    }
}

fn members(ids: &[&Identity]) -> BTreeMap<NodeId, String> {
    ids.iter().map(|i| (i.id(), "m".to_string())).collect()
}

#[tokio::test]
async fn only_members_get_through_and_a_key_that_is_not_the_members_is_refused() {
    let (a, ep_a) = endpoint(1).await;
    let (b, ep_b) = endpoint(2).await;
    let (c, ep_c) = endpoint(3).await;
    let (_, ep_s) = endpoint(4).await;
    // A, B and C know each other; no one knows the stranger, who trusts all.
    ep_a.set_members(members(&[&b, &c]));
    ep_b.set_members(members(&[&a, &c]));
    ep_c.set_members(members(&[&a, &b]));
    ep_s.set_members(members(&[&a, &b, &c]));
    let denied = |p: &P2p| p.counters.denied.load(Ordering::Relaxed);

    // The stranger's connection is denied at B once Noise has shown its key.
    let refused = ep_s.send(b.id(), ep_b.listen_addr, offer()).await;
    assert!(refused.is_err(), "{refused:?}");
    assert_eq!(denied(&ep_b), 1);

    // A, told that B listens where the stranger does, denies the stranger's key...
    let stranger = ep_a.send(b.id(), ep_s.listen_addr, offer()).await;
    assert!(
        matches!(stranger, Err(OfferError::Unreachable(..))),
        "{stranger:?}"
    );
    assert_eq!(denied(&ep_a), 1);
    // ... and, told that B listens where C does, finds C's key there, not B's.
    match ep_a.send(b.id(), ep_c.listen_addr, offer()).await {
        Err(OfferError::Impostor {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (b.id(), c.id()));
        }
        other => panic!("C is not B: {other:?}"),
    }
    assert_eq!(ep_a.counters.impostors.load(Ordering::Relaxed), 1);

    // A member's offer reaches B, which answers it (it runs no guests).
    match ep_a.send(b.id(), ep_b.listen_addr, offer()).await {
        Ok(Answer::Refused { reason }) => assert!(reason.contains("disabled"), "{reason}"),
        other => panic!("a member's offer is answered: {other:?}"),
    }
    // A confirmation of a guest it never offered is refused.
    match ep_a
        .send(b.id(), ep_b.listen_addr, Request::Confirm { guest: 7 })
        .await
    {
        Ok(Answer::Refused { reason }) => assert!(reason.contains("no guest 7"), "{reason}"),
        other => panic!("nothing is held: {other:?}"),
    }
    assert_eq!(denied(&ep_b), 1);
}

#[test]
fn a_move_from_an_agent_that_names_no_rule_reads_as_an_operators() {
    let old = r#"{"Migrate": {"move_id": 7, "spec_json": "{}", "wallet": null, "snapshot": null}}"#;
    let Ok(Request::Migrate {
        move_id, by_rule, ..
    }) = serde_json::from_str(old)
    else {
        panic!("an older agent's move no longer reads");
    };
    assert_eq!((move_id, by_rule), (7, false));
}
