//! # maxwell-vmm: the OS edge of the Maxwell agent
//!
//! Every rack host runs one `maxwell` agent, which runs a local CPU market
//! for guests. This crate is how the market's decisions reach real guests:
//! start a guest from a [`GuestSpec`], pause and resume it, cap its CPU as a
//! fraction of one core per vCPU, meter the CPU time it used and the
//! progress it made, and kill it.
//!
//! Two backends implement the one trait [`GuestBackend`]:
//! * [`KvmBackend`] — real KVM guests in this process on the rust-vmm crates
//!   (`kvm-ioctls`, `kvm-bindings`, `vm-memory`, `vmm-sys-util`; plus
//!   `linux-loader`/`vm-superio` for Linux guests), one thread per vCPU,
//!   paused by signalling the vCPU thread with `immediate_exit` set.
//! * [`ProcessBackend`] — for hosts without a usable `/dev/kvm`: each vCPU
//!   is a forked process running the same kind of loop, paused with
//!   `SIGSTOP`/`SIGCONT`, under the same cgroup caps.
//!
//! [`open_backend`] picks KVM when [`kvm_available`] says so.
//!
//! ## Contracts
//! * Specs are validated once ([`RawGuestSpec::validate`]); a bad spec is an
//!   error before anything is created.
//! * `start` returns a running guest or leaves nothing behind.
//! * Every error is a [`VmmError`]; [`VmmError::state_changed`] tells
//!   whether the guest's state changed before the error.
//! * `pause` returns once every vCPU is parked (progress frozen), or with
//!   [`VmmError::Timeout`] while the pause stays pending.
//! * Caps are CFS quotas per vCPU thread (cgroup v1 or v2, detected when the
//!   backend is created), else a user-space duty cycle ([`CapMode`]).
//! * CPU time comes from the vCPU threads' CPU clocks (processes' CPU clocks
//!   for the process backend), never from `/proc/<tid>/stat` guest time.
//! * `kill` joins the threads (or reaps the processes), unmaps the memory,
//!   removes the cgroups, and returns the final [`GuestInfo`].
//! * Dropping a backend kills all its guests; [`GuestBackend::shutdown`]
//!   does the same explicitly.

pub mod backend;
pub mod bench;
pub mod cgroup;
mod duty;
pub mod error;
pub mod guest;
pub mod kernel_dir;
pub mod kvm;
mod managed;
pub mod process;
pub mod spec;
mod sys;

pub use backend::{BackendName, CapMode, GuestBackend, GuestId, GuestInfo, GuestState, KindName};

pub use bench::{run_bench, BenchOptions, BenchReport};
pub use cgroup::{CapConfig, CapPolicy};
pub use error::{Result, VmmError};
pub use kvm::snapshot::GuestSnapshot;
pub use kvm::{kvm_available, KvmBackend};
pub use process::ProcessBackend;

pub use spec::{
    CpuCap, GuestClass, GuestKind, GuestSpec, MarketTerms, MemoryMib, PayloadLoop, RawGuestSpec,
};

/// The KVM backend where `/dev/kvm` works, else the process backend.
/// Returns the backend and, when it fell back, why KVM was not used.
pub fn open_backend(caps: CapConfig) -> Result<(Box<dyn GuestBackend>, Option<String>)> {
    match kvm_available() {
        Ok(()) => Ok((Box::new(KvmBackend::with_caps(caps)?), None)),
        Err(why) => Ok((Box::new(ProcessBackend::with_caps(caps)), Some(why))),
    }
}
