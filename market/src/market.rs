//! The market of one host. See the crate documentation for its contracts.

use crate::capacity::Conditions;
use crate::entry::{AccountId, Change, Entry, Line, Reason, Tick};
use crate::fill::{self, Fill, Level};
use crate::order::{Class, Invalid, MarketConfig, Order, MAX_CREDIT_MILLI};
use crate::receipt::{genesis, ReceiptBody};
use crate::transfer::Outbound;
use maxwell_types::NodeId;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};

mod moves;

/// Where an account is indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// In the book; `outbiddable` (not critical): also in `running`.
    Book {
        e: fill::Entry,
        outbiddable: bool,
    },
    Paused {
        bid: u64,
    },
}

/// Where a guest stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Standing {
    Running,
    Paused,
    /// Killed, and not yet reported gone.
    Killed(Reason),
    /// Gone: its account is closed.
    Closed(Reason),
}

/// The receipt window being filled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from_ms: u64,
    pub cpu_ms: u64,
    pub joules_micro: u64,
    pub charged_micro: u64,
    pub price_min_milli: u64,
    pub price_max_milli: u64,
}

/// One guest's account: everything a replay restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    /// The backend's id for the guest.
    pub vm: u64,
    pub order: Order,
    pub standing: Standing,
    pub wallet_micro: u64,
    /// What a broke critical guest owes (paid first from any top-up).
    pub arrears_micro: u64,
    pub paid_micro: u64,
    pub cpu_ms: u64,
    pub joules_micro: u64,
    pub share_mcores: u64,
    /// Rent last charged per second of the last tick, micro-credits.
    pub rent_micro_per_s: u64,
    pub broke_since_ms: Option<u64>,
    pub memory_carry: u16,
    pub window: Window,
    pub receipts: u64,
    pub chain_head: String,
    /// How long a pause holds (see [`MarketConfig::resume_hold_ms`]).
    #[serde(default)]
    pub hold: Hold,
    /// Where it is indexed (derived, not persisted: kept here rather than
    /// in a map of its own so that a bid change looks the guest up once).
    #[serde(skip)]
    place: Option<Place>,
}

/// A paused guest's hold: not resumed before `until_ms`; `backoff_ms`
/// doubles when it is paused again soon after resuming.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub until_ms: u64,
    pub backoff_ms: u64,
    pub resumed_at_ms: Option<u64>,
}

/// Market totals.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub deposited_micro: u64,
    pub revenue_micro: u64,
    pub taxed_micro: u64,
    pub refunded_micro: u64,
    /// Wallets that arrived with their guests, and that left with them
    /// (delivered), and that left and are not yet settled. (A new field
    /// is a new ledger version: postcard has no defaults; see `ledger`.)
    pub moved_in_micro: u64,
    pub moved_out_micro: u64,
    pub escrow_micro: u64,
    pub pauses: u64,
    pub resumes: u64,
    pub kills: BTreeMap<Reason, u64>,
}

/// What a compacted ledger starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub next_account: AccountId,
    pub price_milli: u64,
    pub last_tick_ms: Option<u64>,
    pub accounts: Vec<Account>,
    pub totals: Totals,
    /// Receipt bodies made and not yet signed.
    pub unsigned: Vec<ReceiptBody>,
    /// Transfers out not yet settled, and every transfer taken in.
    pub outbound: Vec<Outbound>,
    pub arrived: Vec<(NodeId, AccountId)>,
}

/// What the driver must do to a guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Cap it at this many milli-cores per vCPU (≥ 1).
    Cap {
        per_vcpu_milli: u32,
    },
    Pause,
    Resume,
    Kill(Reason),
}

/// An action on the guest `vm` of `account`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    pub account: AccountId,
    pub vm: u64,
    pub act: Act,
}

/// The host's power over a tick, for energy attribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Power {
    /// Measured draw, µW.
    pub host_micro_w: u64,
    /// The idle part of it, µW.
    pub idle_micro_w: u64,
    /// CPU busy time on the whole host over the tick, ms.
    pub host_busy_ms: u64,
    /// The host's cores.
    pub host_cores: u64,
}

/// A tick's inputs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickInput {
    pub now_ms: u64,
    pub price_milli: u64,
    pub conditions: Conditions,
    pub power: Option<Power>,
}

/// Why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarketError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no guest account {0}")]
    NoSuchAccount(AccountId),
    #[error("account {0} is closed")]
    Closed(AccountId),
    #[error("a top-up of {0} milli-credits is not in 1..={MAX_CREDIT_MILLI}")]
    Amount(u64),
    #[error("a transfer of {0} micro-credits is above {MAX_CREDIT_MILLI} milli-credits")]
    TransferAmount(u64),
    #[error("a top-up of {amount_micro} micro-credits would take the wallet of {wallet_micro} above the most a wallet holds, {MAX_CREDIT_MILLI} milli-credits")]
    WalletFull {
        wallet_micro: u64,
        amount_micro: u64,
    },
    #[error("{0} micro-credits more would overflow this node's books (deposits and wallets moved in are counted in 64 bits)")]
    BooksFull(u64),
}

/// The market. See the crate documentation.
#[derive(Debug)]
pub struct Market {
    config: MarketConfig,
    node: NodeId,
    next_account: AccountId,
    price_milli: u64,
    last_tick_ms: Option<u64>,
    /// By id; iterated in id order only after a sort (what goes into an
    /// entry or a snapshot must not depend on a hash order).
    accounts: HashMap<AccountId, Account>,
    totals: Totals,
    unsigned: VecDeque<ReceiptBody>,
    outbound: BTreeMap<AccountId, Outbound>,
    arrived: BTreeSet<(NodeId, AccountId)>,
    // Derived from the accounts (rebuilt on replay):
    fill: Fill,
    /// Accounts indexed somewhere (each keeps its [`Place`], to be taken
    /// out under the keys it went in with, and not re-indexed unmoved).
    placed: usize,
    /// Running, non-critical guests by bid: the first to be outbid first.
    /// (A heap with lazy deletion: an entry counts only while the account
    /// is still placed so; stale ones are dropped when they surface.)
    running: BinaryHeap<Reverse<(u64, AccountId)>>,
    /// Paused guests by bid: the highest resumes first.
    paused: BinaryHeap<(u64, AccountId)>,
    level: Level,
    // The driver's side (not persistent):
    applied_cap: HashMap<AccountId, u32>,
    actions: VecDeque<Action>,
    /// Closed accounts kept for display (newest last), at most this many.
    recent_closed: VecDeque<AccountId>,
}

/// Closed accounts kept in memory for operators.
pub const RECENT_CLOSED: usize = 64;

impl Market {
    pub fn new(config: MarketConfig, node: NodeId) -> Self {
        Self {
            config,
            node,
            next_account: 1,
            price_milli: 0,
            last_tick_ms: None,
            accounts: HashMap::new(),
            totals: Totals::default(),
            unsigned: VecDeque::new(),
            outbound: BTreeMap::new(),
            arrived: BTreeSet::new(),
            fill: Fill::new(),
            placed: 0,
            running: BinaryHeap::new(),
            paused: BinaryHeap::new(),
            level: Level { num: 0, den: 0 },
            applied_cap: HashMap::new(),
            actions: VecDeque::new(),
            recent_closed: VecDeque::new(),
        }
    }

    /// The node whose market this is.
    pub fn node(&self) -> NodeId {
        self.node
    }

    pub fn config(&self) -> &MarketConfig {
        &self.config
    }

    /// When the next tick is due.
    pub fn poll_timeout(&self) -> u64 {
        self.last_tick_ms.map_or(0, |t| t + self.config.tick_ms)
    }

    /// Every account kept, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    /// The open account of backend guest `vm`.
    pub fn account_of_vm(&self, vm: u64) -> Option<&Account> {
        self.accounts
            .values()
            .find(|a| a.vm == vm && !matches!(a.standing, Standing::Closed(_)))
    }

    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    pub fn price_milli(&self) -> u64 {
        self.price_milli
    }

    /// When the last tick ran, unix ms.
    pub fn last_tick_ms(&self) -> Option<u64> {
        self.last_tick_ms
    }

    /// Money in wallets (and owed): with revenue, tax and refunds it sums
    /// to every deposit.
    pub fn wallets_micro(&self) -> u64 {
        self.accounts.values().map(|a| a.wallet_micro).sum()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Receipt bodies to sign; the driver appends each, signed, as
    /// [`Entry::Receipt`] (in this order).
    pub fn poll_unsigned(&self) -> Option<&ReceiptBody> {
        self.unsigned.front()
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            next_account: self.next_account,
            price_milli: self.price_milli,
            last_tick_ms: self.last_tick_ms,
            accounts: {
                let mut v: Vec<Account> = self.accounts.values().cloned().collect();
                v.sort_by_key(|a| a.id);
                for a in &mut v {
                    a.place = None;
                }
                v
            },
            totals: self.totals.clone(),
            unsigned: self.unsigned.iter().cloned().collect(),
            outbound: self.outbound.values().cloned().collect(),
            arrived: self.arrived.iter().copied().collect(),
        }
    }

    // --- calls that make entries; the driver persists, then applies ---

    /// The entry that opens an account for `order`, run as backend guest
    /// `vm`; refused if its wallet would overflow the books.
    pub fn open(&self, vm: u64, order: Order, now_ms: u64) -> Result<Entry, MarketError> {
        self.takes_in(order.wallet_milli * 1000)?;
        Ok(Entry::Open {
            account: self.next_account,
            vm,
            order,
            at_ms: now_ms,
        })
    }

    /// Whether `amount_micro` more can come in (a deposit, a top-up, a
    /// wallet moved in) with every total still exact: the books are summed
    /// in 64 bits, and a saturated sum would make money vanish.
    pub(crate) fn takes_in(&self, amount_micro: u64) -> Result<(), MarketError> {
        let t = &self.totals;
        t.deposited_micro
            .checked_add(t.moved_in_micro)
            .and_then(|s| s.checked_add(amount_micro))
            .map(|_| ())
            .ok_or(MarketError::BooksFull(amount_micro))
    }

    /// The entry of a top-up of `amount_milli`.
    pub fn fund(
        &self,
        account: AccountId,
        amount_milli: u64,
        now_ms: u64,
    ) -> Result<Entry, MarketError> {
        if amount_milli == 0 || amount_milli > MAX_CREDIT_MILLI {
            return Err(MarketError::Amount(amount_milli));
        }
        let amount_micro = amount_milli * 1000;
        let wallet_micro = self.open_account(account)?.wallet_micro;
        if wallet_micro.saturating_add(amount_micro) > crate::transfer::MAX_TRANSFER_MICRO {
            return Err(MarketError::WalletFull {
                wallet_micro,
                amount_micro,
            });
        }
        self.takes_in(amount_micro)?;
        Ok(Entry::Fund {
            account,
            amount_micro,
            at_ms: now_ms,
        })
    }

    /// The entry of a new bid.
    pub fn bid(
        &self,
        account: AccountId,
        bid_milli: u64,
        now_ms: u64,
    ) -> Result<Entry, MarketError> {
        self.open_account(account)?;
        if bid_milli == 0 || bid_milli > MAX_CREDIT_MILLI {
            return Err(MarketError::Invalid(Invalid {
                field: "bid_milli",
                why: format!("{bid_milli} is not in 1..={MAX_CREDIT_MILLI}"),
            }));
        }
        Ok(Entry::Bid {
            account,
            bid_milli,
            at_ms: now_ms,
        })
    }

    /// The entry of a new `max_cpu` (milli-cores per vCPU, 1..=1000).
    pub fn limit(
        &self,
        account: AccountId,
        max_cpu_milli: u32,
        now_ms: u64,
    ) -> Result<Entry, MarketError> {
        self.open_account(account)?;
        if !(1..=1000).contains(&max_cpu_milli) {
            return Err(MarketError::Invalid(Invalid {
                field: "max_cpu",
                why: format!("{max_cpu_milli} milli-cores per vCPU is not in 1..=1000"),
            }));
        }
        Ok(Entry::Limit {
            account,
            max_cpu_milli,
            at_ms: now_ms,
        })
    }

    /// The entries for a guest that is gone with its memory (killed,
    /// exited): the Landauer tax on that memory, then the close.
    pub fn gone(
        &self,
        account: AccountId,
        reason: Reason,
        now_ms: u64,
    ) -> Result<Vec<Entry>, MarketError> {
        let a = self.open_account(account)?;
        let reason = match a.standing {
            Standing::Killed(r) => r,
            _ => reason,
        };
        let mib = a.order.memory_mib;
        let due = self.tax_micro(mib);
        let paid = due.min(a.wallet_micro);
        Ok(vec![
            Entry::Release {
                account,
                mib,
                due_micro: due,
                paid_micro: paid,
                at_ms: now_ms,
            },
            Entry::Close {
                account,
                reason,
                refund_micro: a.wallet_micro - paid,
                at_ms: now_ms,
            },
        ])
    }

    /// The tax on releasing `mib`, micro-credits.
    pub fn tax_micro(&self, mib: u64) -> u64 {
        let n = u128::from(self.config.release_tax_milli_per_gib) * u128::from(mib) * 1000 / 1024;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    fn open_account(&self, account: AccountId) -> Result<&Account, MarketError> {
        let a = self
            .accounts
            .get(&account)
            .ok_or(MarketError::NoSuchAccount(account))?;
        if matches!(a.standing, Standing::Closed(_)) {
            return Err(MarketError::Closed(account));
        }
        Ok(a)
    }

    /// One market tick at `input.now_ms`: decides, applies, and returns the
    /// entry for the driver to persist. `usage` is each guest's CPU time
    /// since it started, ms (as the backend meters it).
    pub fn tick(&mut self, input: &TickInput, usage: &BTreeMap<AccountId, u64>) -> Entry {
        let now = input.now_ms.max(self.last_tick_ms.unwrap_or(0));
        let dt = self.last_tick_ms.map_or(0, |t| now - t);
        let charged_at = self.price_milli;
        let p = input.price_milli;
        let capacity = self.config.capacity.capacity(&input.conditions);
        let mut changes: BTreeMap<AccountId, Change> = BTreeMap::new();
        // Outbid first (O(log n) each), so the level is the new one.
        while let Some(&Reverse((bid, id))) = self.running.peek() {
            if !self.is_running_at(id, bid) {
                self.running.pop();
                continue;
            }
            if bid >= p {
                break;
            }
            self.running.pop();
            let change = match self.accounts[&id].order.class {
                Class::Evictable => Change::Kill(Reason::Outbid),
                _ => Change::Pause,
            };
            self.set_standing(id, change, now);
            changes.insert(id, change);
        }
        let margin = 1000 + self.config.resume_margin_permille;
        // Those still held wait (and go back in the heap); the rest resume,
        // highest bid first.
        let mut held = Vec::new();
        while let Some(&(bid, id)) = self.paused.peek() {
            if self.place(id) != Some(Place::Paused { bid }) {
                self.paused.pop();
                continue;
            }
            if u128::from(bid) * 1000 < u128::from(p) * u128::from(margin) {
                break;
            }
            self.paused.pop();
            if self.accounts[&id].hold.until_ms > now {
                held.push((bid, id));
                continue;
            }
            self.set_standing(id, Change::Resume, now);
            changes.insert(id, Change::Resume);
        }
        self.paused.extend(held);
        self.level = self.fill.level(capacity);
        let guest_cpu: u64 = self
            .accounts
            .values()
            .filter(|a| live(a))
            .map(|a| usage.get(&a.id).map_or(0, |u| u.saturating_sub(a.cpu_ms)))
            .sum();
        let mut lines = Vec::new();
        // Those outbid just now are not live any more, but their change
        // must be in the entry.
        let mut ids: Vec<AccountId> = self
            .accounts
            .values()
            .filter(|a| live(a) || changes.contains_key(&a.id))
            .map(|a| a.id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            let a = &self.accounts[&id];
            let cpu_ms = usage.get(&id).map_or(0, |u| u.saturating_sub(a.cpu_ms));
            let cpu_rent = charged_at.saturating_mul(cpu_ms);
            let mem = u128::from(self.config.memory_rent_milli_per_gib_s)
                * u128::from(a.order.memory_mib)
                * u128::from(dt)
                + u128::from(a.memory_carry);
            let memory_rent = u64::try_from(mem / 1024).unwrap_or(u64::MAX);
            let due = cpu_rent.saturating_add(memory_rent);
            let paid = due.min(a.wallet_micro);
            let broke_since = (paid < due).then(|| a.broke_since_ms.unwrap_or(now));
            let mut change = changes.get(&id).copied();
            if a.order.class != Class::Critical
                && !matches!(a.standing, Standing::Killed(_))
                && broke_since.is_some_and(|t| now.saturating_sub(t) >= self.config.grace_ms)
            {
                change = Some(Change::Kill(Reason::Rent));
            }
            let joules = input
                .power
                .map_or(0, |pw| attribute(&pw, dt, a.order.vcpus, cpu_ms, guest_cpu));
            let line = Line {
                account: id,
                cpu_ms,
                joules_micro: joules,
                cpu_rent_micro: cpu_rent,
                memory_rent_micro: memory_rent,
                paid_micro: paid,
                memory_carry: (mem % 1024) as u16,
                share_mcores: 0,
                change,
            };
            lines.push(line);
        }
        let mut tick = Tick {
            at_ms: now,
            dt_ms: dt,
            price_milli: p,
            charged_at_milli: charged_at,
            capacity_mcores: capacity,
            lines,
        };
        self.price_milli = p;
        self.last_tick_ms = Some(now);
        // Charges first: a guest that just went broke (a critical one, held
        // to its floor) or was killed for rent takes its new place in the
        // book before the shares are drawn.
        for line in &tick.lines {
            self.charge_line(now, charged_at, dt, line);
            if let Some(c @ Change::Kill(_)) = line.change {
                self.set_standing(line.account, c, now);
            }
        }
        self.level = self.fill.level(capacity);
        for line in &mut tick.lines {
            if let Some(Place::Book { e, .. }) = self.place(line.account) {
                line.share_mcores = self.level.share(e.bid, e.cap);
            }
        }
        for line in &tick.lines {
            self.settle_line(now, line, true);
        }
        self.due_receipts(now);
        Entry::Tick(tick)
    }

    /// Applies an entry: one the market made (after the driver persisted
    /// it), or one replayed from the ledger (`live == false`: no actions).
    pub fn apply(&mut self, entry: &Entry, live_mode: bool) {
        match entry {
            Entry::Open {
                account,
                vm,
                order,
                at_ms,
            } => {
                let deposit = order.wallet_milli.saturating_mul(1000);
                self.totals.deposited_micro = self.totals.deposited_micro.saturating_add(deposit);
                self.insert_account(*account, *vm, order, deposit, *at_ms, live_mode);
            }
            Entry::Out {
                transfer, endpoint, ..
            } => self.apply_out(transfer, *endpoint),
            Entry::In {
                account,
                vm,
                order,
                transfer,
                at_ms,
                ..
            } => self.apply_in(*account, *vm, order, transfer, *at_ms, live_mode),
            Entry::Settle {
                account,
                outcome,
                at_ms,
            } => self.apply_settle(*account, *outcome, *at_ms, live_mode),
            Entry::Bid {
                account, bid_milli, ..
            } => {
                let Some(a) = self.accounts.get_mut(account) else {
                    return;
                };
                a.order.bid_milli = *bid_milli;
                self.reindex(*account);
            }
            Entry::Limit {
                account,
                max_cpu_milli,
                ..
            } => {
                let Some(a) = self.accounts.get_mut(account) else {
                    return;
                };
                a.order.max_cpu_milli = (*max_cpu_milli).clamp(1, 1000);
                self.reindex(*account);
            }
            Entry::Fund {
                account,
                amount_micro,
                ..
            } => {
                let Some(a) = self.accounts.get_mut(account) else {
                    return;
                };
                let to_arrears = a.arrears_micro.min(*amount_micro);
                a.arrears_micro -= to_arrears;
                a.wallet_micro = a.wallet_micro.saturating_add(amount_micro - to_arrears);
                if to_arrears < *amount_micro {
                    a.broke_since_ms = None;
                }
                self.totals.deposited_micro =
                    self.totals.deposited_micro.saturating_add(*amount_micro);
                self.totals.revenue_micro = self.totals.revenue_micro.saturating_add(to_arrears);
                self.reindex(*account);
            }
            Entry::Tick(t) => {
                self.price_milli = t.price_milli;
                self.last_tick_ms = Some(t.at_ms);
                for line in &t.lines {
                    self.charge_line(t.at_ms, t.charged_at_milli, t.dt_ms, line);
                }
                for line in &t.lines {
                    self.settle_line(t.at_ms, line, live_mode);
                }
                self.due_receipts(t.at_ms);
            }
            Entry::Release {
                account,
                paid_micro,
                ..
            } => {
                let Some(a) = self.accounts.get_mut(account) else {
                    return;
                };
                let paid = (*paid_micro).min(a.wallet_micro);
                a.wallet_micro -= paid;
                a.paid_micro = a.paid_micro.saturating_add(paid);
                a.window.charged_micro = a.window.charged_micro.saturating_add(paid);
                self.totals.taxed_micro = self.totals.taxed_micro.saturating_add(paid);
            }
            Entry::Close {
                account,
                reason,
                refund_micro,
                at_ms,
            } => {
                let Some(a) = self.accounts.get_mut(account) else {
                    return;
                };
                let refund = (*refund_micro).min(a.wallet_micro);
                a.wallet_micro -= refund;
                self.totals.refunded_micro = self.totals.refunded_micro.saturating_add(refund);
                self.close_account(*account, *reason, *at_ms);
            }
            Entry::Receipt(r) => {
                if self.unsigned.front() == Some(&r.body) {
                    self.unsigned.pop_front();
                }
            }
            Entry::Snapshot(s) => self.restore(s),
        }
    }

    /// The money of a tick's line: what was paid, owed and used.
    fn charge_line(&mut self, at_ms: u64, charged_at: u64, dt_ms: u64, line: &Line) {
        let Some(a) = self.accounts.get_mut(&line.account) else {
            return;
        };
        let due = line.cpu_rent_micro.saturating_add(line.memory_rent_micro);
        let paid = line.paid_micro.min(a.wallet_micro);
        a.wallet_micro -= paid;
        a.paid_micro = a.paid_micro.saturating_add(paid);
        a.cpu_ms = a.cpu_ms.saturating_add(line.cpu_ms);
        a.joules_micro = a.joules_micro.saturating_add(line.joules_micro);
        a.memory_carry = line.memory_carry;
        a.rent_micro_per_s = due.saturating_mul(1000) / dt_ms.max(1);
        if paid < due {
            a.broke_since_ms.get_or_insert(at_ms);
            if a.order.class == Class::Critical {
                a.arrears_micro = a.arrears_micro.saturating_add(due - paid);
            }
        } else {
            a.broke_since_ms = None;
        }
        let w = &mut a.window;
        if w.price_max_milli == 0 {
            w.price_min_milli = charged_at;
        }
        w.cpu_ms = w.cpu_ms.saturating_add(line.cpu_ms);
        w.joules_micro = w.joules_micro.saturating_add(line.joules_micro);
        w.charged_micro = w.charged_micro.saturating_add(paid);
        w.price_min_milli = w.price_min_milli.min(charged_at);
        w.price_max_milli = w.price_max_milli.max(charged_at);
        self.totals.revenue_micro = self.totals.revenue_micro.saturating_add(paid);
        self.reindex(line.account);
    }

    /// The rest of a line: its share, its change of standing, and (live)
    /// what the driver must do.
    fn settle_line(&mut self, at_ms: u64, line: &Line, live_mode: bool) {
        let Some(a) = self.accounts.get_mut(&line.account) else {
            return;
        };
        a.share_mcores = line.share_mcores;
        if let Some(c) = line.change {
            self.set_standing(line.account, c, at_ms);
            self.count(c);
            if live_mode {
                self.act(line.account, c);
            }
        }
        let a = &self.accounts[&line.account];
        if live_mode && a.standing == Standing::Running {
            let per_vcpu = u32::try_from(line.share_mcores / u64::from(a.order.vcpus.max(1)))
                .unwrap_or(1000)
                .clamp(1, 1000);
            let old = self.applied_cap.get(&line.account).copied();
            if old.is_none_or(|o| o.abs_diff(per_vcpu) >= 5) {
                let vm = a.vm;
                self.applied_cap.insert(line.account, per_vcpu);
                self.actions.push_back(Action {
                    account: line.account,
                    vm,
                    act: Act::Cap {
                        per_vcpu_milli: per_vcpu,
                    },
                });
            }
        }
    }

    /// Closes the receipt windows that are due (in account order).
    fn due_receipts(&mut self, at_ms: u64) {
        let every = self.config.receipt_every_ms;
        let mut due: Vec<AccountId> = self
            .accounts
            .values()
            .filter(|a| live(a) && at_ms.saturating_sub(a.window.from_ms) >= every)
            .map(|a| a.id)
            .collect();
        due.sort_unstable();
        for id in due {
            self.close_window(id, at_ms);
        }
    }

    fn count(&mut self, c: Change) {
        match c {
            // Saturating: a doctored ledger may start the counts anywhere.
            Change::Pause => self.totals.pauses = self.totals.pauses.saturating_add(1),
            Change::Resume => self.totals.resumes = self.totals.resumes.saturating_add(1),
            Change::Kill(r) => {
                let k = self.totals.kills.entry(r).or_default();
                *k = k.saturating_add(1);
            }
        }
    }

    fn act(&mut self, account: AccountId, c: Change) {
        let vm = self.accounts[&account].vm;
        let act = match c {
            Change::Pause => Act::Pause,
            Change::Resume => {
                // The cap may have moved while it was paused.
                self.applied_cap.remove(&account);
                Act::Resume
            }
            Change::Kill(r) => Act::Kill(r),
        };
        self.actions.push_back(Action { account, vm, act });
    }

    fn set_standing(&mut self, id: AccountId, c: Change, now_ms: u64) {
        let (base, max) = (self.config.resume_hold_ms, self.config.resume_hold_max_ms);
        let Some(a) = self.accounts.get_mut(&id) else {
            return;
        };
        if matches!(a.standing, Standing::Closed(_)) {
            return;
        }
        // Once per change: the tick sets it, and applying its entry again.
        match (c, a.standing) {
            (Change::Pause, Standing::Running) => {
                let again = a
                    .hold
                    .resumed_at_ms
                    .is_some_and(|r| now_ms.saturating_sub(r) < max);
                a.hold.backoff_ms = if again {
                    a.hold.backoff_ms.saturating_mul(2).clamp(base, max)
                } else {
                    base
                };
                a.hold.until_ms = now_ms.saturating_add(a.hold.backoff_ms);
            }
            (Change::Resume, Standing::Paused) => a.hold.resumed_at_ms = Some(now_ms),
            // A killed guest holds nothing (a pause and a kill for rent in
            // one tick leave only the kill in its entry).
            (Change::Kill(_), _) => a.hold = Hold::default(),
            _ => {}
        }
        a.standing = match c {
            Change::Pause => Standing::Paused,
            Change::Resume => Standing::Running,
            Change::Kill(r) => Standing::Killed(r),
        };
        if !matches!(a.standing, Standing::Running) {
            a.share_mcores = 0;
        }
        self.reindex(id);
    }

    /// Where an account belongs, by its standing, bid and wallet (a broke
    /// critical guest at `critical_floor_milli` per vCPU).
    fn place_of(a: &Account, critical_floor_milli: u32) -> Option<Place> {
        // At least 1 even from a doctored ledger (orders are checked at the API).
        let bid = a.order.bid_milli.max(1);
        match a.standing {
            Standing::Running => {
                let critical = a.order.class == Class::Critical;
                let broke = a.wallet_micro == 0 && a.broke_since_ms.is_some();
                let mut cap = a.order.cap_mcores();
                if critical && broke {
                    let floor = u64::from(a.order.vcpus) * u64::from(critical_floor_milli);
                    cap = cap.min(floor);
                }
                let e = fill::Entry {
                    id: a.id,
                    bid,
                    cap: cap.max(1),
                };
                Some(Place::Book {
                    e,
                    outbiddable: !critical,
                })
            }
            Standing::Paused => Some(Place::Paused { bid }),
            Standing::Killed(_) | Standing::Closed(_) => None,
        }
    }

    /// Puts an account where it belongs (O(log n), nothing if it is there).
    fn reindex(&mut self, id: AccountId) {
        let Some(a) = self.accounts.get_mut(&id) else {
            return;
        };
        let want = Self::place_of(a, self.config.critical_floor_milli);
        let have = std::mem::replace(&mut a.place, want);
        if want == have {
            return;
        }
        // The heaps' old entries go stale by themselves.
        if let Some(Place::Book { e, .. }) = have {
            self.fill.remove(&e);
        }
        match want {
            Some(Place::Book { e, outbiddable }) => {
                self.fill.insert(e);
                if outbiddable {
                    self.running.push(Reverse((e.bid, id)));
                }
            }
            Some(Place::Paused { bid }) => self.paused.push((bid, id)),
            None => {}
        }
        self.placed = self.placed + usize::from(want.is_some()) - usize::from(have.is_some());
        if self.running.len() + self.paused.len() > 2 * self.placed + 1024 {
            self.compact_heaps();
        }
    }

    /// Whether `id` is running, outbiddable, at `bid` (a live heap entry).
    fn is_running_at(&self, id: AccountId, bid: u64) -> bool {
        matches!(self.place(id), Some(Place::Book { e, outbiddable: true }) if e.bid == bid)
    }

    fn place(&self, id: AccountId) -> Option<Place> {
        self.accounts.get(&id).and_then(|a| a.place)
    }

    /// Rebuilds the heaps from the placements (amortised O(1) per push).
    fn compact_heaps(&mut self) {
        self.running.clear();
        self.paused.clear();
        for (&id, a) in &self.accounts {
            let Some(p) = a.place else { continue };
            match p {
                Place::Book {
                    e,
                    outbiddable: true,
                } => self.running.push(Reverse((e.bid, id))),
                Place::Paused { bid } => self.paused.push((bid, id)),
                Place::Book { .. } => {}
            }
        }
    }

    /// Closes an account whose wallet has been emptied (refunded, or sent).
    fn close_account(&mut self, account: AccountId, reason: Reason, at_ms: u64) {
        let Some(a) = self.accounts.get_mut(&account) else {
            return;
        };
        // A guest that moved away was not killed: moves are counted apart.
        if !matches!(a.standing, Standing::Killed(_)) && reason != Reason::Moved {
            let k = self.totals.kills.entry(reason).or_default();
            *k = k.saturating_add(1);
        }
        a.standing = Standing::Closed(reason);
        a.share_mcores = 0;
        self.reindex(account);
        self.close_window(account, at_ms);
        self.applied_cap.remove(&account);
        self.recent_closed.push_back(account);
        while self.recent_closed.len() > RECENT_CLOSED {
            if let Some(old) = self.recent_closed.pop_front() {
                self.accounts.remove(&old);
            }
        }
    }

    fn close_window(&mut self, id: AccountId, at_ms: u64) {
        let node = self.node;
        let Some(a) = self.accounts.get_mut(&id) else {
            return;
        };
        let w = std::mem::replace(
            &mut a.window,
            Window {
                from_ms: at_ms,
                ..Window::default()
            },
        );
        if at_ms == w.from_ms && w.cpu_ms == 0 && w.charged_micro == 0 {
            return;
        }
        a.receipts = a.receipts.saturating_add(1);
        let body = ReceiptBody {
            node,
            account: id,
            guest: a.order.name.clone(),
            seq: a.receipts,
            from_ms: w.from_ms,
            to_ms: at_ms,
            cpu_ms: w.cpu_ms,
            joules_micro: w.joules_micro,
            charged_micro: w.charged_micro,
            price_min_milli: w.price_min_milli,
            price_max_milli: w.price_max_milli,
            prev: a.chain_head.clone(),
        };
        a.chain_head = body.hash();
        self.unsigned.push_back(body);
    }

    /// A new account with `wallet_micro` in it (from a deposit, a transfer
    /// in, or an escrow come back); paused at once if it is outbid.
    fn insert_account(
        &mut self,
        account: AccountId,
        vm: u64,
        order: &Order,
        wallet_micro: u64,
        at_ms: u64,
        live_mode: bool,
    ) {
        let a = Account {
            id: account,
            vm,
            order: order.clone(),
            standing: Standing::Running,
            wallet_micro,
            arrears_micro: 0,
            paid_micro: 0,
            cpu_ms: 0,
            joules_micro: 0,
            share_mcores: 0,
            rent_micro_per_s: 0,
            broke_since_ms: None,
            memory_carry: 0,
            window: Window {
                from_ms: at_ms,
                ..Window::default()
            },
            receipts: 0,
            chain_head: genesis(),
            hold: Hold::default(),
            place: None,
        };
        self.next_account = self.next_account.max(account.saturating_add(1));
        self.accounts.insert(account, a);
        self.reindex(account);
        // It starts paused if its bid does not meet the price.
        let pausable = order.class != Class::Critical && order.bid_milli < self.price_milli;
        if pausable {
            let change = match order.class {
                Class::Evictable => Change::Kill(Reason::Outbid),
                _ => Change::Pause,
            };
            self.set_standing(account, change, at_ms);
            self.count(change);
            if live_mode {
                self.act(account, change);
            }
        }
    }

    fn restore(&mut self, s: &Snapshot) {
        let config = self.config.clone();
        let node = self.node;
        *self = Market::new(config, node);
        self.next_account = s.next_account;
        self.price_milli = s.price_milli;
        self.last_tick_ms = s.last_tick_ms;
        self.totals = s.totals.clone();
        self.unsigned = s.unsigned.iter().cloned().collect();
        self.outbound = s
            .outbound
            .iter()
            .map(|o| (o.transfer.account, o.clone()))
            .collect();
        self.arrived = s.arrived.iter().copied().collect();
        for a in &s.accounts {
            let a = Account {
                place: None,
                ..a.clone()
            };
            let (id, closed) = (a.id, matches!(a.standing, Standing::Closed(_)));
            self.accounts.insert(id, a);
            if closed {
                self.recent_closed.push_back(id);
            }
            self.reindex(id);
        }
    }

    /// The most `account` may have now, milli-cores (its `max_cpu`, or the
    /// critical floor while broke); `None` unless it is running.
    pub fn cap_mcores(&self, account: AccountId) -> Option<u64> {
        match self.place(account) {
            Some(Place::Book { e, .. }) => Some(e.cap),
            _ => None,
        }
    }

    /// The level of the last tick's fill (for tests and the bench).
    pub fn level(&self) -> Level {
        self.level
    }
}

fn live(a: &Account) -> bool {
    matches!(a.standing, Standing::Running | Standing::Paused)
}

/// A guest's energy over `dt_ms`, µJ: its reserved part of the idle draw
/// (its vCPUs over the host's cores) and its CPU time's part of the rest
/// (over the host's busy time, or the guests' if that is larger).
fn attribute(p: &Power, dt_ms: u64, vcpus: u32, cpu_ms: u64, guests_cpu_ms: u64) -> u64 {
    let idle = u128::from(p.idle_micro_w.min(p.host_micro_w)) * u128::from(dt_ms) / 1000;
    let dynamic =
        u128::from(p.host_micro_w.saturating_sub(p.idle_micro_w)) * u128::from(dt_ms) / 1000;
    let idle_part = idle * u128::from(vcpus) / u128::from(p.host_cores.max(1));
    let busy = p.host_busy_ms.max(guests_cpu_ms);
    let dyn_part = if busy == 0 {
        0
    } else {
        dynamic * u128::from(cpu_ms) / u128::from(busy)
    };
    u64::try_from(idle_part + dyn_part).unwrap_or(u64::MAX)
}
