//! A guest's name and life stage: the plain values every layer (the
//! backends, their errors, the agent) speaks of.

use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A guest's id, unique within this process (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GuestId(pub u64);

static NEXT: AtomicU64 = AtomicU64::new(1);

impl GuestId {
    /// A fresh id.
    pub(crate) fn next() -> Self {
        GuestId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Fresh ids from now on are above `last`: an agent that restarts tells
    /// this the highest id its ledger knows, so a new guest never takes the
    /// id of one from before (whose receipts are found by that id).
    pub fn skip_through(last: u64) {
        NEXT.fetch_max(last.saturating_add(1), Ordering::Relaxed);
    }
}

impl fmt::Display for GuestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "g{}", self.0)
    }
}

/// Where a guest is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestState {
    /// vCPUs are scheduled (possibly throttled by the cap).
    Running,
    /// Every vCPU is parked; the progress counter is frozen.
    Paused,
    /// The guest stopped by itself (payload finished, shutdown, crash);
    /// its resources stay until `kill`.
    Exited,
    /// Killed: threads joined/processes reaped, memory and cgroups freed.
    /// Only ever seen in the [`GuestInfo`] that `kill` returns.
    Killed,
}

impl GuestState {
    /// The lower-case name, as in JSON, tables and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestState::Running => "running",
            GuestState::Paused => "paused",
            GuestState::Exited => "exited",
            GuestState::Killed => "killed",
        }
    }
}
