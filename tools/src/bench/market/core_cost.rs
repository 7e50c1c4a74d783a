//! The market core alone: the cost of each change at n guests.

use maxwell_market::fill::{naive_level, Entry as FillEntry, Fill};
use maxwell_market::{Class, Conditions, Market, MarketConfig, Order, Power, Reason, TickInput};
use maxwell_types::rng::Rng;
use maxwell_types::NodeId;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

fn order(rng: &mut Rng, i: usize) -> Order {
    let class = if rng.below(10) == 0 {
        Class::Critical
    } else {
        Class::Pausable
    };
    let max_cpu = (rng.below(2) == 0).then(|| 0.1 + rng.unit() * 0.9);
    Order::new(
        &format!("g{i}"),
        1 + rng.below(4) as u32,
        64,
        1 + rng.below(8_000),
        1_000_000_000,
        class,
        max_cpu,
    )
    .expect("order")
}

fn ns_per(ops: usize, t: Instant) -> f64 {
    t.elapsed().as_nanos() as f64 / ops as f64
}

/// One row per size.
pub fn run(sizes: &[usize]) -> String {
    let mut out = String::from(
        "market core alone (one thread, no KVM; mean per operation)\n\
         guests    bid change  (its book part)  arrival   departure  level (book)  level (re-sort)  tick        per guest/tick\n",
    );
    for &n in sizes {
        eprintln!("market core: {n} guests ...");
        let mut rng = Rng::new(n as u64);
        let mut m = Market::new(MarketConfig::default(), NodeId([0; 10]));
        for i in 0..n {
            let e = m.open(i as u64, order(&mut rng, i), 1_000).expect("opens");
            m.apply(&e, true);
        }
        let cores = (n as u64 / 2).max(1) * 1000;
        let mut usage: BTreeMap<u64, u64> = BTreeMap::new();
        let mut now = 1_000u64;
        let tick = |m: &mut Market, usage: &mut BTreeMap<u64, u64>, now: u64, price: u64| {
            for a in m.accounts() {
                *usage.entry(a.id).or_default() += a.share_mcores / 2;
            }
            let input = TickInput {
                now_ms: now,
                price_milli: price,
                conditions: Conditions {
                    cores_mcores: cores,
                    temperature: Some((60_000, 100_000)),
                    headroom: None,
                },
                power: Some(Power {
                    host_micro_w: 200_000_000,
                    idle_micro_w: 80_000_000,
                    host_busy_ms: 1_000,
                    host_cores: 64,
                }),
            };
            let _ = m.tick(&input, usage);
            while m.poll_action().is_some() {}
            while let Some(b) = m.poll_unsigned().cloned() {
                // Signing is the driver's; the bench applies the bodies unsigned-equal.
                m.apply(
                    &maxwell_market::Entry::Receipt(maxwell_market::Receipt {
                        body: b,
                        signature: String::new(),
                    }),
                    true,
                );
            }
        };
        tick(&mut m, &mut usage, now, 1_000);
        // Bid changes.
        let ops = 20_000.min(n * 4);
        let mut ids: Vec<u64> = m.accounts().map(|a| a.id).collect();
        ids.sort_unstable();
        let t = Instant::now();
        for _ in 0..ops {
            let id = ids[rng.below(ids.len() as u64) as usize];
            let e = m.bid(id, 1 + rng.below(8_000), now).expect("bid");
            m.apply(&e, true);
        }
        let bid_ns = ns_per(ops, t);
        // Arrivals, then as many departures.
        let arrivals = 5_000.min(n);
        let t = Instant::now();
        let mut new_ids = Vec::new();
        for i in 0..arrivals {
            let e = m
                .open(1_000_000 + i as u64, order(&mut rng, i), now)
                .expect("opens");
            if let maxwell_market::Entry::Open { account, .. } = &e {
                new_ids.push(*account);
            }
            m.apply(&e, true);
        }
        let arrive_ns = ns_per(arrivals, t);
        let t = Instant::now();
        for id in &new_ids {
            for e in m.gone(*id, Reason::Operator, now).expect("gone") {
                m.apply(&e, true);
            }
        }
        let depart_ns = ns_per(arrivals, t);
        // The price step's search: the book beside a re-sort of every guest.
        let mut fill = Fill::new();
        let entries: Vec<FillEntry> = (0..n as u64)
            .map(|id| FillEntry {
                id,
                bid: 1 + rng.below(8_000),
                cap: 1 + rng.below(4_000),
            })
            .collect();
        for e in &entries {
            fill.insert(*e);
        }
        let searches = 2_000;
        let t = Instant::now();
        let mut sink = 0u128;
        for _ in 0..searches {
            sink ^= fill.level(rng.below(cores)).num;
        }
        let level_ns = ns_per(searches, t);
        // The book's share of a bid change: one remove and one insert.
        let t = Instant::now();
        let mut live = entries.clone();
        for _ in 0..ops {
            let k = rng.below(n as u64) as usize;
            fill.remove(&live[k]);
            live[k].bid = 1 + rng.below(8_000);
            fill.insert(live[k]);
        }
        let book_ns = ns_per(ops, t);
        let naive_runs = (2_000_000 / n).clamp(3, 200);
        let t = Instant::now();
        for _ in 0..naive_runs {
            sink ^= naive_level(&entries, rng.below(cores)).num;
        }
        let naive_ns = ns_per(naive_runs, t);
        std::hint::black_box(sink);
        // Whole ticks.
        let ticks: usize = 5;
        let t = Instant::now();
        for k in 0..ticks {
            now += 1_000;
            tick(&mut m, &mut usage, now, 1_000 + 300 * (k as u64 % 3));
        }
        let tick_ns = ns_per(ticks, t);
        let _ = writeln!(
            out,
            "{n:<9} {:>8.2} µs {:>11.2} µs   {:>7.2} µs {:>8.2} µs {:>10.2} µs {:>13.1} µs  {:>8.2} ms  {:>8.0} ns",
            bid_ns / 1e3,
            book_ns / 1e3,
            arrive_ns / 1e3,
            depart_ns / 1e3,
            level_ns / 1e3,
            naive_ns / 1e3,
            tick_ns / 1e6,
            tick_ns / n as f64,
        );
    }
    out.push_str("goal: ≤ 2 µs per bid change at 100 000 guests; level (book) is the O(log n) search a price step makes, level (re-sort) the naive way\n");
    out
}
