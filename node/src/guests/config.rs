//! The `[guests]` config section, owned by the guest manager: the backend,
//! the specs started with the agent, where kernels load from and the
//! admission limits. Each default is declared once, in `validate`.

use crate::check::{invalid, ConfigError};
use serde::Deserialize;
use std::path::PathBuf;

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

impl RawGuests {
    /// Validates the section.
    pub fn validate(self) -> Result<GuestsConfig, ConfigError> {
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
