//! The records a node signs and gossips: its [`HeatReport`] and, when it shuts
//! down cleanly, a [`Leave`]. Plain data with bounds checks; encoding and
//! signing live in [`crate::wire`].
//!
//! Neither struct carries its version: the wire form writes
//! [`RECORD_VERSION`] in front of the postcard body, inside the signed bytes,
//! so a version can neither be forgotten by a caller nor altered in transit.

use crate::node_id::NodeId;
use crate::summary::Summary;
use crate::units::{MicroWatts, MilliCelsius};
use maxwell_types::Position;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Version of the record layout this crate writes and the only one it accepts.
/// Postcard is not self-describing, so any change to a field of [`HeatReport`]
/// or [`Leave`] (added, removed, reordered, retyped) needs a new version.
pub const RECORD_VERSION: u16 = 3;

/// Longest rack name, in bytes of UTF-8. Keeps every record small enough for
/// one datagram easily (see [`crate::wire::MAX_ENCODED_LEN`]).
pub const MAX_RACK_LEN: usize = 64;

/// Longest node name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;

/// Where a node's temperatures and power figures came from. Lower case in
/// JSON; postcard encodes the variant's index, so the wire form is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorSource {
    /// Linux hwmon / powercap files read directly from `/sys`.
    Sysfs,
    /// lm-sensors' libsensors.
    Libsensors,
    /// Synthetic values (tests, demos, hosts without sensors). Downstream code
    /// may show these but should not act on them as if they were measured.
    Emulated,
}

impl SensorSource {
    /// Lower-case name, as in config, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sysfs => "sysfs",
            Self::Libsensors => "libsensors",
            Self::Emulated => "emulated",
        }
    }
}

/// What a host has for guests: how many it runs, and the vCPUs and memory
/// its admission limits still leave (version 2 of the record added it and
/// the API address, for the dashboard and for placement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Room {
    pub guests: u32,
    pub free_vcpus: u32,
    pub free_memory_mib: u32,
}

/// One node's signed statement of its heat and power at `timestamp_ms`.
///
/// Ordering between reports of one node is `(generation, seq)`,
/// lexicographically: a restart picks a larger `generation` and may start
/// `seq` again from zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeatReport {
    /// The author: must be the id of the key that signs the report.
    pub node_id: NodeId,
    /// Human name of the node (signed, so no peer can rename another), at
    /// most [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// Incarnation of the agent, strictly larger after every restart
    /// (the agent's start time in unix ms is the usual choice; it is also
    /// what the mesh identity starts from).
    pub generation: u64,
    /// Counter of records within a generation, strictly increasing.
    pub seq: u64,
    /// When the readings were taken, unix time in milliseconds.
    pub timestamp_ms: u64,
    /// Where the node sits: its rack (a name of at most [`MAX_RACK_LEN`]
    /// bytes) and slot. On the wire, the two fields in order.
    pub position: Position,
    /// Hottest sensor reading on the host.
    pub hottest: MilliCelsius,
    /// Critical limit of that sensor.
    pub critical: MilliCelsius,
    /// Power the host draws now.
    pub power_draw: MicroWatts,
    /// Power cap in force.
    pub power_cap: MicroWatts,
    /// Headroom under the cap (negative when over it).
    pub headroom: MicroWatts,
    /// The node's price when it signed the report, in thousandths of a unit (`docs/pricing.md`).
    pub price_milli: u64,
    /// Where the readings came from.
    pub source: SensorSource,
    /// Its guests and the room left for more.
    pub room: Room,
    /// Where its HTTP API listens, as bound (an unspecified IP means "my
    /// gossip address"); the dashboard links to its page there.
    pub api: Option<std::net::SocketAddr>,
    /// Where its p2p endpoint takes placement offers, as bound (the same
    /// rule; version 3 of the record added it). Its key is the one that
    /// signs this report.
    pub p2p: Option<std::net::SocketAddr>,
}

/// A node's signed statement that it is leaving the cluster for good in
/// `generation`. Its peers stop counting it as a member and refuse any later
/// record of that generation or an older one; a restart (newer generation)
/// brings it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// The author: must be the id of the key that signs the record.
    pub node_id: NodeId,
    /// Generation that ends with this record.
    pub generation: u64,
    /// Next sequence number of that generation (greater than its last report's).
    pub seq: u64,
    /// When the node left, unix time in milliseconds.
    pub timestamp_ms: u64,
}

/// A record that can not be signed or was decoded with out-of-bounds fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The node name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("node name is {len} bytes, the limit is {MAX_NAME_LEN}")]
    NameTooLong {
        /// Length of the rejected name, in bytes.
        len: usize,
    },
    /// The rack name is longer than [`MAX_RACK_LEN`] bytes.
    #[error("rack name is {len} bytes, the limit is {MAX_RACK_LEN}")]
    RackTooLong {
        /// Length of the rejected name, in bytes.
        len: usize,
    },
    /// The record names a node other than the one owning the signing key.
    #[error("record is for node {record} but the signing key belongs to {key}")]
    NodeIdMismatch {
        /// Node id written in the record.
        record: NodeId,
        /// Node id of the signing key.
        key: NodeId,
    },
    /// A summary carries more than [`crate::summary::MAX_OFFERS`] offers.
    #[error(
        "summary carries {len} offers, the limit is {}",
        crate::summary::MAX_OFFERS
    )]
    TooManyOffers {
        /// Offers in the rejected summary.
        len: usize,
    },
    /// Postcard could not encode the record (not expected for these types:
    /// encoding into a `Vec` has no failure path they can reach).
    #[error("postcard could not encode the record: {0}")]
    Encode(postcard::Error),
}

impl HeatReport {
    /// Checks the bounds that the wire format relies on.
    pub fn validate(&self) -> Result<(), RecordError> {
        if self.name.len() > MAX_NAME_LEN {
            return Err(RecordError::NameTooLong {
                len: self.name.len(),
            });
        }
        if self.position.rack.len() > MAX_RACK_LEN {
            return Err(RecordError::RackTooLong {
                len: self.position.rack.len(),
            });
        }
        Ok(())
    }
}

/// Which record an envelope carries, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A [`HeatReport`], byte `0x01`.
    Report,
    /// A [`Leave`], byte `0x02`.
    Leave,
    /// A carrier's [`crate::Summary`], byte `0x03`.
    Summary,
}

impl RecordKind {
    /// Every kind, in byte order.
    pub const ALL: [RecordKind; 3] = [RecordKind::Report, RecordKind::Leave, RecordKind::Summary];

    /// Lower-case name, for metric labels and logs.
    pub fn label(self) -> &'static str {
        match self {
            RecordKind::Report => "report",
            RecordKind::Leave => "leave",
            RecordKind::Summary => "summary",
        }
    }

    /// Position in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            RecordKind::Report => 0,
            RecordKind::Leave => 1,
            RecordKind::Summary => 2,
        }
    }

    /// The envelope's first byte for this kind.
    pub fn byte(self) -> u8 {
        match self {
            RecordKind::Report => 0x01,
            RecordKind::Leave => 0x02,
            RecordKind::Summary => 0x03,
        }
    }

    /// The kind whose envelope byte is `b`.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            0x01 => Some(RecordKind::Report),
            0x02 => Some(RecordKind::Leave),
            0x03 => Some(RecordKind::Summary),
            _ => None,
        }
    }
}

/// A kind of record a node signs and gossips. The signing and verifying
/// layer ([`crate::wire`], [`crate::verify`]) is generic over it: each kind
/// has its envelope byte ([`RecordKind`]), is replay-ordered by
/// `(generation, seq)` per (node, kind), carries its author and time, and
/// checks its own bounds. A new kind (a bid, an offer, a receipt) is a
/// struct, an impl of this trait, a [`RecordKind`] byte and a [`Record`]
/// variant.
pub trait Signable: Serialize + DeserializeOwned + Clone + Into<Record> {
    /// Its envelope byte.
    const KIND: RecordKind;
    /// The author: must be the id of the signing key.
    fn author(&self) -> NodeId;
    /// `(generation, seq)`: its place among its author's records of its kind.
    fn order(&self) -> (u64, u64);
    /// When it was made, unix ms.
    fn timestamp_ms(&self) -> u64;
    /// The bounds the wire format relies on.
    fn validate(&self) -> Result<(), RecordError> {
        Ok(())
    }
}

impl Signable for HeatReport {
    const KIND: RecordKind = RecordKind::Report;
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
        HeatReport::validate(self)
    }
}

impl Signable for Leave {
    const KIND: RecordKind = RecordKind::Leave;
    fn author(&self) -> NodeId {
        self.node_id
    }
    fn order(&self) -> (u64, u64) {
        (self.generation, self.seq)
    }
    fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }
}

/// Any kind of signed record, as the mesh carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A heat report.
    Report(HeatReport),
    /// A graceful leave.
    Leave(Leave),
    /// A tiered mesh carrier's summary.
    Summary(Summary),
}

impl From<HeatReport> for Record {
    fn from(r: HeatReport) -> Self {
        Record::Report(r)
    }
}

impl From<Leave> for Record {
    fn from(l: Leave) -> Self {
        Record::Leave(l)
    }
}

impl From<Summary> for Record {
    fn from(s: Summary) -> Self {
        Record::Summary(s)
    }
}

/// Calls `$f` on the [`Signable`] inside a [`Record`].
macro_rules! each_kind {
    ($record:expr, $r:ident => $f:expr) => {
        match $record {
            Record::Report($r) => $f,
            Record::Leave($r) => $f,
            Record::Summary($r) => $f,
        }
    };
}

impl Record {
    /// Its kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            Record::Report(_) => RecordKind::Report,
            Record::Leave(_) => RecordKind::Leave,
            Record::Summary(_) => RecordKind::Summary,
        }
    }

    /// The author named in the record.
    pub fn node_id(&self) -> NodeId {
        each_kind!(self, r => r.author())
    }

    /// `(generation, seq)`: the order of one node's records of this kind.
    pub fn order(&self) -> (u64, u64) {
        each_kind!(self, r => r.order())
    }

    /// When the record was made, unix ms.
    pub fn timestamp_ms(&self) -> u64 {
        each_kind!(self, r => r.timestamp_ms())
    }

    /// Checks the bounds that the wire format relies on.
    pub fn validate(&self) -> Result<(), RecordError> {
        each_kind!(self, r => Signable::validate(r))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A realistic report for tests: rack "r12", a 350 W host at 71.5 °C.
    pub(crate) fn sample(node_id: NodeId) -> HeatReport {
        HeatReport {
            node_id,
            name: "r12-u17".to_string(),
            generation: 1_764_201_600_000,
            seq: 42,
            timestamp_ms: 1_764_201_642_000,
            position: Position::new("r12", 17),
            hottest: MilliCelsius(71_500),
            critical: MilliCelsius(95_000),
            power_draw: MicroWatts::from_watts(350.0),
            power_cap: MicroWatts::from_watts(400.0),
            headroom: MicroWatts::from_watts(50.0),
            price_milli: 0,
            source: SensorSource::Sysfs,
            room: Default::default(),
            api: None,
            p2p: None,
        }
    }

    #[test]
    fn rack_length_is_bounded() {
        let mut r = sample(NodeId([1; 10]));
        assert_eq!(r.validate(), Ok(()));
        r.position.rack = "x".repeat(MAX_RACK_LEN);
        assert_eq!(r.validate(), Ok(()));
        r.position.rack.push('x');
        assert_eq!(
            r.validate(),
            Err(RecordError::RackTooLong {
                len: MAX_RACK_LEN + 1
            })
        );
        assert_eq!(
            Record::Report(r).validate(),
            Err(RecordError::RackTooLong {
                len: MAX_RACK_LEN + 1
            })
        );
    }

    #[test]
    fn record_accessors() {
        let r = sample(NodeId([2; 10]));
        let rec = Record::Report(r.clone());
        assert_eq!(rec.order(), (1_764_201_600_000, 42));
        assert_eq!(rec.timestamp_ms(), 1_764_201_642_000);
        assert_eq!(rec.node_id(), NodeId([2; 10]));
        let leave = Record::Leave(Leave {
            node_id: NodeId([3; 10]),
            generation: 5,
            seq: 9,
            timestamp_ms: 77,
        });
        assert_eq!(leave.order(), (5, 9));
        assert_eq!(leave.timestamp_ms(), 77);
        assert_eq!(leave.node_id(), NodeId([3; 10]));
        assert_eq!(leave.validate(), Ok(()));
    }
}
