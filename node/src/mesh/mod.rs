//! The gossip mesh driver: chitchat over a [`Transport`], the signed record
//! published as chitchat state, and the pure [`Membership`] fed from
//! chitchat's node states.
//!
//! The driver owns no policy: what a value means and whether to believe it is
//! `maxwell_gossip`'s business. Time comes from a [`Clock`] (unix ms) so the
//! same code runs on the wall clock and under turmoil's simulated one.

pub mod config;
pub mod setup;
pub mod transport;

use chitchat::transport::Transport;
use chitchat::{spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig};
use ed25519_dalek::SigningKey;
use maxwell_core::Heat;
use maxwell_gossip::KeyedNodeId;
use maxwell_gossip::{
    HeatReport, Leave, Liveness, Member, Membership, MembershipEvent, NodeId, PeerObservation,
    RejectCounters, SignedRecord, Verifier, VerifierConfig, CHITCHAT_KEY,
};
use maxwell_types::sync::lock;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Unix time in milliseconds; simulated under turmoil.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Errors of the mesh driver.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The gossip socket could not be opened (port in use, bad address).
    #[error("cannot start gossip on {addr}")]
    Start {
        addr: SocketAddr,
        #[source]
        source: anyhow::Error,
    },
    /// Our own record could not be signed (a name or rack over 64 bytes).
    #[error("cannot sign our record: {0}")]
    Sign(#[from] maxwell_gossip::RecordError),
}

/// Validated gossip settings.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub listen_addr: SocketAddr,
    pub advertise_addr: SocketAddr,
    /// `host:port` of seed nodes.
    pub seeds: Vec<String>,
    pub cluster_id: String,
    pub interval: Duration,
    pub phi_threshold: f64,
    pub dead_grace: Duration,
    pub verifier: VerifierConfig,
}

/// A running mesh member.
pub struct Mesh {
    handle: ChitchatHandle,
    key: SigningKey,
    node_id: NodeId,
    name: String,
    generation: u64,
    seq: Mutex<u64>,
    membership: Mutex<Membership>,
    last_report: Mutex<Option<HeatReport>>,
    clock: Clock,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("node_id", &self.node_id)
            .field("generation", &self.generation)
            .finish()
    }
}

impl Mesh {
    /// Joins (or founds) the mesh as incarnation `generation`.
    pub async fn start(
        settings: MeshSettings,
        key: SigningKey,
        name: String,
        generation: u64,
        transport: &dyn Transport,
        clock: Clock,
    ) -> Result<Self, MeshError> {
        let node_id = NodeId::from_verifying_key(&key.verifying_key());
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(node_id.to_string(), generation, settings.advertise_addr),
            cluster_id: settings.cluster_id.clone(),
            gossip_interval: settings.interval,
            listen_addr: settings.listen_addr,
            seed_nodes: settings.seeds.clone(),
            failure_detector_config: FailureDetectorConfig {
                phi_threshold: settings.phi_threshold,
                initial_interval: settings.interval * 2,
                dead_node_grace_period: settings.dead_grace,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: settings.dead_grace,
            catchup_callback: None,
            extra_liveness_predicate: None,
            // V1 compresses digests (~6x less traffic); every maxwell speaks it.
            protocol_version: chitchat::ProtocolVersion::V1,
        };
        let handle = spawn_chitchat(config, Vec::new(), transport)
            .await
            .map_err(|source| MeshError::Start {
                addr: settings.listen_addr,
                source,
            })?;
        Ok(Self {
            handle,
            membership: Mutex::new(Membership::new(node_id, Verifier::new(settings.verifier))),
            key,
            node_id,
            name,
            generation,
            seq: Mutex::new(0),
            last_report: Mutex::new(None),
            clock,
        })
    }

    /// Our node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn next_seq(&self) -> u64 {
        let mut seq = lock(&self.seq);
        *seq += 1;
        *seq
    }

    /// Signs a new report from `heat` and makes it our chitchat state.
    pub async fn publish(&self, heat: &Heat) -> Result<HeatReport, MeshError> {
        let report = HeatReport {
            node_id: self.node_id,
            name: self.name.clone(),
            generation: self.generation,
            seq: self.next_seq(),
            timestamp_ms: (self.clock)(),
            position: heat.position.clone(),
            hottest: heat.hottest,
            critical: heat.critical,
            power_draw: heat.power_draw,
            power_cap: heat.power_cap,
            headroom: heat.headroom,
            price_milli: heat.price_milli,
            source: heat.source,
        };
        let value = SignedRecord::sign(&report, &self.key)?.encode();
        self.set_value(value).await;
        *lock(&self.last_report) = Some(report.clone());
        Ok(report)
    }

    async fn set_value(&self, value: String) {
        let chitchat = self.handle.chitchat();
        let mut guard = chitchat.lock().await;
        guard.self_node_state().set(CHITCHAT_KEY, value);
    }

    /// Replaces the allowlist (SIGHUP); it applies to records verified from now on.
    pub fn set_allowlist(&self, allowlist: Option<maxwell_gossip::Allowlist>) {
        lock(&self.membership)
            .verifier_mut()
            .set_allowlist(allowlist);
    }

    /// Our latest published report.
    pub fn last_report(&self) -> Option<HeatReport> {
        lock(&self.last_report).clone()
    }

    /// Reads chitchat's view of every peer into the membership table.
    pub async fn refresh(&self) -> Vec<MembershipEvent> {
        let peers = self.snapshot_peers().await;
        let observations = peers.iter().map(|p| PeerObservation {
            gossip_id: &p.id,
            generation: p.generation,
            addr: p.addr,
            liveness: p.liveness,
            record: p.record.as_deref(),
        });
        lock(&self.membership).observe(observations, (self.clock)())
    }

    /// Copies what the membership needs out of chitchat, so the chitchat lock
    /// is not held while signatures are checked.
    async fn snapshot_peers(&self) -> Vec<OwnedPeer> {
        let chitchat = self.handle.chitchat();
        let guard = chitchat.lock().await;
        let live: std::collections::HashSet<&ChitchatId> = guard.live_nodes().collect();
        guard
            .node_states()
            .iter()
            .filter(|(id, _)| *id != guard.self_chitchat_id())
            .map(|(id, state)| OwnedPeer {
                id: id.node_id.to_string(),
                generation: id.generation_id,
                addr: id.gossip_advertise_addr,
                liveness: if live.contains(id) {
                    Liveness::Alive
                } else {
                    Liveness::Dead
                },
                record: state.get(CHITCHAT_KEY).map(str::to_string),
            })
            .collect()
    }

    /// Every peer with a verified record, now.
    pub fn members(&self) -> Vec<Member> {
        lock(&self.membership).members((self.clock)())
    }

    /// Verification counters.
    pub fn counters(&self) -> RejectCounters {
        lock(&self.membership).verifier().counters()
    }

    /// Number of chitchat peers, verified or not.
    pub async fn gossip_peers(&self) -> usize {
        let chitchat = self.handle.chitchat();
        let guard = chitchat.lock().await;
        guard.node_states().len().saturating_sub(1)
    }

    /// Leaves gracefully: publishes a signed leave, keeps gossiping for
    /// `linger` so peers hear it, then stops.
    pub async fn leave(self, linger: Duration) -> Result<(), MeshError> {
        let leave = Leave {
            node_id: self.node_id,
            generation: self.generation,
            seq: self.next_seq(),
            timestamp_ms: (self.clock)(),
        };
        let value = SignedRecord::sign(&leave, &self.key)?.encode();
        self.set_value(value).await;
        tokio::time::sleep(linger).await;
        self.shutdown().await;
        Ok(())
    }

    /// Stops gossiping without a word (as a crash would look to peers).
    pub async fn shutdown(self) {
        if let Err(e) = self.handle.shutdown().await {
            tracing::debug!(error = %e, "chitchat stopped with an error");
        }
    }
}

struct OwnedPeer {
    id: String,
    generation: u64,
    addr: SocketAddr,
    liveness: Liveness,
    record: Option<String>,
}
