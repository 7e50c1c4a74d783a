//! The ledger's entries: everything that moves money or changes a guest's
//! standing, as the market decided it. Replaying them in order through
//! [`crate::Market::apply`] rebuilds every wallet, total and receipt chain;
//! the market applies each one itself through the same code, so the live
//! state and a replay cannot disagree.
//!
//! Money is in micro-credits (a CPU-millisecond at 1 milli-credit per
//! CPU-second is exactly one), so every charge is an exact integer.

use crate::market::Snapshot;
use crate::order::Order;
use crate::receipt::Receipt;
use crate::transfer::{Settled, Transfer};
use serde::{Deserialize, Serialize};

/// A guest's account on this node (never reused).
pub type AccountId = u64;

/// Why a guest was killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// Its wallet did not cover its rent for the grace period (apoptosis).
    Rent,
    /// An evictable guest was outbid.
    Outbid,
    /// An operator killed it.
    Operator,
    /// It exited, or its backend lost it.
    Exited,
    /// The node is leaving.
    Leaving,
    /// It moved to another node.
    Moved,
    /// The agent restarted and the guest did not survive it.
    Restart,
}

impl Reason {
    pub const ALL: [Reason; 7] = [
        Reason::Rent,
        Reason::Outbid,
        Reason::Operator,
        Reason::Exited,
        Reason::Leaving,
        Reason::Restart,
        Reason::Moved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rent => "rent",
            Reason::Outbid => "outbid",
            Reason::Operator => "operator",
            Reason::Exited => "exited",
            Reason::Leaving => "leaving",
            Reason::Restart => "restart",
            Reason::Moved => "moved",
        }
    }
}

/// A change of standing decided in a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    Pause,
    Resume,
    Kill(Reason),
}

/// One guest's part of a tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub account: AccountId,
    /// CPU used since the last tick, metered by the backend.
    pub cpu_ms: u64,
    /// Energy attributed to it since the last tick, µJ.
    pub joules_micro: u64,
    /// CPU rent at the price in force, and memory rent.
    pub cpu_rent_micro: u64,
    pub memory_rent_micro: u64,
    /// Of that, what its wallet paid; the rest was not paid (owed, for a
    /// critical guest; forgiven until the grace period ends otherwise).
    pub paid_micro: u64,
    /// The memory rent's remainder below one micro-credit, in 1/1024ths.
    pub memory_carry: u16,
    /// Its share from now on, milli-cores (0 unless running).
    pub share_mcores: u64,
    pub change: Option<Change>,
}

/// One market tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tick {
    pub at_ms: u64,
    /// Since the tick before, ms.
    pub dt_ms: u64,
    /// The price from now on, and the one the usage was charged at.
    pub price_milli: u64,
    pub charged_at_milli: u64,
    pub capacity_mcores: u64,
    pub lines: Vec<Line>,
}

/// A ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Entry {
    /// A guest joined with its order; its wallet is a deposit.
    Open {
        account: AccountId,
        vm: u64,
        order: Order,
        at_ms: u64,
    },
    /// A new bid.
    Bid {
        account: AccountId,
        bid_milli: u64,
        at_ms: u64,
    },
    /// A top-up (arrears are paid from it first).
    Fund {
        account: AccountId,
        amount_micro: u64,
        at_ms: u64,
    },
    Tick(Tick),
    /// The Landauer tax on memory released.
    Release {
        account: AccountId,
        mib: u64,
        due_micro: u64,
        paid_micro: u64,
        at_ms: u64,
    },
    /// The guest is gone; what was left in its wallet goes back to its owner.
    Close {
        account: AccountId,
        reason: Reason,
        refund_micro: u64,
        at_ms: u64,
    },
    Receipt(Receipt),
    /// Everything above, as of one moment: a compacted ledger starts here.
    Snapshot(Box<Snapshot>),
    /// A new `max_cpu`, milli-cores per vCPU. (New variants go last: the
    /// ledger names them by position.)
    Limit {
        account: AccountId,
        max_cpu_milli: u32,
        at_ms: u64,
    },
    /// The guest left for `transfer.to` with its wallet (the source's
    /// side): its account closes as moved and the wallet is held in escrow
    /// until the transfer is settled. `signature` is this node's, over
    /// [`Transfer::bytes`].
    Out {
        transfer: Transfer,
        signature: String,
        /// Where the target took offers, to ask it the outcome after a
        /// restart here.
        endpoint: Option<std::net::SocketAddr>,
    },
    /// A guest arrived from `transfer.from` with its wallet (the target's
    /// side): it opens an account funded by the transfer, not a deposit.
    /// The source's key and signature are kept beside this node's own.
    In {
        account: AccountId,
        vm: u64,
        order: Order,
        transfer: Transfer,
        source_key: String,
        source_signature: String,
        signature: String,
        at_ms: u64,
    },
    /// How the transfer out of `account` ended (the source's side).
    Settle {
        account: AccountId,
        outcome: Settled,
        at_ms: u64,
    },
}
