//! What a run sets up before the first container starts: the static agent
//! binary, each node's hwmon tree, data dir, cluster key and guest specs,
//! and the compose file.

use super::{engine, ip, rack, Scenario, API_PORT, GOSSIP_PORT, SUBNET};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};

/// The share of its container's CPU an agent's guests take in all when
/// every one runs.
pub(super) const GUESTS_SHARE: f64 = 0.8;

/// Builds the agent as a static glibc binary (no registry, no musl target
/// needed), in its own target dir.
pub(super) fn build_static() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if !root.join("Cargo.toml").exists() {
        bail!("no source tree at {} to build the agent from: pass --agent-bin PATH (a static maxwell binary)", root.display());
    }
    let triple = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let target = root.join("target/static");
    eprintln!("testbed: building the static agent (cargo build --release -p maxwell-node --target {triple}; minutes the first time)");
    let status =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&root)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &target)
            .args([
                "build",
                "--release",
                "--quiet",
                "-p",
                "maxwell-node",
                "--target",
                &triple,
            ])
            .status()
            .context("running cargo")?;
    if !status.success() {
        bail!("building the static agent failed ({status})");
    }
    Ok(target.join(triple).join("release/maxwell"))
}

/// Each node's hwmon tree (at the physics' starting state), data dir,
/// shared cluster key, and guest specs (started by the agent itself, and
/// again after a restart).
/// `cpus` is what each container may use, cores.
pub(super) fn prepare_dirs(
    s: &Scenario,
    out: &Path,
    rack: &rack::Rack,
    cpus: f64,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let key = maxwell_node::mesh::keys::generate()?;
    // All of an agent's guests take at most GUESTS_SHARE of its container.
    let per_guest = (GUESTS_SHARE * cpus / s.guests.len().max(1) as f64).clamp(0.01, 1.0);
    for (h, n) in s.nodes().iter().enumerate() {
        rack::write_hwmon(&out.join("hwmon").join(n), rack.reading(h))?;
        let data = out.join("data").join(n);
        let guests = data.join("guests");
        std::fs::create_dir_all(&guests)?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700))?;
        let key_file = data.join("cluster.key");
        std::fs::write(&key_file, &key)?;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600))?;
        for g in &s.guests {
            let class = g.class.as_deref().unwrap_or("pausable");
            let spec = format!(
                "name = \"{}\"\nkind = \"workload\"\nvcpus = 1\nmemory_mib = 16\npayload = \"count\"\nbid_milli = {}\nwallet_milli = {}\nclass = \"{class}\"\nmax_cpu = {per_guest:.3}\n",
                g.name, g.bid_milli, g.wallet_milli
            );
            std::fs::write(guests.join(format!("{}.toml", g.name)), spec)?;
        }
    }
    Ok(())
}

/// The compose file: one service per agent on a private network, each
/// with its fixed address, its CPU share of this machine, its hwmon tree
/// and data dir, and `/dev/kvm` where this machine has one.
pub fn compose_file(s: &Scenario, cpus: f64, out: &Path) -> String {
    let kvm = Path::new("/dev/kvm").exists();
    let seeds: Vec<String> = (0..s.layout.racks)
        .map(|r| format!("{}:{GOSSIP_PORT}", ip(s.layout.host(r, 0))))
        .collect();
    let mut y = format!(
        "# Written by `maxwell testbed run` for scenario {:?}: {} agents in {} racks.\nversion: \"2.4\"\nnetworks:\n  rack:\n    ipam:\n      config:\n        - subnet: {}.{}.{}.0/24\nservices:\n",
        s.name,
        s.layout.hosts(),
        s.layout.racks,
        SUBNET[0],
        SUBNET[1],
        SUBNET[2]
    );
    for (h, n) in s.nodes().iter().enumerate() {
        let (rack, slot) = (s.layout.rack_of(h), s.layout.slot_of(h));
        let mut cmd = vec![
            "agent".to_string(),
            "--name".into(),
            n.clone(),
            "--rack".into(),
            format!("r{rack}"),
            "--slot".into(),
            slot.to_string(),
            "--data-dir".into(),
            "/data".into(),
            "--http".into(),
            format!("0.0.0.0:{API_PORT}"),
            "--gossip-listen".into(),
            format!("{}:{GOSSIP_PORT}", ip(h)),
            "--sensors".into(),
            "sysfs".into(),
            "--hwmon-root".into(),
            "/hwmon".into(),
            "--set".into(),
            "guests.specs_dir=/data/guests".into(),
        ];
        for seed in &seeds {
            cmd.push("--seed".into());
            cmd.push(seed.clone());
        }
        let quoted: Vec<String> = cmd.iter().map(|c| format!("{c:?}")).collect();
        y.push_str(&format!(
            "  {n}:\n    image: {}\n    container_name: {}\n    hostname: {n}\n    cpus: {cpus:.3}\n    networks:\n      rack:\n        ipv4_address: {}\n    volumes:\n      - {}:/hwmon:ro\n      - {}:/data\n    command: [{}]\n",
            engine::IMAGE,
            engine::container(n),
            ip(h),
            out.join("hwmon").join(n).display(),
            out.join("data").join(n).display(),
            quoted.join(", ")
        ));
        if kvm {
            y.push_str("    devices:\n      - /dev/kvm:/dev/kvm\n");
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_agent_has_its_own_address_tree_and_data_and_the_racks_seed_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/scenarios/ci.toml");
        let s = Scenario::load(&dir, Some(6)).expect("scenario");
        let y = compose_file(&s, 0.333, Path::new("/out"));
        for (h, n) in s.nodes().iter().enumerate() {
            assert_eq!(
                y.matches(&format!("ipv4_address: {}\n", ip(h))).count(),
                1,
                "{n}"
            );
            assert!(y.contains(&format!("- /out/hwmon/{n}:/hwmon:ro")), "{n}");
            assert!(y.contains(&format!("- /out/data/{n}:/data")), "{n}");
            assert!(y.contains(&format!("\"--name\", \"{n}\"")), "{n}");
        }
        // The first host of each rack is a seed of every agent.
        assert_eq!(y.matches("\"--seed\", \"10.213.0.10:7946\"").count(), 6);
        assert_eq!(y.matches("\"--seed\", \"10.213.0.13:7946\"").count(), 6);
        assert_eq!(y.matches("cpus: 0.333").count(), 6);
    }
}
