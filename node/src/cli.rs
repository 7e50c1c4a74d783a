//! Command-line interface: `agent`, `status`, `members`, `guests`; `demo`
//! and `bench` are passed on to the `maxwell-tools` binary.

use crate::config::{
    CapSource, Config, ConfigError, GossipPreset, GuestBackendKind, RawConfig, SensorMode,
    DEFAULT_DATA_DIR, DEFAULT_HTTP_ADDR,
};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Maxwell: a leaderless thermal gossip mesh for data-centre racks.
#[derive(Debug, Parser)]
#[command(name = "maxwell", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (e.g. `info`, `debug`, `maxwell_node=debug`); RUST_LOG also works.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent on this host until SIGINT or SIGTERM.
    Agent(Box<AgentArgs>),
    /// Show this node's status (sensors, summary) from a running agent.
    Status(QueryArgs),
    /// List the members this node knows.
    Members(QueryArgs),
    /// Start a local demo mesh of agents on loopback with emulated sensors and show a live view (runs `maxwell-tools demo`).
    Demo(Forward),
    /// List this node's guests, or start, pause, resume, cap or kill one.
    Guests(GuestsArgs),
    /// Run a benchmark and print one table (runs `maxwell-tools bench`).
    Bench(Forward),
}

/// A command that lives in the `maxwell-tools` binary, not in the agent:
/// its arguments are passed on untouched.
#[derive(Debug, Clone, Args)]
pub struct Forward {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

/// `maxwell agent`: every config field has a flag; flags override the file.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// TOML config file (see docs/operations.md).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Any config field by its dotted name, e.g. `--set pricing.relief_gain=0.9` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Node name [default: host name].
    #[arg(long)]
    pub name: Option<String>,
    /// Rack this host sits in [default: default].
    #[arg(long)]
    pub rack: Option<String>,
    /// Slot in the rack, from the bottom [default: 0].
    #[arg(long)]
    pub slot: Option<u32>,
    /// Data dir, for the host key [default: /var/lib/maxwell].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:7070].
    #[arg(long)]
    pub http: Option<String>,
    /// Sensor source.
    #[arg(long, value_enum)]
    pub sensors: Option<SensorMode>,
    /// Sensor period in milliseconds [default: 1000].
    #[arg(long)]
    pub sensor_interval_ms: Option<u64>,
    /// hwmon class directory [default: /sys/class/hwmon].
    #[arg(long)]
    pub hwmon_root: Option<PathBuf>,
    /// powercap class directory [default: /sys/class/powercap].
    #[arg(long)]
    pub powercap_root: Option<PathBuf>,
    /// Limit for temperature channels without `_crit`, in °C [default: 95].
    #[arg(long)]
    pub default_critical_celsius: Option<f64>,
    /// hwmon chip name to leave out of the summary (repeatable).
    #[arg(long = "exclude-chip")]
    pub exclude_chips: Vec<String>,
    /// Power budget in watts, a cap source of last resort.
    #[arg(long)]
    pub power_budget_w: Option<f64>,
    /// Cap sources in order of preference [default: hwmon,rapl,config].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub cap_sources: Vec<CapSource>,
    #[command(flatten)]
    pub emulated: EmulatedArgs,
    #[command(flatten)]
    pub gossip: GossipArgs,
    #[command(flatten)]
    pub guests: GuestArgs,
}

/// Guest options (config section `[guests]`).
#[derive(Debug, Clone, Args)]
pub struct GuestArgs {
    /// Guest backend [default: auto].
    #[arg(long, value_enum)]
    pub guest_backend: Option<GuestBackendKind>,
    /// Directory of `*.toml`/`*.json` guest specs started with the agent.
    #[arg(long)]
    pub guest_specs_dir: Option<PathBuf>,
}

/// Gossip options (config section `[gossip]`).
#[derive(Debug, Clone, Args)]
pub struct GossipArgs {
    /// Timing preset [default: lan].
    #[arg(long, value_enum)]
    pub gossip_preset: Option<GossipPreset>,
    /// UDP address to gossip on [default: 0.0.0.0:7946].
    #[arg(long)]
    pub gossip_listen: Option<String>,
    /// Address peers should use [default: the listen address, or the local address towards the first seed].
    #[arg(long)]
    pub gossip_advertise: Option<String>,
    /// A seed peer, host:port (repeatable).
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// Cluster name; peers of another cluster are refused [default: maxwell].
    #[arg(long)]
    pub cluster_id: Option<String>,
    /// Gossip round period, ms [preset].
    #[arg(long)]
    pub gossip_interval_ms: Option<u64>,
    /// Phi-accrual threshold for declaring a peer dead [preset].
    #[arg(long)]
    pub phi_threshold: Option<f64>,
    /// How long a dead peer is remembered, ms [preset].
    #[arg(long)]
    pub dead_grace_ms: Option<u64>,
    /// Age after which a peer's report is stale, ms [preset].
    #[arg(long)]
    pub report_ttl_ms: Option<u64>,
    /// How far ahead of our clock a report may be, ms [default: 5000].
    #[arg(long)]
    pub max_clock_skew_ms: Option<u64>,
    /// Oldest report accepted, ms [default: 60000].
    #[arg(long)]
    pub max_report_age_ms: Option<u64>,
    /// File of admitted public keys, one hex key per line.
    #[arg(long)]
    pub allowlist: Option<PathBuf>,
}

/// The emulated model's parameters (config section `[emulated]`).
#[derive(Debug, Clone, Args)]
pub struct EmulatedArgs {
    /// Emulated idle power, W [default: 100].
    #[arg(long)]
    pub emulated_idle_w: Option<f64>,
    /// Emulated peak power, W [default: 350].
    #[arg(long)]
    pub emulated_peak_w: Option<f64>,
    /// Emulated hardware power cap, W [default: 320].
    #[arg(long)]
    pub emulated_cap_w: Option<f64>,
    /// Emulated inlet air temperature, °C [default: 25].
    #[arg(long)]
    pub emulated_inlet_celsius: Option<f64>,
    /// Emulated die-to-air thermal resistance, K/W [default: 0.17].
    #[arg(long)]
    pub emulated_thermal_resistance_c_per_w: Option<f64>,
    /// Emulated thermal time constant R·C, s [default: 30].
    #[arg(long)]
    pub emulated_time_constant_s: Option<f64>,
    /// Emulated critical temperature, °C [default: 95].
    #[arg(long)]
    pub emulated_critical_celsius: Option<f64>,
    /// Synthetic load added to the real CPU utilisation, 0 to 1 [default: 0].
    #[arg(long)]
    pub emulated_extra_load: Option<f64>,
}

impl AgentArgs {
    /// Reads the file (if any), applies the flags, validates once.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut raw = RawConfig::load(self.config.as_deref(), &self.set)?;
        macro_rules! flag {
            ($field:expr, $value:expr) => {
                if let Some(v) = $value {
                    $field = Some(v);
                }
            };
        }
        flag!(raw.name, self.name);
        flag!(raw.rack, self.rack);
        flag!(raw.slot, self.slot);
        flag!(raw.data_dir, self.data_dir);
        flag!(raw.http_addr, self.http);
        flag!(raw.sensors.source, self.sensors);
        flag!(raw.sensors.interval_ms, self.sensor_interval_ms);
        flag!(raw.sensors.hwmon_root, self.hwmon_root);
        flag!(raw.sensors.powercap_root, self.powercap_root);
        flag!(
            raw.sensors.default_critical_celsius,
            self.default_critical_celsius
        );
        if !self.exclude_chips.is_empty() {
            raw.sensors.exclude_chips = Some(self.exclude_chips);
        }
        flag!(raw.power.budget_w, self.power_budget_w);
        if !self.cap_sources.is_empty() {
            raw.power.cap_sources = Some(self.cap_sources);
        }
        let (e, r) = (self.emulated, &mut raw.emulated);
        flag!(r.idle_w, e.emulated_idle_w);
        flag!(r.peak_w, e.emulated_peak_w);
        flag!(r.cap_w, e.emulated_cap_w);
        flag!(r.inlet_celsius, e.emulated_inlet_celsius);
        flag!(
            r.thermal_resistance_c_per_w,
            e.emulated_thermal_resistance_c_per_w
        );
        flag!(r.time_constant_s, e.emulated_time_constant_s);
        flag!(r.critical_celsius, e.emulated_critical_celsius);
        flag!(r.extra_load, e.emulated_extra_load);
        let (g, r) = (self.gossip, &mut raw.gossip);
        flag!(r.preset, g.gossip_preset);
        flag!(r.listen_addr, g.gossip_listen);
        flag!(r.advertise_addr, g.gossip_advertise);
        if !g.seeds.is_empty() {
            r.seeds = Some(g.seeds);
        }
        flag!(r.cluster_id, g.cluster_id);
        flag!(r.interval_ms, g.gossip_interval_ms);
        flag!(r.phi_threshold, g.phi_threshold);
        flag!(r.dead_grace_ms, g.dead_grace_ms);
        flag!(r.report_ttl_ms, g.report_ttl_ms);
        flag!(r.max_clock_skew_ms, g.max_clock_skew_ms);
        flag!(r.max_report_age_ms, g.max_report_age_ms);
        flag!(r.allowlist, g.allowlist);
        flag!(raw.guests.backend, self.guests.guest_backend);
        flag!(raw.guests.specs_dir, self.guests.guest_specs_dir);
        raw.validate()
    }
}

/// Where the CLI finds the API token.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The agent's data dir, whose `api.token` the CLI presents.
    #[arg(long = "data-dir", default_value = DEFAULT_DATA_DIR, global = true)]
    pub token_data_dir: PathBuf,
    /// A file holding the API token (instead of DATA_DIR/api.token).
    #[arg(long, env = "MAXWELL_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
}

impl TokenArgs {
    /// The API at `addr`, with the token if one can be read.
    pub fn api(&self, addr: SocketAddr) -> Result<crate::client::Api, crate::client::ClientError> {
        Ok(crate::client::Api {
            addr,
            token: crate::client::read_token(self.token_file.as_deref(), &self.token_data_dir)?,
        })
    }
}

/// Talking to a running agent.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The agent's HTTP address.
    #[arg(long, default_value = DEFAULT_HTTP_ADDR)]
    pub http: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub token: TokenArgs,
}

/// `maxwell guests`: a table of this node's guests, or one action.
#[derive(Debug, Args)]
pub struct GuestsArgs {
    /// The agent's HTTP address.
    #[arg(long, default_value = DEFAULT_HTTP_ADDR, global = true)]
    pub http: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(flatten)]
    pub token: TokenArgs,
    #[command(subcommand)]
    pub action: Option<GuestAction>,
}

/// One action on the agent's guests.
#[derive(Debug, Subcommand)]
pub enum GuestAction {
    /// Start a guest from a spec file (TOML, or JSON if it ends in `.json`).
    Start {
        /// The spec file.
        file: PathBuf,
    },
    /// Pause a guest (every vCPU parked).
    Pause {
        /// Guest id, e.g. `g3` or `3`.
        id: String,
    },
    /// Resume a paused guest.
    Resume {
        /// Guest id, e.g. `g3` or `3`.
        id: String,
    },
    /// Kill a guest and free everything it held.
    Kill {
        /// Guest id, e.g. `g3` or `3`.
        id: String,
    },
    /// Set a guest's CPU cap, a fraction of one core per vCPU in (0, 1].
    Cap {
        /// Guest id, e.g. `g3` or `3`.
        id: String,
        /// Fraction of one core per vCPU, e.g. 0.3.
        fraction: f64,
    },
}
