//! `maxwell-supervise`: the one child-process supervisor of the demo, the
//! benchmarks and the process tests.
//!
//! [`Procs`] owns a scratch directory and the children; dropping it (normal
//! return, error, panic) SIGKILLs every child still running, reaps it and
//! removes the directory (kept, with the logs, when the environment has
//! `MAXWELL_BENCH_KEEP_LOGS`). Children also get `PR_SET_PDEATHSIG`, so they
//! die with their parent even if it is killed outright.
//!
//! Ports are the agent's to choose: [`Procs::spawn_agent`] starts an agent
//! on port 0 (HTTP and gossip), and [`Procs::wait_agent`] reads back the
//! ports it bound from its data dir
//! ([`maxwell_types::addresses`]); [`wait_for_addresses`] does the same for
//! an agent started by other means. Nothing here probes a port and hopes.
//!
//! [`browser`] drives a headless Chromium through chromedriver, a child
//! like the others.

pub mod browser;

/// Where `program` is on PATH, if anywhere.
pub fn on_path(program: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join(program))
        .find(|f| f.is_file())
}

use maxwell_types::addresses::{Addresses, FILE_NAME};
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why a child could not be started or did not come up.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// A file or the process could not be created.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The child exited before it reported its addresses.
    #[error("{name} exited ({status}) before it served; its log ends:\n{log}")]
    Exited {
        name: String,
        status: ExitStatus,
        log: String,
    },
    /// The child did not report its addresses in time.
    #[error("{name} did not serve within {timeout:?}; its log ends:\n{log}")]
    Timeout {
        name: String,
        timeout: Duration,
        log: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SuperviseError {
    let what = what.into();
    move |source| SuperviseError::Io { what, source }
}

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
    pub fn new(prefix: &str) -> Result<Self, SuperviseError> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
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
    pub fn spawn(&mut self, name: &str, cmd: &mut Command) -> Result<usize, SuperviseError> {
        let log = self.dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io("duplicating a log descriptor"))?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(io(format!("starting {name}")))?;
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

    /// How many children were started.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether none was.
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Starts `exe agent ARGS… --data-dir DATA --http 127.0.0.1:0
    /// --gossip-listen 127.0.0.1:0` (so `args` must not name those three:
    /// a flag given twice is refused) and returns its index;
    /// [`Self::wait_agent`] waits until it serves.
    pub fn spawn_agent(
        &mut self,
        name: &str,
        exe: &Path,
        args: &[&OsStr],
        data_dir: &Path,
    ) -> Result<usize, SuperviseError> {
        let mut cmd = Command::new(exe);
        cmd.arg("agent").args(args).arg("--data-dir").arg(data_dir);
        cmd.args(["--http", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"]);
        self.spawn(name, &mut cmd)
    }

    /// Waits up to `timeout` until agent `i` (its data dir `data_dir`)
    /// serves; returns the addresses it bound.
    pub fn wait_agent(
        &mut self,
        i: usize,
        data_dir: &Path,
        timeout: Duration,
    ) -> Result<Addresses, SuperviseError> {
        let name = self.procs[i].name.clone();
        let outcome = match self.procs[i].child.as_mut() {
            Some(child) => wait_for_addresses(child, data_dir, timeout),
            None => Err(Waited::Timeout),
        };
        outcome.map_err(|w| {
            let log = self.log_tail(i, 2_000);
            match w {
                Waited::Exited(status) => SuperviseError::Exited { name, status, log },
                Waited::Timeout => SuperviseError::Timeout { name, timeout, log },
            }
        })
    }

    /// Sends `signal` to every child still running, waits up to `grace` for
    /// all of them, then SIGKILLs and reaps whatever is left.
    pub fn stop_all(&mut self, signal: i32, grace: Duration) {
        for i in 0..self.procs.len() {
            self.signal(i, signal);
        }
        let deadline = Instant::now() + grace;
        for i in 0..self.procs.len() {
            self.reap(i, deadline.saturating_duration_since(Instant::now()));
        }
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

/// Why [`wait_for_addresses`] gave up.
#[derive(Debug)]
pub enum Waited {
    /// The agent exited first.
    Exited(ExitStatus),
    /// It did not report in time.
    Timeout,
}

/// Waits until the agent `child` (started with `--data-dir data_dir`) has
/// written its addresses, that is, serves; a file left by an earlier
/// process (another pid) is not taken for it.
pub fn wait_for_addresses(
    child: &mut Child,
    data_dir: &Path,
    timeout: Duration,
) -> Result<Addresses, Waited> {
    let file = data_dir.join(FILE_NAME);
    let deadline = Instant::now() + timeout;
    loop {
        let reported = std::fs::read(&file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Addresses>(&bytes).ok())
            .filter(|a| a.pid == child.id());
        if let Some(addresses) = reported {
            return Ok(addresses);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Waited::Exited(status));
        }
        if Instant::now() >= deadline {
            return Err(Waited::Timeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child that writes `agent.json` naming itself (or `pid`), then waits.
    fn reporter(dir: &Path, pid: Option<u32>) -> Child {
        let pid = pid.map_or("$$".to_string(), |p| p.to_string());
        let script = format!(
            "printf '{{\"pid\":%d,\"http\":\"127.0.0.1:7\",\"gossip\":\"127.0.0.1:9\",\"p2p\":\"127.0.0.1:8\"}}' {pid} > {}/agent.json; sleep 5",
            dir.display()
        );
        Command::new("sh")
            .args(["-c", &script])
            .spawn()
            .expect("sh")
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("maxwell-supervise-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn an_agent_is_found_by_the_addresses_it_reports() {
        let dir = scratch("found");
        let mut child = reporter(&dir, None);
        let got = wait_for_addresses(&mut child, &dir, Duration::from_secs(5));
        let _ = child.kill();
        let _ = child.wait();
        let got = got.expect("reported");
        assert_eq!(
            (got.http.port(), got.gossip.port(), got.pid),
            (7, 9, child.id())
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_left_by_another_process_is_not_taken_and_an_exit_is_said() {
        let dir = scratch("stale");
        let mut child = reporter(&dir, Some(1));
        let got = wait_for_addresses(&mut child, &dir, Duration::from_millis(300));
        assert!(matches!(got, Err(Waited::Timeout)), "{got:?}");
        let _ = child.kill();
        let _ = child.wait();
        let mut quitter = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .expect("sh");
        let got = wait_for_addresses(&mut quitter, &dir, Duration::from_secs(5));
        assert!(
            matches!(got, Err(Waited::Exited(s)) if s.code() == Some(3)),
            "{got:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
