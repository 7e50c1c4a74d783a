//! Hostile hosts.
//!
//! - The **insider** holds the cluster key (a compromised member): it joins
//!   the mesh under its own key and sends every member, in turn, a report
//!   carrying the victim's public key with a signature it cannot make, the
//!   victim's own earliest record captured off the mesh (a replay), and a
//!   foca message that names the victim as its sender. Every honest node
//!   must refuse and count each, and keep believing the victim's real heat.
//! - The **outsider** knows only the addresses and the cluster's name: it
//!   floods the gossip port with "the victim is down" and phantom members,
//!   sealed under keys it guessed, unsealed, and as garbage. Nothing it sends
//!   may change a view or draw a single byte in reply.

use crate::harness::swim_config;
use crate::transport::{TurmoilTransport, Wire};
use crate::world::{
    cluster_keys, id_of, key_of, sim_clock, Seeds, CLUSTER_ID, CLUSTER_SECRET, GOSSIP_PORT,
};
use ed25519_dalek::SigningKey;
use maxwell_gossip::seal::{ClusterKey, Keyring, Sealer};
use maxwell_gossip::swim::{Peer, Swim};
use maxwell_gossip::KeyedNodeId;
use maxwell_gossip::{
    HeatReport, MicroWatts, MilliCelsius, NodeId, Position, SensorSource, SignedRecord,
};
use maxwell_node::mesh::transport::Transport;
use std::net::SocketAddr;
use std::time::Duration;

/// The temperature the rogue claims for its victim: suspiciously cool.
pub const FORGED_CELSIUS: f64 = 5.0;

/// Host name of rogue `k`.
pub fn host_name(k: usize) -> String {
    format!("rogue{k}")
}

/// A cool report in the rogue's own name: the wire layer signs only a
/// record of the signing key's own node, so forgeries are built from one.
fn cool_report(rogue: &SigningKey, victim: usize, now_ms: u64, seq: u64) -> HeatReport {
    HeatReport {
        node_id: NodeId::from_verifying_key(&rogue.verifying_key()),
        name: format!("n{victim}"),
        generation: now_ms,
        seq,
        timestamp_ms: now_ms,
        position: Position::new("r1", 1),
        hottest: MilliCelsius::from_celsius(FORGED_CELSIUS),
        critical: MilliCelsius::from_celsius(95.0),
        power_draw: MicroWatts::from_watts(100.0),
        power_cap: MicroWatts::from_watts(400.0),
        headroom: MicroWatts::from_watts(300.0),
        price_milli: 0,
        source: SensorSource::Sysfs,
        room: Default::default(),
        api: None,
        p2p: None,
    }
}

/// Records as a frame the mesh relays: tag 1, then `u16` length and bytes.
fn records_frame(records: &[&[u8]]) -> Vec<u8> {
    let mut f = vec![1u8];
    for r in records {
        f.extend_from_slice(&(r.len() as u16).to_be_bytes());
        f.extend_from_slice(r);
    }
    f
}

/// A foca ping that names `src` as its sender, as a frame (tag 0).
fn foca_frame(src: &Peer, dst: &Peer) -> Vec<u8> {
    let header = foca::Header {
        src: src.clone(),
        src_incarnation: 0,
        dst: dst.clone(),
        message: foca::Message::<Peer>::Ping(7),
    };
    let mut f = vec![0u8];
    f.extend(postcard::to_allocvec(&header).unwrap_or_default());
    f.extend_from_slice(&0u16.to_be_bytes());
    f
}

/// The insider's software: a real member, plus forgeries.
pub async fn rogue_main(
    k: usize,
    victim: usize,
    wire: Wire,
    interval: Duration,
    seeds: Seeds,
) -> turmoil::Result {
    let clock = sim_clock();
    let me = turmoil::lookup(host_name(k));
    let socket = TurmoilTransport::new(wire)
        .bind(SocketAddr::from(([0, 0, 0, 0], GOSSIP_PORT)))
        .await?;
    let rogue_key = SigningKey::from_bytes(&[0xee; 32]);
    let rogue = Peer {
        id: NodeId::from_verifying_key(&rogue_key.verifying_key()),
        generation: clock(),
        addr: SocketAddr::new(me, GOSSIP_PORT),
    };
    let seeds: Vec<SocketAddr> = maxwell_types::sync::lock(&seeds)
        .iter()
        .map(|ip| SocketAddr::new(*ip, GOSSIP_PORT))
        .collect();
    let mut swim = Swim::new(
        rogue.clone(),
        cluster_keys(),
        swim_config(interval),
        seeds,
        99,
        clock(),
    );
    let own = SignedRecord::sign(&cool_report(&rogue_key, victim, clock(), 1), &rogue_key)?;
    swim.publish(clock(), &own.to_bytes());
    // Forgeries are sealed under a second id: one counter per sender.
    let mut forger = Sealer::new(cluster_keys(), NodeId([0xef; 10]), clock());
    let victim_id = id_of(victim);
    let victim_public = key_of(victim).verifying_key();
    let mut captured: Option<Vec<u8>> = None;
    let mut buf = vec![0u8; 65_536];
    let mut round = 0u64;
    let mut next_forgery = clock() + 400;
    loop {
        while let Some(t) = swim.poll_transmit() {
            let _ = socket.send_to(&t.bytes, t.to).await;
        }
        while swim.poll_event().is_some() {}
        let now = clock();
        let wait = swim.poll_timeout().unwrap_or(now + 100).min(next_forgery);
        tokio::select! {
            biased;
            r = socket.recv_from(&mut buf) => {
                let (n, from) = r?;
                swim.handle_datagram(clock(), from, &buf[..n]);
            }
            () = tokio::time::sleep(Duration::from_millis(wait.saturating_sub(now))) => {}
        }
        let now = clock();
        swim.handle_timeout(now);
        if now < next_forgery {
            continue;
        }
        next_forgery = now + 400;
        round += 1;
        let members = swim.members();
        if captured.is_none() {
            captured = members
                .iter()
                .find(|(p, _, _)| p.id == victim_id)
                .and_then(|(_, _, r)| r.clone());
        }
        let frame = match round % 3 {
            // The victim's public key spliced in front of the rogue's signature.
            0 => {
                let signed =
                    SignedRecord::sign(&cool_report(&rogue_key, victim, now, round), &rogue_key)?;
                let mut bytes = signed.to_bytes();
                // Envelope layout: kind (1) | public key (32) | signature (64) | body.
                bytes[1..33].copy_from_slice(victim_public.as_bytes());
                records_frame(&[&bytes])
            }
            // The victim's own earliest record, replayed.
            1 => match &captured {
                Some(old) => records_frame(&[old]),
                None => continue,
            },
            // A ping in the victim's name.
            _ => match members.iter().find(|(p, _, _)| p.id == victim_id) {
                Some((victim_peer, _, _)) => {
                    let target = members.iter().find(|(p, _, _)| p.id != victim_id);
                    match target {
                        Some((dst, _, _)) => foca_frame(victim_peer, dst),
                        None => continue,
                    }
                }
                None => continue,
            },
        };
        let mut datagram = Vec::new();
        forger.seal(now, &frame, &mut datagram);
        for (peer, _, _) in members.iter().filter(|(p, _, _)| p.id != victim_id) {
            let _ = socket.send_to(&datagram, peer.addr).await;
        }
    }
}

/// The outsider's software: floods every seed without the cluster key, and
/// fails the simulation if a single byte comes back.
pub async fn outsider_main(victim: usize, seeds: Seeds) -> turmoil::Result {
    let clock = sim_clock();
    let socket =
        turmoil::net::UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], GOSSIP_PORT))).await?;
    let targets: Vec<SocketAddr> = maxwell_types::sync::lock(&seeds)
        .iter()
        .map(|ip| SocketAddr::new(*ip, GOSSIP_PORT))
        .collect();
    let victim_peer = Peer {
        id: id_of(victim),
        generation: 0,
        addr: SocketAddr::new(turmoil::lookup(format!("n{victim}")), GOSSIP_PORT),
    };
    // Guessed keys: another secret under the cluster's name and id byte
    // (a MAC that fails), and one under an id the cluster does not use.
    let real_id = cluster_keys_id();
    let mut same_id = Sealer::new(
        Keyring::new(ClusterKey::new(real_id, [1; 32]), Vec::new()),
        id_of(victim),
        clock(),
    );
    let mut other_id = Sealer::new(
        Keyring::new(
            ClusterKey::new(real_id.wrapping_add(1), [2; 32]),
            Vec::new(),
        ),
        id_of(victim),
        clock(),
    );
    let mut buf = [0u8; 2048];
    for round in 0u64.. {
        let phantom = Peer {
            id: NodeId([(round % 251) as u8; 10]),
            generation: round,
            addr: SocketAddr::from(([10, 66, (round >> 8) as u8, round as u8], GOSSIP_PORT)),
        };
        let claim = foca_frame(&phantom, &victim_peer);
        let mut a = Vec::new();
        same_id.seal(clock(), &claim, &mut a);
        let mut b = Vec::new();
        other_id.seal(clock(), &claim, &mut b);
        for to in &targets {
            for datagram in [&a, &b, &claim, &b"\x00\x00garbage".to_vec()] {
                socket.send_to(datagram, *to).await?;
            }
        }
        if let Ok(Ok((n, from))) =
            tokio::time::timeout(Duration::from_millis(50), socket.recv_from(&mut buf)).await
        {
            return Err(
                format!("{from} answered an unauthenticated datagram with {n} bytes").into(),
            );
        }
    }
    Ok(())
}

/// The id byte the cluster's key is named by.
fn cluster_keys_id() -> u8 {
    ClusterKey::derive(&CLUSTER_SECRET, CLUSTER_ID).id()
}
