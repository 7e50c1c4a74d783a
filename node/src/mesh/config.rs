//! The `[gossip]` config section, owned by the mesh driver: addresses,
//! seeds, the cluster key, timing presets and what the verifier accepts.
//! Each default is declared once, in `validate` (or its preset).

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
    /// A rack LAN: 800 ms probes, 1.6 s suspicion, digests every 15 s, a
    /// heartbeat a minute, dead nodes kept 1 h.
    Lan,
    /// Tests and demos on one machine: everything about four times faster,
    /// dead nodes kept 60 s.
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
    pub cluster_key_file: Option<PathBuf>,
    pub interval_ms: Option<u64>,
    pub probe_interval_ms: Option<u64>,
    pub probe_timeout_ms: Option<u64>,
    pub suspicion_ms: Option<u64>,
    pub sync_interval_ms: Option<u64>,
    pub heartbeat_ms: Option<u64>,
    pub publish_min_gap_ms: Option<u64>,
    pub dead_grace_ms: Option<u64>,
    pub report_ttl_ms: Option<u64>,
    pub max_clock_skew_ms: Option<u64>,
    pub max_report_age_ms: Option<u64>,
    pub allowlist: Option<PathBuf>,
    pub upper_listen_addr: Option<String>,
    pub upper_advertise_addr: Option<String>,
    pub upper_seeds: Option<Vec<String>>,
}

/// The tiered mesh's part of the section (set `gossip.upper_listen_addr`
/// to run it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpperConfig {
    pub listen_addr: SocketAddr,
    /// What other carriers are told; `None`: the rack address's host, with
    /// the upper port.
    pub advertise_addr: Option<SocketAddr>,
    /// `host:port` of carriers' upper sockets (a seed always carries).
    pub seeds: Vec<String>,
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
    /// The shared secret; `None` means `DATA_DIR/cluster.key`.
    pub cluster_key_file: Option<PathBuf>,
    /// Gossip round: pending updates go out, members are re-read.
    pub interval: Duration,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub suspicion: Duration,
    pub sync_interval: Duration,
    /// Our report is re-signed and sent at least this often.
    pub heartbeat: Duration,
    /// A change that is not urgent is sent at most this often.
    pub publish_min_gap: Duration,
    pub dead_grace: Duration,
    pub report_ttl: Duration,
    pub max_clock_skew: Duration,
    pub max_report_age: Duration,
    pub allowlist: Option<PathBuf>,
    /// The tiered mesh; `None` runs one flat mesh.
    pub upper: Option<UpperConfig>,
}

impl RawGossip {
    /// Validates the section.
    pub fn validate(self) -> Result<GossipConfig, ConfigError> {
        let preset = self.preset.unwrap_or(GossipPreset::Lan);
        let p = match preset {
            GossipPreset::Lan => Preset {
                interval: 200,
                probe: 800,
                probe_timeout: 250,
                suspicion: 1_600,
                sync: 15_000,
                heartbeat: 60_000,
                gap: 1_000,
                grace: 3_600_000,
                ttl: 180_000,
            },
            GossipPreset::Test => Preset {
                interval: 50,
                probe: 200,
                probe_timeout: 60,
                suspicion: 600,
                sync: 2_000,
                heartbeat: 5_000,
                gap: 250,
                grace: 60_000,
                ttl: 15_000,
            },
        };
        let ms = |field, v: Option<u64>, default: u64, lo: u64, hi: u64| {
            let v = v.unwrap_or(default);
            if (lo..=hi).contains(&v) {
                Ok(Duration::from_millis(v))
            } else {
                Err(invalid(field, format!("{v} is outside {lo} to {hi}")))
            }
        };
        let interval = ms(
            "gossip.interval_ms",
            self.interval_ms,
            p.interval,
            10,
            60_000,
        )?;
        let probe_interval = ms(
            "gossip.probe_interval_ms",
            self.probe_interval_ms,
            p.probe,
            50,
            60_000,
        )?;
        let probe_timeout = ms(
            "gossip.probe_timeout_ms",
            self.probe_timeout_ms,
            p.probe_timeout,
            10,
            60_000,
        )?;
        // An indirect probe takes four hops; it must fit in the period.
        if probe_timeout * 3 > probe_interval {
            return Err(invalid(
                "gossip.probe_timeout_ms",
                "must be at most a third of gossip.probe_interval_ms".into(),
            ));
        }
        let suspicion = ms(
            "gossip.suspicion_ms",
            self.suspicion_ms,
            p.suspicion,
            100,
            600_000,
        )?;
        // A suspect needs a round to hear of it and one to refute it.
        if suspicion < probe_interval * 2 {
            return Err(invalid(
                "gossip.suspicion_ms",
                "must be at least two gossip.probe_interval_ms".into(),
            ));
        }
        let sync_interval = ms(
            "gossip.sync_interval_ms",
            self.sync_interval_ms,
            p.sync,
            100,
            3_600_000,
        )?;
        let heartbeat = ms(
            "gossip.heartbeat_ms",
            self.heartbeat_ms,
            p.heartbeat,
            100,
            3_600_000,
        )?;
        let publish_min_gap = ms(
            "gossip.publish_min_gap_ms",
            self.publish_min_gap_ms,
            p.gap,
            0,
            60_000,
        )?;
        let report_ttl = ms(
            "gossip.report_ttl_ms",
            self.report_ttl_ms,
            p.ttl,
            100,
            3_600_000,
        )?;
        if report_ttl < heartbeat * 2 {
            return Err(invalid(
                "gossip.report_ttl_ms",
                "must be at least two heartbeats (gossip.heartbeat_ms)".into(),
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
        let advertise_addr = concrete("gossip.advertise_addr", self.advertise_addr.as_deref())?;
        let seeds = host_ports("gossip.seeds", self.seeds.unwrap_or_default())?;
        let upper = match self.upper_listen_addr.as_deref() {
            None => {
                if self.upper_seeds.is_some() || self.upper_advertise_addr.is_some() {
                    return Err(invalid(
                        "gossip.upper_seeds",
                        "the upper tier needs gossip.upper_listen_addr".into(),
                    ));
                }
                None
            }
            Some(l) => Some(UpperConfig {
                listen_addr: l.parse().map_err(|_| {
                    invalid(
                        "gossip.upper_listen_addr",
                        format!("{} is not an address like 0.0.0.0:7947", excerpt(l, 64)),
                    )
                })?,
                advertise_addr: concrete(
                    "gossip.upper_advertise_addr",
                    self.upper_advertise_addr.as_deref(),
                )?,
                seeds: host_ports("gossip.upper_seeds", self.upper_seeds.unwrap_or_default())?,
            }),
        };
        let cluster_id = self.cluster_id.unwrap_or_else(|| "maxwell".into());
        check_name("gossip.cluster_id", &cluster_id)?;
        let max_report_age = ms(
            "gossip.max_report_age_ms",
            self.max_report_age_ms,
            p.ttl * 2,
            1_000,
            86_400_000,
        )?;
        if max_report_age <= heartbeat {
            return Err(invalid(
                "gossip.max_report_age_ms",
                "must be longer than gossip.heartbeat_ms (a quiet node's report would be refused)"
                    .into(),
            ));
        }
        Ok(GossipConfig {
            preset,
            listen_addr,
            advertise_addr,
            seeds,
            cluster_id,
            cluster_key_file: self.cluster_key_file,
            interval,
            probe_interval,
            probe_timeout,
            suspicion,
            sync_interval,
            heartbeat,
            publish_min_gap,
            dead_grace: ms(
                "gossip.dead_grace_ms",
                self.dead_grace_ms,
                p.grace,
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
            max_report_age,
            allowlist: self.allowlist,
            upper,
        })
    }
}

/// An address to advertise: concrete, with a port.
fn concrete(field: &'static str, a: Option<&str>) -> Result<Option<SocketAddr>, ConfigError> {
    match a {
        None => Ok(None),
        Some(a) => match a.parse::<SocketAddr>() {
            Ok(addr) if !addr.ip().is_unspecified() && addr.port() != 0 => Ok(Some(addr)),
            _ => Err(invalid(
                field,
                format!(
                    "{} must be a concrete address like 10.0.0.7:7946",
                    excerpt(a, 64)
                ),
            )),
        },
    }
}

/// Seeds: `host:port` each (resolved at start).
fn host_ports(field: &'static str, seeds: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for seed in &seeds {
        let ok = seed
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !ok {
            return Err(invalid(
                field,
                format!("{} is not host:port", excerpt(seed, 64)),
            ));
        }
    }
    Ok(seeds)
}

/// A preset's defaults, ms.
struct Preset {
    interval: u64,
    probe: u64,
    probe_timeout: u64,
    suspicion: u64,
    sync: u64,
    heartbeat: u64,
    gap: u64,
    grace: u64,
    ttl: u64,
}
