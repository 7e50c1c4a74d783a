//! A guest's wallet moving with it from one node's ledger to another's
//! (docs/placement.md, "The wallet transfer"): a presumed-abort two-phase
//! commit whose every step is an entry in one of the two ledgers.
//!
//! The source closes the guest's account into escrow ([`Entry::Out`](crate::Entry::Out)),
//! the target opens one funded by the transfer ([`Entry::In`](crate::Entry::In)), and the
//! source settles the escrow ([`Entry::Settle`](crate::Entry::Settle)): delivered, back into a
//! new account here (the move was aborted and the guest runs on here), or
//! refunded to its owner (aborted, and the guest did not survive). So on
//! each node `deposits + moved in = wallets + revenue + tax + refunds +
//! moved out + escrow`, and across the two the credits are in exactly one
//! place at every moment: the source's escrow until the target holds them.

use crate::entry::AccountId;
use crate::order::Order;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use maxwell_types::{hex, NodeId};
use serde::{Deserialize, Serialize};

/// The most one transfer carries: what one deposit may bring (so that
/// sums never overflow).
pub const MAX_TRANSFER_MICRO: u64 = crate::order::MAX_CREDIT_MILLI * 1000;

/// What both sides sign: a guest's wallet going from `from` to `to`.
/// `(from, account)` names the transfer: an account is never reused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: NodeId,
    pub to: NodeId,
    /// The guest's account at the source.
    pub account: AccountId,
    pub guest: String,
    pub amount_micro: u64,
    pub at_ms: u64,
}

/// Which side a signature speaks for: the same body signed by the source
/// (it sent the wallet) and by the target (it took it) cannot be mistaken
/// for one another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Transfer {
    /// The signed bytes: a domain tag for the side, then the postcard body.
    pub fn bytes(&self, side: Side) -> Vec<u8> {
        let tag: &[u8] = match side {
            Side::Source => b"maxwell transfer out\0",
            Side::Target => b"maxwell transfer in\0",
        };
        let mut b = tag.to_vec();
        b.extend(postcard::to_stdvec(self).expect("a transfer encodes"));
        b
    }

    /// `key`'s signature for `side`, hex.
    pub fn sign(&self, key: &SigningKey, side: Side) -> String {
        hex::encode(&key.sign(&self.bytes(side)).to_bytes())
    }

    /// True if `signature` (hex) is `key`'s for `side`.
    pub fn verify(&self, key: &VerifyingKey, side: Side, signature: &str) -> bool {
        hex::decode::<64>(signature).is_some_and(|s| {
            key.verify(&self.bytes(side), &Signature::from_bytes(&s))
                .is_ok()
        })
    }
}

/// The signatures an [`Entry::In`](crate::Entry::In) keeps: the source's
/// key (hex) and signature, checked, and this node's own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Seals {
    pub source_key: String,
    pub source_signature: String,
    pub signature: String,
}

/// How a transfer out ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settled {
    /// The target took the wallet.
    Delivered,
    /// The target did not, and the guest runs on here as backend guest
    /// `vm`: the escrow funds a new account.
    Back { account: AccountId, vm: u64 },
    /// The target did not, and the guest is gone: the escrow is refunded.
    Refunded,
}

/// A transfer out not yet settled, as the source keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outbound {
    pub transfer: Transfer,
    pub order: Order,
    pub vm: u64,
    pub endpoint: Option<std::net::SocketAddr>,
}
