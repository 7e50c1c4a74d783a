//! The maxwell agent: the one binary every rack host runs.
//!
//! Role: the async driver and the operator surface. It reads the host's
//! sensors ([`sensors`]), holds the host identity ([`identity`]), serves the
//! HTTP API ([`http`], [`metrics`]) and, as the other crates land, drives the
//! gossip and pricing state machines and the vmm adapter.
//!
//! Contracts:
//! - Configuration is validated once at start ([`config`]); a bad value is one
//!   clear error naming the field, and the process exits non-zero.
//! - Sensor reading never stops the agent: a missing, faulty, unreadable or
//!   garbage channel is skipped, logged once, counted in
//!   `maxwell_sensor_read_errors_total` and listed in `/v1/status`.
//! - The host key is never replaced silently.

pub mod agent;
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
pub mod mesh;
pub mod render;
pub mod sensors;
