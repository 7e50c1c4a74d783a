//! `maxwell bench gossip`: how fast a change spreads, how fast a dead or
//! leaving node is noticed, and what gossip costs, beside HashiCorp Serf.
//!
//! Three parts, one table:
//! - [`sim`]: `n` meshes in one process on an in-memory transport with a
//!   paused clock, for n up to 1000, at `--interval-ms`;
//! - [`agents`]: real `maxwell agent` processes on loopback UDP at the
//!   default config, timed from the sysfs write;
//! - [`serf`]: as many `serf agent` processes (LAN profile), timed from the
//!   command.

pub mod agents;
mod channel;
pub mod scale;
mod scale_table;
pub mod serf;
pub mod sim;

use crate::bench::timing::{median, secs, slowest, Waited};
use clap::Args;
use maxwell_node::render::Table;
use std::fmt::Write;
use std::time::{Duration, Instant};

/// Changes timed per run, each from another node; the table shows the median.
pub const TRIALS: usize = 5;

/// The agents SIGKILLed in turn, one at a time (`n` ≥ 4): `n - 2`, then
/// two more that are not seeds (the first three), nor the leaver (`n - 3`).
pub fn victims(n: usize) -> Vec<usize> {
    let more = [4, 5].into_iter().filter_map(|d| n.checked_sub(d));
    std::iter::once(n - 2)
        .chain(more.filter(|&k| k >= 3))
        .collect()
}

/// How often the loopback runs poll an agent's API.
pub const POLL: Duration = Duration::from_millis(20);

/// Serf's own simulator: a change reaches 99.99 % of 1000 nodes in about
/// 2.2 s gossiping every 0.2 s to 3 nodes.
const SERF_SIM_1000: Duration = Duration::from_millis(2200);
/// Serf on loopback, n = 30, as measured for the project's standard.
const SERF_REF: Reference = Reference {
    change: 0.35,
    dead: 7.9,
    left: 0.25,
};

struct Reference {
    change: f64,
    dead: f64,
    left: f64,
}

/// `maxwell bench gossip`.
#[derive(Debug, Args)]
pub struct GossipBenchArgs {
    /// Mesh sizes simulated in memory with a paused clock (1000 takes ~5 min and ~13 GB here).
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    pub sizes: Vec<usize>,
    /// Gossip round period for every run, ms (Serf's LAN profile gossips every 200 ms).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub interval_ms: u64,
    /// Real agents on loopback UDP, and as many Serf agents (0 skips both).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=200))]
    pub udp_nodes: u64,
    /// Do not run Serf beside our agents.
    #[arg(long)]
    pub no_serf: bool,
    /// Longest wait for any one event (simulated seconds in the simulation), s.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout_s: u64,
    /// Window over which steady-state gossip bytes are counted, s.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub steady_s: u64,
    /// Sizes of the tiered mesh's scale simulation (empty skips it).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub scale_sizes: Vec<usize>,
    /// Nodes per rack in the scale simulation.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u64).range(2..=1000))]
    pub rack_size: u64,
    /// Mean time between one node's changes in the scale simulation, s.
    #[arg(long, default_value_t = 10.0)]
    pub change_every_s: f64,
}

/// What one loopback run measured.
#[derive(Debug, Clone)]
pub struct LiveResult {
    pub n: usize,
    /// From start until every agent lists all `n` as alive.
    pub join: Waited,
    /// From the change (ours: the sysfs write; Serf: the `serf tags`
    /// command) until every other agent shows it, one per trial.
    pub change: Vec<Waited>,
    /// From SIGKILL of an agent until every other marks it dead (failed),
    /// for each of [`victims`] in turn.
    pub dead: Vec<Waited>,
    /// From asking one agent to leave until every other marks it left.
    pub left: Waited,
    /// Gossip payload bytes sent per agent per second, steady state.
    pub bytes_per_node_s: Option<f64>,
    /// From the sysfs write until the origin's slot neighbour quotes
    /// another price, one per trial (ours only).
    pub price: Vec<Waited>,
    /// Bytes sent per agent per second while every agent's heat changes
    /// each second, and the floor (n × a report's bytes per second); ours only.
    pub busy: Option<(f64, f64)>,
}

/// A part that ran, failed, or was not run.
type Outcome<T> = Result<T, String>;

/// Runs every part and prints the table.
pub fn run(args: &GossipBenchArgs) -> anyhow::Result<()> {
    let wall = Instant::now();
    let interval = Duration::from_millis(args.interval_ms);
    let timeout = Duration::from_secs(args.timeout_s);
    let steady = Duration::from_secs(args.steady_s);
    let mut sims = Vec::new();
    for &n in &args.sizes {
        let r = sim::run(n, interval, timeout).map_err(|e| format!("error: {e:#}"));
        sims.push((n, r));
    }
    let mut scales = Vec::new();
    for &n in &args.scale_sizes {
        eprintln!("bench gossip: tiered mesh of {n} simulated ...");
        let spec = scale::ScaleSpec {
            n,
            rack_size: usize::try_from(args.rack_size)?,
            change_every_s: args.change_every_s,
            steady_s: args.steady_s,
            timeout_s: args.timeout_s,
            seed: 1,
        };
        scales.push((n, scale::run(&spec).map_err(|e| format!("error: {e:#}"))));
    }
    let n = usize::try_from(args.udp_nodes)?;
    let calibration = (n > 0).then(|| {
        let spec = scale::ScaleSpec {
            n,
            rack_size: n,
            change_every_s: 1.0,
            steady_s: args.steady_s,
            timeout_s: args.timeout_s,
            seed: 1,
        };
        scale::calibrate(&spec).map_err(|e| format!("error: {e:#}"))
    });
    let ours: Option<Outcome<LiveResult>> = (n > 0).then(|| {
        eprintln!("bench gossip: {n} maxwell agents on loopback ...");
        agents::run(n, timeout, steady).map_err(|e| format!("error: {e:#}"))
    });
    let theirs: Outcome<LiveResult> = if n == 0 {
        Err("not run (--udp-nodes 0)".into())
    } else if args.no_serf {
        Err("not run (--no-serf)".into())
    } else if !serf::installed() {
        Err("serf: not installed (apt-get install serf)".into())
    } else {
        eprintln!("bench gossip: {n} serf agents on loopback ...");
        serf::run(n, timeout, steady).map_err(|e| format!("error: {e:#}"))
    };
    print!(
        "{}",
        render(args, &sims, ours.as_ref(), &theirs, wall.elapsed())
    );
    print!(
        "{}",
        scale_table::render(args, &scales, calibration.as_ref(), ours.as_ref())
    );
    Ok(())
}

fn render(
    args: &GossipBenchArgs,
    sims: &[(usize, Outcome<sim::SimResult>)],
    ours: Option<&Outcome<LiveResult>>,
    theirs: &Outcome<LiveResult>,
    wall: Duration,
) -> String {
    let interval = Duration::from_millis(args.interval_ms);
    let mut out = String::new();
    let serf_name = if theirs.is_ok() {
        serf::version()
    } else {
        "serf".into()
    };
    let _ = writeln!(
        out,
        "maxwell bench gossip: udp rows at each side's defaults; sim rows gossip every {} ms",
        args.interval_ms
    );
    let _ = writeln!(
        out,
        "  maxwell: lan preset (SWIM probes every 800 ms, a change pushed to every member, digests every 15 s), sensors read every 100 ms"
    );
    let _ = writeln!(
        out,
        "  {serf_name}: -profile lan (memberlist: gossip 200 ms to 3 nodes, probe 1 s)\n"
    );
    let mut t = Table::new(&["FIGURE", "MAXWELL", "SERF", "MAXWELL/SERF", "ANCHOR"]);
    for (n, r) in sims {
        sim_rows(&mut t, *n, r, interval);
    }
    if let Some(ours) = ours {
        live_rows(&mut t, ours, theirs);
    }
    out.push_str(&t.render());
    let _ = writeln!(out, "\nnotes:");
    for (n, r) in sims {
        if let Ok(r) = r {
            let _ = writeln!(
                out,
                "  sim n={n}: all joined after {} simulated; took {} of wall time",
                r.join,
                secs(r.wall)
            );
        }
    }
    for line in NOTES {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "  whole benchmark: {} of wall time", secs(wall));
    out
}

const NOTES: &[&str] = &[
    "sim: in-memory transport, paused clock: no latency, loss or CPU contention; the",
    "     changed node publishes once; times from that publish; rounds = ceil(time / interval)",
    "udp: times from what the operator does (ours: the hwmon file is rewritten; serf: `serf",
    "     tags -set` is run) until every other agent shows it (ours: GET /v1/members every",
    "     20 ms; serf: its log, read every 10 ms); price: the origin's slot neighbour's",
    "     /v1/status price differs (polled every 2 ms);",
    "     dead: SIGKILL; left: SIGTERM for maxwell, SIGINT (graceful leave) for serf",
    "bytes: gossip payload sent (ours: maxwell_gossip_bytes_total{direction=\"out\"};",
    "     serf: memberlist.udp.sent + memberlist.tcp.sent via statsd)",
];

fn sim_rows(t: &mut Table, n: usize, r: &Outcome<sim::SimResult>, interval: Duration) {
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            t.row(vec![
                format!("sim n={n}"),
                e.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            return;
        }
    };
    #[allow(clippy::cast_precision_loss)]
    let ln = (n as f64).ln();
    for (i, label) in ["50 %", "99 %", "100 %"].iter().enumerate() {
        let ours = match r.reached[i] {
            Waited::Done(d) => match sim::rounds(d, interval) {
                1 => format!("1 round, {}", secs(d)),
                k => format!("{k} rounds, {}", secs(d)),
            },
            w @ Waited::Timeout { .. } => w.to_string(),
        };
        let anchor = match (i, n) {
            (0, _) => format!("O(ln n) rounds: ln {n} = {ln:.1}"),
            (2, 1000) => format!(
                "Serf simulator: 99.99 % in ~{} (0.2 s, fanout 3)",
                secs(SERF_SIM_1000)
            ),
            _ => String::new(),
        };
        let ratio = match (i, n, r.reached[i].done()) {
            (2, 1000, Some(d)) => ratio(d.as_secs_f64(), SERF_SIM_1000.as_secs_f64()) + " (vs sim)",
            _ => "-".into(),
        };
        let label = match r.trials {
            1 => format!("sim n={n}: change seen by {label}, 1 change"),
            k => format!("sim n={n}: change seen by {label}, median of {k}"),
        };
        t.row(vec![label, ours, "-".into(), ratio, anchor]);
    }
    let bytes = r.bytes_per_node_s.map_or_else(|| "-".into(), rate);
    t.row(vec![
        format!("sim n={n}: gossip bytes/node/s, quiet"),
        bytes,
        "-".into(),
        "-".into(),
        String::new(),
    ]);
}

/// A row of the loopback section: label, how to read our and Serf's result, the reference.
type LiveRow = (String, fn(&LiveResult) -> Waited, Option<f64>);

fn live_rows(t: &mut Table, ours: &Outcome<LiveResult>, theirs: &Outcome<LiveResult>) {
    let n = ours.as_ref().map_or(0, |r| r.n);
    let trials = ours.as_ref().map_or(0, |r| r.change.len());
    let kills = ours.as_ref().map_or(0, |r| r.dead.len());
    let rows: [LiveRow; 6] = [
        (
            format!("heat/tag change seen by all, median of {trials}"),
            |r| median(&r.change),
            Some(SERF_REF.change),
        ),
        (
            format!("heat/tag change seen by all, slowest of {trials}"),
            |r| slowest(&r.change),
            None,
        ),
        (
            format!("SIGKILL: dead everywhere, median of {kills}"),
            |r| median(&r.dead),
            Some(SERF_REF.dead),
        ),
        (
            format!("SIGKILL: dead everywhere, slowest of {kills}"),
            |r| slowest(&r.dead),
            None,
        ),
        (
            "leave: left everywhere".into(),
            |r| r.left,
            Some(SERF_REF.left),
        ),
        (
            "start: all see all (from last one up)".into(),
            |r| r.join,
            None,
        ),
    ];
    for (label, get, reference) in rows {
        let a = ours.as_ref().map(get);
        let b = theirs.as_ref().map(get);
        let ratio = match (a.map(Waited::done), b.map(Waited::done)) {
            (Ok(Some(a)), Ok(Some(b))) => ratio(a.as_secs_f64(), b.as_secs_f64()),
            _ => "-".into(),
        };
        let anchor =
            reference.map_or_else(String::new, |s| format!("Serf n=30 loopback ref: {s} s"));
        t.row(vec![
            format!("udp n={n}: {label}"),
            cell(&a),
            cell(&b),
            ratio,
            anchor,
        ]);
    }
    let price = ours.as_ref().map(|r| median(&r.price));
    t.row(vec![
        format!("udp n={n}: a rack neighbour's price moves, median of {trials}"),
        cell(&price),
        "-".into(),
        "-".into(),
        "goal: one sensor period (100 ms) + 10 ms".into(),
    ]);
    bytes_row(t, n, ours, theirs);
    let busy = ours.as_ref().ok().and_then(|r| r.busy);
    t.row(vec![
        format!("udp n={n}: gossip bytes/node/s, every heat changing each second"),
        busy.map_or_else(|| "-".into(), |(b, _)| rate(b)),
        "-".into(),
        busy.map_or_else(
            || "-".into(),
            |(b, f)| format!("{} of the floor", ratio(b, f)),
        ),
        busy.map_or_else(String::new, |(_, f)| {
            format!("floor: n x report/s = {}; goal 1.5x", rate(f))
        }),
    ]);
}

fn bytes_row(t: &mut Table, n: usize, ours: &Outcome<LiveResult>, theirs: &Outcome<LiveResult>) {
    let a = ours.as_ref().map(|r| r.bytes_per_node_s);
    let b = theirs.as_ref().map(|r| r.bytes_per_node_s);
    let ratio = match (&a, &b) {
        (Ok(Some(a)), Ok(Some(b))) => ratio(*a, *b),
        _ => "-".into(),
    };
    let bytes = |v: &Result<Option<f64>, &String>| match v {
        Ok(Some(v)) => rate(*v),
        Ok(None) => "n/a".into(),
        Err(e) => (*e).clone(),
    };
    let label = format!("udp n={n}: gossip bytes/node/s");
    t.row(vec![label, bytes(&a), bytes(&b), ratio, String::new()]);
}

fn cell(v: &Result<Waited, &String>) -> String {
    match v {
        Ok(w) => w.to_string(),
        Err(e) => (*e).clone(),
    }
}

fn ratio(ours: f64, theirs: f64) -> String {
    if theirs > 0.0 {
        format!("{:.2}", ours / theirs)
    } else {
        "-".into()
    }
}

/// `12.3 kB/s`.
fn rate(bytes_per_s: f64) -> String {
    if bytes_per_s >= 1000.0 {
        format!("{:.1} kB/s", bytes_per_s / 1000.0)
    } else {
        format!("{bytes_per_s:.0} B/s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_victims_spare_the_seeds_and_the_leaver() {
        assert_eq!(super::victims(4), vec![2]);
        assert_eq!(super::victims(6), vec![4]);
        assert_eq!(super::victims(30), vec![28, 26, 25]);
    }
}
