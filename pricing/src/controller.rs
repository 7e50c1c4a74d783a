//! The dynamic part of the law: [`PriceController`] filters the target of
//! [`crate::law::target`] through a rate-limited first-order filter with a
//! hysteresis band, and remembers neighbours that fall silent so that a
//! vanished neighbour counts as stale, never as absent.

use crate::config::PriceParams;
use crate::input::{PeerView, PriceInput, Quote};
use crate::law::{self, Counted};
use maxwell_types::NodeId;
use std::collections::BTreeMap;

/// One node's price state machine. Feed it [`PriceInput`]s with a clock
/// (`now_ms`, any monotonic milliseconds); it answers [`Quote`]s.
#[derive(Debug, Clone)]
pub struct PriceController {
    params: PriceParams,
    /// Current price in thousandths, unrounded; `None` before the first update.
    price: Option<f64>,
    held: bool,
    last_ms: u64,
    /// Last view of every peer seen within `forget_after_ms`, and when.
    memory: BTreeMap<NodeId, (PeerView, u64)>,
}

impl PriceController {
    /// A controller that has quoted nothing yet: its first update jumps
    /// straight to the target.
    pub fn new(params: PriceParams) -> Self {
        Self {
            params,
            price: None,
            held: true,
            last_ms: 0,
            memory: BTreeMap::new(),
        }
    }

    /// Replaces the parameters (a config reload); the price moves from where
    /// it is, under the new law's rate limit.
    pub fn set_params(&mut self, params: PriceParams) {
        self.params = params;
    }

    /// The parameters in force.
    pub fn params(&self) -> &PriceParams {
        &self.params
    }

    /// The last price quoted, if any.
    pub fn price_milli(&self) -> Option<u64> {
        self.price.map(|p| p.round() as u64)
    }

    /// Drops a peer that left gracefully (a signed leave): it is no longer
    /// counted, not even as stale.
    pub fn forget(&mut self, node: &NodeId) {
        self.memory.remove(node);
    }

    /// Takes one snapshot, moves the price one step and says why.
    ///
    /// Peers absent from `input` but seen within `forget_after_ms` are
    /// counted as stale. A `now_ms` earlier than the previous one is treated
    /// as no time passing (the price does not move).
    pub fn update(&mut self, input: &PriceInput, now_ms: u64) -> Quote {
        let forget_after_ms = self.params.config().forget_after_ms;
        let mut present = std::collections::BTreeSet::new();
        for peer in &input.peers {
            present.insert(peer.node);
            self.memory.insert(peer.node, (peer.clone(), now_ms));
        }
        self.memory.retain(|node, (_, seen)| {
            present.contains(node) || now_ms.saturating_sub(*seen) <= forget_after_ms
        });
        let aged: Vec<(PeerView, bool)> = self
            .memory
            .iter()
            .map(|(node, (view, seen))| {
                if present.contains(node) {
                    (view.clone(), view.stale)
                } else {
                    let mut v = view.clone();
                    v.age_ms = v.age_ms.saturating_add(now_ms.saturating_sub(*seen));
                    (v, true)
                }
            })
            .collect();
        let counted: Vec<Counted<'_>> = aged
            .iter()
            .map(|(view, stale)| Counted {
                view,
                stale: *stale,
            })
            .collect();
        let t = law::target(&self.params, &input.own, &input.position, &counted);

        let price = self.step(t.target_milli as f64, now_ms);
        Quote {
            price_milli: price.round() as u64,
            target_milli: t.target_milli,
            terms: t.terms,
            held: self.held,
            rack_draw_w: t.rack_draw_w,
            fresh_peers: t.fresh,
            stale_peers: t.stale,
        }
    }

    /// One step of the filter toward `target`: first-order with gain
    /// `filter_gain` per round (scaled down for shorter intervals), at most
    /// `max_step_milli` per round, held inside the hysteresis band.
    fn step(&mut self, target: f64, now_ms: u64) -> f64 {
        let c = self.params.config();
        let (lo, hi) = (c.floor_milli as f64, c.ceiling_milli as f64);
        let Some(mut price) = self.price else {
            self.price = Some(target);
            self.last_ms = now_ms;
            self.held = true;
            return target;
        };
        let frac = (now_ms.saturating_sub(self.last_ms) as f64 / c.round_ms as f64).min(1.0);
        self.last_ms = self.last_ms.max(now_ms);
        let err = target - price;
        if self.held && err.abs() > c.band_on_milli as f64 {
            self.held = false;
        }
        if !self.held {
            let limit = c.max_step_milli as f64 * frac;
            price += (c.filter_gain * frac * err).clamp(-limit, limit);
            price = price.clamp(lo, hi);
            if (target - price).abs() <= c.band_off_milli as f64 {
                self.held = true;
            }
        }
        self.price = Some(price);
        price
    }
}
