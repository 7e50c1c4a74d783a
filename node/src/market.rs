//! The market on this host: the agent's thin driver over
//! [`maxwell_market::Market`] and its [`Ledger`].
//!
//! Every entry the market makes is appended to the ledger in the data dir
//! (`ledger/`) before it counts: a call that moves money (a guest's
//! deposit, a top-up, a bid) is synced before it is answered, and each tick
//! is synced as it is written. An entry that cannot be written (a full
//! disk) is kept and retried first at every tick; until it is written the
//! market does not tick and money-moving calls are refused with 507, so the
//! ledger and the market never disagree. At start the ledger is replayed;
//! accounts of guests that did not survive the restart are closed (their
//! wallets refunded, in the ledger).

pub mod config;
mod moves;

pub use moves::{Moving, Signed};

use crate::guests::{ApiError, MarketCall};
use axum::http::StatusCode;
use config::MarketSettings;
use ed25519_dalek::SigningKey;
use maxwell_core::Reading;
use maxwell_market::{
    Account, AccountId, Action, Conditions, Entry, Ledger, LedgerError, Market, Order, Power,
    Reason, Standing, TickInput, Totals,
};
use maxwell_types::NodeId;
use maxwell_vmm::{GuestClass, GuestSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

/// One guest's account as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccountRow {
    pub account: AccountId,
    pub guest: u64,
    pub name: String,
    pub class: String,
    pub bid_milli: u64,
    /// Milli-cores in all, this tick.
    pub share_mcores: u64,
    /// Fraction of one core per vCPU the share is applied as.
    pub cap: f64,
    /// running, capped, paused, killed (reason) or closed (reason).
    pub state: String,
    pub cpu_ms: u64,
    pub joules: f64,
    pub wallet_milli: u64,
    pub arrears_milli: u64,
    /// Rent over the last tick, milli-credits per second.
    pub rent_milli_per_s: u64,
    pub receipts: u64,
}

/// The market as the API shows it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MarketView {
    /// When the last tick ran (the figures below are as of then), unix ms.
    pub at_ms: Option<u64>,
    pub price_milli: u64,
    pub capacity_mcores: u64,
    pub accounts: Vec<AccountRow>,
    pub totals: Totals,
    /// Why money-moving calls are refused, if they are.
    pub halted: Option<String>,
    /// Where the ledger is (for reading receipts beside the writer).
    #[serde(skip)]
    pub ledger_dir: PathBuf,
}

/// The market and its ledger.
#[derive(Debug)]
pub struct Bazaar {
    market: Market,
    ledger: Ledger,
    dir: PathBuf,
    key: SigningKey,
    /// Entries applied but not yet written (the disk was full).
    unwritten: VecDeque<Entry>,
    halted: Option<String>,
    /// A sync failed: entries written since the last good one may not be
    /// on disk, whatever a later sync says.
    in_doubt: bool,
    idle_micro_w: Option<u64>,
    lowest_draw: Option<u64>,
    last_busy_ms: Option<u64>,
    capacity_mcores: u64,
    cores: u64,
    /// No tick before this (after a skipped or halted one).
    defer_until_ms: u64,
}

/// A ledger that failed a call; `made`: the call's entries were written
/// and count, but are not known to be on disk (the sync failed).
fn unavailable(e: &LedgerError, made: bool) -> ApiError {
    let status = match e {
        LedgerError::Full { .. } => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let message = match made {
        false => format!("the market's ledger cannot be written: {e}"),
        true => format!("the change was made, but the market's ledger could not sync it to disk: {e}; the market is halted until it can"),
    };
    ApiError {
        status,
        message,
        state_changed: made,
    }
}

impl Bazaar {
    /// Opens the ledger under `data_dir/ledger`, replays it, and closes
    /// the accounts of guests not in `live` (they died with the last run).
    pub fn open(
        settings: &MarketSettings,
        data_dir: &Path,
        node: NodeId,
        key: SigningKey,
        cores: u64,
        now_ms: u64,
    ) -> anyhow::Result<Self> {
        let dir = data_dir.join("ledger");
        let opened = Ledger::open(&dir, settings.ledger)?;
        if let Some(t) = &opened.torn {
            tracing::warn!(path = %t.path.display(), at = t.at, cut_bytes = t.cut_bytes, why = %t.why, "ledger: a torn tail (a crash in mid-write) was cut at the last whole entry; nothing acknowledged was in it");
        }
        let mut market = Market::new(settings.market.clone(), node);
        for e in &opened.entries {
            market.apply(e, false);
        }
        // Guest ids go on past those the ledger knows (every account the
        // newest segment opened or its snapshot holds), so a market guest's
        // id is not taken again, and its receipts stay under it.
        let opened_vms = opened.entries.iter().filter_map(|e| match e {
            Entry::Open { vm, .. } | Entry::In { vm, .. } => Some(*vm),
            Entry::Snapshot(s) => s.accounts.iter().map(|a| a.vm).max(),
            _ => None,
        });
        if let Some(last) = opened_vms.chain(market.accounts().map(|a| a.vm)).max() {
            maxwell_vmm::GuestId::skip_through(last);
        }
        let mut bazaar = Bazaar {
            market,
            ledger: opened.ledger,
            dir,
            key,
            unwritten: VecDeque::new(),
            halted: None,
            in_doubt: false,
            idle_micro_w: settings.idle_micro_w,
            lowest_draw: None,
            last_busy_ms: None,
            capacity_mcores: 0,
            cores,
            defer_until_ms: 0,
        };
        if bazaar.ledger.wants_rotation() {
            // A version-1 (or full) segment is closed before anything is
            // written: nothing a version-1 build cannot read goes under
            // its header.
            let snap = Entry::Snapshot(Box::new(bazaar.market.snapshot()));
            bazaar.ledger.rotate(&snap)?;
        }
        let mut stale: Vec<AccountId> = bazaar
            .market
            .accounts()
            .filter(|a| {
                matches!(
                    a.standing,
                    Standing::Running | Standing::Paused | Standing::Killed(_)
                )
            })
            .map(|a| a.id)
            .collect();
        stale.sort_unstable();
        for id in &stale {
            for e in bazaar.market.gone(*id, Reason::Restart, now_ms)? {
                bazaar.record(e)?;
            }
        }
        bazaar.sign_receipts();
        bazaar.sync()?;
        tracing::info!(
            entries = opened.entries.len(),
            closed_after_restart = stale.len(),
            wallets_milli = bazaar.market.wallets_micro() / 1000,
            "market: ledger replayed"
        );
        Ok(bazaar)
    }

    /// Appends `e` and applies it; on a write error it is applied and kept
    /// to write later (the market halts until it is).
    fn record(&mut self, e: Entry) -> Result<(), LedgerError> {
        self.market.apply(&e, true);
        self.persist(e)
    }

    fn persist(&mut self, e: Entry) -> Result<(), LedgerError> {
        if self.unwritten.is_empty() {
            match self.ledger.append(&e) {
                Ok(()) => return Ok(()),
                Err(err) => {
                    self.halt(&err);
                    self.unwritten.push_back(e);
                    return Err(err);
                }
            }
        }
        self.unwritten.push_back(e);
        Err(LedgerError::Full {
            path: self.dir.clone(),
        })
    }

    fn halt(&mut self, err: &LedgerError) {
        if self.halted.is_none() {
            tracing::error!(error = %err, "market halted: the ledger cannot be written; no guest is charged, capped or killed by price, and money-moving calls are refused, until it can");
        }
        self.halted = Some(err.to_string());
    }

    fn sync(&mut self) -> Result<(), LedgerError> {
        let r = self.ledger.sync();
        if let Err(e) = &r {
            self.in_doubt = true;
            self.halt(e);
        }
        r
    }

    /// Writes what is waiting and makes it durable; true once it is.
    fn flush(&mut self) -> bool {
        while let Some(e) = self.unwritten.front() {
            if let Err(err) = self.ledger.append(e) {
                self.halt(&err);
                return false;
            }
            self.unwritten.pop_front();
        }
        if self.in_doubt {
            // After a failed fsync the kernel may have dropped the pages,
            // and a retried fsync can succeed all the same: only a new
            // segment, written from the market's state and synced, is
            // known to be on disk.
            let snap = Entry::Snapshot(Box::new(self.market.snapshot()));
            if let Err(err) = self.ledger.start_from(&snap) {
                self.halt(&err);
                return false;
            }
            self.in_doubt = false;
            tracing::info!(
                "ledger: what a failed sync left in doubt is on disk now, in a new segment"
            );
        } else if self.sync().is_err() {
            return false;
        }
        if self.halted.take().is_some() {
            tracing::info!("market resumed: the ledger is writable again");
        }
        true
    }

    /// Whether every entry applied is known to be on disk.
    pub(crate) fn durable(&self) -> bool {
        !self.in_doubt && self.unwritten.is_empty()
    }

    /// Entries an API call made: written and synced before it returns.
    fn commit(&mut self, entries: Vec<Entry>) -> Result<(), ApiError> {
        if let Some(why) = &self.halted {
            return Err(ApiError {
                status: StatusCode::INSUFFICIENT_STORAGE,
                message: format!("the market is halted: {why}"),
                state_changed: false,
            });
        }
        let mut made = false;
        for e in entries {
            // A failed append leaves nothing in the file: nothing applies.
            if let Err(err) = self.ledger.append(&e) {
                self.halt(&err);
                return Err(unavailable(&err, made));
            }
            self.market.apply(&e, true);
            made = true;
        }
        // Written and applied: a failed sync does not undo them (a replay
        // would find them), so the caller is told the change was made.
        self.sync().map_err(|e| unavailable(&e, made))
    }

    /// A started guest joins the market if its spec has terms.
    pub fn join(&mut self, vm: u64, spec: &GuestSpec, now_ms: u64) -> Result<(), ApiError> {
        let Some(t) = spec.terms else { return Ok(()) };
        let class = match t.class {
            GuestClass::Critical => maxwell_market::Class::Critical,
            GuestClass::Pausable => maxwell_market::Class::Pausable,
            GuestClass::Evictable => maxwell_market::Class::Evictable,
        };
        let order = Order::new(
            &spec.name,
            u32::from(spec.vcpus.get()),
            u64::from(spec.memory.mib()),
            t.bid_milli,
            t.wallet_milli,
            class,
            t.max_cpu.map(f64::from),
        )
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let e = self
            .market
            .open(vm, order, now_ms)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.commit(vec![e])
    }

    /// The open account of guest `vm`.
    fn account_of(&self, vm: u64) -> Result<AccountId, ApiError> {
        self.market
            .account_of_vm(vm)
            .map(|a| a.id)
            .ok_or_else(|| ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("guest g{vm} is not in the market (no open account)"),
                state_changed: false,
            })
    }

    /// A top-up of `amount_milli` for guest `vm`.
    pub fn fund(
        &mut self,
        vm: u64,
        amount_milli: u64,
        now_ms: u64,
    ) -> Result<AccountRow, ApiError> {
        let id = self.account_of(vm)?;
        let e = self
            .market
            .fund(id, amount_milli, now_ms)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.commit(vec![e])?;
        Ok(self.row(self.market.account(id).expect("funded")))
    }

    /// A new bid for guest `vm`.
    pub fn bid(&mut self, vm: u64, bid_milli: u64, now_ms: u64) -> Result<AccountRow, ApiError> {
        let id = self.account_of(vm)?;
        let e = self
            .market
            .bid(id, bid_milli, now_ms)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.commit(vec![e])?;
        Ok(self.row(self.market.account(id).expect("bid")))
    }

    /// Guest `vm` is gone (killed or lost): the tax on its memory, and its
    /// account closed.
    pub fn gone(&mut self, vm: u64, now_ms: u64) {
        let Ok(id) = self.account_of(vm) else { return };
        let Ok(entries) = self.market.gone(id, Reason::Operator, now_ms) else {
            return;
        };
        for e in entries {
            if let (
                Entry::Close {
                    reason,
                    refund_micro,
                    ..
                },
                Some(a),
            ) = (&e, self.market.account(id))
            {
                tracing::info!(guest = %format!("g{vm}"), name = %a.order.name, reason = reason.as_str(), refund_milli = refund_micro / 1000, "market: account closed");
            }
            let _ = self.record(e);
        }
        self.sign_receipts();
        let _ = self.sync();
    }

    /// When the next tick is due.
    pub fn poll_timeout(&self) -> u64 {
        self.market.poll_timeout().max(self.defer_until_ms)
    }

    /// Answers a market call from the API (after its entry is synced).
    pub fn call(&mut self, call: MarketCall, now_ms: u64) {
        match call {
            MarketCall::Fund {
                vm,
                amount_milli,
                reply,
            } => {
                let r = self.fund(vm, amount_milli, now_ms);
                if let Ok(row) = &r {
                    tracing::info!(guest = %format!("g{vm}"), amount_milli, wallet_milli = row.wallet_milli, "market: top-up");
                }
                let _ = reply.send(r);
            }
            MarketCall::Bid {
                vm,
                bid_milli,
                reply,
            } => {
                let _ = reply.send(self.bid(vm, bid_milli, now_ms));
            }
            MarketCall::Move(step) => self.moving(*step, now_ms),
        }
    }

    /// The guests in the market that could move, as the move rule sees
    /// them (their arrival time is the caller's to add).
    pub fn movable(&self) -> Vec<maxwell_core::Movable> {
        self.market
            .accounts()
            .filter(|a| self.market.may_move(a.id).is_ok())
            // Nor one whose wallet runs dry: it pays here or dies here.
            .filter(|a| a.broke_since_ms.is_none())
            .map(|a| maxwell_core::Movable {
                vm: a.vm,
                load: maxwell_core::GuestLoad {
                    vcpus: u64::from(a.order.vcpus),
                    memory_mib: a.order.memory_mib,
                },
                mcores: u64::from(a.order.vcpus) * u64::from(a.order.max_cpu_milli),
                bid_milli: a.order.bid_milli,
                arrived_at_ms: None,
            })
            .collect()
    }

    /// The guests whose CPU time the next tick needs.
    pub fn metered(&self) -> Vec<(AccountId, u64)> {
        self.market
            .accounts()
            .filter(|a| matches!(a.standing, Standing::Running | Standing::Paused))
            .map(|a| (a.id, a.vm))
            .collect()
    }

    /// One tick: `usage` is each account's CPU time since its start, ms;
    /// `unmetered_mcores` what guests outside the market may take.
    pub fn tick(
        &mut self,
        now_ms: u64,
        price_milli: u64,
        reading: Option<&Reading>,
        usage: &BTreeMap<AccountId, u64>,
        unmetered_mcores: u64,
    ) {
        self.defer_until_ms = now_ms + self.market.config().tick_ms;
        if (self.halted.is_some() || !self.unwritten.is_empty()) && !self.flush() {
            return;
        }
        let temperature = reading.and_then(|r| r.hottest).map(|(t, c)| (t.0, c.0));
        let headroom = reading.and_then(|r| match (r.headroom, r.power_cap) {
            (Some(h), Some(c)) => Some((h.as_watts(), c.as_watts())),
            _ => None,
        });
        let draw = reading
            .and_then(|r| r.power_draw)
            .map(|p| u64::try_from(p.0).unwrap_or(0));
        if let Some(d) = draw {
            self.lowest_draw = Some(self.lowest_draw.map_or(d, |l| l.min(d)));
        }
        let busy_now = host_busy_ms();
        let busy = match (busy_now, self.last_busy_ms) {
            (Some(n), Some(l)) => Some(n.saturating_sub(l)),
            _ => None,
        };
        self.last_busy_ms = busy_now;
        let power = match (draw, self.idle_micro_w.or(self.lowest_draw)) {
            (Some(d), Some(idle)) => Some(Power {
                host_micro_w: d,
                idle_micro_w: idle,
                host_busy_ms: busy.unwrap_or(0),
                host_cores: self.cores,
            }),
            _ => None,
        };
        let input = TickInput {
            now_ms,
            price_milli,
            conditions: Conditions {
                cores_mcores: (self.cores * 1000).saturating_sub(unmetered_mcores),
                temperature,
                headroom,
            },
            power,
        };
        let e = self.market.tick(&input, usage);
        if let Entry::Tick(t) = &e {
            self.capacity_mcores = t.capacity_mcores;
            for l in &t.lines {
                if let (Some(maxwell_market::Change::Kill(Reason::Rent)), Some(a)) =
                    (l.change, self.market.account(l.account))
                {
                    tracing::warn!(guest = %format!("g{}", a.vm), name = %a.order.name, wallet_milli = a.wallet_micro / 1000, price_milli = t.charged_at_milli, rent_milli_per_s = a.rent_micro_per_s / 1000, "market: apoptosis: the guest could not pay its rent for the grace period and is killed");
                }
            }
        }
        if self.persist(e).is_ok() {
            self.sign_receipts();
            let _ = self.sync();
            if self.ledger.wants_rotation() {
                let snap = Entry::Snapshot(Box::new(self.market.snapshot()));
                if let Err(err) = self.ledger.rotate(&snap) {
                    tracing::warn!(error = %err, "ledger: cannot start a new segment; going on in this one");
                }
            }
        }
    }

    fn sign_receipts(&mut self) {
        while let Some(body) = self.market.poll_unsigned().cloned() {
            let e = Entry::Receipt(body.sign(&self.key));
            if self.record(e).is_err() {
                return;
            }
        }
    }

    /// What the driver must do to guests now.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.market.poll_action()
    }

    fn row(&self, a: &Account) -> AccountRow {
        let cap_per_vcpu = a.share_mcores as f64 / 1000.0 / f64::from(a.order.vcpus);
        let state = match a.standing {
            Standing::Running if a.share_mcores < a.order.cap_mcores() => "capped".to_string(),
            Standing::Running => "running".to_string(),
            Standing::Paused => "paused".to_string(),
            Standing::Killed(r) => format!("killed ({})", r.as_str()),
            Standing::Closed(r) => format!("killed ({})", r.as_str()),
        };
        AccountRow {
            account: a.id,
            guest: a.vm,
            name: a.order.name.clone(),
            class: a.order.class.as_str().to_string(),
            bid_milli: a.order.bid_milli,
            share_mcores: a.share_mcores,
            cap: cap_per_vcpu.min(1.0),
            state,
            cpu_ms: a.cpu_ms,
            joules: a.joules_micro as f64 / 1e6,
            wallet_milli: a.wallet_micro / 1000,
            arrears_milli: a.arrears_micro / 1000,
            rent_milli_per_s: a.rent_micro_per_s / 1000,
            receipts: a.receipts,
        }
    }

    /// The market as the API shows it.
    pub fn view(&self) -> MarketView {
        MarketView {
            at_ms: self.market.last_tick_ms(),
            price_milli: self.market.price_milli(),
            capacity_mcores: self.capacity_mcores,
            accounts: {
                let mut rows: Vec<AccountRow> =
                    self.market.accounts().map(|a| self.row(a)).collect();
                rows.sort_by_key(|r| r.account);
                rows
            },
            totals: self.market.totals().clone(),
            halted: self.halted.clone(),
            ledger_dir: self.dir.clone(),
        }
    }
}

/// Answers a market call where there is no market (guests are disabled).
pub fn refuse(call: MarketCall, guests: &crate::guests::Guests) {
    let e = guests
        .backend()
        .err()
        .unwrap_or_else(|| ApiError::internal("no market on this node"));
    match call {
        MarketCall::Fund { reply, .. } | MarketCall::Bid { reply, .. } => {
            let _ = reply.send(Err(e));
        }
        MarketCall::Move(step) => match *step {
            Moving::Terms { reply, .. } => drop(reply.send(Ok(None))),
            Moving::Arrived { reply, .. } => drop(reply.send(Ok(false))),
            Moving::Outbound { reply } => drop(reply.send(Ok(Vec::new()))),
            Moving::Durable { reply } => drop(reply.send(Ok(true))),
            Moving::Out { reply, .. } => drop(reply.send(Err(e))),
            Moving::In { reply, .. } | Moving::Settle { reply, .. } => drop(reply.send(Err(e))),
        },
    }
}

/// CPU busy time of the whole host, ms (`/proc/stat`: every state but
/// idle and iowait), or `None` where it cannot be read.
fn host_busy_ms() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let busy: u64 = v
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, x)| x)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    Some(busy * 1000 / hz)
}

#[cfg(test)]
mod tests;
