//! The record the tiered mesh's carriers sign ([`crate::tier`]): a
//! [`Summary`] of a rack (what a carrier tells the other racks) or of the
//! world (what a carrier tells its own rack), with the cheapest offers in
//! that scope.
//!
//! An offer is a hint: it names a node, its price and its headroom as the
//! carrier last held them from that node's own signed report. Whoever acts on
//! one (placement) asks the node itself before spending anything.

use crate::node_id::NodeId;
use crate::report::{RecordError, RecordKind, Signable, MAX_RACK_LEN};
use crate::units::{MicroWatts, MilliCelsius};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// Most offers one summary carries.
pub const MAX_OFFERS: usize = 4;

/// What a summary covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// The carrier's rack: sent to the other racks' carriers.
    Rack,
    /// Every rack the carrier hears of: sent to its own rack.
    World,
}

/// One node's price, as a summary carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub node_id: NodeId,
    pub price_milli: u64,
    pub headroom: MicroWatts,
    pub hottest: MilliCelsius,
    /// When the node signed the report this offer is from, unix ms: of
    /// two offers for one node, the later wins.
    pub at_ms: u64,
}

impl Offer {
    /// Cheapest first; among equal prices the cooler, then the lower id.
    pub fn rank(&self) -> (u64, MilliCelsius, NodeId) {
        (self.price_milli, self.hottest, self.node_id)
    }
}

/// A carrier's signed summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The carrier that signs it.
    pub node_id: NodeId,
    /// The carrier's generation, as in its reports.
    pub generation: u64,
    /// Strictly increasing among its summaries of one generation.
    pub seq: u64,
    pub timestamp_ms: u64,
    pub scope: Scope,
    /// The carrier's rack (at most [`MAX_RACK_LEN`] bytes).
    pub rack: String,
    /// Where the carrier speaks the upper tier: a new carrier of the same
    /// rack joins the tier through it.
    pub upper: SocketAddr,
    /// Nodes (rack scope) or racks (world scope) summarised.
    pub members: u32,
    /// The hottest reading in scope.
    pub hottest: MilliCelsius,
    /// The cheapest offers in scope, cheapest first (at most [`MAX_OFFERS`]).
    pub offers: Vec<Offer>,
}

impl Signable for Summary {
    const KIND: RecordKind = RecordKind::Summary;
    fn author(&self) -> NodeId {
        self.node_id
    }
    fn order(&self) -> (u64, u64) {
        (self.generation, self.seq)
    }
    fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
    fn validate(&self) -> Result<(), RecordError> {
        if self.rack.len() > MAX_RACK_LEN {
            return Err(RecordError::RackTooLong {
                len: self.rack.len(),
            });
        }
        if self.offers.len() > MAX_OFFERS {
            return Err(RecordError::TooManyOffers {
                len: self.offers.len(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node_id::KeyedNodeId;
    use crate::wire::SignedRecord;
    use crate::Record;
    use ed25519_dalek::SigningKey;

    fn summary(key: &SigningKey, offers: usize) -> Summary {
        let node_id = NodeId::from_verifying_key(&key.verifying_key());
        Summary {
            node_id,
            generation: 1_764_201_600_000,
            seq: 3,
            timestamp_ms: 1_764_201_642_000,
            scope: Scope::Rack,
            rack: "r".repeat(MAX_RACK_LEN),
            upper: "[2001:db8::1]:7947".parse().expect("addr"),
            members: 40,
            hottest: MilliCelsius(91_000),
            offers: (0..offers)
                .map(|i| Offer {
                    node_id: NodeId([i as u8; 10]),
                    price_milli: u64::MAX,
                    headroom: MicroWatts(i64::MIN),
                    hottest: MilliCelsius(i64::MIN),
                    at_ms: u64::MAX,
                })
                .collect(),
        }
    }

    #[test]
    fn the_largest_summary_fits_a_held_record_and_round_trips() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let s = summary(&key, MAX_OFFERS);
        let bytes = SignedRecord::sign(&s, &key).expect("signs").to_bytes();
        assert!(
            bytes.len() <= crate::swim::MAX_RECORD_BYTES,
            "{}",
            bytes.len()
        );
        let opened = SignedRecord::from_bytes(&bytes).expect("parses").open();
        assert_eq!(opened, Ok(Record::Summary(s)));
    }

    #[test]
    fn too_many_offers_are_refused_when_signing() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let s = summary(&key, MAX_OFFERS + 1);
        assert_eq!(
            SignedRecord::sign(&s, &key).err(),
            Some(RecordError::TooManyOffers {
                len: MAX_OFFERS + 1
            })
        );
    }
}
