//! Guest specs: what the operator writes (TOML or JSON), validated once into
//! types that cannot be wrong.
//!
//! ```toml
//! name = "batch-7"
//! kind = "workload"      # or "linux"
//! vcpus = 2
//! memory_mib = 64
//! cap = 0.3              # fraction of one core per vCPU, (0, 1]; default 1
//! payload = "hash"       # workload: "hash" | "count"
//! stop_after = 0         # workload: stop after this many blocks (0 = never)
//! # kernel = "vmlinux-6.1"        # linux: vmlinux (ELF) or bzImage, inside the kernel dir
//! # cmdline = "console=ttyS0"     # linux
//! bid_milli = 2000       # market: milli-credits per CPU-second (absent: not in the market)
//! wallet_milli = 600000  # market: starting credit
//! class = "pausable"     # market: "critical" | "pausable" | "evictable"
//! max_cpu = 0.5          # market: the most per vCPU, (0, 1]
//! ```

use std::fmt;
use std::num::NonZeroU8;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, VmmError};
use maxwell_types::units::MAX_CREDIT_MILLI;

/// Most vCPUs one guest may have.
pub const MAX_VCPUS: u8 = 64;
/// Largest guest memory accepted by the spec (64 GiB); `start` also checks
/// the host's physical memory.
pub const MAX_MEMORY_MIB: u32 = 64 * 1024;
/// Smallest guest memory (the workload layout needs 1 MiB).
pub const MIN_MEMORY_MIB: u32 = 1;
/// Longest guest name.
pub const MAX_NAME_LEN: usize = 64;

/// A CPU cap: a fraction of one core per vCPU, in (0, 1]. `1.0` is uncapped.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize)]
#[serde(into = "f64")]
pub struct CpuCap(f64);

impl CpuCap {
    /// No cap: a whole core per vCPU.
    pub const FULL: CpuCap = CpuCap(1.0);

    /// A cap, if `fraction` is finite and in (0, 1].
    pub fn new(fraction: f64) -> Result<Self> {
        if fraction.is_finite() && fraction > 0.0 && fraction <= 1.0 {
            Ok(CpuCap(fraction))
        } else {
            Err(VmmError::invalid(
                "cap",
                format!("{fraction} is not a fraction of one core in (0, 1]"),
            ))
        }
    }

    /// The fraction, in (0, 1].
    pub fn fraction(self) -> f64 {
        self.0
    }

    /// Whether this is "no cap".
    pub fn is_full(self) -> bool {
        self.0 >= 1.0
    }
}

impl From<CpuCap> for f64 {
    fn from(c: CpuCap) -> f64 {
        c.0
    }
}

impl fmt::Display for CpuCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.0}%", self.0 * 100.0)
    }
}

/// Guest memory in MiB, within [`MIN_MEMORY_MIB`, `MAX_MEMORY_MIB`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(into = "u32")]
pub struct MemoryMib(u32);

impl MemoryMib {
    /// Checked constructor.
    pub fn new(mib: u64) -> Result<Self> {
        if mib < u64::from(MIN_MEMORY_MIB) {
            return Err(VmmError::invalid(
                "memory_mib",
                format!("{mib} MiB is too small (minimum {MIN_MEMORY_MIB} MiB)"),
            ));
        }
        if mib > u64::from(MAX_MEMORY_MIB) {
            return Err(VmmError::invalid(
                "memory_mib",
                format!("{mib} MiB is too large (maximum {MAX_MEMORY_MIB} MiB)"),
            ));
        }
        Ok(MemoryMib(mib as u32))
    }

    /// MiB.
    pub fn mib(self) -> u32 {
        self.0
    }

    /// Bytes.
    pub fn bytes(self) -> u64 {
        u64::from(self.0) << 20
    }
}

impl From<MemoryMib> for u32 {
    fn from(m: MemoryMib) -> u32 {
        m.0
    }
}

/// Which loop the built-in ring-3 payload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadLoop {
    /// xorshift64 hash chain: three shifts and three xors per step.
    Hash,
    /// Plain counting loop: one add per step.
    Count,
}

/// The built-in workload: a 64-bit ring-3 loop that counts finished blocks
/// of work in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Which loop.
    pub payload: PayloadLoop,
    /// Each vCPU stops (and the guest exits once all have) after this many
    /// blocks; `None` runs forever.
    pub stop_after: Option<std::num::NonZeroU64>,
}

/// A Linux kernel booted with a serial console (KVM backend only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LinuxBoot {
    /// The only directory kernels load from (the agent's `guests.kernel_dir`).
    #[serde(skip)]
    pub kernel_dir: PathBuf,
    /// vmlinux (ELF) or bzImage: a relative path inside `kernel_dir`,
    /// opened by [`crate::kernel_dir::open_beneath`].
    pub kernel: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
}

/// What the guest runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum GuestKind {
    /// The built-in payload.
    Workload(Workload),
    /// A Linux kernel.
    Linux(LinuxBoot),
}

impl GuestKind {
    /// What it runs, as reported.
    pub fn name(&self) -> crate::backend::KindName {
        match self {
            GuestKind::Workload(_) => crate::backend::KindName::Workload,
            GuestKind::Linux(_) => crate::backend::KindName::Linux,
        }
    }
}

/// A validated guest spec. Build one with [`GuestSpec::from_toml`],
/// [`GuestSpec::from_json`], [`RawGuestSpec::validate`] or
/// [`GuestSpec::workload`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuestSpec {
    /// Operator-facing name (not necessarily unique).
    pub name: String,
    /// What runs.
    pub kind: GuestKind,
    /// Number of vCPUs.
    pub vcpus: NonZeroU8,
    /// Guest memory.
    pub memory: MemoryMib,
    /// CPU cap per vCPU.
    pub cap: CpuCap,
    /// Its terms in the host's market, if it joins it (the adapter only
    /// carries them: the market is the agent's).
    pub terms: Option<MarketTerms>,
}

/// How price may treat a guest (the market's `class`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestClass {
    Critical,
    Pausable,
    Evictable,
}

/// A guest's terms in the market, checked for form; the market checks
/// them again against its own limits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MarketTerms {
    /// Milli-credits per CPU-second, ≥ 1.
    pub bid_milli: u64,
    /// The starting credit, milli-credits.
    pub wallet_milli: u64,
    pub class: GuestClass,
    /// The most it may use, a fraction of one core per vCPU.
    pub max_cpu: Option<CpuCap>,
}

/// The spec as written; every field is checked by [`RawGuestSpec::validate`].
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuestSpec {
    /// Name; defaults to the kind.
    #[serde(default)]
    pub name: Option<String>,
    /// `"workload"` or `"linux"`.
    pub kind: String,
    /// vCPUs, 1..=64.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Cap, (0, 1]; default 1 (uncapped).
    #[serde(default)]
    pub cap: Option<f64>,
    /// Workload loop (required for `workload`).
    #[serde(default)]
    pub payload: Option<PayloadLoop>,
    /// Workload: blocks per vCPU before stopping; 0 or absent = never.
    #[serde(default)]
    pub stop_after: Option<u64>,
    /// Linux: kernel image, relative to the kernel dir (required for `linux`).
    #[serde(default)]
    pub kernel: Option<PathBuf>,
    /// Linux: command line.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Market: the bid, milli-credits per CPU-second. A guest with no bid
    /// is not in the market (it runs at `cap` and pays nothing).
    #[serde(default)]
    pub bid_milli: Option<u64>,
    /// Market: the starting credit, milli-credits (default 0).
    #[serde(default)]
    pub wallet_milli: Option<u64>,
    /// Market: "critical", "pausable" (default) or "evictable".
    #[serde(default)]
    pub class: Option<GuestClass>,
    /// Market: the most it may use, a fraction of one core per vCPU.
    #[serde(default)]
    pub max_cpu: Option<f64>,
}

impl RawGuestSpec {
    /// Check every field and build a [`GuestSpec`], with no kernel dir: a
    /// Linux guest is refused.
    pub fn validate(&self) -> Result<GuestSpec> {
        self.validate_in(None)
    }

    /// Check every field and build a [`GuestSpec`]. A Linux kernel must be
    /// a file inside `kernel_dir`; that is the only file this touches.
    pub fn validate_in(&self, kernel_dir: Option<&Path>) -> Result<GuestSpec> {
        let kind = match self.kind.as_str() {
            "workload" => GuestKind::Workload(self.workload()?),
            "linux" => GuestKind::Linux(self.linux(kernel_dir)?),
            other => {
                return Err(VmmError::invalid(
                    "kind",
                    format!(
                        "unknown kind {:?} (expected \"workload\" or \"linux\")",
                        shown(other)
                    ),
                ))
            }
        };
        let name = self.name.clone().unwrap_or_else(|| self.kind.clone());
        check_name(&name)?;
        Ok(GuestSpec {
            name,
            kind,
            vcpus: check_vcpus(self.vcpus)?,
            memory: MemoryMib::new(self.memory_mib)?,
            cap: CpuCap::new(self.cap.unwrap_or(1.0))?,
            terms: self.terms()?,
        })
    }

    fn terms(&self) -> Result<Option<MarketTerms>> {
        let Some(bid_milli) = self.bid_milli else {
            if self.wallet_milli.is_some() || self.class.is_some() || self.max_cpu.is_some() {
                return Err(VmmError::invalid(
                    "bid_milli",
                    "wallet_milli, class and max_cpu are market terms: a guest in the market needs a bid_milli",
                ));
            }
            return Ok(None);
        };
        if bid_milli == 0 {
            return Err(VmmError::invalid(
                "bid_milli",
                "a bid is at least 1 milli-credit per CPU-second",
            ));
        }
        // The market's bounds, checked here so that nothing starts first.
        for (field, v) in [
            ("bid_milli", Some(bid_milli)),
            ("wallet_milli", self.wallet_milli),
        ] {
            if let Some(v) = v.filter(|v| *v > MAX_CREDIT_MILLI) {
                return Err(VmmError::invalid(
                    field,
                    format!("{v} is above {MAX_CREDIT_MILLI}"),
                ));
            }
        }
        let max_cpu = match self.max_cpu {
            Some(f) => Some(CpuCap::new(f).map_err(|_| {
                VmmError::invalid(
                    "max_cpu",
                    format!("{f} is not a fraction of one core in (0, 1]"),
                )
            })?),
            None => None,
        };
        Ok(Some(MarketTerms {
            bid_milli,
            wallet_milli: self.wallet_milli.unwrap_or(0),
            class: self.class.unwrap_or(GuestClass::Pausable),
            max_cpu,
        }))
    }

    fn workload(&self) -> Result<Workload> {
        if self.kernel.is_some() || self.cmdline.is_some() {
            return Err(VmmError::invalid(
                "kernel",
                "kernel/cmdline only apply to kind = \"linux\"",
            ));
        }
        let payload = self.payload.ok_or_else(|| {
            VmmError::invalid(
                "payload",
                "a workload guest needs a payload (\"hash\" or \"count\")",
            )
        })?;
        let stop_after = self.stop_after.and_then(std::num::NonZeroU64::new);
        Ok(Workload {
            payload,
            stop_after,
        })
    }

    fn linux(&self, kernel_dir: Option<&Path>) -> Result<LinuxBoot> {
        if self.payload.is_some() || self.stop_after.is_some() {
            return Err(VmmError::invalid(
                "payload",
                "payload/stop_after only apply to kind = \"workload\"",
            ));
        }
        let kernel = self
            .kernel
            .clone()
            .ok_or_else(|| VmmError::invalid("kernel", "a linux guest needs a kernel"))?;
        let Some(dir) = kernel_dir else {
            return Err(VmmError::invalid(
                "kernel",
                "linux guests are off on this host: the agent has no guests.kernel_dir",
            ));
        };
        if !crate::kernel_dir::is_plain_relative(&kernel) {
            return Err(VmmError::invalid(
                "kernel",
                "must name a file inside guests.kernel_dir (a relative path, no \"..\")",
            ));
        }
        if let Err(e) = crate::kernel_dir::open_beneath(dir, &kernel) {
            return Err(VmmError::invalid(
                "kernel",
                format!("{} in guests.kernel_dir: {e}", kernel.display()),
            ));
        }
        let cmdline = self
            .cmdline
            .clone()
            .unwrap_or_else(|| "console=ttyS0 reboot=k panic=1 nomodules".to_owned());
        Ok(LinuxBoot {
            kernel_dir: dir.to_path_buf(),
            kernel,
            cmdline,
        })
    }
}

fn check_vcpus(n: u32) -> Result<NonZeroU8> {
    u8::try_from(n)
        .ok()
        .filter(|v| *v <= MAX_VCPUS)
        .and_then(NonZeroU8::new)
        .ok_or_else(|| VmmError::invalid("vcpus", format!("{n} vCPUs is not in 1..={MAX_VCPUS}")))
}

/// At most 64 characters of a bad value, for an error message.
fn shown(value: &str) -> String {
    value.chars().take(MAX_NAME_LEN).collect()
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(VmmError::invalid(
            "name",
            format!(
                "{:?}: use 1..={MAX_NAME_LEN} of [A-Za-z0-9._-]",
                shown(name)
            ),
        ))
    }
}

impl GuestSpec {
    /// Parse and validate a TOML spec (no Linux guests).
    pub fn from_toml(text: &str) -> Result<Self> {
        Self::from_toml_in(text, None)
    }

    /// Parse and validate a TOML spec whose kernel, if any, is in `kernel_dir`.
    pub fn from_toml_in(text: &str, kernel_dir: Option<&Path>) -> Result<Self> {
        let raw: RawGuestSpec =
            toml::from_str(text).map_err(|e| VmmError::SpecParse(e.to_string()))?;
        raw.validate_in(kernel_dir)
    }

    /// Parse and validate a JSON spec (no Linux guests).
    pub fn from_json(text: &str) -> Result<Self> {
        Self::from_json_in(text, None)
    }

    /// Parse and validate a JSON spec whose kernel, if any, is in `kernel_dir`.
    pub fn from_json_in(text: &str, kernel_dir: Option<&Path>) -> Result<Self> {
        let raw: RawGuestSpec =
            serde_json::from_str(text).map_err(|e| VmmError::SpecParse(e.to_string()))?;
        raw.validate_in(kernel_dir)
    }

    /// A workload spec from code (bench, tests, defaults).
    pub fn workload(name: &str, vcpus: u32, memory_mib: u64, payload: PayloadLoop) -> Result<Self> {
        RawGuestSpec {
            name: Some(name.to_owned()),
            kind: "workload".to_owned(),
            vcpus,
            memory_mib,
            payload: Some(payload),
            ..RawGuestSpec::default()
        }
        .validate()
    }

    /// The spec as it would be written, which [`RawGuestSpec::validate_in`]
    /// turns back into this one: what a migration sends, for the target to
    /// check against its own limits and kernel dir.
    pub fn to_raw(&self) -> RawGuestSpec {
        let mut raw = RawGuestSpec {
            name: Some(self.name.clone()),
            kind: self.kind.name().as_str().to_owned(),
            vcpus: u32::from(self.vcpus.get()),
            memory_mib: u64::from(self.memory.mib()),
            cap: Some(self.cap.fraction()),
            ..RawGuestSpec::default()
        };
        match &self.kind {
            GuestKind::Workload(w) => {
                raw.payload = Some(w.payload);
                raw.stop_after = w.stop_after.map(std::num::NonZeroU64::get);
            }
            GuestKind::Linux(l) => {
                raw.kernel = Some(l.kernel.clone());
                raw.cmdline = Some(l.cmdline.clone());
            }
        }
        if let Some(t) = self.terms {
            raw.bid_milli = Some(t.bid_milli);
            raw.wallet_milli = Some(t.wallet_milli);
            raw.class = Some(t.class);
            raw.max_cpu = t.max_cpu.map(CpuCap::fraction);
        }
        raw
    }

    /// The same spec with another cap.
    pub fn with_cap(mut self, cap: CpuCap) -> Self {
        self.cap = cap;
        self
    }

    /// The same workload spec stopping after `blocks` blocks per vCPU.
    pub fn with_stop_after(mut self, blocks: u64) -> Self {
        if let GuestKind::Workload(w) = &mut self.kind {
            w.stop_after = std::num::NonZeroU64::new(blocks);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_written_back_validates_to_itself() {
        let text = r#"{"name":"w","kind":"workload","vcpus":2,"memory_mib":4,"cap":0.5,
            "payload":"count","stop_after":9,"bid_milli":7,"wallet_milli":3,
            "class":"evictable","max_cpu":0.25}"#;
        let spec = GuestSpec::from_json(text).expect("valid");
        assert_eq!(spec.to_raw().validate().expect("valid"), spec);
        let plain = GuestSpec::workload("p", 1, 2, PayloadLoop::Hash).expect("valid");
        assert_eq!(plain.to_raw().validate().expect("valid"), plain);
    }

    #[test]
    fn toml_workload_parses() {
        let s = GuestSpec::from_toml(
            "name='a'\nkind='workload'\nvcpus=2\nmemory_mib=16\ncap=0.3\npayload='hash'",
        )
        .expect("valid");
        assert_eq!(s.vcpus.get(), 2);
        assert_eq!(s.memory.bytes(), 16 << 20);
        assert_eq!(s.cap.fraction(), 0.3);
        assert_eq!(s.kind.name().as_str(), "workload");
    }

    #[test]
    fn json_and_errors() {
        let ok = GuestSpec::from_json(
            r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"count"}"#,
        );
        assert!(ok.is_ok());
        let unknown = GuestSpec::from_json(
            r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","x":1}"#,
        );
        assert!(matches!(unknown, Err(VmmError::SpecParse(_))));
        for (field, json) in [
            (
                "memory_mib",
                r#"{"kind":"workload","vcpus":1,"memory_mib":0,"payload":"hash"}"#,
            ),
            (
                "memory_mib",
                r#"{"kind":"workload","vcpus":1,"memory_mib":99999999,"payload":"hash"}"#,
            ),
            (
                "vcpus",
                r#"{"kind":"workload","vcpus":0,"memory_mib":4,"payload":"hash"}"#,
            ),
            (
                "vcpus",
                r#"{"kind":"workload","vcpus":300,"memory_mib":4,"payload":"hash"}"#,
            ),
            ("payload", r#"{"kind":"workload","vcpus":1,"memory_mib":4}"#),
            (
                "cap",
                r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"hash","cap":0}"#,
            ),
            (
                "cap",
                r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"hash","cap":1.5}"#,
            ),
            ("kind", r#"{"kind":"windows","vcpus":1,"memory_mib":4}"#),
            ("kernel", r#"{"kind":"linux","vcpus":1,"memory_mib":64}"#),
            (
                "kernel",
                r#"{"kind":"linux","vcpus":1,"memory_mib":64,"kernel":"vmlinux"}"#,
            ),
            (
                "kernel",
                r#"{"kind":"linux","vcpus":1,"memory_mib":64,"kernel":"/nonexistent/vmlinux"}"#,
            ),
            (
                "name",
                r#"{"name":"a b","kind":"workload","vcpus":1,"memory_mib":4,"payload":"hash"}"#,
            ),
            // The market's bounds, refused before anything starts.
            (
                "bid_milli",
                r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"hash","bid_milli":1000000000000001}"#,
            ),
            (
                "wallet_milli",
                r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"hash","bid_milli":1,"wallet_milli":1000000000000001}"#,
            ),
        ] {
            match GuestSpec::from_json(json) {
                Err(VmmError::InvalidSpec { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: expected InvalidSpec({field}), got {other:?}"),
            }
        }
    }

    #[test]
    fn cap_bounds() {
        assert!(CpuCap::new(f64::NAN).is_err());
        assert!(CpuCap::new(-0.1).is_err());
        assert!(CpuCap::new(1.0).is_ok_and(|c| c.is_full()));
        assert_eq!(
            CpuCap::new(0.3).map(|c| c.to_string()).ok(),
            Some("30%".into())
        );
    }
}
