//! Command-line interface: `agent`, `status`, `members`, `guests`; `demo`
//! and `bench` are passed on to the `maxwell-tools` binary.

use crate::config::{Config, ConfigError, Flag, RawConfig, DEFAULT_DATA_DIR, DEFAULT_HTTP_ADDR};
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
    /// Submit a guest to the mesh: it lands on a cool, cheap node (docs/placement.md).
    Submit(SubmitArgs),
    /// Move a running guest, with its wallet, to another node (docs/placement.md).
    Move(MoveArgs),
    /// Run a benchmark and print one table (runs `maxwell-tools bench`).
    Bench(Forward),
    /// A rack of agents in Docker containers, broken on a scenario's timeline (runs `maxwell-tools testbed`).
    Testbed(Forward),
    /// Check energy receipts offline against a node's public key.
    Receipts(ReceiptsArgs),
    /// Print a new cluster key: save it as `cluster.key` (mode 600) in the data dir of every host of one cluster.
    Keygen,
}

/// A command that lives in the `maxwell-tools` binary, not in the agent:
/// its arguments are passed on untouched.
#[derive(Debug, Clone, Args)]
pub struct Forward {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<std::ffi::OsString>,
}

/// `maxwell agent`. Every config field is settable by its dotted name
/// (`--set`); the few an operator uses daily also have a flag, which is only
/// a shorter spelling of that field (its default and its check are the
/// field's, declared once, in its section). Precedence: file, then `--set`,
/// then the flags.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// TOML config file (see docs/operations.md).
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Any config field by its dotted name, e.g. `--set pricing.relief_gain=0.9` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Node name (`name`).
    #[arg(long)]
    pub name: Option<String>,
    /// Rack this host sits in (`rack`).
    #[arg(long)]
    pub rack: Option<String>,
    /// Slot in the rack, from the bottom (`slot`).
    #[arg(long)]
    pub slot: Option<String>,
    /// Data dir: host key, API token, lock (`data_dir`).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// HTTP API address; port 0 picks one (`http_addr`).
    #[arg(long)]
    pub http: Option<String>,
    /// A seed peer, host:port, repeatable (`gossip.seeds`).
    #[arg(long = "seed")]
    pub seeds: Vec<String>,
    /// UDP address to gossip on; port 0 picks one (`gossip.listen_addr`).
    #[arg(long)]
    pub gossip_listen: Option<String>,
    /// Sensor source: auto, sysfs, libsensors or emulated (`sensors.source`).
    #[arg(long)]
    pub sensors: Option<String>,
    /// hwmon class directory (`sensors.hwmon_root`).
    #[arg(long)]
    pub hwmon_root: Option<String>,
    /// powercap class directory (`sensors.powercap_root`).
    #[arg(long)]
    pub powercap_root: Option<String>,
}

impl AgentArgs {
    /// The flags, each as the field it spells: `(flag, dotted key, value)`.
    fn flags(&self) -> Vec<Flag> {
        let text = |flag, key, v: &Option<String>| {
            v.as_ref().map(|v| Flag {
                flag,
                key,
                value: toml::Value::String(v.clone()),
            })
        };
        let mut flags: Vec<Flag> = [
            text("--name", "name", &self.name),
            text("--rack", "rack", &self.rack),
            text("--data-dir", "data_dir", &self.data_dir),
            text("--http", "http_addr", &self.http),
            text("--gossip-listen", "gossip.listen_addr", &self.gossip_listen),
            text("--sensors", "sensors.source", &self.sensors),
            text("--hwmon-root", "sensors.hwmon_root", &self.hwmon_root),
            text(
                "--powercap-root",
                "sensors.powercap_root",
                &self.powercap_root,
            ),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Some(slot) = &self.slot {
            // A number, if it is one: the field's own check says what a slot may be.
            let value = slot
                .parse::<i64>()
                .map_or_else(|_| toml::Value::String(slot.clone()), toml::Value::Integer);
            flags.push(Flag {
                flag: "--slot",
                key: "slot",
                value,
            });
        }
        if !self.seeds.is_empty() {
            let seeds = self.seeds.iter().cloned().map(toml::Value::String);
            flags.push(Flag {
                flag: "--seed",
                key: "gossip.seeds",
                value: toml::Value::Array(seeds.collect()),
            });
        }
        flags
    }

    /// Reads the file (if any), applies `--set` and the flags, validates once.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        RawConfig::load(self.config.as_deref(), &self.set, &self.flags())?.validate()
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

/// `maxwell submit FILE`.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The spec file (TOML, or JSON if it ends in `.json`), as for `maxwell guests start`.
    pub file: PathBuf,
    /// The agent to submit to (any node will do), and how to show the answer.
    #[command(flatten)]
    pub query: QueryArgs,
}

/// `maxwell move GUEST`.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The guest on this node (`g3` or `3`).
    pub guest: String,
    /// The member to move it to (name or id); by default one the node
    /// picks as it would place a submission.
    #[arg(long)]
    pub to: Option<String>,
    /// The agent the guest runs on, and how to show the answer.
    #[command(flatten)]
    pub query: QueryArgs,
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
    /// Top up a guest's wallet (milli-credits); recorded in the ledger.
    Fund {
        /// Guest id, e.g. `g3` or `3`.
        id: String,
        /// Milli-credits to add.
        amount: u64,
    },
    /// Change a guest's bid (milli-credits per CPU-second).
    Bid {
        /// Guest id, e.g. `g3` or `3`.
        id: String,
        /// Milli-credits per CPU-second.
        bid: u64,
    },
    /// Print a guest's signed receipts as JSON (check them with `maxwell receipts verify`).
    Receipts {
        /// Guest id, e.g. `g3` or `3`.
        id: String,
    },
}

/// `maxwell receipts`.
#[derive(Debug, Args)]
pub struct ReceiptsArgs {
    #[command(subcommand)]
    pub action: ReceiptsAction,
}

#[derive(Debug, Subcommand)]
pub enum ReceiptsAction {
    /// Verify a receipt or a chain (a JSON receipt or array, as `maxwell guests receipts` prints).
    Verify {
        /// The receipts file.
        file: PathBuf,
        /// The node's ed25519 public key: 64 hex digits, or a file holding them
        /// (`maxwell status --json` shows it as `public_key`).
        #[arg(long)]
        key: String,
    },
}
