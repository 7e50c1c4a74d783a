//! `maxwell-gossip`: what a maxwell agent says about its heat, and how every
//! other agent decides whether to believe it. Pure code: no I/O, no clock, no
//! OS randomness; time is always a parameter (`now_ms`, unix milliseconds),
//! and keys and seeds are passed in.
//!
//! - [`report`]: the records, [`HeatReport`] and the graceful [`Leave`].
//! - [`wire`]: [`SignedRecord`], the ed25519-signed envelope and its compact
//!   text form (unpadded base64url of `kind | key | signature | postcard body`),
//!   as the mesh carries it (bytes) and `Membership` takes it (text).
//! - [`verify`]: [`Verifier`], the state machine that admits a value only if
//!   it is well-formed, signed by the key of the node it claims to come from,
//!   allowlisted (when an allowlist is set), recent, and newer than anything
//!   accepted from that node; every refusal is counted by reason.
//! - [`allowlist`]: parsing of the admission file.
//! - [`seal`]: sealed datagrams: a MAC under the cluster key and a replay
//!   window per sender, checked before a datagram is parsed.
//! - [`swim`]: the mesh protocol, a sans-io state machine: SWIM membership
//!   (foca) and the records' spreading (gossip, an urgent push, digests),
//!   all in sealed datagrams.
//!
//! Contracts:
//! - decoding never panics and never allocates more than
//!   [`wire::MAX_ENCODED_LEN`]-proportional memory for one value;
//! - a node is a member only while its latest accepted record is a report;
//!   downstream code must treat [`Freshness::Stale`] members as hot, never cool;
//! - the verifier keeps state only for nodes with an accepted record, at most
//!   [`VerifierConfig::max_tracked_nodes`] of them.
//!
//! The protocol, its versioning and threat model are in `docs/protocol.md`.

pub mod allowlist;
mod b64;
pub mod membership;
pub mod node_id;
pub mod report;
pub mod seal;
pub mod summary;
pub mod swim;
pub mod tier;
pub mod verify;
pub mod wire;

pub use allowlist::{Allowlist, AllowlistError};
pub use maxwell_types::units::{self, MicroJoules, MicroWatts, MilliCelsius};
pub use maxwell_types::Position;
pub use membership::{
    Liveness, Member, MemberStatus, Membership, MembershipEvent, PeerObservation,
};
pub use node_id::{KeyedNodeId, NodeId};
pub use report::{
    HeatReport, Leave, Record, RecordError, RecordKind, Room, SensorSource, Signable,
    RECORD_VERSION,
};
pub use summary::{Offer, Scope, Summary};
pub use verify::{
    Freshness, MemberView, RejectCounters, RejectReason, Verified, Verifier, VerifierConfig,
};
pub use wire::{DecodeError, SignedRecord, MAX_ENCODED_LEN};
