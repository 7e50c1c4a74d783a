//! `maxwell agent`: the sensor loop and the HTTP API, until SIGINT or SIGTERM.

use crate::config::Config;
use crate::guests::{self, Guests};
use crate::http::{Member, Members};
use crate::identity::Identity;
use crate::mesh::setup::{heat_of, start_agent_mesh};
use crate::mesh::{Clock, Mesh};
use crate::sensors::hub::SensorHub;
use crate::state::AppState;
use anyhow::Context;
use maxwell_gossip::{HeatReport, MembershipEvent};
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

/// Runs the agent until a termination signal.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // A bad guest spec stops the agent like a bad config: before anything runs.
    let specs = match &config.guests.specs_dir {
        Some(dir) => guests::load_specs(dir)?,
        None => Vec::new(),
    };
    let identity = Identity::load_or_create(&config.data_dir)?;
    let mut hub = SensorHub::new(&config)?;
    let start = Instant::now();
    let first = hub.read(Duration::ZERO, unix_ms());
    let guests = Arc::new(Guests::open(&config.guests)?);
    let state = Arc::new(AppState::new(
        &config,
        &identity,
        first.clone(),
        Arc::clone(&guests),
    ));
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on http_addr {}", config.http_addr))?;
    guests.start_specs(specs).await?;
    tracing::info!(
        id = %identity.id(),
        name = %config.name,
        rack = %config.rack,
        slot = config.slot,
        http = %config.http_addr,
        sensors = hub.source().as_str(),
        guests = guests.backend_name().unwrap_or("disabled"),
        "maxwell agent started"
    );
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let router = crate::http::router(Arc::clone(&state));
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    let clock: Clock = Arc::new(unix_ms);
    let mesh = start_agent_mesh(&config, &identity, Arc::clone(&state.gossip_stats), clock).await?;
    if hub.source() == crate::sensors::SourceKind::Emulated {
        state.set_emulated(Some(config.emulated));
    }
    let mut pricer = Pricer::new(&config);
    let price = pricer.update(&first, &config, &mesh, &state);
    mesh.publish(&heat_of(&first, &config, price)).await?;
    let mut tick = tokio::time::interval(config.sensors.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; we just read.
    let mut gossip_tick = tokio::time::interval(config.gossip.interval);
    gossip_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rejections = RejectionLog::default();
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {
                // sysfs reads can block for milliseconds (SMBus chips): off the runtime.
                let now = start.elapsed();
                if let Some(params) = state.take_emulated_change() {
                    if hub.set_emulated_params(params) {
                        tracing::info!(?params, "emulated host parameters changed through the API");
                        state.set_emulated(Some(params));
                    }
                }
                let (back, snap) = tokio::task::spawn_blocking(move || {
                    let snap = hub.read(now, unix_ms());
                    (hub, snap)
                })
                .await
                .context("sensor reader panicked")?;
                hub = back;
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
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    tracing::info!(signal = reason, "shutting down: announcing our leave");
    // Three rounds reach every peer of a LAN-sized mesh with high probability.
    if let Err(e) = mesh.leave(config.gossip.interval * 3).await {
        tracing::warn!(error = %e, "could not announce our leave; peers will detect the failure");
    }
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after 5 s; closing them"),
    }
    // No request can start a guest any more: kill every one we run.
    let stopped = guests.shutdown().await;
    tracing::info!(guests = stopped, "guests stopped");
    tracing::info!("stopped");
    Ok(())
}

/// This node and every peer with a verified report, as API rows.
pub fn member_rows(mesh: &Mesh, gossip_peers: usize) -> Members {
    let now = unix_ms();
    let mut rows: Vec<Member> = Vec::new();
    if let Some(own) = mesh.last_report() {
        rows.push(row(
            &own,
            "alive",
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
                m.status.as_str(),
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
                status: m.status.as_str().into(),
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
    status: &str,
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
        status: status.into(),
        generation,
        rack: r.rack.clone(),
        slot: r.slot,
        hottest_millicelsius: Some(r.hottest),
        critical_millicelsius: Some(r.critical),
        power_draw_microwatts: Some(r.power_draw),
        power_cap_microwatts: Some(r.power_cap),
        headroom_microwatts: Some(r.headroom),
        price_milli: Some(r.price_milli),
        sensor_source: Some(format!("{:?}", r.source).to_lowercase()),
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
        for m in members
            .iter()
            .filter(|m| m.status == maxwell_gossip::MemberStatus::Left)
        {
            self.controller.forget(&m.node_id);
        }
        let input = crate::price::price_input(snap, config, &members);
        let quote = self.controller.update(&input, unix_ms());
        let price = quote.price_milli;
        state.set_quote(quote);
        price
    }
}
