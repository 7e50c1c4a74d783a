//! The agent's side of the price law: turning what it reads (its snapshot)
//! and what it verified (its members) into the law's input. The law itself
//! is `maxwell_pricing`, pure.

use crate::config::Config;
use crate::sensors::Snapshot;
use maxwell_gossip::{Member, MemberStatus};
use maxwell_pricing::{OwnSummary, PeerView, PriceInput};

/// This node's readings and every peer with a verified report. Dead peers
/// and peers with stale reports go in marked stale (the law never lets them
/// make us cheaper); peers that left are not neighbours any more.
pub fn price_input(snapshot: &Snapshot, config: &Config, members: &[Member]) -> PriceInput {
    let s = &snapshot.summary;
    let (temp, critical) = s.temperature_or_limit(config.sensors.default_critical);
    let peers = members
        .iter()
        .filter(|m| m.status != MemberStatus::Left)
        .filter_map(|m| {
            let r = m.report.as_ref()?;
            Some(PeerView {
                node: m.node_id,
                rack: r.rack.clone(),
                slot: r.slot,
                temp: r.hottest,
                critical: r.critical,
                draw: Some(r.power_draw),
                cap: Some(r.power_cap).filter(|c| c.0 > 0),
                age_ms: m.age_ms,
                stale: !m.counts(),
            })
        })
        .collect();
    PriceInput {
        own: OwnSummary {
            temp,
            critical,
            draw: s.power_draw.as_ref().map(|p| p.microwatts),
            cap: s.power_cap.as_ref().map(|p| p.microwatts),
        },
        rack: config.rack.clone(),
        slot: config.slot,
        peers,
    }
}
