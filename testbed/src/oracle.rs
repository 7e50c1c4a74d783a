//! The oracle: an omniscient placement of divisible work, solved as a linear
//! program with `microlp` (pure Rust simplex). For each window it knows the
//! future demand of every value class, the supply temperatures, the fan
//! state and the recirculation matrix `D`, and maximises value delivered
//! subject to every host staying (in steady state) under its throttle point:
//!
//! ```text
//! max  Σ_h Σ_c v_c x_hc
//! s.t. Σ_c x_hc ≤ 1                                   (capacity)
//!      Σ_h x_hc ≤ max demand of class c in the window  (demand)
//!      T_sup,h + Σ_j D_hj P_j + R_h P_h ≤ T_throttle,h − margin
//!      with P_j = idle_j + (peak_j − idle_j) Σ_c x_jc  (linear)
//!      0 ≤ x_hc ≤ 1
//! ```
//! Steady state ignores transients, so it is an upper bound on what any
//! placement can deliver without throttling, not an exact one.

use crate::metrics::{Recorder, RunResult};
use crate::physics::THROTTLED_CAPACITY;
use crate::recirculation::Layout;
use crate::scenarios::Scenario;
use crate::sim::advance;
use crate::world::{World, VALUES};
use microlp::{ComparisonOp, OptimizationDirection, Problem, SolveOutcome};

/// Length of one planning window, s.
pub const WINDOW_S: u64 = 60;
/// Margin under the throttle point the plan keeps, °C.
pub const MARGIN_C: f64 = 1.5;

/// Objective cost of one kelvin of the hottest steady die temperature.
pub const TIE_BREAK_PER_K: f64 = 1e-3;

const C: usize = VALUES.len();

/// The plan of one window: work of each class on each host.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowPlan {
    /// `alloc[h][c]`, fraction of host `h` given to class `c`.
    pub alloc: Vec<[f64; C]>,
    /// Total planned per class.
    pub total: [f64; C],
}

/// Total demand of each class at `t`.
pub fn class_demand(w: &World, t: u64) -> [f64; C] {
    let mut d = [0.0; C];
    for (g, guest) in w.guests.iter().enumerate() {
        d[guest.class] += w.demand(g, t);
    }
    d
}

/// Solves the LP of the window `[start, end)`.
pub fn plan_window(w: &World, start: u64, end: u64) -> Result<WindowPlan, String> {
    let n = w.layout.hosts();
    let mut demand = [0.0f64; C];
    for t in start..end {
        let d = class_demand(w, t);
        for c in 0..C {
            demand[c] = demand[c].max(d[c]);
        }
    }
    let mut lp = Problem::new(OptimizationDirection::Maximize);
    let x: Vec<[microlp::Variable; C]> = (0..n)
        .map(|_| std::array::from_fn(|c| lp.add_var(VALUES[c], (0.0, 1.0))))
        .collect();
    for xs in &x {
        lp.add_constraint(
            xs.iter().map(|&v| (v, 1.0)).collect::<Vec<_>>(),
            ComparisonOp::Le,
            1.0,
        );
    }
    for (c, &d) in demand.iter().enumerate() {
        lp.add_constraint(
            x.iter().map(|xs| (xs[c], 1.0)).collect::<Vec<_>>(),
            ComparisonOp::Le,
            d,
        );
    }
    // Tie-break toward the coolest plan: z bounds every steady die
    // temperature and costs a little, far less than any work is worth.
    let z = lp.add_var(-TIE_BREAK_PER_K, (0.0, f64::INFINITY));
    for h in 0..n {
        let m = &w.models[h];
        let supply = (start..end)
            .map(|t| w.scenario.supply_c(&w.layout, h, t))
            .fold(f64::MIN, f64::max);
        let r = (start..end)
            .map(|t| w.scenario.r_scale(h, t))
            .fold(f64::MIN, f64::max)
            * (m.r_die + m.r_chassis);
        let mut coef = vec![(h, r * (m.peak_w - m.idle_w))];
        let mut rhs = m.throttle_c - MARGIN_C - supply - r * m.idle_w;
        for &(j, d) in w.recirc.row(h) {
            let mj = &w.models[j];
            coef.push((j, d * (mj.peak_w - mj.idle_w)));
            rhs -= d * mj.idle_w;
        }
        let mut expr: Vec<_> = coef
            .iter()
            .flat_map(|&(j, k)| x[j].iter().map(move |&v| (v, k)))
            .collect();
        if rhs >= 0.0 {
            // (else even idle hosts break this limit: no placement helps)
            lp.add_constraint(expr.clone(), ComparisonOp::Le, rhs);
        }
        // T_h - z <= 0, with T_h = limit - rhs + expr.
        expr.push((z, -1.0));
        lp.add_constraint(expr, ComparisonOp::Le, rhs - (m.throttle_c - MARGIN_C));
    }
    let sol = match lp.solve().map_err(|e| e.to_string())? {
        SolveOutcome::Solution(s) => s,
        SolveOutcome::Interrupted(_) => return Err("LP interrupted".into()),
    };
    let alloc: Vec<[f64; C]> = x
        .iter()
        .map(|xs| std::array::from_fn(|c| sol.var_value(xs[c]).max(0.0)))
        .collect();
    let mut total = [0.0; C];
    for a in &alloc {
        for c in 0..C {
            total[c] += a[c];
        }
    }
    Ok(WindowPlan { alloc, total })
}

/// Runs the oracle's plan through the same physics as the policies.
pub fn run_oracle(
    layout: Layout,
    scenario: &Scenario,
    seed: u64,
    duration_s: u64,
) -> Result<RunResult, String> {
    let mut w = World::new(layout, scenario.clone(), seed);
    let n = layout.hosts();
    let mut rec = Recorder::new(n, duration_s as usize);
    let mut plan = plan_window(&w, 0, WINDOW_S.min(duration_s))?;
    for t in 0..duration_s {
        w.t = t;
        if t > 0 && t % WINDOW_S == 0 {
            plan = plan_window(&w, t, (t + WINDOW_S).min(duration_s))?;
        }
        let d = class_demand(&w, t);
        let ratio: [f64; C] = std::array::from_fn(|c| {
            if plan.total[c] > 0.0 {
                (d[c] / plan.total[c]).min(1.0)
            } else {
                0.0
            }
        });
        let (mut work, mut value) = (0.0, 0.0);
        for h in 0..n {
            let want: f64 = (0..C).map(|c| plan.alloc[h][c] * ratio[c]).sum();
            let worth: f64 = (0..C)
                .map(|c| plan.alloc[h][c] * ratio[c] * VALUES[c])
                .sum();
            let cap = if w.thermal[h].throttled {
                THROTTLED_CAPACITY
            } else {
                1.0
            };
            let got = want.min(cap);
            w.host_demand[h] = want;
            w.util[h] = got;
            w.power_w[h] = w.models[h].power_w(got);
            work += got;
            value += if want > 0.0 { worth * got / want } else { 0.0 };
        }
        advance(&mut w, &mut rec, t);
        rec.record_work(work, value, w.power_w.iter().sum());
    }
    Ok(rec.finish(&w, scenario.event_s))
}
