//! The deterministic in-process simulation: the [`World`] stepped once a
//! second under a placement policy ([`crate::policies`]): work served,
//! physics advanced, metrics recorded.

use crate::metrics::{Recorder, RunResult};
use crate::physics::THROTTLED_CAPACITY;
use crate::policies::Policy;
use crate::recirculation::Layout;
use crate::scenarios::Scenario;
use crate::world::{World, VALUES};

/// Serves `items` (demand, value) within `capacity`: proportionally, or by
/// value first (a market). Returns (work delivered, value delivered).
pub fn serve(items: &mut [(f64, f64)], capacity: f64, by_value: bool) -> (f64, f64) {
    let demand: f64 = items.iter().map(|i| i.0).sum();
    if demand <= capacity {
        return (demand, items.iter().map(|i| i.0 * i.1).sum());
    }
    if !by_value {
        let f = capacity / demand;
        return (capacity, items.iter().map(|i| i.0 * i.1 * f).sum());
    }
    items.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (mut left, mut value) = (capacity, 0.0);
    for &(d, v) in items.iter() {
        let take = d.min(left);
        value += take * v;
        left -= take;
    }
    (capacity, value)
}

/// Runs `policy` on a fresh floor for `duration_s` seconds.
pub fn run(
    layout: Layout,
    scenario: &Scenario,
    policy: &mut dyn Policy,
    seed: u64,
    duration_s: u64,
) -> RunResult {
    let mut w = World::new(layout, scenario.clone(), seed);
    let n = layout.hosts();
    let mut rec = Recorder::new(n, duration_s as usize);
    let mut moves = Vec::new();
    let mut items = Vec::new();
    for t in 0..duration_s {
        w.t = t;
        moves.clear();
        policy.act(&w, &mut moves);
        for &(g, dest) in &moves {
            if w.move_guest(g, dest) {
                rec.moves += 1;
            }
        }
        let (mut work, mut value) = (0.0, 0.0);
        for h in 0..n {
            items.clear();
            items.extend(
                w.on_host[h]
                    .iter()
                    .filter(|&&g| w.guests[g].frozen_until <= t)
                    .map(|&g| (w.demand(g, t), VALUES[w.guests[g].class])),
            );
            w.host_demand[h] = items.iter().map(|i| i.0).sum();
            let throttle = if w.thermal[h].throttled {
                THROTTLED_CAPACITY
            } else {
                1.0
            };
            let cap = throttle * policy.capacity_factor(&w, h);
            let (d, v) = match policy.serve(&w, h, cap) {
                Some(served) => served,
                None => serve(&mut items, cap, policy.value_priority()),
            };
            w.util[h] = d;
            w.power_w[h] = w.models[h].power_w(d);
            work += d;
            value += v;
        }
        advance(&mut w, &mut rec, t);
        rec.record_work(work, value, w.power_w.iter().sum());
        rec.record_prices(policy.prices());
    }
    rec.finish(&w, scenario.event_s)
}

/// Physics of one second once the utilisations are set: inlets, thermal
/// step, throttling, and the temperature record.
pub fn advance(w: &mut World, rec: &mut Recorder, t: u64) {
    let rise = w.recirc.rise(&w.power_w);
    for (h, rise) in rise.into_iter().enumerate() {
        w.inlet_c[h] = w.scenario.supply_c(&w.layout, h, t) + rise;
        let r = w.scenario.r_scale(h, t);
        if w.thermal[h].step(&w.models[h], w.power_w[h], w.inlet_c[h], r, 1.0) {
            rec.throttle_events += 1;
        }
    }
    rec.record_thermal(w);
}
