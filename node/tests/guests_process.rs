//! Guests through the real `maxwell` binary: a specs dir started with the
//! agent, `/v1/guests` and its actions, the `maxwell guests` CLI, metrics,
//! and a clean shutdown that leaves no guest thread, process or cgroup.
//! No wall-clock performance assertions.

mod common;

use common::{copy_tree, testdata, Agent};
use maxwell_node::client::{self, Api, ClientError};
use maxwell_node::http::guests::{GuestList, GuestRow};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maxwell");
const T: Duration = Duration::from_secs(30);

/// KVM when `/dev/kvm` works here, else (with a clear line) processes.
fn best_backend() -> &'static str {
    match maxwell_vmm::kvm_available() {
        Ok(()) => "kvm",
        Err(why) => {
            println!("skipped KVM: /dev/kvm not usable: {why}; testing the process backend");
            "process"
        }
    }
}

/// One request; the status code and the body, whatever the status.
fn call(api: &Api, method: &str, path: &str, body: &str) -> (u16, String) {
    let r = match method {
        "GET" => api.get(path, T),
        "POST" => api.post(path, body, T),
        "PUT" => api.put(path, body, T),
        other => panic!("method {other}"),
    };
    match r {
        Ok(body) => (200, body),
        Err(ClientError::Status { status, body, .. }) => {
            let code = status
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .expect("status code");
            (code, body)
        }
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn ok_row(addr: &Api, method: &str, path: &str, body: &str) -> GuestRow {
    let (code, text) = call(addr, method, path, body);
    assert_eq!(code, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).expect("guest row")
}

fn list(addr: &Api) -> GuestList {
    let (code, text) = call(addr, "GET", "/v1/guests", "");
    assert_eq!(code, 200, "{text}");
    serde_json::from_str(&text).expect("guest list")
}

fn guest(addr: &Api, id: u64) -> GuestRow {
    list(addr)
        .guests
        .into_iter()
        .find(|g| g.id == id)
        .unwrap_or_else(|| panic!("g{id} not listed"))
}

/// Waits until the guest's progress passes `from`.
fn advances(addr: &Api, id: u64, from: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let p = guest(addr, id).progress;
        if p > from {
            return p;
        }
        assert!(Instant::now() < deadline, "g{id} progress stuck at {p}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("json error body");
    v["error"].as_str().expect("error field").to_string()
}

fn cli(agent: &Agent, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("guests")
        .args(["--http", &agent.addr.to_string()])
        .arg("--data-dir")
        .arg(agent.data_dir())
        .args(args)
        .output()
        .expect("run maxwell guests");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Child processes of `pid` (any thread's).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// Thread names of `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .collect()
}

/// This agent's guest cgroups (`<pid>-g<id>`) under the v1 cpu hierarchy.
fn cgroup_dirs(pid: u32) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup/cpu/maxwell") else {
        return Vec::new();
    };
    let prefix = format!("{pid}-g");
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // Gone, or a zombie waiting for a reaper that is not the agent.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        if stat.is_empty() || state == Some("Z") {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn write_spec(dir: &Path, file: &str, text: &str) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write spec");
    path
}

fn lifecycle(backend: &str) {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("amd-epyc"), tree.path());
    let specs = tempfile::tempdir().expect("tempdir");
    write_spec(
        specs.path(),
        "first.toml",
        "name = \"first\"\nkind = \"workload\"\nvcpus = 1\nmemory_mib = 16\ncap = 0.5\npayload = \"hash\"\n",
    );
    std::fs::write(specs.path().join("README"), "not a spec: ignored").expect("write");
    let backend_set = format!("guests.backend={backend}");
    let dir = format!("guests.specs_dir={}", specs.path().display());
    let agent = Agent::start(BIN, tree.path(), &["--set", &backend_set, "--set", &dir]);
    let api = agent.api();
    let addr = &api;
    let pid = agent.child.id();

    // The spec from the specs dir runs, and works.
    let l = list(addr);
    assert_eq!(l.backend.as_str(), backend);
    assert_eq!(l.guests.len(), 1, "{l:?}");
    let first = l.guests[0].clone();
    assert_eq!(
        (
            first.name.as_str(),
            first.kind.as_str(),
            first.state.as_str()
        ),
        ("first", "workload", "running")
    );
    assert_eq!((first.vcpus, first.memory_mib, first.cap), (1, 16, 0.5));
    let p = advances(addr, first.id, first.progress);
    advances(addr, first.id, p);
    // This host's config runs it: it does not move, and says why.
    let (code, body) = call(addr, "POST", &format!("/v1/guests/{}/move", first.id), "{}");
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("guests.specs_dir"), "{body}");
    assert_eq!(guest(addr, first.id).state.as_str(), "running");

    // New work submitted over HTTP.
    let second = ok_row(
        addr,
        "POST",
        "/v1/guests",
        r#"{"name":"second","kind":"workload","vcpus":1,"memory_mib":8,"payload":"count","cap":0.2}"#,
    );
    assert_eq!(
        (second.name.as_str(), second.state.as_str()),
        ("second", "running")
    );
    assert_eq!(list(addr).guests.len(), 2);
    assert_eq!(guest(addr, second.id).backend.as_str(), backend);

    // Pause: progress frozen across two reads; resume: it moves again.
    let g = ok_row(addr, "POST", &format!("/v1/guests/{}/pause", first.id), "");
    assert_eq!(g.state.as_str(), "paused");
    let p1 = guest(addr, first.id).progress;
    std::thread::sleep(Duration::from_millis(300));
    let g = guest(addr, first.id);
    assert_eq!(
        (g.state.as_str(), g.progress),
        ("paused", p1),
        "paused guest moved"
    );
    let g = ok_row(
        addr,
        "POST",
        &format!("/v1/guests/g{}/resume", first.id),
        "",
    );
    assert_eq!(g.state.as_str(), "running");
    advances(addr, first.id, p1);

    // Cap.
    let g = ok_row(
        addr,
        "PUT",
        &format!("/v1/guests/{}/cap", first.id),
        r#"{"cap": 0.3}"#,
    );
    assert_eq!(g.cap, 0.3);
    assert_eq!(guest(addr, first.id).cap, 0.3);

    // The operator's view and actions.
    let (ok, out, err) = cli(&agent, &[]);
    assert!(ok, "{err}");
    for word in [
        "ID", "PROGRESS", "first", "second", "30%", "running", backend,
    ] {
        assert!(out.contains(word), "{word:?} missing in:\n{out}");
    }
    let third_file = write_spec(
        specs.path(),
        "third.toml",
        "name = \"third\"\nkind = \"workload\"\nvcpus = 2\nmemory_mib = 8\ncap = 0.1\npayload = \"count\"\n",
    );
    let (ok, out, err) = cli(&agent, &["start", third_file.to_str().expect("utf-8")]);
    assert!(
        ok && out.contains("third") && out.contains("running"),
        "{out}{err}"
    );
    let third = list(addr)
        .guests
        .into_iter()
        .find(|g| g.name == "third")
        .expect("third listed");
    let (ok, out, err) = cli(&agent, &["cap", &format!("g{}", third.id), "0.2"]);
    assert!(ok && out.contains("20%"), "{out}{err}");
    let (ok, out, err) = cli(&agent, &["--json", "pause", &third.id.to_string()]);
    assert!(ok, "{err}");
    let row: GuestRow = serde_json::from_str(&out).expect("json row");
    assert_eq!(row.state.as_str(), "paused");

    // Kill: the final snapshot, then the guest is unknown.
    let g = ok_row(addr, "POST", &format!("/v1/guests/{}/kill", third.id), "");
    assert_eq!(g.state.as_str(), "killed");
    assert!(list(addr).guests.iter().all(|g| g.id != third.id));
    let (code, body) = call(addr, "POST", &format!("/v1/guests/{}/pause", third.id), "");
    assert_eq!(code, 404, "{body}");
    assert!(error_of(&body).contains("no such guest"), "{body}");
    let (ok, _, err) = cli(&agent, &["kill", &format!("g{}", third.id)]);
    assert!(!ok && err.trim().lines().count() == 1, "{err}");
    assert!(
        err.contains("no such guest") && err.contains("404"),
        "{err}"
    );

    // Bad input is a 400 that names the problem; nothing is started.
    for (body, needle) in [
        (
            r#"{"kind":"workload","vcpus":1,"memory_mib":0,"payload":"hash"}"#,
            "memory_mib",
        ),
        (
            r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"hash","vcpu":2}"#,
            "vcpu",
        ),
        (
            r#"{"kind":"workload","memory_mib":4,"payload":"hash"}"#,
            "vcpus",
        ),
        ("not json", "parse"),
    ] {
        let (code, text) = call(addr, "POST", "/v1/guests", body);
        assert_eq!(code, 400, "{body}: {text}");
        assert!(error_of(&text).contains(needle), "{body}: {text}");
    }
    let (code, text) = call(
        addr,
        "PUT",
        &format!("/v1/guests/{}/cap", first.id),
        r#"{"cap": 1.5}"#,
    );
    assert_eq!(code, 400, "{text}");
    assert!(error_of(&text).contains("cap"), "{text}");
    let (code, text) = call(addr, "POST", "/v1/guests/gx/pause", "");
    assert_eq!(code, 400, "{text}");
    let (code, text) = call(addr, "POST", "/v1/guests/999999/resume", "");
    assert_eq!(code, 404, "{text}");
    assert_eq!(list(addr).guests.len(), 2);

    // Metrics, one series per live guest.
    let metrics = client::get(addr.addr, "/metrics", T).expect("metrics");
    assert!(
        metrics.contains("maxwell_guests{state=\"running\"} 2.0"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "maxwell_guest_cap_ratio{{guest=\"g{}\"}} 0.3",
            first.id
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "maxwell_guest_cpu_seconds_total{{guest=\"g{}\"}}",
            second.id
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&format!("guest=\"g{}\"", third.id)),
        "{metrics}"
    );

    // What must be gone after the shutdown.
    let kids = children(pid);
    let cgroups = cgroup_dirs(pid);
    if backend == "process" {
        assert_eq!(kids.len(), 2, "one process per vCPU: {kids:?}");
    } else {
        let names = thread_names(pid);
        for id in [first.id, second.id] {
            let vcpu = format!("g{id}-vcpu0");
            assert!(names.contains(&vcpu), "{vcpu} not in {names:?}");
        }
    }
    if first.cap_mode == maxwell_vmm::CapMode::CgroupV1 {
        assert_eq!(cgroups.len(), 2, "{cgroups:?}");
    }

    assert_eq!(agent.terminate(), Some(0), "clean exit on SIGTERM");
    for kid in kids {
        assert!(gone(kid), "guest process {kid} outlived the agent");
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "agent still there"
    );
    assert_eq!(
        cgroup_dirs(pid),
        Vec::<PathBuf>::new(),
        "guest cgroups left behind"
    );
}

#[test]
fn guests_on_the_best_backend_from_spec_to_shutdown() {
    lifecycle(best_backend());
}

#[test]
fn guests_on_the_process_backend_from_spec_to_shutdown() {
    lifecycle("process");
}

/// The process backend's children die with the *thread* that forked them
/// (`PR_SET_PDEATHSIG`); tokio retires a blocking thread idle for 10 s. A
/// guest started over HTTP must outlive the thread that served the request.
#[test]
fn process_guest_outlives_idle_request_threads() {
    let data = tempfile::tempdir().expect("tempdir");
    let child = Command::new(BIN)
        .args([
            "agent",
            "--sensors",
            "emulated",
            "--set",
            "guests.backend=process",
        ])
        // A long sensor period: nothing else keeps the blocking pool busy.
        .args([
            "--set",
            "sensors.interval_ms=60000",
            "--http",
            "127.0.0.1:0",
        ])
        .args(["--gossip-listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn agent");
    let agent = Agent::adopt(child, data);
    let api = agent.api();
    let addr = &api;
    let g = ok_row(
        addr,
        "POST",
        "/v1/guests",
        r#"{"name":"idle","kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","cap":0.1}"#,
    );
    std::thread::sleep(Duration::from_secs(12));
    let now = guest(addr, g.id);
    assert_eq!(now.state.as_str(), "running", "{now:?}");
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn bad_spec_file_stops_the_agent_with_one_line() {
    let specs = tempfile::tempdir().expect("tempdir");
    write_spec(
        specs.path(),
        "a-good.toml",
        "kind = \"workload\"\nvcpus = 1\nmemory_mib = 4\npayload = \"hash\"\n",
    );
    write_spec(
        specs.path(),
        "b-bad.toml",
        "kind = \"workload\"\nvcpus = 1\nmemory_mib = 0\npayload = \"hash\"\n",
    );
    let data = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args([
            "agent",
            "--sensors",
            "emulated",
            "--set",
            "guests.backend=process",
        ])
        .args(["--http", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"])
        .arg("--set")
        .arg(format!("guests.specs_dir={}", specs.path().display()))
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("b-bad.toml") && err.contains("memory_mib"),
        "{err}"
    );

    // A specs dir with no backend to run it is a config error.
    let out = Command::new(BIN)
        .args(["agent", "--set", "guests.backend=none"])
        .arg("--set")
        .arg(format!("guests.specs_dir={}", specs.path().display()))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("guests.specs_dir"), "{err}");
}

#[test]
fn disabled_guests_answer_503() {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("intel-xeon"), tree.path());
    let agent = Agent::start(BIN, tree.path(), &["--set", "guests.backend=none"]);
    for (method, path, body) in [
        ("GET", "/v1/guests", ""),
        (
            "POST",
            "/v1/guests",
            r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"hash"}"#,
        ),
        ("POST", "/v1/guests/1/pause", ""),
        ("PUT", "/v1/guests/1/cap", r#"{"cap":0.5}"#),
    ] {
        let (code, text) = call(&agent.api(), method, path, body);
        assert_eq!(code, 503, "{method} {path}: {text}");
        assert!(error_of(&text).contains("disabled"), "{text}");
    }
    let (ok, _, err) = cli(&agent, &[]);
    assert!(
        !ok && err.contains("disabled") && err.contains("503"),
        "{err}"
    );
    let metrics = client::get(agent.addr, "/metrics", T).expect("metrics");
    assert!(
        metrics.contains("maxwell_guests{state=\"running\"} 0.0"),
        "{metrics}"
    );
    assert_eq!(agent.terminate(), Some(0));
}
