//! CPU caps on real KVM guests. Tests here run one at a time: they measure
//! CPU shares.

mod common;

use std::time::Duration;

use common::*;
use maxwell_vmm::bench::measure_share;
use maxwell_vmm::{CapConfig, CapMode, CapPolicy, CpuCap, GuestBackend, GuestSpec, PayloadLoop};

const WINDOW: Duration = Duration::from_secs(3);

fn capped(cap: f64) -> GuestSpec {
    GuestSpec::workload("cap", 1, 4, PayloadLoop::Hash)
        .expect("spec")
        .with_cap(CpuCap::new(cap).expect("cap"))
}

#[test]
fn cap_30_percent_gives_30_plus_minus_2_points() {
    let _serial = serial();
    let Some(b) = kvm_or_skip("cap_30") else {
        return;
    };
    if b.cap_mode() == CapMode::DutyCycle {
        eprintln!("cap_30: skipped: no writable cgroup cpu controller (duty cycle only)");
        return;
    }
    let id = b.start(&capped(0.3)).expect("start");
    let dir = b.cgroup_dir(id).expect("guest").expect("has a cgroup");
    if b.cap_mode() == CapMode::CgroupV1 {
        let quota = std::fs::read_to_string(dir.join("vcpu0/cpu.cfs_quota_us")).expect("quota");
        assert_eq!(quota.trim(), "3000");
    }
    std::thread::sleep(Duration::from_millis(300));
    let share = measure_share(&b, id, WINDOW).expect("measure");
    b.kill(id).expect("kill");
    eprintln!("cap 30%: measured {:.1}%", share * 100.0);
    assert!(
        (share - 0.30).abs() <= 0.02,
        "30% cap gave {:.1}%",
        share * 100.0
    );
}

#[test]
fn set_cap_changes_a_running_guest() {
    let _serial = serial();
    let Some(b) = kvm_or_skip("set_cap") else {
        return;
    };
    if b.cap_mode() == CapMode::DutyCycle {
        eprintln!("set_cap: skipped: no writable cgroup cpu controller (duty cycle only)");
        return;
    }
    let id = b.start(&capped(0.7)).expect("start");
    std::thread::sleep(Duration::from_millis(200));
    b.set_cap(id, CpuCap::new(0.1).expect("cap"))
        .expect("set cap");
    std::thread::sleep(Duration::from_millis(200));
    let share = measure_share(&b, id, WINDOW).expect("measure");
    b.kill(id).expect("kill");
    eprintln!("cap 70% -> 10%: measured {:.1}%", share * 100.0);
    assert!(
        (share - 0.10).abs() <= 0.02,
        "10% cap gave {:.1}%",
        share * 100.0
    );
}

#[test]
fn duty_cycle_fallback_caps_roughly() {
    let _serial = serial();
    let caps = CapConfig {
        policy: CapPolicy::DutyCycle,
        ..CapConfig::default()
    };
    let Some(b) = kvm_with_caps_or_skip("duty_cycle", caps) else {
        return;
    };
    assert_eq!(b.cap_mode(), CapMode::DutyCycle);
    let id = b.start(&capped(0.3)).expect("start");
    assert!(b.cgroup_dir(id).expect("guest").is_none());
    std::thread::sleep(Duration::from_millis(200));
    let share = measure_share(&b, id, WINDOW).expect("measure");
    // Pause and resume still work with the duty cycle holding the vCPU.
    b.pause(id).expect("pause");
    let p = b.progress(id).expect("p");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(b.progress(id).expect("p"), p);
    b.resume(id).expect("resume");
    assert!(progress_exceeds(&b, id, p));
    b.kill(id).expect("kill");
    eprintln!("duty cycle 30%: measured {:.1}%", share * 100.0);
    // Open loop: documented as coarser than CFS (29-36% measured here, and
    // once 18.6% on a loaded CI machine): the behaviour checked is a cap
    // well below a whole core that still lets the guest run.
    assert!(
        (0.12..=0.45).contains(&share),
        "30% duty cycle gave {:.1}%",
        share * 100.0
    );
}
