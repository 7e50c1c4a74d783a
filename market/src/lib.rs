//! `maxwell-market`: the CPU market of one host, as a pure state machine,
//! and the durable ledger that carries it across restarts.
//!
//! Role: each tick the node's guests share the host's sellable CPU
//! ([`capacity`]) in proportion to their bids among those whose bid meets
//! the local price (Tycoon-style proportional share), each at most its
//! `max_cpu`, the rest redistributed ([`fill`]). Each pays the price for
//! the CPU it used and rent on the memory it holds; one that cannot pay for
//! the grace period is killed ("apoptosis"); memory released is taxed (the
//! Landauer tax). The host's measured power is attributed to guests (idle
//! by reserved share, dynamic by CPU time) and reported in signed receipts
//! that chain by hash ([`receipt`]).
//!
//! The shape is the node core's: calls and ticks with `now_ms` go in,
//! [`Entry`]s (what the ledger records), [`Action`]s (what the driver does
//! to guests through `maxwell-vmm`) and receipt bodies (to sign) come out.
//! No I/O except in [`ledger`], which only the driver uses.
//!
//! Contracts:
//! - every credit moved is an [`Entry`], and the state is what applying the
//!   entries in order gives ([`Market::apply`]): live, the market applies
//!   its own entries through the same code a replay uses; money is exact
//!   (micro-credits), and `deposits + moved in = wallets + revenue + tax +
//!   refunds + moved out + escrow` ([`transfer`]: a wallet moves with its
//!   guest between two ledgers by a presumed-abort two-phase commit);
//! - shares never exceed the capacity; a guest below the price has none
//!   unless it is critical; wallets never go negative;
//! - a guest is killed for rent only after `grace_ms` unable to pay; a
//!   critical guest is never paused or killed by price: broke, it runs on at
//!   `critical_floor_milli` and owes the difference (paid first from a
//!   top-up);
//! - a bid change, an arrival, a departure and a price step cost
//!   O(log n) each, plus O(log n) for each guest a price step pauses or
//!   resumes; a tick is O(n) (every guest pays).

pub mod capacity;
pub mod entry;
pub mod fill;
pub mod ledger;
mod market;
pub mod order;
pub mod receipt;
pub mod transfer;

pub use capacity::{Conditions, Curve};
pub use entry::{AccountId, Change, Entry, Line, Reason, Tick};
pub use ledger::{Ledger, LedgerConfig, LedgerError, Opened, Stop, Torn};
pub use market::{
    Account, Act, Action, Market, MarketError, Power, Snapshot, Standing, TickInput, Totals,
    Window, RECENT_CLOSED,
};
pub use order::{Class, Invalid, MarketConfig, Order};
pub use receipt::{verify_chain, ChainSummary, Receipt, ReceiptBody, ReceiptError};
pub use transfer::{Outbound, Seals, Settled, Side, Transfer, MAX_TRANSFER_MICRO};
