//! `maxwell bench dashboard`: what an open dashboard costs the agent that
//! serves it. N agents (24 by default, racks of 6) at their default config
//! on emulated sensors; agent 0's CPU (utime + stime from `/proc`) over a
//! window without the page, then over the same window with `/ui` open in a
//! headless Chromium, and the page's own count of the requests and bytes it
//! fetched (Resource Timing, headers included).

use anyhow::{bail, Context};
use clap::Args;
use maxwell_supervise::browser::{self, Browser};
use maxwell_supervise::Procs;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// `maxwell bench dashboard`.
#[derive(Debug, Args)]
pub struct DashboardBenchArgs {
    /// Agents in the mesh (2 to 50).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u16).range(2..=50))]
    pub agents: u16,
    /// Length of each window, s.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(5..=600))]
    pub seconds: u64,
}

const PER_RACK: u16 = 6;
const T: Duration = Duration::from_secs(60);

/// CPU seconds used so far by process `pid`.
fn cpu_s(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) start after ") ".
    let rest = stat.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let (utime, stime) = (f.get(11).copied(), f.get(12).copied());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    match (utime, stime) {
        (Some(u), Some(s)) => Ok((u + s) as f64 / hz),
        _ => bail!("/proc/{pid}/stat has no CPU times"),
    }
}

/// Runs the benchmark and prints its table.
pub fn run(args: &DashboardBenchArgs) -> anyhow::Result<()> {
    let found = browser::find()?;
    let exe = std::env::current_exe().context("locating the maxwell binary")?;
    let mut procs = Procs::new("maxwell-bench-dashboard")?;
    let dir = procs.dir().to_path_buf();
    let key = maxwell_node::mesh::keys::create(&dir)?;
    eprintln!("dashboard bench: starting {} agents ...", args.agents);
    let mut seed = None;
    let mut waits = Vec::new();
    for k in 0..args.agents {
        let (rack, slot) = (k / PER_RACK + 1, k % PER_RACK + 1);
        let cfg = dir.join(format!("node{k}.toml"));
        let seeds = seed.map_or(String::new(), |s| format!("\"{s}\""));
        std::fs::write(
            &cfg,
            format!(
                "name = \"r{rack}-u{slot:02}\"\nrack = \"r{rack}\"\nslot = {slot}\n\
                 [sensors]\nsource = \"emulated\"\n\
                 [gossip]\ncluster_key_file = \"{}\"\nseeds = [{seeds}]\n",
                key.display()
            ),
        )?;
        let data = dir.join(format!("node{k}"));
        let i = procs.spawn_agent(
            &format!("node{k}"),
            &exe,
            &[
                OsStr::new("--log-level"),
                OsStr::new("warn"),
                OsStr::new("--config"),
                cfg.as_os_str(),
            ],
            &data,
        )?;
        if k == 0 {
            seed = Some(procs.wait_agent(i, &data, T)?.gossip);
        }
        waits.push((i, data));
    }
    let mut served = Vec::new();
    for (i, data) in &waits {
        served.push(procs.wait_agent(*i, data, T)?);
    }
    let (addr, pid) = (served[0].http, served[0].pid);
    // Every agent a member of agent 0's view before anything is measured.
    let t0 = Instant::now();
    loop {
        let m: maxwell_node::http::Members =
            maxwell_node::client::get_json(addr, "/v1/members", Duration::from_secs(5))?;
        if m.members.iter().filter(|r| r.counts).count() == usize::from(args.agents) {
            break;
        }
        if t0.elapsed() > T {
            bail!("the mesh did not converge within {T:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let window = Duration::from_secs(args.seconds);
    eprintln!("dashboard bench: {} s without the page ...", args.seconds);
    let (c0, w0) = (cpu_s(pid)?, Instant::now());
    std::thread::sleep(window);
    let idle = (cpu_s(pid)? - c0) / w0.elapsed().as_secs_f64();

    eprintln!(
        "dashboard bench: {} s with /ui open in Chromium ...",
        args.seconds
    );
    let profile = dir.join("profile");
    let b = Browser::start((&found.0, &found.1), &profile, (1440, 1000))?;
    b.goto(&format!("http://{addr}/ui"))?;
    let shown = "return document.querySelectorAll('#rack-grid .host').length";
    let t0 = Instant::now();
    while b.js(shown)?.as_u64() != Some(u64::from(args.agents)) {
        if t0.elapsed() > T {
            bail!("the page did not show {} hosts within {T:?}", args.agents);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past the first loads (the page, the whole history); then one window.
    std::thread::sleep(Duration::from_secs(3));
    let mark = b.js("return performance.now()")?.as_f64().unwrap_or(0.0);
    let (c0, w0) = (cpu_s(pid)?, Instant::now());
    std::thread::sleep(window);
    let open = (cpu_s(pid)? - c0) / w0.elapsed().as_secs_f64();
    let wall = w0.elapsed().as_secs_f64();
    let fetched = b.js(&format!(
        "const e = performance.getEntriesByType('resource').filter(r => r.startTime >= {mark});
         const by = {{}};
         for (const r of e) {{ const k = new URL(r.name).pathname.replace(/\\/v1\\/history\\/.*/, '/v1/history/ID');
           by[k] = by[k] || [0, 0]; by[k][0] += 1; by[k][1] += r.transferSize; }}
         return {{n: e.length, bytes: e.reduce((a, r) => a + r.transferSize, 0), by}};"
    ))?;
    drop(b);
    procs.stop_all(libc::SIGTERM, Duration::from_secs(10));

    let n = fetched["n"].as_f64().unwrap_or(0.0);
    let bytes = fetched["bytes"].as_f64().unwrap_or(0.0);
    let cycles = wall; // the page refreshes once a second
    let mut out = String::new();
    let _ = writeln!(
        out,
        "dashboard: /ui open on agent 0 of {} (default config, emulated sensors), {:.0} s windows",
        args.agents, wall
    );
    let _ = writeln!(
        out,
        "agent 0 CPU, page closed   {:.2} % of one core",
        idle * 100.0
    );
    let _ = writeln!(
        out,
        "agent 0 CPU, page open     {:.2} % of one core",
        open * 100.0
    );
    let _ = writeln!(
        out,
        "the page's cost            {:+.2} % of one core",
        (open - idle) * 100.0
    );
    let _ = writeln!(out, "requests                   {:.1} /s", n / wall);
    let _ = writeln!(
        out,
        "bytes fetched              {:.0} B/s ({:.0} B per update, once a second)",
        bytes / wall,
        bytes / cycles
    );
    if let Some(by) = fetched["by"].as_object() {
        for (path, v) in by {
            let (k, b) = (v[0].as_f64().unwrap_or(0.0), v[1].as_f64().unwrap_or(0.0));
            let _ = writeln!(
                out,
                "  {path:<24} {:.1} /s, {:.0} B each",
                k / wall,
                b / k.max(1.0)
            );
        }
    }
    print!("{out}");
    Ok(())
}
