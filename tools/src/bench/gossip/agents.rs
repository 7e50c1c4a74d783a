//! Our side on loopback: `n` real `maxwell agent` processes (this binary)
//! at the default config (the LAN preset, the default sensor period), each
//! reading a tiny hwmon fixture of its own, gossiping over UDP on 127.0.0.1
//! with the first three as seeds, sealed with one cluster key. Figures come
//! from their HTTP API, exactly as an operator would see them, timed from
//! what the operator does: the sysfs write, the signal.

use super::{LiveResult, POLL, TRIALS};
use crate::bench::timing::{quantile, Waited};
use anyhow::Context;
use maxwell_gossip::{KeyedNodeId, MemberStatus, MilliCelsius, NodeId};
use maxwell_node::client;
use maxwell_node::http::{MemberRow, Members, Status};
use maxwell_supervise::Procs;
use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The temperature the changed agent reads in the first trial (+1 m°C a trial).
const MARK: MilliCelsius = MilliCelsius(87_654);

/// Our agents under test.
struct Mesh {
    procs: Procs,
    addrs: Vec<SocketAddr>,
    dirs: Vec<PathBuf>,
    ids: Vec<NodeId>,
}

/// Starts `n` agents, measures, stops them.
pub fn run(n: usize, timeout: Duration, steady: Duration) -> anyhow::Result<LiveResult> {
    anyhow::ensure!(n >= 4, "the loopback run needs at least 4 agents (got {n})");
    let mut mesh = start(n)?;
    let all = |m: &Members| m.members.iter().filter(|r| r.counts).count() == n;
    let join = quantile(&watch(&mesh.addrs, Instant::now(), timeout, all), 1.0);
    let bytes_per_node_s = steady_bytes(&mesh.addrs, steady);
    let busy = busy_bytes(&mesh, steady)?;
    let mut change = Vec::new();
    let mut price = Vec::new();
    for t in 0..TRIALS.min(n - 1) {
        // Alternately hot and back to normal: every write is a change.
        let mark = if t % 2 == 0 {
            MilliCelsius(MARK.0 + i64::try_from(t)?)
        } else {
            MilliCelsius(40_000)
        };
        let (seen, moved) = heat_change(&mesh, n - 1 - t / 2, mark, timeout)?;
        change.push(seen);
        price.push(moved);
    }
    let (victims, leaver) = (super::victims(n), n - 3);
    let mut dead = Vec::new();
    for (k, &victim) in victims.iter().enumerate() {
        let gone = &victims[..k];
        dead.push(stop_one(
            &mut mesh,
            victim,
            libc::SIGKILL,
            "dead",
            gone,
            timeout,
        ));
    }
    let left = stop_one(&mut mesh, leaver, libc::SIGTERM, "left", &victims, timeout);
    Ok(LiveResult {
        n,
        join,
        change,
        dead,
        left,
        bytes_per_node_s,
        price,
        busy,
    })
}

/// Sends `signal` to agent `k`; times until every agent but `k` and
/// `gone` lists it with `status`; reaps it.
fn stop_one(
    mesh: &mut Mesh,
    k: usize,
    signal: i32,
    status: &str,
    gone: &[usize],
    timeout: Duration,
) -> Waited {
    let others: Vec<SocketAddr> = (0..mesh.addrs.len())
        .filter(|i| *i != k && !gone.contains(i))
        .map(|i| mesh.addrs[i])
        .collect();
    let t0 = Instant::now();
    mesh.procs.signal(k, signal);
    let id = mesh.ids[k];
    let seen = watch(&others, t0, timeout, |m| {
        row(m, id).is_some_and(|r| r.status.as_str() == status)
    });
    // A leaving agent lingers three rounds, then exits by itself.
    mesh.procs.reap(k, Duration::from_secs(5));
    quantile(&seen, 1.0)
}

/// Rewrites the origin's sensor file; times, from the write, until every
/// other agent shows the new reading, and until the origin's slot
/// neighbour quotes another price.
fn heat_change(
    mesh: &Mesh,
    origin: usize,
    mark: MilliCelsius,
    timeout: Duration,
) -> anyhow::Result<(Waited, Waited)> {
    let neighbour = if origin == 0 { 1 } else { origin - 1 };
    let before = price_of(mesh.addrs[neighbour]);
    set_temp(&mesh.dirs[origin], mark)?;
    let written = Instant::now();
    let id = mesh.ids[origin];
    let shows = |m: &Members| {
        row(m, id).is_some_and(|r| {
            r.status == MemberStatus::Alive && r.hottest_millicelsius == Some(mark)
        })
    };
    let others: Vec<SocketAddr> = mesh
        .addrs
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != origin)
        .map(|(_, a)| *a)
        .collect();
    let (seen, moved) = std::thread::scope(|s| {
        let moved = s.spawn(|| loop {
            if price_of(mesh.addrs[neighbour]) != before {
                return Some(written.elapsed());
            }
            if written.elapsed() >= timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        });
        let seen = quantile(&watch(&others, written, timeout, shows), 1.0);
        let moved = moved.join().ok().flatten();
        (seen, moved)
    });
    let moved = match moved {
        Some(t) => Waited::Done(t),
        None => Waited::Timeout { seen: 0, of: 1 },
    };
    Ok((seen, moved))
}

/// An agent's price now, thousandths.
fn price_of(addr: SocketAddr) -> Option<u64> {
    client::get_json::<Status>(addr, "/v1/status", Duration::from_secs(1))
        .ok()
        .and_then(|s| s.price)
        .map(|q| q.price_milli)
}

fn start(n: usize) -> anyhow::Result<Mesh> {
    let exe = std::env::current_exe().context("locating the maxwell binary")?;
    let mut procs = Procs::new("maxwell-bench-agents")?;
    let key = maxwell_node::mesh::keys::create(procs.dir())?;
    let mut seeds: Vec<SocketAddr> = Vec::new();
    let mut dirs = Vec::new();
    for k in 0..n {
        let dir = procs.dir().join(format!("agent{k}"));
        write_fixture(&dir, MilliCelsius(40_000 + 100 * i64::try_from(k)?))?;
        let args = agent_args(k, &dir, &seeds, &key);
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let data = dir.join("data");
        let i = procs.spawn_agent(&format!("agent{k}"), &exe, &args, &data)?;
        // The first three are the seeds: the others need their gossip ports.
        if k < 3 {
            seeds.push(procs.wait_agent(i, &data, START_TIMEOUT)?.gossip);
        }
        dirs.push(dir);
    }
    let mut addrs = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        addrs.push(procs.wait_agent(i, &dir.join("data"), START_TIMEOUT)?.http);
    }
    let ids = node_ids(&addrs)?;
    Ok(Mesh {
        procs,
        addrs,
        dirs,
        ids,
    })
}

/// How long an agent may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `maxwell agent` flags of agent `k`: sysfs fixture in `dir`, `seeds`, the
/// cluster `key`, every other field at its default; its ports are the
/// kernel's choice.
fn agent_args(k: usize, dir: &Path, seeds: &[SocketAddr], key: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--log-level".into(),
        "warn".into(),
        "--name".into(),
        format!("bench-{k}").into(),
        "--rack".into(),
        "bench".into(),
        "--slot".into(),
        k.to_string().into(),
        "--sensors".into(),
        "sysfs".into(),
        "--hwmon-root".into(),
        dir.join("hwmon").into(),
        "--powercap-root".into(),
        dir.join("powercap").into(),
        "--set".into(),
        format!("gossip.cluster_key_file={}", key.display()).into(),
    ];
    for seed in seeds {
        args.push("--seed".into());
        args.push(seed.to_string().into());
    }
    args
}

/// Every agent's node id, from its API.
fn node_ids(addrs: &[SocketAddr]) -> anyhow::Result<Vec<NodeId>> {
    addrs
        .iter()
        .map(|addr| {
            client::get_json::<Status>(*addr, "/v1/status", Duration::from_secs(2))
                .map(|s| s.node.id)
                .with_context(|| format!("asking the agent on {addr} for its id"))
        })
        .collect()
}

/// Polls every agent's members (one thread each, every [`POLL`]) and
/// records, per agent, when `pred` first held, measured from `start`.
fn watch(
    addrs: &[SocketAddr],
    start: Instant,
    timeout: Duration,
    pred: impl Fn(&Members) -> bool + Sync,
) -> Vec<Option<Duration>> {
    let pred = &pred;
    std::thread::scope(|s| {
        let handles: Vec<_> = addrs
            .iter()
            .map(|&addr| {
                s.spawn(move || loop {
                    let members =
                        client::get_json::<Members>(addr, "/v1/members", Duration::from_secs(1));
                    if members.is_ok_and(|m| pred(&m)) {
                        return Some(start.elapsed());
                    }
                    if start.elapsed() >= timeout {
                        return None;
                    }
                    std::thread::sleep(POLL);
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().ok().flatten())
            .collect()
    })
}

fn row(m: &Members, id: NodeId) -> Option<&MemberRow> {
    m.members.iter().find(|r| r.id == id && !r.is_self)
}

/// Gossip bytes sent per agent per second while every agent's temperature
/// changes by a degree each second, over `window`; and the floor: n times a
/// signed report's bytes per second (each report must reach each agent).
fn busy_bytes(mesh: &Mesh, window: Duration) -> anyhow::Result<Option<(f64, f64)>> {
    let total = || -> Option<f64> { mesh.addrs.iter().map(|a| bytes_out(*a)).sum() };
    let Some(before) = total() else {
        return Ok(None);
    };
    let t0 = Instant::now();
    let mut second = 0i64;
    while t0.elapsed() < window {
        second += 1;
        for (k, dir) in mesh.dirs.iter().enumerate() {
            set_temp(
                dir,
                MilliCelsius(45_000 + 100 * i64::try_from(k)? + 1_000 * (second % 2)),
            )?;
        }
        let next = Duration::from_secs(u64::try_from(second)?);
        std::thread::sleep(next.saturating_sub(t0.elapsed()));
    }
    let Some(after) = total() else {
        return Ok(None);
    };
    #[allow(clippy::cast_precision_loss)]
    let n = mesh.addrs.len() as f64;
    let per_node = (after - before) / n / t0.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let floor = n * report_bytes(mesh.addrs.len()) as f64;
    Ok(Some((per_node, floor)))
}

/// The bytes of one agent's signed report, as the bench's agents sign it.
fn report_bytes(k: usize) -> usize {
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let report = maxwell_gossip::HeatReport {
        node_id: maxwell_gossip::NodeId::from_verifying_key(&key.verifying_key()),
        name: format!("bench-{k}"),
        generation: maxwell_node::clock::unix_ms(),
        seq: 1_000,
        timestamp_ms: maxwell_node::clock::unix_ms(),
        position: maxwell_gossip::Position::new("bench", u16::try_from(k).unwrap_or(0)),
        hottest: MilliCelsius(45_000),
        critical: MilliCelsius(100_000),
        power_draw: maxwell_gossip::MicroWatts(0),
        power_cap: maxwell_gossip::MicroWatts(0),
        headroom: maxwell_gossip::MicroWatts(0),
        price_milli: 1_250,
        source: maxwell_gossip::SensorSource::Sysfs,
        room: Default::default(),
        api: None,
        p2p: None,
    };
    maxwell_gossip::SignedRecord::sign(&report, &key).map_or(0, |s| s.to_bytes().len())
}

/// Gossip payload bytes sent per agent per second over `window`, from `/metrics`.
fn steady_bytes(addrs: &[SocketAddr], window: Duration) -> Option<f64> {
    let total = || -> Option<f64> { addrs.iter().map(|a| bytes_out(*a)).sum() };
    let before = total()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let after = total()?;
    #[allow(clippy::cast_precision_loss)]
    let per_node = (after - before) / addrs.len() as f64;
    Some(per_node / t0.elapsed().as_secs_f64())
}

fn bytes_out(addr: SocketAddr) -> Option<f64> {
    let text = client::get(addr, "/metrics", Duration::from_secs(2)).ok()?;
    text.lines()
        .find(|l| l.starts_with("maxwell_gossip_bytes_total{direction=\"out\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// `<dir>/hwmon/hwmon0`: one coretemp package sensor at `temp`, limit 100 °C
/// (and `<dir>/data`).
pub(crate) fn write_fixture(dir: &Path, temp: MilliCelsius) -> anyhow::Result<()> {
    let chip = dir.join("hwmon/hwmon0");
    std::fs::create_dir_all(&chip)?;
    std::fs::create_dir_all(dir.join("data"))?;
    std::fs::write(chip.join("name"), "coretemp\n")?;
    std::fs::write(chip.join("temp1_label"), "Package id 0\n")?;
    std::fs::write(chip.join("temp1_crit"), "100000\n")?;
    set_temp(dir, temp)
}

/// Replaces `temp1_input` atomically (a reader never sees a half-written file).
fn set_temp(dir: &Path, temp: MilliCelsius) -> anyhow::Result<()> {
    let tmp = dir.join("temp1_input.tmp");
    std::fs::write(&tmp, format!("{}\n", temp.0))?;
    std::fs::rename(&tmp, dir.join("hwmon/hwmon0/temp1_input"))?;
    Ok(())
}
