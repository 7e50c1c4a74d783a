//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use maxwell_vmm::{kvm_available, CapConfig, GuestBackend, GuestId, KvmBackend};

/// A KVM backend, or `None` after printing why the test is skipped.
pub fn kvm_or_skip(test: &str) -> Option<KvmBackend> {
    kvm_with_caps_or_skip(test, CapConfig::default())
}

/// A KVM backend with a cap config, or `None` after printing a skip line.
pub fn kvm_with_caps_or_skip(test: &str, caps: CapConfig) -> Option<KvmBackend> {
    if let Err(why) = kvm_available() {
        eprintln!("{test}: skipped: /dev/kvm not usable: {why}");
        return None;
    }
    match KvmBackend::with_caps(caps) {
        Ok(b) => Some(b),
        Err(e) => panic!("/dev/kvm works but the backend does not open: {e}"),
    }
}

/// Wait until `f` holds, up to `timeout`.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}

/// Wait until the guest's progress exceeds `above`.
pub fn progress_exceeds(b: &dyn GuestBackend, id: GuestId, above: u64) -> bool {
    eventually(Duration::from_secs(5), || {
        b.progress(id).is_ok_and(|p| p > above)
    })
}

/// Threads of this process.
pub fn task_count() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// One test at a time in a file whose tests measure CPU shares.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    maxwell_types::sync::lock(&LOCK)
}

/// Names (comm) of this process's threads.
pub fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Threads named like vCPU threads (`g<id>-vcpu<i>`).
pub fn vcpu_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| n.contains("-vcpu"))
        .count()
}

/// Total size of this process's mappings of at least 128 MiB, bytes (guest
/// memory; malloc arenas and thread stacks are smaller, so VmSize is not
/// a usable measure).
pub fn big_mappings() -> u64 {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_whitespace().next()?.split_once('-')?;
            let len = u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?;
            (len >= 128 << 20).then_some(len)
        })
        .sum()
}
