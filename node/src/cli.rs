//! Command-line interface: `agent`, `status`, `members`, `demo`.

use crate::config::{Config, ConfigError, RawConfig, SensorMode, DEFAULT_HTTP_ADDR};
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
    Agent(AgentArgs),
    /// Show this node's status (sensors, summary) from a running agent.
    Status(QueryArgs),
    /// List the members this node knows.
    Members(QueryArgs),
    /// Start a local demo mesh of agents on loopback with emulated sensors and show a live view.
    Demo(DemoArgs),
}

/// `maxwell agent`: every config field has a flag; flags override the file.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// TOML config file (see docs/operations.md).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
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
    /// Power budget in watts, a cap source of last resort.
    #[arg(long)]
    pub power_budget_w: Option<f64>,
}

impl AgentArgs {
    /// Reads the file (if any), applies the flags, validates once.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut raw = match &self.config {
            Some(path) => RawConfig::from_file(path)?,
            None => RawConfig::default(),
        };
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
        flag!(raw.power.budget_w, self.power_budget_w);
        raw.validate()
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
}

/// `maxwell demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Number of agents (1 to 50).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub nodes: u16,
    /// First HTTP port; agent k listens on base+k.
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// Stop after this many seconds [default: run until Ctrl-C].
    #[arg(long)]
    pub duration_s: Option<u64>,
    /// Refresh period of the view, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub refresh_ms: u64,
}
