//! The latest signed record of every member, as the mesh relays them.
//!
//! A record is held (and so relayed) only when its signature holds for the
//! key it names and it is newer than the one held for that node: a member
//! that holds the cluster key still cannot make others spread a record it
//! did not sign, nor an old one again. Time, admission and the allowlist are
//! the [`crate::Verifier`]'s business, downstream.

use super::frame::Entry;
use super::peer::Peer;
use crate::node_id::NodeId;
use crate::report::{Record, RecordKind};
use crate::wire::SignedRecord;
use maxwell_types::sync::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// Largest record bytes taken (a report is about 170, a summary at most 411).
pub const MAX_RECORD_BYTES: usize = 448;

/// Records of one node are held one per slot: its report or leave (a leave
/// ends the reports), and its summary (see [`crate::tier`]).
pub type Slot = u8;
pub const REPORT_SLOT: Slot = 0;
pub const SUMMARY_SLOT: Slot = 1;

/// The slot a record of `kind` is held in.
pub fn slot(kind: RecordKind) -> Slot {
    match kind {
        RecordKind::Report | RecordKind::Leave => REPORT_SLOT,
        RecordKind::Summary => SUMMARY_SLOT,
    }
}

/// One node's latest record in one slot.
#[derive(Debug, Clone)]
pub struct Held {
    pub bytes: Vec<u8>,
    pub generation: u64,
    pub seq: u64,
    /// The record, opened once when it arrived.
    pub record: Record,
}

impl Held {
    /// Its rack, for a report (the urgent path pushes to rack neighbours).
    pub fn rack(&self) -> Option<&str> {
        match &self.record {
            Record::Report(r) => Some(&r.position.rack),
            Record::Leave(_) | Record::Summary(_) => None,
        }
    }
}

/// What became of a record offered to the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Newer than anything held for its node and slot: held now, and to be
    /// relayed.
    New(NodeId, Slot),
    /// Already held.
    Known,
    /// Older than the one held: late, or replayed.
    Stale,
    /// Unsigned, mis-signed, malformed, oversized, or the store is full.
    Refused,
}

/// The records held, shared with foca's broadcast handler.
#[derive(Debug)]
pub struct Store {
    held: BTreeMap<(NodeId, Slot), Held>,
    max: usize,
    refused: u64,
    stale: u64,
    /// Nodes whose record changed since the driver last asked.
    changed: Vec<NodeId>,
}

impl Store {
    pub fn new(max: usize) -> Self {
        Self {
            held: BTreeMap::new(),
            max,
            refused: 0,
            stale: 0,
            changed: Vec::new(),
        }
    }

    /// Offers record bytes from anywhere (a peer, or this node itself).
    pub fn offer(&mut self, bytes: &[u8]) -> Offer {
        let outcome = self.check(bytes);
        match outcome {
            Offer::Refused => self.refused += 1,
            Offer::Stale => self.stale += 1,
            Offer::New(node, _) => self.changed.push(node),
            Offer::Known => {}
        }
        outcome
    }

    fn check(&mut self, bytes: &[u8]) -> Offer {
        if bytes.len() > MAX_RECORD_BYTES {
            return Offer::Refused;
        }
        let Ok(signed) = SignedRecord::from_bytes(bytes) else {
            return Offer::Refused;
        };
        let key = (signed.key_node_id(), slot(signed.kind()));
        let held = self.held.get(&key);
        if held.is_some_and(|h| h.bytes == bytes) {
            return Offer::Known;
        }
        if held.is_none() && self.held.len() >= self.max {
            return Offer::Refused;
        }
        let Ok(record) = signed.open() else {
            return Offer::Refused;
        };
        let (generation, seq) = record.order();
        if held.is_some_and(|h| (h.generation, h.seq) >= (generation, seq)) {
            return Offer::Stale;
        }
        self.held.insert(
            key,
            Held {
                bytes: bytes.to_vec(),
                generation,
                seq,
                record,
            },
        );
        Offer::New(key.0, key.1)
    }

    /// A node's report (or leave).
    pub fn get(&self, node: &NodeId) -> Option<&Held> {
        self.at(*node, REPORT_SLOT)
    }

    /// A node's record in `slot`.
    pub fn at(&self, node: NodeId, slot: Slot) -> Option<&Held> {
        self.held.get(&(node, slot))
    }

    /// Every node with a record held.
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.held.keys().map(|(node, _)| *node).collect()
    }

    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Forgets a node the membership forgot (all its slots).
    pub fn forget(&mut self, node: &NodeId) {
        for slot in [REPORT_SLOT, SUMMARY_SLOT] {
            self.held.remove(&(*node, slot));
        }
    }

    /// Records refused so far, and records older than the one held.
    pub fn refused(&self) -> (u64, u64) {
        (self.refused, self.stale)
    }

    /// Nodes whose record changed since the last call.
    pub fn take_changed(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.changed)
    }

    /// The order of every record held for a node id in `lo..=hi`.
    pub fn entries(&self, lo: NodeId, hi: NodeId) -> Vec<Entry> {
        self.held
            .range((lo, Slot::MIN)..=(hi, Slot::MAX))
            .map(|((node, slot), h)| Entry {
                node: *node,
                slot: *slot,
                generation: h.generation,
                seq: h.seq,
            })
            .collect()
    }

    /// Records in `lo..=hi` that the holder of `theirs` lacks or holds older.
    pub fn newer_than(&self, lo: NodeId, hi: NodeId, theirs: &[Entry]) -> Vec<Vec<u8>> {
        let theirs: BTreeMap<(NodeId, Slot), (u64, u64)> = theirs
            .iter()
            .map(|e| ((e.node, e.slot), (e.generation, e.seq)))
            .collect();
        self.held
            .range((lo, Slot::MIN)..=(hi, Slot::MAX))
            .filter(|(key, h)| theirs.get(key).is_none_or(|o| *o < (h.generation, h.seq)))
            .map(|(_, h)| h.bytes.clone())
            .collect()
    }
}

/// Which record a piggybacked broadcast is: a newer one of the same node
/// replaces it in foca's backlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordKey {
    node: (NodeId, Slot),
    order: (u64, u64),
}

impl foca::Invalidates for RecordKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && self.order >= other.order
    }
}

/// A refusal is counted in the store, never an error to foca (which would
/// drop the rest of the message with it).
#[derive(Debug, thiserror::Error)]
#[error("never returned")]
pub struct Never;

/// foca's view of the store.
#[derive(Debug, Clone)]
pub struct Handler(pub Arc<Mutex<Store>>);

impl foca::BroadcastHandler<Peer> for Handler {
    type Key = RecordKey;
    type Error = Never;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&Peer>,
    ) -> Result<Option<RecordKey>, Never> {
        let mut store = lock(&self.0);
        Ok(match store.offer(data) {
            Offer::New(node, slot) => store.held.get(&(node, slot)).map(|h| RecordKey {
                node: (node, slot),
                order: (h.generation, h.seq),
            }),
            Offer::Known | Offer::Stale | Offer::Refused => None,
        })
    }
}
