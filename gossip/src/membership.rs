//! Membership: what the gossip layer says of each peer (alive or dead, its
//! latest value) combined with what the [`Verifier`] believes, into the
//! member list everything downstream uses.
//!
//! Pure state machine: the driver calls [`Membership::observe`] with a
//! snapshot of what the mesh holds of each peer and `now_ms`, and gets events back.
//!
//! Contracts:
//! - a peer counts as a member ([`Member::counts`]) only when it is alive,
//!   has not left, and its latest report verified and is fresh;
//! - a value is verified once per change: gossip re-delivers state every
//!   observation, and a forged value the mesh holds is counted once,
//!   not once per round; the memory for that is one hash per gossip peer;
//! - a signed leave takes effect at the next observation, whatever the
//!   failure detector says.

use crate::node_id::NodeId;
use crate::report::HeatReport;
use crate::verify::{Freshness, RejectReason, Verified, Verifier};
use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;

/// What the failure detector says of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Liveness {
    /// Heartbeats arrive.
    Alive,
    /// Phi-accrual crossed its threshold.
    Dead,
}

/// One gossip peer, as the mesh holds it at observation time.
#[derive(Debug, Clone, Copy)]
pub struct PeerObservation<'a> {
    /// The id the peer gossips under: a [`NodeId`] in hex.
    pub gossip_id: &'a str,
    /// Incarnation (the mesh identity's generation).
    pub generation: u64,
    /// Where it gossips.
    pub addr: SocketAddr,
    /// The failure detector's verdict.
    pub liveness: Liveness,
    /// Its signed record, if it has published one.
    pub record: Option<&'a str>,
}

/// A member's state, as `serf members` would say it; lower case in JSON.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MemberStatus {
    /// Alive and reporting.
    Alive,
    /// The failure detector declared it dead.
    Dead,
    /// It signed a leave.
    Left,
}

impl MemberStatus {
    /// Lower-case name for tables, JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Alive => "alive",
            MemberStatus::Dead => "dead",
            MemberStatus::Left => "left",
        }
    }
}

/// One member with a verified record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub node_id: NodeId,
    /// Where it gossips.
    pub addr: SocketAddr,
    /// Its incarnation.
    pub generation: u64,
    /// Alive, dead or left.
    pub status: MemberStatus,
    /// Its latest verified report (kept after a leave, for display; only
    /// [`Member::counts`] says whether it may be acted on).
    pub report: Option<HeatReport>,
    /// Age of that report at observation time, ms.
    pub age_ms: u64,
    /// Whether the report is within the TTL.
    pub freshness: Freshness,
}

impl Member {
    /// True when downstream code may act on this member's report.
    pub fn counts(&self) -> bool {
        self.status == MemberStatus::Alive
            && self.freshness == Freshness::Fresh
            && self.report.is_some()
    }
}

/// What changed in one observation, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A node's first verified report, or its first after a restart.
    Joined { node: NodeId, generation: u64 },
    /// A signed leave was accepted.
    Left { node: NodeId },
    /// The failure detector declared a member dead.
    Died { node: NodeId },
    /// A dead member is alive again (same generation).
    Recovered { node: NodeId },
    /// A value was refused.
    Rejected {
        gossip_id: String,
        reason: RejectReason,
    },
}

#[derive(Debug, Clone)]
struct Row {
    addr: SocketAddr,
    generation: u64,
    status: MemberStatus,
    last: Option<HeatReport>,
}

/// The member table and the verifier behind it.
#[derive(Debug)]
pub struct Membership {
    verifier: Verifier,
    rows: BTreeMap<NodeId, Row>,
    /// Hash of the last value looked at, per gossip peer (id, generation).
    seen: BTreeMap<(String, u64), u64>,
    /// Peers whose gossip id is not a node id, rejected once each.
    bad_ids: BTreeSet<(String, u64)>,
    self_id: NodeId,
}

impl Membership {
    /// An empty table for the node `self_id` (never listed as a peer).
    pub fn new(self_id: NodeId, verifier: Verifier) -> Self {
        Self {
            verifier,
            rows: BTreeMap::new(),
            seen: BTreeMap::new(),
            bad_ids: BTreeSet::new(),
            self_id,
        }
    }

    /// The verifier, to change its allowlist.
    pub fn verifier_mut(&mut self) -> &mut Verifier {
        &mut self.verifier
    }

    /// The verifier, for its counters.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// Takes in a full snapshot of the gossip peers (self excluded or not).
    /// Peers absent from the snapshot (forgotten by the mesh) are forgotten.
    pub fn observe<'a>(
        &mut self,
        peers: impl IntoIterator<Item = PeerObservation<'a>>,
        now_ms: u64,
    ) -> Vec<MembershipEvent> {
        let mut events = Vec::new();
        let mut present: BTreeMap<NodeId, Vec<PeerObservation<'a>>> = BTreeMap::new();
        let mut keys = BTreeSet::new();
        for peer in peers {
            let key = (peer.gossip_id.to_string(), peer.generation);
            keys.insert(key.clone());
            let Ok(node) = peer.gossip_id.parse::<NodeId>() else {
                if self.bad_ids.insert(key) {
                    let reason = RejectReason::Malformed(crate::wire::DecodeError::BadKey);
                    events.push(MembershipEvent::Rejected {
                        gossip_id: peer.gossip_id.into(),
                        reason,
                    });
                }
                continue;
            };
            if node == self.self_id {
                continue;
            }
            if let Some(value) = peer.record {
                let hash = hash_of(value);
                if self.seen.insert(key, hash) != Some(hash) {
                    self.take_value(node, &peer, value, now_ms, &mut events);
                }
            }
            present.entry(node).or_default().push(peer);
        }
        self.seen.retain(|k, _| keys.contains(k));
        self.bad_ids.retain(|k| keys.contains(k));
        for (node, peers) in &present {
            self.apply_liveness(*node, peers, &mut events);
        }
        let gone: Vec<NodeId> = self
            .rows
            .keys()
            .filter(|n| !present.contains_key(n))
            .copied()
            .collect();
        for node in gone {
            self.rows.remove(&node);
            self.verifier.forget(&node);
        }
        events
    }

    fn take_value(
        &mut self,
        node: NodeId,
        peer: &PeerObservation<'_>,
        value: &str,
        now_ms: u64,
        events: &mut Vec<MembershipEvent>,
    ) {
        match self.verifier.verify(&node, value, now_ms) {
            Ok(Verified::Report(report)) => {
                let fresh_incarnation = self.rows.get(&node).is_none_or(|r| {
                    r.generation != report.generation || r.status == MemberStatus::Left
                });
                if fresh_incarnation {
                    events.push(MembershipEvent::Joined {
                        node,
                        generation: report.generation,
                    });
                }
                let status = match peer.liveness {
                    Liveness::Alive => MemberStatus::Alive,
                    Liveness::Dead => MemberStatus::Dead,
                };
                let row = Row {
                    addr: peer.addr,
                    generation: report.generation,
                    status,
                    last: Some(report),
                };
                self.rows.insert(node, row);
            }
            Ok(Verified::Leave(leave)) => {
                events.push(MembershipEvent::Left { node });
                let last = self.rows.remove(&node).and_then(|r| r.last);
                let row = Row {
                    addr: peer.addr,
                    generation: leave.generation,
                    status: MemberStatus::Left,
                    last,
                };
                self.rows.insert(node, row);
            }
            Ok(Verified::Unchanged) => {}
            Err(reason) => events.push(MembershipEvent::Rejected {
                gossip_id: peer.gossip_id.into(),
                reason,
            }),
        }
    }

    /// Liveness comes from the gossip peer of the member's verified
    /// generation only: anyone can gossip under a node's id (a member does
    /// not authenticate), and an impostor must not keep a dead node "alive".
    fn apply_liveness(
        &mut self,
        node: NodeId,
        peers: &[PeerObservation<'_>],
        events: &mut Vec<MembershipEvent>,
    ) {
        let Some(row) = self.rows.get_mut(&node) else {
            return;
        };
        let Some(peer) = peers.iter().find(|p| p.generation == row.generation) else {
            return;
        };
        if row.status == MemberStatus::Left {
            return;
        }
        row.addr = peer.addr;
        match (row.status, peer.liveness) {
            (MemberStatus::Alive, Liveness::Dead) => {
                row.status = MemberStatus::Dead;
                events.push(MembershipEvent::Died { node });
            }
            (MemberStatus::Dead, Liveness::Alive) => {
                row.status = MemberStatus::Alive;
                events.push(MembershipEvent::Recovered { node });
            }
            _ => {}
        }
    }

    /// Every peer with a verified record, at `now_ms`.
    pub fn members(&self, now_ms: u64) -> Vec<Member> {
        self.rows
            .iter()
            .map(|(node, row)| {
                let view = self.verifier.member(node, now_ms);
                Member {
                    node_id: *node,
                    addr: row.addr,
                    generation: row.generation,
                    status: row.status,
                    age_ms: view.as_ref().map_or(0, |v| v.age_ms),
                    freshness: view.as_ref().map_or(Freshness::Stale, |v| v.freshness),
                    report: view.map(|v| v.report).or_else(|| row.last.clone()),
                }
            })
            .collect()
    }
}

fn hash_of(value: &str) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests;
