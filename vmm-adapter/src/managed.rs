//! What both backends share: the table of live guests, the part of a guest
//! that does not depend on how its vCPUs run ([`GuestCore`]: id, spec, cap
//! state, killed flag), and the logic built only on that — cap switching
//! between cgroup and duty cycle, teardown order, snapshots, kill.
//!
//! A backend's guest implements [`Managed`] (how it meters, stops and holds
//! its vCPUs); [`backend_methods!`] then writes the `GuestBackend` methods
//! that only look a guest up and ask it.

use crate::backend::BackendName;
use maxwell_types::sync::lock;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::{CapMode, GuestId, GuestInfo, GuestState};
use crate::cgroup::{place, CapGroup, Hierarchy};
use crate::duty::DutyCycle;
use crate::error::{Result, VmmError};
use crate::spec::{CpuCap, GuestSpec};

/// A guest's cap and how it is enforced: a cgroup when the host has one,
/// else a duty cycle while the cap is below a full core.
#[derive(Debug)]
pub(crate) struct Caps {
    pub(crate) cap: CpuCap,
    pub(crate) mode: CapMode,
    pub(crate) group: Option<CapGroup>,
    pub(crate) duty: Option<DutyCycle>,
}

/// The backend-independent part of a guest.
#[derive(Debug)]
pub(crate) struct GuestCore {
    pub(crate) id: GuestId,
    pub(crate) spec: GuestSpec,
    pub(crate) caps: Mutex<Caps>,
    /// Set by `kill` once torn down; the state is then `Killed`.
    pub(crate) killed: AtomicBool,
}

impl GuestCore {
    /// A fresh id for `spec`, capped at `spec.cap` by `mode` (nothing
    /// applied yet).
    pub(crate) fn new(spec: &GuestSpec, mode: CapMode) -> Self {
        GuestCore {
            id: GuestId::next(),
            spec: spec.clone(),
            caps: Mutex::new(Caps {
                cap: spec.cap,
                mode,
                group: None,
                duty: None,
            }),
            killed: AtomicBool::new(false),
        }
    }

    /// Number of vCPUs.
    pub(crate) fn n(&self) -> usize {
        usize::from(self.spec.vcpus.get())
    }
}

/// A guest as a backend runs it. The provided methods are the logic both
/// backends share.
pub(crate) trait Managed {
    /// As [`GuestInfo::backend`].
    const BACKEND: BackendName;

    fn core(&self) -> &GuestCore;
    /// The state unless killed.
    fn live_state(&self) -> GuestState;
    /// CPU time used by all vCPUs since start.
    fn cpu_time(&self) -> Duration;
    /// Progress counter (see [`GuestInfo::progress`]).
    fn progress(&self) -> u64;
    fn first_exit_us(&self) -> Option<u64>;
    fn exit_reason(&self) -> Option<String>;
    /// The tasks (vCPU TIDs or child PIDs) to put one per cgroup leaf.
    fn cap_tasks(&self) -> Vec<libc::pid_t>;
    /// A duty cycle holding the vCPUs for the rest of each period.
    fn spawn_duty(&self, cap: CpuCap) -> Result<DutyCycle>;
    /// Stop every vCPU for good and free the guest memory. Called by
    /// [`Managed::teardown`] with the duty cycle gone and the cgroup
    /// (`group`) still in place; must be idempotent.
    fn release(&self, group: Option<&CapGroup>);

    fn state(&self) -> GuestState {
        if self.core().killed.load(Ordering::SeqCst) {
            return GuestState::Killed;
        }
        self.live_state()
    }

    fn info(&self) -> GuestInfo {
        let state = self.state();
        let core = self.core();
        let caps = lock(&core.caps);
        GuestInfo {
            id: core.id,
            name: core.spec.name.clone(),
            kind: core.spec.kind.name(),
            backend: Self::BACKEND,
            state,
            vcpus: core.spec.vcpus.get(),
            memory_mib: core.spec.memory.mib(),
            cap: caps.cap,
            cap_mode: caps.mode,
            cpu_time_ns: self.cpu_time().as_nanos() as u64,
            progress: self.progress(),
            first_exit_us: self.first_exit_us(),
            exit_reason: self.exit_reason(),
        }
    }

    /// Put the vCPUs in a new cgroup at the spec's cap, or start a duty
    /// cycle where there are no cgroups and the cap is below a full core.
    fn apply_caps(&self, hierarchy: &Hierarchy) -> Result<()> {
        let core = self.core();
        let name = format!("{}-{}", std::process::id(), core.id);
        let mut caps = lock(&core.caps);
        match CapGroup::create(hierarchy, &name, core.n())? {
            Some(group) => {
                let r = place(&group, &self.cap_tasks(), caps.cap);
                // Keep the group even on error, so teardown removes it.
                caps.group = Some(group);
                r
            }
            None => {
                if !caps.cap.is_full() {
                    caps.duty = Some(self.spawn_duty(caps.cap)?);
                }
                Ok(())
            }
        }
    }

    fn set_cap(&self, cap: CpuCap) -> Result<()> {
        let mut caps = lock(&self.core().caps);
        if let Some(group) = &caps.group {
            group.set_cap(cap)?;
        } else if cap.is_full() {
            caps.duty = None;
        } else if let Some(d) = &caps.duty {
            d.set_cap(cap);
        } else {
            caps.duty = Some(self.spawn_duty(cap)?);
        }
        caps.cap = cap;
        Ok(())
    }

    /// Drop the duty cycle, stop the vCPUs and free the memory, remove the
    /// cgroups. Idempotent.
    fn teardown(&self) -> Result<()> {
        let mut caps = lock(&self.core().caps);
        caps.duty = None;
        self.release(caps.group.as_ref());
        if let Some(mut g) = caps.group.take() {
            g.remove().map_err(VmmError::after_change)?;
        }
        Ok(())
    }

    /// Tear down and return the final snapshot (state `Killed`), or the
    /// teardown error.
    fn kill(&self) -> Result<GuestInfo> {
        let r = self.teardown();
        self.core().killed.store(true, Ordering::SeqCst);
        let info = self.info();
        r.map(|()| info)
    }
}

/// A backend's live guests by id.
#[derive(Debug)]
pub(crate) struct GuestTable<G>(Mutex<BTreeMap<GuestId, Arc<G>>>);

impl<G> Default for GuestTable<G> {
    fn default() -> Self {
        GuestTable(Mutex::new(BTreeMap::new()))
    }
}

impl<G: Managed> GuestTable<G> {
    pub(crate) fn get(&self, id: GuestId) -> Result<Arc<G>> {
        lock(&self.0)
            .get(&id)
            .cloned()
            .ok_or(VmmError::NoSuchGuest(id))
    }

    /// Add a started guest; returns its id.
    pub(crate) fn insert(&self, g: G) -> GuestId {
        let id = g.core().id;
        lock(&self.0).insert(id, Arc::new(g));
        id
    }

    pub(crate) fn set_cap(&self, id: GuestId, cap: CpuCap) -> Result<()> {
        self.get(id)?.set_cap(cap)
    }

    pub(crate) fn cpu_time(&self, id: GuestId) -> Result<Duration> {
        Ok(self.get(id)?.cpu_time())
    }

    pub(crate) fn progress(&self, id: GuestId) -> Result<u64> {
        Ok(self.get(id)?.progress())
    }

    pub(crate) fn info(&self, id: GuestId) -> Result<GuestInfo> {
        Ok(self.get(id)?.info())
    }

    /// Take a guest out of the table and kill it.
    pub(crate) fn kill(&self, id: GuestId) -> Result<GuestInfo> {
        let g = lock(&self.0).remove(&id).ok_or(VmmError::NoSuchGuest(id))?;
        g.kill()
    }

    /// Snapshots of all guests, by id (taken without holding the table).
    pub(crate) fn list(&self) -> Vec<GuestInfo> {
        let guests: Vec<Arc<G>> = lock(&self.0).values().cloned().collect();
        guests.iter().map(|g| g.info()).collect()
    }
}

/// The `GuestBackend` methods that only look the guest up: each forwards
/// to the [`GuestTable`] in field `$guests`. Expand inside
/// `impl GuestBackend for …`.
macro_rules! backend_methods {
    ($guests:ident) => {
        fn set_cap(&self, id: $crate::GuestId, cap: $crate::CpuCap) -> $crate::Result<()> {
            self.$guests.set_cap(id, cap)
        }

        fn cpu_time(&self, id: $crate::GuestId) -> $crate::Result<std::time::Duration> {
            self.$guests.cpu_time(id)
        }

        fn progress(&self, id: $crate::GuestId) -> $crate::Result<u64> {
            self.$guests.progress(id)
        }

        fn info(&self, id: $crate::GuestId) -> $crate::Result<$crate::GuestInfo> {
            self.$guests.info(id)
        }

        fn kill(&self, id: $crate::GuestId) -> $crate::Result<$crate::GuestInfo> {
            self.$guests.kill(id)
        }

        fn spec(&self, id: $crate::GuestId) -> $crate::Result<$crate::GuestSpec> {
            Ok(self.$guests.get(id)?.core().spec.clone())
        }

        fn list(&self) -> Vec<$crate::GuestInfo> {
            self.$guests.list()
        }
    };
}
pub(crate) use backend_methods;
