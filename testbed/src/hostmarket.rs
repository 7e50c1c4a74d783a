//! The agent's market core on every simulated host: each second a host's
//! guests (their demand as `max_cpu`, their value as their bid) share what
//! the host sells, under the same [`maxwell_market::Market`] the agent
//! runs: the capacity curve, proportional shares with caps, pauses when
//! outbid. A guest uses the lesser of its share and its demand.

use crate::world::{World, VALUES};
use maxwell_market::{
    AccountId, Class, Conditions, Entry, Market, MarketConfig, Order, Power, Reason, Receipt,
    TickInput,
};
use maxwell_types::NodeId;
use std::collections::{BTreeMap, HashMap};

/// A guest's bid per unit of its value, milli-credits per CPU-second: a
/// class-0 guest (value 1) bids 6 credits, so it is outbid only on a host
/// well above the base price.
pub const BID_PER_VALUE_MILLI: f64 = 6_000.0;

/// What a guest of value class `class` bids, milli-credits per CPU-second.
pub fn bid_milli(class: usize) -> u64 {
    (VALUES[class] * BID_PER_VALUE_MILLI) as u64
}

/// Every host's market.
#[derive(Debug)]
pub struct HostMarkets {
    markets: Vec<Market>,
    /// Per host: the sim's guest → its account there.
    accounts: Vec<HashMap<usize, AccountId>>,
    /// Per host: each account's CPU used since it joined, ms.
    usage: Vec<BTreeMap<AccountId, u64>>,
}

fn config() -> MarketConfig {
    // Receipts are the agent's business; the simulation makes one an hour.
    MarketConfig {
        receipt_every_ms: 3_600_000,
        ..MarketConfig::default()
    }
}

impl HostMarkets {
    pub fn new(hosts: usize) -> Self {
        Self {
            markets: (0..hosts)
                .map(|h| {
                    let mut id = [0u8; 10];
                    id[..8].copy_from_slice(&(h as u64).to_be_bytes());
                    Market::new(config(), NodeId(id))
                })
                .collect(),
            accounts: vec![HashMap::new(); hosts],
            usage: vec![BTreeMap::new(); hosts],
        }
    }

    /// Host `h`'s second at `price`: its guests join or leave, their
    /// demands become their limits, the market ticks on `capacity` (the
    /// host's, throttling included) and each guest uses what it got.
    /// Returns (work, value) delivered.
    pub fn serve(
        &mut self,
        w: &World,
        h: usize,
        capacity: f64,
        price: u64,
        cap_w: f64,
    ) -> (f64, f64) {
        let now = w.t * 1000;
        let m = &mut self.markets[h];
        let accounts = &mut self.accounts[h];
        let record = |m: &mut Market, e: Entry| m.apply(&e, true);
        // Departures (moved away), then arrivals.
        let gone: Vec<usize> = accounts
            .keys()
            .copied()
            .filter(|g| w.guests[*g].host != h)
            .collect();
        for g in gone {
            if let Some(id) = accounts.remove(&g) {
                for e in m.gone(id, Reason::Moved, now).unwrap_or_default() {
                    record(m, e);
                }
                self.usage[h].remove(&id);
            }
        }
        let mut here: Vec<usize> = w.on_host[h].clone();
        here.sort_unstable();
        for &g in &here {
            if let std::collections::hash_map::Entry::Vacant(slot) = accounts.entry(g) {
                let bid = bid_milli(w.guests[g].class);
                let order = Order::new(
                    &format!("g{g}"),
                    1,
                    1024,
                    bid,
                    1_000_000_000_000,
                    Class::Pausable,
                    None,
                )
                .expect("a valid order");
                let e = m
                    .open(g as u64, order, now)
                    .expect("a sim wallet fits the books");
                if let Entry::Open { account, .. } = &e {
                    slot.insert(*account);
                }
                record(m, e);
            }
        }
        // Demand as the limit; a guest on its way here asks for nothing.
        let demand = |g: usize| {
            if w.guests[g].frozen_until > w.t {
                0.0
            } else {
                w.demand(g, w.t)
            }
        };
        for &g in &here {
            let id = accounts[&g];
            let milli = ((demand(g) * 1000.0).ceil() as u32).clamp(1, 1000);
            if m.account(id)
                .is_some_and(|a| a.order.max_cpu_milli != milli)
            {
                if let Ok(e) = m.limit(id, milli, now) {
                    record(m, e);
                }
            }
        }
        let model = &w.models[h];
        let draw = w.power_w[h];
        let input = TickInput {
            now_ms: now,
            price_milli: price,
            conditions: Conditions {
                cores_mcores: (capacity.max(0.0) * 1000.0) as u64,
                temperature: Some((
                    (w.thermal[h].die_c * 1000.0) as i64,
                    (model.critical_c * 1000.0) as i64,
                )),
                headroom: Some((cap_w - draw, cap_w)),
            },
            power: Some(Power {
                host_micro_w: (draw * 1e6) as u64,
                idle_micro_w: (model.idle_w * 1e6) as u64,
                host_busy_ms: (w.util[h] * 1000.0) as u64,
                host_cores: here.len().max(1) as u64,
            }),
        };
        let _ = m.tick(&input, &self.usage[h]);
        while m.poll_action().is_some() {}
        while let Some(body) = m.poll_unsigned().cloned() {
            record(
                m,
                Entry::Receipt(Receipt {
                    body,
                    signature: String::new(),
                }),
            );
        }
        let (mut work, mut value) = (0.0, 0.0);
        for &g in &here {
            let id = accounts[&g];
            let share = m
                .account(id)
                .map_or(0.0, |a| a.share_mcores as f64 / 1000.0);
            let used = share.min(demand(g));
            work += used;
            value += used * VALUES[w.guests[g].class];
            *self.usage[h].entry(id).or_default() += (used * 1000.0) as u64;
        }
        (work, value)
    }
}
