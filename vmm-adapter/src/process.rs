//! The process backend, for hosts without a usable `/dev/kvm`: each vCPU
//! of a guest is a forked child process running the same kind of loop as
//! the KVM payload, counting blocks in a shared mapping the host reads.
//! Paused with `SIGSTOP`/`SIGCONT`, capped by the same cgroups (or duty
//! cycle), metered by the children's CPU clocks, reaped on kill.
//!
//! Children are forked, not exec'd, so they can share the counter mapping;
//! after `fork` a child runs only async-signal-safe code (raw syscalls and
//! atomics, no allocation) and dies with its parent (`PR_SET_PDEATHSIG`).

use crate::backend::BackendName;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::backend::{CapMode, GuestBackend, GuestId, GuestState};
use crate::cgroup::{CapConfig, CapGroup, Hierarchy};
use crate::duty::DutyCycle;
use crate::error::{Result, VmmError};
use crate::managed::{backend_methods, GuestCore, GuestTable, Managed};
use crate::spec::{CpuCap, GuestKind, GuestSpec, PayloadLoop, Workload};
use crate::sys;
use maxwell_types::sync::lock;

/// How long `pause` waits for every child to be stopped.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const SLOT: usize = 64;
/// Iterations per block (matches the KVM payload's block in spirit).
const BLOCK: u32 = 0x1_0000;

/// A `MAP_SHARED` anonymous mapping, inherited by the children.
#[derive(Debug)]
struct Shm {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is only accessed through atomics at slot offsets.
unsafe impl Send for Shm {}
// SAFETY: as above.
unsafe impl Sync for Shm {}

impl Shm {
    fn new(len: usize) -> io::Result<Self> {
        // SAFETY: anonymous mapping with no address hint; the result is
        // checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Shm {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Word `word` of slot `i`, as an atomic.
    fn word(&self, i: usize, word: usize) -> &AtomicU64 {
        let off = i * SLOT + word * 8;
        assert!(off + 8 <= self.len, "slot outside mapping");
        // SAFETY: in bounds (checked), 8-aligned (page-aligned base), and
        // only ever accessed atomically.
        unsafe { &*(self.ptr.add(off) as *const AtomicU64) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly the mapping created in `new`.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Slot words.
const W_COUNTER: usize = 0;
const W_HASH: usize = 1;
const W_STARTED_NS: usize = 2;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is writable; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The child's whole life. Only async-signal-safe calls: it runs after
/// `fork` in a multi-threaded parent.
fn child_main(shm: &Shm, i: usize, parent: libc::pid_t, w: Workload) -> ! {
    // SAFETY: plain syscalls with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(0);
        }
        // Wait here until the parent has placed us in our cgroup.
        libc::raise(libc::SIGSTOP);
    }
    shm.word(i, W_STARTED_NS)
        .store(monotonic_ns(), Ordering::Relaxed);
    let stop = w.stop_after.map_or(u64::MAX, |s| s.get());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1);
    loop {
        for _ in 0..BLOCK {
            x = match w.payload {
                PayloadLoop::Hash => {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^ (x << 17)
                }
                PayloadLoop::Count => x.wrapping_add(1),
            };
            x = std::hint::black_box(x);
        }
        shm.word(i, W_HASH).store(x, Ordering::Relaxed);
        if shm.word(i, W_COUNTER).fetch_add(1, Ordering::Relaxed) + 1 >= stop {
            // SAFETY: _exit is async-signal-safe and never returns.
            unsafe { libc::_exit(0) };
        }
    }
}

#[derive(Debug)]
struct Child {
    pid: libc::pid_t,
    /// Set once reaped, with the CPU time from `wait4`.
    reaped: Option<Duration>,
}

#[derive(Debug, Default)]
struct Ctl {
    paused: bool,
    throttled: bool,
}

#[derive(Debug)]
struct ProcGuest {
    core: GuestCore,
    created_ns: u64,
    children: Mutex<Vec<Child>>,
    ctl: Arc<Mutex<Ctl>>,
    exit_reason: Mutex<Option<String>>,
    final_progress: AtomicU64,
    shm: Mutex<Option<Shm>>,
}

fn signal_all(pids: &[libc::pid_t], sig: libc::c_int) {
    for p in pids {
        let _ = sys::kill(*p, sig);
    }
}

/// Process state letter from `/proc/<pid>/stat` (`T` = stopped).
fn proc_state(pid: libc::pid_t) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command may contain spaces and parentheses; the state follows the last ')'.
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

fn wait_stopped(pids: &[libc::pid_t], timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if pids
            .iter()
            .all(|p| matches!(proc_state(*p), Some('T' | 't' | 'Z' | 'X') | None))
        {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// Reap `pid` if it has exited; `block` waits for it.
fn reap(pid: libc::pid_t, block: bool) -> Option<(Duration, i32)> {
    let mut status = 0;
    // SAFETY: rusage is plain data, zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    // SAFETY: status and ru are writable; pid is our child.
    let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
    if r != pid {
        return None;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Some((tv(ru.ru_utime) + tv(ru.ru_stime), status))
}

impl ProcGuest {
    fn pids(&self) -> Vec<libc::pid_t> {
        lock(&self.children)
            .iter()
            .filter(|c| c.reaped.is_none())
            .map(|c| c.pid)
            .collect()
    }

    /// Reap children that exited by themselves.
    fn poll_exits(&self) {
        for c in lock(&self.children)
            .iter_mut()
            .filter(|c| c.reaped.is_none())
        {
            if let Some((cpu, status)) = reap(c.pid, false) {
                c.reaped = Some(cpu);
                let mut r = lock(&self.exit_reason);
                if r.is_none() {
                    *r = Some(
                        if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
                            "payload finished".into()
                        } else {
                            format!("child {} ended with status {status:#x}", c.pid)
                        },
                    );
                }
            }
        }
    }
}

impl Managed for ProcGuest {
    const BACKEND: BackendName = BackendName::Process;

    fn core(&self) -> &GuestCore {
        &self.core
    }

    fn live_state(&self) -> GuestState {
        self.poll_exits();
        if lock(&self.children).iter().all(|c| c.reaped.is_some()) {
            GuestState::Exited
        } else if lock(&self.ctl).paused {
            GuestState::Paused
        } else {
            GuestState::Running
        }
    }

    fn cpu_time(&self) -> Duration {
        lock(&self.children)
            .iter()
            .map(|c| match c.reaped {
                Some(d) => d,
                None => sys::process_cpu(c.pid).unwrap_or_default(),
            })
            .sum()
    }

    fn progress(&self) -> u64 {
        match &*lock(&self.shm) {
            Some(shm) => (0..self.core.n())
                .map(|i| shm.word(i, W_COUNTER).load(Ordering::Relaxed))
                .sum(),
            None => self.final_progress.load(Ordering::Relaxed),
        }
    }

    fn first_exit_us(&self) -> Option<u64> {
        let shm = lock(&self.shm);
        let started = (0..self.core.n())
            .map(|i| {
                shm.as_ref()
                    .map_or(0, |s| s.word(i, W_STARTED_NS).load(Ordering::Relaxed))
            })
            .filter(|ns| *ns != 0)
            .min()?;
        Some(started.saturating_sub(self.created_ns) / 1000)
    }

    fn exit_reason(&self) -> Option<String> {
        lock(&self.exit_reason).clone()
    }

    fn cap_tasks(&self) -> Vec<libc::pid_t> {
        self.pids()
    }

    fn spawn_duty(&self, cap: CpuCap) -> Result<DutyCycle> {
        let ctl = Arc::clone(&self.ctl);
        let pids = self.pids();
        let hold = move |on: bool| {
            let mut c = lock(&ctl);
            c.throttled = on;
            if !c.paused {
                signal_all(&pids, if on { libc::SIGSTOP } else { libc::SIGCONT });
            }
        };
        DutyCycle::spawn(cap, Box::new(hold)).map_err(|e| VmmError::host("spawn duty cycle", "", e))
    }

    /// Kill and reap every child, then unmap the counters.
    fn release(&self, _group: Option<&CapGroup>) {
        for c in lock(&self.children)
            .iter_mut()
            .filter(|c| c.reaped.is_none())
        {
            let _ = sys::kill(c.pid, libc::SIGKILL);
            c.reaped = Some(reap(c.pid, true).map_or(Duration::ZERO, |r| r.0));
        }
        self.final_progress
            .store(self.progress(), Ordering::Relaxed);
        drop(lock(&self.shm).take());
    }
}

/// The process backend. Dropping it kills every guest.
#[derive(Debug)]
pub struct ProcessBackend {
    hierarchy: Hierarchy,
    guests: GuestTable<ProcGuest>,
}

impl ProcessBackend {
    /// Default caps (cgroups under `maxwell/`).
    pub fn new() -> Self {
        Self::with_caps(CapConfig::default())
    }

    /// With a cap configuration.
    pub fn with_caps(cfg: CapConfig) -> Self {
        ProcessBackend {
            hierarchy: Hierarchy::detect(&cfg),
            guests: GuestTable::default(),
        }
    }

    /// How caps are enforced on this host.
    pub fn cap_mode(&self) -> CapMode {
        self.hierarchy.mode()
    }

    fn start_as(&self, spec: &GuestSpec, held: bool) -> Result<GuestId> {
        let created_ns = monotonic_ns();
        let GuestKind::Workload(w) = spec.kind else {
            return Err(VmmError::Unsupported {
                backend: BackendName::Process,
                what: "linux guests need KVM".into(),
            });
        };
        let len = (spec.memory.bytes() as usize).max(usize::from(spec.vcpus.get()) * SLOT);
        let shm = Shm::new(len).map_err(|e| VmmError::host("map guest memory", "", e))?;
        let g = ProcGuest {
            core: GuestCore::new(spec, self.hierarchy.mode()),
            created_ns,
            children: Mutex::new(Vec::new()),
            ctl: Arc::default(),
            exit_reason: Mutex::new(None),
            final_progress: AtomicU64::new(0),
            shm: Mutex::new(Some(shm)),
        };
        let r = self
            .fork_children(&g, w)
            .and_then(|()| g.apply_caps(&self.hierarchy));
        if let Err(e) = r {
            let _ = g.teardown();
            return Err(e);
        }
        // The children wait stopped at their start point: a held guest stays so.
        match held {
            true => lock(&g.ctl).paused = true,
            false => signal_all(&g.pids(), libc::SIGCONT),
        }
        Ok(self.guests.insert(g))
    }

    fn fork_children(&self, g: &ProcGuest, w: Workload) -> Result<()> {
        let parent = std::process::id() as libc::pid_t;
        for i in 0..g.core.n() {
            let shm_guard = lock(&g.shm);
            let shm = shm_guard.as_ref().ok_or(VmmError::NoSuchGuest(g.core.id))?;
            // SAFETY: the child only runs `child_main`, which uses raw
            // syscalls and atomics on the inherited mapping, then _exit.
            let pid = unsafe { libc::fork() };
            match pid {
                -1 => return Err(VmmError::host("fork", "", io::Error::last_os_error())),
                0 => child_main(shm, i, parent, w),
                pid => lock(&g.children).push(Child { pid, reaped: None }),
            }
        }
        if !wait_stopped(&g.pids(), ACK_TIMEOUT) {
            return Err(VmmError::host(
                "children did not reach their start point",
                "",
                io::ErrorKind::TimedOut.into(),
            ));
        }
        Ok(())
    }
}

impl Default for ProcessBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl GuestBackend for ProcessBackend {
    fn name(&self) -> BackendName {
        BackendName::Process
    }

    fn start(&self, spec: &GuestSpec) -> Result<GuestId> {
        self.start_as(spec, false)
    }

    fn start_held(&self, spec: &GuestSpec) -> Result<GuestId> {
        self.start_as(spec, true)
    }

    fn pause(&self, id: GuestId) -> Result<()> {
        let g = self.guests.get(id)?;
        if g.state() == GuestState::Exited {
            return Err(VmmError::exited(id, "pause"));
        }
        let pids = g.pids();
        lock(&g.ctl).paused = true;
        signal_all(&pids, libc::SIGSTOP);
        if wait_stopped(&pids, ACK_TIMEOUT) {
            Ok(())
        } else {
            Err(VmmError::timeout(id, "pause", ACK_TIMEOUT))
        }
    }

    fn resume(&self, id: GuestId) -> Result<()> {
        let g = self.guests.get(id)?;
        if g.state() == GuestState::Exited {
            return Err(VmmError::exited(id, "resume"));
        }
        let mut c = lock(&g.ctl);
        c.paused = false;
        if !c.throttled {
            signal_all(&g.pids(), libc::SIGCONT);
        }
        Ok(())
    }

    backend_methods!(guests);
}

impl Drop for ProcessBackend {
    fn drop(&mut self) {
        self.shutdown();
    }
}
