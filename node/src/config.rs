//! Agent configuration: a TOML file and command-line flags, merged into one
//! raw form and validated once into [`Config`], whose fields cannot be wrong.
//!
//! Every option has a flag; a flag overrides the file. A bad value produces
//! one [`ConfigError`] naming the field and the problem.

use crate::fsutil::excerpt;
use maxwell_gossip::{MicroWatts, MilliCelsius};
use serde::Deserialize;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default HTTP address: loopback only, like node_exporter behind a proxy.
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7070";
/// Default data directory, where the host key lives.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/maxwell";

/// Errors from loading or validating configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped fields.
    #[error("config file {path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What the parser said, on one line.
        message: String,
    },
    /// A `--set KEY=VALUE` flag is malformed or names no field.
    #[error("flag --set {set}: {message}")]
    Set {
        /// The flag's argument.
        set: String,
        /// What is wrong.
        message: String,
    },
    /// A field holds a value outside what it may be.
    #[error("config field `{field}`: {problem}")]
    Invalid {
        /// The dotted field name, as in the file.
        field: &'static str,
        /// What is wrong and what is allowed.
        problem: String,
    },
}

/// Where sensor readings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SensorMode {
    /// Real sensors (sysfs) when any exist, else the emulated model.
    Auto,
    /// hwmon and RAPL through sysfs only.
    Sysfs,
    /// libsensors (needs the `libsensors` build feature) plus RAPL through sysfs.
    Libsensors,
    /// The emulated RC model driven by this host's real CPU utilisation.
    Emulated,
}

/// A place a power cap may come from, in the order the operator prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CapSource {
    /// A hwmon `power*_cap` (for example an ACPI power meter's cap).
    Hwmon,
    /// RAPL `constraint_0_power_limit_uw` summed over packages.
    Rapl,
    /// The configured `power.budget_w`.
    Config,
}

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
    /// The price law (`docs/pricing.md`); every field has a default.
    #[serde(default)]
    pub pricing: maxwell_pricing::PriceConfig,
}

/// Which guest backend the agent runs (config `guests.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GuestBackendKind {
    /// KVM where `/dev/kvm` works, else the process backend; if neither opens, guests are disabled.
    Auto,
    /// KVM guests; the agent refuses to start without a usable `/dev/kvm`.
    Kvm,
    /// Forked processes (no KVM needed).
    Process,
    /// No guests on this host.
    None,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuests {
    pub backend: Option<GuestBackendKind>,
    pub specs_dir: Option<PathBuf>,
    pub kernel_dir: Option<PathBuf>,
    pub cpu_fraction: Option<f64>,
    pub memory_fraction: Option<f64>,
}

/// Gossip timing presets: the defaults a deployment starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSensors {
    pub source: Option<SensorMode>,
    pub interval_ms: Option<u64>,
    pub hwmon_root: Option<PathBuf>,
    pub powercap_root: Option<PathBuf>,
    pub default_critical_celsius: Option<f64>,
    pub exclude_chips: Option<Vec<String>>,
    pub failed_channel_rise_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPower {
    pub budget_w: Option<f64>,
    pub cap_sources: Option<Vec<CapSource>>,
}

#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmulated {
    pub idle_w: Option<f64>,
    pub peak_w: Option<f64>,
    pub cap_w: Option<f64>,
    pub inlet_celsius: Option<f64>,
    pub thermal_resistance_c_per_w: Option<f64>,
    pub time_constant_s: Option<f64>,
    pub critical_celsius: Option<f64>,
    pub extra_load: Option<f64>,
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
    /// The price law, validated.
    pub pricing: maxwell_pricing::PriceParams,
}

impl Config {
    /// What the node core is told of this node.
    pub fn core(&self) -> maxwell_core::CoreConfig {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        maxwell_core::CoreConfig {
            position: maxwell_types::Position::new(self.rack.clone(), self.slot),
            default_critical: self.sensors.default_critical,
            pricing: self.pricing.clone(),
            read_every_ms: ms(self.sensors.interval),
            observe_every_ms: ms(self.gossip.interval),
            stuck_after_ms: ms(crate::sensors::reader::stuck_after(self.sensors.interval)),
            // Three rounds reach every peer of a LAN-sized mesh with high probability.
            leave_linger_ms: ms(self.gossip.interval * 3),
        }
    }
}

/// Validated guest settings.
#[derive(Debug, Clone)]
pub struct GuestsConfig {
    pub backend: GuestBackendKind,
    /// `*.toml`/`*.json` guest specs started with the agent; read at start.
    pub specs_dir: Option<PathBuf>,
    /// The only directory Linux guest kernels load from; `None`: no Linux guests.
    pub kernel_dir: Option<PathBuf>,
    /// Guests' vCPUs in all may be at most this many times the host's cores.
    pub cpu_fraction: f64,
    /// Guests' memory in all may be at most this fraction of the host's.
    pub memory_fraction: f64,
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

/// Validated sensor settings.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    pub mode: SensorMode,
    pub interval: Duration,
    pub hwmon_root: PathBuf,
    pub powercap_root: PathBuf,
    /// Limit used for a temperature channel that exposes no `_crit`.
    pub default_critical: MilliCelsius,
    /// hwmon chip names (the `name` file) left out of the summary.
    pub exclude_chips: Vec<String>,
    /// Time constant of the rise of a failed channel's held value toward its
    /// critical limit (docs/operations.md, "Failed sensors").
    pub failed_channel_rise: Duration,
}

/// Validated power settings.
#[derive(Debug, Clone)]
pub struct PowerConfig {
    pub budget: Option<MicroWatts>,
    /// Non-empty, without repeats.
    pub cap_sources: Vec<CapSource>,
}

/// Parameters of the emulated host (a lumped RC thermal model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmulatedParams {
    pub idle: MicroWatts,
    pub peak: MicroWatts,
    pub cap: MicroWatts,
    pub inlet: MilliCelsius,
    /// Kelvin per watt from die to inlet air.
    pub resistance_k_per_w: f64,
    /// R·C, in seconds.
    pub time_constant: Duration,
    pub critical: MilliCelsius,
    /// Synthetic utilisation added to the host's real one, in [0, 1].
    pub extra_load: f64,
}

impl Default for EmulatedParams {
    /// A 1U two-socket server: ~100 W idle, ~350 W peak, 25 °C inlet,
    /// about 85 °C at sustained peak, time constant 30 s, critical 95 °C.
    fn default() -> Self {
        Self {
            idle: MicroWatts::from_watts(100.0),
            peak: MicroWatts::from_watts(350.0),
            cap: MicroWatts::from_watts(320.0),
            inlet: MilliCelsius::from_celsius(25.0),
            resistance_k_per_w: 0.17,
            time_constant: Duration::from_secs(30),
            critical: MilliCelsius::from_celsius(95.0),
            extra_load: 0.0,
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

    /// Reads the file (if any) and applies `--set section.field=value`
    /// overrides, so that every field, including the price law's, has a flag.
    pub fn load(path: Option<&Path>, sets: &[String]) -> Result<Self, ConfigError> {
        let from_file = match path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        if sets.is_empty() {
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
        toml::Value::Table(table)
            .try_into::<Self>()
            .map_err(|e| set_err(&sets.join(" "), e.message().replace('\n', " ")))
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
            gossip: self.gossip.validate()?,
            guests: self.guests.validate()?,
            pricing: self
                .pricing
                .validate()
                .map_err(|e| invalid("pricing", e.to_string()))?,
        })
    }
}

impl RawGuests {
    fn validate(self) -> Result<GuestsConfig, ConfigError> {
        let backend = self.backend.unwrap_or(GuestBackendKind::Auto);
        if let Some(dir) = &self.specs_dir {
            if dir.as_os_str().is_empty() {
                return Err(invalid("guests.specs_dir", "must not be empty".into()));
            }
            if backend == GuestBackendKind::None {
                return Err(invalid(
                    "guests.specs_dir",
                    "is set but guests.backend is \"none\": choose a backend or drop the specs dir"
                        .into(),
                ));
            }
        }
        if let Some(dir) = &self.kernel_dir {
            if !dir.is_absolute() {
                return Err(invalid(
                    "guests.kernel_dir",
                    format!("{} must be an absolute path", dir.display()),
                ));
            }
        }
        let fraction = |field, v: Option<f64>, default: f64, hi: f64| {
            let v = v.unwrap_or(default);
            if v.is_finite() && v > 0.0 && v <= hi {
                Ok(v)
            } else {
                Err(invalid(field, format!("{v} is outside (0, {hi}]")))
            }
        };
        Ok(GuestsConfig {
            backend,
            specs_dir: self.specs_dir,
            kernel_dir: self.kernel_dir,
            cpu_fraction: fraction("guests.cpu_fraction", self.cpu_fraction, 4.0, 64.0)?,
            memory_fraction: fraction("guests.memory_fraction", self.memory_fraction, 0.5, 1.0)?,
        })
    }
}

impl RawSensors {
    fn validate(self) -> Result<SensorConfig, ConfigError> {
        let interval_ms = self.interval_ms.unwrap_or(1000);
        let interval_ms = NonZeroU64::new(interval_ms)
            .filter(|ms| (100..=3_600_000).contains(&ms.get()))
            .ok_or_else(|| {
                invalid(
                    "sensors.interval_ms",
                    format!("{interval_ms} is outside 100 to 3600000"),
                )
            })?;
        let crit = celsius(
            "sensors.default_critical_celsius",
            self.default_critical_celsius.unwrap_or(95.0),
            20.0,
            150.0,
        )?;
        Ok(SensorConfig {
            mode: self.source.unwrap_or(SensorMode::Auto),
            interval: Duration::from_millis(interval_ms.get()),
            hwmon_root: self.hwmon_root.unwrap_or_else(|| "/sys/class/hwmon".into()),
            powercap_root: self
                .powercap_root
                .unwrap_or_else(|| "/sys/class/powercap".into()),
            default_critical: crit,
            exclude_chips: self.exclude_chips.unwrap_or_default(),
            failed_channel_rise: {
                let s = self.failed_channel_rise_s.unwrap_or(60.0);
                if !(s.is_finite() && (1.0..=86_400.0).contains(&s)) {
                    return Err(invalid(
                        "sensors.failed_channel_rise_s",
                        format!("{s} is outside 1 to 86400"),
                    ));
                }
                Duration::from_secs_f64(s)
            },
        })
    }
}

impl RawPower {
    fn validate(self) -> Result<PowerConfig, ConfigError> {
        let budget = self
            .budget_w
            .map(|w| watts("power.budget_w", w, 1.0, 1_000_000.0))
            .transpose()?;
        let sources = self
            .cap_sources
            .unwrap_or_else(|| vec![CapSource::Hwmon, CapSource::Rapl, CapSource::Config]);
        if sources.is_empty() {
            return Err(invalid(
                "power.cap_sources",
                "must name at least one source".into(),
            ));
        }
        for (i, s) in sources.iter().enumerate() {
            if sources[..i].contains(s) {
                return Err(invalid(
                    "power.cap_sources",
                    format!("{s:?} is listed twice"),
                ));
            }
        }
        Ok(PowerConfig {
            budget,
            cap_sources: sources,
        })
    }
}

impl RawEmulated {
    fn validate(self) -> Result<EmulatedParams, ConfigError> {
        self.validate_over(EmulatedParams::default())
    }

    /// Validates, taking absent fields from `d` (used to change a running
    /// emulated host through the API).
    pub fn validate_over(self, d: EmulatedParams) -> Result<EmulatedParams, ConfigError> {
        let idle = opt_watts("emulated.idle_w", self.idle_w, d.idle, 0.0, 100_000.0)?;
        let peak = opt_watts("emulated.peak_w", self.peak_w, d.peak, 1.0, 100_000.0)?;
        if peak <= idle {
            return Err(invalid(
                "emulated.peak_w",
                "must be greater than emulated.idle_w".into(),
            ));
        }
        let r = self
            .thermal_resistance_c_per_w
            .unwrap_or(d.resistance_k_per_w);
        if !(r.is_finite() && r > 0.0 && r <= 10.0) {
            return Err(invalid(
                "emulated.thermal_resistance_c_per_w",
                format!("{r} is outside (0, 10]"),
            ));
        }
        let tau = self
            .time_constant_s
            .unwrap_or(d.time_constant.as_secs_f64());
        if !(tau.is_finite() && (0.1..=3600.0).contains(&tau)) {
            return Err(invalid(
                "emulated.time_constant_s",
                format!("{tau} is outside 0.1 to 3600"),
            ));
        }
        let extra = self.extra_load.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&extra) {
            return Err(invalid(
                "emulated.extra_load",
                format!("{extra} is outside 0 to 1"),
            ));
        }
        Ok(EmulatedParams {
            idle,
            peak,
            cap: opt_watts("emulated.cap_w", self.cap_w, d.cap, 1.0, 100_000.0)?,
            inlet: celsius(
                "emulated.inlet_celsius",
                self.inlet_celsius.unwrap_or(d.inlet.as_celsius()),
                -20.0,
                60.0,
            )?,
            resistance_k_per_w: r,
            time_constant: Duration::from_secs_f64(tau),
            critical: celsius(
                "emulated.critical_celsius",
                self.critical_celsius.unwrap_or(d.critical.as_celsius()),
                20.0,
                150.0,
            )?,
            extra_load: extra,
        })
    }
}

impl RawGossip {
    fn validate(self) -> Result<GossipConfig, ConfigError> {
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

pub(crate) fn invalid(field: &'static str, problem: String) -> ConfigError {
    ConfigError::Invalid { field, problem }
}

fn celsius(field: &'static str, c: f64, lo: f64, hi: f64) -> Result<MilliCelsius, ConfigError> {
    if c.is_finite() && (lo..=hi).contains(&c) {
        Ok(MilliCelsius::from_celsius(c))
    } else {
        Err(invalid(field, format!("{c} °C is outside {lo} to {hi}")))
    }
}

fn watts(field: &'static str, w: f64, lo: f64, hi: f64) -> Result<MicroWatts, ConfigError> {
    if w.is_finite() && (lo..=hi).contains(&w) {
        Ok(MicroWatts::from_watts(w))
    } else {
        Err(invalid(field, format!("{w} W is outside {lo} to {hi}")))
    }
}

fn opt_watts(
    field: &'static str,
    w: Option<f64>,
    default: MicroWatts,
    lo: f64,
    hi: f64,
) -> Result<MicroWatts, ConfigError> {
    w.map_or(Ok(default), |w| watts(field, w, lo, hi))
}

/// Names and racks go into reports, tables and metric labels: keep them short and printable.
fn check_name(field: &'static str, value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{} must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
                excerpt(value, 64)
            ),
        ))
    }
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
