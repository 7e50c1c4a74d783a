//! The real `maxwell` binary as an operator runs it: fixture sysfs trees, a
//! real HTTP port, file changes followed, broken files survived, signals.

mod common;

use common::{copy_tree, testdata, Agent};
use maxwell_gossip::MilliCelsius;
use maxwell_node::client;
use maxwell_node::http::Status;
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_maxwell");

#[test]
fn agent_reports_fixture_values_follows_changes_and_survives_broken_files() {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("amd-epyc"), tree.path());
    let agent = Agent::start(BIN, tree.path(), &[]);
    let status: Status = agent.status();
    assert_eq!(status.node.name, "fixture");
    assert_eq!((status.node.rack.as_str(), status.node.slot), ("r9", 12));
    let s = &status.snapshot;
    let hottest = s.summary.hottest.as_ref().expect("hottest");
    assert_eq!(hottest.millicelsius, MilliCelsius(60_125));
    assert_eq!(
        s.summary.headroom_microwatts.map(|w| w.0),
        Some(219_000_000)
    );

    // A value written into the file shows up at the next period.
    let hw = tree.path().join("hwmon");
    std::fs::write(hw.join("hwmon0/temp4_input"), "70250\n").expect("write");
    let status = agent.wait_for(|s| {
        s.snapshot.summary.hottest.as_ref().map(|h| h.millicelsius) == Some(MilliCelsius(70_250))
    });
    assert_eq!(
        status
            .snapshot
            .summary
            .hottest
            .as_ref()
            .map(|h| h.sensor.as_str()),
        Some("temp4")
    );

    // A channel that turns into garbage, one that becomes unreadable: skipped, reported, agent lives.
    std::fs::write(hw.join("hwmon0/temp4_input"), "garbage\n").expect("write");
    std::fs::remove_file(hw.join("hwmon0/temp3_input")).expect("rm");
    std::fs::create_dir(hw.join("hwmon0/temp3_input")).expect("mkdir");
    let status = agent.wait_for(|s| s.snapshot.problems.len() >= 2);
    let kinds: Vec<_> = status
        .snapshot
        .problems
        .iter()
        .map(|p| p.kind.as_str())
        .collect();
    assert!(
        kinds.contains(&"garbage") && kinds.contains(&"unreadable"),
        "{kinds:?}"
    );
    // A failed channel never reads cooler than it last was: temp4 is held
    // at its last good 70.25 °C or above, and says so.
    let hottest = status.snapshot.summary.hottest.as_ref().expect("hottest");
    assert_eq!(hottest.sensor, "temp4", "{hottest:?}");
    assert!(hottest.millicelsius >= MilliCelsius(70_250), "{hottest:?}");
    assert!(hottest.held_for_ms.is_some(), "{hottest:?}");

    let metrics = client::get(agent.addr, "/metrics", Duration::from_secs(2)).expect("metrics");
    assert!(
        metrics.contains("node_hwmon_temp_celsius{chip=\"hwmon1\",sensor=\"temp1\"} 41.85"),
        "{metrics}"
    );
    assert!(
        metrics.contains("node_hwmon_power_average_watt{chip=\"hwmon2\",sensor=\"power1\"} 231.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("maxwell_power_headroom_watts 219.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("maxwell_sensor_read_errors_total{kind=\"garbage\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("maxwell_sensors_emulated 0"), "{metrics}");

    // The operator's table.
    let out = Command::new(BIN)
        .args(["status", "--http", &agent.addr.to_string()])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("Composite") && text.contains("41.9 °C") && text.contains("skipped:"),
        "{text}"
    );

    // Healing: the file readable again clears the problem.
    std::fs::write(hw.join("hwmon0/temp4_input"), "59000\n").expect("write");
    agent.wait_for(|s| {
        s.snapshot
            .problems
            .iter()
            .all(|p| !p.path.ends_with("temp4_input"))
    });

    let code = agent.terminate();
    assert_eq!(code, Some(0), "clean exit on SIGTERM");
}

#[test]
fn healthz_members_and_not_found() {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("intel-xeon"), tree.path());
    let agent = Agent::start(BIN, tree.path(), &[]);
    let health: serde_json::Value = serde_json::from_str(
        &client::get(agent.addr, "/healthz", Duration::from_secs(2)).expect("healthz"),
    )
    .expect("json");
    assert_eq!(health["status"], "ok", "{health}");
    assert!(health["sensor_age_ms"].as_u64().is_some(), "{health}");
    let members: maxwell_node::http::Members =
        client::get_json(agent.addr, "/v1/members", Duration::from_secs(2)).expect("members");
    assert_eq!(members.members.len(), 1);
    assert!(members.members[0].is_self);
    // Typed values, one spelling: ids in hex as in the logs, statuses in lower case.
    let raw: serde_json::Value = serde_json::from_str(
        &client::get(agent.addr, "/v1/members", Duration::from_secs(2)).expect("members"),
    )
    .expect("json");
    let me = &raw["members"][0];
    assert_eq!(me["id"].as_str().map(str::len), Some(20), "{me}");
    assert_eq!(me["status"], "alive", "{me}");
    assert_eq!(me["sensor_source"], "sysfs", "{me}");
    let status: serde_json::Value = serde_json::from_str(
        &client::get(agent.addr, "/v1/status", Duration::from_secs(2)).expect("status"),
    )
    .expect("json");
    assert_eq!(status["id"], me["id"], "{status}");
    let err = client::get(agent.addr, "/nope", Duration::from_secs(2)).expect_err("404");
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(agent.interrupt(), Some(0), "clean exit on SIGINT");
}

#[test]
fn bad_config_is_one_clear_line_and_nonzero_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "rack = \"r1\"\n[sensors]\ninterval_ms = 5\n").expect("write");
    let out = Command::new(BIN)
        .arg("agent")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("sensors.interval_ms") && err.contains("100"),
        "{err}"
    );

    std::fs::write(&cfg, "rack = \"r1\"\nrak = 2\n").expect("write");
    let out = Command::new(BIN)
        .arg("agent")
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("line 2") && err.contains("rak"), "{err}");

    let out = Command::new(BIN)
        .args(["agent", "--slot", "99999"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`slot`"));
}

#[test]
fn key_file_with_loose_permissions_stops_the_agent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    let key = data.join("node.key");
    std::fs::write(
        &key,
        format!("maxwell-ed25519-secret-v1\n{}\n", "11".repeat(32)),
    )
    .expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = Command::new(BIN)
        .args(["agent", "--sensors", "emulated", "--http", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn status_against_no_agent_is_a_clear_error() {
    // A port the kernel just handed out and took back: nothing serves on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe")
        .port();
    let out = Command::new(BIN)
        .args(["status", "--http", &format!("127.0.0.1:{port}")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the agent"));
}

/// Runs a file this test has just written. Another test's fork may still
/// hold the file open for writing for a moment (`ETXTBSY`); that passes.
fn run_fresh(cmd: &mut Command) -> std::process::Output {
    for _ in 0..100 {
        match cmd.output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other.expect("run"),
        }
    }
    panic!("{cmd:?} stayed busy for 2 s")
}

#[test]
fn demo_and_bench_are_passed_on_to_maxwell_tools_beside_the_binary() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("maxwell");
    std::fs::copy(BIN, &bin).expect("copy the binary");
    // Alone, with nothing on PATH: one clear line saying what to build.
    let out = run_fresh(
        Command::new(&bin)
            .args(["bench", "thermal", "--short"])
            .env("PATH", ""),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("maxwell-tools") && err.contains("cargo build --release -p maxwell-tools"),
        "{err}"
    );
    // With a maxwell-tools beside it: that one runs, with every argument.
    let tools = dir.path().join("maxwell-tools");
    std::fs::write(&tools, "#!/bin/sh\necho \"tools: $*\"\n").expect("write");
    std::fs::set_permissions(&tools, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (args, want) in [
        (
            vec!["bench", "thermal", "--short"],
            "tools: bench thermal --short",
        ),
        (vec!["demo", "--nodes", "2"], "tools: demo --nodes 2"),
        // The log level is passed on too.
        (
            vec!["--log-level", "debug", "demo"],
            "tools: --log-level debug demo",
        ),
    ] {
        let out = run_fresh(Command::new(&bin).args(&args));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want);
    }
}

#[cfg(not(feature = "libsensors"))]
#[test]
fn libsensors_source_without_the_feature_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["agent", "--sensors", "libsensors", "--http", "127.0.0.1:0"])
        .args(["--gossip-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features libsensors"));
}
