//! Turning the agent's config into a running [`Mesh`]: the advertise
//! address and the allowlist file.

use super::transport::{CountingTransport, GossipStats};
use super::{Clock, Mesh, MeshSettings};
use crate::identity::Identity;
use crate::mesh::config::GossipConfig;
use anyhow::Context;
use maxwell_gossip::{Allowlist, VerifierConfig};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::Arc;

/// Starts gossip on real UDP for the agent; returns the mesh and the
/// address it listens on. Port 0 asks for any free port: one is taken from
/// the kernel and handed to chitchat (which binds it itself), again if
/// another process took it in between.
pub async fn start_agent_mesh(
    g: &GossipConfig,
    name: &str,
    identity: &Identity,
    stats: Arc<GossipStats>,
    generation: u64,
    clock: Clock,
) -> anyhow::Result<(Mesh, SocketAddr)> {
    let mut settings = settings(g)?;
    let any_port = g.listen_addr.port() == 0;
    let mut tries = 0;
    loop {
        if any_port {
            let port = UdpSocket::bind(g.listen_addr)
                .and_then(|s| s.local_addr())
                .with_context(|| format!("cannot bind gossip.listen_addr {}", g.listen_addr))?
                .port();
            settings.listen_addr.set_port(port);
            if g.advertise_addr.is_none() {
                settings.advertise_addr.set_port(port);
            }
        }
        tracing::info!(
            listen = %settings.listen_addr,
            advertise = %settings.advertise_addr,
            seeds = ?settings.seeds,
            generation,
            "gossip starting"
        );
        let transport =
            CountingTransport::new(chitchat::transport::UdpTransport, Arc::clone(&stats));
        let key = identity.signing_key().clone();
        let listen = settings.listen_addr;
        match Mesh::start(
            settings.clone(),
            key,
            name.to_string(),
            generation,
            &transport,
            Arc::clone(&clock),
        )
        .await
        {
            Ok(mesh) => return Ok((mesh, listen)),
            Err(e) if any_port && tries < 5 => {
                tries += 1;
                tracing::info!(error = %e, "the free gossip port was taken meanwhile; taking another");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Validated gossip config to mesh settings, reading the allowlist file.
pub fn settings(g: &GossipConfig) -> anyhow::Result<MeshSettings> {
    let allowlist = g.allowlist.as_deref().map(load_allowlist).transpose()?;
    Ok(MeshSettings {
        listen_addr: g.listen_addr,
        advertise_addr: advertise_addr(g),
        seeds: g.seeds.clone(),
        cluster_id: g.cluster_id.clone(),
        interval: g.interval,
        phi_threshold: g.phi_threshold,
        dead_grace: g.dead_grace,
        verifier: VerifierConfig {
            max_clock_skew_ms: millis(g.max_clock_skew),
            max_age_ms: millis(g.max_report_age),
            ttl_ms: millis(g.report_ttl),
            allowlist,
            ..VerifierConfig::default()
        },
    })
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
/// seed (a connected UDP socket sends nothing); else loopback.
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
