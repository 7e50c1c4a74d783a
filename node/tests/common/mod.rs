//! Helpers shared by the process tests.
#![allow(dead_code)]

pub mod mesh;

use maxwell_node::client;
use maxwell_node::http::Status;
use maxwell_types::addresses::Addresses;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

pub fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A one-sensor hwmon fixture at `dir`: a package at `celsius_milli`, its
/// critical limit 100 °C, and no power files.
pub fn write_tree(dir: &Path, celsius_milli: i64) {
    let chip = dir.join("hwmon/hwmon0");
    std::fs::create_dir_all(&chip).expect("mkdir");
    std::fs::create_dir_all(dir.join("powercap")).expect("mkdir");
    std::fs::write(chip.join("name"), "coretemp\n").expect("write");
    std::fs::write(chip.join("temp1_label"), "Package id 0\n").expect("write");
    std::fs::write(chip.join("temp1_crit"), "100000\n").expect("write");
    std::fs::write(chip.join("temp1_input"), format!("{celsius_milli}\n")).expect("write");
}

/// Spawns `maxwell agent` on the sysfs fixture `tree` (read every 100 ms,
/// the test gossip preset), data dir `data`, on ports of its choosing, with
/// `extra` flags (which must not name the tree, data dir or ports).
pub fn spawn_on_tree(bin: &str, tree: &Path, data: &Path, extra: &[String]) -> Child {
    Command::new(bin)
        .args(["agent", "--sensors", "sysfs"])
        .args([
            "--set",
            "sensors.interval_ms=100",
            "--set",
            "gossip.preset=test",
        ])
        .args(["--http", "127.0.0.1:0", "--gossip-listen", "127.0.0.1:0"])
        .arg("--hwmon-root")
        .arg(tree.join("hwmon"))
        .arg("--powercap-root")
        .arg(tree.join("powercap"))
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn agent")
}

/// Waits until `child` (data dir `data`) serves; the addresses it bound.
pub fn served(child: &mut Child, data: &Path) -> Addresses {
    match maxwell_supervise::wait_for_addresses(child, data, Duration::from_secs(20)) {
        Ok(a) => a,
        Err(w) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent did not serve: {w:?}");
        }
    }
}

/// Gives the agent to come in data dir `to` the cluster key that the agent
/// of data dir `from` made (as an operator copies it to a joining host).
pub fn share_key(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).expect("mkdir");
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::copy(from.join("cluster.key"), to.join("cluster.key")).expect("copy the cluster key");
}

/// `--seed ADDR` for `seed`, if any.
pub fn seed_flags(seed: Option<SocketAddr>) -> Vec<String> {
    seed.iter()
        .flat_map(|s| ["--seed".to_string(), s.to_string()])
        .collect()
}

/// A running agent on a fixture tree; killed on drop.
pub struct Agent {
    pub child: Child,
    pub addr: SocketAddr,
    data: tempfile::TempDir,
}

impl Agent {
    pub fn start(bin: &str, tree: &Path, extra: &[&str]) -> Self {
        let data = tempfile::tempdir().expect("tempdir");
        let flags: Vec<String> = ["--name", "fixture", "--rack", "r9", "--slot", "12"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        let child = spawn_on_tree(bin, tree, data.path(), &flags);
        Self::adopt(child, data)
    }

    /// An agent spawned by the caller (with its data dir `data`, on ports
    /// of its choosing), once it reports where it serves.
    pub fn adopt(mut child: Child, data: tempfile::TempDir) -> Self {
        let addr = served(&mut child, data.path()).http;
        Self { child, addr, data }
    }

    /// The agent's data dir (its host key and API token).
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The API with the token the agent wrote into its data dir.
    pub fn api(&self) -> client::Api {
        client::Api {
            addr: self.addr,
            token: client::read_token(None, self.data_dir()).expect("token"),
        }
    }

    pub fn status(&self) -> Status {
        client::get_json(self.addr, "/v1/status", Duration::from_secs(2)).expect("status")
    }

    /// Polls the status until `pred` holds (the agent reads every 100 ms).
    pub fn wait_for(&self, pred: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if pred(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached; last status: {s:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig` and returns at once.
    pub fn kill(&self, sig: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, sig) };
    }

    /// Sends `sig` and waits for the exit code.
    pub fn signal(mut self, sig: i32) -> Option<i32> {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, sig) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "agent ignored the signal");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn terminate(self) -> Option<i32> {
        self.signal(libc::SIGTERM)
    }

    pub fn interrupt(self) -> Option<i32> {
        self.signal(libc::SIGINT)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A one-chip hwmon fixture under `tree` at `milli` m°C (critical 100 °C),
/// written then renamed so the agent never reads a half-written file.
pub fn write_temp(tree: &Path, milli: i64) {
    let chip = tree.join("hwmon/hwmon0");
    std::fs::create_dir_all(&chip).expect("mkdir");
    std::fs::write(chip.join("name"), "coretemp\n").expect("write");
    std::fs::write(chip.join("temp1_crit"), "100000\n").expect("write");
    let tmp = chip.join("temp1_input.tmp");
    std::fs::write(&tmp, format!("{milli}\n")).expect("write");
    std::fs::rename(&tmp, chip.join("temp1_input")).expect("rename");
}
