use crate::capacity::Conditions;
use crate::entry::Entry;
use crate::market::{Market, MarketError, Standing, TickInput};
use crate::order::{Class, MarketConfig, Order};
use crate::transfer::{Seals, Settled, Side};
use ed25519_dalek::SigningKey;
use maxwell_types::NodeId;
use std::collections::BTreeMap;

const A: NodeId = NodeId([1; 10]);
const B: NodeId = NodeId([2; 10]);

fn market(node: NodeId) -> Market {
    Market::new(MarketConfig::default(), node)
}

fn order() -> Order {
    Order::new("w", 1, 64, 2_000, 50_000, Class::Pausable, None).expect("order")
}

fn put(m: &mut Market, e: &Entry, log: &mut Vec<Entry>) {
    m.apply(e, true);
    log.push(e.clone());
}

/// Both sides' books balance: what came in is in wallets, earned, taxed,
/// refunded, sent on or in escrow.
fn balanced(m: &Market) {
    assert_eq!(
        m.check_books(),
        Ok(()),
        "money appeared or vanished: {:?}",
        m.totals()
    );
}

fn tick(m: &mut Market, now: u64, usage: u64, log: &mut Vec<Entry>) {
    let input = TickInput {
        now_ms: now,
        price_milli: 1_000,
        conditions: Conditions {
            cores_mcores: 2_000,
            temperature: None,
            headroom: None,
        },
        power: None,
    };
    let usage: BTreeMap<u64, u64> = m.accounts().map(|a| (a.id, usage)).collect();
    let e = m.tick(&input, &usage);
    log.push(e);
}

/// A market replayed from `log` is the live one.
fn replays(m: &Market, log: &[Entry], node: NodeId) {
    let mut r = market(node);
    for e in log {
        r.apply(e, false);
    }
    assert_eq!(r.snapshot(), m.snapshot());
}

/// Source `a` sends account 1 to `b`; returns the signed transfer's entries.
fn send(a: &mut Market, b: &mut Market, logs: (&mut Vec<Entry>, &mut Vec<Entry>)) {
    let (ka, kb) = (
        SigningKey::from_bytes(&[7; 32]),
        SigningKey::from_bytes(&[8; 32]),
    );
    let t = a.transfer_out(1, B, 10_000).expect("movable");
    let sig = t.sign(&ka, Side::Source);
    assert!(t.verify(&ka.verifying_key(), Side::Source, &sig));
    assert!(
        !t.verify(&ka.verifying_key(), Side::Target, &sig),
        "sides differ"
    );
    assert!(
        !t.verify(&kb.verifying_key(), Side::Source, &sig),
        "keys differ"
    );
    put(
        a,
        &Entry::Out {
            transfer: t.clone(),
            signature: sig,
            endpoint: None,
        },
        logs.0,
    );
    let seals = Seals {
        signature: t.sign(&kb, Side::Target),
        ..Seals::default()
    };
    // What a peer sends is checked: a bad order or a wallet no deposit
    // could make is refused.
    let mut bad = order();
    bad.max_cpu_milli = 0;
    assert!(b
        .transfer_in(9, bad, t.clone(), seals.clone(), 10_000)
        .is_err());
    let mut vast = t.clone();
    vast.amount_micro = u64::MAX;
    assert!(matches!(
        b.transfer_in(9, order(), vast, seals.clone(), 10_000),
        Err(MarketError::TransferAmount(_))
    ));
    let e = b.transfer_in(9, order(), t, seals, 10_000).expect("in");
    put(b, &e, logs.1);
    // A repeated arrival (a retried commit) moves nothing twice.
    put(b, &e, logs.1);
}

#[test]
fn a_delivered_wallet_is_in_exactly_one_ledger_at_every_step() {
    let (mut a, mut b) = (market(A), market(B));
    let (mut la, mut lb) = (Vec::new(), Vec::new());
    let open = a.open(5, order(), 1_000).expect("opens");
    put(&mut a, &open, &mut la);
    tick(&mut a, 1_000, 0, &mut la);
    tick(&mut a, 6_000, 2_000, &mut la);
    let wallet = a.account(1).expect("open").wallet_micro;
    assert!(wallet < 50_000_000, "it paid rent");
    send(&mut a, &mut b, (&mut la, &mut lb));
    balanced(&a);
    balanced(&b);
    assert_eq!(a.totals().escrow_micro, wallet, "escrowed until settled");
    assert_eq!(
        a.account(1).map(|x| x.standing),
        Some(Standing::Closed(crate::Reason::Moved))
    );
    assert!(a.totals().kills.is_empty(), "a move is no kill");
    assert_eq!(b.account(1).map(|x| x.wallet_micro), Some(wallet));
    assert!(b.has_arrived(A, 1) && !b.has_arrived(A, 2));
    let s = a.settle(1, true, None, 10_050).expect("outbound");
    put(&mut a, &s, &mut la);
    balanced(&a);
    assert_eq!(a.totals().escrow_micro, 0);
    assert_eq!(a.totals().moved_out_micro, b.totals().moved_in_micro);
    assert!(a.outbound().next().is_none());
    replays(&a, &la, A);
    replays(&b, &lb, B);
    // And through a compacted ledger.
    let mut c = market(B);
    c.apply(&Entry::Snapshot(Box::new(b.snapshot())), false);
    assert!(c.has_arrived(A, 1));
}

#[test]
fn an_aborted_transfer_comes_back_into_a_new_account_or_is_refunded() {
    for back in [true, false] {
        let (mut a, b) = (market(A), market(B));
        let mut la = Vec::new();
        let open = a.open(5, order(), 1_000).expect("opens");
        put(&mut a, &open, &mut la);
        let t = a.transfer_out(1, B, 2_000).expect("movable");
        let wallet = t.amount_micro;
        put(
            &mut a,
            &Entry::Out {
                transfer: t,
                signature: String::new(),
                endpoint: None,
            },
            &mut la,
        );
        let s = a
            .settle(1, false, back.then_some(5), 3_000)
            .expect("outbound");
        put(&mut a, &s, &mut la);
        balanced(&a);
        balanced(&b);
        assert_eq!(a.totals().escrow_micro, 0);
        if back {
            assert!(matches!(
                s,
                Entry::Settle {
                    outcome: Settled::Back { account: 2, vm: 5 },
                    ..
                }
            ));
            let again = a.account_of_vm(5).expect("runs on here");
            assert_eq!((again.id, again.wallet_micro), (2, wallet));
            assert_eq!(a.totals().refunded_micro, 0);
        } else {
            assert_eq!(a.totals().refunded_micro, wallet);
            assert!(a.account_of_vm(5).is_none());
        }
        assert!(a.settle(1, true, None, 4_000).is_err(), "settled once");
        replays(&a, &la, A);
    }
}

#[test]
fn a_closed_account_or_one_in_arrears_does_not_move() {
    let mut a = market(A);
    let mut log = Vec::new();
    let crit = Order::new("c", 1, 64, 2_000, 0, Class::Critical, None).expect("order");
    let e = a.open(5, crit, 1_000).expect("opens");
    put(&mut a, &e, &mut log);
    tick(&mut a, 1_000, 0, &mut log);
    tick(&mut a, 3_000, 1_000, &mut log);
    assert!(a.transfer_out(1, B, 3_000).is_err(), "owes arrears");
    assert!(a.transfer_out(2, B, 3_000).is_err(), "no such account");
}
