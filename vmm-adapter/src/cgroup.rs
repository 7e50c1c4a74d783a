//! CPU caps through cgroups: v1 `cpu.cfs_quota_us`/`cpu.cfs_period_us` or
//! v2 threaded cgroups with `cpu.max`, detected once per backend.
//!
//! Layout (v1): `<cpu mount>/<parent>/<pid>-<guest>/vcpu<i>`, one leaf per
//! vCPU thread (or per process of the process backend) so that each gets
//! `cap × period` of CPU per period. v2: the same tree under this process's
//! own cgroup, every directory `threaded`. Directories are removed on kill.
//!
//! The CFS period is short (10 ms): a vCPU throttled for the rest of a long
//! period handles a pause/kill signal only when it is next unthrottled.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::CapMode;
use crate::error::{Result, VmmError};
use crate::spec::CpuCap;

/// CFS period used for every cap, microseconds.
pub const CFS_PERIOD_US: u64 = 10_000;

/// How caps are to be enforced; see [`CapConfig`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CapPolicy {
    /// cgroup v1, else v2, else the duty-cycle fallback.
    #[default]
    Auto,
    /// Always the user-space duty cycle (tests, hosts where cgroups must
    /// not be touched).
    DutyCycle,
}

/// Cap configuration for a backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapConfig {
    /// Name of the directory under the cpu hierarchy holding all guests.
    pub parent: String,
    /// Enforcement policy.
    pub policy: CapPolicy,
}

impl Default for CapConfig {
    fn default() -> Self {
        CapConfig {
            parent: "maxwell".to_owned(),
            policy: CapPolicy::Auto,
        }
    }
}

/// The hierarchy found at backend start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    /// v1 cpu controller; path of the parent dir (`.../cpu/maxwell`).
    V1(PathBuf),
    /// v2 with cpu; path of the parent dir under our own cgroup.
    V2(PathBuf),
    /// Neither usable; why.
    None(String),
}

impl Hierarchy {
    /// Detect and create the parent directory.
    pub(crate) fn detect(cfg: &CapConfig) -> Hierarchy {
        if cfg.policy == CapPolicy::DutyCycle {
            return Hierarchy::None("duty cycle requested".into());
        }
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        if let Some(cpu) = v1_cpu_mount(&mounts) {
            let dir = cpu.join(&cfg.parent);
            if fs::create_dir_all(&dir).is_ok() && dir.join("cpu.cfs_quota_us").exists() {
                sweep_stale(&dir);
                return Hierarchy::V1(dir);
            }
        }
        if let Some(root) = v2_mount(&mounts) {
            let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            if let Some(rel) = v2_own_path(&own) {
                let own_dir = root.join(rel.trim_start_matches('/'));
                let ctrls = fs::read_to_string(own_dir.join("cgroup.controllers"));
                if ctrls.is_ok_and(|c| c.split_whitespace().any(|w| w == "cpu")) {
                    let dir = own_dir.join(&cfg.parent);
                    if v2_make_threaded(&dir).is_ok() {
                        sweep_stale(&dir);
                        return Hierarchy::V2(dir);
                    }
                }
            }
        }
        Hierarchy::None("no writable cgroup cpu controller (v1 or v2)".into())
    }

    pub(crate) fn mode(&self) -> CapMode {
        match self {
            Hierarchy::V1(_) => CapMode::CgroupV1,
            Hierarchy::V2(_) => CapMode::CgroupV2,
            Hierarchy::None(_) => CapMode::DutyCycle,
        }
    }
}

/// The v1 mount point carrying the `cpu` controller, from `/proc/self/mounts`.
pub(crate) fn v1_cpu_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (path, fstype, opts) = (f.get(1)?, f.get(2)?, f.get(3)?);
        (*fstype == "cgroup" && opts.split(',').any(|o| o == "cpu")).then(|| PathBuf::from(path))
    })
}

/// The cgroup2 mount point, from `/proc/self/mounts`.
pub(crate) fn v2_mount(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f.get(1).copied().unwrap_or("")))
    })
}

/// Our cgroup v2 path from `/proc/self/cgroup` (the `0::` line).
pub(crate) fn v2_own_path(cgroup: &str) -> Option<&str> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

/// CFS quota for a cap, microseconds per [`CFS_PERIOD_US`]; `None` = unlimited.
pub(crate) fn quota_us(cap: CpuCap) -> Option<u64> {
    if cap.is_full() {
        None
    } else {
        // CFS refuses quotas under 1 ms.
        Some(((cap.fraction() * CFS_PERIOD_US as f64).round() as u64).max(1000))
    }
}

/// The `cpu.max` line for a cap.
pub(crate) fn v2_cpu_max(cap: CpuCap) -> String {
    match quota_us(cap) {
        Some(q) => format!("{q} {CFS_PERIOD_US}"),
        None => format!("max {CFS_PERIOD_US}"),
    }
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

fn v2_make_threaded(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    write(&dir.join("cgroup.type"), "threaded")?;
    if let Some(parent) = dir.parent() {
        // Best effort: may already be enabled.
        let _ = write(&parent.join("cgroup.subtree_control"), "+cpu");
    }
    write(&dir.join("cgroup.subtree_control"), "+cpu")
}

/// One guest's cgroups: a directory with one leaf per vCPU.
#[derive(Debug)]
pub(crate) struct CapGroup {
    dir: PathBuf,
    leaves: Vec<PathBuf>,
    v2: bool,
}

impl CapGroup {
    /// Create `<parent>/<name>/vcpu<i>` for `n` vCPUs. On error nothing is
    /// left behind.
    pub(crate) fn create(h: &Hierarchy, name: &str, n: usize) -> Result<Option<CapGroup>> {
        let (parent, v2) = match h {
            Hierarchy::V1(p) => (p, false),
            Hierarchy::V2(p) => (p, true),
            Hierarchy::None(_) => return Ok(None),
        };
        let mut g = CapGroup {
            dir: parent.join(name),
            leaves: Vec::new(),
            v2,
        };
        let made = g.make(n);
        match made {
            Ok(()) => Ok(Some(g)),
            Err(e) => {
                let _ = g.remove();
                Err(e)
            }
        }
    }

    fn make(&mut self, n: usize) -> Result<()> {
        let mk = |d: &Path| -> Result<()> {
            if self.v2 {
                v2_make_threaded(d)
            } else {
                fs::create_dir(d)
            }
            .map_err(|e| VmmError::host("create cgroup", d, e))
        };
        mk(&self.dir)?;
        for i in 0..n {
            let leaf = self.dir.join(format!("vcpu{i}"));
            mk(&leaf)?;
            self.leaves.push(leaf);
        }
        Ok(())
    }

    /// Directory of this guest's cgroups.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Move one thread (TID) or single-threaded process into leaf `i`.
    pub(crate) fn add_task(&self, i: usize, tid: libc::pid_t) -> Result<()> {
        let leaf = self.leaves.get(i).ok_or_else(|| {
            VmmError::host("cgroup leaf", &self.dir, io::ErrorKind::NotFound.into())
        })?;
        let file = leaf.join(if self.v2 { "cgroup.threads" } else { "tasks" });
        write(&file, &tid.to_string()).map_err(|e| VmmError::host("move thread to cgroup", file, e))
    }

    /// Apply `cap` to every leaf.
    pub(crate) fn set_cap(&self, cap: CpuCap) -> Result<()> {
        for leaf in &self.leaves {
            if self.v2 {
                let f = leaf.join("cpu.max");
                write(&f, &v2_cpu_max(cap)).map_err(|e| VmmError::host("write cpu.max", f, e))?;
            } else {
                let p = leaf.join("cpu.cfs_period_us");
                write(&p, &CFS_PERIOD_US.to_string())
                    .map_err(|e| VmmError::host("write cfs_period_us", p, e))?;
                let q = leaf.join("cpu.cfs_quota_us");
                let v = quota_us(cap).map_or("-1".to_owned(), |q| q.to_string());
                write(&q, &v).map_err(|e| VmmError::host("write cfs_quota_us", q, e))?;
            }
        }
        Ok(())
    }

    /// Remove the leaves and the guest directory. Threads must be gone; a
    /// just-exited thread may keep a cgroup busy for a moment, so retry.
    pub(crate) fn remove(&mut self) -> Result<()> {
        for d in self.leaves.iter().chain(std::iter::once(&self.dir)) {
            rmdir_retry(d).map_err(|e| VmmError::host("remove cgroup", d, e))?;
        }
        self.leaves.clear();
        Ok(())
    }
}

/// Put task `i` of `tasks` in leaf `i` and apply `cap`.
pub(crate) fn place(group: &CapGroup, tasks: &[libc::pid_t], cap: CpuCap) -> Result<()> {
    for (i, t) in tasks.iter().enumerate() {
        group.add_task(i, *t)?;
    }
    group.set_cap(cap)
}

/// Remove guest directories (`<pid>-g<id>`) left by agents that died
/// without killing their guests. Only empty cgroups can be removed, so a
/// live guest is never touched.
fn sweep_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_owner(&name) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(leaves) = fs::read_dir(e.path()) {
            for l in leaves.filter_map(|l| l.ok()).filter(|l| l.path().is_dir()) {
                let _ = fs::remove_dir(l.path());
            }
        }
        let _ = fs::remove_dir(e.path());
    }
}

/// The owning pid of a guest directory name `<pid>-g<id>`.
pub(crate) fn stale_owner(name: &str) -> Option<u32> {
    let (pid, id) = name.split_once("-g")?;
    id.parse::<u64>().ok()?;
    pid.parse().ok()
}

fn rmdir_retry(d: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..200 {
        last = match fs::remove_dir(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
        };
        std::thread::sleep(Duration::from_millis(5));
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mounts() {
        let m = "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n\
                 cgroup /sys/fs/cgroup/cpuacct cgroup rw,cpuacct 0 0\n\
                 cgroup /sys/fs/cgroup/cpu cgroup rw,nosuid,cpu 0 0\n";
        assert_eq!(v1_cpu_mount(m), Some(PathBuf::from("/sys/fs/cgroup/cpu")));
        assert_eq!(v2_mount(m), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(v1_cpu_mount("cgroup /x cgroup rw,cpuacct 0 0"), None);
        assert_eq!(v2_own_path("1:cpu:/\n0::/a/b\n"), Some("/a/b"));
        assert_eq!(stale_owner("1234-g7"), Some(1234));
        assert_eq!(stale_owner("vcpu0"), None);
        assert_eq!(stale_owner("1234-gx"), None);
    }

    #[test]
    fn quotas() {
        let c = |f| CpuCap::new(f).expect("cap");
        assert_eq!(quota_us(c(0.3)), Some(3000));
        assert_eq!(quota_us(c(0.01)), Some(1000));
        assert_eq!(quota_us(CpuCap::FULL), None);
        assert_eq!(v2_cpu_max(c(0.7)), "7000 10000");
        assert_eq!(v2_cpu_max(CpuCap::FULL), "max 10000");
    }
}
