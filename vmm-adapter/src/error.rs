//! The one error type of the crate.
//!
//! Every variant says whether the guest's state changed before the error was
//! returned ([`VmmError::state_changed`]), so a caller (the market) knows
//! whether it must re-read the guest before deciding again.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::guest::{GuestId, GuestState};

/// Everything that can go wrong between the agent and its guests.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The spec could not be parsed (syntax, unknown field, wrong type).
    /// Nothing was created.
    #[error("guest spec does not parse: {0}")]
    SpecParse(String),

    /// The spec parsed but a value is out of range or missing.
    /// Nothing was created.
    #[error("invalid guest spec: {field}: {reason}")]
    InvalidSpec {
        /// The spec field at fault (e.g. `memory_mib`).
        field: &'static str,
        /// Why, in words an operator can act on.
        reason: String,
    },

    /// `/dev/kvm` cannot run guests here (missing, no permission, wrong API).
    /// Nothing was created.
    #[error("/dev/kvm not usable: {0}")]
    KvmUnavailable(String),

    /// No guest with this id is known to the backend. Nothing changed.
    #[error("no such guest: {0}")]
    NoSuchGuest(GuestId),

    /// The operation does not apply to the guest in its current state
    /// (e.g. pausing an exited guest). Nothing changed.
    #[error("guest {id} is {state:?}: cannot {op}")]
    InvalidState {
        /// The guest.
        id: GuestId,
        /// Its state when the operation was refused.
        state: GuestState,
        /// The refused operation.
        op: &'static str,
    },

    /// A KVM ioctl failed. During `start` everything built so far is torn
    /// down again, so `state_changed` is false there.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        /// The ioctl or step that failed.
        op: &'static str,
        /// The errno from the kernel.
        source: vmm_sys_util::errno::Error,
        /// Whether the guest's state changed before the failure.
        state_changed: bool,
    },

    /// A host resource (cgroup file, thread, memory mapping, process) could
    /// not be created, written or released.
    #[error("{what} ({path}): {source}")]
    Host {
        /// What was being done.
        what: &'static str,
        /// The file or object involved (may be empty).
        path: PathBuf,
        /// The OS error.
        source: io::Error,
        /// Whether the guest's state changed before the failure.
        state_changed: bool,
    },

    /// The request was delivered but the guest did not acknowledge it in
    /// time (e.g. a vCPU throttled by its CFS quota handles a pause only
    /// when it next runs). The request stays in force and takes effect
    /// asynchronously, so the state *has* changed as far as the caller is
    /// concerned.
    #[error("guest {id}: {op} not acknowledged within {waited_ms} ms (still pending)")]
    Timeout {
        /// The guest.
        id: GuestId,
        /// The operation still pending.
        op: &'static str,
        /// How long we waited.
        waited_ms: u64,
    },

    /// Loading a kernel image failed. Nothing was created.
    #[error("kernel {path}: {reason}")]
    Kernel {
        /// The kernel file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },

    /// The backend cannot do this at all (e.g. a Linux guest on the process
    /// backend). Nothing changed.
    #[error("unsupported by the {backend} backend: {what}")]
    Unsupported {
        /// Backend name.
        backend: crate::backend::BackendName,
        /// What was asked.
        what: String,
    },
}

impl VmmError {
    /// Whether the guest's state (run/pause/cap/existence) changed before
    /// this error was returned. `false` means the call was a no-op.
    pub fn state_changed(&self) -> bool {
        match self {
            VmmError::SpecParse(_)
            | VmmError::InvalidSpec { .. }
            | VmmError::KvmUnavailable(_)
            | VmmError::NoSuchGuest(_)
            | VmmError::InvalidState { .. }
            | VmmError::Kernel { .. }
            | VmmError::Unsupported { .. } => false,
            VmmError::Kvm { state_changed, .. } | VmmError::Host { state_changed, .. } => {
                *state_changed
            }
            VmmError::Timeout { .. } => true,
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        VmmError::InvalidSpec {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn kvm(op: &'static str, source: vmm_sys_util::errno::Error) -> Self {
        VmmError::Kvm {
            op,
            source,
            state_changed: false,
        }
    }

    pub(crate) fn host(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        VmmError::Host {
            what,
            path: path.into(),
            source,
            state_changed: false,
        }
    }

    /// `op` refused because every vCPU of guest `id` has exited.
    pub(crate) fn exited(id: GuestId, op: &'static str) -> Self {
        VmmError::InvalidState {
            id,
            state: GuestState::Exited,
            op,
        }
    }

    /// `op` on guest `id` not acknowledged after waiting `waited`.
    pub(crate) fn timeout(id: GuestId, op: &'static str, waited: Duration) -> Self {
        VmmError::Timeout {
            id,
            op,
            waited_ms: waited.as_millis() as u64,
        }
    }

    /// Mark a host/KVM error as having happened after the guest changed.
    pub(crate) fn after_change(mut self) -> Self {
        match &mut self {
            VmmError::Kvm { state_changed, .. } | VmmError::Host { state_changed, .. } => {
                *state_changed = true
            }
            _ => {}
        }
        self
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = VmmError> = std::result::Result<T, E>;
