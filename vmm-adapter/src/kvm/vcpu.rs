//! vCPU threads: one OS thread per vCPU, parked and kicked by the
//! controller.
//!
//! Kicking follows the Firecracker / Cloud Hypervisor pattern: the
//! controller records what it wants under the guest's mutex, then sends the
//! vCPU thread a real-time signal. The handler sets `kvm_run.immediate_exit`
//! through a thread-local pointer, so whether the signal lands while the
//! thread is inside `KVM_RUN` (the ioctl returns `EINTR`) or just before it
//! (the next `KVM_RUN` returns `EINTR` at once), the thread comes back to
//! its control point and sees the request. No request can be lost.

use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use kvm_bindings::kvm_run;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vmm_sys_util::eventfd::EventFd;

use super::layout::{MMIO_DONE, MMIO_REPORT};
use super::snapshot::VcpuState;
use crate::sys;

/// Offset of the kick signal from `SIGRTMIN`.
pub const KICK_SIGNAL_OFFSET: libc::c_int = 5;

/// The kick signal number.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN() + KICK_SIGNAL_OFFSET
}

thread_local! {
    /// This thread's `kvm_run` mapping while it owns a vCPU.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let run = KVM_RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: the pointer is this thread's own kvm_run mapping, set by
        // the vCPU thread and cleared before the VcpuFd (and the mapping)
        // is dropped; a volatile byte store is async-signal-safe.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
    fence(Ordering::SeqCst);
}

/// Install the kick handler once per process.
pub fn install_kick_handler() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick)
                .map_err(|e| format!("cannot install vCPU kick handler: {e}"))
        })
        .clone()
}

/// What the controller wants from the vCPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// Run the guest.
    Run,
    /// Park at the control point.
    Pause,
    /// Leave the thread.
    Stop,
}

/// Guest-wide control block, shared by the controller and all vCPU threads.
#[derive(Debug)]
pub struct Ctl {
    /// Requested state.
    pub want: Want,
    /// Held by the duty-cycle fallback (parks like a pause).
    pub throttled: bool,
    /// vCPUs currently parked.
    pub parked: usize,
    /// vCPUs whose threads have left the run loop.
    pub exited: usize,
    /// First exit reason, if any vCPU stopped by itself.
    pub exit_reason: Option<String>,
    /// A snapshot asked of the parked vCPUs: each fills its slot.
    pub capture: Option<Vec<Option<Result<VcpuState, String>>>>,
}

/// Shared per-guest state.
#[derive(Debug)]
pub struct Shared {
    /// Control block.
    pub ctl: Mutex<Ctl>,
    /// Signalled on every change of `ctl`.
    pub cv: Condvar,
    /// When `start` began.
    pub created: Instant,
    /// Microseconds from `created` to the first exit; `u64::MAX` until seen.
    pub first_exit_us: AtomicU64,
    /// Exits reported by the payload (or console bytes for Linux).
    pub reports: AtomicU64,
}

impl Shared {
    /// A block whose vCPUs start parked.
    pub fn new(created: Instant) -> Self {
        Shared {
            ctl: Mutex::new(Ctl {
                want: Want::Pause,
                throttled: false,
                parked: 0,
                exited: 0,
                exit_reason: None,
                capture: None,
            }),
            cv: Condvar::new(),
            created,
            first_exit_us: AtomicU64::new(u64::MAX),
            reports: AtomicU64::new(0),
        }
    }

    /// Lock the control block (a poisoned lock is still usable: the data
    /// are plain counters).
    pub fn lock(&self) -> MutexGuard<'_, Ctl> {
        maxwell_types::sync::lock(&self.ctl)
    }

    fn saw_exit(&self) {
        if self.first_exit_us.load(Ordering::Relaxed) == u64::MAX {
            let us = self.created.elapsed().as_micros() as u64;
            let _ = self.first_exit_us.compare_exchange(
                u64::MAX,
                us,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }
}

/// Serial device state for Linux guests.
pub type Serial = vm_superio::Serial<IrqTrigger, vm_superio::serial::NoEvents, ConsoleSink>;

/// Raises the serial IRQ through an irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl vm_superio::Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Collects console output (bounded) and counts bytes as progress.
#[derive(Debug, Clone)]
pub struct ConsoleSink {
    /// The last [`CONSOLE_KEEP`] bytes written.
    pub buf: Arc<Mutex<Vec<u8>>>,
    /// Bytes ever written.
    pub total: Arc<AtomicU64>,
}

/// Console bytes kept per guest.
pub const CONSOLE_KEEP: usize = 64 * 1024;

impl Write for ConsoleSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut b = maxwell_types::sync::lock(&self.buf);
        b.extend_from_slice(data);
        if b.len() > CONSOLE_KEEP {
            let cut = b.len() - CONSOLE_KEEP;
            b.drain(..cut);
        }
        self.total.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How a vCPU's port I/O is served.
#[derive(Debug)]
pub enum Io {
    /// The built-in payload's report/done ports.
    Workload,
    /// A 16550 UART at 0x3f8 (COM1); every other port reads as 0xff.
    Linux(Box<Serial>),
}

const COM1: u16 = 0x3f8;

/// Everything a vCPU thread owns.
#[derive(Debug)]
pub struct VcpuThread {
    /// vCPU index.
    pub index: usize,
    /// The vCPU.
    pub fd: VcpuFd,
    /// Guest-wide control.
    pub shared: Arc<Shared>,
    /// Port I/O handling.
    pub io: Io,
    /// Final CPU time of the thread, ns, written as it exits.
    pub final_cpu_ns: Arc<AtomicU64>,
}

/// Identity a new vCPU thread reports to the controller.
#[derive(Clone, Copy, Debug)]
pub struct ThreadIds {
    /// Kernel TID (for cgroups).
    pub tid: libc::pid_t,
    /// pthread handle (for signals and the CPU clock).
    pub pthread: libc::pthread_t,
}

impl VcpuThread {
    /// Thread body: report ids, then run until told to stop or the guest
    /// stops by itself.
    pub fn run(mut self, ready: SyncSender<ThreadIds>) {
        KVM_RUN.with(|c| c.set(self.fd.get_kvm_run() as *mut kvm_run));
        let _ = ready.send(ThreadIds {
            tid: sys::gettid(),
            pthread: sys::pthread_self(),
        });
        let reason = self.run_loop();
        KVM_RUN.with(|c| c.set(std::ptr::null_mut()));
        let ns = sys::own_thread_cpu().as_nanos() as u64;
        self.final_cpu_ns.store(ns.max(1), Ordering::SeqCst);
        let mut g = self.shared.lock();
        g.exited += 1;
        if g.exit_reason.is_none() {
            g.exit_reason = reason;
        }
        self.shared.cv.notify_all();
    }

    /// `None` when stopped by the controller, `Some(reason)` otherwise.
    fn run_loop(&mut self) -> Option<String> {
        loop {
            if !control_point(&self.shared, self.index, &mut self.fd) {
                return None;
            }
            let result = self.fd.run();
            match result {
                Ok(exit) => {
                    if let Some(reason) = handle_exit(exit, &self.shared, &mut self.io) {
                        // The guest's rip makes a crash report actionable.
                        let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
                        return Some(format!("vcpu{}: {reason} (rip {rip:#x})", self.index));
                    }
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    self.fd.set_kvm_immediate_exit(0);
                }
                Err(e) => return Some(format!("vcpu{}: KVM_RUN failed: {e}", self.index)),
            }
        }
    }
}

/// Park while paused or throttled, capturing the registers when a
/// snapshot is asked; `false` means leave the thread.
fn control_point(shared: &Shared, index: usize, fd: &mut VcpuFd) -> bool {
    let mut g = shared.lock();
    let mut parked = false;
    loop {
        if parked {
            if let Some(slot) = g.capture.as_mut().and_then(|c| c.get_mut(index)) {
                if slot.is_none() {
                    *slot = Some(capture(fd));
                    shared.cv.notify_all();
                }
            }
        }
        match g.want {
            Want::Stop => {
                if parked {
                    g.parked -= 1;
                }
                return false;
            }
            Want::Run if !g.throttled => break,
            _ => {}
        }
        if !parked {
            parked = true;
            g.parked += 1;
            shared.cv.notify_all();
        }
        g = shared.cv.wait(g).unwrap_or_else(|e| e.into_inner());
    }
    if parked {
        g.parked -= 1;
        shared.cv.notify_all();
    }
    true
}

/// This vCPU's registers, once any I/O it exited for is complete: a
/// `KVM_RUN` with `immediate_exit` set finishes it and returns at once
/// (the KVM API's way to reach a consistent state without running on).
fn capture(fd: &mut VcpuFd) -> Result<VcpuState, String> {
    fd.set_kvm_immediate_exit(1);
    let run = fd.run().map(|_| ());
    fd.set_kvm_immediate_exit(0);
    match run {
        Err(e) if e.errno() != libc::EINTR && e.errno() != libc::EAGAIN => {
            return Err(format!("KVM_RUN to complete I/O: {e}"));
        }
        _ => {}
    }
    let regs = fd.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    let sregs = fd.get_sregs().map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    let fpu = fd.get_fpu().map_err(|e| format!("KVM_GET_FPU: {e}"))?;
    Ok(VcpuState::new(&regs, &sregs, &fpu))
}

/// Serve one exit; `Some(reason)` ends the vCPU.
fn handle_exit(exit: VcpuExit<'_>, shared: &Shared, io: &mut Io) -> Option<String> {
    shared.saw_exit();
    match (exit, io) {
        (VcpuExit::MmioWrite(MMIO_REPORT, _), Io::Workload) => {
            shared.reports.fetch_add(1, Ordering::Relaxed);
            None
        }
        (VcpuExit::MmioWrite(MMIO_DONE, _), Io::Workload) => Some("payload finished".into()),
        (VcpuExit::IoOut(port, data), Io::Linux(serial)) => {
            if (COM1..COM1 + 8).contains(&port) {
                if let Some(b) = data.first() {
                    let _ = serial.write((port - COM1) as u8, *b);
                }
            }
            None
        }
        (VcpuExit::IoIn(port, data), Io::Linux(serial)) => {
            let v = if (COM1..COM1 + 8).contains(&port) {
                serial.read((port - COM1) as u8)
            } else {
                0xff
            };
            data.fill(v);
            None
        }
        (VcpuExit::MmioRead(_, data), Io::Linux(_)) => {
            data.fill(0xff);
            None
        }
        (VcpuExit::MmioWrite(..), Io::Linux(_)) => None,
        (VcpuExit::Intr, _) => None,
        (VcpuExit::Hlt, _) => Some("halted".into()),
        (VcpuExit::Shutdown, _) => Some("shutdown (triple fault)".into()),
        (VcpuExit::FailEntry(reason, cpu), _) => {
            Some(format!("VM entry failed: reason {reason:#x} on cpu {cpu}"))
        }
        (VcpuExit::InternalError, _) => Some("KVM internal error (emulation failure)".into()),
        (other, _) => Some(format!("unexpected exit {other:?}")),
    }
}

/// Wait on the guest's condvar until `done` holds or `timeout` passes;
/// returns whether `done` holds.
pub fn wait_until(
    shared: &Shared,
    timeout: std::time::Duration,
    mut done: impl FnMut(&Ctl) -> bool,
) -> bool {
    let g = shared.lock();
    let (g, _) = shared
        .cv
        .wait_timeout_while(g, timeout, |c| !done(c))
        .unwrap_or_else(|e| e.into_inner());
    done(&g)
}
