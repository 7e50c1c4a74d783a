//! The agent's libp2p endpoint (TCP, Noise, yamux, request-response), where
//! placement offers travel between agents (docs/placement.md).
//!
//! Contracts:
//! - the endpoint's key is the host key that signs heat reports, so a
//!   PeerId names the same node as a report; a connection from or to a peer
//!   that is not a verified, counting member is denied ([`gate`]) and
//!   counted, and so is a peer at a member's address holding another key;
//! - an offer's origin is the peer's own id, never what the offer says;
//! - a guest started for an offer is *held*: paused before its first
//!   instruction, until the submitter confirms it (then it runs) or the
//!   hold (`p2p.offer_timeout_ms`) ends (then it is killed, and its
//!   account closed like any killed guest's). A submitter that heard nothing in time never confirms and
//!   tries the next candidate, so a target that was stalled or cut off
//!   and answers late never runs the guest beside the one that took it.

pub mod config;
pub mod gate;
pub mod migrate;
mod swarm;

use crate::guests::{ApiError, Origin};
use maxwell_market::{AccountId, Order};
use maxwell_types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

pub use swarm::{start, MAX_MESSAGE, MAX_MOVE};

/// What a submitter sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Take this guest: its spec as the user wrote it (the target checks it
    /// against its own kernel dir).
    Offer { spec_json: String },
    /// Run the guest you hold for me.
    Confirm { guest: u64 },
    /// Where do you gossip? The one request a peer found by mDNS, and not
    /// yet a member, may make.
    Hello,
    /// Take this guest, which runs here, and hold it until `Commit`: a KVM
    /// workload guest is restored from `snapshot` (its postcard bytes, hex)
    /// where it stopped; any other starts afresh from its spec. `wallet`
    /// is its account here and its order, when it is in the market.
    Migrate {
        /// The sender's name for this move (random), to ask its outcome by.
        move_id: u64,
        spec_json: String,
        wallet: Option<(AccountId, Order)>,
        snapshot: Option<String>,
        /// The sender's heat rule asked for this move (an operator's move
        /// says false): the target takes one such per
        /// `placement.move_admit_every_ms`.
        #[serde(default)]
        by_rule: bool,
    },
    /// Run the moved guest you hold: its wallet is yours (this node's
    /// signed transfer, when it has one).
    Commit {
        guest: u64,
        transfer: Option<crate::market::Signed>,
    },
    /// How did my move `move_id` (or the move of the wallet of my
    /// `account`) end? A move not yet committed is aborted.
    Outcome {
        move_id: Option<u64>,
        account: Option<AccountId>,
    },
}

/// The target's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// The guest is held here as guest `guest`: confirm it (within
    /// the target's `p2p.offer_timeout_ms`).
    Started { guest: u64, name: String },
    /// The held guest runs.
    Confirmed,
    /// Where the answering node gossips (to a peer found by mDNS); an
    /// unspecified IP means the one the peer dialled.
    Gossip { addr: SocketAddr },
    /// How a move ended: the guest (and its wallet) arrived, or not.
    Outcome { arrived: bool },
    /// Its commit is being carried out: ask again.
    Pending,
    /// Not done, and why.
    Refused { reason: String },
}

/// Why an offer got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    #[error("cannot reach {0}: {1}")]
    Unreachable(SocketAddr, String),
    #[error("the peer at {addr} holds the key of {found}, not of {expected}")]
    Impostor {
        addr: SocketAddr,
        expected: NodeId,
        found: NodeId,
    },
    #[error("no answer: {0}")]
    Failed(String),
    #[error("no answer within {0} ms")]
    TimedOut(u64),
    #[error("the p2p endpoint has stopped")]
    Stopped,
}

/// What the endpoint has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct P2pCounters {
    /// Connections denied: the peer is not a counting member.
    pub denied: Arc<AtomicU64>,
    /// Peers at a member's address holding another key.
    pub impostors: AtomicU64,
    pub offers_sent: AtomicU64,
    pub offers_started: AtomicU64,
    pub offers_refused: AtomicU64,
    /// Guests killed because their offer's answer was not delivered.
    pub undelivered: AtomicU64,
    /// Guests killed because no confirmation came within the hold.
    pub expired: AtomicU64,
    /// Guests moved away from here, and moves that ended with the guest
    /// still here.
    pub moves_out: AtomicU64,
    pub moves_aborted: AtomicU64,
    /// Moved guests committed here.
    pub moves_in: AtomicU64,
}

impl P2pCounters {
    fn bump(n: &AtomicU64) {
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// A request to the endpoint's task.
#[derive(Debug)]
enum Cmd {
    Send {
        node: NodeId,
        endpoint: SocketAddr,
        request: Request,
        reply: oneshot::Sender<Result<Answer, OfferError>>,
    },
    /// The counting members, by id, with their names.
    Members(BTreeMap<NodeId, String>),
}

/// The endpoint, as the agent and the API hold it.
#[derive(Debug, Clone)]
pub struct P2p {
    tx: mpsc::UnboundedSender<Cmd>,
    /// Where it listens, as bound (an unspecified IP: every interface).
    pub listen_addr: SocketAddr,
    pub counters: Arc<P2pCounters>,
    offer_timeout: std::time::Duration,
    /// Guests being moved away by this node, by backend id.
    moving: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
}

/// Marks a guest as being moved while it lives.
#[derive(Debug)]
pub struct Flight {
    moving: Arc<std::sync::Mutex<std::collections::BTreeSet<u64>>>,
    vm: u64,
}

impl Drop for Flight {
    fn drop(&mut self) {
        maxwell_types::sync::lock(&self.moving).remove(&self.vm);
    }
}

impl P2p {
    /// Sends `request` to `node` at `endpoint` and waits for its answer.
    pub async fn send(
        &self,
        node: NodeId,
        endpoint: SocketAddr,
        request: Request,
    ) -> Result<Answer, OfferError> {
        let (reply, answer) = oneshot::channel();
        if matches!(request, Request::Offer { .. }) {
            P2pCounters::bump(&self.counters.offers_sent);
        }
        let cmd = Cmd::Send {
            node,
            endpoint,
            request,
            reply,
        };
        self.tx.send(cmd).map_err(|_| OfferError::Stopped)?;
        // The task times the request itself; this bounds the dial too.
        let limit = self.offer_timeout + std::time::Duration::from_secs(1);
        match tokio::time::timeout(limit, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(OfferError::Stopped),
            Err(_) => Err(OfferError::TimedOut(limit.as_millis() as u64)),
        }
    }

    /// Marks guest `vm` as being moved until the guard drops.
    pub fn moving(&self, vm: u64) -> Flight {
        maxwell_types::sync::lock(&self.moving).insert(vm);
        Flight {
            moving: Arc::clone(&self.moving),
            vm,
        }
    }

    /// True while guest `vm` is being moved away.
    pub fn is_moving(&self, vm: u64) -> bool {
        maxwell_types::sync::lock(&self.moving).contains(&vm)
    }

    /// How long an offer may take (`p2p.offer_timeout_ms`).
    pub fn offer_timeout(&self) -> std::time::Duration {
        self.offer_timeout
    }

    /// Only these members may connect from now on.
    pub fn set_members(&self, members: BTreeMap<NodeId, String>) {
        let _ = self.tx.send(Cmd::Members(members));
    }
}

/// Starts (held) the guest an offer from `origin` asks for, as the API
/// would, and says how it went.
async fn take_offer(
    guests: &crate::guests::Guests,
    spec_json: &str,
    origin: Origin,
) -> Result<(u64, String), ApiError> {
    guests.backend()?;
    let spec = maxwell_vmm::GuestSpec::from_json_in(spec_json, guests.kernel_dir())?;
    let g = guests.start_from(spec, Some(origin), None).await?;
    Ok((g.id.0, g.name))
}

/// Starts (held) a guest moving here from `origin`: restored from its
/// snapshot, if it has one, else afresh.
async fn take_move(
    guests: &crate::guests::Guests,
    spec_json: &str,
    snapshot: Option<&str>,
    wallet: Option<&maxwell_market::Order>,
    origin: Origin,
) -> Result<(u64, String), ApiError> {
    guests.backend()?;
    let spec = maxwell_vmm::GuestSpec::from_json_in(spec_json, guests.kernel_dir())?;
    // A moved guest joins no market here but through its wallet: one with
    // terms and no wallet would run unbilled.
    match (spec.terms.is_some(), wallet) {
        (true, None) => {
            return Err(ApiError::bad_request(
                "a moved guest with market terms must bring its wallet",
            ))
        }
        (false, Some(_)) => {
            return Err(ApiError::bad_request(
                "a moved guest without market terms brings no wallet",
            ))
        }
        (_, Some(order)) => {
            order
                .check()
                .map_err(|e| ApiError::bad_request(format!("the moved guest's order: {e}")))?;
            // What it pays for is what runs.
            let (vcpus, mib) = (u32::from(spec.vcpus.get()), u64::from(spec.memory.mib()));
            if order.vcpus != vcpus || order.memory_mib != mib {
                return Err(ApiError::bad_request(format!(
                    "the moved guest's order is for {} vCPUs and {} MiB, its spec {vcpus} and {mib}",
                    order.vcpus, order.memory_mib
                )));
            }
        }
        (false, None) => {}
    }
    let snapshot = match snapshot {
        Some(hex) => Some(Box::new(
            migrate::decode_snapshot(hex).map_err(ApiError::bad_request)?,
        )),
        None => None,
    };
    let g = guests.start_from(spec, Some(origin), snapshot).await?;
    Ok((g.id.0, g.name))
}

#[cfg(test)]
mod tests;
