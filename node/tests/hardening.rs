//! The hardening issue, item by item, against the real binary: the API's
//! authentication, admission, kernel confinement, connection limits,
//! fail-safe sensors, reads that cannot hang, the data dir, and signals.
//! Each test failed on the code before the fix.

mod common;

use common::{copy_tree, testdata, Agent};
use maxwell_gossip::MilliCelsius;
use maxwell_node::client;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_maxwell");
const T: Duration = Duration::from_secs(10);
const SPEC: &str =
    r#"{"name":"t","kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","cap":0.1}"#;

/// `maxwell agent` on emulated sensors with the process backend, loopback
/// ports of its choosing and data dir `data`.
fn agent_cmd(data: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "agent",
        "--sensors",
        "emulated",
        "--set",
        "guests.backend=process",
    ])
    .args(["--set", "sensors.interval_ms=200", "--http", "127.0.0.1:0"])
    .args([
        "--set",
        "gossip.preset=test",
        "--gossip-listen",
        "127.0.0.1:0",
    ])
    .arg("--data-dir")
    .arg(data);
    cmd
}

/// A running [`agent_cmd`] agent with `extra` flags.
fn emulated_agent(extra: &[&str]) -> Agent {
    let data = tempfile::tempdir().expect("tempdir");
    let child = agent_cmd(data.path())
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent");
    Agent::adopt(child, data)
}

/// One raw HTTP/1.1 request; the status code and the body.
fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (code, body)
}

fn bearer(agent: &Agent) -> String {
    let token = std::fs::read_to_string(agent.data_dir().join("api.token")).expect("token");
    format!("Bearer {}", token.trim())
}

fn metrics(agent: &Agent) -> String {
    client::get(agent.addr, "/metrics", T).expect("metrics")
}

fn inlet(agent: &Agent) -> f64 {
    let (code, body) = raw(agent.addr, "GET", "/v1/emulated", &[], "");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    v["inlet_celsius"].as_f64().expect("inlet")
}

#[test]
fn mutating_routes_need_the_token_json_and_their_own_origin() {
    use std::os::unix::fs::PermissionsExt;
    let agent = emulated_agent(&[]);
    let token_file = agent.data_dir().join("api.token");
    let mode = std::fs::metadata(&token_file)
        .expect("token")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the token is the owner's only");
    let auth = bearer(&agent);
    let json = ("Content-Type", "application/json");

    let with_token = ("Authorization", auth.as_str());
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], u16);
    let refused: [Case; 6] = [
        // The browser "simple request" that used to start a guest.
        (
            "POST",
            "/v1/guests",
            &[
                ("Content-Type", "text/plain"),
                ("Origin", "http://evil.example"),
            ],
            401,
        ),
        ("POST", "/v1/guests", &[json], 401),
        (
            "POST",
            "/v1/guests",
            &[json, ("Authorization", "Bearer 00")],
            401,
        ),
        (
            "POST",
            "/v1/guests",
            &[with_token, ("Content-Type", "text/plain")],
            415,
        ),
        (
            "POST",
            "/v1/guests",
            &[with_token, json, ("Origin", "http://evil.example")],
            403,
        ),
        // DNS rebinding: a name the attacker controls, pointing at us.
        (
            "GET",
            "/v1/status",
            &[("Host", "rebind.evil.example:7070")],
            403,
        ),
    ];
    for (method, path, headers, want) in refused {
        let body = if method == "GET" { "" } else { SPEC };
        let (code, body) = raw(agent.addr, method, path, headers, body);
        assert_eq!(code, want, "{method} {path} {headers:?}: {body}");
    }
    let (code, body) = raw(agent.addr, "GET", "/v1/guests", &[], "");
    assert_eq!(code, 200, "reads stay open by default: {body}");
    assert!(
        body.contains("\"guests\":[]"),
        "nothing was started: {body}"
    );

    // Forging the emulated host (and so this node's signed reports) needs the token too.
    let before = inlet(&agent);
    let (code, _) = raw(
        agent.addr,
        "PUT",
        "/v1/emulated",
        &[json],
        r#"{"inlet_celsius": 55}"#,
    );
    assert_eq!(code, 401);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inlet(&agent), before);

    // The real thing, as the CLI on the host does it.
    let origin = format!("http://{}", agent.addr);
    let (code, body) = raw(
        agent.addr,
        "POST",
        "/v1/guests",
        &[with_token, json, ("Origin", &origin)],
        SPEC,
    );
    assert_eq!(code, 200, "{body}");
    let out = Command::new(BIN)
        .args(["guests", "--http", &agent.addr.to_string(), "kill", "g1"])
        .arg("--data-dir")
        .arg(agent.data_dir())
        .output()
        .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let m = metrics(&agent);
    for reason in [
        "missing_token",
        "wrong_token",
        "not_json",
        "foreign_origin",
        "bad_host",
    ] {
        assert!(
            m.contains(&format!("maxwell_api_refused_total{{reason=\"{reason}\"}}")),
            "{reason}: {m}"
        );
    }
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn reads_can_go_behind_the_token_and_no_auth_is_loopback_only() {
    let agent = emulated_agent(&["--set", "api.auth_reads=true"]);
    let (code, _) = raw(agent.addr, "GET", "/v1/status", &[], "");
    assert_eq!(code, 401);
    let auth = bearer(&agent);
    let (code, _) = raw(
        agent.addr,
        "GET",
        "/v1/status",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(code, 200);
    let (code, _) = raw(agent.addr, "GET", "/healthz", &[], "");
    assert_eq!(code, 200, "liveness probes need no token");
    let out = Command::new(BIN)
        .args(["status", "--http", &agent.addr.to_string()])
        .arg("--data-dir")
        .arg(agent.data_dir())
        .output()
        .expect("status");
    assert!(
        out.status.success(),
        "the CLI presents the token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(agent.terminate(), Some(0));

    let out = Command::new(BIN)
        .args([
            "agent",
            "--http",
            "0.0.0.0:7070",
            "--set",
            "api.auth=\"none\"",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("api.auth") && err.contains("not loopback"),
        "{err}"
    );
}

/// The head of a GET answer, lower-cased.
fn head_of(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).expect("timeout");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map_or("", |(h, _)| h)
        .to_ascii_lowercase()
}

#[test]
fn the_dashboard_is_self_contained_and_open_while_its_data_needs_the_token() {
    let agent = emulated_agent(&["--set", "api.auth_reads=true"]);
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let head = head_of(agent.addr, path);
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert!(
            head.contains(&format!("content-type: {kind}")),
            "{path}: {head}"
        );
        // The browser may load and connect to nothing but this agent.
        assert!(
            head.contains("content-security-policy: default-src 'none'; script-src 'self'")
                && head.contains("connect-src 'self'"),
            "{path}: {head}"
        );
    }
    let (_, page) = raw(agent.addr, "GET", "/ui", &[], "");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page names no other origin"
    );
    let (code, _) = raw(agent.addr, "GET", "/v1/events", &[], "");
    assert_eq!(code, 401, "the page's data needs the token");
    let auth = bearer(&agent);
    let (code, body) = raw(
        agent.addr,
        "GET",
        "/v1/events",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let status: maxwell_node::http::Status = agent.api().get_json("/v1/status", T).expect("status");
    let id = status.node.id;
    let (code, body) = raw(
        agent.addr,
        "GET",
        &format!("/v1/history/{id}?since_ms=0"),
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("history");
    assert!(
        v["points"].as_array().is_some_and(|p| !p.is_empty()),
        "own history: {body}"
    );
    for bad in [
        "/v1/history/zz",
        "/v1/history/00?since_ms=soon",
        "/v1/events?after=-1",
    ] {
        let (code, body) = raw(agent.addr, "GET", bad, &[("Authorization", &auth)], "");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(
            code == 400 && v["error"].is_string(),
            "{bad}: {code} {body}"
        );
    }
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn the_emulated_route_exists_only_on_emulated_nodes() {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("intel-xeon"), tree.path());
    let agent = Agent::start(BIN, tree.path(), &[]);
    let auth = bearer(&agent);
    let (code, _) = raw(
        agent.addr,
        "PUT",
        "/v1/emulated",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"inlet_celsius": 55}"#,
    );
    assert_eq!(code, 404);
    assert_eq!(raw(agent.addr, "GET", "/v1/emulated", &[], "").0, 404);
    // The router's own refusals come in the API's one error shape too.
    let (code, body) = raw(agent.addr, "GET", "/v1/guests/1/pause", &[], "");
    assert_eq!(code, 405);
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
    assert_eq!(v["error"], "method not allowed", "{body}");
    assert_eq!(
        v["state_changed"], false,
        "the one shape, field for field: {body}"
    );
    // So does the gate's, and an unknown route's.
    for (path, want) in [("/v1/nowhere", 404), ("/v1/guests", 401)] {
        let method = if want == 401 { "POST" } else { "GET" };
        let headers: &[(&str, &str)] = &[("Content-Type", "application/json")];
        let (code, body) = raw(agent.addr, method, path, headers, "{}");
        assert_eq!(code, want, "{path}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(
            v["error"].is_string() && v["state_changed"] == false,
            "{path}: {body}"
        );
    }
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn guests_are_admitted_only_while_they_fit_the_host() {
    let agent = emulated_agent(&[
        "--set",
        "guests.cpu_fraction=1.0",
        "--set",
        "guests.memory_fraction=0.001",
    ]);
    let api = agent.api();
    // Counted as the agent counts them.
    // SAFETY: sysconf has no preconditions.
    let cores =
        usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }).expect("cores");
    let spec = |vcpus: usize, mib: u64| {
        format!(
            r#"{{"kind":"workload","vcpus":{vcpus},"memory_mib":{mib},"payload":"count","cap":0.05}}"#
        )
    };
    let refused = |body: &str| match api.post("/v1/guests", body, T) {
        Err(client::ClientError::Status { status, body, .. }) => {
            assert!(status.contains("409"), "{status}: {body}");
            body
        }
        other => panic!("admitted: {other:?}"),
    };
    // The attack: 64 vCPUs and 11 000 MiB, ten times over.
    let body = refused(&spec(64, 16));
    assert!(
        body.contains("admission refused") && body.contains("vCPUs"),
        "{body}"
    );
    let body = refused(&spec(1, 60_000));
    assert!(
        body.contains("admission refused") && body.contains("MiB"),
        "{body}"
    );
    // Exactly one per core fits; one more does not.
    for _ in 0..cores {
        api.post("/v1/guests", &spec(1, 4), T).expect("fits");
    }
    refused(&spec(1, 4));
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn requests_that_race_are_admitted_one_after_the_other_and_a_kill_frees_a_share() {
    // SAFETY: sysconf has no preconditions.
    let cores = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as f64;
    // floor(2.5) = 2 vCPUs for guests, whatever the host.
    let fraction = format!("guests.cpu_fraction={}", 2.5 / cores);
    let agent = emulated_agent(&["--set", &fraction]);
    let api = agent.api();
    let spec = r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","cap":0.05}"#;
    let answers: Vec<Result<String, client::ClientError>> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..20)
            .map(|_| s.spawn(|| api.post("/v1/guests", spec, T)))
            .collect();
        calls
            .into_iter()
            .map(|c| c.join().expect("a request thread"))
            .collect()
    });
    let started: Vec<u64> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(|body| {
            let v: serde_json::Value = serde_json::from_str(body).expect("a guest");
            v["id"].as_u64().expect("an id")
        })
        .collect();
    assert_eq!(started.len(), 2, "exactly the share: {answers:?}");
    // What admission counts is in the metrics.
    let deadline = std::time::Instant::now() + T;
    loop {
        let metrics = client::get(agent.addr, "/metrics", T).expect("metrics");
        if metrics.contains("maxwell_guests_admitted_vcpus 2") {
            assert!(
                metrics.contains("maxwell_guests_admitted_memory_mib 8"),
                "{metrics}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        std::thread::sleep(Duration::from_millis(20));
    }
    for a in answers.iter().filter_map(|a| a.as_ref().err()) {
        let client::ClientError::Status { status, body, .. } = a else {
            panic!("{a}")
        };
        assert!(
            status.contains("409") && body.contains("admission refused"),
            "{status}: {body}"
        );
    }
    // A kill frees its share at once: the next request fits, the one after does not.
    api.post(&format!("/v1/guests/g{}/kill", started[0]), "", T)
        .expect("kill");
    api.post("/v1/guests", spec, T)
        .expect("fits after the kill");
    let err = api.post("/v1/guests", spec, T).expect_err("full again");
    assert!(err.to_string().contains("409"), "{err}");
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn no_start_asked_for_during_a_shutdown_is_left_waiting() {
    let agent = emulated_agent(&["--set", "guests.backend=process"]);
    let api = agent.api();
    let spec = r#"{"kind":"workload","vcpus":1,"memory_mib":4,"payload":"count","cap":0.05}"#;
    // Guests to kill, so the shutdown takes a while before it leaves.
    for _ in 0..6 {
        api.post("/v1/guests", spec, T).expect("fits");
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let calls: Vec<(String, Duration)> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let at = std::time::Instant::now();
                        let outcome = match api.post("/v1/guests", spec, T) {
                            Ok(_) => "200".to_string(),
                            // The server has stopped listening: the shutdown is over.
                            Err(client::ClientError::Connect { .. }) => break,
                            Err(client::ClientError::Status { status, body, .. }) => {
                                format!("{status} {body}")
                            }
                            // A connection still in the listen backlog is reset
                            // when the listener closes.
                            Err(e) => e.to_string(),
                        };
                        seen.push((outcome, at.elapsed()));
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        agent.kill(libc::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while callers.iter().any(|c| !c.is_finished()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        callers
            .into_iter()
            .flat_map(|c| c.join().expect("a caller"))
            .collect()
    });
    assert!(
        calls
            .iter()
            .any(|(o, _)| o.contains("503") && o.contains("shutting down")),
        "some request met the shutdown: {calls:?}"
    );
    // A request the agent took is answered once its guests are stopped, not
    // held until the server's 5 s drain gives up on it.
    let held: Vec<_> = calls
        .iter()
        .filter(|(_, took)| *took > Duration::from_secs(4))
        .collect();
    assert!(held.is_empty(), "{held:?}");
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn kernels_load_only_from_the_kernel_dir() {
    let root = tempfile::tempdir().expect("tempdir");
    let kernels = root.path().join("kernels");
    std::fs::create_dir(&kernels).expect("mkdir");
    std::fs::write(kernels.join("vmlinux"), b"\x7fELF fake").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", kernels.join("escape")).expect("link");
    let linux = |kernel: &str| {
        format!(r#"{{"kind":"linux","vcpus":1,"memory_mib":64,"kernel":"{kernel}"}}"#)
    };

    // No kernel dir: no Linux guests at all, whatever the path.
    let agent = emulated_agent(&[]);
    let api = agent.api();
    let err = api
        .post("/v1/guests", &linux("/etc/passwd"), T)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("kernel_dir"), "{err}");
    assert_eq!(agent.terminate(), Some(0));

    let dir = format!("guests.kernel_dir=\"{}\"", kernels.display());
    let agent = emulated_agent(&["--set", &dir]);
    let api = agent.api();
    let answer = |k: &str| {
        api.post("/v1/guests", &linux(k), T)
            .expect_err("not started")
            .to_string()
    };
    // Outside paths all get the same answer: nothing tells which exist.
    let outside: Vec<String> = [
        "/etc/passwd",
        "/nonexistent/vmlinux",
        "/etc",
        "../kernels/vmlinux",
    ]
    .iter()
    .map(|k| answer(k))
    .collect();
    assert!(
        outside
            .iter()
            .all(|e| e.contains("must name a file inside")),
        "{outside:?}"
    );
    assert!(
        outside
            .iter()
            .all(|e| !e.contains("regular") && !e.contains("No such")),
        "{outside:?}"
    );
    let escape = answer("escape");
    assert!(
        escape.contains("outside") || escape.contains("symlink"),
        "{escape}"
    );
    // A kernel inside the dir is found; this host's backend cannot boot it.
    let inside = answer("vmlinux");
    assert!(
        inside.contains("unsupported by the process backend"),
        "{inside}"
    );
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn half_sent_and_surplus_connections_are_closed() {
    let agent = emulated_agent(&[
        "--set",
        "api.header_timeout_ms=300",
        "--set",
        "api.max_connections=8",
    ]);
    let mut held: Vec<TcpStream> = (0..24)
        .map(|_| {
            let mut s = TcpStream::connect(agent.addr).expect("connect");
            s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x")
                .expect("half a request");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            s
        })
        .collect();
    // Every one of them is closed by the agent: the surplus at once, the
    // rest when their headers do not arrive.
    for s in &mut held {
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            // EOF, or whatever the agent said before closing.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a half-sent request was held open: {e}"),
        }
    }
    let health = client::get(agent.addr, "/healthz", T).expect("healthz answers");
    assert!(health.contains("ok"), "{health}");
    let m = metrics(&agent);
    let evicted = m
        .lines()
        .find(|l| l.starts_with("maxwell_api_connections_evicted_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .expect("counter");
    assert!(evicted >= 16.0, "24 idle connections, 8 slots: {m}");
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn a_flood_of_half_sent_requests_cannot_keep_a_probe_out() {
    // The default timeouts: a half-sent request is held for 10 s.
    let agent = emulated_agent(&["--set", "api.max_connections=16"]);
    let flood: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(agent.addr).expect("connect");
            let _ = s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: x");
            s
        })
        .collect();
    for _ in 0..5 {
        let health =
            client::get(agent.addr, "/healthz", T).expect("a probe gets through the flood");
        assert!(health.contains("ok"), "{health}");
    }
    drop(flood);
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn a_client_that_stops_reading_loses_its_connection() {
    let agent = emulated_agent(&[
        "--set",
        "api.header_timeout_ms=300",
        "--set",
        "api.max_connections=1",
    ]);
    // Pipeline thousands of requests and never read an answer: the agent's
    // writes block once the buffers are full.
    let mut s = TcpStream::connect(agent.addr).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let one = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\n\r\n", agent.addr);
    let _ = s.write_all(one.repeat(4000).as_bytes());
    // The only slot is freed: a new client is served again.
    let deadline = Instant::now() + T;
    while client::get(agent.addr, "/healthz", Duration::from_secs(1)).is_err() {
        assert!(
            Instant::now() < deadline,
            "a stalled writer kept the only connection slot"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(s);
    assert_eq!(agent.terminate(), Some(0));
}

#[test]
fn a_failed_sensor_never_makes_the_node_look_cooler() {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("amd-epyc"), tree.path());
    let hw = tree.path().join("hwmon/hwmon0");
    std::fs::write(hw.join("temp4_input"), "94000\n").expect("write");
    let agent = Agent::start(BIN, tree.path(), &[]);
    let hot = agent.wait_for(|s| {
        s.snapshot.summary.hottest.as_ref().map(|h| h.millicelsius) == Some(MilliCelsius(94_000))
    });
    let price = |s: &maxwell_node::http::Status| s.price.as_ref().map_or(0, |q| q.price_milli);
    let before = price(&hot);
    type Break = fn(&Path);
    let breaks: [(&str, Break); 3] = [
        ("garbage", |p| {
            std::fs::write(p, "garbage\n").expect("write")
        }),
        ("deleted", |p| std::fs::remove_file(p).expect("rm")),
        ("a directory", |p| {
            std::fs::remove_file(p).expect("rm");
            std::fs::create_dir(p).expect("mkdir")
        }),
    ];
    for (what, break_it) in breaks {
        let input = hw.join("temp4_input");
        let _ = std::fs::remove_file(&input).or_else(|_| std::fs::remove_dir(&input));
        std::fs::write(&input, "94000\n").expect("restore");
        agent.wait_for(|s| {
            s.snapshot
                .summary
                .hottest
                .as_ref()
                .is_some_and(|h| h.held_for_ms.is_none())
        });
        break_it(&input);
        let s = agent.wait_for(|s| {
            s.snapshot
                .summary
                .hottest
                .as_ref()
                .is_some_and(|h| h.held_for_ms.is_some())
        });
        let h = s.snapshot.summary.hottest.as_ref().expect("hottest");
        assert!(h.millicelsius >= MilliCelsius(94_000), "{what}: {h:?}");
        assert_eq!(h.sensor, "temp4", "{what}");
        std::thread::sleep(Duration::from_millis(400));
        let later = agent.status();
        assert!(
            price(&later) >= before,
            "{what}: price fell from {before} to {}",
            price(&later)
        );
    }
    // A power meter that stops reading must not hand the draw to a smaller
    // source (RAPL here) and overstate the headroom.
    let headroom = |s: &maxwell_node::http::Status| s.snapshot.summary.headroom_microwatts;
    let with_meter = headroom(&agent.status()).expect("headroom");
    let average = tree.path().join("hwmon/hwmon2/power1_average");
    std::fs::rename(&average, tree.path().join("moved")).expect("mv");
    let s = agent.wait_for(|s| {
        s.snapshot
            .hwmon
            .power
            .iter()
            .any(|p| p.held_for_ms.is_some())
    });
    let draw = s.snapshot.summary.power_draw.as_ref().expect("draw");
    assert!(draw.source.starts_with("hwmon:"), "{draw:?}");
    assert!(
        headroom(&s).expect("headroom") <= with_meter,
        "{:?}",
        s.snapshot.summary
    );
    assert!(
        s.snapshot
            .problems
            .iter()
            .any(|p| p.detail.contains("held")),
        "{:?}",
        s.snapshot.problems
    );
    assert_eq!(agent.terminate(), Some(0));
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("cstr");
    // SAFETY: a valid path; mkfifo only creates a node.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Runs the binary with a deadline; a hang is a failure, not a stuck suite.
fn run_with_deadline(cmd: &mut Command, deadline: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("the agent hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

#[test]
fn a_fifo_can_hang_neither_the_sensor_loop_nor_start_up() {
    let tree = tempfile::tempdir().expect("tempdir");
    copy_tree(&testdata("amd-epyc"), tree.path());
    let agent = Agent::start(BIN, tree.path(), &[]);
    let input = tree.path().join("hwmon/hwmon0/temp4_input");
    std::fs::remove_file(&input).expect("rm");
    mkfifo(&input);
    let s = agent.wait_for(|s| {
        s.snapshot
            .problems
            .iter()
            .any(|p| p.detail.contains("FIFO"))
    });
    let reads = |s: &maxwell_node::http::Status| s.snapshot.taken_at_unix_ms;
    let first = reads(&s);
    let later = agent.wait_for(|s| reads(s) > first + 300);
    assert!(reads(&later) > first, "the sensor loop goes on");
    let health = client::get(agent.addr, "/healthz", T).expect("healthy");
    assert!(health.contains("\"ok\""), "{health}");
    let start = Instant::now();
    assert_eq!(agent.terminate(), Some(0));
    assert!(start.elapsed() < Duration::from_secs(10));

    // A key file or an allowlist that is a FIFO: a clear refusal, no hang.
    let data = tempfile::tempdir().expect("tempdir");
    mkfifo(&data.path().join("node.key"));
    assert!(start_fails(data.path()).contains("FIFO"));
    let data = tempfile::tempdir().expect("tempdir");
    let allow = data.path().join("allow");
    mkfifo(&allow);
    let mut cmd = agent_cmd(&data.path().join("d"));
    let out = run_with_deadline(
        cmd.arg("--set")
            .arg(format!("gossip.allowlist={}", allow.display())),
        Duration::from_secs(20),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("FIFO"), "{err}");
}

/// Starts an agent on `data` and returns its stderr once it exits (it must).
fn start_fails(data: &Path) -> String {
    let out = run_with_deadline(&mut agent_cmd(data), Duration::from_secs(20));
    assert!(!out.status.success(), "the agent started");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("maxwell: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    errors[0].to_string()
}

#[test]
fn the_data_dir_is_locked_checked_and_never_followed_out_of() {
    use std::os::unix::fs::PermissionsExt;
    // A second agent on the same data dir refuses and names the holder.
    let agent = emulated_agent(&[]);
    let err = start_fails(agent.data_dir());
    assert!(err.contains(&format!("PID {}", agent.child.id())), "{err}");
    assert_eq!(agent.terminate(), Some(0));

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert!(start_fails(&data).contains("mode 0777"));
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");

    // Planted links are not followed: the victim stays as it was.
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("write");
    std::os::unix::fs::symlink(&victim, data.join("generation")).expect("plant");
    let err = start_fails(&data);
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
    std::fs::remove_file(data.join("generation")).expect("rm");

    // A generation that is garbage, or past any real one, is refused, not replaced.
    for (contents, says) in [
        ("hello\n", "not a generation"),
        ("18446744073709551615\n", "beyond any generation"),
    ] {
        std::fs::write(data.join("generation"), contents).expect("write");
        let err = start_fails(&data);
        assert!(err.contains(says), "{err}");
        assert_eq!(
            std::fs::read_to_string(data.join("generation")).expect("read"),
            contents
        );
    }
    std::fs::remove_file(data.join("generation")).expect("rm");

    // A directory named node.key, and a 100 kB one: short, one-line, no repeats.
    std::fs::remove_file(data.join("node.key")).expect("rm the key the last start made");
    std::fs::create_dir(data.join("node.key")).expect("mkdir");
    let err = start_fails(&data);
    assert!(
        err.contains("is a directory, not a regular file") && !err.contains("mode"),
        "{err}"
    );
    std::fs::remove_dir(data.join("node.key")).expect("rmdir");
    std::fs::write(data.join("node.key"), "k".repeat(100_000)).expect("write");
    std::fs::set_permissions(
        data.join("node.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .expect("chmod");
    let err = start_fails(&data);
    assert!(err.len() < 300, "{err}");
    std::fs::remove_file(data.join("node.key")).expect("rm");
    std::fs::create_dir(data.join("sub")).expect("mkdir");
    std::fs::write(data.join("sub/x"), "").expect("write");
    let err = start_fails(&data.join("sub/x/y"));
    let repeats = err.matches("os error").count();
    assert!(repeats <= 1, "the OS error is said once: {err}");
}

/// A tmpfs of `kib` KiB, unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(kib: u32) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={kib}k,mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            Some(Self(dir))
        } else {
            println!("skipped the full-disk case: cannot mount a tmpfs here (needs root)");
            None
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_is_refused_clearly_and_leaves_nothing_half_written() {
    let Some(disk) = SmallDisk::mount(64) else {
        return;
    };
    let data = disk.0.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    // The lock's page exists; then the disk fills up.
    std::fs::write(data.join("lock"), "1\n").expect("lock");
    let filler = disk.0.path().join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    while f.write_all(&[0u8; 4096]).is_ok() {}
    drop(f);
    let err = start_fails(&data);
    assert!(err.contains("No space left"), "{err}");
    let mut left: Vec<String> = std::fs::read_dir(&data)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["lock"], "no empty or partial key, no temporary file");
    // Room again: the agent starts, with a whole key.
    std::fs::remove_file(&filler).expect("rm");
    let mut child = agent_cmd(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let served = maxwell_supervise::wait_for_addresses(&mut child, &data, Duration::from_secs(20));
    assert!(
        served.is_ok(),
        "with room on the disk it serves: {served:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    let key = std::fs::read_to_string(data.join("node.key")).expect("key");
    assert!(
        key.starts_with("maxwell-ed25519-secret-v1\n") && key.len() > 90,
        "{key}"
    );
}

fn wait_log(log: &Path, needle: &str) -> String {
    let deadline = Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_sigquit_stops_cleanly_and_sigusr_is_ignored() {
    let data = tempfile::tempdir().expect("tempdir");
    let scratch = tempfile::tempdir().expect("tempdir");
    let cfg = scratch.path().join("maxwell.toml");
    let data_path = data.path().to_path_buf();
    let config = |gain: f64, gossip_port: u16| {
        format!(
            "data_dir = \"{}\"\nhttp_addr = \"127.0.0.1:0\"\n[sensors]\nsource = \"emulated\"\ninterval_ms = 200\n\
             [gossip]\npreset = \"test\"\nlisten_addr = \"127.0.0.1:{gossip_port}\"\n\
             [guests]\nbackend = \"process\"\n[pricing]\nrelief_gain = {gain}\n",
            data_path.display()
        )
    };
    std::fs::write(&cfg, config(0.5, 0)).expect("write");
    let log = scratch.path().join("agent.log");
    let child = Command::new(BIN)
        .arg("agent")
        .arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    let agent = Agent::adopt(child, data);
    let addr = agent.addr;
    agent.api().post("/v1/guests", SPEC, T).expect("guest");
    let pid = agent.child.id();
    let kids =
        || std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let guest_pids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .flat_map(|t| {
            std::fs::read_to_string(t.path().join("children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    assert!(!guest_pids.is_empty(), "the process guest runs: {}", kids());

    for sig in [libc::SIGUSR1, libc::SIGUSR2] {
        agent.kill(sig);
    }
    wait_log(&log, "SIGUSR2 ignored");
    client::get(addr, "/healthz", T).expect("still serving");

    // A port is named now: a change that needs a restart, so nothing binds it.
    std::fs::write(&cfg, config(0.7, 1)).expect("write");
    agent.kill(libc::SIGHUP);
    let line = wait_log(&log, "SIGHUP: configuration reloaded");
    assert!(line.contains("applied=pricing"), "{line}");
    assert!(line.contains("gossip (needs a restart)"), "{line}");
    std::fs::write(&cfg, "this is not toml").expect("write");
    agent.kill(libc::SIGHUP);
    wait_log(&log, "nothing changed");
    client::get(addr, "/healthz", T).expect("a bad reload changes nothing");

    assert_eq!(
        agent.signal(libc::SIGQUIT),
        Some(0),
        "SIGQUIT stops cleanly"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains("signal=\"SIGQUIT\"") || text.contains("signal=SIGQUIT"),
        "{text}"
    );
    assert!(text.contains("guests stopped"), "{text}");
    for p in guest_pids {
        let gone = !Path::new(&format!("/proc/{p}")).exists()
            || std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| s.contains(") Z "));
        assert!(gone, "guest process {p} outlived the agent");
    }
}

/// A one-shot command whose reader has gone (`maxwell keygen | head -c0`)
/// ends on SIGPIPE, as Unix tools do, not with a panic on a broken pipe.
#[test]
fn a_printer_whose_reader_went_away_ends_quietly() {
    let mut child = Command::new(BIN)
        .arg("keygen")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("maxwell keygen starts");
    // The read end closes before the child has written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
