//! Real KVM guests: progress, pause/resume, exit, many guests, bad specs.

mod common;

use std::time::Duration;

use common::*;
use maxwell_vmm::{
    CpuCap, GuestBackend, GuestSpec, GuestState, PayloadLoop, RawGuestSpec, VmmError,
};

fn hash_spec(vcpus: u32) -> GuestSpec {
    GuestSpec::workload("t", vcpus, 4, PayloadLoop::Hash).expect("valid spec")
}

#[test]
fn progress_advances() {
    let Some(b) = kvm_or_skip("progress_advances") else {
        return;
    };
    let id = b.start(&hash_spec(1)).expect("start");
    assert!(progress_exceeds(&b, id, 0), "counter never moved");
    let p1 = b.progress(id).expect("progress");
    assert!(progress_exceeds(&b, id, p1 + 10), "counter stopped at {p1}");
    let info = b.info(id).expect("info");
    assert_eq!(info.state, GuestState::Running);
    assert_eq!(info.backend, maxwell_vmm::BackendName::Kvm);
    assert!(info.first_exit_us.is_some(), "no exit seen: {info:?}");
    assert!(info.cpu_time_ns > 0);
    let count = GuestSpec::workload("c", 1, 4, PayloadLoop::Count).expect("spec");
    let c = b.start(&count).expect("start count loop");
    assert!(progress_exceeds(&b, c, 10), "count loop did not advance");
    b.kill(id).expect("kill");
    b.kill(c).expect("kill");
}

#[test]
fn pause_freezes_counter_across_many_cycles_and_resume_continues() {
    let Some(b) = kvm_or_skip("pause_freezes") else {
        return;
    };
    let id = b.start(&hash_spec(2)).expect("start");
    assert!(progress_exceeds(&b, id, 0));
    for cycle in 0..40 {
        b.pause(id).expect("pause");
        assert_eq!(b.info(id).expect("info").state, GuestState::Paused);
        let (p, c) = (b.progress(id).expect("p"), b.cpu_time(id).expect("c"));
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(
            b.progress(id).expect("p"),
            p,
            "counter moved while paused (cycle {cycle})"
        );
        let dc = b.cpu_time(id).expect("c") - c;
        assert!(
            dc < Duration::from_millis(2),
            "vCPUs used {dc:?} while paused"
        );
        b.pause(id).expect("pause is idempotent");
        b.resume(id).expect("resume");
        assert_eq!(b.info(id).expect("info").state, GuestState::Running);
        assert!(
            progress_exceeds(&b, id, p),
            "no progress after resume (cycle {cycle})"
        );
    }
    b.kill(id).expect("kill");
}

#[test]
fn guest_that_finishes_is_exited_and_refuses_pause() {
    let Some(b) = kvm_or_skip("guest_exits") else {
        return;
    };
    let id = b.start(&hash_spec(2).with_stop_after(30)).expect("start");
    assert!(eventually(Duration::from_secs(10), || {
        b.info(id).is_ok_and(|i| i.state == GuestState::Exited)
    }));
    let info = b.info(id).expect("info");
    assert_eq!(info.progress, 60, "two vCPUs x 30 blocks");
    assert!(info
        .exit_reason
        .as_deref()
        .is_some_and(|r| r.contains("payload finished")));
    let err = b.pause(id).expect_err("pause of an exited guest");
    assert!(matches!(err, VmmError::InvalidState { .. }) && !err.state_changed());
    assert_eq!(b.kill(id).expect("kill").state, GuestState::Killed);
}

#[test]
fn many_guests_at_once() {
    let Some(b) = kvm_or_skip("many_guests") else {
        return;
    };
    let ids: Vec<_> = (0..8)
        .map(|i| {
            let s = GuestSpec::workload(&format!("m{i}"), 1, 8, PayloadLoop::Hash).expect("spec");
            b.start(&s).expect("start")
        })
        .collect();
    assert_eq!(b.list().len(), 8);
    for id in &ids {
        assert!(progress_exceeds(&b, *id, 2), "guest {id} starved");
    }
    for id in &ids[..4] {
        b.pause(*id).expect("pause");
    }
    let states: Vec<_> = b.list().iter().map(|g| g.state).collect();
    assert_eq!(
        states.iter().filter(|s| **s == GuestState::Paused).count(),
        4
    );
    for info in b.shutdown() {
        assert_eq!(info.state, GuestState::Killed);
    }
    assert!(b.list().is_empty());
}

#[test]
fn caps_can_be_set_and_unknown_ids_are_refused() {
    let Some(b) = kvm_or_skip("set_cap") else {
        return;
    };
    let id = b.start(&hash_spec(1)).expect("start");
    let cap = CpuCap::new(0.5).expect("cap");
    b.set_cap(id, cap).expect("set cap");
    assert_eq!(b.info(id).expect("info").cap, cap);
    b.kill(id).expect("kill");
    for err in [
        b.pause(id).expect_err("killed"),
        b.kill(id).expect_err("killed twice"),
        b.set_cap(id, cap).expect_err("killed"),
    ] {
        assert!(matches!(err, VmmError::NoSuchGuest(g) if g == id));
        assert!(!err.state_changed());
    }
}

fn raw(vcpus: u32, memory_mib: u64) -> RawGuestSpec {
    RawGuestSpec {
        kind: "workload".into(),
        vcpus,
        memory_mib,
        payload: Some(PayloadLoop::Hash),
        ..RawGuestSpec::default()
    }
}

#[test]
fn bad_specs_give_clear_errors_and_change_nothing() {
    let Some(b) = kvm_or_skip("bad_specs") else {
        return;
    };
    let threads = task_count();
    let cases: Vec<(&str, RawGuestSpec)> = vec![
        ("memory_mib", raw(1, 0)),
        ("memory_mib", raw(1, 1 << 40)),
        ("vcpus", raw(0, 4)),
        (
            "payload",
            RawGuestSpec {
                payload: None,
                ..raw(1, 4)
            },
        ),
        (
            "kernel",
            RawGuestSpec {
                kind: "linux".into(),
                payload: None,
                kernel: Some("/nonexistent/vmlinux".into()),
                ..raw(1, 64)
            },
        ),
    ];
    for (field, r) in cases {
        let err = r.validate().expect_err("must be refused");
        match &err {
            VmmError::InvalidSpec { field: f, reason } => {
                assert_eq!(*f, field, "{reason}");
                assert!(!reason.is_empty());
            }
            other => panic!("{field}: expected InvalidSpec, got {other:?}"),
        }
        assert!(!err.state_changed());
    }
    // Valid for the spec, too large for this host: refused at start.
    let host_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    let too_big = (host_kib / 1024).clamp(1, 64 * 1024);
    if let Ok(spec) = raw(1, too_big).validate() {
        let err = b.start(&spec).expect_err("more memory than the host");
        assert!(
            matches!(
                err,
                VmmError::InvalidSpec {
                    field: "memory_mib",
                    ..
                }
            ),
            "{err}"
        );
        assert!(!err.state_changed());
    }
    assert!(b.list().is_empty(), "a refused spec left a guest");
    assert_eq!(task_count(), threads, "a refused spec left a thread");
    let text = "kind = 'workload'\nvcpus = 1\nmemory_mib = 4\npayload = 'hash'\nturbo = true\n";
    assert!(matches!(
        GuestSpec::from_toml(text),
        Err(VmmError::SpecParse(_))
    ));
}

#[test]
fn a_held_guest_runs_nothing_until_resumed() {
    let Some(b) = kvm_or_skip("held") else {
        return;
    };
    let id = b.start_held(&hash_spec(2)).expect("start held");
    assert_eq!(b.info(id).expect("info").state, GuestState::Paused);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(b.progress(id).expect("progress"), 0, "a held guest ran");
    assert!(b.cpu_time(id).expect("cpu") < Duration::from_millis(2));
    b.resume(id).expect("resume");
    assert!(progress_exceeds(&b, id, 0), "no progress after resume");
    b.kill(id).expect("kill");
}
