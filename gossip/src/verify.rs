//! The verifier: a plain state machine that turns gossiped records into
//! trusted records, or into a counted reason for refusing them.
//!
//! Checks, cheapest first (the first failure is the reason counted):
//!
//! 0. a value byte-identical to the node's last accepted one is
//!    [`Verified::Unchanged`] (gossip re-sends state every round; the check
//!    compares the whole text, so it can not be used to skip a signature);
//! 1. size, base64, envelope layout ([`RejectReason::Oversized`], [`RejectReason::Malformed`]);
//! 2. admission: key in the allowlist, when one is set ([`RejectReason::NotAllowlisted`]);
//! 3. the key hashes to the node id the value was gossiped under ([`RejectReason::KeyMismatch`]);
//! 4. strict ed25519 signature ([`RejectReason::BadSignature`]), then the body:
//!    version ([`RejectReason::UnsupportedVersion`]), layout, and that it names the same node;
//! 5. timestamp within `[now - max_age_ms, now + max_clock_skew_ms]`
//!    ([`RejectReason::TooOld`], [`RejectReason::FromFuture`]);
//! 6. `(generation, seq)` newer than the last record accepted from the node, and
//!    not in a generation the node has left ([`RejectReason::Replay`]);
//! 7. room to track a node not seen before ([`RejectReason::TrackingLimit`]).
//!
//! State is kept only for nodes with an accepted record, so a peer can make
//! us hold at most `max_tracked_nodes` entries of bounded size.

use crate::allowlist::Allowlist;
use crate::node_id::NodeId;
use crate::report::{HeatReport, Leave, Record, RecordKind};
use crate::wire::{DecodeError, SignedRecord, MAX_ENCODED_LEN};
use std::collections::BTreeMap;

/// Settings of a [`Verifier`]. All durations are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// How far ahead of our clock a record's timestamp may be.
    pub max_clock_skew_ms: u64,
    /// How far behind our clock a record's timestamp may be and still be accepted.
    pub max_age_ms: u64,
    /// Age past which an accepted report is shown as [`Freshness::Stale`].
    pub ttl_ms: u64,
    /// Keys admitted into the mesh; `None` admits any key.
    pub allowlist: Option<Allowlist>,
    /// Most nodes we keep state for (members and departed nodes).
    pub max_tracked_nodes: usize,
}

impl Default for VerifierConfig {
    /// 5 s skew, 60 s max age, 10 s TTL, no allowlist, 4096 nodes.
    fn default() -> Self {
        Self {
            max_clock_skew_ms: 5_000,
            max_age_ms: 60_000,
            ttl_ms: 10_000,
            allowlist: None,
            max_tracked_nodes: 4_096,
        }
    }
}

/// Why a value was refused. Each variant has its own counter and label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The value is longer than [`crate::wire::MAX_ENCODED_LEN`]; not decoded.
    #[error("value of {len} bytes is over the size limit")]
    Oversized {
        /// Length of the value, in bytes.
        len: usize,
    },
    /// The value is not a well-formed envelope or body (bad base64, short,
    /// unknown kind, invalid key point, undecodable or out-of-bounds body).
    #[error("malformed record: {0}")]
    Malformed(DecodeError),
    /// The body is signed but in a record version this build does not read.
    #[error("unsupported record version {0}")]
    UnsupportedVersion(u16),
    /// The signature does not verify with the enclosed key: forged or tampered.
    #[error("bad signature")]
    BadSignature,
    /// The enclosed key does not hash to the node id the value was gossiped
    /// under, or the signed body names another node: a report moved between
    /// nodes or a key substituted.
    #[error("value gossiped as node {claimed} is from node {key}")]
    KeyMismatch {
        /// Node id the value was gossiped under.
        claimed: NodeId,
        /// Node id of the enclosed key, or the node the signed body names.
        key: NodeId,
    },
    /// An allowlist is configured and the key is not on it.
    #[error("key of node {0} is not on the allowlist")]
    NotAllowlisted(NodeId),
    /// `(generation, seq)` is not newer than the last record of its kind
    /// accepted from the node, or belongs to an older generation, or to a
    /// generation the node has left.
    #[error("replay: ({generation}, {seq}) is not newer than ({last_generation}, {last_seq})")]
    Replay {
        /// Generation of the refused record.
        generation: u64,
        /// Sequence number of the refused record.
        seq: u64,
        /// Generation of the last accepted record of its kind (or the node's
        /// newest generation, if none of its kind was accepted).
        last_generation: u64,
        /// Sequence number of the last accepted record of its kind.
        last_seq: u64,
    },
    /// The timestamp is more than `max_clock_skew_ms` ahead of `now`.
    #[error("timestamp is {ahead_ms} ms in the future")]
    FromFuture {
        /// How far ahead of `now`.
        ahead_ms: u64,
    },
    /// The timestamp is more than `max_age_ms` behind `now`.
    #[error("timestamp is {age_ms} ms old")]
    TooOld {
        /// How far behind `now`.
        age_ms: u64,
    },
    /// A node we do not track yet, and `max_tracked_nodes` are tracked already.
    #[error("tracking limit reached; node {0} not admitted")]
    TrackingLimit(NodeId),
}

impl RejectReason {
    /// Every label, in the order of [`RejectCounters::rejections`].
    pub const LABELS: [&'static str; 10] = [
        "oversized",
        "malformed",
        "unsupported_version",
        "bad_signature",
        "key_mismatch",
        "not_allowlisted",
        "replay",
        "from_future",
        "too_old",
        "tracking_limit",
    ];

    /// Stable snake_case name, for metric labels.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    fn index(&self) -> usize {
        match self {
            RejectReason::Oversized { .. } => 0,
            RejectReason::Malformed(_) => 1,
            RejectReason::UnsupportedVersion(_) => 2,
            RejectReason::BadSignature => 3,
            RejectReason::KeyMismatch { .. } => 4,
            RejectReason::NotAllowlisted(_) => 5,
            RejectReason::Replay { .. } => 6,
            RejectReason::FromFuture { .. } => 7,
            RejectReason::TooOld { .. } => 8,
            RejectReason::TrackingLimit(_) => 9,
        }
    }

    fn from_decode(err: DecodeError, claimed: NodeId) -> Self {
        match err {
            DecodeError::Oversized { len } => RejectReason::Oversized { len },
            DecodeError::BadSignature => RejectReason::BadSignature,
            DecodeError::UnsupportedVersion(v) => RejectReason::UnsupportedVersion(v),
            DecodeError::Record(crate::report::RecordError::NodeIdMismatch { record, .. }) => {
                RejectReason::KeyMismatch {
                    claimed,
                    key: record,
                }
            }
            other => RejectReason::Malformed(other),
        }
    }
}

/// How many values were accepted and refused, per reason, since creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RejectCounters {
    accepted: [u64; RecordKind::ALL.len()],
    /// Values identical to the node's last accepted one (gossip re-delivery;
    /// not a rejection and not an attack).
    pub unchanged: u64,
    rejected: [u64; 10],
}

impl RejectCounters {
    /// Records of `kind` accepted.
    pub fn accepted(&self, kind: RecordKind) -> u64 {
        self.accepted[kind.index()]
    }

    /// Count of values refused for `reason`'s kind (its payload is ignored).
    pub fn rejected(&self, reason: &RejectReason) -> u64 {
        self.rejected[reason.index()]
    }

    /// `(label, count)` for every reason, in [`RejectReason::LABELS`] order.
    pub fn rejections(&self) -> [(&'static str, u64); 10] {
        let mut out = [("", 0); 10];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = (RejectReason::LABELS[i], self.rejected[i]);
        }
        out
    }

    /// Sum of all refusals.
    pub fn total_rejected(&self) -> u64 {
        self.rejected.iter().sum()
    }
}

/// Whether a member's report may be acted upon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Freshness {
    /// Younger than the TTL.
    Fresh,
    /// Older than the TTL: show it, but never treat the node as cool.
    Stale,
}

impl Freshness {
    /// The one rule: a report older than `ttl_ms` is stale.
    pub fn of(age_ms: u64, ttl_ms: u64) -> Self {
        if age_ms > ttl_ms {
            Self::Stale
        } else {
            Self::Fresh
        }
    }
}

/// A member as the verifier sees it at some `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// The member.
    pub node_id: NodeId,
    /// Its latest accepted report.
    pub report: HeatReport,
    /// When we accepted that report (our clock, unix ms).
    pub accepted_at_ms: u64,
    /// `now - min(report.timestamp_ms, accepted_at_ms)`, saturating at zero.
    pub age_ms: u64,
    /// [`Freshness::Stale`] when `age_ms > ttl_ms`.
    pub freshness: Freshness,
}

/// A record that passed every check, now the node's latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// A heat report; the node is a member.
    Report(HeatReport),
    /// A leave; the node is no longer a member.
    Leave(Leave),
    /// The very value last accepted from this node, delivered again: nothing
    /// new, no state changed. Gossip does this every round.
    Unchanged,
}

/// What is known of one node: its newest generation and, per kind, the
/// last record accepted. Replay order is per (node, kind); a generation is
/// one incarnation for every kind, and a leave ends it for every kind.
#[derive(Debug, Clone, Default)]
struct Entry {
    generation: u64,
    /// It signed a leave in `generation`.
    left: bool,
    /// Per kind (by [`RecordKind::index`]), the order of the last accepted record.
    last: [Option<(u64, u64)>; RecordKind::ALL.len()],
    /// The latest accepted value of any kind, text as received, to
    /// recognise re-deliveries (the mesh hands over a node's record at every observation).
    value: String,
    /// Newest timestamp of any accepted record (for pruning).
    timestamp_ms: u64,
    /// The latest report and when we accepted it; `None` once it left.
    report: Option<(HeatReport, u64)>,
}

/// Verifies gossiped records and remembers, per node, the latest accepted
/// record. Pure: the caller passes `now_ms` (unix ms) to every call.
#[derive(Debug, Clone)]
pub struct Verifier {
    config: VerifierConfig,
    nodes: BTreeMap<NodeId, Entry>,
    counters: RejectCounters,
}

impl Verifier {
    /// A verifier with no state.
    pub fn new(config: VerifierConfig) -> Self {
        Self {
            config,
            nodes: BTreeMap::new(),
            counters: RejectCounters::default(),
        }
    }

    /// Replaces the allowlist; records verified from now on are checked against it.
    pub fn set_allowlist(&mut self, allowlist: Option<Allowlist>) {
        self.config.allowlist = allowlist;
    }

    /// The settings in force.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// Checks `value`, gossiped under `claimed_node`, at `now_ms`; on success
    /// it becomes the node's latest record. Every outcome is counted.
    pub fn verify(
        &mut self,
        claimed_node: &NodeId,
        value: &str,
        now_ms: u64,
    ) -> Result<Verified, RejectReason> {
        let outcome = self.check(claimed_node, value, now_ms);
        match &outcome {
            Ok(Verified::Report(_)) => self.counters.accepted[RecordKind::Report.index()] += 1,
            Ok(Verified::Leave(_)) => self.counters.accepted[RecordKind::Leave.index()] += 1,
            Ok(Verified::Unchanged) => self.counters.unchanged += 1,
            Err(reason) => self.counters.rejected[reason.index()] += 1,
        }
        outcome
    }

    fn check(
        &mut self,
        claimed: &NodeId,
        value: &str,
        now_ms: u64,
    ) -> Result<Verified, RejectReason> {
        let claimed = *claimed;
        if value.len() > MAX_ENCODED_LEN {
            return Err(RejectReason::Oversized { len: value.len() });
        }
        if self.nodes.get(&claimed).is_some_and(|e| e.value == value) {
            return Ok(Verified::Unchanged);
        }
        let signed =
            SignedRecord::decode(value).map_err(|e| RejectReason::from_decode(e, claimed))?;
        let key_id = signed.key_node_id();
        if let Some(allow) = &self.config.allowlist {
            if !allow.contains(signed.public_key()) {
                return Err(RejectReason::NotAllowlisted(key_id));
            }
        }
        if key_id != claimed {
            return Err(RejectReason::KeyMismatch {
                claimed,
                key: key_id,
            });
        }
        let record = signed
            .open()
            .map_err(|e| RejectReason::from_decode(e, claimed))?;
        let (kind, order, timestamp_ms) = (record.kind(), record.order(), record.timestamp_ms());
        let verified = match record {
            Record::Report(r) => Verified::Report(r),
            Record::Leave(l) => Verified::Leave(l),
            // A summary is the tiered mesh's business, never a member's state.
            Record::Summary(_) => {
                return Err(RejectReason::Malformed(DecodeError::WrongKind {
                    wanted: RecordKind::Report.label(),
                    found: RecordKind::Summary.label(),
                }))
            }
        };
        self.check_time(timestamp_ms, now_ms)?;
        self.check_order(&claimed, kind, order)?;
        self.make_room(&claimed, now_ms)?;
        let entry = self.nodes.entry(claimed).or_default();
        let (generation, _) = order;
        if generation > entry.generation || entry.last.iter().all(Option::is_none) {
            entry.generation = generation;
            entry.left = false;
        }
        entry.last[kind.index()] = Some(order);
        entry.value = value.to_string();
        entry.timestamp_ms = entry.timestamp_ms.max(timestamp_ms);
        match &verified {
            Verified::Report(r) => entry.report = Some((r.clone(), now_ms)),
            _ => {
                entry.left = true;
                entry.report = None;
            }
        }
        Ok(verified)
    }

    fn check_time(&self, timestamp_ms: u64, now_ms: u64) -> Result<(), RejectReason> {
        if timestamp_ms > now_ms.saturating_add(self.config.max_clock_skew_ms) {
            return Err(RejectReason::FromFuture {
                ahead_ms: timestamp_ms - now_ms,
            });
        }
        let age_ms = now_ms.saturating_sub(timestamp_ms);
        if age_ms > self.config.max_age_ms {
            return Err(RejectReason::TooOld { age_ms });
        }
        Ok(())
    }

    fn check_order(
        &self,
        node: &NodeId,
        kind: RecordKind,
        (generation, seq): (u64, u64),
    ) -> Result<(), RejectReason> {
        let Some(entry) = self.nodes.get(node) else {
            return Ok(());
        };
        let last = entry.last[kind.index()];
        let refused = generation < entry.generation
            || (generation == entry.generation
                && (entry.left || last.is_some_and(|o| (generation, seq) <= o)));
        if refused {
            // Refused because the generation was left: the leave is the record to cite.
            let leave = entry.last[RecordKind::Leave.index()];
            let cited = match leave {
                Some(o) if entry.left && o.0 == generation => Some(o),
                _ => last,
            };
            let (last_generation, last_seq) = cited.unwrap_or((entry.generation, 0));
            return Err(RejectReason::Replay {
                generation,
                seq,
                last_generation,
                last_seq,
            });
        }
        Ok(())
    }

    /// Ensures a slot for `node`, pruning expired entries if full.
    fn make_room(&mut self, node: &NodeId, now_ms: u64) -> Result<(), RejectReason> {
        if self.nodes.contains_key(node) || self.nodes.len() < self.config.max_tracked_nodes {
            return Ok(());
        }
        self.prune(now_ms);
        if self.nodes.len() < self.config.max_tracked_nodes {
            Ok(())
        } else {
            Err(RejectReason::TrackingLimit(*node))
        }
    }

    /// Drops every node whose latest record is older than `max_age_ms`: any
    /// replay of it, or of an earlier record, would be refused as
    /// [`RejectReason::TooOld`] anyway, so forgetting it is safe. Returns how
    /// many were dropped. Called by `verify` when the tracking limit is hit.
    pub fn prune(&mut self, now_ms: u64) -> usize {
        let before = self.nodes.len();
        let max_age = self.config.max_age_ms;
        self.nodes
            .retain(|_, e| now_ms.saturating_sub(e.timestamp_ms) <= max_age);
        before - self.nodes.len()
    }

    /// Forgets a node (e.g. when the mesh forgets it). Returns
    /// whether it was tracked. Its records within `max_age_ms` could then be
    /// accepted again, so call this only for nodes the mesh has dropped.
    pub fn forget(&mut self, node: &NodeId) -> bool {
        self.nodes.remove(node).is_some()
    }

    /// Members (nodes whose latest accepted record is a report), by node id,
    /// with their freshness at `now_ms`. Departed and never-verified nodes are
    /// not members.
    pub fn view(&self, now_ms: u64) -> Vec<MemberView> {
        self.nodes
            .iter()
            .filter_map(|(id, e)| self.member_view(id, e, now_ms))
            .collect()
    }

    /// The member's view at `now_ms`, if `node` is a member.
    pub fn member(&self, node: &NodeId, now_ms: u64) -> Option<MemberView> {
        let entry = self.nodes.get(node)?;
        self.member_view(node, entry, now_ms)
    }

    fn member_view(&self, id: &NodeId, e: &Entry, now_ms: u64) -> Option<MemberView> {
        let (report, accepted_at_ms) = e.report.as_ref()?;
        let since = report.timestamp_ms.min(*accepted_at_ms);
        let age_ms = now_ms.saturating_sub(since);
        Some(MemberView {
            node_id: *id,
            report: report.clone(),
            accepted_at_ms: *accepted_at_ms,
            age_ms,
            freshness: Freshness::of(age_ms, self.config.ttl_ms),
        })
    }

    /// True when the node signed a leave in its newest generation.
    pub fn has_left(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|e| e.left)
    }

    /// Number of nodes with state (members and departed).
    pub fn tracked(&self) -> usize {
        self.nodes.len()
    }

    /// Accepted and refused counts since creation.
    pub fn counters(&self) -> RejectCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests;
