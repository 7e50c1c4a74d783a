//! Thin wrappers over the few libc calls the backends need. Each `unsafe`
//! block is a single FFI call whose preconditions are stated beside it.

use std::io;
use std::time::Duration;

/// The calling thread's kernel TID.
pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// The calling thread's pthread handle.
pub(crate) fn pthread_self() -> libc::pthread_t {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    unsafe { libc::pthread_self() }
}

fn clock_read(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// CPU time of the calling thread.
pub(crate) fn own_thread_cpu() -> Duration {
    clock_read(libc::CLOCK_THREAD_CPUTIME_ID).unwrap_or_default()
}

/// CPU time of another thread of this process, by pthread handle. The
/// caller guarantees the thread has not been joined yet (the handle is
/// valid); a thread that has already exited gives an error.
pub(crate) fn thread_cpu(thread: libc::pthread_t) -> io::Result<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` is a valid, unjoined pthread (caller's contract) and
    // `clock` is writable.
    let rc = unsafe { libc::pthread_getcpuclockid(thread, &mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    clock_read(clock)
}

/// CPU time of a whole process (all its threads), by pid.
pub(crate) fn process_cpu(pid: libc::pid_t) -> io::Result<Duration> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `clock` is writable; an invalid pid only yields an error code.
    let rc = unsafe { libc::clock_getcpuclockid(pid, &mut clock) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    clock_read(clock)
}

/// Send `sig` to one thread of this process. Caller guarantees the pthread
/// has not been joined.
pub(crate) fn pthread_kill(thread: libc::pthread_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: `thread` is valid and unjoined (caller's contract).
    let rc = unsafe { libc::pthread_kill(thread, sig) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Send `sig` to a process.
pub(crate) fn kill(pid: libc::pid_t, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: kill has no memory preconditions; a bad pid yields ESRCH.
    let rc = unsafe { libc::kill(pid, sig) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Total physical memory of the host, bytes (0 if unknown).
pub(crate) fn host_memory_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let pages = unsafe { libc::sysconf(libc::_SC_PHYS_PAGES) };
    // SAFETY: as above.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if pages <= 0 || size <= 0 {
        return 0;
    }
    (pages as u64).saturating_mul(size as u64)
}
