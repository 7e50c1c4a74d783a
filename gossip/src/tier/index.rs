//! A carrier's running reading of the upper tier's summaries. [`Tiered`]'s
//! full reading visits every summary held (a thousand at 50 000 nodes) on
//! every change; this one re-reads only the signers that changed, came up,
//! went down or age out, and answers from offers kept in rank order. Debug
//! builds check every answer against the full reading.
//!
//! [`Tiered`]: super::Tiered

use super::{in_time, Others};
use crate::node_id::NodeId;
use crate::summary::{Offer, Scope, Summary, MAX_OFFERS};
use crate::units::MilliCelsius;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What one signer's summary puts in.
#[derive(Debug)]
struct Entry {
    rack: Option<String>,
    counted: Option<u32>,
    hottest: MilliCelsius,
    offers: Vec<Offer>,
}

/// How a summary is read: the reader's clock and who it is.
pub(super) struct Reader<'a> {
    pub now_ms: u64,
    pub ttl_ms: u64,
    pub me: NodeId,
    pub rack: &'a str,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    signers: HashMap<NodeId, Entry>,
    /// Every offer held: its rank, then its signer.
    ranked: BTreeSet<((u64, MilliCelsius, NodeId), NodeId)>,
    /// Each node's offers: when each was signed, by which signer.
    by_node: HashMap<NodeId, Vec<(u64, NodeId)>>,
    racks: BTreeMap<String, u32>,
    hottest: BTreeMap<MilliCelsius, u32>,
    counted: BTreeMap<u32, u32>,
    /// When a signer's entry must be read again (an item ages out or comes
    /// into time), in time order and by signer.
    wakes: BTreeSet<(u64, NodeId)>,
    wake_of: HashMap<NodeId, u64>,
}

impl Index {
    /// Signers whose entry must be read again by `now`.
    pub fn due(&self, now_ms: u64) -> Vec<NodeId> {
        self.wakes
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .map(|(_, s)| *s)
            .collect()
    }

    /// Replaces what `signer` puts in with what `summary` says (`None`:
    /// nothing, as for a signer gone down).
    pub fn set(&mut self, signer: NodeId, summary: Option<&Summary>, r: &Reader<'_>) {
        self.remove(signer);
        let Some(s) = summary else { return };
        if s.node_id != signer || s.node_id == r.me {
            return;
        }
        let mut wake = u64::MAX;
        if !in_time(s.timestamp_ms, r.now_ms, r.ttl_ms, &mut wake) {
            self.insert_wake(signer, wake);
            return;
        }
        let (rack, counted) = match s.scope {
            Scope::Rack if s.rack != r.rack => (Some(s.rack.clone()), None),
            // Our own rack is known from its reports.
            Scope::Rack => {
                self.insert_wake(signer, wake);
                return;
            }
            Scope::World => (None, Some(s.members)),
        };
        let mut offers = Vec::new();
        for o in &s.offers {
            if in_time(o.at_ms, r.now_ms, r.ttl_ms, &mut wake) && o.node_id != r.me {
                offers.push(o.clone());
            }
        }
        if let Some(rack) = &rack {
            *self.racks.entry(rack.clone()).or_default() += 1;
        }
        if let Some(c) = counted {
            *self.counted.entry(c).or_default() += 1;
        }
        *self.hottest.entry(s.hottest).or_default() += 1;
        for o in &offers {
            self.ranked.insert((o.rank(), signer));
            self.by_node
                .entry(o.node_id)
                .or_default()
                .push((o.at_ms, signer));
        }
        self.insert_wake(signer, wake);
        self.signers.insert(
            signer,
            Entry {
                rack,
                counted,
                hottest: s.hottest,
                offers,
            },
        );
    }

    fn insert_wake(&mut self, signer: NodeId, wake: u64) {
        if wake < u64::MAX {
            self.wakes.insert((wake, signer));
            self.wake_of.insert(signer, wake);
        }
    }

    fn remove(&mut self, signer: NodeId) {
        if let Some(wake) = self.wake_of.remove(&signer) {
            self.wakes.remove(&(wake, signer));
        }
        let Some(e) = self.signers.remove(&signer) else {
            return;
        };
        if let Some(rack) = e.rack {
            decrement(&mut self.racks, rack);
        }
        if let Some(c) = e.counted {
            decrement(&mut self.counted, c);
        }
        decrement(&mut self.hottest, e.hottest);
        for o in &e.offers {
            self.ranked.remove(&(o.rank(), signer));
            if let Some(held) = self.by_node.get_mut(&o.node_id) {
                held.retain(|(_, s)| *s != signer);
                if held.is_empty() {
                    self.by_node.remove(&o.node_id);
                }
            }
        }
    }

    /// The reading, leaving out `ours` (this rack's nodes).
    pub fn read(&self, ours: &BTreeSet<NodeId>) -> Others {
        let mut offers: Vec<Offer> = Vec::with_capacity(MAX_OFFERS);
        for ((_, _, node), signer) in &self.ranked {
            if offers.len() == MAX_OFFERS {
                break;
            }
            if ours.contains(node) || offers.iter().any(|o| o.node_id == *node) {
                continue;
            }
            let Some(offer) = self.signers[signer]
                .offers
                .iter()
                .find(|o| o.node_id == *node)
            else {
                continue;
            };
            // Only a node's newest offer counts; in rank order, the first
            // of its newest is the cheapest of them.
            let newest = self.by_node[node].iter().map(|(at, _)| *at).max();
            if newest == Some(offer.at_ms) {
                offers.push(offer.clone());
            }
        }
        Others {
            racks: self.racks.len() as u32,
            counted: self.counted.keys().next_back().copied().unwrap_or(0),
            hottest: self.hottest.keys().next_back().copied().unwrap_or_default(),
            offers,
            until_ms: self.wakes.first().map_or(u64::MAX, |(at, _)| *at),
        }
    }
}

/// A multiset's count of `key` down by one; at none, the key goes.
fn decrement<K: Ord>(counts: &mut BTreeMap<K, u32>, key: K) {
    if let Some(c) = counts.get_mut(&key) {
        *c -= 1;
        if *c == 0 {
            counts.remove(&key);
        }
    }
}
