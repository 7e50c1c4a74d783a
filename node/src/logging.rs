//! Logging: one subscriber for the process, whose filter SIGHUP can change.

use crate::mesh::transport::InvalidPayloadLayer;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use tracing_subscriber::filter::Targets;
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
    // The counter of malformed gossip datagrams sees chitchat's warnings
    // whatever the log level.
    let chitchat_warnings = Targets::new().with_target("chitchat::transport", tracing::Level::WARN);
    tracing_subscriber::registry()
        .with(
            fmt.with_filter(filter)
                // Dynamic: asked per event, never cached per call site.
                .with_filter(tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
                    not_a_flood(meta)
                })),
        )
        .with(InvalidPayloadLayer.with_filter(chitchat_warnings))
        .try_init()
        .map_err(|e| e.to_string())?;
    let _ = FILTER.set(handle);
    Ok(())
}

/// Shortest gap between two logged warnings from chitchat's transport.
const TRANSPORT_WARNING_GAP_MS: u64 = 10_000;

/// chitchat logs one WARN per malformed datagram; anyone who can reach the
/// gossip port could fill the disk with them. They are all counted
/// (`maxwell_gossip_invalid_datagrams_total`); at most one is written every
/// 10 s.
fn not_a_flood(meta: &tracing::Metadata<'_>) -> bool {
    static LAST_MS: AtomicU64 = AtomicU64::new(0);
    if !meta.target().starts_with("chitchat::transport") || !meta.is_event() {
        return true;
    }
    let now = crate::clock::unix_ms().max(1);
    admit_once_per_gap(&LAST_MS, now, TRANSPORT_WARNING_GAP_MS)
}

/// True (and `last` set to `now`) when `gap_ms` has passed since `last`.
fn admit_once_per_gap(last: &AtomicU64, now: u64, gap_ms: u64) -> bool {
    let prev = last.load(Ordering::Relaxed);
    if prev != 0 && now.saturating_sub(prev) < gap_ms {
        return false;
    }
    last.compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_transport_warnings_is_written_once_per_gap() {
        let last = AtomicU64::new(0);
        let written = (0..10_000u64)
            .filter(|i| admit_once_per_gap(&last, 1_000 + i, 10_000))
            .count();
        assert_eq!(written, 1, "one line for 10 000 datagrams within 10 s");
        assert!(
            admit_once_per_gap(&last, 11_000, 10_000),
            "the next window writes again"
        );
    }
}
