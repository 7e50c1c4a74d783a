//! `maxwell testbed run SCENARIO`: a rack of real agents in Docker
//! containers on one machine, in a closed loop with the rack's physics,
//! broken on a timeline and checked against the agents' own APIs.
//!
//! - **Images** hold only our static agent binary (`FROM scratch`); no
//!   registry is needed.
//! - **Physics** ([`rack`]) is the thermal bench's model, driven by each
//!   container's real CPU (its cgroup's `cpuacct.usage`) and written as the
//!   hwmon files the container mounts as its `--hwmon-root`. When the
//!   market caps or pauses guests, power falls and the rack cools.
//! - **Faults** ([`scenario`]): cooling, fan, heat, kill, restart, pause,
//!   partitions and loss by iptables in a container's network namespace,
//!   scoped to the gossip port.
//! - **Teardown** runs on every path (an error, a failed check, Ctrl-C), and
//!   is checked: the run fails if a container or network is left.

pub mod engine;
mod faults;
mod observe;
pub mod rack;
mod report;
pub mod scenario;
mod setup;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use observe::{History, Sample};
use report::Outcome;
use scenario::Scenario;
use std::io::{IsTerminal, Write as _};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The gossip port inside every container (iptables faults are scoped to it).
const GOSSIP_PORT: u16 = 7946;
const API_PORT: u16 = 7070;
/// The rack's private network: agent `h` is `SUBNET.(10 + h)`.
const SUBNET: [u8; 3] = [10, 213, 0];

/// `maxwell testbed`.
#[derive(Debug, Args)]
pub struct TestbedArgs {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bring a rack up, run a scenario's timeline and checks, write its report, tear it all down.
    Run(RunArgs),
    /// Remove whatever an interrupted run left on the engine.
    Down,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The scenario file (testbed/scenarios/*.toml).
    scenario: PathBuf,
    /// Agents, overriding the file (default 6).
    #[arg(long)]
    agents: Option<usize>,
    /// Report, hwmon trees and data dirs (default target/testbed/NAME).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A static agent binary, instead of building one.
    #[arg(long)]
    agent_bin: Option<PathBuf>,
    /// Seed of the hosts' manufacturing spread.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Runs `maxwell testbed ...`.
pub fn run(args: TestbedArgs) -> anyhow::Result<()> {
    match args.command {
        Cmd::Down => {
            engine::down(None)?;
            println!(
                "testbed: nothing of {} is left on the engine",
                engine::PROJECT
            );
            Ok(())
        }
        Cmd::Run(a) => run_scenario(&a),
    }
}

fn ip(h: usize) -> Ipv4Addr {
    Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], 10 + h as u8)
}

fn run_scenario(a: &RunArgs) -> anyhow::Result<()> {
    let s = Scenario::load(&a.scenario, a.agents)?;
    let out = match &a.out {
        Some(o) => o.clone(),
        None => std::env::current_dir()?
            .join("target/testbed")
            .join(&s.name),
    };
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    std::fs::create_dir_all(&out)?;
    let out = out.canonicalize()?;
    let started = engine::ensure(&out.join("dockerd.log"))?;
    let result = with_engine(a, &s, &out);
    if let Some(engine) = started {
        engine.stop();
    }
    result
}

fn with_engine(a: &RunArgs, s: &Scenario, out: &Path) -> anyhow::Result<()> {
    if engine::leftovers()? != engine::Leftovers::default() {
        eprintln!("testbed: removing what an earlier run left");
        engine::down(None)?;
    }
    let binary = match &a.agent_bin {
        Some(b) => b.clone(),
        None => setup::build_static()?,
    };
    engine::build_image(&binary, &out.join("image"))?;
    let nodes = s.nodes();
    let warm = if s.guests.is_empty() {
        0.0
    } else {
        setup::GUESTS_SHARE
    };
    let mut rack = rack::Rack::new(s.layout, a.seed, warm);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let cpus = (cores / nodes.len() as f64).min(1.0);
    setup::prepare_dirs(s, out, &rack, cpus)?;
    let compose = out.join("docker-compose.yml");
    std::fs::write(&compose, setup::compose_file(s, cpus, out))?;
    // SAFETY: installs a handler that only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let t_start = Instant::now();
    let result = engine::up(&compose).and_then(|()| {
        let started_s = t_start.elapsed().as_secs_f64();
        let mut run = Run::new(s, &mut rack, cpus);
        run.go(out, t_start, started_s)
    });
    let down = engine::down(Some(&compose));
    let left = engine::leftovers();
    let outcome = result?;
    down.context("tearing the rack down")?;
    match left {
        Ok(l) if l == engine::Leftovers::default() => {
            println!(
                "testbed: torn down; no container, network, iptables rule or mount of {} is left",
                engine::PROJECT
            );
        }
        Ok(l) => bail!("teardown left {l:?}"),
        Err(e) => return Err(e.context("checking the teardown")),
    }
    if outcome.failed > 0 {
        bail!(
            "{} of {} checks failed (report: {})",
            outcome.failed,
            outcome.total,
            out.display()
        );
    }
    println!(
        "testbed: {} checks passed; report in {}",
        outcome.total,
        out.display()
    );
    Ok(())
}

/// The counts of one run's checks.
struct Tally {
    total: usize,
    failed: usize,
}

/// One scenario in progress.
struct Run<'a> {
    s: &'a Scenario,
    rack: &'a mut rack::Rack,
    nodes: Vec<String>,
    /// Machine cores a container may use: a fully busy host.
    cpus: f64,
    cpu: Vec<Option<(PathBuf, u64)>>,
    killed: Vec<bool>,
    /// iptables rules in force: (node, rule), to remove on heal.
    rules: Vec<(String, Vec<String>)>,
    history: History,
    /// Start-up figures, then each fault's effects, for the report.
    notes: Vec<String>,
    outcomes: Vec<Outcome>,
    faults_done: Vec<(u64, String)>,
}

impl<'a> Run<'a> {
    fn new(s: &'a Scenario, rack: &'a mut rack::Rack, cpus: f64) -> Self {
        let nodes = s.nodes();
        let n = nodes.len();
        Self {
            s,
            rack,
            history: History {
                nodes: nodes.clone(),
                at: Vec::new(),
            },
            nodes,
            cpus,
            cpu: vec![None; n],
            killed: vec![false; n],
            rules: Vec::new(),
            notes: Vec::new(),
            outcomes: Vec::new(),
            faults_done: Vec::new(),
        }
    }

    fn api(&self, h: usize) -> SocketAddr {
        SocketAddr::from((ip(h), API_PORT))
    }

    /// Advances the physics by `dt_s` on each container's CPU since last.
    fn physics(&mut self, dt_s: f64, out: &Path) -> anyhow::Result<()> {
        let mut util = vec![0.0; self.nodes.len()];
        for (h, n) in self.nodes.iter().enumerate() {
            let reading = self.cpu[h]
                .as_ref()
                .and_then(|(f, _)| engine::cpu_ns(f).map(|ns| (f.clone(), ns)));
            let reading = match reading {
                Some(r) => Some(r),
                // (Re)started: find its cgroup again.
                None => engine::state(n)
                    .ok()
                    .filter(|st| st.running && st.pid > 0)
                    .and_then(|st| engine::cpu_file(st.pid).ok())
                    .and_then(|f| engine::cpu_ns(&f).map(|ns| (f, ns))),
            };
            if let (Some((_, before)), Some((_, now))) = (&self.cpu[h], &reading) {
                let cores = now.saturating_sub(*before) as f64 / 1e9 / dt_s;
                util[h] = (cores / self.cpus).clamp(0.0, 1.0);
            }
            self.cpu[h] = reading;
        }
        self.rack.step(&util, dt_s);
        for (h, n) in self.nodes.iter().enumerate() {
            rack::write_hwmon(&out.join("hwmon").join(n), self.rack.reading(h))?;
        }
        Ok(())
    }

    fn running(&self, n: &str) -> bool {
        let h = self.nodes.iter().position(|x| x == n).unwrap_or(0);
        !self.killed[h] && engine::state(n).is_ok_and(|st| st.running && !st.paused)
    }

    /// One second: the physics since `last`, then every agent read.
    fn tick(&mut self, last: &mut Instant, out: &Path) -> anyhow::Result<Vec<Sample>> {
        let dt = last.elapsed().as_secs_f64();
        *last = Instant::now();
        self.physics(dt, out)?;
        Ok((0..self.nodes.len())
            .map(|h| observe::sample(self.api(h)))
            .collect())
    }

    fn go(&mut self, out: &Path, t_start: Instant, started_s: f64) -> anyhow::Result<Tally> {
        let t_up = t_start;
        let mut answered: Option<f64> = None;
        let mut last = Instant::now();
        // Up: every API answers and the mesh has formed (60 s at most).
        loop {
            std::thread::sleep(Duration::from_millis(1000));
            let samples = self.tick(&mut last, out)?;
            if answered.is_none() && samples.iter().all(|s| s.up) {
                answered = Some(t_up.elapsed().as_secs_f64());
            }
            self.history.at = vec![samples];
            let running = |n: &str| self.running(n);
            if self
                .history
                .check(&scenario::Check::Converged, &running)
                .is_ok()
            {
                break;
            }
            if STOP.load(Ordering::SeqCst) {
                bail!("interrupted");
            }
            if t_up.elapsed() > Duration::from_secs(60) {
                let why = self
                    .history
                    .check(&scenario::Check::Converged, &running)
                    .err()
                    .unwrap_or_default();
                bail!("the mesh did not form within 60 s: {why}");
            }
        }
        let pids: Vec<u32> = self
            .nodes
            .iter()
            .filter_map(|n| engine::state(n).ok())
            .map(|st| st.pid)
            .collect();
        let memory: u64 = pids.iter().filter_map(|p| engine::memory_bytes(*p)).sum();
        let rss: u64 = pids.iter().filter_map(|p| engine::rss_bytes(*p)).sum();
        let line = format!(
            "{} containers started in {started_s:.1} s (compose up); every API answered {:.1} s and the mesh converged {:.1} s after compose up began; memory {:.0} MiB in all ({:.1} MiB a container by cgroup memory.usage_in_bytes; the agent's own RSS {:.1} MiB each, shared text included)",
            self.nodes.len(),
            answered.unwrap_or(f64::NAN),
            t_up.elapsed().as_secs_f64(),
            memory as f64 / 1048576.0,
            memory as f64 / 1048576.0 / self.nodes.len() as f64,
            rss as f64 / 1048576.0 / pids.len().max(1) as f64,
        );
        println!("testbed: {line}");
        self.notes.push(line);
        let ui = format!(
            "the rack heat map, live while the run lasts (every agent serves it): http://{}/ui",
            self.api(0)
        );
        println!("testbed: {ui}");
        self.notes.push(ui);
        self.history.at.clear();
        let t0 = Instant::now();
        let (mut fi, mut ci) = (0, 0);
        for t in 0..=self.s.duration_s {
            let due = t0 + Duration::from_secs(t);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let samples = self.tick(&mut last, out)?;
            self.history.at.push(samples);
            while fi < self.s.faults.len() && self.s.faults[fi].0 <= t {
                let f = self.s.faults[fi].1.clone();
                let shown = format!("{f:?}");
                if let Err(e) = self.apply(&f) {
                    self.outcomes.push(Outcome {
                        at_s: t,
                        what: format!("fault {shown}"),
                        result: Err(e.to_string()),
                    });
                }
                self.faults_done.push((t, shown));
                fi += 1;
            }
            while ci < self.s.checks.len() && self.s.checks[ci].0 <= t {
                let c = &self.s.checks[ci].1;
                let running = |n: &str| self.running(n);
                let result = self.history.check(c, &running);
                self.outcomes.push(Outcome {
                    at_s: t,
                    what: format!("{c:?}"),
                    result,
                });
                ci += 1;
            }
            self.table(t);
            if STOP.load(Ordering::SeqCst) {
                self.outcomes.push(Outcome {
                    at_s: t,
                    what: "run".into(),
                    result: Err("interrupted".into()),
                });
                break;
            }
        }
        self.finish(out)
    }

    /// The checks every scenario ends with, then the report.
    fn finish(&mut self, out: &Path) -> anyhow::Result<Tally> {
        let t = self.history.at.len().saturating_sub(1) as u64;
        let mut crashed = Vec::new();
        for (h, n) in self.nodes.iter().enumerate() {
            let up = self
                .history
                .at
                .last()
                .and_then(|r| r.get(h))
                .is_some_and(|s| s.up);
            let alive = up && self.running(n);
            if !self.killed[h] && !alive {
                crashed.push(n.clone());
            }
        }
        let result = if crashed.is_empty() {
            Ok(format!(
                "every agent not killed by the scenario runs and answers ({})",
                self.nodes.len()
            ))
        } else {
            Err(format!(
                "not running or not answering: {}",
                crashed.join(", ")
            ))
        };
        self.outcomes.push(Outcome {
            at_s: t,
            what: "nothing crashed".into(),
            result,
        });
        let planned: Vec<String> = self.s.guests.iter().map(|g| g.name.clone()).collect();
        if !planned.is_empty() && self.killed.iter().all(|k| !k) {
            let result = self.history.guests_conserved(&planned);
            self.outcomes.push(Outcome {
                at_s: t,
                what: "no guest lost or duplicated".into(),
                result,
            });
        }
        let title = format!("{} ({} agents)", self.s.name, self.nodes.len());
        let mut notes = self.notes.clone();
        notes.extend(self.effects());
        let files = report::write(
            out,
            &title,
            &self.history,
            &self.faults_done,
            &notes,
            &self.outcomes,
        )?;
        println!("\ntestbed: {title}");
        for n in &notes {
            println!("  {n}");
        }
        for o in &self.outcomes {
            match &o.result {
                Ok(d) => println!("  {:>4} s  pass  {}: {d}", o.at_s, o.what),
                Err(d) => println!("  {:>4} s  FAIL  {}: {d}", o.at_s, o.what),
            }
        }
        for f in files {
            println!("  wrote {}", f.display());
        }
        Ok(Tally {
            total: self.outcomes.len(),
            failed: self.outcomes.iter().filter(|o| o.result.is_err()).count(),
        })
    }

    /// The live view: slot, temperature, price, guests and status; redrawn
    /// in place on a terminal, every 10 s otherwise.
    fn table(&self, t: u64) {
        let tty = std::io::stdout().is_terminal();
        if !tty && !t.is_multiple_of(10) {
            return;
        }
        let Some(row) = self.history.at.last() else {
            return;
        };
        let mut text = String::new();
        if tty {
            text.push_str("\x1b[H\x1b[2J");
        }
        text.push_str(&format!(
            "{} t = {t} / {} s\n{:<6} {:>8} {:>7} {:>7}  {}\n",
            self.s.name, self.s.duration_s, "node", "temp °C", "price", "guests", "status"
        ));
        for (h, n) in self.nodes.iter().enumerate() {
            let s = &row[h];
            let status = if self.killed[h] {
                "killed".to_string()
            } else if !s.up {
                "no answer".to_string()
            } else {
                let dead = s
                    .view
                    .values()
                    .filter(|v| **v != maxwell_gossip::MemberStatus::Alive)
                    .count();
                if dead == 0 {
                    "ok".into()
                } else {
                    format!("{dead} peers down in its view")
                }
            };
            let temp = s.temp_c.map_or("-".into(), |c| format!("{c:.1}"));
            let price = s.price_milli.map_or("-".into(), |p| p.to_string());
            text.push_str(&format!(
                "{n:<6} {temp:>8} {price:>7} {:>7}  {status}   (model {:.1} °C, {:.0} W)\n",
                s.running,
                self.rack.die_c(h),
                self.rack.power_w(h)
            ));
        }
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(text.as_bytes());
        let _ = stdout.flush();
    }
}
