//! The Docker engine, through its command line: start it when it is not
//! running, build the agent image, bring the compose project up and down,
//! act on containers, and enter a container's network namespace for
//! iptables. Every object the testbed makes carries [`LABEL`] or the
//! project name, so that teardown and its check find exactly those.

use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The compose project, and the prefix of every container and network.
pub const PROJECT: &str = "maxwell-testbed";
/// The image the agents run.
pub const IMAGE: &str = "maxwell-testbed-agent:latest";
/// The comment on every iptables rule the testbed enters.
pub const RULE_COMMENT: &str = "maxwell-testbed";

/// Runs `cmd`, returning its stdout; a failure names the command and
/// carries its stderr.
pub fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn docker() -> Command {
    Command::new("docker")
}

fn found(program: &str) -> bool {
    maxwell_supervise::on_path(program).is_some()
}

/// No engine can run on this machine: the driver says why in one line and
/// exits with [`NoEngine::EXIT_CODE`], which CI tells from a failed run.
#[derive(Debug, thiserror::Error)]
#[error("no Docker engine can run here: {0}")]
pub struct NoEngine(pub String);

impl NoEngine {
    pub const EXIT_CODE: u8 = 3;
}

/// An engine this run started, stopped again by [`Started::stop`].
#[derive(Debug)]
pub struct Started(std::process::Child);

impl Started {
    /// Stops the engine (SIGTERM, then SIGKILL after 20 s) and reaps it.
    pub fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            // SAFETY: signals our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Makes sure an engine answers: starts `dockerd` (its log in `log`) when
/// none runs, and returns it so that the run stops it again. The error is
/// one line saying why no engine can run here.
pub fn ensure(log: &Path) -> anyhow::Result<Option<Started>> {
    if !found("docker") {
        return Err(NoEngine("the docker command is not installed (apt-get install docker.io docker-compose iptables)".into()).into());
    }
    if answers() {
        return Ok(None);
    }
    if !found("dockerd") {
        return Err(NoEngine(
            "the engine is not running and dockerd is not installed (apt-get install docker.io)"
                .into(),
        )
        .into());
    }
    let file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut cmd = Command::new("dockerd");
    // The rack needs no NAT or published port: the host reaches the
    // containers on the bridge. Without it the engine enters no iptables
    // rule, and leaves none when it stops.
    cmd.arg("--iptables=false")
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    // Its own session: the engine outlives this run, as a service would.
    // SAFETY: setsid is async-signal-safe and takes no arguments.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let child = Started(cmd.spawn().context("starting dockerd")?);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if answers() {
            eprintln!(
                "testbed: started the Docker engine (log: {}); it is stopped at the end",
                log.display()
            );
            return Ok(Some(child));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    child.stop();
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let last = tail.lines().last().unwrap_or("no output");
    Err(NoEngine(format!("dockerd did not answer within 30 s ({last})")).into())
}

fn answers() -> bool {
    docker()
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `docker-compose` (v1) where installed, else the `docker compose` plugin.
fn compose() -> Command {
    if found("docker-compose") {
        Command::new("docker-compose")
    } else {
        let mut c = docker();
        c.arg("compose");
        c
    }
}

/// Builds [`IMAGE`]: `FROM scratch` and the static agent binary.
pub fn build_image(binary: &Path, context: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(context)?;
    std::fs::copy(binary, context.join("maxwell"))
        .with_context(|| format!("copying {}", binary.display()))?;
    std::fs::write(context.join("Dockerfile"), DOCKERFILE)?;
    run(docker().args(["build", "-q", "-t", IMAGE]).arg(context))?;
    Ok(())
}

/// The agent image: nothing but the static binary.
pub const DOCKERFILE: &str = "FROM scratch\nCOPY maxwell /maxwell\nENTRYPOINT [\"/maxwell\"]\n";

/// `compose up -d` of `file`.
pub fn up(file: &Path) -> anyhow::Result<()> {
    run(compose()
        .args(["-p", PROJECT, "-f"])
        .arg(file)
        .args(["up", "-d"]))?;
    Ok(())
}

/// Removes the project's containers, network and volumes, from `file`
/// when there is one, and by label whatever is left.
pub fn down(file: Option<&Path>) -> anyhow::Result<()> {
    let mut errors = Vec::new();
    if let Some(f) = file.filter(|f| f.exists()) {
        let r = run(compose().args(["-p", PROJECT, "-f"]).arg(f).args([
            "down",
            "-v",
            "-t",
            "5",
            "--remove-orphans",
        ]));
        if let Err(e) = r {
            errors.push(e.to_string());
        }
    }
    for id in leftovers()?.containers {
        if let Err(e) = run(docker().args(["rm", "-f", "-v", &id])) {
            errors.push(e.to_string());
        }
    }
    for net in leftovers()?.networks {
        if let Err(e) = run(docker().args(["network", "rm", &net])) {
            errors.push(e.to_string());
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(anyhow!(errors.join("; ")))
    }
}

/// What the project still holds: on the engine, and on this host.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    pub containers: Vec<String>,
    pub networks: Vec<String>,
    /// Host iptables rules carrying [`RULE_COMMENT`] (faults enter rules
    /// only in containers' namespaces, which go with them).
    pub rules: Vec<String>,
    /// Mounts of this host naming the project.
    pub mounts: Vec<String>,
}

/// The project's containers and networks still on the engine, and its
/// rules and mounts still on this host.
pub fn leftovers() -> anyhow::Result<Leftovers> {
    let filter = format!("label=com.docker.compose.project={PROJECT}");
    let lines = |s: String| {
        s.lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect()
    };
    let mine = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains(PROJECT))
            .map(str::to_string)
            .collect()
    };
    let rules = if found("iptables-save") {
        mine(run(&mut Command::new("iptables-save"))?)
    } else {
        Vec::new()
    };
    Ok(Leftovers {
        containers: lines(run(docker().args(["ps", "-aq", "--filter", &filter]))?),
        networks: lines(run(
            docker().args(["network", "ls", "-q", "--filter", &filter])
        )?),
        rules,
        mounts: mine(std::fs::read_to_string("/proc/mounts").unwrap_or_default()),
    })
}

/// The container of node `name`.
pub fn container(name: &str) -> String {
    format!("{PROJECT}-{name}")
}

/// `docker ACTION CONTAINER` (kill, start, restart, pause, unpause).
pub fn act(action: &str, name: &str) -> anyhow::Result<()> {
    let c = container(name);
    let mut cmd = docker();
    match action {
        "kill" => cmd.args(["kill", "-s", "KILL", &c]),
        "restart" => cmd.args(["restart", "-t", "5", &c]),
        other => cmd.args([other, &c]),
    };
    run(&mut cmd)?;
    Ok(())
}

/// A container's state: running, its init's pid, and how often it exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub running: bool,
    pub paused: bool,
    pub pid: u32,
}

/// The state of node `name`'s container.
pub fn state(name: &str) -> anyhow::Result<State> {
    let out = run(docker().args([
        "inspect",
        "--format",
        "{{.State.Running}} {{.State.Paused}} {{.State.Pid}}",
        &container(name),
    ]))?;
    let f: Vec<&str> = out.split_whitespace().collect();
    match f.as_slice() {
        [r, p, pid] => Ok(State {
            running: *r == "true",
            paused: *p == "true",
            pid: pid.parse().unwrap_or(0),
        }),
        _ => bail!("docker inspect of {name}: unexpected {out:?}"),
    }
}

/// `file` in process `pid`'s cgroup v1 of `controller`, where it exists.
fn cgroup_file(pid: u32, controller: &str, file: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (
            parts.next(),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        if controllers.split(',').any(|c| c == controller) {
            for mount in [
                controller.to_string(),
                format!("cpu,{controller}"),
                format!("{controller},cpu"),
            ] {
                let f = Path::new("/sys/fs/cgroup")
                    .join(mount)
                    .join(path.trim_start_matches('/'))
                    .join(file);
                if f.exists() {
                    return Some(f);
                }
            }
        }
    }
    None
}

/// The cgroup v1 `cpuacct.usage` file of process `pid`: where its
/// container's CPU time is counted.
pub fn cpu_file(pid: u32) -> anyhow::Result<PathBuf> {
    cgroup_file(pid, "cpuacct", "cpuacct.usage").ok_or_else(|| {
        anyhow!("no cpuacct cgroup for pid {pid} (cgroup v1's cpuacct controller is needed to meter a container)")
    })
}

/// Process `pid`'s resident set (`VmRSS`), bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The memory process `pid`'s container uses now (cgroup v1), bytes.
pub fn memory_bytes(pid: u32) -> Option<u64> {
    let f = cgroup_file(pid, "memory", "memory.usage_in_bytes")?;
    std::fs::read_to_string(f).ok()?.trim().parse().ok()
}

/// Nanoseconds of CPU counted in `file` (see [`cpu_file`]).
pub fn cpu_ns(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// `iptables ARGS` inside the network namespace of `pid`.
pub fn iptables(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "iptables"])
        .args(args))?;
    Ok(())
}

/// Whether `iptables` and `nsenter` are here (partitions and loss need both).
pub fn can_filter() -> bool {
    found("iptables") && found("nsenter")
}
