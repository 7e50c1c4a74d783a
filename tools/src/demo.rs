//! `maxwell demo`: a local mesh of real agents on loopback with emulated
//! sensors, and a live table of what they report. Each agent is a child
//! process of this binary (`maxwell agent --config ...`) on ports of the
//! kernel's choosing, which it reports back, so the demo runs the same code
//! as a rack host and cannot collide with anything on the machine.

use anyhow::Context;
use clap::Args;
use maxwell_node::client;
use maxwell_node::http::guests::GuestList;
use maxwell_node::http::{Members, Status};
use maxwell_node::render::{opt, Table};
use maxwell_supervise::Procs;
use std::ffi::OsStr;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// `maxwell demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of agents (1 to 50).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub nodes: u16,
    /// Stop after this many seconds [default: run until Ctrl-C].
    #[arg(long)]
    pub duration_s: Option<u64>,
    /// Refresh period of the view, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub refresh_ms: u64,
    /// After this many seconds, heat one node (a cooling failure at its inlet).
    #[arg(long, default_value_t = 10)]
    pub heat_at_s: u64,
    /// The node to heat, counted from 0 [default: 1, the second node of rack 1].
    #[arg(long, default_value_t = 1)]
    pub heat_node: u16,
    /// After this many seconds, submit a guest to the heated node: it lands
    /// on a cool, cheap one [default: 10 s after the heating].
    #[arg(long)]
    pub submit_at_s: Option<u64>,
}

/// Hosts per rack in the demo layout.
const PER_RACK: u16 = 4;

/// How long an agent may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The config of demo node `k`: racks of four, the last node runs hot; all
/// gossip on loopback with node 0 as the seed (`seed`; none for node 0),
/// sealed with the demo's one cluster key (`key`). Ports are the kernel's
/// (the supervisor asks for port 0).
fn node_config(k: u16, n: u16, seed: Option<SocketAddr>, key: &Path) -> String {
    let rack = k / PER_RACK + 1;
    let slot = k % PER_RACK + 1;
    let hot = k + 1 == n && n > 1;
    let inlet = if hot { 32.0 } else { 22.0 + f64::from(slot) };
    let extra = if hot { 0.7 } else { 0.05 * f64::from(k % 3) };
    format!(
        "name = \"r{rack}-u{slot:02}\"\nrack = \"r{rack}\"\nslot = {slot}\n\
         [sensors]\nsource = \"emulated\"\n\
         [emulated]\ninlet_celsius = {inlet}\nextra_load = {extra}\ntime_constant_s = 20\n\
         [gossip]\npreset = \"test\"\ncluster_key_file = \"{key}\"\nseeds = [{seeds}]\n\
         [pricing]\nrelief_gain = 0.9\n",
        seeds = seed.map_or(String::new(), |s| format!("\"{s}\"")),
        key = key.display(),
    )
}

/// Runs the demo until Ctrl-C or `--duration-s`.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the maxwell binary")?;
    let mut procs = Procs::new("maxwell-demo")?;
    let dir = procs.dir().to_path_buf();
    // Node 0 first: its gossip port is everyone else's seed. The rest start
    // together, then each is waited for.
    let mut seed = None;
    let mut data_dirs = Vec::new();
    let key = maxwell_node::mesh::keys::create(&dir)?;
    for k in 0..args.nodes {
        let cfg = dir.join(format!("node{k}.toml"));
        std::fs::write(&cfg, node_config(k, args.nodes, seed, &key))
            .with_context(|| format!("writing {}", cfg.display()))?;
        let data = dir.join(format!("node{k}"));
        let args = [OsStr::new("--config"), cfg.as_os_str()];
        let i = procs.spawn_agent(&format!("node{k}"), &exe, &args, &data)?;
        if k == 0 {
            seed = Some(procs.wait_agent(i, &data, START_TIMEOUT)?.gossip);
        }
        data_dirs.push(data);
    }
    let mut addrs = Vec::new();
    for (i, data) in data_dirs.iter().enumerate() {
        addrs.push(procs.wait_agent(i, data, START_TIMEOUT)?.http);
    }
    let guests_note = {
        let (addrs, dir) = (addrs.clone(), dir.clone());
        tokio::task::spawn_blocking(move || start_guests(&addrs, &dir)).await?
    };
    let started = Instant::now();
    let tty = std::io::stdout().is_terminal();
    let mut event: Option<String> = None;
    let mut placed: Option<String> = None;
    let submit_at = args.submit_at_s.unwrap_or(args.heat_at_s + 10);
    loop {
        if event.is_none() && started.elapsed() >= Duration::from_secs(args.heat_at_s) {
            event = Some(heat(&addrs, &dir, args.heat_node).await);
        }
        if placed.is_none() && started.elapsed() >= Duration::from_secs(submit_at) {
            let (addrs, dir, k) = (addrs.clone(), dir.clone(), args.heat_node);
            placed = Some(tokio::task::spawn_blocking(move || submit(&addrs, &dir, k)).await?);
        }
        let polled = addrs.clone();
        let statuses = tokio::task::spawn_blocking(move || poll(&polled)).await?;
        let mut out = String::new();
        if tty {
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str(&view(&statuses, started.elapsed()));
        out.push_str(&guests_note);
        out.push_str(&format!(
            "\nrack heat map in a browser (any agent serves it): http://{}/ui\n",
            addrs[0]
        ));
        out.push_str(&format!(
            "\nAPI tokens (needed to change an agent): {}/node*/api.token\n",
            dir.display()
        ));
        if let Some(e) = &event {
            out.push_str(e);
        }
        if let Some(p) = &placed {
            out.push_str(p);
        }
        print!("{out}");
        std::io::stdout().flush()?;
        if args
            .duration_s
            .is_some_and(|d| started.elapsed() >= Duration::from_secs(d))
        {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(args.refresh_ms)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("stopping {} agents", procs.len());
    procs.stop_all(libc::SIGTERM, Duration::from_secs(5));
    println!("next: the same agents as a rack of containers, with rack physics and faults (root, Docker): maxwell testbed run testbed/scenarios/cooling-failure.toml  (docs/testbed.md)");
    Ok(())
}

/// Two guests in each agent's market, started through its API: `gold`
/// bids the price ceiling, `spot` 30 % over the node's price now; each
/// takes at most 5 % of a core. Returns a line for the view.
fn start_guests(addrs: &[SocketAddr], dir: &Path) -> String {
    let t = Duration::from_secs(30);
    let mut failed = Vec::new();
    for (k, &addr) in addrs.iter().enumerate() {
        let run = || -> anyhow::Result<()> {
            let token = client::read_token(None, &dir.join(format!("node{k}")))?;
            let api = client::Api { addr, token };
            let status: Status = client::get_json(addr, "/v1/status", t)?;
            let price = status.price.map_or(1_000, |q| q.price_milli);
            for (name, bid) in [("gold", 20_000), ("spot", price * 13 / 10)] {
                let spec = format!(
                    r#"{{"name": "{name}", "kind": "workload", "vcpus": 1, "memory_mib": 8, "payload": "count", "bid_milli": {bid}, "wallet_milli": 100000000, "max_cpu": 0.05}}"#
                );
                api.post("/v1/guests", &spec, t)?;
            }
            Ok(())
        };
        if let Err(e) = run() {
            failed.push(format!("node {k}: {e}"));
        }
    }
    if failed.is_empty() {
        "
Each agent runs two guests in its market: gold bids the price ceiling, spot 30 % over its node's price at start.
         When a node heats, its price passes spot's bid and spot is paused; gold runs on at a smaller share.
         Once it has stayed dear for 3 s it moves its guests, largest first and of equal size the lowest bid (spot), to cool, cheap nodes (shown there as spot<-NODE).
"
            .into()
    } else {
        format!(
            "
guests not started: {}
",
            failed.join("; ")
        )
    }
}

type Polled = (
    SocketAddr,
    Result<(Status, Members, Option<GuestList>), String>,
);

fn poll(addrs: &[SocketAddr]) -> Vec<Polled> {
    let one = |a: SocketAddr| -> Result<(Status, Members, Option<GuestList>), String> {
        let t = Duration::from_secs(2);
        let status = client::get_json(a, "/v1/status", t).map_err(|e| e.to_string())?;
        let members = client::get_json(a, "/v1/members", t).map_err(|e| e.to_string())?;
        let guests = client::get_json(a, "/v1/guests", t).ok();
        Ok((status, members, guests))
    };
    addrs.iter().map(|a| (*a, one(*a))).collect()
}

fn view(statuses: &[Polled], elapsed: Duration) -> String {
    let mut t = Table::new(&[
        "NAME",
        "RACK",
        "SLOT",
        "HTTP",
        "SENSORS",
        "HOTTEST",
        "CRIT",
        "DRAW",
        "CAP",
        "HEADROOM",
        "CPU",
        "PRICE",
        "SEES",
        "GUESTS (share, state)",
    ]);
    for (addr, s) in statuses {
        match s {
            Ok((s, members, guests)) => {
                let sees = members.members.iter().filter(|m| m.counts).count();
                let sum = &s.snapshot.summary;
                t.row(vec![
                    s.node.name.clone(),
                    s.node.rack.clone(),
                    s.node.slot.to_string(),
                    addr.to_string(),
                    s.snapshot.source.as_str().to_string(),
                    opt(sum.hottest.as_ref().map(|h| h.millicelsius)),
                    opt(sum.hottest.as_ref().map(|h| h.critical_millicelsius)),
                    opt(sum.power_draw.as_ref().map(|p| p.microwatts)),
                    opt(sum.power_cap.as_ref().map(|p| p.microwatts)),
                    opt(sum.headroom_microwatts),
                    format!("{:.0} %", s.snapshot.cpu.utilisation * 100.0),
                    opt(s
                        .price
                        .as_ref()
                        .map(|q| maxwell_node::render::price(q.price_milli))),
                    format!("{sees}/{}", statuses.len()),
                    guests.as_ref().map_or("-".into(), market_cell),
                ]);
            }
            Err(e) => t.row(vec![
                "?".into(),
                "-".into(),
                "-".into(),
                addr.to_string(),
                format!("unreachable: {e}"),
            ]),
        }
    }
    format!(
        "maxwell demo: {} agents on loopback, emulated sensors, {:.0} s  (Ctrl-C to stop)\n\n{}",
        statuses.len(),
        elapsed.as_secs_f64(),
        t.render()
    )
}

/// `gold 0.05 running · spot paused`; a guest that moved here says from
/// where (`spot<-node2`).
fn market_cell(l: &GuestList) -> String {
    let cells: Vec<String> = l
        .guests
        .iter()
        .filter_map(|g| Some((g, g.market.as_ref()?)))
        .map(|(g, a)| {
            let from = match &g.origin {
                Some(o) if o.moved => format!("<-{}", o.name),
                _ => String::new(),
            };
            format!(
                "{}{from} {:.2} {}",
                a.name,
                a.share_mcores as f64 / 1000.0,
                a.state
            )
        })
        .collect();
    if cells.is_empty() {
        "-".into()
    } else {
        cells.join(" · ")
    }
}

/// Submits a guest `batch` to node `k` (`POST /v1/submit`), bidding a
/// fifth over the cheapest price that node sees: it cannot stay on the
/// heated node, and lands on a cool, cheap one. Returns a line for the view.
fn submit(addrs: &[SocketAddr], dir: &Path, k: u16) -> String {
    let Some(addr) = addrs.get(usize::from(k)).copied() else {
        return format!("\n(--heat-node {k}: there is no such node to submit to)\n");
    };
    let run = || -> anyhow::Result<String> {
        let t = Duration::from_secs(60);
        let token = client::read_token(None, &dir.join(format!("node{k}")))?;
        let api = client::Api { addr, token };
        let members: Members = api.get_json("/v1/members", t)?;
        let cheapest = members
            .members
            .iter()
            .filter(|m| m.counts)
            .filter_map(|m| m.price_milli)
            .min()
            .unwrap_or(1_000);
        let bid = cheapest * 6 / 5;
        let spec = format!(
            r#"{{"name": "batch", "kind": "workload", "vcpus": 1, "memory_mib": 8, "payload": "count", "bid_milli": {bid}, "wallet_milli": 100000000, "max_cpu": 0.05}}"#
        );
        let t0 = Instant::now();
        let body = api.post("/v1/submit", &spec, t)?;
        let took = t0.elapsed();
        let landed: maxwell_node::http::submit::Submitted = serde_json::from_str(&body)?;
        Ok(format!(
            "\nevent: guest batch (bid {}) submitted to node {k}, the heated one: it landed on {} at price {} after {} offer(s), in {:.0} ms; `maxwell guests --http ADDR` there shows it came from node {k}.\n",
            maxwell_node::render::price(bid),
            landed.name,
            landed.offers.last().map_or("?".into(), |o| maxwell_node::render::price(o.price_milli)),
            landed.offers.len(),
            took.as_secs_f64() * 1000.0
        ))
    };
    run().unwrap_or_else(|e| format!("\ncould not submit to node {k}: {e:#}\n"))
}

/// Heats node `k`: its inlet air goes to 38 °C and it takes on extra load, as
/// in a local cooling failure. Returns a line for the view.
async fn heat(addrs: &[SocketAddr], dir: &Path, k: u16) -> String {
    let Some(addr) = addrs.get(usize::from(k)).copied() else {
        return format!("\n(--heat-node {k}: there is no such node)\n");
    };
    let body = r#"{"inlet_celsius": 38.0, "extra_load": 0.6}"#;
    let data_dir = dir.join(format!("node{k}"));
    let put = tokio::task::spawn_blocking(move || {
        // The agent wrote its API token into its data dir; the demo owns it.
        let token = client::read_token(None, &data_dir)?;
        client::Api { addr, token }.put("/v1/emulated", body, Duration::from_secs(2))
    })
    .await;
    match put {
        Ok(Ok(_)) => format!(
            "\nevent: node {k} ({addr}) heated: inlet 38 °C, +60 % load. Watch its price rise past spot's bid (spot paused) and its rack neighbours' fall.\n"
        ),
        Ok(Err(e)) => format!("\ncould not heat node {k}: {e}\n"),
        Err(e) => format!("\ncould not heat node {k}: {e}\n"),
    }
}
