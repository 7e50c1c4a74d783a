//! The market's side of a wallet transfer (see [`crate::transfer`]): the
//! calls that make the three entries, and how each is applied.

use super::{live, Account, Market, MarketError, Standing};
use crate::entry::{AccountId, Entry, Reason};
use crate::order::{Class, Invalid, Order};
use crate::transfer::{Outbound, Seals, Settled, Transfer, MAX_TRANSFER_MICRO};
use maxwell_types::NodeId;

impl Market {
    /// Why `account`'s guest cannot move now, if it cannot: it is not
    /// running or paused, it owes arrears (it pays them here first), or
    /// its wallet is more than one deposit may bring (no target takes it).
    pub fn may_move(&self, account: AccountId) -> Result<&Account, MarketError> {
        let a = self.open_account(account)?;
        if !live(a) {
            return Err(MarketError::Closed(account));
        }
        if a.arrears_micro > 0 || (a.order.class == Class::Critical && a.broke_since_ms.is_some()) {
            return Err(MarketError::Invalid(Invalid {
                field: "account",
                why: format!("account {account} owes arrears: it pays them here before it moves"),
            }));
        }
        if a.wallet_micro > MAX_TRANSFER_MICRO {
            return Err(MarketError::TransferAmount(a.wallet_micro));
        }
        Ok(a)
    }

    /// The transfer that would send `account`'s guest, with its wallet, to
    /// `to`: for the driver to sign and record as [`Entry::Out`]. A guest
    /// that cannot move ([`Self::may_move`]) does not.
    pub fn transfer_out(
        &self,
        account: AccountId,
        to: NodeId,
        now_ms: u64,
    ) -> Result<Transfer, MarketError> {
        let a = self.may_move(account)?;
        Ok(Transfer {
            from: self.node,
            to,
            account,
            guest: a.order.name.clone(),
            amount_micro: a.wallet_micro,
            at_ms: now_ms,
        })
    }

    /// The entry that opens an account for a guest arrived with
    /// `transfer`, run here as backend guest `vm`, with the signatures the
    /// driver checked (the source's) and made (this node's).
    pub fn transfer_in(
        &self,
        vm: u64,
        order: Order,
        transfer: Transfer,
        seals: Seals,
        now_ms: u64,
    ) -> Result<Entry, MarketError> {
        order.check()?;
        // As a deposit is bounded, so that sums never overflow.
        if transfer.amount_micro > MAX_TRANSFER_MICRO {
            return Err(MarketError::TransferAmount(transfer.amount_micro));
        }
        self.takes_in(transfer.amount_micro)?;
        Ok(Entry::In {
            account: self.next_account,
            vm,
            order,
            at_ms: now_ms,
            transfer,
            source_key: seals.source_key,
            source_signature: seals.source_signature,
            signature: seals.signature,
        })
    }

    /// Whether the books balance: `deposits + moved in = wallets +
    /// revenue + tax + refunds + moved out + escrow`; the difference if not.
    pub fn check_books(&self) -> Result<(), i128> {
        let t = &self.totals;
        let inn = i128::from(t.deposited_micro) + i128::from(t.moved_in_micro);
        let out = [
            self.wallets_micro(),
            t.revenue_micro,
            t.taxed_micro,
            t.refunded_micro,
            t.moved_out_micro,
            t.escrow_micro,
        ]
        .iter()
        .map(|v| i128::from(*v))
        .sum::<i128>();
        match inn - out {
            0 => Ok(()),
            d => Err(d),
        }
    }

    /// The entry that settles the transfer out of `account`. For
    /// [`Settled::Back`] the new account's id is this market's next.
    pub fn settle(
        &self,
        account: AccountId,
        delivered: bool,
        back_as_vm: Option<u64>,
        now_ms: u64,
    ) -> Result<Entry, MarketError> {
        if !self.outbound.contains_key(&account) {
            return Err(MarketError::NoSuchAccount(account));
        }
        let outcome = match (delivered, back_as_vm) {
            (true, _) => Settled::Delivered,
            (false, Some(vm)) => Settled::Back {
                account: self.next_account,
                vm,
            },
            (false, None) => Settled::Refunded,
        };
        Ok(Entry::Settle {
            account,
            outcome,
            at_ms: now_ms,
        })
    }

    /// Transfers out not yet settled.
    pub fn outbound(&self) -> impl Iterator<Item = &Outbound> {
        self.outbound.values()
    }

    /// The unsettled transfer out of `account`, if any.
    pub fn outbound_of(&self, account: AccountId) -> Option<&Outbound> {
        self.outbound.get(&account)
    }

    /// True once the transfer of `from`'s `account` has been taken in here.
    pub fn has_arrived(&self, from: NodeId, account: AccountId) -> bool {
        self.arrived.contains(&(from, account))
    }

    pub(super) fn apply_out(&mut self, t: &Transfer, endpoint: Option<std::net::SocketAddr>) {
        let Some(a) = self.accounts.get_mut(&t.account) else {
            return;
        };
        if matches!(a.standing, Standing::Closed(_)) {
            return;
        }
        let amount = t.amount_micro.min(a.wallet_micro);
        a.wallet_micro -= amount;
        let (order, vm) = (a.order.clone(), a.vm);
        self.totals.escrow_micro = self.totals.escrow_micro.saturating_add(amount);
        let transfer = Transfer {
            amount_micro: amount,
            ..t.clone()
        };
        self.outbound.insert(
            t.account,
            Outbound {
                transfer,
                order,
                vm,
                endpoint,
            },
        );
        self.close_account(t.account, Reason::Moved, t.at_ms);
    }

    pub(super) fn apply_in(
        &mut self,
        account: AccountId,
        vm: u64,
        order: &Order,
        t: &Transfer,
        at_ms: u64,
        live_mode: bool,
    ) {
        if !self.arrived.insert((t.from, t.account)) {
            return;
        }
        self.totals.moved_in_micro = self.totals.moved_in_micro.saturating_add(t.amount_micro);
        self.insert_account(account, vm, order, t.amount_micro, at_ms, live_mode);
    }

    pub(super) fn apply_settle(
        &mut self,
        account: AccountId,
        outcome: Settled,
        at_ms: u64,
        live_mode: bool,
    ) {
        let Some(o) = self.outbound.remove(&account) else {
            return;
        };
        let amount = o.transfer.amount_micro;
        self.totals.escrow_micro = self.totals.escrow_micro.saturating_sub(amount);
        match outcome {
            Settled::Delivered => {
                self.totals.moved_out_micro = self.totals.moved_out_micro.saturating_add(amount);
            }
            Settled::Refunded => {
                self.totals.refunded_micro = self.totals.refunded_micro.saturating_add(amount);
            }
            Settled::Back { account, vm } => {
                self.insert_account(account, vm, &o.order, amount, at_ms, live_mode);
            }
        }
    }
}

#[cfg(test)]
mod tests;
