//! The ledger's side of moving a guest with its wallet: each step is an
//! entry synced before it is answered (docs/placement.md, "The wallet
//! transfer").

use super::Bazaar;
use crate::guests::ApiError;
use axum::http::StatusCode;
use ed25519_dalek::VerifyingKey;
use maxwell_market::{AccountId, Entry, Order, Outbound, Seals, Side, Transfer};
use maxwell_types::NodeId;
use std::net::SocketAddr;
use tokio::sync::oneshot::Sender;

/// A transfer as one side signed it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Signed {
    pub transfer: Transfer,
    /// The signer's signature, hex.
    pub signature: String,
}

/// A step of a wallet transfer, asked of the agent loop.
#[derive(Debug)]
pub enum Moving {
    /// Guest `vm`'s account and order, if it is in the market.
    Terms {
        vm: u64,
        reply: Sender<Result<Option<(AccountId, Order)>, ApiError>>,
    },
    /// Its wallet leaves for `to`: the account closes into escrow.
    Out {
        vm: u64,
        to: NodeId,
        endpoint: SocketAddr,
        reply: Sender<Result<Signed, ApiError>>,
    },
    /// A guest arrived from `source` (whose key signed `transfer`): it runs
    /// here as `vm` on an account funded by the transfer.
    In {
        vm: u64,
        order: Order,
        transfer: Signed,
        source: Box<VerifyingKey>,
        reply: Sender<Result<(), ApiError>>,
    },
    /// The transfer out of `account` ended: `delivered`, or back here as
    /// `back_vm`, or (neither) refunded.
    Settle {
        account: AccountId,
        delivered: bool,
        back_vm: Option<u64>,
        reply: Sender<Result<(), ApiError>>,
    },
    /// Whether `from`'s transfer of `account` was taken in here.
    Arrived {
        from: NodeId,
        account: AccountId,
        reply: Sender<Result<bool, ApiError>>,
    },
    /// The transfers out not yet settled.
    Outbound {
        reply: Sender<Result<Vec<Outbound>, ApiError>>,
    },
    /// Whether every step recorded is on disk (a failed sync leaves it in
    /// doubt until the ledger starts a new segment).
    Durable {
        reply: Sender<Result<bool, ApiError>>,
    },
}

fn refused(why: impl std::fmt::Display) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        message: why.to_string(),
        state_changed: false,
    }
}

/// A step's commit: one that was made but not synced (the market halts
/// until it is) took effect all the same, and must not be answered as a
/// refusal, or a wallet would be taken in one ledger and handed back in
/// the other.
fn taken(r: Result<(), ApiError>) -> Result<(), ApiError> {
    match r {
        Err(e) if e.state_changed => {
            tracing::error!(error = %e.message, "market: a transfer step is recorded but not yet synced; it stands, and the move waits until it is on disk");
            Ok(())
        }
        r => r,
    }
}

impl Bazaar {
    /// Carries out one step and answers it.
    pub(super) fn moving(&mut self, step: Moving, now_ms: u64) {
        match step {
            Moving::Terms { vm, reply } => {
                // Asked before the guest is paused: one that cannot move is
                // refused at once.
                let terms = match self.market.account_of_vm(vm) {
                    Some(a) => self
                        .market
                        .may_move(a.id)
                        .map(|a| Some((a.id, a.order.clone())))
                        .map_err(refused),
                    None => Ok(None),
                };
                let _ = reply.send(terms);
            }
            Moving::Out {
                vm,
                to,
                endpoint,
                reply,
            } => {
                let _ = reply.send(self.out(vm, to, endpoint, now_ms));
            }
            Moving::In {
                vm,
                order,
                transfer,
                source,
                reply,
            } => {
                let _ = reply.send(self.arrive(vm, order, transfer, &source, now_ms));
            }
            Moving::Settle {
                account,
                delivered,
                back_vm,
                reply,
            } => {
                let r = self
                    .market
                    .settle(account, delivered, back_vm, now_ms)
                    .map_err(refused)
                    .and_then(|e| {
                        tracing::info!(
                            account,
                            delivered,
                            back = back_vm.is_some(),
                            "market: a transfer out settled"
                        );
                        taken(self.commit(vec![e]))
                    });
                let _ = reply.send(r);
            }
            Moving::Arrived {
                from,
                account,
                reply,
            } => {
                // An `In` not yet on disk could vanish in a crash: no answer.
                let r = match self.durable() {
                    true => Ok(self.market.has_arrived(from, account)),
                    false => Err(refused("the ledger here is in doubt until its next sync")),
                };
                let _ = reply.send(r);
            }
            Moving::Outbound { reply } => {
                let _ = reply.send(Ok(self.market.outbound().cloned().collect()));
            }
            Moving::Durable { reply } => {
                let _ = reply.send(Ok(self.durable()));
            }
        }
    }

    fn out(
        &mut self,
        vm: u64,
        to: NodeId,
        endpoint: SocketAddr,
        now_ms: u64,
    ) -> Result<Signed, ApiError> {
        let account = self.account_of(vm)?;
        let transfer = self
            .market
            .transfer_out(account, to, now_ms)
            .map_err(refused)?;
        let signature = transfer.sign(&self.key, Side::Source);
        let e = Entry::Out {
            transfer: transfer.clone(),
            signature: signature.clone(),
            endpoint: Some(endpoint),
        };
        taken(self.commit(vec![e]))?;
        tracing::info!(guest = %format!("g{vm}"), account, to = %to, amount_milli = transfer.amount_micro / 1000, "market: a wallet left with its guest (in escrow until settled)");
        Ok(Signed {
            transfer,
            signature,
        })
    }

    fn arrive(
        &mut self,
        vm: u64,
        order: Order,
        signed: Signed,
        source: &VerifyingKey,
        now_ms: u64,
    ) -> Result<(), ApiError> {
        let t = &signed.transfer;
        if t.to != self.market.node() || !t.verify(source, Side::Source, &signed.signature) {
            return Err(refused(
                "the transfer is not signed by its source, or not to this node",
            ));
        }
        if self.market.has_arrived(t.from, t.account) {
            return Ok(());
        }
        let seals = Seals {
            source_key: maxwell_types::hex::encode(source.as_bytes()),
            source_signature: signed.signature.clone(),
            signature: t.sign(&self.key, Side::Target),
        };
        let e = self
            .market
            .transfer_in(vm, order, t.clone(), seals, now_ms)
            .map_err(refused)?;
        taken(self.commit(vec![e]))?;
        tracing::info!(guest = %format!("g{vm}"), from = %t.from, amount_milli = t.amount_micro / 1000, "market: a guest arrived with its wallet");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(state_changed: bool) -> Result<(), ApiError> {
        Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "fsync: EIO".into(),
            state_changed,
        })
    }

    #[test]
    fn a_step_written_but_not_synced_stands_and_one_not_written_is_refused() {
        assert!(taken(failed(true)).is_ok());
        assert!(taken(failed(false)).is_err());
        assert!(taken(Ok(())).is_ok());
    }
}
