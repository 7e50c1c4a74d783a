//! Closed-loop stability with delayed feedback: price → load → temperature
//! → price, with the market and the peers seeing prices and readings
//! `delay` rounds late. After a step change the damped law settles and stays
//! settled; the naive law (no filter, no band) on the same plant does not.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use maxwell_pricing::{OwnSummary, PriceConfig, PriceController, PriceInput, PriceParams};
use maxwell_types::Position;

const NODES: usize = 8;
const ROUNDS: usize = 400;
const STEP_AT: usize = 50;

/// A rack of `NODES` hosts sharing a fixed total load by price.
#[derive(Clone, Copy)]
struct Plant {
    /// Gossip delay, rounds.
    delay: usize,
    /// Price elasticity of the load share: share ∝ price^-elasticity.
    elasticity: f64,
    /// Thermal time constant, rounds.
    tau: f64,
    /// Inlet step of node 3 at `STEP_AT`, °C.
    step_c: f64,
}

/// Runs the loop and returns every node's price per round.
fn run(plant: Plant, params: &PriceParams) -> Vec<[u64; NODES]> {
    let mut ctl: Vec<_> = (0..NODES)
        .map(|_| PriceController::new(params.clone()))
        .collect();
    let mut temp = [45.0f64; NODES];
    let mut draw = [200.0f64; NODES];
    let mut history: Vec<([u64; NODES], [f64; NODES], [f64; NODES])> = Vec::new();
    let mut prices = Vec::with_capacity(ROUNDS);
    let total_load = 0.5 * NODES as f64;
    let base = params.config().base_milli as f64;
    for k in 0..ROUNDS {
        // What the others see: the state `delay` rounds ago (or the start).
        let seen = k
            .checked_sub(plant.delay + 1)
            .and_then(|i| history.get(i).copied());
        let now_ms = 1_000 * k as u64;
        let mut p = [0u64; NODES];
        for i in 0..NODES {
            let peers = (0..NODES)
                .filter(|&j| j != i)
                .map(|j| {
                    let (t, d) = seen.map_or((45.0, 200.0), |s| (s.1[j], s.2[j]));
                    let mut v = peer(j as u16, "r0", j as u16, (t * 1000.0) as i64, d as i64);
                    v.age_ms = 1_000 * plant.delay as u64 + 500;
                    v
                })
                .collect();
            let own = OwnSummary {
                temp: mc((temp[i] * 1000.0) as i64),
                critical: mc(95_000),
                draw: w(draw[i] as i64),
                cap: w(400),
            };
            let input = PriceInput {
                own,
                position: Position::new("r0", i as u16),
                peers,
            };
            p[i] = ctl[i].update(&input, now_ms).price_milli;
        }
        history.push((p, temp, draw));
        prices.push(p);
        // The market acts on delayed prices.
        let market = seen.map_or([base as u64; NODES], |s| s.0);
        let weights: Vec<f64> = market
            .iter()
            .map(|&m| (base / m.max(1) as f64).powf(plant.elasticity))
            .collect();
        let sum: f64 = weights.iter().sum();
        for i in 0..NODES {
            let load = (total_load * weights[i] / sum).min(1.0);
            draw[i] = 120.0 + 230.0 * load;
            let inlet = 25.0
                + if i == 3 && k >= STEP_AT {
                    plant.step_c
                } else {
                    0.0
                };
            let steady = inlet + 0.17 * draw[i];
            temp[i] += (steady - temp[i]) * (1.0 - (-1.0 / plant.tau).exp());
        }
    }
    prices
}

/// Last round at which some node is further than `tol` from its final price.
fn settling_round(prices: &[[u64; NODES]], tol: u64) -> usize {
    let last = prices[prices.len() - 1];
    prices
        .iter()
        .rposition(|p| p.iter().zip(&last).any(|(a, b)| a.abs_diff(*b) > tol))
        .map_or(0, |r| r + 1)
}

/// Largest max−min of a node's price over the last `k` rounds.
fn tail_amplitude(prices: &[[u64; NODES]], k: usize) -> u64 {
    let tail = &prices[prices.len() - k..];
    (0..NODES)
        .map(|i| {
            tail.iter().map(|p| p[i]).max().unwrap_or(0)
                - tail.iter().map(|p| p[i]).min().unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// Most sign changes of a node's price steps over the last `k` rounds.
fn tail_reversals(prices: &[[u64; NODES]], k: usize) -> usize {
    let tail = &prices[prices.len() - k..];
    (0..NODES)
        .map(|i| {
            let steps: Vec<i64> = tail
                .windows(2)
                .map(|w| w[1][i] as i64 - w[0][i] as i64)
                .filter(|d| *d != 0)
                .collect();
            steps
                .windows(2)
                .filter(|s| (s[0] > 0) != (s[1] > 0))
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn naive() -> PriceParams {
    PriceConfig {
        filter_gain: 1.0,
        max_step_milli: 1_000_000,
        band_on_milli: 1,
        band_off_milli: 0,
        ..PriceConfig::default()
    }
    .validate()
    .unwrap()
}

#[test]
fn a_heated_node_gets_dearer_and_its_neighbours_cheaper() {
    let plant = Plant {
        delay: 2,
        elasticity: 1.0,
        tau: 10.0,
        step_c: 20.0,
    };
    let prices = run(plant, &PriceParams::default());
    let (before, after) = (prices[STEP_AT - 1], prices[ROUNDS - 1]);
    assert!(
        after[3] > before[3] + 100,
        "heated node {} -> {}",
        before[3],
        after[3]
    );
    // Its adjacent neighbours are relieved relative to the far end of the rack.
    assert!(after[2] < after[7] && after[4] < after[7], "{after:?}");
}

#[test]
fn after_a_step_the_damped_law_settles_and_stays_settled() {
    let mut rng = Rng::new(11);
    for case in 0..40 {
        let plant = Plant {
            delay: rng.range(0, 4) as usize,
            elasticity: 0.3 + 1.2 * rng.unit(),
            tau: 2.0 + 28.0 * rng.unit(),
            step_c: if rng.chance(0.5) { 1.0 } else { -1.0 } * (4.0 + 8.0 * rng.unit()),
        };
        let prices = run(plant, &PriceParams::default());
        let settle = settling_round(&prices, 60);
        let (amp, rev) = (tail_amplitude(&prices, 100), tail_reversals(&prices, 100));
        // The temperatures themselves take about 3 tau to settle; the
        // prices follow within a few rounds of that.
        let bound = STEP_AT + (3.0 * plant.tau) as usize + 15;
        assert!(
            settle <= bound,
            "case {case}: settled at {settle} (d={}, e={:.2}, tau={:.1})",
            plant.delay,
            plant.elasticity,
            plant.tau
        );
        assert!(
            amp <= 60 && rev <= 2,
            "case {case}: amplitude {amp}, reversals {rev}"
        );
    }
}

#[test]
fn without_damping_the_same_loop_keeps_oscillating() {
    let plant = Plant {
        delay: 2,
        elasticity: 2.0,
        tau: 2.0,
        step_c: 10.0,
    };
    let damped = run(plant, &PriceParams::default());
    let undamped = run(plant, &naive());
    let (amp_d, amp_n) = (tail_amplitude(&damped, 100), tail_amplitude(&undamped, 100));
    assert!(
        amp_n > 300 && tail_reversals(&undamped, 100) > 10,
        "naive amplitude {amp_n}"
    );
    assert!(
        amp_d <= 20 && tail_reversals(&damped, 100) == 0,
        "damped amplitude {amp_d}"
    );
}
