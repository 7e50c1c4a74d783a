//! The scale simulation's table, with its goals and its calibration.

use super::scale::{Calibration, ScaleResult};
use super::{rate, GossipBenchArgs, LiveResult, Outcome};
use crate::bench::timing::{secs, Waited};
use maxwell_node::render::Table;
use std::fmt::Write;
use std::time::Duration;

/// The goals at 10 000 nodes.
const GOAL_BYTES: f64 = 10_000.0;
const GOAL_CHEAPEST: Duration = Duration::from_secs(3);

pub fn render(
    args: &GossipBenchArgs,
    scales: &[(usize, Outcome<ScaleResult>)],
    calibration: Option<&Outcome<Calibration>>,
    ours: Option<&Outcome<LiveResult>>,
) -> String {
    let mut out = String::new();
    if scales.is_empty() && calibration.is_none() {
        return out;
    }
    let round = Duration::from_millis(200);
    let _ = writeln!(
        out,
        "\nscale: the tiered mesh simulated (racks of {}, 2 carriers each, lan timing, 1 ms hops, \
         no loss), every node re-publishing at random every {} s on average and at least every 60 s",
        args.rack_size, args.change_every_s
    );
    let mut t = Table::new(&["FIGURE", "MEASURED", "GOAL", "MET"]);
    for (n, r) in scales {
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                t.row(vec![format!("n={n}"), e.clone(), "-".into(), "-".into()]);
                continue;
            }
        };
        let n = r.n;
        let log = (n as f64).log2() + 3.0;
        let goal_rounds = Duration::from_secs_f64(log * round.as_secs_f64());
        t.row(vec![
            format!(
                "n={n} ({} racks, {} carriers): converged after the last start",
                r.racks, r.carriers
            ),
            in_rounds(r.converge, round),
            format!("log2 n + 3 = {log:.1} rounds"),
            met(r.converge.done().map(|d| d <= goal_rounds)),
        ]);
        t.row(vec![
            format!("n={n}: gossip bytes sent/node/s, mean (most)"),
            format!("{} ({})", rate(r.bytes_mean), rate(r.bytes_max)),
            format!("≤ {}", rate(GOAL_BYTES)),
            met(Some(r.bytes_max <= GOAL_BYTES)),
        ]);
        t.row(vec![
            format!("n={n}: rack neighbours hold a change"),
            in_rounds(r.rack, round),
            "≤ 1 round".into(),
            met(r.rack.done().map(|d| d <= round)),
        ]);
        t.row(vec![
            format!("n={n}: a new cheapest offer known by all"),
            in_rounds(r.cheapest, round),
            format!("≤ {}, and log2 n + 3 rounds", secs(GOAL_CHEAPEST)),
            met(r
                .cheapest
                .done()
                .map(|d| d <= GOAL_CHEAPEST && d <= goal_rounds)),
        ]);
        let lost = r
            .carrier_lost
            .map_or_else(|| "not run (no such rack)".into(), |w| in_rounds(w, round));
        t.row(vec![
            format!("n={n}: the same, just after a carrier is killed"),
            lost,
            format!("≤ {}", secs(GOAL_CHEAPEST)),
            met(r
                .carrier_lost
                .and_then(Waited::done)
                .map(|d| d <= GOAL_CHEAPEST)),
        ]);
        t.row(vec![
            format!("n={n}: memory per node (resident set growth / n)"),
            r.memory_per_node
                .map_or_else(|| "-".into(), |b| format!("{:.0} kB", b / 1000.0)),
            "-".into(),
            "-".into(),
        ]);
        t.row(vec![
            format!("n={n}: wall time of the simulation"),
            secs(r.wall),
            "-".into(),
            "-".into(),
        ]);
    }
    if let Some(c) = calibration {
        calibration_rows(&mut t, c, ours);
    }
    out.push_str(&t.render());
    out
}

fn calibration_rows(t: &mut Table, c: &Outcome<Calibration>, ours: Option<&Outcome<LiveResult>>) {
    let c = match c {
        Ok(c) => c,
        Err(e) => {
            t.row(vec![
                "calibration".into(),
                e.clone(),
                "-".into(),
                "-".into(),
            ]);
            return;
        }
    };
    let real = ours.and_then(|o| o.as_ref().ok());
    let quiet = real.and_then(|r| r.bytes_per_node_s);
    let busy = real.and_then(|r| r.busy.map(|b| b.0));
    for (label, sim, udp) in [
        ("quiet", c.quiet, quiet),
        ("every heat changing each second", c.busy, busy),
    ] {
        let against = udp.map_or_else(
            || "no udp run".into(),
            |u| format!("udp agents: {} (sim/udp {:.2}×)", rate(u), sim / u),
        );
        t.row(vec![
            format!(
                "calibration n={} (one rack = the agents' mesh): bytes/node/s, {label}",
                c.n
            ),
            rate(sim),
            against,
            "-".into(),
        ]);
    }
}

fn in_rounds(w: Waited, round: Duration) -> String {
    match w.done() {
        Some(d) => {
            let r = d.as_secs_f64() / round.as_secs_f64();
            format!("{} = {r:.1} rounds", secs(d))
        }
        None => w.to_string(),
    }
}

fn met(ok: Option<bool>) -> String {
    match ok {
        Some(true) => "yes".into(),
        Some(false) => "NO".into(),
        None => "-".into(),
    }
}
