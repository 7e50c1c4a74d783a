//! The placement policies compared by the benchmark. Each sees the
//! [`World`] once a second, before the physics step, and may move guests.
//! Centralised baselines see the true state (a monitoring system polling
//! every [`INTERVAL_S`] s) from a controller next to host 0, so a partition
//! hides the far side from them. Maxwell is in [`crate::mesh`].

use crate::world::World;

/// How often the centralised baselines act, s.
pub const INTERVAL_S: u64 = 5;
/// Most moves a centralised baseline orders per interval.
pub const MAX_MOVES: usize = 16;
/// A destination is not filled above this demand.
pub const FILL_LIMIT: f64 = 0.85;

/// A placement policy.
pub trait Policy {
    /// Name in the table.
    fn name(&self) -> &'static str;
    /// Orders migrations `(guest, destination)` for this second.
    fn act(&mut self, w: &World, moves: &mut Vec<(usize, usize)>);
    /// Fraction of its capacity host `h` grants this second (local capping).
    fn capacity_factor(&mut self, _w: &World, _h: usize) -> f64 {
        1.0
    }
    /// Whether a host short of capacity serves its most valuable guests first.
    fn value_priority(&self) -> bool {
        false
    }
    /// Serves host `h`'s guests within `capacity` its own way (a market),
    /// returning (work delivered, value delivered); `None`: the simulation
    /// serves them ([`crate::sim::serve`]).
    fn serve(&mut self, _w: &World, _h: usize, _capacity: f64) -> Option<(f64, f64)> {
        None
    }
    /// The price of every host, if the policy sets prices.
    fn prices(&self) -> Option<&[u64]> {
        None
    }
}

/// Hardware throttling only: nothing moves, nothing is capped.
#[derive(Debug, Default)]
pub struct ThrottleOnly;

impl Policy for ThrottleOnly {
    fn name(&self) -> &'static str {
        "hw-throttle"
    }
    fn act(&mut self, _w: &World, _moves: &mut Vec<(usize, usize)>) {}
}

/// Local two-threshold capping: a host caps itself to 70% above
/// critical − 10 °C and releases below critical − 16 °C. No migration.
#[derive(Debug, Default)]
pub struct LocalCapping {
    capped: Vec<bool>,
}

impl Policy for LocalCapping {
    fn name(&self) -> &'static str {
        "local-cap"
    }
    fn act(&mut self, _w: &World, _moves: &mut Vec<(usize, usize)>) {}
    fn capacity_factor(&mut self, w: &World, h: usize) -> f64 {
        self.capped.resize(w.layout.hosts(), false);
        let (die, crit) = (w.thermal[h].die_c, w.models[h].critical_c);
        if die > crit - 10.0 {
            self.capped[h] = true;
        } else if die < crit - 16.0 {
            self.capped[h] = false;
        }
        if self.capped[h] {
            0.7
        } else {
            1.0
        }
    }
}

/// The movable guest of `h` with the largest demand that fits in `room`.
fn largest_fitting(w: &World, h: usize, room: f64) -> Option<(usize, f64)> {
    w.on_host[h]
        .iter()
        .filter(|&&g| w.guests[g].frozen_until <= w.t)
        .map(|&g| (g, w.demand(g, w.t)))
        .filter(|&(_, d)| d <= room)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// Least-loaded placement, blind to location and heat: every interval, the
/// most loaded hosts (above 80%, or 30 points above the least loaded) give a
/// guest to the least loaded host.
#[derive(Debug, Default)]
pub struct LeastLoaded;

impl Policy for LeastLoaded {
    fn name(&self) -> &'static str {
        "least-loaded"
    }
    fn act(&mut self, w: &World, moves: &mut Vec<(usize, usize)>) {
        if !w.t.is_multiple_of(INTERVAL_S) {
            return;
        }
        let mut load = w.host_demand.clone();
        let seen: Vec<usize> = (0..w.layout.hosts())
            .filter(|&h| w.reachable(0, h))
            .collect();
        let mut moved = vec![false; w.layout.hosts()];
        for _ in 0..MAX_MOVES {
            let by = |a: &&usize, b: &&usize| load[**a].total_cmp(&load[**b]);
            let (Some(&hi), Some(&lo)) = (
                seen.iter().filter(|&&h| !moved[h]).max_by(by),
                seen.iter().min_by(by),
            ) else {
                break;
            };
            if load[hi] <= 0.8 && load[hi] - load[lo] <= 0.3 {
                break;
            }
            moved[hi] = true;
            let room = (FILL_LIMIT - load[lo]).min((load[hi] - load[lo]) / 2.0);
            if let Some((g, d)) = largest_fitting(w, hi, room) {
                moves.push((g, lo));
                load[hi] -= d;
                load[lo] += d;
            }
        }
    }
}

/// A centralised rule engine: every interval, each host above 80% of its
/// critical temperature (or overloaded) gives its largest guest to the least
/// loaded host that is under 80% of its limit; hot hosts are skipped as
/// destinations.
#[derive(Debug, Default)]
pub struct CentralRules;

impl Policy for CentralRules {
    fn name(&self) -> &'static str {
        "central-80%"
    }
    fn act(&mut self, w: &World, moves: &mut Vec<(usize, usize)>) {
        if !w.t.is_multiple_of(INTERVAL_S) {
            return;
        }
        let seen: Vec<usize> = (0..w.layout.hosts())
            .filter(|&h| w.reachable(0, h))
            .collect();
        let hot = |h: usize| w.thermal[h].die_c > 0.8 * w.models[h].critical_c;
        let mut load = w.host_demand.clone();
        let mut sources: Vec<usize> = seen
            .iter()
            .copied()
            .filter(|&h| hot(h) || load[h] > 1.0)
            .collect();
        sources.sort_by(|a, b| w.thermal[*b].die_c.total_cmp(&w.thermal[*a].die_c));
        for &src in sources.iter().take(MAX_MOVES) {
            let Some(&dest) = seen
                .iter()
                .filter(|&&h| h != src && !hot(h))
                .min_by(|a, b| load[**a].total_cmp(&load[**b]))
            else {
                break;
            };
            if let Some((g, d)) = largest_fitting(w, src, FILL_LIMIT - load[dest]) {
                moves.push((g, dest));
                load[src] -= d;
                load[dest] += d;
            }
        }
    }
}
