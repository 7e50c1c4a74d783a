//! Property tests of the market core on seeded random runs: guests arrive,
//! bid, are funded and leave while the price and the heat move; every tick
//! is checked against the contracts, and a replay of the run's entries must
//! rebuild the very same state.

use maxwell_market::{
    Act, Change, Class, Conditions, Entry, Market, MarketConfig, MarketError, Order, Power, Reason,
    Standing, TickInput, MAX_TRANSFER_MICRO,
};
use maxwell_types::rng::Rng;
use maxwell_types::NodeId;
use std::collections::BTreeMap;

struct Run {
    market: Market,
    entries: Vec<Entry>,
    usage: BTreeMap<u64, u64>,
    /// When each account first failed to pay in its current broke spell.
    broke_from: BTreeMap<u64, u64>,
    now: u64,
    next_vm: u64,
}

impl Run {
    fn record(&mut self, e: Entry) {
        self.market.apply(&e, true);
        self.entries.push(e);
    }
}

fn config() -> MarketConfig {
    MarketConfig {
        grace_ms: 5_000,
        receipt_every_ms: 3_000,
        ..MarketConfig::default()
    }
}

fn order(rng: &mut Rng, i: u64) -> Order {
    let class = match rng.below(5) {
        0 => Class::Critical,
        1 => Class::Evictable,
        _ => Class::Pausable,
    };
    let max_cpu = (rng.below(2) == 0).then(|| 0.05 + rng.unit() * 0.95);
    Order::new(
        &format!("g{i}"),
        1 + rng.below(4) as u32,
        16 + rng.below(4096),
        1 + rng.below(6_000),
        rng.below(3) * rng.below(20_000),
        class,
        max_cpu,
    )
    .expect("a valid order")
}

fn check_tick(run: &mut Run, entry: &Entry, capacity_in: u64) {
    let Entry::Tick(t) = entry else {
        panic!("a tick")
    };
    let cfg = run.market.config().clone();
    let shares: u64 = t.lines.iter().map(|l| l.share_mcores).sum();
    assert!(
        shares <= t.capacity_mcores,
        "shares {shares} above capacity {}",
        t.capacity_mcores
    );
    assert!(t.capacity_mcores <= capacity_in);
    let mut uncapped = Vec::new();
    for l in &t.lines {
        let a = run.market.account(l.account).expect("account");
        let (bid, class) = (a.order.bid_milli, a.order.class);
        if bid < t.price_milli && class != Class::Critical {
            assert_eq!(
                l.share_mcores, 0,
                "a guest bidding {bid} below {} has a share",
                t.price_milli
            );
        }
        if class == Class::Critical {
            assert!(
                !matches!(l.change, Some(Change::Pause | Change::Kill(_))),
                "a critical guest was paused or killed"
            );
            assert!(!matches!(
                a.standing,
                Standing::Paused | Standing::Killed(_)
            ));
        }
        // A pause holds: never resumed before its hold ends, and each hold
        // is between the configured least and most.
        match l.change {
            Some(Change::Resume) => assert!(
                a.hold.resumed_at_ms == Some(t.at_ms) && a.hold.until_ms <= t.at_ms,
                "resumed at {} inside its hold {:?}",
                t.at_ms,
                a.hold
            ),
            Some(Change::Pause) => {
                assert!((cfg.resume_hold_ms..=cfg.resume_hold_max_ms).contains(&a.hold.backoff_ms));
                assert_eq!(a.hold.until_ms, t.at_ms + a.hold.backoff_ms);
            }
            _ => {}
        }
        assert!(l.paid_micro <= l.cpu_rent_micro + l.memory_rent_micro);
        let unpaid = l.paid_micro < l.cpu_rent_micro + l.memory_rent_micro;
        if unpaid {
            run.broke_from.entry(l.account).or_insert(t.at_ms);
        } else {
            run.broke_from.remove(&l.account);
        }
        if l.change == Some(Change::Kill(Reason::Rent)) {
            let since = run.broke_from[&l.account];
            assert!(
                t.at_ms - since >= cfg.grace_ms,
                "killed {} ms after it first failed to pay",
                t.at_ms - since
            );
            assert_ne!(class, Class::Critical);
        }
        let cap = run.market.cap_mcores(l.account);
        if let Some(cap) = cap.filter(|c| l.share_mcores < *c) {
            uncapped.push((l.share_mcores, bid, cap));
        }
    }
    // Proportional among the uncapped, to within one milli-core.
    for w in uncapped.windows(2) {
        let ((s1, b1, _), (s2, b2, _)) = (w[0], w[1]);
        let d = (i128::from(s1) * i128::from(b2) - i128::from(s2) * i128::from(b1)).abs();
        assert!(
            d <= i128::from(b1.max(b2)),
            "shares {s1}/{b1} and {s2}/{b2} are not proportional"
        );
    }
    // Nothing is left unsold but rounding, unless every guest is at its cap.
    if !uncapped.is_empty() {
        assert!(
            shares + uncapped.len() as u64 >= t.capacity_mcores,
            "{shares} sold of {}; uncapped {uncapped:?}; level {:?}; lines {:?}",
            t.capacity_mcores,
            run.market.level(),
            t.lines
                .iter()
                .map(|l| (
                    l.account,
                    l.share_mcores,
                    run.market.cap_mcores(l.account),
                    l.change
                ))
                .collect::<Vec<_>>()
        );
    }
}

fn conserve(m: &Market) {
    assert_eq!(m.check_books(), Ok(()), "money appeared or vanished");
}

fn run_case(seed: u64, steps: usize) -> Run {
    let mut rng = Rng::new(seed);
    let mut run = Run {
        market: Market::new(config(), NodeId([1; 10])),
        entries: Vec::new(),
        usage: BTreeMap::new(),
        broke_from: BTreeMap::new(),
        now: 1_000_000,
        next_vm: 1,
    };
    let mut price = 1_000u64;
    for step in 0..steps {
        match rng.below(10) {
            0..=2 => {
                let o = order(&mut rng, step as u64);
                let e = run.market.open(run.next_vm, o, run.now).expect("opens");
                run.next_vm += 1;
                run.record(e);
            }
            3 => {
                let mut open: Vec<u64> = run
                    .market
                    .accounts()
                    .filter(|a| !matches!(a.standing, Standing::Closed(_)))
                    .map(|a| a.id)
                    .collect();
                open.sort_unstable();
                if let Some(&id) = open.get(rng.below(open.len() as u64 + 1) as usize) {
                    match rng.below(3) {
                        0 => {
                            let e = run
                                .market
                                .fund(id, 1 + rng.below(10_000), run.now)
                                .expect("fund");
                            run.record(e);
                        }
                        1 => {
                            let e = run
                                .market
                                .bid(id, 1 + rng.below(6_000), run.now)
                                .expect("bid");
                            run.record(e);
                        }
                        _ => {
                            for e in run
                                .market
                                .gone(id, Reason::Operator, run.now)
                                .expect("gone")
                            {
                                run.record(e);
                            }
                        }
                    }
                }
            }
            _ => {
                run.now += 1_000;
                price = (price as i64 + rng.below(1_201) as i64 - 600).clamp(100, 8_000) as u64;
                let mut running: Vec<_> = run.market.accounts().collect();
                running.sort_by_key(|a| a.id);
                for a in running {
                    if a.standing == Standing::Running {
                        let used = a.share_mcores * 1_000 / 1_000 * rng.below(101) / 100;
                        *run.usage.entry(a.id).or_insert(0) += used;
                    }
                }
                let cores = 4_000;
                let input = TickInput {
                    now_ms: run.now,
                    price_milli: price,
                    conditions: Conditions {
                        cores_mcores: cores,
                        temperature: Some((50_000 + rng.below(45_000) as i64, 90_000)),
                        headroom: Some((rng.unit() * 100.0, 100.0)),
                    },
                    power: Some(Power {
                        host_micro_w: 80_000_000,
                        idle_micro_w: 30_000_000,
                        host_busy_ms: 2_000,
                        host_cores: 4,
                    }),
                };
                let e = run.market.tick(&input, &run.usage);
                check_tick(&mut run, &e, cores);
                run.entries.push(e);
                // The driver carries out kills, then reports the guests gone.
                let mut gone = Vec::new();
                while let Some(a) = run.market.poll_action() {
                    if let Act::Kill(r) = a.act {
                        gone.push((a.account, r));
                    }
                }
                for (id, r) in gone {
                    // One the operator removed since its kill was queued
                    // (an evictable guest outbid on arrival) is gone already.
                    if run
                        .market
                        .account(id)
                        .is_some_and(|a| matches!(a.standing, Standing::Closed(_)))
                    {
                        continue;
                    }
                    for e in run.market.gone(id, r, run.now).expect("gone") {
                        run.record(e);
                    }
                }
                // And signs the receipts.
                let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
                while let Some(body) = run.market.poll_unsigned().cloned() {
                    run.record(Entry::Receipt(body.sign(&key)));
                }
            }
        }
        conserve(&run.market);
    }
    run
}

#[test]
fn every_tick_of_random_runs_keeps_the_contracts_and_a_replay_rebuilds_the_state() {
    for seed in 0..12 {
        let run = run_case(seed, 600);
        let mut replayed = Market::new(config(), NodeId([1; 10]));
        for e in &run.entries {
            replayed.apply(e, false);
        }
        same(&replayed.snapshot(), &run.market.snapshot(), seed);
        // From a snapshot too.
        let mut from_snap = Market::new(config(), NodeId([1; 10]));
        from_snap.apply(&Entry::Snapshot(Box::new(run.market.snapshot())), false);
        same(&from_snap.snapshot(), &run.market.snapshot(), seed);
    }
}

#[test]
fn receipts_of_a_run_verify_as_chains_under_the_nodes_key() {
    let run = run_case(7, 800);
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key();
    let mut by_account: BTreeMap<u64, Vec<maxwell_market::Receipt>> = BTreeMap::new();
    for e in &run.entries {
        if let Entry::Receipt(r) = e {
            by_account
                .entry(r.body.account)
                .or_default()
                .push(r.clone());
        }
    }
    assert!(
        by_account.len() > 10,
        "only {} guests got receipts",
        by_account.len()
    );
    for (id, chain) in &by_account {
        let s = maxwell_market::verify_chain(chain, &key)
            .unwrap_or_else(|e| panic!("account {id}: {e}"));
        assert!(s.complete);
    }
}

/// Names the first difference, rather than printing two whole states.
fn same(a: &maxwell_market::Snapshot, b: &maxwell_market::Snapshot, seed: u64) {
    assert_eq!(a.accounts.len(), b.accounts.len(), "seed {seed}: accounts");
    for (x, y) in a.accounts.iter().zip(&b.accounts) {
        assert_eq!(x, y, "seed {seed}: account {} differs", x.id);
    }
    assert_eq!(a.totals, b.totals, "seed {seed}: totals");
    assert_eq!(a, b, "seed {seed}");
}

/// A guest whose price flaps around its bid is paused, resumed after its
/// hold, and paused again with the hold doubled: 10, 20, 40 s, not a pause
/// every few seconds.
#[test]
fn a_guest_paused_again_soon_after_resuming_waits_twice_as_long() {
    let mut m = Market::new(MarketConfig::default(), NodeId([1; 10]));
    let order =
        Order::new("flap", 1, 16, 2_000, 1_000_000_000, Class::Pausable, None).expect("order");
    let e = m.open(1, order, 0).expect("opens");
    m.apply(&e, true);
    let usage = BTreeMap::new();
    let (mut pauses, mut resumes) = (Vec::new(), Vec::new());
    for s in 1..=200u64 {
        // Outbid every other second: the host's draw falls when it pauses.
        let price = if s % 2 == 0 { 2_500 } else { 1_000 };
        let input = TickInput {
            now_ms: s * 1_000,
            price_milli: price,
            conditions: Conditions {
                cores_mcores: 4_000,
                temperature: None,
                headroom: None,
            },
            power: None,
        };
        let Entry::Tick(t) = m.tick(&input, &usage) else {
            panic!("a tick")
        };
        for l in &t.lines {
            match l.change {
                Some(Change::Pause) => pauses.push(s),
                Some(Change::Resume) => resumes.push(s),
                _ => {}
            }
        }
    }
    assert_eq!(pauses[0], 2);
    let held: Vec<u64> = resumes.iter().zip(&pauses).map(|(r, p)| r - p).collect();
    assert_eq!(
        held[..4],
        [11, 21, 41, 81],
        "pauses {pauses:?}, resumes {resumes:?}"
    );
}

/// Money never saturates: a top-up that would take a wallet past the most
/// it holds, or any inflow that would overflow the 64-bit books, is
/// refused before it is written, and the books still balance.
#[test]
fn a_full_wallet_or_full_books_refuse_more_money_and_the_books_still_balance() {
    let mut m = Market::new(MarketConfig::default(), NodeId([1; 10]));
    let max = MAX_TRANSFER_MICRO / 1_000;
    let order =
        |name: &str| Order::new(name, 1, 16, 2_000, max, Class::Pausable, None).expect("order");
    let e = m.open(1, order("full"), 0).expect("opens");
    m.apply(&e, true);
    let id = m.account_of_vm(1).expect("account").id;
    let err = m.fund(id, 1, 1).expect_err("the wallet is full");
    assert!(matches!(err, MarketError::WalletFull { .. }), "{err}");
    assert!(err.to_string().contains("the most a wallet holds"), "{err}");
    // Full wallets until the books cannot count one more.
    let mut vm = 2;
    let refused = loop {
        match m.open(vm, order("more"), vm) {
            Ok(e) => m.apply(&e, true),
            Err(e) => break e,
        }
        vm += 1;
        assert!(vm < 100, "the books never filled");
    };
    assert!(matches!(refused, MarketError::BooksFull(_)), "{refused}");
    assert_eq!(m.check_books(), Ok(()));
    assert_eq!(m.totals().deposited_micro, (vm - 1) * max * 1_000);
}
