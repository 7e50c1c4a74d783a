//! `maxwell bench placement`: submit-anywhere placement across real agents
//! on loopback. N agents (24 by default, 4 racks) at their default config
//! on sysfs fixtures spread from 40 to 79 °C, a few hot ones at 92 °C and
//! one frozen (SIGSTOP, so the mesh finds it dead and its report goes
//! stale); then many submissions at once, each `POST /v1/submit` to a
//! random agent, timed from the request to its answer. The table puts the
//! load each node ended with beside the ideal, one random choice and the
//! two-choice bound, and the decisions' latency beside Sparrow's.

use super::timing::{quantile, Waited};
use anyhow::{bail, Context};
use clap::Args;
use maxwell_node::client::{self, Api};
use maxwell_node::http::guests::{GuestList, GuestRow};
use maxwell_node::http::submit::Submitted;
use maxwell_node::http::Members;
use maxwell_node::p2p::migrate::Moved;
use maxwell_supervise::Procs;
use maxwell_types::rng::Rng;
use maxwell_types::MilliCelsius;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `maxwell bench placement`.
#[derive(Debug, Args)]
pub struct PlacementBenchArgs {
    /// Agents (8 to 50), in 4 racks.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u16).range(8..=50))]
    pub agents: u16,
    /// Submissions in all.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=5_000))]
    pub submissions: u32,
    /// Submissions in flight at once.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,
    /// Hot agents (92 °C of a 100 °C limit).
    #[arg(long, default_value_t = 3)]
    pub hot: u16,
    /// Seed of the layout and of who submits where.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Running KVM guests then moved, one at a time, between random
    /// eligible agents (`POST /v1/guests/{id}/move`); 0: none.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(0..=500))]
    pub moves: u16,
}

const RACKS: u16 = 4;
const T: Duration = Duration::from_secs(60);
/// Every guest bids this: every node but the hot ones is affordable.
const BID_MILLI: u64 = 5_000;
/// One-vCPU guests each agent admits.
const ROOM: usize = 64;

/// One agent of the bench.
struct Agent {
    name: String,
    celsius: f64,
    api: Api,
}

/// Runs the benchmark and prints its table.
pub fn run(args: &PlacementBenchArgs) -> anyhow::Result<()> {
    let n = usize::from(args.agents);
    let hot = usize::from(args.hot).min(n / 4);
    let exe = std::env::current_exe().context("locating the maxwell binary")?;
    let mut procs = Procs::new("maxwell-bench-placement")?;
    let dir = procs.dir().to_path_buf();
    let key = maxwell_node::mesh::keys::create(&dir)?;
    let mut rng = Rng::new(args.seed);
    // Temperatures: the first `hot` are hot, the last is frozen; the rest
    // spread over 40..79 °C (as many as there are), shuffled over the racks.
    let mut temps: Vec<f64> = (0..n)
        .map(|k| match k {
            k if k < hot => 92.0,
            k if k + 1 == n => 45.0,
            k => 40.0 + (k * 39 / n) as f64,
        })
        .collect();
    for i in (1..n).rev() {
        temps.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let frozen = (0..n)
        .find(|&k| temps[k] == 45.0)
        .context("the frozen agent's slot")?;
    // Room for every guest on the cool agents, on any machine.
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    let fraction = ROOM as f64 / cores as f64;
    eprintln!("placement bench: starting {n} agents ...");
    let mut seed = None;
    let mut waits = Vec::new();
    for (k, celsius) in temps.iter().enumerate() {
        let (rack, slot) = (k as u16 % RACKS + 1, k as u16 / RACKS + 1);
        let tree = dir.join(format!("tree{k}"));
        super::gossip::agents::write_fixture(&tree, MilliCelsius((celsius * 1000.0) as i64))?;
        std::fs::create_dir_all(tree.join("powercap"))?;
        let cfg = dir.join(format!("node{k}.toml"));
        let seeds = seed.map_or(String::new(), |s| format!("\"{s}\""));
        std::fs::write(
            &cfg,
            format!(
                "name = \"r{rack}-u{slot:02}\"\nrack = \"r{rack}\"\nslot = {slot}\n\
                 [sensors]\nsource = \"sysfs\"\nhwmon_root = \"{hw}\"\npowercap_root = \"{pc}\"\n\
                 [gossip]\ncluster_key_file = \"{key}\"\nseeds = [{seeds}]\n\
                 [guests]\ncpu_fraction = {fraction}\n",
                hw = tree.join("hwmon").display(),
                pc = tree.join("powercap").display(),
                key = key.display()
            ),
        )?;
        let data = dir.join(format!("node{k}"));
        let flags = [
            OsStr::new("--log-level"),
            OsStr::new("warn"),
            OsStr::new("--config"),
            cfg.as_os_str(),
        ];
        let i = procs.spawn_agent(&format!("node{k}"), &exe, &flags, &data)?;
        if k == 0 {
            seed = Some(procs.wait_agent(i, &data, T)?.gossip);
        }
        waits.push((i, data, format!("r{rack}-u{slot:02}"), *celsius));
    }
    let mut agents = Vec::new();
    for (i, data, name, celsius) in &waits {
        let addr = procs.wait_agent(*i, data, T)?.http;
        let token = client::read_token(None, data)?;
        agents.push(Agent {
            name: name.clone(),
            celsius: *celsius,
            api: Api { addr, token },
        });
    }
    let result = measure(args, &mut procs, &agents, frozen, &mut rng);
    procs.signal(frozen, libc::SIGCONT);
    procs.stop_all(libc::SIGTERM, Duration::from_secs(10));
    print!("{}", result?);
    Ok(())
}

/// Waits until every agent but `skip` sees `pred` hold of its members.
fn until_all(
    agents: &[Agent],
    skip: usize,
    what: &str,
    pred: impl Fn(&Members) -> bool,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    for (k, a) in agents.iter().enumerate().filter(|(k, _)| *k != skip) {
        loop {
            let m: Members = a.api.get_json("/v1/members", Duration::from_secs(5))?;
            if pred(&m) {
                break;
            }
            if t0.elapsed() > T {
                bail!("{what}: agent {k} did not get there within {T:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}

/// One submission's outcome: where it landed and how, or why not.
type Outcome = (Duration, Result<Submitted, String>);

fn measure(
    args: &PlacementBenchArgs,
    procs: &mut Procs,
    agents: &[Agent],
    frozen: usize,
    rng: &mut Rng,
) -> anyhow::Result<String> {
    let n = agents.len();
    until_all(
        agents,
        usize::MAX,
        "every agent counting every other",
        |m| {
            m.members
                .iter()
                .filter(|r| r.counts && r.p2p.is_some())
                .count()
                == n
        },
    )?;
    procs.signal(frozen, libc::SIGSTOP);
    let frozen_name = agents[frozen].name.clone();
    until_all(agents, frozen, "the frozen agent not counting", |m| {
        m.members.iter().any(|r| r.name == frozen_name && !r.counts)
    })?;
    // The eligible agents' prices as agent 0 sees them, for the reference rule.
    let view: Members = agents[0]
        .api
        .get_json("/v1/members", Duration::from_secs(5))?;
    let prices: Vec<u64> = agents
        .iter()
        .filter(|a| a.celsius < 90.0 && a.name != frozen_name)
        .filter_map(|a| view.members.iter().find(|r| r.name == a.name)?.price_milli)
        .collect();
    // Who submits where, drawn up front from the seed.
    let plan: Vec<usize> = (0..args.submissions)
        .map(|_| loop {
            let k = rng.below(n as u64) as usize;
            if k != frozen {
                break k;
            }
        })
        .collect();
    eprintln!(
        "placement bench: {} submissions, {} at once ...",
        plan.len(),
        args.concurrency
    );
    let next = Mutex::new(0usize);
    let outcomes: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let wall = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.concurrency {
            s.spawn(|| loop {
                let i = {
                    let mut g = next.lock().unwrap_or_else(|e| e.into_inner());
                    *g += 1;
                    *g - 1
                };
                let Some(&k) = plan.get(i) else { return };
                let spec = format!(
                    r#"{{"name": "p{i}", "kind": "workload", "vcpus": 1, "memory_mib": 4, "payload": "count", "stop_after": 1, "bid_milli": {BID_MILLI}, "wallet_milli": 1000000000}}"#
                );
                let t0 = Instant::now();
                let r = agents[k]
                    .api
                    .post("/v1/submit", &spec, T)
                    .map_err(|e| e.to_string())
                    .and_then(|b| serde_json::from_str::<Submitted>(&b).map_err(|e| e.to_string()));
                let took = t0.elapsed();
                outcomes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((took, r));
            });
        }
    });
    let wall = wall.elapsed();
    let outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    // What runs where, as each agent lists it.
    let mut load = BTreeMap::<String, usize>::new();
    for (_, a) in agents.iter().enumerate().filter(|(k, _)| *k != frozen) {
        let list: GuestList = a.api.get_json("/v1/guests", Duration::from_secs(10))?;
        load.insert(a.name.clone(), list.guests.len());
    }
    let eligible: Vec<usize> = (0..n)
        .filter(|&k| k != frozen && agents[k].celsius < 90.0)
        .collect();
    let moves = migrations(args, agents, &eligible, rng);
    let mut out = table(args, agents, frozen, &outcomes, &load, &prices, wall);
    out.push_str(&moves_table(&moves));
    Ok(out)
}

/// One move: from the request to its answer, and what the answer says.
type MoveOutcome = Result<(Duration, Moved), String>;

/// Moves `args.moves` running guests, one at a time, each started on a
/// random eligible agent and moved to another (then killed there).
fn migrations(
    args: &PlacementBenchArgs,
    agents: &[Agent],
    eligible: &[usize],
    rng: &mut Rng,
) -> Vec<MoveOutcome> {
    if eligible.len() < 2 || args.moves == 0 {
        return Vec::new();
    }
    eprintln!("placement bench: {} moves, one at a time ...", args.moves);
    (0..args.moves)
        .map(|i| {
            let pick = |rng: &mut Rng| eligible[rng.below(eligible.len() as u64) as usize];
            let from = pick(rng);
            let to = loop {
                let k = pick(rng);
                if k != from {
                    break k;
                }
            };
            one_move(&agents[from], &agents[to], i)
        })
        .collect()
}

fn one_move(from: &Agent, to: &Agent, i: u16) -> MoveOutcome {
    let spec = format!(
        r#"{{"name": "m{i}", "kind": "workload", "vcpus": 1, "memory_mib": 4, "payload": "count", "bid_milli": {BID_MILLI}, "wallet_milli": 1000000}}"#
    );
    let started = from
        .api
        .post("/v1/guests", &spec, T)
        .map_err(|e| e.to_string())?;
    let g: GuestRow = serde_json::from_str(&started).map_err(|e| e.to_string())?;
    // Moved once it has run a while (its memory and counter are not blank).
    std::thread::sleep(Duration::from_millis(200));
    let body = format!(r#"{{"to": "{}"}}"#, to.name);
    let t0 = Instant::now();
    let answer = from
        .api
        .post(&format!("/v1/guests/{}/move", g.id), &body, T);
    let took = t0.elapsed();
    let moved: Moved = match answer {
        Ok(b) => serde_json::from_str(&b).map_err(|e| e.to_string())?,
        Err(e) => {
            let _ = from.api.post(&format!("/v1/guests/{}/kill", g.id), "", T);
            return Err(e.to_string());
        }
    };
    let _ = to
        .api
        .post(&format!("/v1/guests/{}/kill", moved.to_guest), "", T);
    Ok((took, moved))
}

fn moves_table(moves: &[MoveOutcome]) -> String {
    let mut out = String::new();
    if moves.is_empty() {
        return out;
    }
    let ok: Vec<&(Duration, Moved)> = moves.iter().filter_map(|m| m.as_ref().ok()).collect();
    let requests: Vec<Option<Duration>> = ok.iter().map(|(t, _)| Some(*t)).collect();
    let paused: Vec<Option<Duration>> = ok
        .iter()
        .map(|(_, m)| Some(Duration::from_secs_f64(m.paused_ms / 1000.0)))
        .collect();
    let ms = |w: Waited| match w {
        Waited::Done(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        other => other.to_string(),
    };
    let bytes = ok.iter().map(|(_, m)| m.bytes).sum::<u64>() / ok.len().max(1) as u64;
    let restored = ok.iter().filter(|(_, m)| m.restored).count();
    let _ = writeln!(
        out,
        "
migration: {} running KVM workload guests (1 vCPU, 4 MiB, with a wallet), each moved once between two random eligible agents, one at a time",
        moves.len()
    );
    let row = |out: &mut String, what: &str, ours: String| {
        let _ = writeln!(out, "{what:<44} {ours:>14}");
    };
    row(
        &mut out,
        "moved / failed (restored where they stopped)",
        format!("{} / {} ({restored})", ok.len(), moves.len() - ok.len()),
    );
    row(
        &mut out,
        "request to running there, p50",
        ms(quantile(&requests, 0.5)),
    );
    row(&mut out, "  p99", ms(quantile(&requests, 0.99)));
    row(
        &mut out,
        "paused (pause to resumed there), p50",
        ms(quantile(&paused, 0.5)),
    );
    row(&mut out, "  p99", ms(quantile(&paused, 0.99)));
    row(&mut out, "bytes moved per guest, mean", bytes.to_string());
    if let Some(Err(e)) = moves.iter().find(|m| m.is_err()) {
        let _ = writeln!(out, "first failed move: {e}");
    }
    out
}

/// The expected fullest node when `m` guests are placed by the rule the
/// agents use (the cheaper of two drawn at random, a tie to either, a
/// full node passed over) with these prices and `room` each (mean of 200
/// seeded trials): what the agents' result should be, if the gossip view
/// were exact and instant.
fn two_choices_by_price(m: usize, prices: &[u64], room: usize, seed: u64) -> f64 {
    let n = prices.len();
    let mut rng = Rng::new(seed ^ 0x2c40);
    let trials = 200;
    let total: usize = (0..trials)
        .map(|_| {
            let mut b = vec![0usize; n];
            for _ in 0..m {
                let i = rng.below(n as u64) as usize;
                let j = (i + 1 + rng.below(n as u64 - 1) as usize) % n;
                let pick = match (b[i] < room, b[j] < room) {
                    (true, true) if prices[j] < prices[i] => j,
                    (true, _) => i,
                    (false, true) => j,
                    (false, false) => match b.iter().position(|&l| l < room) {
                        Some(k) => k,
                        None => continue,
                    },
                };
                b[pick] += 1;
            }
            b.into_iter().max().unwrap_or(0)
        })
        .sum();
    total as f64 / f64::from(trials)
}

/// The expected fullest bin when `m` balls go to `bins` bins by one
/// uniform choice each (mean of 200 seeded trials).
fn one_random_choice(m: usize, bins: usize, seed: u64) -> f64 {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let trials = 200;
    let total: usize = (0..trials)
        .map(|_| {
            let mut b = vec![0usize; bins];
            for _ in 0..m {
                b[rng.below(bins as u64) as usize] += 1;
            }
            b.into_iter().max().unwrap_or(0)
        })
        .sum();
    total as f64 / f64::from(trials)
}

fn table(
    args: &PlacementBenchArgs,
    agents: &[Agent],
    frozen: usize,
    outcomes: &[Outcome],
    load: &BTreeMap<String, usize>,
    prices: &[u64],
    wall: Duration,
) -> String {
    let placed: Vec<&Submitted> = outcomes
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    let times: Vec<Option<Duration>> = outcomes
        .iter()
        .map(|(t, r)| r.is_ok().then_some(*t))
        .collect();
    let ms = |w: Waited| match w {
        Waited::Done(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        other => other.to_string(),
    };
    let offers: Vec<usize> = placed.iter().map(|s| s.offers.len()).collect();
    let mean_offers = offers.iter().sum::<usize>() as f64 / offers.len().max(1) as f64;
    let hot: Vec<&str> = agents
        .iter()
        .filter(|a| a.celsius >= 90.0)
        .map(|a| a.name.as_str())
        .collect();
    let frozen_name = agents[frozen].name.as_str();
    let on_bad = placed
        .iter()
        .filter(|s| hot.contains(&s.name.as_str()) || s.name == frozen_name)
        .count();
    // Eligible: neither hot nor frozen.
    let eligible = agents.len() - hot.len() - 1;
    let m = placed.len();
    let max_load = load.values().copied().max().unwrap_or(0);
    let ideal = m.div_ceil(eligible.max(1));
    let random = one_random_choice(m, eligible.max(1), args.seed);
    let by_price = two_choices_by_price(m, prices, ROOM, args.seed);
    let nf = eligible.max(2) as f64;
    let bound = m as f64 / nf + nf.ln().ln() / std::f64::consts::LN_2;
    // The coolest quartile of the eligible agents.
    let mut by_temp: Vec<&Agent> = agents.iter().collect();
    by_temp.sort_by(|a, b| a.celsius.total_cmp(&b.celsius));
    let quartile: Vec<&str> = by_temp
        .iter()
        .filter(|a| a.celsius < 90.0 && a.name != frozen_name)
        .take(eligible / 4)
        .map(|a| a.name.as_str())
        .collect();
    let in_quartile: usize = quartile
        .iter()
        .map(|q| load.get(*q).copied().unwrap_or(0))
        .sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "placement: {} agents in {RACKS} racks on loopback, default config, sysfs fixtures {:.0}-{:.0} °C, {} hot (92 °C), 1 frozen (SIGSTOP)",
        agents.len(),
        by_temp.first().map_or(0.0, |a| a.celsius),
        by_temp.iter().rev().find(|a| a.celsius < 90.0).map_or(0.0, |a| a.celsius),
        hot.len()
    );
    let _ = writeln!(
        out,
        "{} submissions, {} at once, each POST /v1/submit to a random agent; bid {:.3} (every agent but the hot affordable); {:.1} s in all",
        outcomes.len(),
        args.concurrency,
        BID_MILLI as f64 / 1000.0,
        wall.as_secs_f64()
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<44} {:>14} {:>24}",
        "", "maxwell", "Sparrow (paper, EuroSys'13)"
    );
    let row = |out: &mut String, what: &str, ours: String, peer: &str| {
        let _ = writeln!(out, "{what:<44} {ours:>14} {peer:>24}");
    };
    row(
        &mut out,
        "placed / landed nowhere",
        format!("{m} / {}", failed.len()),
        "",
    );
    row(
        &mut out,
        "latency p50 (request to answer)",
        ms(quantile(&times, 0.5)),
        "milliseconds",
    );
    row(&mut out, "latency p99", ms(quantile(&times, 0.99)), "");
    row(
        &mut out,
        "offers per placement, mean / max",
        format!(
            "{mean_offers:.2} / {}",
            offers.iter().max().copied().unwrap_or(0)
        ),
        "",
    );
    row(&mut out, "max guests on one node", max_load.to_string(), "");
    row(
        &mut out,
        &format!("  ideal (ceil {m} / {eligible} eligible)"),
        ideal.to_string(),
        "",
    );
    row(
        &mut out,
        "  max / ideal",
        format!("{:.2}", max_load as f64 / ideal.max(1) as f64),
        "job response ≤ 1.12 × ideal",
    );
    row(
        &mut out,
        "  the same rule simulated (prices as seen)",
        format!("{by_price:.1}"),
        "",
    );
    row(
        &mut out,
        "  one random choice (simulated, mean)",
        format!("{random:.1}"),
        "",
    );
    row(
        &mut out,
        "  two-choice bound m/n + ln ln n / ln 2",
        format!("{bound:.1}"),
        "",
    );
    row(
        &mut out,
        &format!("share on the coolest quartile ({} nodes)", quartile.len()),
        format!("{:.1} %", 100.0 * in_quartile as f64 / m.max(1) as f64),
        "",
    );
    row(
        &mut out,
        "landed on a hot or stale node",
        on_bad.to_string(),
        "",
    );
    if let Some(e) = failed.first() {
        let _ = writeln!(out, "\nfirst failure: {e}");
    }
    let _ = writeln!(out, "\nguests per node (°C):");
    for a in by_temp {
        let n = load.get(&a.name).map_or("frozen".into(), |n| n.to_string());
        let _ = writeln!(out, "  {:<8} {:>5.1} °C  {n}", a.name, a.celsius);
    }
    out
}
