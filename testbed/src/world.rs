//! The simulated floor at one moment: hosts ([`crate::physics`]) coupled
//! by recirculation ([`crate::recirculation`]), guests whose demand follows
//! seeded traces, and where each guest runs. Policies and metrics read it;
//! [`crate::sim`] steps it.

use crate::physics::{HostModel, HostThermal};
use crate::recirculation::{Layout, Recirculation};
use crate::rng::{hash_unit, Rng};
use crate::scenarios::Scenario;

/// Seconds a migrating guest delivers no work.
pub const MIGRATION_S: u64 = 2;

/// Value classes of guests (work of a class-`c` guest is worth `VALUES[c]`).
pub const VALUES: [f64; 3] = [1.0, 2.0, 4.0];

/// One guest VM.
#[derive(Debug, Clone, PartialEq)]
pub struct Guest {
    /// Where it runs now.
    pub host: usize,
    /// Where it started (decides whether it bursts).
    pub origin: usize,
    /// Mean demand, fraction of a host.
    pub base: f64,
    /// Value class, index into [`VALUES`].
    pub class: usize,
    /// Demand multiplier while bursting (brings its origin host to 100%).
    pub burst_factor: f64,
    /// Period of its load cycle, s.
    pub period_s: f64,
    /// Phase of its load cycle.
    pub phase: f64,
    /// It is migrating until this time (exclusive).
    pub frozen_until: u64,
}

/// The floor at one instant. Policies read it; only the simulation writes it.
#[derive(Debug, Clone)]
pub struct World {
    /// Geometry.
    pub layout: Layout,
    /// Recirculation matrix.
    pub recirc: Recirculation,
    /// Host parameters.
    pub models: Vec<HostModel>,
    /// Host thermal state (after the last step).
    pub thermal: Vec<HostThermal>,
    /// What happens.
    pub scenario: Scenario,
    /// Guests.
    pub guests: Vec<Guest>,
    /// Guests of each host.
    pub on_host: Vec<Vec<usize>>,
    /// Current time, s.
    pub t: u64,
    /// Demand of each host in the last step (fraction of a host).
    pub host_demand: Vec<f64>,
    /// Utilisation delivered by each host in the last step.
    pub util: Vec<f64>,
    /// Power of each host in the last step, W.
    pub power_w: Vec<f64>,
    /// Inlet temperature of each host in the last step, °C.
    pub inlet_c: Vec<f64>,
    seed: u64,
}

impl World {
    /// A floor at steady state with every host loaded to about the
    /// scenario's base load.
    pub fn new(layout: Layout, scenario: Scenario, seed: u64) -> Self {
        let n = layout.hosts();
        let mut rng = Rng::derive(seed, 1);
        let models: Vec<HostModel> = (0..n).map(|_| HostModel::typical(&mut rng)).collect();
        let mut guests = Vec::new();
        let mut on_host = vec![Vec::new(); n];
        for (h, list) in on_host.iter_mut().enumerate() {
            let goal = scenario.base_load * rng.uniform(0.9, 1.1);
            let first = guests.len();
            let mut sum = 0.0;
            while sum < goal {
                let base = rng.uniform(0.04, 0.12).min(goal - sum + 0.01);
                let u = rng.unit();
                let class = if u < 0.5 {
                    0
                } else if u < 0.8 {
                    1
                } else {
                    2
                };
                let (period_s, phase) = (
                    rng.uniform(120.0, 600.0),
                    rng.uniform(0.0, std::f64::consts::TAU),
                );
                list.push(guests.len());
                guests.push(Guest {
                    host: h,
                    origin: h,
                    base,
                    class,
                    burst_factor: 1.0,
                    period_s,
                    phase,
                    frozen_until: 0,
                });
                sum += base;
            }
            for g in &mut guests[first..] {
                g.burst_factor = 1.0 / sum;
            }
        }
        let recirc = Recirculation::from_layout(&layout);
        let mut w = Self {
            layout,
            recirc,
            models,
            thermal: Vec::new(),
            scenario,
            guests,
            on_host,
            t: 0,
            host_demand: vec![0.0; n],
            util: vec![0.0; n],
            power_w: vec![0.0; n],
            inlet_c: vec![0.0; n],
            seed,
        };
        w.settle_initial();
        w
    }

    fn settle_initial(&mut self) {
        let n = self.layout.hosts();
        for h in 0..n {
            let d: f64 = self.on_host[h].iter().map(|&g| self.demand(g, 0)).sum();
            self.host_demand[h] = d;
            self.util[h] = d.min(1.0);
            self.power_w[h] = self.models[h].power_w(self.util[h]);
        }
        let rise = self.recirc.rise(&self.power_w);
        self.inlet_c = (0..n)
            .map(|h| self.scenario.supply_c(&self.layout, h, 0) + rise[h])
            .collect();
        self.thermal = (0..n)
            .map(|h| HostThermal::steady(&self.models[h], self.inlet_c[h], self.power_w[h]))
            .collect();
    }

    /// Demand of guest `g` at `t`, fraction of a host: its base, a slow
    /// cycle (±15%), seeded noise (±10%, new every 20 s), and its burst.
    pub fn demand(&self, g: usize, t: u64) -> f64 {
        let x = &self.guests[g];
        let cycle = 0.15 * (std::f64::consts::TAU * t as f64 / x.period_s + x.phase).sin();
        let noise = 0.2 * (hash_unit(self.seed, g as u64, t / 20) - 0.5);
        let burst = if self.scenario.bursting(x.origin, t) {
            x.burst_factor
        } else {
            1.0
        };
        (x.base * burst * (1.0 + cycle + noise)).max(0.0)
    }

    /// Whether hosts `a` and `b` can talk now.
    pub fn reachable(&self, a: usize, b: usize) -> bool {
        self.scenario.reachable(&self.layout, a, b, self.t)
    }

    /// Alert threshold of host `h` (10 °C below critical), °C.
    pub fn alert_c(&self, h: usize) -> f64 {
        self.models[h].critical_c - 10.0
    }

    pub(crate) fn move_guest(&mut self, g: usize, dest: usize) -> bool {
        let from = self.guests[g].host;
        if from == dest || dest >= self.layout.hosts() {
            return false;
        }
        self.on_host[from].retain(|&x| x != g);
        self.on_host[dest].push(g);
        self.guests[g].host = dest;
        self.guests[g].frozen_until = self.t + MIGRATION_S;
        true
    }
}
