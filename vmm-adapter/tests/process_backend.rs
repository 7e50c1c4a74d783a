//! The process backend: forked children under the same controls.

mod common;

use std::time::Duration;

use common::*;
use maxwell_vmm::bench::measure_share;
use maxwell_vmm::{
    CapMode, CpuCap, GuestBackend, GuestSpec, GuestState, PayloadLoop, ProcessBackend, VmmError,
};

fn spec(vcpus: u32) -> GuestSpec {
    GuestSpec::workload("p", vcpus, 4, PayloadLoop::Hash).expect("spec")
}

fn alive(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Child processes of every thread of this process.
fn children() -> Vec<i32> {
    let tasks = std::fs::read_dir("/proc/self/task").expect("tasks");
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

#[test]
fn process_guest_runs_pauses_resumes_and_is_killed() {
    let _serial = serial();
    let b = ProcessBackend::new();
    let before = children();
    let id = b.start(&spec(2)).expect("start");
    assert!(progress_exceeds(&b, id, 0));
    let info = b.info(id).expect("info");
    assert_eq!(
        (info.backend, info.state),
        (maxwell_vmm::BackendName::Process, GuestState::Running)
    );
    assert!(info.first_exit_us.is_some());
    let kids: Vec<i32> = children()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(kids.len(), 2, "one process per vCPU");
    for _ in 0..20 {
        b.pause(id).expect("pause");
        let p = b.progress(id).expect("p");
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(b.progress(id).expect("p"), p, "moved while paused");
        assert_eq!(b.info(id).expect("info").state, GuestState::Paused);
        b.resume(id).expect("resume");
        assert!(progress_exceeds(&b, id, p));
    }
    b.pause(id).expect("pause before kill");
    let info = b.kill(id).expect("kill");
    assert_eq!(info.state, GuestState::Killed);
    assert!(info.cpu_time_ns > 0);
    for k in kids {
        assert!(!alive(k), "child {k} survived kill");
    }
    assert!(matches!(b.kill(id), Err(VmmError::NoSuchGuest(_))));
}

#[test]
fn process_guest_cap_30_percent() {
    let _serial = serial();
    let b = ProcessBackend::new();
    if b.cap_mode() == CapMode::DutyCycle {
        eprintln!("process cap: skipped: no writable cgroup cpu controller");
        return;
    }
    let id = b
        .start(&spec(1).with_cap(CpuCap::new(0.3).expect("cap")))
        .expect("start");
    std::thread::sleep(Duration::from_millis(300));
    let share = measure_share(&b, id, Duration::from_secs(3)).expect("measure");
    let dir_gone = b.kill(id).is_ok();
    eprintln!("process cap 30%: measured {:.1}%", share * 100.0);
    assert!(dir_gone);
    assert!(
        (share - 0.30).abs() <= 0.02,
        "30% cap gave {:.1}%",
        share * 100.0
    );
}

#[test]
fn process_guest_exits_and_backend_drop_reaps() {
    let _serial = serial();
    let b = ProcessBackend::new();
    let id = b.start(&spec(1).with_stop_after(20)).expect("start");
    assert!(eventually(Duration::from_secs(20), || {
        b.info(id).is_ok_and(|i| i.state == GuestState::Exited)
    }));
    assert_eq!(b.progress(id).expect("p"), 20);
    let before = children();
    let other = b.start(&spec(1)).expect("start");
    let kid: Vec<i32> = children()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(kid.len(), 1);
    assert!(b.info(other).is_ok());
    drop(b);
    assert!(!alive(kid[0]), "backend drop left a child");
}

#[test]
fn process_backend_refuses_linux_guests() {
    let _serial = serial();
    let b = ProcessBackend::new();
    let kernels = tempfile::tempdir().expect("tmp");
    std::fs::write(kernels.path().join("vmlinux"), b"\x7fELF").expect("write");
    let text = "kind = 'linux'\nvcpus = 1\nmemory_mib = 64\nkernel = 'vmlinux'\n";
    let s = GuestSpec::from_toml_in(text, Some(kernels.path())).expect("valid linux spec");
    let err = b.start(&s).expect_err("no KVM here");
    assert!(matches!(err, VmmError::Unsupported { .. }) && !err.state_changed());
    assert!(b.list().is_empty());
}

#[test]
fn a_held_process_guest_runs_nothing_until_resumed() {
    let b = ProcessBackend::new();
    let id = b.start_held(&spec(1)).expect("start held");
    assert_eq!(b.info(id).expect("info").state, GuestState::Paused);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(b.progress(id).expect("progress"), 0, "a held guest ran");
    b.resume(id).expect("resume");
    assert!(progress_exceeds(&b, id, 0), "no progress after resume");
    b.kill(id).expect("kill");
}
