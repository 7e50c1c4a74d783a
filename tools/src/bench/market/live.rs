//! A live agent at its default config on fixture sensors, with real
//! guests (KVM where it works, else processes).

use anyhow::{anyhow, Context};
use maxwell_node::client::{read_token, Api};
use maxwell_node::http::guests::{GuestList, GuestRow};
use maxwell_supervise::Procs;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn set_temp(dir: &Path, milli: i64) -> anyhow::Result<()> {
    let chip = dir.join("hwmon/hwmon0");
    std::fs::create_dir_all(&chip)?;
    std::fs::write(chip.join("name"), "coretemp\n")?;
    std::fs::write(chip.join("temp1_crit"), "100000\n")?;
    let tmp = chip.join("temp1_input.tmp");
    std::fs::write(&tmp, format!("{milli}\n"))?;
    std::fs::rename(&tmp, chip.join("temp1_input"))?;
    Ok(())
}

struct Live {
    procs: Procs,
    api: Api,
    dir: std::path::PathBuf,
}

/// An agent on a fixture tree at 45 °C; every field at its default but
/// admission (`guests.cpu_fraction`, so that `vcpus` guests fit).
fn agent(name: &str, vcpus: usize) -> anyhow::Result<Live> {
    let exe = std::env::current_exe().context("locating the maxwell binary")?;
    let mut procs = Procs::new(name)?;
    let dir = procs.dir().to_path_buf();
    set_temp(&dir, 45_000)?;
    let data = dir.join("data");
    let fraction = format!("guests.cpu_fraction={}", vcpus.max(4));
    let (hwmon, powercap) = (dir.join("hwmon"), dir.join("powercap"));
    let args: Vec<&OsStr> = [
        OsStr::new("--log-level"),
        OsStr::new("warn"),
        OsStr::new("--sensors"),
        OsStr::new("sysfs"),
        OsStr::new("--hwmon-root"),
        hwmon.as_os_str(),
        OsStr::new("--powercap-root"),
        powercap.as_os_str(),
        OsStr::new("--set"),
        OsStr::new(&fraction),
    ]
    .to_vec();
    let i = procs.spawn_agent(name, &exe, &args, &data)?;
    let addr = procs.wait_agent(i, &data, T)?.http;
    let api = Api {
        addr,
        token: read_token(None, &data)?,
    };
    Ok(Live { procs, api, dir })
}

fn list(api: &Api) -> anyhow::Result<GuestList> {
    Ok(serde_json::from_str(&api.get("/v1/guests", T)?)?)
}

fn start(api: &Api, name: &str, bid: u64, wallet: u64, payload: &str) -> anyhow::Result<u64> {
    let spec = serde_json::json!({
        "name": name, "kind": "workload", "vcpus": 1, "memory_mib": 16, "payload": payload,
        "bid_milli": bid, "wallet_milli": wallet,
    });
    let row: GuestRow = serde_json::from_str(&api.post("/v1/guests", &spec.to_string(), T)?)?;
    Ok(row.id)
}

fn metric(api: &Api, name: &str) -> anyhow::Result<f64> {
    let text = api.get("/metrics", T)?;
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .ok_or_else(|| anyhow!("no {name} in /metrics"))
}

/// The market's CPU on a live agent with `n` guests.
pub fn overhead(n: usize, seconds: u64) -> anyhow::Result<String> {
    eprintln!("live agent: starting {n} guests ...");
    let mut live = agent("maxwell-bench-market", n)?;
    let mut ids = Vec::new();
    for k in 0..n {
        ids.push(start(
            &live.api,
            &format!("m{k}"),
            500 + (k as u64 * 97) % 5_000,
            1_000_000_000,
            "count",
        )?);
    }
    std::thread::sleep(Duration::from_secs(5));
    let name = "maxwell_market_cpu_seconds";
    let (c0, t0) = (metric(&live.api, name)?, Instant::now());
    eprintln!("live agent: sampling the market's CPU for {seconds} s ...");
    std::thread::sleep(Duration::from_secs(seconds));
    let (c1, wall) = (metric(&live.api, name)?, t0.elapsed().as_secs_f64());
    let l = list(&live.api)?;
    let in_market = l.guests.iter().filter(|g| g.market.is_some()).count();
    let backend = l.backend;
    live.procs.stop_all(libc::SIGTERM, Duration::from_secs(20));
    let share = (c1 - c0) / wall * 100.0;
    let mut out = String::new();
    let _ = writeln!(out, "market on a live agent (default config, {backend} backend, {in_market} guests in the market, {wall:.0} s)");
    let _ = writeln!(
        out,
        "market CPU          {:.4} % of one core   (goal ≤ 0.1 %)",
        share
    );
    let _ = writeln!(
        out,
        "per tick            {:.1} µs (1 tick/s)",
        (c1 - c0) / wall * 1e6
    );
    Ok(out)
}

fn until(
    api: &Api,
    what: &str,
    limit: Duration,
    pred: impl Fn(&GuestList) -> bool,
) -> anyhow::Result<Option<Duration>> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if pred(&list(api)?) {
            return Ok(Some(t0.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("timeline: {what}: timeout");
    Ok(None)
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("timeout".into(), |d| format!("{:.2} s", d.as_secs_f64()))
}

/// Heat at t: share cut, pause, kill; cool: resume.
pub fn timeline() -> anyhow::Result<String> {
    eprintln!("timeline: three guests on a fresh agent ...");
    let mut live = agent("maxwell-bench-market-timeline", 3)?;
    std::thread::sleep(Duration::from_secs(3));
    let cool = list(&live.api)?
        .market
        .ok_or_else(|| anyhow!("no market on the agent"))?
        .price_milli;
    let high = start(&live.api, "high", 20_000, 100_000_000, "hash")?;
    let low = start(&live.api, "low", cool * 3 / 2, 100_000_000, "hash")?;
    let poor = start(&live.api, "poor", 20_000, cool * 3, "hash")?;
    std::thread::sleep(Duration::from_secs(3));
    let share_cool = list(&live.api)?.account(low).map_or(0, |a| a.share_mcores);
    let state = |l: &GuestList, vm| l.account(vm).map(|a| a.state).unwrap_or_default();
    let t0 = Instant::now();
    set_temp(&live.dir, 96_000)?;
    let cut = until(&live.api, "share cut", T, |l| {
        l.account(low)
            .is_some_and(|a| a.share_mcores < share_cool || a.state == "paused")
    })?;
    let paused =
        until(&live.api, "paused", T, |l| state(l, low) == "paused")?.map(|_| t0.elapsed());
    let killed = until(&live.api, "killed", Duration::from_secs(60), |l| {
        state(l, poor) == "killed (rent)"
    })?
    .map(|_| t0.elapsed());
    let high_state = state(&list(&live.api)?, high);
    let t1 = Instant::now();
    set_temp(&live.dir, 45_000)?;
    let resumed = until(&live.api, "resumed", Duration::from_secs(60), |l| {
        matches!(state(l, low).as_str(), "running" | "capped")
    })?
    .map(|_| t1.elapsed());
    live.procs.stop_all(libc::SIGTERM, Duration::from_secs(20));
    let mut out = String::from("timeline (default config: 1 s market tick, 10 s grace; the fixture's temp1_input rewritten at 0)\n");
    let _ = writeln!(out, "heated 45 → 96 °C at 0");
    let _ = writeln!(out, "low bidder's share cut     {}", secs(cut));
    let _ = writeln!(out, "low bidder paused          {}", secs(paused));
    let _ = writeln!(out, "poor guest killed (rent)   {}", secs(killed));
    let _ = writeln!(out, "high bidder                {high_state}");
    let _ = writeln!(
        out,
        "cooled 96 → 45 °C, low bidder resumed after {}",
        secs(resumed)
    );
    Ok(out)
}

/// Energy per guest on the emulated host, whose power is known:
/// `P = idle + (peak − idle)·u`. With the idle part split by reserved
/// share, a guest's truth over a window is `idle·vcpus/cores·Δt + (peak −
/// idle)·Δcpu/cores`; the market's attribution is compared with it.
pub fn energy(seconds: u64) -> anyhow::Result<String> {
    eprintln!("energy: two guests on the emulated host for {seconds} s ...");
    let exe = std::env::current_exe().context("locating the maxwell binary")?;
    let mut procs = Procs::new("maxwell-bench-market-energy")?;
    let data = procs.dir().join("data");
    let (idle, peak) = (100.0, 350.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let sets = [
        format!("emulated.idle_w={idle}"),
        format!("emulated.peak_w={peak}"),
        format!("market.idle_watts={idle}"),
    ];
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("--log-level"),
        OsStr::new("warn"),
        OsStr::new("--sensors"),
        OsStr::new("emulated"),
    ];
    for s in &sets {
        args.push(OsStr::new("--set"));
        args.push(OsStr::new(s));
    }
    let i = procs.spawn_agent("energy", &exe, &args, &data)?;
    let addr = procs.wait_agent(i, &data, T)?.http;
    let api = Api {
        addr,
        token: read_token(None, &data)?,
    };
    let mut ids = Vec::new();
    for (k, max_cpu) in [0.25, 0.75].iter().enumerate() {
        let spec = serde_json::json!({
            "name": format!("e{k}"), "kind": "workload", "vcpus": 1, "memory_mib": 16, "payload": "hash",
            "bid_milli": 20_000, "wallet_milli": 1_000_000_000u64, "max_cpu": max_cpu,
        });
        let row: GuestRow = serde_json::from_str(&api.post("/v1/guests", &spec.to_string(), T)?)?;
        ids.push(row.id);
    }
    std::thread::sleep(Duration::from_secs(5));
    let read = |api: &Api| -> anyhow::Result<(u64, Vec<(f64, u64)>)> {
        let l = list(api)?;
        let at = l
            .market
            .as_ref()
            .and_then(|m| m.at_ms)
            .ok_or_else(|| anyhow!("no tick yet"))?;
        let rows = ids
            .iter()
            .map(|&id| l.account(id).map_or((0.0, 0), |a| (a.joules, a.cpu_ms)))
            .collect();
        Ok((at, rows))
    };
    let (t0, a) = read(&api)?;
    std::thread::sleep(Duration::from_secs(seconds));
    let (t1, b) = read(&api)?;
    procs.stop_all(libc::SIGTERM, Duration::from_secs(20));
    let dt = (t1 - t0) as f64 / 1000.0;
    let mut out = format!(
        "energy per guest on the emulated host (idle {idle} W, peak {peak} W, {cores} cores, {dt:.0} s; truth = idle·vcpus/cores·Δt + (peak − idle)·Δcpu/cores)\n\
         guest  max_cpu  CPU used   attributed   truth      attributed/truth\n"
    );
    for (k, ((ja, ca), (jb, cb))) in a.iter().zip(&b).enumerate() {
        let cpu = (cb - ca) as f64 / 1000.0;
        let truth = idle / cores * dt + (peak - idle) * cpu / cores;
        let got = jb - ja;
        let _ = writeln!(
            out,
            "e{k}     {:.2}     {cpu:6.1} s   {got:8.0} J   {truth:8.0} J  {:.3}",
            [0.25, 0.75][k],
            got / truth
        );
    }
    Ok(out)
}
