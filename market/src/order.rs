//! What a guest brings to the market, and the market's own settings, each
//! validated once into values that cannot be wrong.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How price may treat a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Never paused or killed by price; when it cannot pay it runs on at
    /// the critical floor and owes what it could not pay (see `docs/market.md`).
    Critical,
    /// Paused while outbid, resumed when the price falls back.
    #[default]
    Pausable,
    /// Killed when outbid (a spot guest).
    Evictable,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Critical => "critical",
            Class::Pausable => "pausable",
            Class::Evictable => "evictable",
        }
    }
}

/// A guest's terms, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub name: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Milli-credits per CPU-second, ≥ 1.
    pub bid_milli: u64,
    /// The starting credit, milli-credits.
    pub wallet_milli: u64,
    pub class: Class,
    /// The most it may use, milli-cores per vCPU, in 1..=1000.
    pub max_cpu_milli: u32,
}

/// A bad order or setting: which field and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {why}")]
pub struct Invalid {
    pub field: &'static str,
    pub why: String,
}

fn invalid(field: &'static str, why: impl Into<String>) -> Invalid {
    Invalid {
        field,
        why: why.into(),
    }
}

pub use maxwell_types::units::MAX_CREDIT_MILLI;

impl Order {
    /// Checks the terms; `max_cpu` is a fraction of one core per vCPU.
    pub fn new(
        name: &str,
        vcpus: u32,
        memory_mib: u64,
        bid_milli: u64,
        wallet_milli: u64,
        class: Class,
        max_cpu: Option<f64>,
    ) -> Result<Self, Invalid> {
        if bid_milli == 0 || bid_milli > MAX_CREDIT_MILLI {
            return Err(invalid(
                "bid_milli",
                format!("{bid_milli} is not in 1..={MAX_CREDIT_MILLI}"),
            ));
        }
        if wallet_milli > MAX_CREDIT_MILLI {
            return Err(invalid(
                "wallet_milli",
                format!("{wallet_milli} is above {MAX_CREDIT_MILLI}"),
            ));
        }
        if vcpus == 0 {
            return Err(invalid("vcpus", "a guest has at least one vCPU"));
        }
        let max_cpu_milli = match max_cpu {
            None => 1000,
            Some(f) if f.is_finite() && f > 0.0 && f <= 1.0 => ((f * 1000.0).round() as u32).max(1),
            Some(f) => {
                return Err(invalid(
                    "max_cpu",
                    format!("{f} is not a fraction of one core in (0, 1]"),
                ))
            }
        };
        Ok(Self {
            name: name.to_owned(),
            vcpus,
            memory_mib,
            bid_milli,
            wallet_milli,
            class,
            max_cpu_milli,
        })
    }

    /// An order as it came over the wire, checked as [`Order::new`] checks
    /// one: what a peer sends is not trusted to have been made by it.
    pub fn check(&self) -> Result<(), Invalid> {
        if !(1..=1000).contains(&self.max_cpu_milli) {
            return Err(invalid(
                "max_cpu_milli",
                format!("{} is not in 1..=1000", self.max_cpu_milli),
            ));
        }
        let max_cpu = f64::from(self.max_cpu_milli) / 1000.0;
        let made = Self::new(
            &self.name,
            self.vcpus,
            self.memory_mib,
            self.bid_milli,
            self.wallet_milli,
            self.class,
            Some(max_cpu),
        )?;
        debug_assert_eq!(made.max_cpu_milli, self.max_cpu_milli);
        Ok(())
    }

    /// The most the guest may use in all, milli-cores.
    pub fn cap_mcores(&self) -> u64 {
        u64::from(self.vcpus) * u64::from(self.max_cpu_milli)
    }
}

/// The market's settings (the agent's `[market]` section, validated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketConfig {
    /// Market period, ms.
    pub tick_ms: u64,
    /// How long a guest may fail to pay its rent before it is killed, ms.
    pub grace_ms: u64,
    /// A paused guest resumes once its bid is this far above the price,
    /// thousandths (hysteresis).
    pub resume_margin_permille: u64,
    /// A paused guest stays paused at least this long, ms; paused again
    /// within [`Self::resume_hold_max_ms`] of resuming, twice as long as
    /// the last time, up to that (back-off: pausing a guest drops its host's
    /// draw, and with it the price, by more than any margin, so without a
    /// hold a guest near its bid flaps every few seconds).
    #[serde(default)]
    pub resume_hold_ms: u64,
    /// The longest hold, ms.
    #[serde(default)]
    pub resume_hold_max_ms: u64,
    /// Rent on held memory, milli-credits per GiB-second.
    pub memory_rent_milli_per_gib_s: u64,
    /// The Landauer tax on released memory, milli-credits per GiB.
    pub release_tax_milli_per_gib: u64,
    /// A broke critical guest runs on at this share, milli-cores per vCPU.
    pub critical_floor_milli: u32,
    /// How often each guest gets a signed receipt, ms.
    pub receipt_every_ms: u64,
    /// The capacity curve (see [`crate::capacity`]).
    pub capacity: crate::capacity::Curve,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1_000,
            grace_ms: 10_000,
            resume_margin_permille: 50,
            resume_hold_ms: 10_000,
            resume_hold_max_ms: 300_000,
            memory_rent_milli_per_gib_s: 10,
            release_tax_milli_per_gib: 50,
            critical_floor_milli: 50,
            receipt_every_ms: 10_000,
            capacity: crate::capacity::Curve::default(),
        }
    }
}

impl MarketConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), Invalid> {
        if !(100..=60_000).contains(&self.tick_ms) {
            return Err(invalid(
                "tick_ms",
                format!("{} is not in 100..=60000", self.tick_ms),
            ));
        }
        if self.grace_ms < self.tick_ms {
            return Err(invalid("grace_ms", "must be at least one tick"));
        }
        if self.resume_margin_permille > 1_000 {
            return Err(invalid("resume_margin_permille", "must be at most 1000"));
        }
        if self.resume_hold_max_ms < self.resume_hold_ms || self.resume_hold_max_ms > 3_600_000 {
            return Err(invalid(
                "resume_hold_max_ms",
                "must be at least resume_hold_ms and at most 3600000",
            ));
        }
        if self.receipt_every_ms < self.tick_ms {
            return Err(invalid("receipt_every_ms", "must be at least one tick"));
        }
        if !(1..=1000).contains(&self.critical_floor_milli) {
            return Err(invalid("critical_floor_milli", "must be in 1..=1000"));
        }
        // Holding a GiB must cost more than releasing it within a minute,
        // or releasing (and re-taking) memory pays: see docs/market.md.
        if self.release_tax_milli_per_gib > self.memory_rent_milli_per_gib_s.saturating_mul(60) {
            return Err(invalid(
                "release_tax_milli_per_gib",
                format!(
                    "{} is more than a minute of rent on the GiB ({} × 60): guests would hoard memory",
                    self.release_tax_milli_per_gib, self.memory_rent_milli_per_gib_s
                ),
            ));
        }
        self.capacity.validate()
    }
}
