//! The task that owns the libp2p swarm: it dials, sends and answers
//! offers, and keeps the gate's member set.

use super::gate::{node_of, Gate};
use super::{Answer, Cmd, OfferError, P2p, P2pCounters, Request};
use crate::guests::Guests;
use crate::identity::Identity;
use anyhow::Context;
use libp2p::futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self as rr, json, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use maxwell_types::NodeId;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The offer protocol's name and version.
const PROTOCOL: &str = "/maxwell/offer/1";
/// An offer carries one spec; an answer one line.
pub const MAX_MESSAGE: usize = 64 * 1024;
/// A move carries a guest's snapshot too (a few MiB of memory at most).
pub const MAX_MOVE: usize = 16 * 1024 * 1024;
/// Requests carried out at once (starts, releases); more are refused as busy.
const MAX_IN_FLIGHT: usize = 32;
/// Guests held here for one submitter at once.
const MAX_HELD_PER_ORIGIN: usize = 16;
/// Peers found by mDNS and asked where they gossip, in one run; past it,
/// new ones are not asked (a seed or a member finds them instead).
const MAX_ASKED: usize = 4096;

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: libp2p::connection_limits::Behaviour,
    gate: Gate,
    offers: json::Behaviour<Request, Answer>,
    /// Seed discovery on the network segment (`p2p.mdns`, off by default).
    mdns: libp2p::swarm::behaviour::toggle::Toggle<libp2p::mdns::tokio::Behaviour>,
}

type Reply = oneshot::Sender<Result<Answer, OfferError>>;

mod inbound;
use inbound::{Delivery, Held};

/// Binds the endpoint at `config.listen_addr` with the host key and starts
/// its task; offers received start guests on `guests`. With `p2p.mdns`,
/// the gossip addresses of peers found on the network segment come out of
/// the receiver (this node tells its own, `gossip_addr`, to those that ask).
pub async fn start(
    config: &super::config::P2pConfig,
    identity: &Identity,
    guests: Arc<Guests>,
    gossip_addr: SocketAddr,
) -> anyhow::Result<(P2p, mpsc::UnboundedReceiver<SocketAddr>)> {
    let mut secret = identity.signing_key().to_bytes();
    let key = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
        .context("the host key as a libp2p key")?;
    let counters = Arc::new(P2pCounters::default());
    let gate = Gate::new(Arc::clone(&counters.denied));
    let timeout = config.offer_timeout;
    let codec = json::codec::Codec::default()
        .set_request_size_maximum(MAX_MOVE as u64)
        .set_response_size_maximum(MAX_MESSAGE as u64);
    let offers = json::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
        rr::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(16),
    );
    // Handshakes and connections are bounded before anyone is known.
    let limits = libp2p::connection_limits::Behaviour::new(
        libp2p::connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(64))
            .with_max_established_incoming(Some(512))
            .with_max_established_per_peer(Some(4)),
    );
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .context("the p2p transport")?
        .with_behaviour(|key| {
            let mdns = match config.mdns {
                true => Some(libp2p::mdns::tokio::Behaviour::new(
                    libp2p::mdns::Config::default(),
                    key.public().to_peer_id(),
                )?),
                false => None,
            };
            Ok(Behaviour {
                limits,
                gate,
                offers,
                mdns: mdns.into(),
            })
        })
        .context("the p2p behaviour")?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let listen = config.listen_addr;
    swarm
        .listen_on(multiaddr(listen))
        .with_context(|| format!("p2p.listen_addr {listen}"))?;
    // The first listen address names the bound port.
    let port = loop {
        match swarm.select_next_some().await {
            SwarmEvent::NewListenAddr { address, .. } => match tcp_port(&address) {
                Some(p) => break p,
                None => continue,
            },
            SwarmEvent::ListenerError { error, .. }
            | SwarmEvent::ListenerClosed {
                reason: Err(error), ..
            } => {
                return Err(anyhow::anyhow!("p2p.listen_addr {listen}: {error}"));
            }
            _ => {}
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let (expire_tx, expire_rx) = mpsc::unbounded_channel();
    let (seed_tx, seed_rx) = mpsc::unbounded_channel();
    let p2p = P2p {
        tx,
        listen_addr: SocketAddr::new(listen.ip(), port),
        counters: Arc::clone(&counters),
        offer_timeout: timeout,
        moving: Arc::default(),
    };
    let task = Task {
        swarm,
        counters,
        guests,
        names: BTreeMap::new(),
        connected: HashMap::new(),
        dialing: HashMap::new(),
        waiting: HashMap::new(),
        done_tx,
        delivering: HashMap::new(),
        held: HashMap::new(),
        gossip_addr,
        hellos: HashMap::new(),
        asked: std::collections::HashSet::new(),
        seed_tx,
        committing: HashMap::new(),
        committed: std::collections::VecDeque::new(),
        hold: timeout,
        expire_tx,
        in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
    };
    tokio::spawn(task.run(rx, done_rx, expire_rx));
    Ok((p2p, seed_rx))
}

fn multiaddr(addr: SocketAddr) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::from(addr.ip()))
        .with(Protocol::Tcp(addr.port()))
}

fn tcp_port(addr: &Multiaddr) -> Option<u16> {
    addr.iter().find_map(|p| match p {
        Protocol::Tcp(port) => Some(port),
        _ => None,
    })
}

struct Task {
    swarm: Swarm<Behaviour>,
    counters: Arc<P2pCounters>,
    guests: Arc<Guests>,
    /// The counting members' names (the gate holds their ids).
    names: BTreeMap<NodeId, String>,
    /// Open connections by node: the peer and how many connections.
    connected: HashMap<NodeId, (PeerId, usize)>,
    /// Dials under way, for a request each.
    dialing: HashMap<ConnectionId, (NodeId, SocketAddr, Request, Reply)>,
    /// Offers sent, waiting for their answer.
    waiting: HashMap<OutboundRequestId, Reply>,
    /// Offers taken here come back from their start on this.
    done_tx: mpsc::UnboundedSender<Delivery>,
    /// `Started` answers handed to the swarm, with the guest to kill if
    /// they fail.
    delivering: HashMap<rr::InboundRequestId, u64>,
    /// Held guests, by id, with the submitter that may confirm them.
    held: HashMap<u64, Held>,
    /// Where this node gossips, for a peer that says hello.
    gossip_addr: SocketAddr,
    /// Hellos sent to peers found by mDNS, with the address found.
    hellos: HashMap<OutboundRequestId, Multiaddr>,
    /// Peers already asked, this run.
    asked: std::collections::HashSet<PeerId>,
    /// Their gossip addresses, to the agent (as seeds).
    seed_tx: mpsc::UnboundedSender<SocketAddr>,
    /// Moved guests whose commit is being carried out.
    committing: HashMap<u64, inbound::MoveKey>,
    /// Moves committed here (source, guest here), newest last; bounded.
    committed: std::collections::VecDeque<(NodeId, u64)>,
    /// How long a guest is held for its confirmation.
    hold: Duration,
    /// Back to this task, when a hold ends.
    expire_tx: mpsc::UnboundedSender<u64>,
    /// Requests being carried out.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Task {
    async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        mut done: mpsc::UnboundedReceiver<Delivery>,
        mut expired: mpsc::UnboundedReceiver<u64>,
    ) {
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    // The agent has stopped.
                    None => return,
                },
                Some(d) = done.recv() => self.deliver(d),
                Some(guest) = expired.recv() => {
                    if self.held.remove(&guest).is_some() {
                        P2pCounters::bump(&self.counters.expired);
                        self.kill(guest, "its submitter did not confirm it in time");
                    }
                }
                event = self.swarm.select_next_some() => self.event(event),
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Members(names) => {
                self.swarm
                    .behaviour_mut()
                    .gate
                    .set_members(names.keys().copied().collect());
                self.names = names;
            }
            Cmd::Send {
                node,
                endpoint,
                request,
                reply,
            } => match self.connected.get(&node) {
                // A connection closing under the request is dialled again,
                // at the gossiped address, for this peer's key only.
                Some((peer, _)) => {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .offers
                        .send_request_with_addresses(peer, request, vec![multiaddr(endpoint)]);
                    self.waiting.insert(id, reply);
                }
                None => {
                    let opts = DialOpts::unknown_peer_id()
                        .address(multiaddr(endpoint))
                        .build();
                    let id = opts.connection_id();
                    match self.swarm.dial(opts) {
                        Ok(()) => {
                            self.dialing.insert(id, (node, endpoint, request, reply));
                        }
                        Err(e) => {
                            let _ =
                                reply.send(Err(OfferError::Unreachable(endpoint, e.to_string())));
                        }
                    }
                }
            },
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                ..
            } => {
                let dialed = self.dialing.remove(&connection_id);
                let Some(node) = node_of(&peer_id) else {
                    // The gate admits only ed25519 peers; this is unreachable.
                    return;
                };
                self.connected.entry(node).or_insert((peer_id, 0)).1 += 1;
                let Some((want, endpoint, request, reply)) = dialed else {
                    return;
                };
                if want != node {
                    P2pCounters::bump(&self.counters.impostors);
                    tracing::warn!(%endpoint, expected = %want, found = %node, "p2p: the peer at a member's address holds another key");
                    self.swarm.close_connection(connection_id);
                    let _ = reply.send(Err(OfferError::Impostor {
                        addr: endpoint,
                        expected: want,
                        found: node,
                    }));
                } else if !reply.is_closed() {
                    // A submitter that gave up during the dial sends nothing.
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .offers
                        .send_request(&peer_id, request);
                    self.waiting.insert(id, reply);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                ..
            } => {
                if let (Some(node), 0) = (node_of(&peer_id), num_established) {
                    self.connected.remove(&node);
                }
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                error,
                ..
            } => {
                if let Some((_, endpoint, _, reply)) = self.dialing.remove(&connection_id) {
                    let _ = reply.send(Err(OfferError::Unreachable(endpoint, error.to_string())));
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Offers(e)) => self.offers(e),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(libp2p::mdns::Event::Discovered(found))) => {
                self.discovered(found)
            }
            _ => {}
        }
    }

    /// Peers found by mDNS: each not yet a member is let through the gate
    /// and asked, once, where it gossips.
    fn discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let me = *self.swarm.local_peer_id();
        for (peer, addr) in found {
            let Some(node) = node_of(&peer) else { continue };
            let known = peer == me || self.names.contains_key(&node);
            if known || self.asked.len() >= MAX_ASKED || !self.asked.insert(peer) {
                continue;
            }
            if !self.swarm.behaviour_mut().gate.discover(node) {
                tracing::debug!(%peer, "mdns: too many found peers are being asked already");
                self.asked.remove(&peer);
                continue;
            }
            tracing::debug!(%peer, %addr, "mdns: a peer found; asking where it gossips");
            let id = self
                .swarm
                .behaviour_mut()
                .offers
                .send_request_with_addresses(&peer, Request::Hello, vec![addr.clone()]);
            self.hellos.insert(id, addr);
        }
    }

    /// A found peer's gossip address, with the IP it was found at when it
    /// gossips on every interface: a seed for the agent.
    fn hello_answered(&mut self, found: &Multiaddr, answer: Answer) {
        let Answer::Gossip { addr } = answer else {
            return;
        };
        let ip = found.iter().find_map(|p| match p {
            Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
            Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        });
        let seed = match (addr.ip().is_unspecified(), ip) {
            (true, Some(ip)) => SocketAddr::new(ip, addr.port()),
            _ => addr,
        };
        let _ = self.seed_tx.send(seed);
    }

    fn offers(&mut self, event: rr::Event<Request, Answer>) {
        match event {
            rr::Event::Message { peer, message, .. } => match message {
                rr::Message::Request {
                    request_id,
                    request,
                    channel,
                } => self.take(peer, request_id, request, channel),
                rr::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.waiting.remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    } else if let Some(found) = self.hellos.remove(&request_id) {
                        self.hello_answered(&found, response);
                    }
                }
            },
            rr::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.waiting.remove(&request_id) {
                    let _ = reply.send(Err(OfferError::Failed(error.to_string())));
                } else if let Some(found) = self.hellos.remove(&request_id) {
                    // Asked again when mDNS finds it again (it may not have
                    // found this node yet, and so refused it).
                    self.asked.remove(&peer);
                    tracing::debug!(%found, %error, "mdns: a peer found did not say where it gossips");
                }
            }
            rr::Event::InboundFailure {
                request_id, error, ..
            } => {
                // A guest confirmed meanwhile is no longer held: it stays.
                let guest = self.delivering.remove(&request_id);
                if let Some(guest) = guest.filter(|g| self.held.remove(g).is_some()) {
                    P2pCounters::bump(&self.counters.undelivered);
                    self.kill(guest, &format!("its answer was not delivered: {error}"));
                }
            }
            rr::Event::ResponseSent { request_id, .. } => {
                self.delivering.remove(&request_id);
            }
        }
    }
}
