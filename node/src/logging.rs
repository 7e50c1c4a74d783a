//! Logging: one subscriber for the process, whose filter SIGHUP can change.
//!
//! Nothing a peer sends writes a line per datagram: the gossip protocol
//! reports refusals at most once per reason every 10 s, and counts them all.

use std::sync::OnceLock;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{reload, EnvFilter, Registry};

static FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the subscriber: `level`, else `RUST_LOG`, else `info`.
pub fn init(level: Option<&str>) -> Result<(), String> {
    let filter = match level {
        Some(level) => EnvFilter::try_new(level),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .map_err(|e| e.to_string())?;
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init()
        .map_err(|e| e.to_string())?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// Replaces the filter (a SIGHUP with a new `log_level`).
pub fn set_filter(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    FILTER
        .get()
        .ok_or_else(|| "logging is not initialised".to_string())?
        .reload(filter)
        .map_err(|e| e.to_string())
}
