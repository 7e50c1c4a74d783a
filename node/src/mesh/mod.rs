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
mod proto;
pub mod setup;
pub mod transport;

use ed25519_dalek::SigningKey;
use maxwell_core::Heat;
use maxwell_gossip::seal::Keyring;
use maxwell_gossip::summary::Offer;
use maxwell_gossip::swim::{Peer, Refusal, Swim, SwimConfig, SwimCounters, SwimEvent};
use maxwell_gossip::tier::{Tier, TierConfig, TierSetup, Tiered};
use maxwell_gossip::{
    HeatReport, KeyedNodeId, Leave, Liveness, Member, Membership, MembershipEvent, NodeId,
    PeerObservation, RejectCounters, SignedRecord, Verifier, VerifierConfig,
};
use maxwell_types::sync::lock;
use proto::{Proto, ProtoEvent};
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
    /// The tiered mesh; `None` runs one flat mesh.
    pub tiers: Option<TierSettings>,
}

/// The tiered mesh's settings (see [`maxwell_gossip::tier`]).
#[derive(Debug, Clone)]
pub struct TierSettings {
    /// Where the upper tier is spoken while this node carries its rack.
    pub upper_listen_addr: SocketAddr,
    /// What carriers are told; port 0 means the port bound.
    pub upper_advertise_addr: SocketAddr,
    /// Upper-tier addresses to join through (a seed always carries).
    pub upper_seeds: Vec<SocketAddr>,
    pub rack: String,
    /// The rack tier's keys (in place of [`MeshSettings::keys`]) and the upper tier's.
    pub rack_keys: Keyring,
    pub upper_keys: Keyring,
    /// Summary timing; the tiers' own timing is [`MeshSettings::swim`].
    pub config: TierConfig,
}

struct Shared {
    swim: Proto,
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
    /// The upper tier's socket, in a tiered mesh.
    upper_addr: Option<SocketAddr>,
    /// The HTTP API's address, told in every report.
    api: Option<SocketAddr>,
    /// The p2p endpoint's address, told in every report.
    p2p: Option<SocketAddr>,
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
        let node_id = NodeId::from_verifying_key(&key.verifying_key());
        let me = Peer {
            id: node_id,
            generation,
            addr: bound(settings.advertise_addr, local_addr),
        };
        let now = clock();
        let mut upper_addr = None;
        let (swim, upper) = match settings.tiers {
            None => {
                let swim = Swim::new(me, settings.keys, settings.swim, settings.seeds, seed, now);
                (Proto::Flat(Box::new(swim)), None)
            }
            Some(t) => {
                let upper = transport
                    .bind(t.upper_listen_addr)
                    .await
                    .map_err(|source| MeshError::Start {
                        addr: t.upper_listen_addr,
                        source,
                    })?;
                let upper_local = upper.local_addr().map_err(start)?;
                upper_addr = Some(upper_local);
                let setup = TierSetup {
                    me,
                    upper_addr: bound(t.upper_advertise_addr, upper_local),
                    rack_name: t.rack,
                    rack_keys: t.rack_keys,
                    upper_keys: t.upper_keys,
                    rack_seeds: settings.seeds,
                    upper_seeds: t.upper_seeds,
                    seed,
                };
                let config = TierConfig {
                    rack: settings.swim.clone(),
                    upper: maxwell_gossip::tier::upper_swim(settings.swim),
                    ..t.config
                };
                let tiered = Tiered::new(key.clone(), setup, config, now);
                (Proto::Tiered(Box::new(tiered)), Some(upper))
            }
        };
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
            upper,
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
            upper_addr,
            api: None,
            p2p: None,
            clock,
        })
    }

    /// Says hello to `addr` while no member is known (a seed found by mDNS).
    pub fn add_seed(&self, addr: SocketAddr) {
        maxwell_types::sync::lock(&self.shared).swim.add_seed(addr);
        self.wake.notify_one();
    }

    /// Our node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Tells peers, in every report from now on, where our HTTP API listens.
    pub fn advertise_api(&mut self, addr: SocketAddr) {
        self.api = Some(addr);
    }

    /// Tells peers, in every report from now on, where our p2p endpoint listens.
    pub fn advertise_p2p(&mut self, addr: SocketAddr) {
        self.p2p = Some(addr);
    }

    /// Where the gossip socket is bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the upper tier's socket is bound, in a tiered mesh.
    pub fn upper_addr(&self) -> Option<SocketAddr> {
        self.upper_addr
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
            room: heat.room,
            api: self.api,
            p2p: self.p2p,
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
            .own()
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

    /// Members the protocol holds up, verified or not (in a tiered mesh,
    /// of the rack).
    pub fn gossip_peers(&self) -> usize {
        lock(&self.shared).swim.own().num_members()
    }

    /// The cheapest offers this node knows of, cheapest first.
    pub fn world(&self) -> Vec<Offer> {
        lock(&self.shared).swim.world()
    }

    /// Whether this node carries its rack to the upper tier now.
    pub fn carrier(&self) -> bool {
        lock(&self.shared).swim.carrier()
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

/// The task that owns the sockets.
struct Driver {
    socket: Arc<dyn Socket>,
    /// The upper tier's, in a tiered mesh.
    upper: Option<Arc<dyn Socket>>,
    shared: Arc<Mutex<Shared>>,
    wake: Arc<Notify>,
    changed: Arc<Notify>,
    clock: Clock,
    stats: Arc<GossipStats>,
}

impl Driver {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut buf = vec![0u8; RECV_BUF];
        let mut upper_buf = vec![0u8; if self.upper.is_some() { RECV_BUF } else { 0 }];
        let mut upper_first = false;
        loop {
            let wait = self.flush().await;
            // Biased, so a seeded simulation replays exactly (tokio's random
            // branch order is not seeded); timers first, so a datagram flood
            // cannot starve them, and the two sockets in turns, so a flood
            // on one tier cannot starve the other.
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    self.flush().await;
                    return;
                }
                _ = tokio::time::sleep(wait) => {
                    let now = (self.clock)();
                    lock(&self.shared).swim.handle_timeout(now);
                }
                _ = self.wake.notified() => {}
                (tier, r) = self.recv(&mut buf, &mut upper_buf, upper_first) => {
                    upper_first = tier == Tier::Rack;
                    let got = if tier == Tier::Rack { &buf } else { &upper_buf };
                    self.take(tier, r, got).await;
                }
            }
        }
    }

    /// The next datagram on either socket, `upper_first` or not.
    async fn recv(
        &self,
        buf: &mut [u8],
        upper_buf: &mut [u8],
        upper_first: bool,
    ) -> (Tier, std::io::Result<(usize, SocketAddr)>) {
        let rack = self.socket.recv_from(buf);
        let upper = async {
            match &self.upper {
                Some(s) => s.recv_from(upper_buf).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(rack, upper);
        if upper_first {
            tokio::select! {
                biased;
                r = &mut upper => (Tier::Upper, r),
                r = &mut rack => (Tier::Rack, r),
            }
        } else {
            tokio::select! {
                biased;
                r = &mut rack => (Tier::Rack, r),
                r = &mut upper => (Tier::Upper, r),
            }
        }
    }

    /// One datagram received on `tier`'s socket (or its error).
    async fn take(&self, tier: Tier, got: std::io::Result<(usize, SocketAddr)>, buf: &[u8]) {
        match got {
            Ok((n, from)) => {
                self.stats.datagrams_in.fetch_add(1, Relaxed);
                self.stats.bytes_in.fetch_add(n as u64, Relaxed);
                let now = (self.clock)();
                lock(&self.shared)
                    .swim
                    .handle_datagram(now, tier, from, &buf[..n]);
            }
            Err(e) => {
                // Not a spin if the socket keeps failing.
                tracing::debug!(error = %e, "gossip receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
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
        for (tier, t) in out {
            let socket = match (tier, &self.upper) {
                (Tier::Upper, Some(upper)) => upper,
                _ => &self.socket,
            };
            match socket.send_to(&t.bytes, t.to).await {
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
                ProtoEvent::Own(SwimEvent::Records(_) | SwimEvent::Up(_) | SwimEvent::Down(_)) => {
                    changed = true
                }
                ProtoEvent::Upper(SwimEvent::Records(_)) => changed = true,
                ProtoEvent::Upper(SwimEvent::Up(_) | SwimEvent::Down(_)) => {}
                ProtoEvent::Own(SwimEvent::Rejoined(me))
                | ProtoEvent::Upper(SwimEvent::Rejoined(me)) => {
                    tracing::warn!(
                        generation = me.generation,
                        "the mesh had declared this node down (a partition or a pause); rejoined"
                    )
                }
                ProtoEvent::Own(SwimEvent::Refused {
                    reason,
                    count,
                    from,
                })
                | ProtoEvent::Upper(SwimEvent::Refused {
                    reason,
                    count,
                    from,
                }) => log_refusal(reason, count, from),
                ProtoEvent::Carrier(carrying) => tracing::info!(
                    carrying,
                    "this node {} its rack's summaries to the upper tier",
                    if carrying {
                        "now carries"
                    } else {
                        "no longer carries"
                    }
                ),
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

/// `addr`, with port 0 standing for the port bound.
fn bound(mut addr: SocketAddr, local: SocketAddr) -> SocketAddr {
    if addr.port() == 0 {
        addr.set_port(local.port());
    }
    addr
}

fn log_refusal(reason: Refusal, count: u64, from: SocketAddr) {
    tracing::warn!(
        reason = reason.label(),
        count,
        %from,
        "gossip datagrams refused (one line per reason every 10 s at most; all are counted in maxwell_gossip_refused_total)"
    );
}
