//! The trait the rest of the agent drives guests through, and the plain
//! data it reports.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::error::Result;
pub use crate::guest::{GuestId, GuestState};
use crate::spec::{CpuCap, GuestSpec};

/// How caps are enforced for a guest (kebab-case in JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapMode {
    /// cgroup v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us` per vCPU thread.
    CgroupV1,
    /// cgroup v2 threaded cgroup, `cpu.max` per vCPU thread.
    CgroupV2,
    /// User-space duty cycle (no writable cgroup cpu controller).
    DutyCycle,
}

/// Which backend runs a guest (lowercase in JSON and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    Kvm,
    Process,
}

/// What a guest runs, as reported (lowercase in JSON and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    Workload,
    Linux,
}

impl BackendName {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendName::Kvm => "kvm",
            BackendName::Process => "process",
        }
    }
}

impl KindName {
    pub fn as_str(self) -> &'static str {
        match self {
            KindName::Workload => "workload",
            KindName::Linux => "linux",
        }
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for KindName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of one guest, as `GET /v1/guests` and `maxwell guests` show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuestInfo {
    /// Id.
    pub id: GuestId,
    /// Name from the spec.
    pub name: String,
    /// What it runs.
    pub kind: KindName,
    /// Which backend runs it.
    pub backend: BackendName,
    /// State.
    pub state: GuestState,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Cap per vCPU, fraction of one core.
    pub cap: CpuCap,
    /// How the cap is enforced.
    pub cap_mode: CapMode,
    /// CPU time used by all vCPUs since start.
    pub cpu_time_ns: u64,
    /// Progress: finished work blocks (workload) or console bytes (linux).
    pub progress: u64,
    /// Time from `start` to the guest's first exit to the host, if seen.
    pub first_exit_us: Option<u64>,
    /// Why the guest exited, if it did.
    pub exit_reason: Option<String>,
}

/// Drives guests on this host. All methods are safe to call from several
/// threads; ids of killed guests become [`crate::VmmError::NoSuchGuest`].
///
/// Contracts:
/// * `start` either returns a running guest or leaves nothing behind;
///   `start_held` the same, with the guest paused before it ran.
/// * `pause` returns once every vCPU is parked (counter frozen), or with
///   [`crate::VmmError::Timeout`] if a vCPU has not parked yet (the pause
///   stays requested and lands asynchronously).
/// * `kill` always frees everything (threads/processes, memory, cgroups)
///   and returns the final accounting.
pub trait GuestBackend: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn name(&self) -> BackendName;
    /// Start a guest from a validated spec.
    fn start(&self, spec: &GuestSpec) -> Result<GuestId>;
    /// Start a guest paused before its first instruction: it holds its
    /// memory and runs nothing until `resume` (a placement offer's guest,
    /// held until the submitter confirms it).
    fn start_held(&self, spec: &GuestSpec) -> Result<GuestId>;
    /// Capture a paused guest whole: its memory and its vCPUs' registers
    /// (KVM workload guests; other backends and kinds refuse).
    fn snapshot(&self, id: GuestId) -> Result<crate::GuestSnapshot> {
        let _ = id;
        Err(crate::VmmError::Unsupported {
            backend: self.name(),
            what: "snapshots".into(),
        })
    }
    /// A new guest of `spec` from `snap`, held (paused before it runs on):
    /// it goes on from where the snapshot's guest stopped.
    fn restore_held(&self, spec: &GuestSpec, snap: &crate::GuestSnapshot) -> Result<GuestId> {
        let _ = (spec, snap);
        Err(crate::VmmError::Unsupported {
            backend: self.name(),
            what: "snapshots".into(),
        })
    }
    /// Park every vCPU. Idempotent.
    fn pause(&self, id: GuestId) -> Result<()>;
    /// Un-park every vCPU. Idempotent.
    fn resume(&self, id: GuestId) -> Result<()>;
    /// Set the cap (fraction of one core per vCPU; `CpuCap::FULL` = none).
    fn set_cap(&self, id: GuestId, cap: CpuCap) -> Result<()>;
    /// CPU time used by all vCPUs since start (thread CPU clocks).
    fn cpu_time(&self, id: GuestId) -> Result<Duration>;
    /// Guest progress counter (see [`GuestInfo::progress`]).
    fn progress(&self, id: GuestId) -> Result<u64>;
    /// A snapshot of one guest.
    fn info(&self, id: GuestId) -> Result<GuestInfo>;
    /// Kill the guest and free everything; returns its final snapshot with
    /// state [`GuestState::Killed`].
    fn kill(&self, id: GuestId) -> Result<GuestInfo>;
    /// Snapshots of all live (not yet killed) guests, ordered by id.
    fn list(&self) -> Vec<GuestInfo>;
    /// The spec a guest was started from.
    fn spec(&self, id: GuestId) -> Result<GuestSpec>;

    /// Kill every guest (clean agent shutdown). Returns the final snapshots;
    /// errors are impossible by contract of `kill` except for races with a
    /// concurrent `kill`, which are ignored.
    fn shutdown(&self) -> Vec<GuestInfo> {
        self.list()
            .into_iter()
            .filter_map(|g| self.kill(g.id).ok())
            .collect()
    }
}
