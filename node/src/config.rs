//! Agent configuration: a TOML file, `--set KEY=VALUE` and the daily flags,
//! merged into one raw form and validated once into [`Config`], whose
//! fields cannot be wrong.
//!
//! This module owns only the top-level fields and the composition: each
//! section is owned, with its defaults and checks, by the module or crate
//! that uses it (`[sensors]`/`[power]`/`[emulated]`: [`crate::sensors::config`];
//! `[gossip]`: [`crate::mesh::config`]; `[guests]`: [`crate::guests::config`];
//! `[api]`: [`crate::http::auth`]; `[pricing]`: `maxwell_pricing`). A bad
//! value produces one [`ConfigError`] naming the field and the problem.

pub use crate::check::ConfigError;
use crate::check::{check_name, invalid};
use crate::fsutil::excerpt;
use crate::guests::config::{GuestsConfig, RawGuests};
use crate::mesh::config::{GossipConfig, RawGossip};
use crate::sensors::config::{
    EmulatedParams, PowerConfig, RawEmulated, RawPower, RawSensors, SensorConfig,
};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default HTTP address: loopback only, like node_exporter behind a proxy.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7070";
/// Default data directory, where the host key lives.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/maxwell";

/// The file's shape (and the flags' target): everything optional, nothing trusted.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub name: Option<String>,
    pub rack: Option<String>,
    pub slot: Option<u32>,
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<String>,
    /// Log filter, e.g. `info` or `maxwell_node=debug` (reloaded on SIGHUP).
    pub log_level: Option<String>,
    #[serde(default)]
    pub api: crate::http::RawApi,
    #[serde(default)]
    pub sensors: RawSensors,
    #[serde(default)]
    pub power: RawPower,
    #[serde(default)]
    pub emulated: RawEmulated,
    #[serde(default)]
    pub gossip: RawGossip,
    #[serde(default)]
    pub guests: RawGuests,
    /// The guest market (`docs/market.md`); every field has a default.
    #[serde(default)]
    pub market: crate::market::config::RawMarket,
    /// The offer endpoint (`docs/placement.md`).
    #[serde(default)]
    pub p2p: crate::p2p::config::RawP2p,
    /// How submissions are placed (`docs/placement.md`).
    #[serde(default)]
    pub placement: crate::p2p::config::RawPlacement,
    /// The price law (`docs/pricing.md`); every field has a default.
    #[serde(default)]
    pub pricing: maxwell_pricing::PriceConfig,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Human name of this node (default: the host name).
    pub name: String,
    /// Rack this host sits in.
    pub rack: String,
    /// Slot (rack unit) in the rack, counted from the bottom.
    pub slot: u16,
    /// Where the host key and state live.
    pub data_dir: PathBuf,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The log filter from the file, if any (a `--log-level` flag wins).
    pub log_level: Option<String>,
    /// Who may use the HTTP API, and its limits.
    pub api: crate::http::ApiConfig,
    /// Sensor reading.
    pub sensors: SensorConfig,
    /// Power cap selection.
    pub power: PowerConfig,
    /// The emulated model's parameters.
    pub emulated: EmulatedParams,
    /// Gossip.
    pub gossip: GossipConfig,
    /// Guests (the vmm adapter).
    pub guests: GuestsConfig,
    /// The guest market and its ledger.
    pub market: crate::market::config::MarketSettings,
    /// The offer endpoint.
    pub p2p: crate::p2p::config::P2pConfig,
    /// How submissions are placed.
    pub placement: crate::p2p::config::PlacementConfig,
    /// The price law, validated.
    pub pricing: maxwell_pricing::PriceParams,
}

impl Config {
    /// What the node core is told of this node.
    pub fn core(&self, admission: maxwell_core::Admission) -> maxwell_core::CoreConfig {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        maxwell_core::CoreConfig {
            position: maxwell_types::Position::new(self.rack.clone(), self.slot),
            default_critical: self.sensors.default_critical,
            pricing: self.pricing.clone(),
            read_every_ms: ms(self.sensors.interval),
            // Arrivals wake the agent at once; this tick ages reports and surveys guests.
            observe_every_ms: ms(self.gossip.probe_interval),
            stuck_after_ms: ms(crate::sensors::reader::stuck_after(self.sensors.interval)),
            report_ttl_ms: ms(self.gossip.report_ttl),
            // The leave is pushed to every member at once; the linger lets
            // the datagrams go out (and a relay round pass), no more.
            leave_linger_ms: ms(self.gossip.interval * 3).min(1_000),
            admission,
            publish: maxwell_core::PublishPolicy {
                min_gap_ms: ms(self.gossip.publish_min_gap),
                heartbeat_ms: ms(self.gossip.heartbeat),
                deadband: true,
                reprice_on_arrival: true,
            },
            admit_moved_every_ms: self.placement.moves.admit_every_ms,
        }
    }
}

impl RawConfig {
    /// Reads and parses a TOML file; errors name the line.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = read_config_text(path)?;
        Self::from_toml(&text).map_err(|(line, message)| ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            message,
        })
    }

    /// Reads the file (if any), then applies `--set section.field=value`
    /// overrides (so every field, the price law's included, can be set from
    /// the command line) and then the flags, each the field it spells.
    pub fn load(path: Option<&Path>, sets: &[String], flags: &[Flag]) -> Result<Self, ConfigError> {
        let from_file = match path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        if sets.is_empty() && flags.is_empty() {
            return Ok(from_file);
        }
        let text = match path {
            Some(p) => read_config_text(p)?,
            None => String::new(),
        };
        let set_err = |set: &str, message: String| ConfigError::Set {
            set: set.to_string(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| set_err("", e.message().into()))?;
        for set in sets {
            apply_set(&mut table, set).map_err(|m| set_err(set, m))?;
        }
        for f in flags {
            put(&mut table, f.key, f.value.clone()).map_err(|m| set_err(f.key, m))?;
        }
        toml::Value::Table(table).try_into::<Self>().map_err(|e| {
            let mut given: Vec<String> = sets.to_vec();
            given.extend(flags.iter().map(|f| format!("{} {}", f.flag, f.value)));
            set_err(&given.join(" "), e.message().replace('\n', " "))
        })
    }

    /// Parses TOML text; on error returns the 1-based line and a one-line message.
    pub fn from_toml(text: &str) -> Result<Self, (usize, String)> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            (line, e.message().replace('\n', " "))
        })
    }

    /// Validates into a [`Config`].
    pub fn validate(self) -> Result<Config, ConfigError> {
        let name = match self.name {
            Some(n) => n,
            None => default_node_name(),
        };
        check_name("name", &name)?;
        let rack = self.rack.unwrap_or_else(|| "default".to_string());
        check_name("rack", &rack)?;
        let slot = match self.slot {
            None => 0,
            Some(s) => u16::try_from(s)
                .ok()
                .filter(|s| *s <= 1000)
                .ok_or_else(|| invalid("slot", format!("{s} is not a rack slot (0 to 1000)")))?,
        };
        let http = self.http_addr.as_deref().unwrap_or(DEFAULT_HTTP_ADDR);
        let http_addr = http.parse().map_err(|_| {
            invalid(
                "http_addr",
                format!(
                    "{} is not an address like 127.0.0.1:7070",
                    excerpt(http, 64)
                ),
            )
        })?;
        let gossip = self.gossip.validate()?;
        if let Some(level) = &self.log_level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| invalid("log_level", format!("{}: {e}", excerpt(level, 64))))?;
        }
        Ok(Config {
            name,
            rack,
            slot,
            data_dir: self
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            api: self.api.validate(http_addr)?,
            http_addr,
            log_level: self.log_level,
            sensors: self.sensors.validate()?,
            power: self.power.validate()?,
            emulated: self.emulated.validate()?,
            p2p: self.p2p.validate(gossip.listen_addr)?,
            placement: self.placement.validate()?,
            gossip,
            guests: self.guests.validate()?,
            market: self.market.validate()?,
            pricing: self
                .pricing
                .validate()
                .map_err(|e| invalid("pricing", e.to_string()))?,
        })
    }
}

/// A config file's text: a regular file (a FIFO is refused, not waited on;
/// SIGHUP reads it on the agent's loop) of at most 1 MiB.
fn read_config_text(path: &Path) -> Result<String, ConfigError> {
    crate::fsutil::read_text(path, 1 << 20, crate::fsutil::Links::Follow).map_err(|source| {
        ConfigError::Read {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A command-line flag that spells one config field.
#[derive(Debug, Clone)]
pub struct Flag {
    /// The flag, as typed (for errors).
    pub flag: &'static str,
    /// The field's dotted name.
    pub key: &'static str,
    /// Its value.
    pub value: toml::Value,
}

/// Puts `value` (TOML, or a bare string) at the dotted `key` of `table`.
fn apply_set(table: &mut toml::Table, set: &str) -> Result<(), String> {
    let (key, value) = set
        .split_once('=')
        .ok_or("expected KEY=VALUE, e.g. pricing.relief_gain=0.9")?;
    let value: toml::Value = match format!("v = {value}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(value.into())),
        Err(_) => toml::Value::String(value.into()),
    };
    put(table, key, value)
}

/// Puts `value` at the dotted `key` of `table`.
fn put(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.trim().split('.').collect();
    let last = parts.pop().filter(|l| !l.is_empty()).ok_or("empty key")?;
    let mut here = table;
    for part in parts {
        let entry = here
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        here = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    here.insert(last.to_string(), value);
    Ok(())
}

/// The host name, cleaned to what a node name may hold.
pub(crate) fn default_node_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    if name.is_empty() {
        "maxwell".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests;
