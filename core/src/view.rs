//! The operator's view of the cluster: one [`MemberRow`] per verified
//! member (and this node), as `GET /v1/members` and `maxwell members` show
//! it. Whether a row may be acted on (`counts`) is decided here, once.

use maxwell_gossip::{Freshness, HeatReport, Member, MemberStatus, SensorSource};
use maxwell_types::{MicroWatts, MilliCelsius, NodeId};
use serde::{Deserialize, Serialize};

/// One row of `GET /v1/members`: a peer with a verified report (or this node).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberRow {
    pub id: NodeId,
    pub name: String,
    /// Gossip address.
    pub addr: String,
    pub status: MemberStatus,
    pub generation: u64,
    pub rack: String,
    pub slot: u16,
    pub hottest_millicelsius: Option<MilliCelsius>,
    pub critical_millicelsius: Option<MilliCelsius>,
    pub power_draw_microwatts: Option<MicroWatts>,
    pub power_cap_microwatts: Option<MicroWatts>,
    pub headroom_microwatts: Option<MicroWatts>,
    pub price_milli: Option<u64>,
    pub sensor_source: Option<SensorSource>,
    /// Guests the host runs, and the vCPUs and memory its admission still leaves.
    pub guests: Option<u32>,
    pub free_vcpus: Option<u32>,
    pub free_memory_mib: Option<u32>,
    /// Where its HTTP API listens, as it told.
    pub api: Option<String>,
    /// Where its p2p endpoint takes offers, as it told.
    #[serde(default)]
    pub p2p: Option<String>,
    /// Age of the report, ms.
    pub age_ms: u64,
    /// False once the report is older than the TTL: shown, never acted on.
    pub fresh: bool,
    /// True when the row may be acted on (alive, fresh, verified).
    pub counts: bool,
    pub is_self: bool,
}

/// `GET /v1/members`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Members {
    pub members: Vec<MemberRow>,
    /// Gossip peers without a verified report (not members).
    pub unverified_peers: usize,
}

/// Whether `m` may be acted on now, `extra_age_ms` after it was observed:
/// alive, verified, and its report still within `ttl_ms`.
pub(crate) fn counts(m: &Member, extra_age_ms: u64, ttl_ms: u64) -> bool {
    let age = m.age_ms.saturating_add(extra_age_ms);
    m.counts() && Freshness::of(age, ttl_ms) == Freshness::Fresh
}

/// This node (its own latest report and that report's age) and every
/// member, each aged by `extra_age_ms` (the time since they were observed).
pub(crate) fn rows(
    own: Option<(&HeatReport, u64)>,
    members: &[Member],
    extra_age_ms: u64,
    ttl_ms: u64,
    gossip_peers: usize,
) -> Members {
    let mut rows = Vec::with_capacity(members.len() + 1);
    if let Some((own, age)) = own {
        rows.push(row(
            own,
            MemberStatus::Alive,
            own.generation,
            "-".into(),
            age,
            (true, true),
            true,
        ));
    }
    for m in members {
        let age = m.age_ms.saturating_add(extra_age_ms);
        let fresh =
            Freshness::of(age, ttl_ms) == Freshness::Fresh && m.freshness == Freshness::Fresh;
        let addr = m.addr.to_string();
        rows.push(match &m.report {
            Some(r) => row(
                r,
                m.status,
                m.generation,
                addr,
                age,
                (fresh, counts(m, extra_age_ms, ttl_ms)),
                false,
            ),
            None => MemberRow {
                id: m.node_id,
                name: "-".into(),
                addr,
                status: m.status,
                generation: m.generation,
                rack: "-".into(),
                slot: 0,
                hottest_millicelsius: None,
                critical_millicelsius: None,
                power_draw_microwatts: None,
                power_cap_microwatts: None,
                headroom_microwatts: None,
                price_milli: None,
                sensor_source: None,
                guests: None,
                free_vcpus: None,
                free_memory_mib: None,
                api: None,
                p2p: None,
                age_ms: age,
                fresh,
                counts: false,
                is_self: false,
            },
        });
    }
    Members {
        unverified_peers: gossip_peers.saturating_sub(members.len()),
        members: rows,
    }
}

fn row(
    r: &HeatReport,
    status: MemberStatus,
    generation: u64,
    addr: String,
    age_ms: u64,
    (fresh, counts): (bool, bool),
    is_self: bool,
) -> MemberRow {
    MemberRow {
        id: r.node_id,
        name: r.name.clone(),
        addr,
        status,
        generation,
        rack: r.position.rack.clone(),
        slot: r.position.slot,
        hottest_millicelsius: Some(r.hottest),
        critical_millicelsius: Some(r.critical),
        power_draw_microwatts: Some(r.power_draw),
        power_cap_microwatts: Some(r.power_cap),
        headroom_microwatts: Some(r.headroom),
        price_milli: Some(r.price_milli),
        sensor_source: Some(r.source),
        guests: Some(r.room.guests),
        free_vcpus: Some(r.room.free_vcpus),
        free_memory_mib: Some(r.room.free_memory_mib),
        api: r.api.map(|a| a.to_string()),
        p2p: r.p2p.map(|a| a.to_string()),
        age_ms,
        fresh,
        counts,
        is_self,
    }
}
