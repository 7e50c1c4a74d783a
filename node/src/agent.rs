//! `maxwell agent`: the sensor loop, gossip and the HTTP API, until a stop signal.

use crate::config::Config;
use crate::datadir::DataDir;
use crate::guests::{self, Guests};
use crate::http::auth::Gate;
use crate::http::{AuthMode, Member, Members, Token};
use crate::identity::Identity;
use crate::mesh::setup::{heat_of, start_agent_mesh};
use crate::mesh::{Clock, Mesh};
use crate::sensors::hub::SensorHub;
use crate::sensors::reader::Reader;
use crate::state::AppState;
use anyhow::Context;
use maxwell_gossip::{HeatReport, MemberStatus, MembershipEvent};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::signal::unix::{signal, SignalKind};

/// Wall-clock time in Unix milliseconds (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Rereads the configuration (file and flags) on SIGHUP.
pub struct Reload {
    /// Builds the configuration again, as at start.
    pub load: Box<dyn Fn() -> Result<Config, crate::config::ConfigError> + Send>,
    /// True when `--log-level` was given: it wins over the file's `log_level`.
    pub log_level_flag: bool,
}

impl std::fmt::Debug for Reload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reload")
            .field("log_level_flag", &self.log_level_flag)
            .finish_non_exhaustive()
    }
}

/// Runs the agent until SIGTERM, SIGINT or SIGQUIT (each a clean stop);
/// SIGHUP reloads what can change safely; SIGUSR1 and SIGUSR2 are ignored.
pub async fn run(mut config: Config, reload: Reload) -> anyhow::Result<()> {
    // A bad guest spec stops the agent like a bad config: before anything runs.
    let specs = match &config.guests.specs_dir {
        Some(dir) => guests::load_specs(dir, config.guests.kernel_dir.as_deref())?,
        None => Vec::new(),
    };
    // Handlers first: from here on no signal kills the agent by default.
    let mut signals = Signals::install()?;
    raise_fd_limit();
    let data_dir = DataDir::open(&config.data_dir)?;
    let identity = Identity::load_or_create(&data_dir)?;
    let token = match config.api.auth {
        AuthMode::Token => Some(Token::load_or_create(&data_dir)?),
        AuthMode::None => {
            tracing::warn!(http = %config.http_addr, "api.auth is \"none\": any local process can change this agent");
            None
        }
    };
    let generation = data_dir.next_generation(unix_ms())?;
    let hub_config = config.clone();
    let (mut reader, first) = Reader::start(
        move || SensorHub::new(&hub_config).map_err(|e| e.to_string()),
        crate::sensors::reader::stuck_after(config.sensors.interval),
    )
    .map_err(anyhow::Error::msg)?;
    let start = Instant::now();
    let emulated = first.emulated;
    let guests = Arc::new(Guests::open(&config.guests)?);
    let gate = Gate {
        config: config.api.clone(),
        token,
        hostname: crate::config::default_node_name().to_ascii_lowercase(),
    };
    let state = Arc::new(AppState::new(
        &config,
        &identity,
        first.clone(),
        Arc::clone(&guests),
        gate,
    ));
    if emulated {
        state.set_emulated(Some(config.emulated));
    }
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on http_addr {}", config.http_addr))?;
    guests.start_specs(specs).await?;
    let clock: Clock = Arc::new(unix_ms);
    let mesh = start_agent_mesh(
        &config,
        &identity,
        Arc::clone(&state.gossip_stats),
        generation,
        clock,
    )
    .await?;
    let mut pricer = Pricer::new(&config);
    let price = pricer.update(&first, &config, &mesh, &state);
    mesh.publish(&heat_of(&first, &config, price)).await?;
    state.set_members(member_rows(&mesh, 0), mesh.counters());
    // Serve once there is something true to say: status, price and self as a member.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let router = crate::http::router(Arc::clone(&state), emulated);
    let limits = crate::http::serve::Limits {
        max_connections: config.api.max_connections,
        header_timeout: config.api.header_timeout,
    };
    let server = tokio::spawn(crate::http::serve::serve(
        listener,
        router,
        limits,
        stop_rx,
        state.counters.api_connections.clone(),
        Duration::from_secs(5),
    ));
    tracing::info!(
        id = %identity.id(),
        name = %config.name,
        rack = %config.rack,
        slot = config.slot,
        http = %config.http_addr,
        sensors = first.source.as_str(),
        guests = guests.backend_name().unwrap_or("disabled"),
        "maxwell agent started"
    );
    let mut tick = tokio::time::interval(config.sensors.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; we just read.
    let mut gossip_tick = tokio::time::interval(config.gossip.interval);
    gossip_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rejections = RejectionLog::default();
    let mut stuck_warned = false;
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(params) = state.take_emulated_change() {
                    reader.set_emulated(params);
                    tracing::info!(?params, "emulated host parameters changed through the API");
                    state.set_emulated(Some(params));
                }
                if let Err(running) = reader.request(start.elapsed(), unix_ms()) {
                    if running > state.sensor_stuck_after() && !stuck_warned {
                        stuck_warned = true;
                        tracing::error!(running_s = running.as_secs(), "a sensor read has not returned; the last report stays in force and /healthz says unhealthy");
                    }
                }
            }
            Some(snap) = reader.next() => {
                if stuck_warned {
                    stuck_warned = false;
                    tracing::info!("the sensor read returned; reading again");
                }
                let price = pricer.update(&snap, &config, &mesh, &state);
                let heat = heat_of(&snap, &config, price);
                state.publish(snap);
                if let Err(e) = mesh.publish(&heat).await {
                    tracing::error!(error = %e, "cannot publish our heat report");
                }
            }
            _ = gossip_tick.tick() => {
                for event in mesh.refresh().await {
                    rejections.log(event);
                }
                let peers = mesh.gossip_peers().await;
                state.set_members(member_rows(&mesh, peers), mesh.counters());
            }
            signal = signals.next() => match signal {
                Signal::Stop(name) => break name,
                Signal::Reload => apply_reload(&reload, &mut config, &mesh, &mut pricer, &reader),
            }
        }
    };
    tracing::info!(signal = reason, "shutting down: announcing our leave");
    // Three rounds reach every peer of a LAN-sized mesh with high probability.
    if let Err(e) = mesh.leave(config.gossip.interval * 3).await {
        tracing::warn!(error = %e, "could not announce our leave; peers will detect the failure");
    }
    let _ = stop_tx.send(true);
    if let Err(e) = server.await {
        tracing::warn!(error = %e, "HTTP server task failed");
    }
    // Kill every guest; a request still in flight can start none after this.
    let stopped = guests.shutdown().await;
    tracing::info!(guests = stopped, "guests stopped");
    tracing::info!("stopped");
    Ok(())
}

/// What a signal asks of the agent.
enum Signal {
    Stop(&'static str),
    Reload,
}

/// The signals the agent handles. Installing a handler is what keeps
/// SIGUSR1 and SIGUSR2 from killing the process (their default action).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        let one = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("installing the {name} handler"))
        };
        Ok(Self {
            term: one(SignalKind::terminate(), "SIGTERM")?,
            int: one(SignalKind::interrupt(), "SIGINT")?,
            quit: one(SignalKind::quit(), "SIGQUIT")?,
            hup: one(SignalKind::hangup(), "SIGHUP")?,
            usr1: one(SignalKind::user_defined1(), "SIGUSR1")?,
            usr2: one(SignalKind::user_defined2(), "SIGUSR2")?,
        })
    }

    async fn next(&mut self) -> Signal {
        loop {
            tokio::select! {
                _ = self.term.recv() => return Signal::Stop("SIGTERM"),
                _ = self.int.recv() => return Signal::Stop("SIGINT"),
                _ = self.quit.recv() => return Signal::Stop("SIGQUIT"),
                _ = self.hup.recv() => return Signal::Reload,
                _ = self.usr1.recv() => tracing::info!("SIGUSR1 ignored (SIGHUP reloads, SIGTERM stops)"),
                _ = self.usr2.recv() => tracing::info!("SIGUSR2 ignored (SIGHUP reloads, SIGTERM stops)"),
            }
        }
    }
}

/// SIGHUP: rereads the config; applies the log level, the allowlist (the
/// file is read again), the price law and `sensors.exclude_chips`; names
/// every other change as needing a restart. A config that does not
/// validate changes nothing.
fn apply_reload(
    reload: &Reload,
    config: &mut Config,
    mesh: &Mesh,
    pricer: &mut Pricer,
    reader: &Reader,
) {
    let new = match (reload.load)() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: the configuration is not valid; nothing changed");
            return;
        }
    };
    let mut applied: Vec<String> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    // Config sections have no PartialEq; their Debug forms tell a change.
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    if new.log_level != config.log_level {
        if reload.log_level_flag {
            kept.push("log_level (--log-level wins)".into());
        } else {
            let level = new.log_level.as_deref().unwrap_or("info");
            match crate::logging::set_filter(level) {
                Ok(()) => applied.push(format!("log_level={level}")),
                Err(e) => kept.push(format!("log_level ({e})")),
            }
        }
    }
    if new.gossip.allowlist.is_some() || config.gossip.allowlist.is_some() {
        let list = new
            .gossip
            .allowlist
            .as_deref()
            .map(crate::mesh::setup::load_allowlist);
        match list.transpose() {
            Ok(list) => {
                let what = list
                    .as_ref()
                    .map_or("off".into(), |l| format!("{} keys", l.len()));
                mesh.set_allowlist(list);
                applied.push(format!("gossip.allowlist ({what})"));
            }
            Err(e) => kept.push(format!("gossip.allowlist ({e:#})")),
        }
    }
    if differs(&new.pricing, &config.pricing) {
        pricer.controller.set_params(new.pricing.clone());
        applied.push("pricing".into());
    }
    if new.sensors.exclude_chips != config.sensors.exclude_chips {
        reader.set_exclude_chips(new.sensors.exclude_chips.clone());
        applied.push(format!(
            "sensors.exclude_chips={:?}",
            new.sensors.exclude_chips
        ));
    }
    // Everything else: compare with the reloadable fields taken as they are now.
    let mut rest = new.clone();
    rest.log_level.clone_from(&config.log_level);
    rest.gossip.allowlist.clone_from(&config.gossip.allowlist);
    rest.pricing = config.pricing.clone();
    rest.sensors
        .exclude_chips
        .clone_from(&config.sensors.exclude_chips);
    let sections: [(&str, &dyn std::fmt::Debug, &dyn std::fmt::Debug); 11] = [
        ("name", &config.name, &rest.name),
        ("rack", &config.rack, &rest.rack),
        ("slot", &config.slot, &rest.slot),
        ("data_dir", &config.data_dir, &rest.data_dir),
        ("http_addr", &config.http_addr, &rest.http_addr),
        ("api", &config.api, &rest.api),
        ("sensors", &config.sensors, &rest.sensors),
        ("power", &config.power, &rest.power),
        ("emulated", &config.emulated, &rest.emulated),
        ("gossip", &config.gossip, &rest.gossip),
        ("guests", &config.guests, &rest.guests),
    ];
    for (name, old, new) in sections {
        if differs(old, new) {
            kept.push(format!("{name} (needs a restart)"));
        }
    }
    config.log_level = new.log_level;
    config.gossip.allowlist = new.gossip.allowlist;
    config.pricing = new.pricing;
    config.sensors.exclude_chips = new.sensors.exclude_chips;
    tracing::info!(
        applied = %if applied.is_empty() { "nothing".into() } else { applied.join(", ") },
        not_applied = %if kept.is_empty() { "nothing".into() } else { kept.join(", ") },
        "SIGHUP: configuration reloaded"
    );
}

/// Raises the soft descriptor limit to the hard one: connections, guests
/// and sensors all take descriptors, and a low soft limit is a default, not
/// a decision.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// This node and every peer with a verified report, as API rows.
pub fn member_rows(mesh: &Mesh, gossip_peers: usize) -> Members {
    let now = unix_ms();
    let mut rows: Vec<Member> = Vec::new();
    if let Some(own) = mesh.last_report() {
        rows.push(row(
            &own,
            MemberStatus::Alive,
            own.generation,
            "-".into(),
            now.saturating_sub(own.timestamp_ms),
            true,
            true,
            true,
        ));
    }
    let members = mesh.members();
    for m in &members {
        let fresh = m.freshness == maxwell_gossip::Freshness::Fresh;
        match &m.report {
            Some(r) => rows.push(row(
                r,
                m.status,
                m.generation,
                m.addr.to_string(),
                m.age_ms,
                fresh,
                m.counts(),
                false,
            )),
            None => rows.push(Member {
                id: m.node_id,
                name: "-".into(),
                addr: m.addr.to_string(),
                status: m.status,
                generation: m.generation,
                rack: "-".into(),
                slot: 0,
                hottest_millicelsius: None,
                critical_millicelsius: None,
                power_draw_microwatts: None,
                power_cap_microwatts: None,
                headroom_microwatts: None,
                price_milli: None,
                sensor_source: None,
                age_ms: m.age_ms,
                fresh,
                counts: false,
                is_self: false,
            }),
        }
    }
    Members {
        unverified_peers: gossip_peers.saturating_sub(members.len()),
        members: rows,
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    r: &HeatReport,
    status: MemberStatus,
    generation: u64,
    addr: String,
    age_ms: u64,
    fresh: bool,
    counts: bool,
    is_self: bool,
) -> Member {
    Member {
        id: r.node_id,
        name: r.name.clone(),
        addr,
        status,
        generation,
        rack: r.rack.clone(),
        slot: r.slot,
        hottest_millicelsius: Some(r.hottest),
        critical_millicelsius: Some(r.critical),
        power_draw_microwatts: Some(r.power_draw),
        power_cap_microwatts: Some(r.power_cap),
        headroom_microwatts: Some(r.headroom),
        price_milli: Some(r.price_milli),
        sensor_source: Some(r.source),
        age_ms,
        fresh,
        counts,
        is_self,
    }
}

/// Logs membership events; refusals at most once per reason every 10 s
/// (a flood of forgeries is counted in metrics, not written line by line).
#[derive(Debug, Default)]
struct RejectionLog {
    last: HashMap<&'static str, Instant>,
}

impl RejectionLog {
    fn log(&mut self, event: MembershipEvent) {
        match event {
            MembershipEvent::Joined { node, generation } => {
                tracing::info!(%node, generation, "member joined")
            }
            MembershipEvent::Left { node } => tracing::info!(%node, "member left"),
            MembershipEvent::Died { node } => tracing::warn!(%node, "member failed"),
            MembershipEvent::Recovered { node } => tracing::info!(%node, "member recovered"),
            MembershipEvent::Rejected { gossip_id, reason } => {
                let label = reason.label();
                let due = self
                    .last
                    .get(label)
                    .is_none_or(|t| t.elapsed() >= Duration::from_secs(10));
                if due {
                    self.last.insert(label, Instant::now());
                    tracing::warn!(peer = %gossip_id, reason = %reason, "gossiped record refused (further refusals of this kind are counted in metrics)");
                }
            }
        }
    }
}

/// The price law in the agent: one update per sensor period, from the latest
/// snapshot and the verified members.
#[derive(Debug)]
struct Pricer {
    controller: maxwell_pricing::PriceController,
}

impl Pricer {
    fn new(config: &Config) -> Self {
        Self {
            controller: maxwell_pricing::PriceController::new(config.pricing.clone()),
        }
    }

    /// Updates the price; returns it, in thousandths, for our next report.
    fn update(
        &mut self,
        snap: &crate::sensors::Snapshot,
        config: &Config,
        mesh: &Mesh,
        state: &AppState,
    ) -> u64 {
        let members = mesh.members();
        for m in members.iter().filter(|m| m.status == MemberStatus::Left) {
            self.controller.forget(&m.node_id);
        }
        let input = crate::price::price_input(snap, config, &members);
        let quote = self.controller.update(&input, unix_ms());
        let price = quote.price_milli;
        state.set_quote(quote);
        price
    }
}
