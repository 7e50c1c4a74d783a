//! How few moves a fan failure can be met with: a lower bound on the moves
//! goal (docs/pricing.md §4), so that a miss can be read as Maxwell's or
//! as no such policy's.
//!
//! The bound is a clairvoyant policy that knows which host's fans will
//! fail and moves k of that host's own guests at t = 0, to the coolest
//! hosts of the other row, whose heat cannot reach it. Every subset of
//! each size is tried, the smallest k first, until one keeps the failed
//! host's peak at or under the best baseline's peak. Why no policy that
//! serves every guest's full demand does with fewer:
//! - the failed host's heat is its own guests' (the other row adds none),
//!   so which hosts take them does not change its temperature;
//! - a move at t = 0 takes the guest's heat off it for the whole run; a
//!   later one leaves that heat on it until then (the 2 s a move freezes
//!   the guest fall at t = 0 as well);
//! - moving another host's guest instead cools the failed host only
//!   through its inlet, a fraction of a degree where one of its own is
//!   worth several (argued from the recirculation matrix, not searched).
//!
//! The failed host's peak is only one of the "no worse than any baseline"
//! figures: the others can only ask for more moves. A policy that caps or
//! pauses guests sheds heat without moving; this bound does not cover it.

use crate::metrics::RunResult;
use crate::policies::Policy;
use crate::recirculation::Layout;
use crate::scenarios::{Kind, Scenario};
use crate::sim::run;
use crate::world::World;

/// The bound's name in the table.
pub const NAME: &str = "fewest-moves";
/// The most guests of the failed host it searches the subsets of: with
/// more there is no bound.
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

/// The failed host's peak in `r`, °C.
pub fn failed_host_peak(sc: &Scenario, r: &RunResult) -> f64 {
    let peak = r
        .die_c
        .iter()
        .map(|v| v[sc.fan_host])
        .fold(f32::MIN, f32::max);
    f64::from(peak)
}

/// Of every way to move `k` of the failed host's guests at t = 0, the run
/// that leaves it coolest; `None` if the scenario has no failed fan, the
/// floor no other row, or the host more than [`MAX_GUESTS`] guests (or
/// fewer than `k`).
pub fn best_of(
    layout: Layout,
    sc: &Scenario,
    seed: u64,
    duration_s: u64,
    k: usize,
) -> Option<RunResult> {
    if sc.kind != Kind::FanFailure {
        return None;
    }
    let w = World::new(layout, sc.clone(), seed);
    let fan = sc.fan_host;
    let guests = &w.on_host[fan];
    let mut dests: Vec<usize> = (0..layout.hosts())
        .filter(|&h| layout.row_of(h) != layout.row_of(fan))
        .collect();
    dests.sort_by(|a, b| w.thermal[*a].die_c.total_cmp(&w.thermal[*b].die_c));
    let n = guests.len();
    if n > MAX_GUESTS || k > n || k > dests.len() {
        return None;
    }
    (0u32..1 << n)
        .filter(|mask| mask.count_ones() as usize == k)
        .map(|mask| {
            let moves = (0..n)
                .filter(|i| mask & (1 << i) != 0)
                .zip(&dests)
                .map(|(i, &d)| (guests[i], d))
                .collect();
            run(layout, sc, &mut AtStart(moves), seed, duration_s)
        })
        .min_by(|a, b| failed_host_peak(sc, a).total_cmp(&failed_host_peak(sc, b)))
}

/// The run with the fewest such moves that keeps the failed host's peak
/// at or under `ceiling_c` (compared to 0.1 °C, as printed); `None` where
/// [`best_of`] has none, or even moving every guest does not.
pub fn fewest_moves(
    layout: Layout,
    sc: &Scenario,
    seed: u64,
    duration_s: u64,
    ceiling_c: f64,
) -> Option<RunResult> {
    let tenth = |c: f64| (c * 10.0).round() as i64;
    (1..=MAX_GUESTS)
        .map_while(|k| best_of(layout, sc, seed, duration_s, k))
        .find(|r| tenth(failed_host_peak(sc, r)) <= tenth(ceiling_c))
}
