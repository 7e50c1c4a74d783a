//! The README's main job, `maxwell-tools demo` (what `cargo run --release --
//! demo` runs), end to end: real agents on ports of their choosing, a live
//! table, everything stopped and removed.

use maxwell_node::client;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

#[test]
fn demo_runs_agents_and_cleans_up() {
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
    // The table names each agent's API address (the kernel chose the port).
    let mut addrs: Vec<SocketAddr> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 2, "two agents' addresses in {text}");
    // Both agents are gone: their ports refuse connections.
    for addr in addrs {
        assert!(
            client::get(addr, "/healthz", Duration::from_millis(300)).is_err(),
            "{addr} still served"
        );
    }
    // And the demo's scratch dir (data dirs, tokens, logs) is removed.
    let tokens = text
        .lines()
        .find_map(|l| l.strip_prefix("API tokens (needed to change an agent): "))
        .and_then(|l| l.strip_suffix("/node*/api.token"))
        .expect("the demo names its dir");
    assert!(
        !std::path::Path::new(tokens).exists(),
        "{tokens} left behind"
    );
}
