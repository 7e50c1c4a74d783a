//! The task that owns the libp2p swarm: it dials, sends and answers
//! offers, and keeps the gate's member set.

use super::gate::{node_of, Gate};
use super::{take_offer, Answer, Cmd, OfferError, P2p, P2pCounters, Request};
use crate::guests::{Guests, Origin};
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
/// Requests carried out at once (starts, releases); more are refused as busy.
const MAX_IN_FLIGHT: usize = 32;
/// Guests held here for one submitter at once.
const MAX_HELD_PER_ORIGIN: usize = 16;

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: libp2p::connection_limits::Behaviour,
    gate: Gate,
    offers: json::Behaviour<Request, Answer>,
}

type Reply = oneshot::Sender<Result<Answer, OfferError>>;

/// An answer back from the work it asked for (a start, a release).
struct Delivery {
    request: rr::InboundRequestId,
    answer: Answer,
    channel: rr::ResponseChannel<Answer>,
    /// The submitter.
    origin: NodeId,
}

/// Binds the endpoint at `config.listen_addr` with the host key and starts
/// its task; offers received start guests on `guests`.
pub async fn start(
    config: &super::config::P2pConfig,
    identity: &Identity,
    guests: Arc<Guests>,
) -> anyhow::Result<P2p> {
    let mut secret = identity.signing_key().to_bytes();
    let key = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
        .context("the host key as a libp2p key")?;
    let counters = Arc::new(P2pCounters::default());
    let gate = Gate::new(Arc::clone(&counters.denied));
    let timeout = config.offer_timeout;
    let codec = json::codec::Codec::default()
        .set_request_size_maximum(MAX_MESSAGE as u64)
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
        .with_behaviour(|_| Behaviour {
            limits,
            gate,
            offers,
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
    let p2p = P2p {
        tx,
        listen_addr: SocketAddr::new(listen.ip(), port),
        counters: Arc::clone(&counters),
        offer_timeout: timeout,
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
        hold: timeout,
        expire_tx,
        in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
    };
    tokio::spawn(task.run(rx, done_rx, expire_rx));
    Ok(p2p)
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
    held: HashMap<u64, NodeId>,
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
                Some((peer, _)) => {
                    let id = self
                        .swarm
                        .behaviour_mut()
                        .offers
                        .send_request(peer, request);
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
            _ => {}
        }
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
                    }
                }
            },
            rr::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.waiting.remove(&request_id) {
                    let _ = reply.send(Err(OfferError::Failed(error.to_string())));
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

    /// A request from `peer`: carried out off this task, answered by
    /// [`Self::deliver`].
    fn take(
        &mut self,
        peer: PeerId,
        request: rr::InboundRequestId,
        message: Request,
        channel: rr::ResponseChannel<Answer>,
    ) {
        let member = node_of(&peer).filter(|_| self.swarm.behaviour().gate.admits(&peer));
        let Some(node) = member else {
            // Its membership ended after it connected.
            self.refuse(channel, "the submitter is not a verified member".into());
            return;
        };
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            self.refuse(
                channel,
                "busy: too many offers under way here; try another node".into(),
            );
            return;
        };
        let guests = Arc::clone(&self.guests);
        let counters = Arc::clone(&self.counters);
        match message {
            Request::Offer { .. }
                if self.held.values().filter(|o| **o == node).count() >= MAX_HELD_PER_ORIGIN =>
            {
                let why = "too many of your guests are held here unconfirmed";
                self.refuse(channel, why.into());
            }
            Request::Offer { spec_json } => {
                let origin = Origin {
                    node,
                    name: self.names.get(&node).cloned().unwrap_or_default(),
                };
                let work = async move {
                    match take_offer(&guests, &spec_json, origin).await {
                        Ok((guest, name)) => {
                            P2pCounters::bump(&counters.offers_started);
                            Answer::Started { guest, name }
                        }
                        Err(e) => {
                            P2pCounters::bump(&counters.offers_refused);
                            Answer::Refused { reason: e.message }
                        }
                    }
                };
                self.answer_later((request, channel, node), permit, work);
            }
            Request::Confirm { guest } => {
                if self.held.get(&guest) != Some(&node) {
                    let reason = format!(
                        "no guest {guest} is held here for this node (its hold ended, or it was never offered)"
                    );
                    self.refuse(channel, reason);
                    return;
                }
                self.held.remove(&guest);
                let work = async move {
                    match guests.release(guest).await {
                        Ok(_) => Answer::Confirmed,
                        Err(e) => {
                            // A guest that cannot run is no use held: free it.
                            let _ = guests.kill(&guest.to_string()).await;
                            let reason =
                                format!("the held guest could not be resumed: {}", e.message);
                            Answer::Refused { reason }
                        }
                    }
                };
                self.answer_later((request, channel, node), permit, work);
            }
        }
    }

    /// Answers a request with a refusal at once.
    fn refuse(&mut self, channel: rr::ResponseChannel<Answer>, reason: String) {
        let answer = Answer::Refused { reason };
        let _ = self
            .swarm
            .behaviour_mut()
            .offers
            .send_response(channel, answer);
    }

    /// Carries out `work` off this task, holding `permit`; its answer
    /// comes back to [`Self::deliver`].
    fn answer_later(
        &self,
        (request, channel, origin): (rr::InboundRequestId, rr::ResponseChannel<Answer>, NodeId),
        permit: tokio::sync::OwnedSemaphorePermit,
        work: impl std::future::Future<Output = Answer> + Send + 'static,
    ) {
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let answer = work.await;
            let _ = done.send(Delivery {
                request,
                answer,
                channel,
                origin,
            });
            drop(permit);
        });
    }

    /// Hands an answer to the swarm. A started guest is held for its
    /// submitter's confirmation, and killed at once if its answer cannot go out.
    fn deliver(&mut self, d: Delivery) {
        let started = match &d.answer {
            Answer::Started { guest, .. } => Some(*guest),
            _ => None,
        };
        let offers = &mut self.swarm.behaviour_mut().offers;
        match (offers.send_response(d.channel, d.answer), started) {
            // Settled by its ResponseSent, or its InboundFailure.
            (Ok(()), Some(guest)) => {
                self.delivering.insert(d.request, guest);
                self.held.insert(guest, d.origin);
                let (tx, hold) = (self.expire_tx.clone(), self.hold);
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    let _ = tx.send(guest);
                });
            }
            (Err(_), Some(guest)) => {
                P2pCounters::bump(&self.counters.undelivered);
                self.kill(guest, "the submitter is gone");
            }
            _ => {}
        }
    }

    /// Kills a guest that was offered here and will not run here.
    fn kill(&self, guest: u64, why: &str) {
        tracing::warn!(
            guest,
            reason = why,
            "p2p: killing an offered guest held here, as its submitter places it elsewhere"
        );
        let guests = Arc::clone(&self.guests);
        tokio::spawn(async move {
            let _ = guests.kill(&guest.to_string()).await;
        });
    }
}
