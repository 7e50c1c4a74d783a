//! The maxwell agent: the one binary every rack host runs.
//!
//! Role: the thin driver around `maxwell_core::NodeCore` and the operator
//! surface. The core decides; this crate carries out: it reads the host's
//! sensors ([`sensors`]), holds the host identity ([`identity`], [`datadir`]),
//! gossips through sealed SWIM datagrams ([`mesh`]), runs guests over `maxwell_vmm`
//! ([`guests`]), serves the HTTP API and metrics ([`http`]) and the CLI
//! ([`cli`], [`entry`]). [`agent`] is the loop that joins them.
//!
//! Layers, each using only those before it (no import cycle): [`clock`],
//! [`fsutil`], [`check`]; [`datadir`], [`identity`]; [`sensors`], [`mesh`],
//! [`guests`], [`p2p`] (each owning its config section); [`board`]; [`http`]; [`config`] (the
//! composition); [`logging`], [`render`], [`client`], [`cli`],
//! [`guests_cli`]; [`agent`]; [`entry`].
//!
//! Contracts:
//! - Configuration is validated once at start ([`config`]); a bad value is one
//!   clear error naming the field, and the process exits non-zero.
//! - Sensor reading never stops the agent: a missing, faulty, unreadable or
//!   garbage channel is skipped, logged once, counted in
//!   `maxwell_sensor_read_errors_total` and listed in `/v1/status`.
//! - The host key is never replaced silently.
//! - Nothing from the gossip port is believed, answered or logged per
//!   datagram unless it is sealed under the cluster key.

pub mod agent;
pub mod board;
pub mod check;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod entry;
pub mod fsutil;
pub mod guests;
pub mod guests_cli;
pub mod http;
pub mod identity;
pub mod logging;
pub mod market;
pub mod mesh;
pub mod p2p;
pub mod render;
pub mod sensors;
