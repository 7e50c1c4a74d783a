//! The `[gossip]` config section, owned by the mesh driver: addresses,
//! seeds, timing presets and what the verifier accepts. Each default is
//! declared once, in `validate` (or its preset).

use crate::check::{check_name, invalid, ConfigError};
use crate::fsutil::excerpt;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Gossip timing presets: the defaults a deployment starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GossipPreset {
    /// A rack LAN: 500 ms rounds, phi 8, dead nodes kept 1 h, reports stale after 10 s.
    Lan,
    /// Tests and demos on one machine: 100 ms rounds, phi 6, dead nodes kept 60 s, stale after 3 s.
    Test,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGossip {
    pub preset: Option<GossipPreset>,
    pub listen_addr: Option<String>,
    pub advertise_addr: Option<String>,
    pub seeds: Option<Vec<String>>,
    pub cluster_id: Option<String>,
    pub interval_ms: Option<u64>,
    pub phi_threshold: Option<f64>,
    pub dead_grace_ms: Option<u64>,
    pub report_ttl_ms: Option<u64>,
    pub max_clock_skew_ms: Option<u64>,
    pub max_report_age_ms: Option<u64>,
    pub allowlist: Option<PathBuf>,
}

/// Validated gossip settings.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub preset: GossipPreset,
    pub listen_addr: SocketAddr,
    /// What peers are told to use; `None` means "work it out at start".
    pub advertise_addr: Option<SocketAddr>,
    pub seeds: Vec<String>,
    pub cluster_id: String,
    pub interval: Duration,
    pub phi_threshold: f64,
    pub dead_grace: Duration,
    pub report_ttl: Duration,
    pub max_clock_skew: Duration,
    pub max_report_age: Duration,
    pub allowlist: Option<PathBuf>,
}

impl RawGossip {
    /// Validates the section.
    pub fn validate(self) -> Result<GossipConfig, ConfigError> {
        let preset = self.preset.unwrap_or(GossipPreset::Lan);
        let (interval, phi, grace, ttl) = match preset {
            GossipPreset::Lan => (500, 8.0, 3_600_000, 10_000),
            GossipPreset::Test => (100, 6.0, 60_000, 3_000),
        };
        let ms = |field, v: Option<u64>, default: u64, lo: u64, hi: u64| {
            let v = v.unwrap_or(default);
            if (lo..=hi).contains(&v) {
                Ok(Duration::from_millis(v))
            } else {
                Err(invalid(field, format!("{v} is outside {lo} to {hi}")))
            }
        };
        let interval = ms("gossip.interval_ms", self.interval_ms, interval, 10, 60_000)?;
        let report_ttl = ms(
            "gossip.report_ttl_ms",
            self.report_ttl_ms,
            ttl,
            100,
            3_600_000,
        )?;
        if report_ttl < interval * 2 {
            return Err(invalid(
                "gossip.report_ttl_ms",
                "must be at least two gossip intervals".into(),
            ));
        }
        let phi_threshold = self.phi_threshold.unwrap_or(phi);
        if !(phi_threshold.is_finite() && (1.0..=32.0).contains(&phi_threshold)) {
            return Err(invalid(
                "gossip.phi_threshold",
                format!("{phi_threshold} is outside 1 to 32"),
            ));
        }
        let listen = self.listen_addr.as_deref().unwrap_or("0.0.0.0:7946");
        let listen_addr = listen.parse().map_err(|_| {
            invalid(
                "gossip.listen_addr",
                format!(
                    "{} is not an address like 0.0.0.0:7946",
                    excerpt(listen, 64)
                ),
            )
        })?;
        let advertise_addr = match self.advertise_addr.as_deref() {
            None => None,
            Some(a) => match a.parse::<SocketAddr>() {
                Ok(addr) if !addr.ip().is_unspecified() && addr.port() != 0 => Some(addr),
                _ => {
                    return Err(invalid(
                        "gossip.advertise_addr",
                        format!(
                            "{} must be a concrete address like 10.0.0.7:7946",
                            excerpt(a, 64)
                        ),
                    ))
                }
            },
        };
        let seeds = self.seeds.unwrap_or_default();
        for seed in &seeds {
            let ok = seed
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(invalid(
                    "gossip.seeds",
                    format!("{} is not host:port", excerpt(seed, 64)),
                ));
            }
        }
        let cluster_id = self.cluster_id.unwrap_or_else(|| "maxwell".into());
        check_name("gossip.cluster_id", &cluster_id)?;
        Ok(GossipConfig {
            preset,
            listen_addr,
            advertise_addr,
            seeds,
            cluster_id,
            interval,
            phi_threshold,
            dead_grace: ms(
                "gossip.dead_grace_ms",
                self.dead_grace_ms,
                grace,
                1_000,
                30 * 86_400_000,
            )?,
            report_ttl,
            max_clock_skew: ms(
                "gossip.max_clock_skew_ms",
                self.max_clock_skew_ms,
                5_000,
                0,
                3_600_000,
            )?,
            max_report_age: ms(
                "gossip.max_report_age_ms",
                self.max_report_age_ms,
                60_000,
                1_000,
                86_400_000,
            )?,
            allowlist: self.allowlist,
        })
    }
}
