//! What the agent knows, shared between the sensor loop and the HTTP API.

use crate::guests::Guests;
use crate::http::Members;
use crate::identity::Identity;
use crate::mesh::transport::GossipStats;
use crate::sensors::{Problem, ProblemKind, Snapshot};
use maxwell_gossip::swim::SwimCounters;
use maxwell_gossip::NodeId;
use maxwell_gossip::RejectCounters;
use maxwell_types::sync::{lock, read, write};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// Who this node is; fixed for the life of the process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub id: NodeId,
    pub name: String,
    pub rack: String,
    pub slot: u16,
    /// Hex of the ed25519 public key.
    pub public_key: String,
    pub version: String,
}

impl NodeInfo {
    /// This node: its key's id and public key, its name and place.
    pub fn new(identity: &Identity, name: &str, rack: &str, slot: u16) -> Self {
        Self {
            id: identity.id(),
            name: name.to_string(),
            rack: rack.to_string(),
            slot,
            public_key: maxwell_types::hex::encode(identity.public_key().as_bytes()),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Counters that live as long as the process.
#[derive(Debug, Default)]
pub struct Counters {
    /// Failed reads of a sensor file, by [`ProblemKind`].
    pub sensor_read_errors: Family<Vec<(String, String)>, Counter>,
    /// Sensor periods completed.
    pub sensor_reads: Counter,
    /// API requests refused by [`crate::http::auth::gate`], by reason.
    pub api_refused: Family<Vec<(String, String)>, Counter>,
    /// API connections refused or evicted at `api.max_connections`.
    pub api_connections: crate::http::serve::Counters,
}

/// Shared agent state.
#[derive(Debug)]
pub struct AppState {
    pub node: NodeInfo,
    pub started: Instant,
    pub counters: Counters,
    /// Who may use the API.
    pub gate: crate::http::auth::Gate,
    snapshot: RwLock<Arc<Snapshot>>,
    /// When the sensor loop last completed a read, and its period.
    last_read: Mutex<Instant>,
    sensor_interval: std::time::Duration,
    /// Problems of the previous read, to log only changes.
    known_problems: Mutex<BTreeSet<(String, ProblemKind)>>,
    /// Gossip traffic.
    pub gossip_stats: Arc<GossipStats>,
    /// The latest membership view.
    members: RwLock<Members>,
    /// Verification counters at the latest refresh.
    verify_counters: RwLock<RejectCounters>,
    /// Datagrams opened and refused, at the latest refresh.
    protocol_counters: RwLock<SwimCounters>,
    /// This host's guests (the vmm backend, or why there is none).
    pub guests: Arc<Guests>,
    /// The latest price quote.
    quote: RwLock<Option<maxwell_pricing::Quote>>,
    /// What the guests admitted and not killed take, as the core counts.
    admitted: RwLock<maxwell_core::GuestLoad>,
    /// Parameters of the emulated host (None when sensors are real), and a
    /// change asked for through the API, applied at the next sensor period.
    emulated: RwLock<Option<crate::sensors::config::EmulatedParams>>,
    emulated_change: Mutex<Option<crate::sensors::config::EmulatedParams>>,
    /// The market as of its last tick or call (None: no market here).
    market: RwLock<Option<crate::market::MarketView>>,
    /// The dashboard's history and events.
    board: Mutex<crate::board::Board>,
    /// The p2p endpoint, once it listens; submissions are offered through it.
    pub p2p: std::sync::OnceLock<crate::p2p::P2p>,
}

impl AppState {
    pub fn new(
        node: NodeInfo,
        sensor_interval: std::time::Duration,
        first: Snapshot,
        guests: Arc<Guests>,
        gate: crate::http::auth::Gate,
    ) -> Self {
        let points = gate.config.ui_history.as_millis() / u128::from(crate::board::SAMPLE_EVERY_MS);
        let state = Self {
            board: Mutex::new(crate::board::Board::new(
                points as usize,
                crate::clock::unix_ms(),
            )),
            node,
            started: Instant::now(),
            counters: Counters::default(),
            gate,
            snapshot: RwLock::new(Arc::new(first.clone())),
            last_read: Mutex::new(Instant::now()),
            sensor_interval,
            known_problems: Mutex::new(BTreeSet::new()),
            gossip_stats: Arc::new(GossipStats::default()),
            members: RwLock::new(Members {
                members: Vec::new(),
                unverified_peers: 0,
            }),
            verify_counters: RwLock::new(RejectCounters::default()),
            protocol_counters: RwLock::default(),
            quote: RwLock::new(None),
            admitted: RwLock::default(),
            emulated: RwLock::new(None),
            emulated_change: Mutex::new(None),
            market: RwLock::new(None),
            guests,
            p2p: std::sync::OnceLock::new(),
        };
        state.note_problems(&first.problems);
        state
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&read(&self.snapshot))
    }

    /// Publishes a new snapshot: counts its problems, logs the ones that
    /// appeared or cleared since the last read.
    pub fn publish(&self, snapshot: Snapshot) {
        self.counters.sensor_reads.inc();
        *lock(&self.last_read) = Instant::now();
        self.note_problems(&snapshot.problems);
        *write(&self.snapshot) = Arc::new(snapshot);
    }

    /// Time since the sensor loop last completed a read.
    pub fn sensor_age(&self) -> std::time::Duration {
        lock(&self.last_read).elapsed()
    }

    /// Past this age the sensor loop counts as stuck ([`crate::sensors::reader::stuck_after`]).
    pub fn sensor_stuck_after(&self) -> std::time::Duration {
        crate::sensors::reader::stuck_after(self.sensor_interval)
    }

    /// The latest membership view.
    pub fn members(&self) -> Members {
        read(&self.members).clone()
    }

    /// Verification counters at the latest refresh.
    pub fn verify_counters(&self) -> RejectCounters {
        *read(&self.verify_counters)
    }

    /// The market's latest view.
    pub fn market(&self) -> Option<crate::market::MarketView> {
        read(&self.market).clone()
    }

    pub fn set_market(&self, view: crate::market::MarketView) {
        *write(&self.market) = Some(view);
    }

    /// The latest price quote, with the terms that made it.
    pub fn quote(&self) -> Option<maxwell_pricing::Quote> {
        read(&self.quote).clone()
    }

    /// Records a new quote.
    pub fn set_quote(&self, quote: maxwell_pricing::Quote) {
        *write(&self.quote) = Some(quote);
    }

    /// What the admitted guests take, as the core counts it.
    pub fn admitted(&self) -> maxwell_core::GuestLoad {
        *read(&self.admitted)
    }

    pub fn set_admitted(&self, load: maxwell_core::GuestLoad) {
        *write(&self.admitted) = load;
    }

    /// The emulated host's parameters, when sensors are emulated.
    pub fn emulated(&self) -> Option<crate::sensors::config::EmulatedParams> {
        *read(&self.emulated)
    }

    /// Sets the parameters in force (the agent calls this when it applies them).
    pub fn set_emulated(&self, params: Option<crate::sensors::config::EmulatedParams>) {
        *write(&self.emulated) = params;
    }

    /// Asks for new emulated parameters from the next sensor period on.
    pub fn request_emulated(&self, params: crate::sensors::config::EmulatedParams) {
        *lock(&self.emulated_change) = Some(params);
    }

    /// Takes the pending change, if any.
    pub fn take_emulated_change(&self) -> Option<crate::sensors::config::EmulatedParams> {
        lock(&self.emulated_change).take()
    }

    /// Replaces the membership view.
    pub fn set_members(&self, members: Members, counters: RejectCounters, protocol: SwimCounters) {
        lock(&self.board).sample(crate::clock::unix_ms(), &members);
        *write(&self.members) = members;
        *write(&self.verify_counters) = counters;
        *write(&self.protocol_counters) = protocol;
    }

    /// Records an event on `node` for the dashboard; its name is the
    /// member's as this agent knows it.
    pub fn note(&self, node: maxwell_gossip::NodeId, kind: &'static str, detail: String) {
        let name = if node == self.node.id {
            self.node.name.clone()
        } else {
            read(&self.members)
                .members
                .iter()
                .find(|m| m.id == node)
                .map_or_else(|| node.to_string(), |m| m.name.clone())
        };
        lock(&self.board).event(crate::clock::unix_ms(), node, &name, kind, detail);
    }

    /// The dashboard's rings.
    pub fn board(&self) -> std::sync::MutexGuard<'_, crate::board::Board> {
        lock(&self.board)
    }

    /// Datagrams opened and refused, at the latest refresh.
    pub fn protocol_counters(&self) -> SwimCounters {
        read(&self.protocol_counters).clone()
    }

    fn note_problems(&self, problems: &[Problem]) {
        for p in problems {
            self.counters
                .sensor_read_errors
                .get_or_create(&vec![("kind".into(), p.kind.as_str().into())])
                .inc();
        }
        let now: BTreeSet<_> = problems.iter().map(|p| (p.path.clone(), p.kind)).collect();
        let mut known = lock(&self.known_problems);
        for p in problems
            .iter()
            .filter(|p| !known.contains(&(p.path.clone(), p.kind)))
        {
            tracing::warn!(path = %p.path, kind = p.kind.as_str(), detail = %p.detail, "sensor skipped");
        }
        for (path, kind) in known.difference(&now) {
            tracing::info!(path = %path, kind = kind.as_str(), "sensor readable again");
        }
        *known = now;
    }
}
