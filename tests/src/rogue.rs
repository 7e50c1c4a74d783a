//! A rogue host: it joins the gossip under the victim's node id (chitchat
//! does not authenticate peers) and publishes, in turn, a report signed with
//! its own key (key mismatch), a report carrying the victim's public key
//! with a signature it cannot make (bad signature), and the victim's own
//! earlier report captured off the wire (replay). Every honest node must
//! refuse and count each, and keep believing the victim's real reports.

use crate::transport::{Mailbox, TurmoilTransport};
use crate::world::{id_of, key_of, sim_clock, Seeds, GOSSIP_PORT};
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatId, FailureDetectorConfig};
use ed25519_dalek::SigningKey;
use maxwell_gossip::KeyedNodeId;
use maxwell_gossip::Position;
use maxwell_gossip::{
    HeatReport, MicroWatts, MilliCelsius, SensorSource, SignedRecord, CHITCHAT_KEY,
};
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
        node_id: maxwell_gossip::NodeId::from_verifying_key(&rogue.verifying_key()),
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
    }
}

/// The rogue's software.
pub async fn rogue_main(
    k: usize,
    victim: usize,
    mailbox: Mailbox,
    interval: Duration,
    seeds: Seeds,
) -> turmoil::Result {
    let clock = sim_clock();
    let me = turmoil::lookup(host_name(k));
    let victim_id = id_of(victim).to_string();
    let seeds = maxwell_types::sync::lock(&seeds)
        .iter()
        .map(|ip| SocketAddr::new(*ip, GOSSIP_PORT).to_string())
        .collect();
    let config = ChitchatConfig {
        chitchat_id: ChitchatId::new(
            victim_id.clone(),
            clock() + 1,
            SocketAddr::new(me, GOSSIP_PORT),
        ),
        cluster_id: "sim".into(),
        gossip_interval: interval,
        listen_addr: SocketAddr::from(([0, 0, 0, 0], GOSSIP_PORT)),
        seed_nodes: seeds,
        failure_detector_config: FailureDetectorConfig::default(),
        marked_for_deletion_grace_period: Duration::from_secs(120),
        catchup_callback: None,
        extra_liveness_predicate: None,
        protocol_version: chitchat::ProtocolVersion::V1,
    };
    let handle = spawn_chitchat(config, Vec::new(), &TurmoilTransport::new(mailbox)).await?;
    let rogue_key = SigningKey::from_bytes(&[0xee; 32]);
    let victim_public = key_of(victim).verifying_key();
    let mut captured: Option<String> = None;
    let mut round = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        round += 1;
        let chitchat = handle.chitchat();
        let mut guard = chitchat.lock().await;
        // Capture the victim's real value once, to replay it later.
        if captured.is_none() {
            let me = guard.self_chitchat_id().clone();
            captured = guard
                .node_states()
                .iter()
                .find(|(id, _)| *id.node_id == *victim_id && **id != me)
                .and_then(|(_, s)| s.get(CHITCHAT_KEY).map(str::to_string));
        }
        let now = clock();
        let value = match round % 3 {
            // A valid record of the rogue's, gossiped under the victim's id.
            0 => SignedRecord::sign(&cool_report(&rogue_key, victim, now, round), &rogue_key)
                .map(|s| s.encode())
                .ok(),
            // The victim's public key spliced in front of the rogue's signature.
            1 => SignedRecord::sign(&cool_report(&rogue_key, victim, now, round), &rogue_key)
                .ok()
                .map(|s| splice_key(&s, victim_public.as_bytes())),
            // The victim's own old value, replayed.
            _ => captured.clone(),
        };
        if let Some(v) = value {
            guard.self_node_state().set(CHITCHAT_KEY, v);
        }
    }
}

/// Re-encodes `signed` with `key` in place of the signer's key.
fn splice_key(signed: &SignedRecord, key: &[u8; 32]) -> String {
    let mut bytes = signed.to_bytes();
    // Envelope layout: kind (1) | public key (32) | signature (64) | body.
    bytes[1..33].copy_from_slice(key);
    match SignedRecord::from_bytes(&bytes) {
        Ok(forged) => forged.encode(),
        Err(_) => signed.encode(),
    }
}
