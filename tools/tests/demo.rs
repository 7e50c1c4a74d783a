//! The README's main job, `maxwell-tools demo` (what `cargo run --release --
//! demo` runs), end to end: real agents, a live table, everything stopped.

use maxwell_node::client;
use std::process::Command;
use std::time::Duration;

/// A TCP port the OS just handed out, with the next one (the demo's second
/// agent) free too. The demo is the only test in this binary.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

#[test]
fn demo_runs_agents_and_cleans_up() {
    let base = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_maxwell-tools"))
        .args([
            "demo",
            "--nodes",
            "2",
            "--duration-s",
            "2",
            "--refresh-ms",
            "500",
        ])
        .args(["--base-port", &base.to_string()])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("r1-u01") && text.contains("r1-u02") && text.contains("emulated"),
        "{text}"
    );
    assert!(text.contains("stopping 2 agents"), "{text}");
    // Both agents are gone: their ports refuse connections.
    for port in [base, base + 1] {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            client::get(addr, "/healthz", Duration::from_millis(300)).is_err(),
            "port {port} still served"
        );
    }
}
