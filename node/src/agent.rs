//! `maxwell agent`: the sensor loop and the HTTP API, until SIGINT or SIGTERM.

use crate::config::Config;
use crate::identity::Identity;
use crate::sensors::hub::SensorHub;
use crate::state::AppState;
use anyhow::Context;
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
    let identity = Identity::load_or_create(&config.data_dir)?;
    let mut hub = SensorHub::new(&config)?;
    let start = Instant::now();
    let first = hub.read(Duration::ZERO, unix_ms());
    let state = Arc::new(AppState::new(&config, &identity, first));
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on http_addr {}", config.http_addr))?;
    tracing::info!(
        id = %identity.id(),
        name = %config.name,
        rack = %config.rack,
        slot = config.slot,
        http = %config.http_addr,
        sensors = hub.source().as_str(),
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
    let mut tick = tokio::time::interval(config.sensors.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // the first tick is immediate; we just read.
    let reason = loop {
        tokio::select! {
            _ = tick.tick() => {
                // sysfs reads can block for milliseconds (SMBus chips): off the runtime.
                let now = start.elapsed();
                let (back, snap) = tokio::task::spawn_blocking(move || {
                    let snap = hub.read(now, unix_ms());
                    (hub, snap)
                })
                .await
                .context("sensor reader panicked")?;
                hub = back;
                state.publish(snap);
            }
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
        }
    };
    tracing::info!(signal = reason, "shutting down");
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open after 5 s; closing them"),
    }
    tracing::info!("stopped");
    Ok(())
}
