//! Requests taken by the endpoint: offers and confirmations of submitted
//! guests, and the three steps of a move (docs/placement.md). Each is
//! carried out off the swarm task and answered through [`Task::deliver`].

use super::{Task, MAX_HELD_PER_ORIGIN};
use crate::guests::{Guests, Origin};
use crate::market::Moving;
use crate::p2p::gate::{key_of, node_of};
use crate::p2p::{take_move, take_offer, Answer, P2pCounters, Request};
use libp2p::request_response as rr;
use libp2p::PeerId;
use maxwell_market::{AccountId, Order};
use maxwell_types::NodeId;
use std::sync::Arc;

/// Moves remembered as committed here, for a source asking their outcome.
const COMMITTED_KEPT: usize = 4096;

/// A guest held here: who may confirm (or commit) it, and for a moved
/// guest its wallet's account at the source and its order.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub origin: NodeId,
    /// The source's id for the move (none: a submitted guest).
    pub moved: Option<u64>,
    pub wallet: Option<(AccountId, Order)>,
}

impl Held {
    /// What names it, if it is a move.
    fn key(&self) -> Option<MoveKey> {
        Some(MoveKey {
            source: self.origin,
            move_id: self.moved?,
            account: self.wallet.as_ref().map(|w| w.0),
        })
    }
}

/// A move, as its source may ask after it: by its id, or (after a restart
/// there, which forgets ids) by its wallet's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MoveKey {
    pub source: NodeId,
    pub move_id: u64,
    pub account: Option<AccountId>,
}

impl MoveKey {
    fn is(&self, node: NodeId, move_id: Option<u64>, account: Option<AccountId>) -> bool {
        self.source == node
            && (move_id == Some(self.move_id) || (account.is_some() && self.account == account))
    }
}

/// An answer back from the work it asked for (a start, a release).
pub(crate) struct Delivery {
    pub request: rr::InboundRequestId,
    pub answer: Answer,
    pub channel: rr::ResponseChannel<Answer>,
    /// What a `Started` answer holds.
    pub held: Option<Held>,
    /// The moved guest a commit was for.
    pub commit: Option<u64>,
}

/// What a request was, for its answer.
struct Asked {
    request: rr::InboundRequestId,
    channel: rr::ResponseChannel<Answer>,
    held: Option<Held>,
    commit: Option<u64>,
}

impl Task {
    /// A request from `peer`: carried out off this task, answered by
    /// [`Self::deliver`].
    pub(super) fn take(
        &mut self,
        peer: PeerId,
        request: rr::InboundRequestId,
        message: Request,
        channel: rr::ResponseChannel<Answer>,
    ) {
        // Anyone through the gate (a member, or a peer found by mDNS) may
        // learn where this node gossips: nothing more.
        if matches!(message, Request::Hello) {
            let addr = self.gossip_addr;
            let _ = self
                .swarm
                .behaviour_mut()
                .offers
                .send_response(channel, Answer::Gossip { addr });
            return;
        }
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
        let asked = |held, commit| Asked {
            request,
            channel,
            held,
            commit,
        };
        let starts = matches!(message, Request::Offer { .. } | Request::Migrate { .. });
        if starts && self.held.values().filter(|h| h.origin == node).count() >= MAX_HELD_PER_ORIGIN
        {
            let why = "too many of your guests are held here unconfirmed";
            asked(None, None).refuse(self, why);
            return;
        }
        let origin = |moved, by_rule| Origin {
            node,
            name: self.names.get(&node).cloned().unwrap_or_default(),
            moved,
            by_rule,
        };
        match message {
            Request::Offer { spec_json } => {
                let (origin, counters) = (origin(false, false), Arc::clone(&self.counters));
                let work = async move {
                    started(&counters, take_offer(&guests, &spec_json, origin).await)
                };
                let held = Held {
                    origin: node,
                    moved: None,
                    wallet: None,
                };
                self.answer_later(asked(Some(held), None), permit, work);
            }
            Request::Migrate {
                move_id,
                spec_json,
                wallet,
                snapshot,
                by_rule,
            } => {
                let (origin, counters) = (origin(true, by_rule), Arc::clone(&self.counters));
                let order = wallet.as_ref().map(|w| w.1.clone());
                let work = async move {
                    let (snapshot, order) = (snapshot.as_deref(), order.as_ref());
                    let r = take_move(&guests, &spec_json, snapshot, order, origin).await;
                    started(&counters, r)
                };
                let held = Held {
                    origin: node,
                    moved: Some(move_id),
                    wallet,
                };
                self.answer_later(asked(Some(held), None), permit, work);
            }
            Request::Confirm { guest } => {
                if !self
                    .held
                    .get(&guest)
                    .is_some_and(|h| h.origin == node && h.moved.is_none())
                {
                    let reason = format!(
                        "no guest {guest} is held here for this node (its hold ended, or it was never offered)"
                    );
                    asked(None, None).refuse(self, &reason);
                    return;
                }
                self.held.remove(&guest);
                let work = async move { release(&guests, guest).await };
                self.answer_later(asked(None, None), permit, work);
            }
            Request::Commit { guest, transfer } => {
                let held = self
                    .held
                    .get(&guest)
                    .filter(|h| h.origin == node && h.moved.is_some());
                let matches = match (held.map(|h| &h.wallet), &transfer) {
                    (Some(Some((account, _))), Some(t)) => {
                        t.transfer.account == *account && t.transfer.from == node
                    }
                    (Some(None), None) => true,
                    _ => false,
                };
                let key = key_of(&peer);
                let (Some(key), true) = (key, matches) else {
                    let reason = format!(
                        "no moved guest {guest} with this wallet is held here for this node"
                    );
                    asked(None, None).refuse(self, &reason);
                    return;
                };
                let Some(held) = self.held.remove(&guest) else {
                    return;
                };
                if let Some(key) = held.key() {
                    self.committing.insert(guest, key);
                }
                let work = async move {
                    if let (Some((_, order)), Some(transfer)) = (held.wallet, transfer) {
                        let step = |reply| Moving::In {
                            vm: guest,
                            order,
                            transfer,
                            source: Box::new(key),
                            reply,
                        };
                        if let Err(e) = guests.moving(step).await {
                            let _ = guests.kill(&guest.to_string()).await;
                            let reason = format!("its wallet was not taken: {}", e.message);
                            return Answer::Refused { reason };
                        }
                        // Its `In` on disk before the source hears of it
                        // (meanwhile the source's asks are answered pending).
                        crate::p2p::migrate::durable(&guests).await;
                    }
                    // From here the guest and its wallet are this node's:
                    // one that cannot resume is this node's failure, closed
                    // (and refunded) here like any guest that dies.
                    if let Answer::Refused { reason } = release(&guests, guest).await {
                        tracing::warn!(guest, reason, "p2p: a moved guest could not be resumed");
                    }
                    Answer::Confirmed
                };
                self.answer_later(asked(None, Some(guest)), permit, work);
            }
            Request::Hello => {}
            Request::Outcome { move_id, account } => {
                self.outcome(node, (move_id, account), asked(None, None), permit)
            }
        }
    }

    /// How `node`'s move `move_id` (or of its wallet's `account`) ended.
    /// A move still held here is aborted now, so the answer is final: a
    /// commit arriving later finds nothing.
    fn outcome(
        &mut self,
        node: NodeId,
        (move_id, account): (Option<u64>, Option<AccountId>),
        asked: Asked,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let asks = |m: &MoveKey| m.is(node, move_id, account);
        if self.committing.values().any(asks) {
            asked.answer(self, Answer::Pending);
            return;
        }
        let held = self
            .held
            .iter()
            .find(|(_, h)| h.key().is_some_and(|k| asks(&k)))
            .map(|(g, _)| *g);
        if let Some(g) = held {
            self.held.remove(&g);
            self.kill(
                g,
                "its source asked how the move ended before committing it: aborted",
            );
            asked.answer(self, Answer::Outcome { arrived: false });
        } else if move_id.is_some_and(|id| self.committed.contains(&(node, id))) {
            asked.answer(self, Answer::Outcome { arrived: true });
        } else if let Some(account) = account {
            let guests = Arc::clone(&self.guests);
            let work = async move {
                let step = |reply| Moving::Arrived {
                    from: node,
                    account,
                    reply,
                };
                match guests.moving(step).await {
                    Ok(arrived) => Answer::Outcome { arrived },
                    Err(e) => Answer::Refused { reason: e.message },
                }
            };
            self.answer_later(asked, permit, work);
        } else {
            asked.answer(self, Answer::Outcome { arrived: false });
        }
    }

    /// Answers a request with a refusal at once.
    pub(super) fn refuse(&mut self, channel: rr::ResponseChannel<Answer>, reason: String) {
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
        asked: Asked,
        permit: tokio::sync::OwnedSemaphorePermit,
        work: impl std::future::Future<Output = Answer> + Send + 'static,
    ) {
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            let answer = work.await;
            let _ = done.send(asked.delivery(answer));
            drop(permit);
        });
    }

    /// Hands an answer to the swarm. A started guest is held for its
    /// submitter's confirmation, and killed at once if its answer cannot go out.
    pub(super) fn deliver(&mut self, d: Delivery) {
        if let Some(key) = d.commit.and_then(|g| self.committing.remove(&g)) {
            if d.answer == Answer::Confirmed {
                P2pCounters::bump(&self.counters.moves_in);
                self.committed.push_back((key.source, key.move_id));
                while self.committed.len() > COMMITTED_KEPT {
                    self.committed.pop_front();
                }
            }
        }
        let started = match (&d.answer, d.held) {
            (Answer::Started { guest, .. }, Some(held)) => Some((*guest, held)),
            _ => None,
        };
        let offers = &mut self.swarm.behaviour_mut().offers;
        match (offers.send_response(d.channel, d.answer), started) {
            // Settled by its ResponseSent, or its InboundFailure.
            (Ok(()), Some((guest, held))) => {
                self.delivering.insert(d.request, guest);
                self.held.insert(guest, held);
                let (tx, hold) = (self.expire_tx.clone(), self.hold);
                tokio::spawn(async move {
                    tokio::time::sleep(hold).await;
                    let _ = tx.send(guest);
                });
            }
            (Err(_), Some((guest, _))) => {
                P2pCounters::bump(&self.counters.undelivered);
                self.kill(guest, "the submitter is gone");
            }
            _ => {}
        }
    }

    /// Kills a guest that was offered here and will not run here.
    pub(super) fn kill(&self, guest: u64, why: &str) {
        tracing::warn!(
            guest,
            reason = why,
            "p2p: killing a guest held here, as its submitter places it elsewhere"
        );
        let guests = Arc::clone(&self.guests);
        tokio::spawn(async move {
            let _ = guests.kill(&guest.to_string()).await;
        });
    }
}

impl Asked {
    fn delivery(self, answer: Answer) -> Delivery {
        Delivery {
            request: self.request,
            answer,
            channel: self.channel,
            held: self.held,
            commit: self.commit,
        }
    }

    fn answer(self, task: &mut Task, answer: Answer) {
        task.deliver(self.delivery(answer));
    }

    fn refuse(self, task: &mut Task, reason: &str) {
        task.refuse(self.channel, reason.to_owned());
    }
}

/// The answer to a start.
fn started(counters: &P2pCounters, r: Result<(u64, String), crate::guests::ApiError>) -> Answer {
    match r {
        Ok((guest, name)) => {
            P2pCounters::bump(&counters.offers_started);
            Answer::Started { guest, name }
        }
        Err(e) => {
            P2pCounters::bump(&counters.offers_refused);
            Answer::Refused { reason: e.message }
        }
    }
}

/// Runs a held guest; one that cannot run is no use held: it is freed.
async fn release(guests: &Guests, guest: u64) -> Answer {
    match guests.release(guest).await {
        Ok(_) => Answer::Confirmed,
        Err(e) => {
            let _ = guests.kill(&guest.to_string()).await;
            let reason = format!("the held guest could not be resumed: {}", e.message);
            Answer::Refused { reason }
        }
    }
}
