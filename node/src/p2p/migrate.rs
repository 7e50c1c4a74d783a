//! Moving a running guest to another node, the source's side
//! (docs/placement.md, "Moving a guest"). The guest is paused here,
//! offered with its snapshot (KVM workload guests) or its spec (the rest,
//! which restart there) and its wallet's account, held there, then
//! committed with this node's signed transfer. This copy is killed only
//! once the target has answered that the guest runs there; until an answer
//! is final it stays paused here, so the guest never runs in two places.

use super::{Answer, P2p, P2pCounters, Request};
use crate::guests::{ApiError, Guests};
use crate::market::{Moving, Signed};
use axum::http::StatusCode;
use maxwell_market::{AccountId, Order};
use maxwell_types::NodeId;
use maxwell_vmm::{BackendName, GuestKind, GuestSnapshot};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often a source asks a target how a move ended, while it does not know.
const ASK_EVERY: Duration = Duration::from_secs(1);
/// How often pending transfers out are looked for.
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// Where a guest goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub node: NodeId,
    pub name: String,
    pub endpoint: SocketAddr,
}

/// A move carried out.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Moved {
    /// The guest here (now gone), and on the target.
    pub guest: u64,
    pub to: String,
    pub to_guest: u64,
    /// Restored from a snapshot (it counts on), rather than restarted.
    pub restored: bool,
    /// From the pause here to the target's answer that it runs there, ms.
    pub paused_ms: f64,
    /// The offer's size on the wire (spec, wallet and snapshot), bytes.
    pub bytes: u64,
    /// What its wallet carried, milli-credits (none: not in the market).
    pub wallet_milli: Option<u64>,
}

/// A snapshot as an offer carries it: postcard bytes, hex.
pub fn encode_snapshot(s: &GuestSnapshot) -> String {
    maxwell_types::hex::encode(&postcard::to_stdvec(s).expect("a snapshot encodes"))
}

/// The snapshot an offer carries, or why it is unreadable.
pub fn decode_snapshot(hex: &str) -> Result<GuestSnapshot, String> {
    let bytes = maxwell_types::hex::decode_vec(hex).ok_or("the snapshot is not hex")?;
    postcard::from_bytes(&bytes).map_err(|e| format!("the snapshot does not decode: {e}"))
}

fn error(status: StatusCode, message: String) -> ApiError {
    ApiError {
        status,
        message,
        state_changed: false,
    }
}

/// Moves guest `vm` to `to`, and returns once the move is final: the
/// guest runs there (and its copy here is killed), or it runs on here.
/// `by_rule`: the heat rule asked for it, not an operator (the target
/// paces such moves).
pub async fn migrate(
    guests: &Guests,
    p2p: &P2p,
    vm: u64,
    to: &Peer,
    by_rule: bool,
) -> Result<Moved, ApiError> {
    let mut id = [0u8; 8];
    getrandom::getrandom(&mut id).map_err(|e| ApiError::internal(format!("no randomness: {e}")))?;
    let move_id = u64::from_le_bytes(id);
    guests.begin_move(vm)?;
    let _flight = p2p.moving(vm);
    let t0 = Instant::now();
    let offered = offer(guests, vm, move_id, by_rule).await;
    let (request, bytes, wallet, restored) = match offered {
        Ok(o) => o,
        Err(e) => {
            let _ = guests.release(vm).await;
            return Err(e);
        }
    };
    let answer = p2p.send(to.node, to.endpoint, request).await;
    let to_guest = match answer {
        Ok(Answer::Started { guest, .. }) => guest,
        other => {
            let _ = guests.release(vm).await;
            let why = match other {
                Ok(Answer::Refused { reason }) => reason,
                Ok(a) => format!("answered {a:?}"),
                Err(e) => e.to_string(),
            };
            let message = format!("{} did not take the guest: {why}", to.name);
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, message));
        }
    };
    let account = wallet.as_ref().map(|w| w.0);
    let transfer = match account {
        Some(_) => match out(guests, vm, to).await {
            Ok(t) => Some(t),
            Err(e) => {
                // Nothing moved: the held copy there is aborted.
                let ask = Request::Outcome {
                    move_id: Some(move_id),
                    account: None,
                };
                let _ = p2p.send(to.node, to.endpoint, ask).await;
                let _ = guests.release(vm).await;
                return Err(e);
            }
        },
        None => None,
    };
    if transfer.is_some() {
        durable(guests).await;
    }
    let amount = transfer.as_ref().map(|t| t.transfer.amount_micro / 1000);
    let commit = Request::Commit {
        guest: to_guest,
        transfer,
    };
    let arrived = match p2p.send(to.node, to.endpoint, commit).await {
        Ok(Answer::Confirmed) => true,
        Ok(Answer::Refused { .. }) => false,
        // No answer: it may have committed. Ask until the answer is final.
        _ => outcome(guests, p2p, to, Some(move_id), account).await,
    };
    let paused_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let settled = match account {
        Some(account) => settle(guests, account, arrived, vm).await,
        None => true,
    };
    if !arrived {
        P2pCounters::bump(&p2p.counters.moves_aborted);
        if settled {
            let _ = guests.release(vm).await;
            let message = format!(
                "{} did not commit the move: the guest runs on here",
                to.name
            );
            return Err(error(StatusCode::SERVICE_UNAVAILABLE, message));
        }
        // Its wallet did not come back to an account: it must not run
        // unpaid. The resolver refunds the escrow.
        if guests.kill(&vm.to_string()).await.is_ok() {
            guests.end_move(vm);
        }
        let message = format!(
            "{} did not commit the move, and the ledger here could not take the wallet back: the guest was stopped and its wallet will be refunded",
            to.name
        );
        return Err(error(StatusCode::INSUFFICIENT_STORAGE, message));
    }
    P2pCounters::bump(&p2p.counters.moves_out);
    match guests.kill(&vm.to_string()).await {
        Ok(_) => guests.end_move(vm),
        // Still marked as moving, so that nothing resumes it: it runs there.
        Err(e) => {
            tracing::error!(guest = vm, error = %e.message, "move: the paused copy left here could not be killed; it stays paused (delete it)")
        }
    }
    Ok(Moved {
        guest: vm,
        to: to.name.clone(),
        to_guest,
        restored,
        paused_ms,
        bytes,
        wallet_milli: amount,
    })
}

/// Pauses the guest and builds its offer: the request, its size, its
/// wallet and whether it carries a snapshot.
async fn offer(
    guests: &Guests,
    vm: u64,
    move_id: u64,
    by_rule: bool,
) -> Result<(Request, u64, Option<(AccountId, Order)>, bool), ApiError> {
    let backend = guests.backend()?;
    let spec = guests.act(&vm.to_string(), |b, id| b.spec(id)).await?;
    let snapshots = backend.name() == BackendName::Kvm;
    if snapshots && !matches!(spec.kind, GuestKind::Workload(_)) {
        let message = format!("guest g{vm} is a Linux guest: its devices cannot be moved");
        return Err(error(StatusCode::CONFLICT, message));
    }
    let wallet = guests.moving(|reply| Moving::Terms { vm, reply }).await?;
    let mut raw = spec.to_raw();
    // The terms in force, not the ones it was started with.
    match &wallet {
        Some((_, order)) => {
            raw.bid_milli = Some(order.bid_milli);
            raw.max_cpu =
                (order.max_cpu_milli < 1000).then(|| f64::from(order.max_cpu_milli) / 1000.0);
        }
        // Not in the market here (no account): none there either.
        None => {
            raw.bid_milli = None;
            raw.wallet_milli = None;
            raw.class = None;
            raw.max_cpu = None;
        }
    }
    let spec_json = serde_json::to_string(&raw).map_err(|e| ApiError::internal(e.to_string()))?;
    guests.act(&vm.to_string(), |b, id| b.pause(id)).await?;
    let snapshot = match snapshots {
        true => Some(guests.act(&vm.to_string(), |b, id| b.snapshot(id)).await?),
        false => None,
    };
    let snapshot = snapshot.as_ref().map(encode_snapshot);
    let restored = snapshot.is_some();
    let request = Request::Migrate {
        move_id,
        spec_json,
        wallet: wallet.clone(),
        snapshot,
        by_rule,
    };
    let bytes = serde_json::to_vec(&request).map_or(0, |v| v.len() as u64);
    if bytes > super::MAX_MOVE as u64 {
        let message = format!(
            "guest g{vm} is {bytes} bytes on the wire, over {}",
            super::MAX_MOVE
        );
        return Err(error(StatusCode::CONFLICT, message));
    }
    Ok((request, bytes, wallet, restored))
}

async fn out(guests: &Guests, vm: u64, to: &Peer) -> Result<Signed, ApiError> {
    let (node, endpoint) = (to.node, to.endpoint);
    guests
        .moving(|reply| Moving::Out {
            vm,
            to: node,
            endpoint,
            reply,
        })
        .await
}

/// Settles the transfers out that no move under way here is settling
/// (after a restart, or a ledger that refused the settlement), every
/// [`RESOLVE_EVERY`]: each target is asked the outcome once per round. A
/// transfer the target did not take is refunded, as its guest is gone.
pub async fn resolve(guests: std::sync::Arc<Guests>, p2p: P2p) {
    loop {
        let pending = guests.moving(|reply| Moving::Outbound { reply }).await;
        match pending {
            Ok(list) => {
                for o in list.into_iter().filter(|o| !p2p.is_moving(o.vm)) {
                    let Some(endpoint) = o.endpoint else { continue };
                    let ask = Request::Outcome {
                        move_id: None,
                        account: Some(o.transfer.account),
                    };
                    let endpoint = guests.endpoint_of(o.transfer.to).await.unwrap_or(endpoint);
                    let arrived = match p2p.send(o.transfer.to, endpoint, ask).await {
                        Ok(Answer::Outcome { arrived }) => arrived,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::info!(account = o.transfer.account, to = %o.transfer.to, error = %e, "move: a pending transfer's target cannot say how it ended yet");
                            continue;
                        }
                    };
                    let (account, delivered) = (o.transfer.account, arrived);
                    let r = guests
                        .moving(|reply| Moving::Settle {
                            account,
                            delivered,
                            back_vm: None,
                            reply,
                        })
                        .await;
                    if r.is_ok() {
                        tracing::info!(
                            account,
                            delivered,
                            "move: a pending transfer settled (refunded unless delivered)"
                        );
                    }
                }
            }
            Err(e) if e.status == StatusCode::SERVICE_UNAVAILABLE => return,
            Err(_) => {}
        }
        tokio::time::sleep(RESOLVE_EVERY).await;
    }
}

/// Asks `to` how the move ended until it says; true if the guest arrived.
/// The target is looked up in the gossip view each time: one that
/// restarted may listen elsewhere.
async fn outcome(
    guests: &Guests,
    p2p: &P2p,
    to: &Peer,
    move_id: Option<u64>,
    account: Option<AccountId>,
) -> bool {
    loop {
        let ask = Request::Outcome { move_id, account };
        let endpoint = guests.endpoint_of(to.node).await.unwrap_or(to.endpoint);
        match p2p.send(to.node, endpoint, ask).await {
            Ok(Answer::Outcome { arrived }) => return arrived,
            Ok(answer) => tracing::debug!(?answer, "move: the outcome is not known yet"),
            // Even a stopped endpoint is no answer: the target may have
            // committed, so this copy stays paused (a restart settles the
            // wallet by asking again, and this copy dies with the process).
            Err(e) => {
                tracing::info!(to = %to.name, error = %e, "move: cannot ask the target how the move ended; asking again")
            }
        }
        tokio::time::sleep(ASK_EVERY).await;
    }
}

/// Returns once every ledger step here is on disk: no message that counts
/// on a step goes out before it is. Normally at once; after a failed sync,
/// once the ledger has started a new segment (at a market tick).
pub(crate) async fn durable(guests: &Guests) {
    loop {
        match guests.moving(|reply| Moving::Durable { reply }).await {
            Ok(false) => tokio::time::sleep(ASK_EVERY).await,
            // Durable, or no market to ask (then it has no steps).
            _ => return,
        }
    }
}

/// Records how the transfer out of `account` ended: delivered, or back
/// here as guest `vm`; false if the ledger could not take it (the transfer
/// stays pending, for the resolver to settle).
async fn settle(guests: &Guests, account: AccountId, delivered: bool, vm: u64) -> bool {
    let back_vm = (!delivered).then_some(vm);
    let r = guests
        .moving(|reply| Moving::Settle {
            account,
            delivered,
            back_vm,
            reply,
        })
        .await;
    if let Err(e) = &r {
        tracing::error!(account, error = %e.message, "move: the transfer could not be settled; it stays in escrow until it can be");
    }
    r.is_ok()
}
