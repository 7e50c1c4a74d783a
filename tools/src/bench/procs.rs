//! Child processes of a benchmark, killed and reaped on every path.
//!
//! [`Procs`] owns a scratch directory and the children; dropping it (normal
//! return, error, panic) SIGKILLs every child still running, reaps it and
//! removes the directory (kept, with the logs, when the environment has
//! `MAXWELL_BENCH_KEEP_LOGS`). Children also get `PR_SET_PDEATHSIG`, so they die
//! with the benchmark even if it is killed outright.

use anyhow::Context;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// One child and its log file.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

/// The children of one benchmark run and their scratch directory.
#[derive(Debug)]
pub struct Procs {
    dir: PathBuf,
    procs: Vec<Proc>,
    keep_dir: bool,
}

impl Procs {
    /// A fresh scratch directory under the system temp dir.
    pub fn new(prefix: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let keep_dir = std::env::var_os("MAXWELL_BENCH_KEEP_LOGS").is_some();
        Ok(Self {
            dir,
            procs: Vec::new(),
            keep_dir,
        })
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts `cmd` with stdout and stderr into `<dir>/<name>.log`; returns its index.
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> anyhow::Result<usize> {
        let log = self.dir.join(format!("{name}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        self.procs.push(Proc {
            name: name.to_string(),
            log,
            child: Some(child),
        });
        Ok(self.procs.len() - 1)
    }

    /// The child at `i`.
    pub fn get(&self, i: usize) -> &Proc {
        &self.procs[i]
    }

    /// Sends `signal` to child `i` if it still runs.
    pub fn signal(&mut self, i: usize, signal: i32) {
        if let Some(child) = &mut self.procs[i].child {
            if matches!(child.try_wait(), Ok(None)) {
                if let Ok(pid) = i32::try_from(child.id()) {
                    // SAFETY: kill(2) on our own child, not yet reaped.
                    unsafe { libc::kill(pid, signal) };
                }
            }
        }
    }

    /// Whether child `i` has exited (reaping it if so).
    pub fn exited(&mut self, i: usize) -> Option<ExitStatus> {
        let child = self.procs[i].child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// Waits up to `timeout` for child `i` to exit, then SIGKILLs and reaps it.
    pub fn reap(&mut self, i: usize, timeout: Duration) {
        let Some(mut child) = self.procs[i].child.take() else {
            return;
        };
        let deadline = Instant::now() + timeout;
        while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The last `max` bytes of child `i`'s log, for error messages.
    pub fn log_tail(&self, i: usize, max: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.procs[i].log) {
            let len = f.metadata().map_or(0, |m| m.len());
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
            let _ = f.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.procs {
            if let Some(child) = &mut p.child {
                let _ = child.kill();
            }
        }
        for p in &mut self.procs {
            if let Some(mut child) = p.child.take() {
                let _ = child.wait();
            }
        }
        if self.keep_dir {
            eprintln!("bench: logs kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `count` distinct loopback ports free for both TCP and UDP right now
/// (held together while chosen, then released).
pub fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
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
