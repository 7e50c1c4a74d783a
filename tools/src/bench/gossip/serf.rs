//! HashiCorp Serf beside our agents: `n` `serf agent` processes on loopback
//! (`-profile lan`: gossip every 200 ms to 3 nodes, probe every 1 s), all
//! joining the first.
//!
//! When a node learns of an update, failure or leave, Serf logs
//! `serf: EventMemberUpdate: NAME` (…`Failed`, …`Leave`) at that moment,
//! before its 1–3 s event coalescing; we read every agent's log every
//! [`LOG_POLL`]. Bytes come from memberlist's own counters
//! (`memberlist.udp.sent`, `memberlist.tcp.sent`) sent to a statsd socket
//! of ours on 127.0.0.1.

use super::{LiveResult, TRIALS};
use crate::bench::timing::{quantile, Waited};
use anyhow::Context;
use maxwell_supervise::Procs;
use std::fs::File;
use std::io::Read;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the logs are read.
const LOG_POLL: Duration = Duration::from_millis(10);

/// Whether `serf` is on PATH and runs.
pub fn installed() -> bool {
    Command::new("serf")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Serf's version line, for the table.
pub fn version() -> String {
    Command::new("serf")
        .arg("version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|v| format!("serf {}", v.trim_start_matches("Serf ")))
        })
        .unwrap_or_else(|| "serf".into())
}

/// Starts `n` Serf agents, measures what we measure of ours, stops them.
pub fn run(n: usize, timeout: Duration, steady: Duration) -> anyhow::Result<LiveResult> {
    anyhow::ensure!(n >= 4, "the loopback run needs at least 4 agents (got {n})");
    let statsd = Statsd::start()?;
    let mut procs = Procs::new("maxwell-bench-serf")?;
    let rpc = start(&mut procs, n, statsd.port)?;
    let mut logs: Vec<Tail> = (0..n)
        .map(|k| Tail::open(procs.get(k).log.clone()))
        .collect::<anyhow::Result<_>>()?;
    let names: Vec<String> = (0..n).map(name).collect();
    let all = |text: &str| {
        names
            .iter()
            .all(|name| has_event(text, "EventMemberJoin", name))
    };
    let everyone: Vec<usize> = (0..n).collect();
    let join = quantile(
        &watch(&mut logs, &everyone, Instant::now(), timeout, all),
        1.0,
    );
    let bytes_per_node_s = statsd.per_node_per_s(n, steady);
    let mut change = Vec::new();
    for t in 0..TRIALS.min(n - 1) {
        let (origin, tag) = (n - 1 - t, format!("heat={}", 87_654 + t));
        change.push(tag_change(
            &mut procs,
            &mut logs,
            origin,
            &rpc[origin],
            &tag,
            timeout,
        ));
    }
    let (victims, leaver) = (super::victims(n), n - 3);
    let mut stop = |k, signal, event, gone: &[usize]| {
        stop_one(&mut procs, &mut logs, (k, signal, event), gone, timeout)
    };
    let mut dead = Vec::new();
    for (k, &victim) in victims.iter().enumerate() {
        dead.push(stop(
            victim,
            libc::SIGKILL,
            "EventMemberFailed",
            &victims[..k],
        ));
    }
    // SIGINT makes a Serf agent leave gracefully (SIGTERM does not, by default).
    let left = stop(leaver, libc::SIGINT, "EventMemberLeave", &victims);
    Ok(LiveResult {
        n,
        join,
        change,
        dead,
        left,
        bytes_per_node_s,
        price: Vec::new(),
        busy: None,
    })
}

/// Sends `signal` to agent `k`; times until every agent but `k` and `gone`
/// logs `event` for it; reaps it.
fn stop_one(
    procs: &mut Procs,
    logs: &mut [Tail],
    (k, signal, event): (usize, i32, &str),
    gone: &[usize],
    timeout: Duration,
) -> Waited {
    let others: Vec<usize> = (0..logs.len())
        .filter(|i| *i != k && !gone.contains(i))
        .collect();
    mark(logs);
    let t0 = Instant::now();
    procs.signal(k, signal);
    let name = name(k);
    let seen = watch(logs, &others, t0, timeout, |t| has_event(t, event, &name));
    procs.reap(k, Duration::from_secs(5));
    quantile(&seen, 1.0)
}

/// `serf tags -set TAG` on agent `origin`; times from the origin logging its
/// own update until every other agent logs it.
fn tag_change(
    procs: &mut Procs,
    logs: &mut [Tail],
    origin: usize,
    rpc: &str,
    tag: &str,
    timeout: Duration,
) -> Waited {
    mark(logs);
    let t0 = Instant::now();
    let mut cmd = Command::new("serf");
    cmd.args(["tags", &format!("-rpc-addr={rpc}"), "-set", tag]);
    let Ok(i) = procs.spawn(&format!("serf-tags-{origin}"), &mut cmd) else {
        return Waited::Timeout {
            seen: 0,
            of: logs.len() - 1,
        };
    };
    let name = name(origin);
    let everyone: Vec<usize> = (0..logs.len()).collect();
    let times = watch(logs, &everyone, t0, timeout, |t| {
        has_event(t, "EventMemberUpdate", &name)
    });
    procs.reap(i, Duration::from_secs(5));
    // From the command, as the user who typed it sees it.
    let seen: Vec<Option<Duration>> = times
        .iter()
        .enumerate()
        .filter(|(k, _)| *k != origin)
        .map(|(_, t)| *t)
        .collect();
    quantile(&seen, 1.0)
}

fn name(k: usize) -> String {
    format!("serf-{k}")
}

/// Starts the agents (the first, then the rest joining it); returns their RPC addresses.
fn start(procs: &mut Procs, n: usize, statsd_port: u16) -> anyhow::Result<Vec<String>> {
    let config = procs.dir().join("serf.json");
    std::fs::write(
        &config,
        format!("{{\"statsd_addr\": \"127.0.0.1:{statsd_port}\"}}\n"),
    )?;
    let ports = free_ports(2 * n)?;
    let (bind, rpc) = ports.split_at(n);
    let rpc: Vec<String> = rpc.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    for k in 0..n {
        let mut cmd = Command::new("serf");
        cmd.args([
            "agent",
            &format!("-node={}", name(k)),
            &format!("-bind=127.0.0.1:{}", bind[k]),
        ]);
        cmd.args([
            &format!("-rpc-addr={}", rpc[k]),
            "-profile=lan",
            "-log-level=info",
        ]);
        cmd.arg(format!("-config-file={}", config.display()));
        if k > 0 {
            cmd.args([
                &format!("-retry-join=127.0.0.1:{}", bind[0]),
                "-retry-interval=1s",
            ]);
        }
        procs.spawn(&name(k), &mut cmd)?;
        if k == 0 {
            wait_rpc(procs, &rpc[0])?;
        }
    }
    Ok(rpc)
}

fn wait_rpc(procs: &mut Procs, rpc: &str) -> anyhow::Result<()> {
    let addr = rpc.parse().context("rpc address")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(code) = procs.exited(0) {
            anyhow::bail!("serf agent exited ({code}):\n{}", procs.log_tail(0, 2000));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "serf agent did not open {rpc} within 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A log file read as it grows; `text` holds what came since the last [`mark`].
#[derive(Debug)]
struct Tail {
    file: File,
    text: String,
}

impl Tail {
    fn open(path: std::path::PathBuf) -> anyhow::Result<Self> {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        Ok(Self {
            file,
            text: String::new(),
        })
    }

    fn read(&mut self) {
        let mut buf = Vec::new();
        let _ = self.file.read_to_end(&mut buf);
        self.text.push_str(&String::from_utf8_lossy(&buf));
    }
}

/// Forgets what the logs said so far.
fn mark(logs: &mut [Tail]) {
    for t in logs {
        t.read();
        t.text.clear();
    }
}

/// Reads logs `which` every 10 ms and records when `pred` first held for
/// each, measured from `start`.
fn watch(
    logs: &mut [Tail],
    which: &[usize],
    start: Instant,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Vec<Option<Duration>> {
    let mut times = vec![None; which.len()];
    loop {
        for (&i, time) in which.iter().zip(&mut times) {
            if time.is_none() {
                logs[i].read();
                if pred(&logs[i].text) {
                    *time = Some(start.elapsed());
                }
            }
        }
        if times.iter().all(Option::is_some) || start.elapsed() >= timeout {
            return times;
        }
        std::thread::sleep(LOG_POLL);
    }
}

/// Whether a complete line of `text` says `EVENT: NAME` (NAME a whole word).
fn has_event(text: &str, event: &str, name: &str) -> bool {
    let tag = format!("{event}: ");
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .any(|line| {
            line.split_once(&tag)
                .and_then(|(_, rest)| rest.split_whitespace().next())
                == Some(name)
        })
}

/// A statsd listener summing memberlist's bytes-sent counters.
struct Statsd {
    port: u16,
    bytes: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Statsd {
    fn start() -> anyhow::Result<Self> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let port = socket.local_addr()?.port();
        let bytes = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (Arc::clone(&bytes), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !s.load(Relaxed) {
                if let Ok(len) = socket.recv(&mut buf) {
                    b.fetch_add(sent_bytes(&String::from_utf8_lossy(&buf[..len])), Relaxed);
                }
            }
        });
        Ok(Self {
            port,
            bytes,
            stop,
            thread: Some(thread),
        })
    }
}

impl Statsd {
    /// Bytes sent per agent per second over the next `window`; `None` if
    /// nothing was counted (Serf built without telemetry).
    fn per_node_per_s(&self, n: usize, window: Duration) -> Option<f64> {
        let before = self.bytes.load(Relaxed);
        let t0 = Instant::now();
        std::thread::sleep(window);
        let sent = self.bytes.load(Relaxed).saturating_sub(before);
        #[allow(clippy::cast_precision_loss)]
        let per_node = sent as f64 / n as f64;
        (sent > 0).then(|| per_node / t0.elapsed().as_secs_f64())
    }
}

impl Drop for Statsd {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sum of `…memberlist.{udp,tcp}.sent:VALUE|c` lines in one statsd datagram.
fn sent_bytes(datagram: &str) -> u64 {
    datagram
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(key, _)| {
            key.ends_with("memberlist.udp.sent") || key.ends_with("memberlist.tcp.sent")
        })
        .filter_map(|(_, v)| v.split('|').next()?.parse::<f64>().ok())
        // Byte counts: whole, non-negative, far below 2^53.
        .map(|v| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let b = v.max(0.0) as u64;
            b
        })
        .sum()
}

/// `count` distinct loopback ports free for both TCP and UDP right now (held
/// together while chosen, then released): Serf must be told its ports, and
/// reports none back. Our own agents never need this (port 0, reported).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut tries = 0;
    while held.len() < count {
        tries += 1;
        anyhow::ensure!(
            tries < count * 20 + 100,
            "cannot find {count} free loopback ports"
        );
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if let Ok(udp) = std::net::UdpSocket::bind(("127.0.0.1", port)) {
            held.push((port, tcp, udp));
        }
    }
    Ok(held.into_iter().map(|(port, _, _)| port).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_match_whole_names_on_complete_lines() {
        let log = "    2026/11/27 00:08:03 [INFO] serf: EventMemberFailed: serf-28 127.0.0.1\n\
                   [INFO] serf: EventMemberUpdate: serf-2";
        assert!(has_event(log, "EventMemberFailed", "serf-28"));
        assert!(!has_event(log, "EventMemberFailed", "serf-2"));
        assert!(
            !has_event(log, "EventMemberUpdate", "serf-2"),
            "the last line is incomplete"
        );
    }

    #[test]
    fn statsd_lines_sum_sent_bytes_only() {
        let d = "serf-agent.memberlist.udp.sent:120.000000|c\nserf-agent.memberlist.udp.received:99.000000|c\n\
                 serf-agent.memberlist.tcp.sent:215.000000|c\nserf-agent.memberlist.gossip:0.1|ms\n";
        assert_eq!(sent_bytes(d), 335);
    }
}
