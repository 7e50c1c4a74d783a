//! How few moves a fan failure can be met with: a lower bound on the moves
//! goal (docs/pricing.md §4), so that a miss can be read as Maxwell's or
//! as no policy's.
//!
//! The bound is a clairvoyant policy that knows which host's fans will
//! fail and moves k of that host's own guests at t = 0, the most
//! favourable moment, to the coolest hosts of the other row, whose heat
//! cannot reach it. Every subset of each size is tried, the smallest k
//! first, until one keeps every host's peak at or under the best
//! baseline's. A policy that keeps every guest running cannot do with
//! fewer: a guest of another host is worth a fraction of a degree to the
//! failed host (through its inlet), one of its own several degrees, and a
//! later move only lets it store more heat first.

use crate::metrics::RunResult;
use crate::policies::Policy;
use crate::recirculation::Layout;
use crate::scenarios::{Kind, Scenario};
use crate::sim::run;
use crate::world::World;

/// The bound's name in the table.
pub const NAME: &str = "fewest-moves";
/// The most guests of the failed host it tries subsets of.
pub const MAX_GUESTS: usize = 10;

/// Moves the given guests at the first second, then nothing.
struct AtStart(Vec<(usize, usize)>);

impl Policy for AtStart {
    fn name(&self) -> &'static str {
        NAME
    }
    fn act(&mut self, _w: &World, moves: &mut Vec<(usize, usize)>) {
        moves.append(&mut self.0);
    }
}

/// The run with the fewest moves of the failed host's guests that keeps
/// the peak at or under `ceiling_c` (compared to 0.1 °C, as printed), the
/// coolest such run of that size; `None` if the scenario has no failed
/// fan or even moving every guest does not.
pub fn fewest_moves(
    layout: Layout,
    sc: &Scenario,
    seed: u64,
    duration_s: u64,
    ceiling_c: f64,
) -> Option<RunResult> {
    if sc.kind != Kind::FanFailure {
        return None;
    }
    let w = World::new(layout, sc.clone(), seed);
    let fan = sc.fan_host;
    // The largest first: past `MAX_GUESTS` the smallest are left out.
    let mut guests = w.on_host[fan].clone();
    guests.sort_by(|a, b| w.guests[*b].base.total_cmp(&w.guests[*a].base));
    let far = |h: usize| layout.row_of(h) != layout.row_of(fan);
    let mut dests: Vec<usize> = (0..layout.hosts()).filter(|&h| far(h)).collect();
    if dests.is_empty() {
        dests = (0..layout.hosts())
            .filter(|&h| layout.rack_of(h) != layout.rack_of(fan))
            .collect();
    }
    dests.sort_by(|a, b| w.thermal[*a].die_c.total_cmp(&w.thermal[*b].die_c));
    let tenth = |c: f64| (c * 10.0).round() as i64;
    // One guest to a destination; at most 2^n runs (a host holds a handful).
    let n = guests.len().min(dests.len()).min(MAX_GUESTS);
    for k in 1..=n {
        let best = (0u32..1 << n)
            .filter(|mask| mask.count_ones() as usize == k)
            .map(|mask| {
                let moves = (0..n)
                    .filter(|i| mask & (1 << i) != 0)
                    .zip(&dests)
                    .map(|(i, &d)| (guests[i], d))
                    .collect();
                run(layout, sc, &mut AtStart(moves), seed, duration_s)
            })
            .min_by(|a, b| a.metrics.peak_c.total_cmp(&b.metrics.peak_c));
        if let Some(r) = best.filter(|r| tenth(r.metrics.peak_c) <= tenth(ceiling_c)) {
            return Some(r);
        }
    }
    None
}
