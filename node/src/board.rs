//! What the dashboard (`GET /ui`, [`crate::http::ui`]) shows beyond the
//! live API: every member's recent temperature and price, sampled from this
//! agent's gossip view, and the recent events this agent saw (members
//! joining, failing, recovering and leaving; its own guests paused, resumed
//! and killed by the market).
//!
//! Contract: bounded. At most `api.ui_history_s` points per member (one per
//! [`SAMPLE_EVERY_MS`]), dropped with the member; at most [`MAX_EVENTS`]
//! events, oldest first out. Readers page by time (`since_ms`) and by
//! event number (`after`), so a page that polls fetches only what is new.

use maxwell_core::Members;
use maxwell_gossip::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// One point per member per this many ms.
pub const SAMPLE_EVERY_MS: u64 = 1_000;
/// Events kept.
pub const MAX_EVENTS: usize = 256;

/// `[t_ms, millicelsius, price_milli]`: a JSON array, three numbers a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Point(pub u64, pub Option<i64>, pub Option<u64>);

/// One thing that happened, as this agent saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRow {
    /// Numbered from 1 in the order seen.
    pub seq: u64,
    /// Unix ms.
    pub t_ms: u64,
    /// The host it happened on.
    pub node: NodeId,
    pub name: String,
    /// `joined`, `died`, `recovered`, `left`, `paused`, `resumed` or `killed`.
    pub kind: &'static str,
    pub detail: String,
}

/// The rings.
#[derive(Debug)]
pub struct Board {
    /// When the agent started, unix ms: event numbers count from there.
    boot_ms: u64,
    points: usize,
    last_sample_ms: Option<u64>,
    series: BTreeMap<NodeId, VecDeque<Point>>,
    events: VecDeque<EventRow>,
    next_seq: u64,
}

impl Board {
    /// Keeps `points` points per member, for an agent started at `boot_ms`.
    pub fn new(points: usize, boot_ms: u64) -> Self {
        Self {
            boot_ms,
            points: points.max(1),
            last_sample_ms: None,
            series: BTreeMap::new(),
            events: VecDeque::new(),
            next_seq: 1,
        }
    }

    /// Samples `members` at `now_ms` unless a sample was taken within
    /// [`SAMPLE_EVERY_MS`] before it (a clock stepped back samples at once,
    /// rather than waiting for the old time); forgets members no longer in
    /// the view.
    pub fn sample(&mut self, now_ms: u64, members: &Members) {
        if self
            .last_sample_ms
            .is_some_and(|at| (at..at.saturating_add(SAMPLE_EVERY_MS)).contains(&now_ms))
        {
            return;
        }
        self.last_sample_ms = Some(now_ms);
        let present: std::collections::BTreeSet<NodeId> =
            members.members.iter().map(|m| m.id).collect();
        self.series.retain(|id, _| present.contains(id));
        for m in &members.members {
            let ring = self.series.entry(m.id).or_default();
            if ring.len() == self.points {
                ring.pop_front();
            }
            // A dead or stale member's last report is not its temperature now.
            let now_true = m.fresh && m.status == maxwell_gossip::MemberStatus::Alive;
            ring.push_back(Point(
                now_ms,
                m.hottest_millicelsius.filter(|_| now_true).map(|c| c.0),
                m.price_milli.filter(|_| now_true),
            ));
        }
    }

    /// `node`'s points taken after `since_ms`, oldest first.
    pub fn history(&self, node: &NodeId, since_ms: u64) -> Vec<Point> {
        self.series.get(node).map_or_else(Vec::new, |ring| {
            ring.iter().filter(|p| p.0 > since_ms).copied().collect()
        })
    }

    /// Records an event.
    pub fn event(
        &mut self,
        t_ms: u64,
        node: NodeId,
        name: &str,
        kind: &'static str,
        detail: String,
    ) {
        if self.events.len() == MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(EventRow {
            seq: self.next_seq,
            t_ms,
            node,
            name: name.to_string(),
            kind,
            detail,
        });
        self.next_seq += 1;
    }

    /// When the agent started, unix ms.
    pub fn boot_ms(&self) -> u64 {
        self.boot_ms
    }

    /// The events numbered after `after`, oldest first.
    pub fn events(&self, after: u64) -> Vec<EventRow> {
        self.events
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxwell_core::MemberRow;
    use maxwell_gossip::MemberStatus;
    use maxwell_types::MilliCelsius;

    fn row(k: u8, celsius: f64, fresh: bool) -> MemberRow {
        MemberRow {
            id: NodeId([k; 10]),
            name: format!("n{k}"),
            addr: "-".into(),
            status: MemberStatus::Alive,
            generation: 1,
            rack: "r1".into(),
            slot: u16::from(k),
            hottest_millicelsius: Some(MilliCelsius::from_celsius(celsius)),
            critical_millicelsius: Some(MilliCelsius::from_celsius(95.0)),
            power_draw_microwatts: None,
            power_cap_microwatts: None,
            headroom_microwatts: None,
            price_milli: Some(1_000),
            sensor_source: None,
            guests: Some(0),
            free_vcpus: Some(2),
            free_memory_mib: Some(512),
            api: None,
            p2p: None,
            age_ms: 0,
            fresh,
            counts: fresh,
            is_self: k == 0,
        }
    }

    fn view(rows: Vec<MemberRow>) -> Members {
        Members {
            members: rows,
            unverified_peers: 0,
        }
    }

    #[test]
    fn history_is_sampled_once_a_second_bounded_and_forgets_the_departed() {
        let mut b = Board::new(3, 0);
        for s in 0..10u64 {
            // Several views a second (every gossip change) make one point.
            for k in 0..4u64 {
                let v = view(vec![row(0, 40.0 + s as f64, true), row(1, 50.0, s < 5)]);
                b.sample(s * 1_000 + k * 200, &v);
            }
        }
        let h = b.history(&NodeId([0; 10]), 0);
        assert_eq!(h.len(), 3);
        assert_eq!(h[2], Point(9_000, Some(49_000), Some(1_000)));
        assert_eq!(b.history(&NodeId([0; 10]), 8_000).len(), 1);
        // A stale member's point says "unknown", not its old heat.
        assert_eq!(b.history(&NodeId([1; 10]), 0)[2].1, None);
        b.sample(20_000, &view(vec![row(0, 40.0, true)]));
        assert!(b.history(&NodeId([1; 10]), 0).is_empty());
        // The clock stepped back 15 s: sampling goes on.
        b.sample(5_000, &view(vec![row(0, 41.0, true)]));
        assert_eq!(b.history(&NodeId([0; 10]), 0).len(), 3);
        assert!(b
            .history(&NodeId([0; 10]), 0)
            .iter()
            .any(|p| p.1 == Some(41_000)));
    }

    #[test]
    fn events_are_numbered_bounded_and_paged() {
        let mut b = Board::new(10, 0);
        for i in 0..(MAX_EVENTS as u64 + 5) {
            b.event(i, NodeId([1; 10]), "n1", "died", String::new());
        }
        let all = b.events(0);
        assert_eq!(all.len(), MAX_EVENTS);
        assert_eq!(all[0].seq, 6);
        let last = all.last().map_or(0, |e| e.seq);
        assert_eq!(last, MAX_EVENTS as u64 + 5);
        assert!(b.events(last).is_empty());
        assert_eq!(b.events(last - 2).len(), 2);
    }
}
