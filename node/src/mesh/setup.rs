//! Turning the agent's config into a running [`Mesh`]: the cluster key,
//! the seeds, the advertise address and the allowlist file.

use super::transport::{GossipStats, UdpTransport};
use super::{Clock, Mesh, MeshSettings, TierSettings};
use crate::datadir::DataDir;
use crate::identity::Identity;
use crate::mesh::config::{GossipConfig, UpperConfig};
use anyhow::Context;
use maxwell_gossip::seal::Keyring;
use maxwell_gossip::swim::SwimConfig;
use maxwell_gossip::tier::{rack_cluster_id, upper_cluster_id, TierConfig};
use maxwell_gossip::{Allowlist, VerifierConfig};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;

/// Starts gossip on real UDP for the agent; returns the mesh and the
/// address it is bound to (port 0 asks the OS for one).
#[allow(clippy::too_many_arguments)]
pub async fn start_agent_mesh(
    g: &GossipConfig,
    name: &str,
    rack: &str,
    identity: &Identity,
    dir: &DataDir,
    stats: Arc<GossipStats>,
    generation: u64,
    clock: Clock,
    seed: u64,
) -> anyhow::Result<(Mesh, SocketAddr)> {
    let (keys, key_path) = super::keys::for_agent(
        g.cluster_key_file.as_deref(),
        !g.seeds.is_empty(),
        &g.cluster_id,
        dir,
    )?;
    let mut settings = settings(g, keys)?;
    if let Some(upper) = &g.upper {
        settings.tiers = Some(tier_settings(g, upper, rack, &key_path, &settings)?);
    }
    tracing::info!(
        listen = %settings.listen_addr,
        advertise = %settings.advertise_addr,
        seeds = ?settings.seeds,
        upper = ?settings.tiers.as_ref().map(|t| (t.upper_listen_addr, &t.upper_seeds)),
        cluster_key = %key_path.display(),
        generation,
        "gossip starting"
    );
    let listen = settings.listen_addr;
    let mesh = Mesh::start(
        settings,
        identity.signing_key().clone(),
        name.to_string(),
        generation,
        &UdpTransport,
        clock,
        seed,
        stats,
    )
    .await
    .with_context(|| format!("gossip.listen_addr {listen}"))?;
    let addr = mesh.local_addr();
    Ok((mesh, addr))
}

/// The tiered mesh's settings: the rack's and the upper tier's keys derive
/// from the cluster key file under their own names, so no datagram opens
/// in another rack or tier.
fn tier_settings(
    g: &GossipConfig,
    upper: &UpperConfig,
    rack: &str,
    key_path: &std::path::Path,
    flat: &MeshSettings,
) -> anyhow::Result<TierSettings> {
    let rack_keys = super::keys::load(key_path, &rack_cluster_id(&g.cluster_id, rack))?;
    let upper_keys = super::keys::load(key_path, &upper_cluster_id(&g.cluster_id))?;
    let advertise = upper
        .advertise_addr
        .unwrap_or_else(|| SocketAddr::new(flat.advertise_addr.ip(), upper.listen_addr.port()));
    Ok(TierSettings {
        upper_listen_addr: upper.listen_addr,
        upper_advertise_addr: advertise,
        upper_seeds: resolve("gossip.upper_seeds", &upper.seeds),
        rack: rack.to_string(),
        rack_keys,
        upper_keys,
        config: TierConfig {
            summary_heartbeat_ms: millis(g.heartbeat),
            summary_ttl_ms: millis(g.report_ttl),
            ..TierConfig::default()
        },
    })
}

/// Resolves seeds; one that does not resolve is skipped, loudly: the
/// others may be enough, and it is retried at the next start.
fn resolve(field: &str, seeds: &[String]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for seed in seeds {
        match seed.to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(addr)) => out.push(addr),
            Ok(None) | Err(_) => {
                tracing::warn!(%seed, field, "gossip seed does not resolve; skipped")
            }
        }
    }
    out
}

/// Validated gossip config to mesh settings: the allowlist file is read and
/// the seeds are resolved (see [`resolve`]).
pub fn settings(g: &GossipConfig, keys: Keyring) -> anyhow::Result<MeshSettings> {
    let allowlist = g.allowlist.as_deref().map(load_allowlist).transpose()?;
    let seeds = resolve("gossip.seeds", &g.seeds);
    Ok(MeshSettings {
        listen_addr: g.listen_addr,
        advertise_addr: advertise_addr(g),
        seeds,
        keys,
        swim: swim_config(g),
        verifier: VerifierConfig {
            max_clock_skew_ms: millis(g.max_clock_skew),
            max_age_ms: millis(g.max_report_age),
            ttl_ms: millis(g.report_ttl),
            allowlist,
            ..VerifierConfig::default()
        },
        tiers: None,
    })
}

/// The protocol's timing from the config; its bounds are the protocol's own.
pub fn swim_config(g: &GossipConfig) -> SwimConfig {
    SwimConfig {
        probe_period_ms: millis(g.probe_interval),
        probe_rtt_ms: millis(g.probe_timeout),
        suspect_to_down_ms: millis(g.suspicion),
        gossip_every_ms: millis(g.interval),
        sync_every_ms: millis(g.sync_interval),
        forget_down_after_ms: millis(g.dead_grace),
        ..SwimConfig::default()
    }
}

/// Largest allowlist file read (about 7 000 keys).
const MAX_ALLOWLIST_BYTES: usize = 1 << 20;

/// Reads an allowlist file: a regular file (a FIFO or a device is refused,
/// not waited on) of at most 1 MiB.
pub fn load_allowlist(path: &std::path::Path) -> anyhow::Result<Allowlist> {
    let text = crate::fsutil::read_text(path, MAX_ALLOWLIST_BYTES, crate::fsutil::Links::Follow)
        .with_context(|| format!("cannot read allowlist {}", path.display()))?;
    let list = Allowlist::parse(&text).with_context(|| format!("allowlist {}", path.display()))?;
    tracing::info!(keys = list.len(), path = %path.display(), "allowlist loaded");
    Ok(list)
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The configured advertise address; else the listen address when it is
/// concrete; else the local address the kernel would use towards the first
/// seed (a connected UDP socket sends nothing); else loopback. Port 0 stands
/// for the port bound.
fn advertise_addr(g: &GossipConfig) -> SocketAddr {
    if let Some(a) = g.advertise_addr {
        return a;
    }
    let port = g.listen_addr.port();
    if !g.listen_addr.ip().is_unspecified() {
        return g.listen_addr;
    }
    let towards_seed = g.seeds.first().and_then(|seed| {
        let target = seed.to_socket_addrs().ok()?.next()?;
        let probe = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
        probe.connect(target).ok()?;
        probe.local_addr().ok()
    });
    match towards_seed {
        Some(local) => SocketAddr::new(local.ip(), port),
        None => SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertise_falls_back_sensibly() {
        let mut g = crate::mesh::config::RawGossip::default()
            .validate()
            .expect("defaults");
        assert_eq!(advertise_addr(&g), SocketAddr::from(([127, 0, 0, 1], 7946)));
        g.listen_addr = "127.0.0.9:7000".parse().expect("addr");
        assert_eq!(advertise_addr(&g), g.listen_addr);
        g.advertise_addr = Some("10.1.2.3:7946".parse().expect("addr"));
        assert_eq!(advertise_addr(&g), SocketAddr::from(([10, 1, 2, 3], 7946)));
    }
}
