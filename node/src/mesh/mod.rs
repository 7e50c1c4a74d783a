//! The gossip mesh driver: [`maxwell_gossip::swim`] on a [`Transport`]
//! socket, and the pure [`Membership`] fed from what it holds.
//!
//! The driver owns no policy: what is sent, believed or declared down is
//! decided by `Swim` and `Membership`. One task owns the socket: it hands
//! each datagram and each due timer to `Swim` and sends what it asks;
//! [`Mesh::changed`] wakes the agent when records or members change, so it
//! re-prices on arrival. Time comes from a [`Clock`] (unix ms), so the same
//! code runs on the wall clock and under turmoil's simulated one.

pub mod config;
pub mod keys;
pub mod setup;
pub mod transport;

use ed25519_dalek::SigningKey;
use maxwell_core::Heat;
use maxwell_gossip::seal::Keyring;
use maxwell_gossip::swim::{Peer, Refusal, Swim, SwimConfig, SwimCounters, SwimEvent};
use maxwell_gossip::{
    HeatReport, KeyedNodeId, Leave, Liveness, Member, Membership, MembershipEvent, NodeId,
    PeerObservation, RejectCounters, SignedRecord, Verifier, VerifierConfig,
};
use maxwell_types::sync::lock;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use transport::{GossipStats, Socket, Transport};

/// Unix time in milliseconds; simulated under turmoil.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Largest datagram read; anything longer is cut and then refused.
const RECV_BUF: usize = 65_536;

/// Errors of the mesh driver.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The gossip socket could not be opened (port in use, bad address).
    #[error("cannot start gossip on {addr}")]
    Start {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Our own record could not be signed (a name or rack over 64 bytes).
    #[error("cannot sign our record: {0}")]
    Sign(#[from] maxwell_gossip::RecordError),
}

/// Validated gossip settings.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub listen_addr: SocketAddr,
    /// What members are told; port 0 means the port bound.
    pub advertise_addr: SocketAddr,
    /// Where to join.
    pub seeds: Vec<SocketAddr>,
    pub keys: Keyring,
    pub swim: SwimConfig,
    pub verifier: VerifierConfig,
}

struct Shared {
    swim: Swim,
    membership: Membership,
    last_report: Option<HeatReport>,
    seq: u64,
}

/// A running mesh member.
pub struct Mesh {
    shared: Arc<Mutex<Shared>>,
    /// Wakes the driver to send what `Swim` queued.
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    key: SigningKey,
    node_id: NodeId,
    name: String,
    generation: u64,
    local_addr: SocketAddr,
    clock: Clock,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("node_id", &self.node_id)
            .field("generation", &self.generation)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl Mesh {
    /// Binds the gossip socket and joins (or founds) the mesh as
    /// incarnation `generation`; `seed` drives every random choice.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        settings: MeshSettings,
        key: SigningKey,
        name: String,
        generation: u64,
        transport: &dyn Transport,
        clock: Clock,
        seed: u64,
        stats: Arc<GossipStats>,
    ) -> Result<Self, MeshError> {
        let start = |source| MeshError::Start {
            addr: settings.listen_addr,
            source,
        };
        let socket = transport.bind(settings.listen_addr).await.map_err(start)?;
        let local_addr = socket.local_addr().map_err(start)?;
        let mut advertise = settings.advertise_addr;
        if advertise.port() == 0 {
            advertise.set_port(local_addr.port());
        }
        let node_id = NodeId::from_verifying_key(&key.verifying_key());
        let me = Peer {
            id: node_id,
            generation,
            addr: advertise,
        };
        let now = clock();
        let swim = Swim::new(me, settings.keys, settings.swim, settings.seeds, seed, now);
        let shared = Arc::new(Mutex::new(Shared {
            swim,
            membership: Membership::new(node_id, Verifier::new(settings.verifier)),
            last_report: None,
            seq: 0,
        }));
        let wake = Arc::new(Notify::new());
        let changed = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let driver = Driver {
            socket,
            shared: Arc::clone(&shared),
            wake: Arc::clone(&wake),
            changed: Arc::clone(&changed),
            clock: Arc::clone(&clock),
            stats,
        };
        let task = tokio::spawn(driver.run(stopped));
        Ok(Self {
            shared,
            wake,
            changed,
            stop,
            task,
            key,
            node_id,
            name,
            generation,
            local_addr,
            clock,
        })
    }

    /// Our node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Where the gossip socket is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Resolves when records or members changed since the last call.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Signs a new report from `heat` and pushes it to every member.
    pub fn publish(&self, heat: &Heat) -> Result<HeatReport, MeshError> {
        let now = (self.clock)();
        let mut g = lock(&self.shared);
        g.seq += 1;
        let report = HeatReport {
            node_id: self.node_id,
            name: self.name.clone(),
            generation: self.generation,
            seq: g.seq,
            timestamp_ms: now,
            position: heat.position.clone(),
            hottest: heat.hottest,
            critical: heat.critical,
            power_draw: heat.power_draw,
            power_cap: heat.power_cap,
            headroom: heat.headroom,
            price_milli: heat.price_milli,
            source: heat.source,
        };
        let bytes = SignedRecord::sign(&report, &self.key)?.to_bytes();
        g.swim.publish(now, &bytes);
        g.last_report = Some(report.clone());
        drop(g);
        self.wake.notify_one();
        Ok(report)
    }

    /// Replaces the allowlist (SIGHUP); it applies to records verified from now on.
    pub fn set_allowlist(&self, allowlist: Option<maxwell_gossip::Allowlist>) {
        lock(&self.shared)
            .membership
            .verifier_mut()
            .set_allowlist(allowlist);
    }

    /// Our latest published report.
    pub fn last_report(&self) -> Option<HeatReport> {
        lock(&self.shared).last_report.clone()
    }

    /// Reads what the protocol holds of every member into the membership.
    pub fn refresh(&self) -> Vec<MembershipEvent> {
        let now = (self.clock)();
        let mut g = lock(&self.shared);
        let peers: Vec<(String, Peer, Liveness, Option<String>)> = g
            .swim
            .members()
            .into_iter()
            .map(|(peer, alive, record)| {
                let liveness = if alive {
                    Liveness::Alive
                } else {
                    Liveness::Dead
                };
                let text = record
                    .and_then(|r| SignedRecord::from_bytes(&r).ok())
                    .map(|r| r.encode());
                (peer.id.to_string(), peer, liveness, text)
            })
            .collect();
        let observations = peers
            .iter()
            .map(|(id, peer, liveness, record)| PeerObservation {
                gossip_id: id,
                generation: peer.generation,
                addr: peer.addr,
                liveness: *liveness,
                record: record.as_deref(),
            });
        g.membership.observe(observations, now)
    }

    /// Every member with a verified record, now.
    pub fn members(&self) -> Vec<Member> {
        lock(&self.shared).membership.members((self.clock)())
    }

    /// Verification counters.
    pub fn counters(&self) -> RejectCounters {
        lock(&self.shared).membership.verifier().counters()
    }

    /// Datagrams opened and refused, by reason.
    pub fn protocol_counters(&self) -> SwimCounters {
        lock(&self.shared).swim.counters()
    }

    /// Members the protocol holds up, verified or not.
    pub fn gossip_peers(&self) -> usize {
        lock(&self.shared).swim.num_members()
    }

    /// Leaves gracefully: pushes a signed leave to every member, gives the
    /// datagrams `linger` to go out, then stops.
    pub async fn leave(self, linger: Duration) -> Result<(), MeshError> {
        let now = (self.clock)();
        {
            let mut g = lock(&self.shared);
            g.seq += 1;
            let leave = Leave {
                node_id: self.node_id,
                generation: self.generation,
                seq: g.seq,
                timestamp_ms: now,
            };
            let bytes = SignedRecord::sign(&leave, &self.key)?.to_bytes();
            g.swim.leave(now, &bytes);
        }
        self.wake.notify_one();
        tokio::time::sleep(linger).await;
        self.shutdown().await;
        Ok(())
    }

    /// Stops gossiping without a word (as a crash would look to peers).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the gossip task failed");
        }
    }
}

/// The task that owns the socket.
struct Driver {
    socket: Arc<dyn Socket>,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    clock: Clock,
    stats: Arc<GossipStats>,
}

impl Driver {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let wait = self.flush().await;
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        self.stats.datagrams_in.fetch_add(1, Relaxed);
                        self.stats.bytes_in.fetch_add(n as u64, Relaxed);
                        let now = (self.clock)();
                        lock(&self.shared).swim.handle_datagram(now, from, &buf[..n]);
                    }
                    Err(e) => {
                        // Not a spin if the socket keeps failing.
                        tracing::debug!(error = %e, "gossip receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                _ = tokio::time::sleep(wait) => {
                    let now = (self.clock)();
                    lock(&self.shared).swim.handle_timeout(now);
                }
                _ = self.wake.notified() => {}
                _ = stop.changed() => {
                    self.flush().await;
                    return;
                }
            }
        }
    }

    /// Sends what the protocol queued and passes on its events; returns how
    /// long until its next timer.
    async fn flush(&self) -> Duration {
        let (out, events, due) = {
            let mut g = lock(&self.shared);
            let out: Vec<_> = std::iter::from_fn(|| g.swim.poll_transmit()).collect();
            let events: Vec<_> = std::iter::from_fn(|| g.swim.poll_event()).collect();
            (out, events, g.swim.poll_timeout())
        };
        for t in out {
            match self.socket.send_to(&t.bytes, t.to).await {
                Ok(n) => {
                    self.stats.datagrams_out.fetch_add(1, Relaxed);
                    self.stats.bytes_out.fetch_add(n as u64, Relaxed);
                }
                Err(e) => {
                    // A host being re-cabled is routine: count, drop, go on.
                    self.stats.send_errors.fetch_add(1, Relaxed);
                    tracing::debug!(to = %t.to, error = %e, "gossip send failed");
                }
            }
        }
        let mut changed = false;
        for e in events {
            match e {
                SwimEvent::Records | SwimEvent::Up(_) | SwimEvent::Down(_) => changed = true,
                SwimEvent::Rejoined(me) => tracing::warn!(
                    generation = me.generation,
                    "the mesh had declared this node down (a partition or a pause); rejoined"
                ),
                SwimEvent::Refused {
                    reason,
                    count,
                    from,
                } => log_refusal(reason, count, from),
            }
        }
        if changed {
            self.changed.notify_one();
        }
        let now = (self.clock)();
        due.map_or(Duration::from_secs(1), |at| {
            Duration::from_millis(at.saturating_sub(now))
        })
    }
}

fn log_refusal(reason: Refusal, count: u64, from: SocketAddr) {
    tracing::warn!(
        reason = reason.label(),
        count,
        %from,
        "gossip datagrams refused (one line per reason every 10 s at most; all are counted in maxwell_gossip_refused_total)"
    );
}
