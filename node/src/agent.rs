//! `maxwell agent`: the thin driver around [`NodeCore`]. It feeds the core
//! sensor snapshots, verified members, guest requests, signals and timer
//! wake-ups, and carries out what the core asks (read, observe, sign and
//! gossip, start or kill guests, leave, log); it serves the HTTP API beside
//! it until a stop signal.

use crate::clock::unix_ms;
use crate::config::Config;
use crate::datadir::DataDir;
use crate::guests::desk::Desk;
use crate::guests::{self, Guests};
use crate::http::auth::Gate;
use crate::http::state::{AppState, NodeInfo};
use crate::http::{AuthMode, Token};
use crate::identity::Identity;
use crate::mesh::setup::start_agent_mesh;
use crate::mesh::{Clock, Mesh};
use crate::sensors::hub::SensorHub;
use crate::sensors::reader::Reader;
use anyhow::Context;
use maxwell_core::{Command, Event, NodeCore, Output};
use maxwell_gossip::MembershipEvent;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::signal::unix::{signal, SignalKind};

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
        move || {
            SensorHub::new(&hub_config.sensors, &hub_config.power, hub_config.emulated)
                .map_err(|e| e.to_string())
        },
        crate::sensors::reader::stuck_after(config.sensors.interval),
    )
    .map_err(anyhow::Error::msg)?;
    let clock = CoreClock::new(Instant::now());
    let emulated = first.emulated;
    let (guests, mut inbox) = Guests::open(&config.guests)?;
    let guests = Arc::new(guests);
    let seed = core_seed(&identity, generation);
    let mut core = NodeCore::new(config.core(guests.share()), clock.now(), seed);
    let gate = Gate {
        config: config.api.clone(),
        token,
        hostname: crate::config::default_node_name().to_ascii_lowercase(),
    };
    let node = NodeInfo::new(&identity, &config.name, &config.rack, config.slot);
    let state = Arc::new(AppState::new(
        node,
        config.sensors.interval,
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
    let http_addr = listener
        .local_addr()
        .context("reading the API's bound address")?;
    let mut bazaar = match guests.backend_name() {
        Some(_) => Some(crate::market::Bazaar::open(
            &config.market,
            data_dir.path(),
            identity.id(),
            identity.signing_key().clone(),
            guests.share().cores,
            clock.now(),
        )?),
        None => None,
    };
    if let Some(b) = &bazaar {
        state.set_market(b.view());
    }
    let mut desk = Desk::new(Arc::clone(&guests.placed));
    desk.start_specs(
        &mut core,
        || clock.now(),
        &guests,
        &mut inbox,
        specs,
        bazaar.as_mut(),
    )
    .await?;
    state.set_admitted(core.guest_load());
    let mesh_clock: Clock = Arc::new(unix_ms);
    let (mut mesh, gossip_addr) = start_agent_mesh(
        &config.gossip,
        &config.name,
        &config.rack,
        &identity,
        &data_dir,
        Arc::clone(&state.gossip_stats),
        generation,
        mesh_clock,
        seed,
    )
    .await?;
    mesh.advertise_api(http_addr);
    let (p2p, mut found_seeds) =
        crate::p2p::start(&config.p2p, &identity, Arc::clone(&guests), gossip_addr).await?;
    mesh.advertise_p2p(p2p.listen_addr);
    let p2p_addr = p2p.listen_addr;
    let _ = state.p2p.set(p2p.clone());
    let resolver = tokio::spawn(crate::p2p::migrate::resolve(
        Arc::clone(&guests),
        p2p.clone(),
    ));
    let mut edge = Edge {
        mesh: &mesh,
        state: &state,
        guests: &guests,
        desk,
        clock,
        p2p,
        placement: config.placement,
    };
    // The first snapshot, read at start, then a first look at the members.
    core.handle_reading(edge.clock.now(), &first.reading());
    core.handle_timeout(edge.clock.now());
    edge.carry_out(&mut core, &mut reader).await;
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
        http = %http_addr,
        gossip = %gossip_addr,
        p2p = %p2p_addr,
        sensors = first.source.as_str(),
        guests = guests.backend_name().map_or("disabled", |b| b.as_str()),
        seed,
        "maxwell agent started"
    );
    let addresses = maxwell_types::addresses::Addresses {
        pid: std::process::id(),
        http: http_addr,
        gossip: gossip_addr,
        p2p: p2p_addr,
    };
    let json = serde_json::to_vec(&addresses).context("encoding agent.json")?;
    data_dir.write(
        maxwell_types::addresses::FILE_NAME,
        &json,
        crate::fsutil::Replace::Yes,
    )?;
    let linger = loop {
        let wake = core.poll_timeout().map_or(Duration::MAX, |at| {
            Duration::from_millis(at.saturating_sub(edge.clock.now()))
        });
        let market_wake = bazaar.as_ref().map_or(Duration::MAX, |b| {
            Duration::from_millis(b.poll_timeout().saturating_sub(edge.clock.now()))
        });
        tokio::select! {
            _ = tokio::time::sleep(wake) => core.handle_timeout(edge.clock.now()),
            _ = tokio::time::sleep(market_wake) => {
                if let Some(b) = bazaar.as_mut() {
                    edge.market_tick(&core, b);
                    edge.plan_move(&mut core, b);
                }
            }
            Some(msg) = inbox.recv() => edge.guest_msg(&mut core, bazaar.as_mut(), msg).await,
            // New records or members: re-price on arrival, not at the next tick.
            () = mesh.changed() => edge.observe(&mut core),
            Some(seed) = found_seeds.recv() => {
                tracing::info!(%seed, "mdns: a peer found on the network segment; saying hello to it while no member is known");
                mesh.add_seed(seed);
            }
            Some(snap) = reader.next() => {
                core.handle_reading(edge.clock.now(), &snap.reading());
                state.publish(snap);
            }
            signal = signals.next() => match signal {
                Signal::Stop(name) => {
                    tracing::info!(signal = name, "shutting down: announcing our leave");
                    core.handle_command(edge.clock.now(), Command::Leave);
                }
                Signal::Reload => {
                    let now = edge.clock.now();
                    apply_reload(&reload, &mut config, &mesh, &mut core, &reader, now);
                }
            }
        }
        let leave = edge.carry_out(&mut core, &mut reader).await;
        state.set_admitted(core.guest_load());
        if let Some(linger) = leave {
            break linger;
        }
    };
    // The core has had its guests killed. Every request still waiting (in
    // the inbox, or a start whose outcome is there) is answered 503 as its
    // reply is dropped; later ones are refused at the channel.
    drop(inbox);
    drop(edge);
    resolver.abort();
    if let Err(e) = mesh.leave(linger).await {
        tracing::warn!(error = %e, "could not announce our leave; peers will detect the failure");
    }
    if let Err(e) = data_dir.remove(maxwell_types::addresses::FILE_NAME) {
        tracing::warn!(error = %e, "could not remove agent.json");
    }
    let _ = stop_tx.send(true);
    if let Err(e) = server.await {
        tracing::warn!(error = %e, "HTTP server task failed");
    }
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
    core: &mut NodeCore,
    reader: &Reader,
    now_ms: u64,
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
        core.handle_command(now_ms, Command::SetPricing(new.pricing.clone()));
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
    let sections: [(&str, &dyn std::fmt::Debug, &dyn std::fmt::Debug); 13] = [
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
        ("p2p", &config.p2p, &rest.p2p),
        ("placement", &config.placement, &rest.placement),
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

/// The core's clock: unix ms at the agent's start, then monotonic, so a
/// wall-clock step neither stalls nor races the core's timers.
#[derive(Debug, Clone, Copy)]
struct CoreClock {
    base_ms: u64,
    start: Instant,
}

impl CoreClock {
    fn new(start: Instant) -> Self {
        let since = u64::try_from(start.elapsed().as_millis()).unwrap_or(0);
        Self {
            base_ms: unix_ms().saturating_sub(since),
            start,
        }
    }

    fn now(&self) -> u64 {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.base_ms.saturating_add(elapsed)
    }
}

/// The core's random stream: this key's, this incarnation's (logged at
/// start, so a node's choices can be replayed).
fn core_seed(identity: &Identity, generation: u64) -> u64 {
    let id = identity.id().0;
    let mut head = [0u8; 8];
    head.copy_from_slice(&id[..8]);
    u64::from_le_bytes(head) ^ generation
}

/// The OS side of the agent: where the core's outputs are carried out.
struct Edge<'a> {
    mesh: &'a Mesh,
    state: &'a Arc<AppState>,
    guests: &'a Arc<Guests>,
    desk: Desk,
    clock: CoreClock,
    /// The offer endpoint: its gate follows the counting members.
    p2p: crate::p2p::P2p,
    placement: crate::p2p::config::PlacementConfig,
}

impl Edge<'_> {
    /// One guest message: market calls and kills reach the market, the
    /// rest the desk; a started guest with terms joins the market.
    async fn guest_msg(
        &mut self,
        core: &mut NodeCore,
        bazaar: Option<&mut crate::market::Bazaar>,
        msg: guests::GuestMsg,
    ) {
        let now = self.clock.now();
        let msg = match msg {
            guests::GuestMsg::Place { need, reply } => {
                let _ = reply.send(core.place(now, &need, &self.placement.place));
                return;
            }
            guests::GuestMsg::Endpoint { node, reply } => {
                let _ = reply.send(core.endpoint_of(now, node));
                return;
            }
            guests::GuestMsg::MoveTarget { need, to, reply } => {
                let target = core.move_target(now, &need, to.as_deref(), &self.placement.place);
                let _ = reply.send(target);
                return;
            }
            guests::GuestMsg::MoveFailed(vm) => {
                core.handle_move_failed(now, vm);
                return;
            }
            msg => msg,
        };
        let Some(b) = bazaar else {
            if let guests::GuestMsg::Market(call) = msg {
                crate::market::refuse(call, self.guests);
                return;
            }
            if let Some(j) = self.desk.handle(core, now, msg) {
                j.settle(None, self.guests, now).await;
            }
            return;
        };
        match msg {
            guests::GuestMsg::Market(call) => b.call(call, now),
            guests::GuestMsg::Killed(id) => {
                b.gone(id.0, now);
                self.desk.handle(core, now, guests::GuestMsg::Killed(id));
            }
            msg => {
                if let Some(j) = self.desk.handle(core, now, msg) {
                    j.settle(Some(&mut *b), self.guests, now).await;
                }
            }
        }
        self.state.set_market(b.view());
    }

    /// A market tick: meter the guests, tick, carry out what it decided.
    fn market_tick(&mut self, core: &NodeCore, b: &mut crate::market::Bazaar) {
        let t0 = guests::thread_cpu_ns();
        let now = self.clock.now();
        let Some(price) = core.quote().map(|q| q.price_milli) else {
            return;
        };
        let reading = self.state.snapshot().reading();
        let (usage, unmetered) = self.guests.meter(&b.metered());
        b.tick(now, price, Some(&reading), &usage, unmetered);
        let mut seen = Vec::new();
        while let Some(action) = b.poll_action() {
            self.guests.market_act(action);
            seen.push(action);
        }
        let view = b.view();
        for a in seen {
            let (kind, why) = match a.act {
                maxwell_market::Act::Pause => ("paused", "outbid"),
                maxwell_market::Act::Resume => ("resumed", "its bid meets the price again"),
                maxwell_market::Act::Kill(reason) => ("killed", reason.as_str()),
                maxwell_market::Act::Cap { .. } => continue,
            };
            let name = view
                .accounts
                .iter()
                .find(|r| r.guest == a.vm)
                .map_or("?", |r| r.name.as_str());
            let detail = format!(
                "guest {name} ({why}) at price {}",
                crate::render::price(price)
            );
            self.state.note(self.state.node.id, kind, detail);
        }
        self.state.set_market(view);
        let spent = guests::thread_cpu_ns() - t0;
        self.guests
            .market_cpu_ns
            .fetch_add(spent, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts the move the core's rule calls for, if any (docs/placement.md,
    /// "Moving away from heat"); it runs on its own task.
    fn plan_move(&mut self, core: &mut NodeCore, b: &crate::market::Bazaar) {
        if self.placement.moves.max_per_minute == 0 {
            return;
        }
        let now = self.clock.now();
        let movable = self
            .guests
            .movable(&b.movable(), |vm| self.p2p.is_moving(vm));
        if movable.is_empty() {
            return;
        }
        let Some(mv) = core.plan_move(now, &movable, &self.placement.place, &self.placement.moves)
        else {
            return;
        };
        let maxwell_core::Target::Peer {
            node,
            name,
            endpoint,
            price_milli,
        } = mv.target
        else {
            return;
        };
        let peer = crate::p2p::migrate::Peer {
            node,
            name,
            endpoint,
        };
        let own = core.quote().map_or(0, |q| q.price_milli);
        tracing::info!(guest = mv.vm, to = %peer.name, price = own, target_price = price_milli, "moving a guest away from heat");
        let (guests, p2p, state) = (
            Arc::clone(self.guests),
            self.p2p.clone(),
            Arc::clone(self.state),
        );
        tokio::spawn(async move {
            match crate::p2p::migrate::migrate(&guests, &p2p, mv.vm, &peer, true).await {
                Ok(m) => {
                    tracing::info!(guest = m.guest, to = %m.to, to_guest = m.to_guest, paused_ms = m.paused_ms, "guest moved away from heat");
                    let detail = format!("guest g{} to {} (away from heat)", m.guest, m.to);
                    state.note(state.node.id, "moved", detail);
                }
                Err(e) => {
                    tracing::warn!(guest = mv.vm, to = %peer.name, error = %e.message, "a move away from heat did not happen; the guest runs on here");
                    guests.move_failed(mv.vm);
                }
            }
        });
    }

    /// Puts a membership change on the dashboard's event list.
    fn board(&self, event: &Event) {
        let (node, kind) = match event {
            Event::Member(MembershipEvent::Joined { node, .. }) => (node, "joined"),
            Event::Member(MembershipEvent::Left { node }) => (node, "left"),
            Event::Member(MembershipEvent::Died { node }) => (node, "died"),
            Event::Member(MembershipEvent::Recovered { node }) => (node, "recovered"),
            _ => return,
        };
        self.state.note(*node, kind, String::new());
    }

    /// Hands the core what the mesh holds now, and shows it.
    fn observe(&mut self, core: &mut NodeCore) {
        let events = self.mesh.refresh();
        let now = self.clock.now();
        core.handle_peers(now, self.mesh.members(), events);
        let counting = core
            .members()
            .iter()
            .filter(|m| m.counts())
            .filter_map(|m| Some((m.node_id, m.report.as_ref()?.name.clone())))
            .collect();
        self.p2p.set_members(counting);
        let own = self.mesh.last_report();
        let rows = core.member_rows(now, own.as_ref(), self.mesh.gossip_peers());
        self.state
            .set_members(rows, self.mesh.counters(), self.mesh.protocol_counters());
    }

    /// Carries out everything the core asks, until it asks nothing more;
    /// returns how long to linger when it asks to leave.
    async fn carry_out(&mut self, core: &mut NodeCore, reader: &mut Reader) -> Option<Duration> {
        while let Some(output) = core.poll_output() {
            match output {
                Output::ReadSensors => {
                    if let Some(params) = self.state.take_emulated_change() {
                        reader.set_emulated(params);
                        tracing::info!(?params, "emulated host parameters changed through the API");
                        self.state.set_emulated(Some(params));
                    }
                    // Refused only while a read is outstanding; the core
                    // already knows, and says so when it is stuck.
                    reader.request(self.clock.start.elapsed(), unix_ms());
                }
                Output::ObservePeers => self.observe(core),
                Output::Publish(heat) => {
                    if let Err(e) = self.mesh.publish(&heat) {
                        tracing::error!(error = %e, "cannot publish our heat report");
                    }
                }
                Output::Guest(action) => self.desk.act(self.guests, action).await,
                Output::Leave { linger_ms } => return Some(Duration::from_millis(linger_ms)),
                Output::Event(event) => {
                    self.board(&event);
                    log(event);
                }
            }
        }
        // The price moves at every reading and on every arrival, published
        // or not: the API shows it as it is.
        if let Some(quote) = core.quote() {
            self.state.set_quote(quote.clone());
        }
        None
    }
}

/// Tells operators what the core reported.
fn log(event: Event) {
    match event {
        Event::Member(MembershipEvent::Joined { node, generation }) => {
            tracing::info!(%node, generation, "member joined")
        }
        Event::Member(MembershipEvent::Left { node }) => tracing::info!(%node, "member left"),
        Event::Member(MembershipEvent::Died { node }) => tracing::warn!(%node, "member failed"),
        Event::Member(MembershipEvent::Recovered { node }) => {
            tracing::info!(%node, "member recovered")
        }
        Event::Member(MembershipEvent::Rejected { gossip_id, reason }) => {
            tracing::warn!(peer = %gossip_id, reason = %reason, "gossiped record refused (further refusals of this kind are counted in metrics)")
        }
        Event::SensorStuck { running_ms } => {
            tracing::error!(running_s = running_ms / 1000, "a sensor read has not returned; the last report stays in force and /healthz says unhealthy")
        }
        Event::SensorRecovered => tracing::info!("the sensor read returned; reading again"),
    }
}
