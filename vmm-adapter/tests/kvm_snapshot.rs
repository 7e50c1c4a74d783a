//! A paused KVM guest captured whole and restored into a new VM: its
//! progress counter goes on from where it stopped, never backwards.

mod common;

use common::*;
use maxwell_vmm::{GuestBackend, GuestSpec, GuestState, PayloadLoop, VmmError};
use std::time::Duration;

#[test]
fn a_restored_guest_counts_on_from_its_snapshot() {
    let Some(b) = kvm_or_skip("snapshot") else {
        return;
    };
    let spec = GuestSpec::workload("m", 2, 4, PayloadLoop::Count).expect("spec");
    let id = b.start(&spec).expect("start");
    assert!(progress_exceeds(&b, id, 40), "no progress");
    // A running guest is not captured.
    assert!(matches!(b.snapshot(id), Err(VmmError::InvalidSpec { .. })));
    b.pause(id).expect("pause");
    let at = b.progress(id).expect("progress");
    let snap = b.snapshot(id).expect("snapshot");
    // A few MiB of guest, a few pages carried: code, tables, stack, counters.
    eprintln!(
        "snapshot: {} pages, {} bytes of memory carried",
        snap.pages.len(),
        snap.memory_carried()
    );
    assert!(
        snap.memory_carried() <= 64 * 1024,
        "{} bytes",
        snap.memory_carried()
    );
    assert_eq!(snap.vcpus.len(), 2);
    b.kill(id).expect("kill the source");

    // Through the wire form and into a new VM, held.
    let text = serde_json::to_string(&snap).expect("encode");
    let snap: maxwell_vmm::GuestSnapshot = serde_json::from_str(&text).expect("decode");
    let to = b.restore_held(&spec, &snap).expect("restore");
    assert_eq!(b.info(to).expect("info").state, GuestState::Paused);
    assert_eq!(
        b.progress(to).expect("progress"),
        at,
        "the counter moved in transit"
    );
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(b.progress(to).expect("progress"), at, "a held guest ran");
    b.resume(to).expect("resume");
    assert!(
        progress_exceeds(&b, to, at + 40),
        "no progress after the restore"
    );
    // Never backwards: sampled while it runs.
    let mut last = at;
    for _ in 0..20 {
        let p = b.progress(to).expect("progress");
        assert!(p >= last, "{p} < {last}");
        last = p;
        std::thread::sleep(Duration::from_millis(5));
    }
    b.kill(to).expect("kill");
}

#[test]
fn a_snapshot_is_refused_into_a_guest_of_another_shape() {
    let Some(b) = kvm_or_skip("snapshot_shape") else {
        return;
    };
    let spec = GuestSpec::workload("m", 1, 4, PayloadLoop::Count).expect("spec");
    let id = b.start_held(&spec).expect("start held");
    let snap = b.snapshot(id).expect("a held guest is paused");
    b.kill(id).expect("kill");
    let bigger = GuestSpec::workload("m", 2, 4, PayloadLoop::Count).expect("spec");
    assert!(b.restore_held(&bigger, &snap).is_err());
    let mut old = snap.clone();
    old.version = 0;
    assert!(b.restore_held(&spec, &old).is_err());
}
