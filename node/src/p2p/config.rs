//! The `[p2p]` and `[placement]` config sections, owned by the offer
//! endpoint and by submission. Each default is declared once, in `validate`.

use crate::check::{celsius, invalid, ConfigError};
use crate::fsutil::excerpt;
use maxwell_core::{MoveParams, PlaceParams};
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// The endpoint's default TCP port (gossip is 7946/udp, the API 7070/tcp).
pub const DEFAULT_PORT: u16 = 7948;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawP2p {
    pub listen_addr: Option<String>,
    pub offer_timeout_ms: Option<u64>,
    pub mdns: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlacement {
    pub choices: Option<u64>,
    pub max_offers: Option<u64>,
    pub hot_margin_celsius: Option<f64>,
    pub move_margin_milli: Option<u64>,
    pub move_after_ms: Option<u64>,
    pub max_moves_per_minute: Option<u64>,
    pub move_cooldown_ms: Option<u64>,
    pub move_admit_every_ms: Option<u64>,
    pub move_full_load_rise_celsius: Option<f64>,
}

/// Validated placement settings: where submissions go, and when guests
/// move away from heat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacementConfig {
    pub place: PlaceParams,
    pub moves: MoveParams,
}

/// Validated endpoint settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct P2pConfig {
    /// Where offers are taken (TCP).
    pub listen_addr: SocketAddr,
    /// How long an offer may take, from dialling to the target's answer.
    pub offer_timeout: Duration,
    /// Find seeds on the network segment by mDNS (off by default).
    pub mdns: bool,
}

impl RawP2p {
    /// Validates the section. The listen address defaults to the gossip
    /// address's IP and port 7948, or port 0 when gossip's port is 0 (a
    /// test or a demo asking the OS for ports).
    pub fn validate(self, gossip_listen: SocketAddr) -> Result<P2pConfig, ConfigError> {
        let listen_addr = match self.listen_addr.as_deref() {
            Some(text) => text.parse().map_err(|_| {
                invalid(
                    "p2p.listen_addr",
                    format!("{} is not an address like 0.0.0.0:7948", excerpt(text, 64)),
                )
            })?,
            None => {
                let port = if gossip_listen.port() == 0 {
                    0
                } else {
                    DEFAULT_PORT
                };
                SocketAddr::new(gossip_listen.ip(), port)
            }
        };
        let ms = self.offer_timeout_ms.unwrap_or(10_000);
        if !(100..=600_000).contains(&ms) {
            return Err(invalid(
                "p2p.offer_timeout_ms",
                format!("{ms} is outside 100 to 600000"),
            ));
        }
        Ok(P2pConfig {
            listen_addr,
            offer_timeout: Duration::from_millis(ms),
            mdns: self.mdns.unwrap_or(false),
        })
    }
}

impl RawPlacement {
    /// Validates the section; the defaults are the core's
    /// ([`PlaceParams::DEFAULT`], [`MoveParams::DEFAULT`]).
    pub fn validate(self) -> Result<PlacementConfig, ConfigError> {
        let count = |field, v: Option<u64>, default: u64| match v.unwrap_or(default) {
            n @ 1..=16 => Ok(n as usize),
            n => Err(invalid(field, format!("{n} is outside 1 to 16"))),
        };
        let within = |field, v: Option<u64>, default: u64, (lo, hi): (u64, u64)| match v
            .unwrap_or(default)
        {
            n if (lo..=hi).contains(&n) => Ok(n),
            n => Err(invalid(field, format!("{n} is outside {lo} to {hi}"))),
        };
        let (dp, dm) = (PlaceParams::DEFAULT, MoveParams::DEFAULT);
        let moves = MoveParams {
            margin_milli: within(
                "placement.move_margin_milli",
                self.move_margin_milli,
                dm.margin_milli,
                (1, 1_000_000),
            )?,
            after_ms: within(
                "placement.move_after_ms",
                self.move_after_ms,
                dm.after_ms,
                (0, 3_600_000),
            )?,
            max_per_minute: within(
                "placement.max_moves_per_minute",
                self.max_moves_per_minute,
                dm.max_per_minute as u64,
                (0, 60),
            )? as usize,
            cooldown_ms: within(
                "placement.move_cooldown_ms",
                self.move_cooldown_ms,
                dm.cooldown_ms,
                (0, 86_400_000),
            )?,
            admit_every_ms: within(
                "placement.move_admit_every_ms",
                self.move_admit_every_ms,
                dm.admit_every_ms,
                (0, 3_600_000),
            )?,
            full_load_rise: celsius(
                "placement.move_full_load_rise_celsius",
                self.move_full_load_rise_celsius
                    .unwrap_or(dm.full_load_rise.0 as f64 / 1000.0),
                0.0,
                150.0,
            )?,
        };
        let place = PlaceParams {
            choices: count("placement.choices", self.choices, dp.choices as u64)?,
            max_offers: count(
                "placement.max_offers",
                self.max_offers,
                dp.max_offers as u64,
            )?,
            hot_margin: celsius(
                "placement.hot_margin_celsius",
                self.hot_margin_celsius
                    .unwrap_or(dp.hot_margin.0 as f64 / 1000.0),
                0.0,
                100.0,
            )?,
        };
        Ok(PlacementConfig { place, moves })
    }
}
