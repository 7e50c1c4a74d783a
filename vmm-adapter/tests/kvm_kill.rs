//! Kill frees everything. One test in this binary, so thread counts and
//! VmSize are not disturbed by other tests.

mod common;

use std::time::Duration;

use common::*;
use maxwell_vmm::{CpuCap, GuestBackend, GuestSpec, GuestState, PayloadLoop, VmmError};

#[test]
fn kill_joins_threads_unmaps_memory_and_removes_cgroups() {
    let Some(b) = kvm_or_skip("kill_frees_everything") else {
        return;
    };
    let threads = task_count();
    let big0 = big_mappings();
    let spec = GuestSpec::workload("k", 2, 256, PayloadLoop::Hash)
        .expect("spec")
        .with_cap(CpuCap::new(0.5).expect("cap"));
    let a = b.start(&spec).expect("start a");
    let c = b.start(&spec).expect("start c");
    assert!(progress_exceeds(&b, a, 0) && progress_exceeds(&b, c, 0));
    // One thread per vCPU (KVM may add a per-VM worker thread of its own,
    // e.g. the NX huge-page recovery task, so count vCPU threads by name).
    assert_eq!(
        vcpu_threads(),
        4,
        "one thread per vCPU: {:?}",
        thread_names()
    );
    // Adjacent anonymous mappings may merge with guest memory, so compare
    // with slack below the size of one guest.
    assert!(
        big_mappings() >= big0 + 2 * (256 << 20),
        "guest memory mapped"
    );
    let dirs: Vec<_> = [a, c]
        .iter()
        .filter_map(|id| b.cgroup_dir(*id).expect("guest"))
        .collect();
    for d in &dirs {
        assert!(d.join("vcpu1").is_dir(), "{} missing", d.display());
    }
    b.pause(c).expect("pause c");

    let info = b.kill(a).expect("kill a");
    assert_eq!(info.state, GuestState::Killed);
    assert!(info.progress > 0 && info.cpu_time_ns > 0, "{info:?}");
    let info = b.kill(c).expect("kill paused c");
    assert_eq!(info.state, GuestState::Killed);

    assert!(
        eventually(Duration::from_secs(2), || task_count() == threads),
        "threads left: {:?}",
        thread_names()
    );
    assert_eq!(vcpu_threads(), 0);
    assert!(
        big_mappings() < big0 + (128 << 20),
        "guest memory still mapped"
    );
    for d in &dirs {
        assert!(!d.exists(), "cgroup {} not removed", d.display());
    }
    assert!(matches!(b.info(a), Err(VmmError::NoSuchGuest(_))));
    assert!(b.list().is_empty());

    // Dropping the backend kills whatever is left.
    let d = b.start(&spec).expect("start d");
    let dir = b.cgroup_dir(d).expect("guest");
    drop(b);
    assert_eq!(task_count(), threads, "drop left threads");
    if let Some(dir) = dir {
        assert!(!dir.exists(), "drop left cgroup {}", dir.display());
    }
}
