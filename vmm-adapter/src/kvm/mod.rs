//! The KVM backend: guests run in this process on the rust-vmm crates, one
//! OS thread per vCPU (see [`vcpu`] for pausing with signals and
//! `immediate_exit`).

pub mod layout;
mod linux;
pub mod payload;
pub mod snapshot;
mod vcpu;

use crate::backend::BackendName;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::backend::{CapMode, GuestBackend, GuestId, GuestState};
use crate::cgroup::{CapConfig, CapGroup, Hierarchy};
use crate::duty::DutyCycle;
use crate::error::{Result, VmmError};
use crate::managed::{backend_methods, GuestCore, GuestTable, Managed};
use crate::spec::{CpuCap, GuestKind, GuestSpec, Workload};
use crate::sys;
use maxwell_types::sync::lock;
use snapshot::{GuestSnapshot, VcpuState, PAGE, SNAPSHOT_VERSION};
use vcpu::{ConsoleSink, Ctl, Io, Shared, ThreadIds, VcpuThread, Want};

/// How long `pause`/`resume` wait for every vCPU to acknowledge.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `/dev/kvm` can run guests here; `Err` says why not.
pub fn kvm_available() -> std::result::Result<(), String> {
    let kvm = Kvm::new().map_err(|e| format!("cannot open /dev/kvm: {e}"))?;
    let v = kvm.get_api_version();
    if v != 12 {
        return Err(format!("KVM API version {v}, expected 12"));
    }
    kvm.create_vm()
        .map(drop)
        .map_err(|e| format!("KVM_CREATE_VM failed: {e}"))
}

#[derive(Debug)]
struct VcpuHandle {
    /// `None` once joined; the pthread in `ids` is valid only while `Some`.
    thread: Option<JoinHandle<()>>,
    ids: ThreadIds,
    final_cpu_ns: Arc<AtomicU64>,
}

impl VcpuHandle {
    fn cpu(&self) -> Duration {
        let fin = self.final_cpu_ns.load(Ordering::SeqCst);
        if fin == 0 && self.thread.is_some() {
            if let Ok(d) = sys::thread_cpu(self.ids.pthread) {
                return d;
            }
        }
        Duration::from_nanos(self.final_cpu_ns.load(Ordering::SeqCst))
    }
}

#[derive(Debug)]
enum Progress {
    /// Sum of the per-vCPU block counters in guest memory.
    Slots(usize),
    /// Console bytes.
    Console(ConsoleSink),
}

#[derive(Debug)]
struct KvmGuest {
    core: GuestCore,
    shared: Arc<Shared>,
    vcpus: Mutex<Vec<VcpuHandle>>,
    progress: Progress,
    /// Progress at teardown, once the memory is gone.
    final_progress: AtomicU64,
    /// `None` after teardown.
    vm: Mutex<Option<Vm>>,
}

/// The VM and its memory. Field order is drop order: the VM goes before
/// the memory it maps.
#[derive(Debug)]
struct Vm {
    fd: VmFd,
    mem: GuestMemoryMmap,
}

impl KvmGuest {
    fn kick_all(&self) {
        let sig = vcpu::kick_signal();
        for h in lock(&self.vcpus).iter().filter(|h| h.thread.is_some()) {
            let _ = sys::pthread_kill(h.ids.pthread, sig);
        }
    }

    /// Ask the vCPUs for `want` (the request `op`), unless all have exited.
    fn request(&self, want: Want, op: &'static str) -> Result<()> {
        let mut c = self.shared.lock();
        if c.exited >= self.core.n() {
            return Err(VmmError::exited(self.core.id, op));
        }
        c.want = want;
        Ok(())
    }

    /// Wait until every vCPU has acknowledged `op`, as `done` tells.
    fn await_ack(&self, op: &'static str, done: impl FnMut(&Ctl) -> bool) -> Result<()> {
        if vcpu::wait_until(&self.shared, ACK_TIMEOUT, done) {
            Ok(())
        } else {
            Err(VmmError::timeout(self.core.id, op, ACK_TIMEOUT))
        }
    }
}

impl Managed for KvmGuest {
    const BACKEND: BackendName = BackendName::Kvm;

    fn core(&self) -> &GuestCore {
        &self.core
    }

    fn live_state(&self) -> GuestState {
        let c = self.shared.lock();
        if c.exited >= self.core.n() {
            GuestState::Exited
        } else if c.want == Want::Pause {
            GuestState::Paused
        } else {
            GuestState::Running
        }
    }

    fn cpu_time(&self) -> Duration {
        lock(&self.vcpus).iter().map(VcpuHandle::cpu).sum()
    }

    fn progress(&self) -> u64 {
        match &self.progress {
            Progress::Slots(n) => match &*lock(&self.vm) {
                Some(vm) => (0..*n)
                    .map(|i| {
                        vm.mem
                            .load::<u64>(GuestAddress(layout::slot(i)), Ordering::Relaxed)
                            .unwrap_or(0)
                    })
                    .sum(),
                None => self.final_progress.load(Ordering::Relaxed),
            },
            Progress::Console(c) => c.total.load(Ordering::Relaxed),
        }
    }

    fn first_exit_us(&self) -> Option<u64> {
        let first = self.shared.first_exit_us.load(Ordering::Relaxed);
        (first != u64::MAX).then_some(first)
    }

    fn exit_reason(&self) -> Option<String> {
        self.shared.lock().exit_reason.clone()
    }

    fn cap_tasks(&self) -> Vec<libc::pid_t> {
        lock(&self.vcpus).iter().map(|h| h.ids.tid).collect()
    }

    fn spawn_duty(&self, cap: CpuCap) -> Result<DutyCycle> {
        let shared = Arc::clone(&self.shared);
        let pthreads: Vec<libc::pthread_t> =
            lock(&self.vcpus).iter().map(|h| h.ids.pthread).collect();
        let hold = move |on: bool| {
            shared.lock().throttled = on;
            shared.cv.notify_all();
            if on {
                for p in &pthreads {
                    // The duty cycle is dropped before the threads are joined,
                    // so these handles are valid.
                    let _ = sys::pthread_kill(*p, vcpu::kick_signal());
                }
            }
        };
        DutyCycle::spawn(cap, Box::new(hold)).map_err(|e| VmmError::host("spawn duty cycle", "", e))
    }

    /// Stop and join every vCPU thread, then close the VM and unmap the
    /// memory.
    fn release(&self, group: Option<&CapGroup>) {
        if let Some(g) = group {
            // Unthrottle first so the stop signal is handled now, not at
            // the next CFS period.
            let _ = g.set_cap(CpuCap::FULL);
        }
        self.shared.lock().want = Want::Stop;
        self.shared.cv.notify_all();
        self.kick_all();
        let mut vcpus = lock(&self.vcpus);
        for h in vcpus.iter_mut() {
            if let Some(t) = h.thread.take() {
                let _ = t.join();
            }
        }
        drop(vcpus);
        self.final_progress
            .store(self.progress(), Ordering::Relaxed);
        // Close the VM before removing the cgroups: KVM's per-VM worker
        // thread (NX huge-page recovery) is started from the first vCPU
        // thread and lives in its cgroup until the VM is destroyed.
        drop(lock(&self.vm).take());
    }
}

/// The KVM backend. Dropping it kills every guest.
#[derive(Debug)]
pub struct KvmBackend {
    kvm: Kvm,
    cpuid: CpuId,
    hierarchy: Hierarchy,
    guests: GuestTable<KvmGuest>,
}

impl KvmBackend {
    /// Open `/dev/kvm` with default caps (cgroups under `maxwell/`).
    pub fn new() -> Result<Self> {
        Self::with_caps(CapConfig::default())
    }

    /// Open `/dev/kvm` with a cap configuration.
    pub fn with_caps(cfg: CapConfig) -> Result<Self> {
        kvm_available().map_err(VmmError::KvmUnavailable)?;
        vcpu::install_kick_handler().map_err(VmmError::KvmUnavailable)?;
        let kvm = Kvm::new().map_err(|e| VmmError::KvmUnavailable(e.to_string()))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| VmmError::kvm("KVM_GET_SUPPORTED_CPUID", e))?;
        Ok(KvmBackend {
            kvm,
            cpuid,
            hierarchy: Hierarchy::detect(&cfg),
            guests: GuestTable::default(),
        })
    }

    /// How caps are enforced on this host.
    pub fn cap_mode(&self) -> CapMode {
        self.hierarchy.mode()
    }

    /// The cgroup directory of a guest, if it has one (for diagnostics).
    pub fn cgroup_dir(&self, id: GuestId) -> Result<Option<std::path::PathBuf>> {
        let g = self.guests.get(id)?;
        let caps = lock(&g.core.caps);
        Ok(caps.group.as_ref().map(|c| c.dir().to_path_buf()))
    }

    /// The last console output of a Linux guest (empty for workloads).
    pub fn console(&self, id: GuestId) -> Result<String> {
        let g = self.guests.get(id)?;
        Ok(match &g.progress {
            Progress::Console(c) => String::from_utf8_lossy(&lock(&c.buf)).into_owned(),
            Progress::Slots(_) => String::new(),
        })
    }

    fn build(&self, spec: &GuestSpec, created: Instant) -> Result<KvmGuest> {
        check_host_memory(spec)?;
        let vm = self
            .kvm
            .create_vm()
            .map_err(|e| VmmError::kvm("KVM_CREATE_VM", e))?;
        let mem = map_memory(&vm, spec)?;
        write_long_mode_tables(&mem)?;
        let progress = match &spec.kind {
            GuestKind::Workload(_) => {
                let code = payload::assemble(workload(spec).payload);
                write(&mem, layout::CODE, &code)?;
                Progress::Slots(usize::from(spec.vcpus.get()))
            }
            GuestKind::Linux(_) => Progress::Console(ConsoleSink {
                buf: Arc::default(),
                total: Arc::default(),
            }),
        };
        Ok(KvmGuest {
            core: GuestCore::new(spec, self.hierarchy.mode()),
            shared: Arc::new(Shared::new(created)),
            vcpus: Mutex::new(Vec::new()),
            progress,
            final_progress: AtomicU64::new(0),
            vm: Mutex::new(Some(Vm { fd: vm, mem })),
        })
    }

    fn create_vcpu(
        &self,
        g: &KvmGuest,
        i: usize,
        regs: &kvm_regs,
        restored: Option<&VcpuState>,
    ) -> Result<VcpuFd> {
        let user = matches!(g.core.spec.kind, GuestKind::Workload(_));
        let vm = lock(&g.vm);
        let vm = vm.as_ref().ok_or(VmmError::NoSuchGuest(g.core.id))?;
        let fd = vm
            .fd
            .create_vcpu(i as u64)
            .map_err(|e| VmmError::kvm("KVM_CREATE_VCPU", e))?;
        fd.set_cpuid2(&self.cpuid)
            .map_err(|e| VmmError::kvm("KVM_SET_CPUID2", e))?;
        let sregs = fd
            .get_sregs()
            .map_err(|e| VmmError::kvm("KVM_GET_SREGS", e))?;
        fd.set_sregs(&layout::long_mode_sregs(sregs, user))
            .map_err(|e| VmmError::kvm("KVM_SET_SREGS", e))?;
        fd.set_regs(regs)
            .map_err(|e| VmmError::kvm("KVM_SET_REGS", e))?;
        let fpu = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        fd.set_fpu(&fpu)
            .map_err(|e| VmmError::kvm("KVM_SET_FPU", e))?;
        if let Some(s) = restored {
            fd.set_sregs(&s.sregs()?)
                .map_err(|e| VmmError::kvm("KVM_SET_SREGS", e))?;
            fd.set_regs(&s.regs()?)
                .map_err(|e| VmmError::kvm("KVM_SET_REGS", e))?;
            fd.set_fpu(&s.fpu()?)
                .map_err(|e| VmmError::kvm("KVM_SET_FPU", e))?;
        }
        Ok(fd)
    }

    fn spawn_vcpus(
        &self,
        g: &KvmGuest,
        mut ios: Vec<Io>,
        regs: &[kvm_regs],
        restored: Option<&[VcpuState]>,
    ) -> Result<()> {
        for (i, r) in regs.iter().enumerate() {
            let fd = self.create_vcpu(g, i, r, restored.and_then(|s| s.get(i)))?;
            let final_cpu_ns = Arc::new(AtomicU64::new(0));
            let t = VcpuThread {
                index: i,
                fd,
                shared: Arc::clone(&g.shared),
                io: ios.remove(0),
                final_cpu_ns: Arc::clone(&final_cpu_ns),
            };
            let (tx, rx) = mpsc::sync_channel(1);
            let thread = std::thread::Builder::new()
                .name(format!("{}-vcpu{i}", g.core.id))
                .spawn(move || t.run(tx))
                .map_err(|e| VmmError::host("spawn vCPU thread", "", e))?;
            let ids = match rx.recv() {
                Ok(ids) => ids,
                Err(_) => {
                    let _ = thread.join();
                    return Err(VmmError::host(
                        "vCPU thread died before starting",
                        "",
                        std::io::ErrorKind::Other.into(),
                    ));
                }
            };
            lock(&g.vcpus).push(VcpuHandle {
                thread: Some(thread),
                ids,
                final_cpu_ns,
            });
        }
        Ok(())
    }

    fn start_as(&self, spec: &GuestSpec, held: bool) -> Result<GuestId> {
        let g = self.build(spec, Instant::now())?;
        if let Err(e) = self.start_inner(&g, held, None) {
            let _ = g.teardown();
            return Err(e);
        }
        Ok(self.guests.insert(g))
    }

    fn capture(&self, id: GuestId) -> Result<GuestSnapshot> {
        let g = self.guests.get(id)?;
        if !matches!(g.core.spec.kind, GuestKind::Workload(_)) {
            return Err(VmmError::Unsupported {
                backend: BackendName::Kvm,
                what: "snapshots of Linux guests (their devices are not carried)".into(),
            });
        }
        let n = g.core.n();
        if g.shared.lock().want != Want::Pause {
            return Err(VmmError::invalid(
                "snapshot",
                format!("guest {id} is not paused"),
            ));
        }
        // A guest just paused (or just started held) may still have vCPU
        // threads on their way to the control point: wait for all of them.
        if !vcpu::wait_until(&g.shared, ACK_TIMEOUT, |c| c.parked >= n || c.exited > 0) {
            return Err(VmmError::timeout(id, "snapshot", ACK_TIMEOUT));
        }
        {
            let mut c = g.shared.lock();
            if c.exited > 0 {
                return Err(VmmError::exited(id, "snapshot"));
            }
            if c.want != Want::Pause {
                return Err(VmmError::invalid(
                    "snapshot",
                    format!("guest {id} is not paused"),
                ));
            }
            c.capture = Some(vec![None; n]);
        }
        g.shared.cv.notify_all();
        let filled = vcpu::wait_until(&g.shared, ACK_TIMEOUT, |c| {
            c.capture
                .as_ref()
                .is_some_and(|s| s.iter().all(Option::is_some))
        });
        let slots = g.shared.lock().capture.take().unwrap_or_default();
        if !filled {
            return Err(VmmError::timeout(id, "snapshot", ACK_TIMEOUT));
        }
        let vcpus = slots
            .into_iter()
            .flatten()
            .collect::<std::result::Result<Vec<_>, String>>()
            .map_err(|e| VmmError::host("snapshot a vCPU", "", std::io::Error::other(e)))?;
        let vm = lock(&g.vm);
        let vm = vm.as_ref().ok_or(VmmError::NoSuchGuest(id))?;
        let mut pages = Vec::new();
        let mut page = vec![0u8; PAGE];
        for region in vm.mem.iter() {
            let (start, len) = (region.start_addr().0, region.len());
            for off in (0..len).step_by(PAGE) {
                vm.mem
                    .read_slice(&mut page, GuestAddress(start + off))
                    .map_err(|e| {
                        VmmError::host(
                            "read guest memory",
                            "",
                            std::io::Error::other(e.to_string()),
                        )
                    })?;
                if page.iter().any(|&b| b != 0) {
                    pages.push((start + off, page.clone()));
                }
            }
        }
        Ok(GuestSnapshot {
            version: SNAPSHOT_VERSION,
            memory_bytes: g.core.spec.memory.bytes(),
            pages,
            vcpus,
        })
    }

    fn restore(&self, spec: &GuestSpec, snap: &GuestSnapshot) -> Result<GuestId> {
        let bad = |why: String| VmmError::invalid("snapshot", why);
        if snap.version != SNAPSHOT_VERSION {
            return Err(bad(format!(
                "version {} is not {SNAPSHOT_VERSION}",
                snap.version
            )));
        }
        if !matches!(spec.kind, GuestKind::Workload(_)) {
            return Err(bad("only workload guests are restored".into()));
        }
        if snap.memory_bytes != spec.memory.bytes()
            || snap.vcpus.len() != usize::from(spec.vcpus.get())
        {
            return Err(bad(
                "the snapshot's memory or vCPUs are not the spec's".into()
            ));
        }
        let g = self.build(spec, Instant::now())?;
        let written = (|| {
            let vm = lock(&g.vm);
            let vm = vm.as_ref().ok_or(VmmError::NoSuchGuest(g.core.id))?;
            for (gpa, data) in &snap.pages {
                if data.len() != PAGE {
                    return Err(bad(format!("a page of {} bytes", data.len())));
                }
                write(&vm.mem, *gpa, data)?;
            }
            Ok(())
        })();
        if let Err(e) = written.and_then(|()| self.start_inner(&g, true, Some(&snap.vcpus))) {
            let _ = g.teardown();
            return Err(e);
        }
        Ok(self.guests.insert(g))
    }

    fn start_inner(&self, g: &KvmGuest, held: bool, restored: Option<&[VcpuState]>) -> Result<()> {
        let n = g.core.n();
        let (ios, regs) = match &g.core.spec.kind {
            GuestKind::Workload(w) => {
                let stop = w.stop_after.map_or(u64::MAX, |s| s.get());
                let regs = (0..n)
                    .map(|i| layout::workload_regs(i, payload::REPORT_MASK, stop))
                    .collect();
                ((0..n).map(|_| Io::Workload).collect(), regs)
            }
            GuestKind::Linux(boot) => {
                let Progress::Console(sink) = &g.progress else {
                    return Err(VmmError::invalid("kind", "internal: linux without console"));
                };
                let vm = lock(&g.vm);
                let vm = vm.as_ref().ok_or(VmmError::NoSuchGuest(g.core.id))?;
                let (io, regs) = linux::prepare(&vm.fd, &vm.mem, boot, sink.clone(), n)?;
                (vec![io], vec![regs])
            }
        };
        self.spawn_vcpus(g, ios, &regs, restored)?;
        g.apply_caps(&self.hierarchy)?;
        // The vCPUs were spawned parked: a held guest stays so.
        if !held {
            g.shared.lock().want = Want::Run;
            g.shared.cv.notify_all();
        }
        Ok(())
    }
}

fn workload(spec: &GuestSpec) -> Workload {
    match &spec.kind {
        GuestKind::Workload(w) => *w,
        GuestKind::Linux(_) => Workload {
            payload: crate::spec::PayloadLoop::Count,
            stop_after: None,
        },
    }
}

fn check_host_memory(spec: &GuestSpec) -> Result<()> {
    let host = sys::host_memory_bytes();
    if host != 0 && spec.memory.bytes() > host / 2 {
        return Err(VmmError::invalid(
            "memory_mib",
            format!(
                "{} MiB is more than half of this host's {} MiB",
                spec.memory.mib(),
                host >> 20
            ),
        ));
    }
    Ok(())
}

fn map_memory(vm: &VmFd, spec: &GuestSpec) -> Result<GuestMemoryMmap> {
    let ranges: Vec<(GuestAddress, usize)> = layout::ram_ranges(spec.memory.bytes())
        .into_iter()
        .map(|(start, len)| (GuestAddress(start), len as usize))
        .collect();
    let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).map_err(|e| {
        VmmError::host("map guest memory", "", std::io::Error::other(e.to_string()))
    })?;
    for (slot, region) in mem.iter().enumerate() {
        let host = mem.get_host_address(region.start_addr()).map_err(|e| {
            VmmError::host("guest memory", "", std::io::Error::other(e.to_string()))
        })?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the
        // guest struct keeps until after the VM fd is closed.
        unsafe { vm.set_user_memory_region(r) }
            .map_err(|e| VmmError::kvm("KVM_SET_USER_MEMORY_REGION", e))?;
    }
    Ok(mem)
}

fn write(mem: &GuestMemoryMmap, addr: u64, bytes: &[u8]) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(addr)).map_err(|e| {
        VmmError::host(
            "write guest memory",
            "",
            std::io::Error::other(e.to_string()),
        )
    })
}

fn write_long_mode_tables(mem: &GuestMemoryMmap) -> Result<()> {
    for (addr, v) in layout::page_tables() {
        write(mem, addr, &v.to_le_bytes())?;
    }
    for (i, e) in layout::gdt().iter().enumerate() {
        write(mem, layout::GDT + 8 * i as u64, &e.to_le_bytes())?;
    }
    Ok(())
}

impl GuestBackend for KvmBackend {
    fn name(&self) -> BackendName {
        BackendName::Kvm
    }

    fn start(&self, spec: &GuestSpec) -> Result<GuestId> {
        self.start_as(spec, false)
    }

    fn start_held(&self, spec: &GuestSpec) -> Result<GuestId> {
        self.start_as(spec, true)
    }

    fn snapshot(&self, id: GuestId) -> Result<GuestSnapshot> {
        self.capture(id)
    }

    fn restore_held(&self, spec: &GuestSpec, snap: &GuestSnapshot) -> Result<GuestId> {
        self.restore(spec, snap)
    }

    fn pause(&self, id: GuestId) -> Result<()> {
        let g = self.guests.get(id)?;
        let n = g.core.n();
        g.request(Want::Pause, "pause")?;
        g.kick_all();
        g.await_ack("pause", |c| c.parked + c.exited >= n)
    }

    fn resume(&self, id: GuestId) -> Result<()> {
        let g = self.guests.get(id)?;
        g.request(Want::Run, "resume")?;
        g.shared.cv.notify_all();
        // Parked-by-throttle vCPUs stay parked; do not wait for them.
        g.await_ack("resume", |c| c.parked == 0 || c.throttled)
    }

    backend_methods!(guests);
}

impl Drop for KvmBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}
