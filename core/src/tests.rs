use super::*;
use maxwell_gossip::{Freshness, RejectReason, SensorSource};
use maxwell_types::{MicroWatts, NodeId, Position};

const T0: u64 = 1_800_000_000_000;

fn config() -> CoreConfig {
    CoreConfig {
        position: Position::new("r1", 2),
        default_critical: MilliCelsius::from_celsius(95.0),
        pricing: maxwell_pricing::PriceConfig::default()
            .validate()
            .expect("default law"),
        read_every_ms: 1_000,
        observe_every_ms: 500,
        stuck_after_ms: 5_000,
        report_ttl_ms: 10_000,
        leave_linger_ms: 1_500,
    }
}

fn reading(celsius: f64) -> Reading {
    Reading {
        hottest: Some((
            MilliCelsius::from_celsius(celsius),
            MilliCelsius::from_celsius(95.0),
        )),
        power_draw: Some(MicroWatts::from_watts(200.0)),
        power_cap: Some(MicroWatts::from_watts(400.0)),
        headroom: Some(MicroWatts::from_watts(200.0)),
        source: SensorSource::Emulated,
    }
}

fn peer(k: u8, slot: u16, celsius: f64, status: MemberStatus) -> Member {
    let id = NodeId([k; maxwell_types::node_id::NODE_ID_LEN]);
    Member {
        node_id: id,
        addr: "127.0.0.1:7946".parse().expect("addr"),
        generation: 1,
        status,
        report: Some(HeatReport {
            node_id: id,
            name: format!("n{k}"),
            generation: 1,
            seq: 1,
            timestamp_ms: T0,
            position: Position::new("r1", slot),
            hottest: MilliCelsius::from_celsius(celsius),
            critical: MilliCelsius::from_celsius(95.0),
            power_draw: MicroWatts::from_watts(200.0),
            power_cap: MicroWatts::from_watts(400.0),
            headroom: MicroWatts::from_watts(200.0),
            price_milli: 1000,
            source: SensorSource::Emulated,
        }),
        age_ms: 100,
        freshness: Freshness::Fresh,
    }
}

fn drain(core: &mut NodeCore) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

fn published_price(core: &mut NodeCore) -> u64 {
    let price = drain(core).into_iter().find_map(|o| match o {
        Output::Publish(h) => Some(h.price_milli),
        _ => None,
    });
    price.expect("a reading publishes a report")
}

/// The price of a fresh core after one reading, with these peers.
fn price_with(peers: Vec<Member>) -> u64 {
    let mut core = NodeCore::new(config(), T0);
    core.handle_peers(T0, peers, Vec::new());
    core.handle_reading(T0, &reading(40.0));
    published_price(&mut core)
}

#[test]
fn timers_ask_for_reads_and_observations_and_say_when_next() {
    let mut core = NodeCore::new(config(), T0);
    assert_eq!(core.poll_timeout(), Some(T0));
    core.handle_timeout(T0);
    assert_eq!(
        drain(&mut core),
        vec![Output::ReadSensors, Output::ObservePeers]
    );
    assert_eq!(core.poll_timeout(), Some(T0 + 500));
    core.handle_timeout(T0 + 500);
    assert_eq!(drain(&mut core), vec![Output::ObservePeers]);
    // The read is still outstanding: no second read is asked for.
    core.handle_timeout(T0 + 1_000);
    assert_eq!(drain(&mut core), vec![Output::ObservePeers]);
}

#[test]
fn an_unknown_temperature_is_reported_at_the_limit_and_no_power_as_no_headroom() {
    let mut core = NodeCore::new(config(), T0);
    let blind = Reading {
        hottest: None,
        power_draw: None,
        power_cap: None,
        headroom: None,
        source: SensorSource::Sysfs,
    };
    core.handle_reading(T0, &blind);
    let heat = drain(&mut core).into_iter().find_map(|o| match o {
        Output::Publish(h) => Some(h),
        _ => None,
    });
    let heat = heat.expect("published");
    assert_eq!(heat.hottest, MilliCelsius::from_celsius(95.0));
    assert_eq!(heat.headroom, MicroWatts(0));
    assert_eq!(heat.position, Position::new("r1", 2));
    let cool = price_with(Vec::new());
    assert!(
        heat.price_milli > cool,
        "blind {} vs cool {cool}",
        heat.price_milli
    );
}

#[test]
fn a_hot_neighbour_makes_us_cheaper_and_a_dead_or_stale_one_never_does() {
    let alone = price_with(Vec::new());
    let cool = price_with(vec![peer(1, 3, 40.0, MemberStatus::Alive)]);
    let hot = price_with(vec![peer(1, 3, 88.0, MemberStatus::Alive)]);
    assert!(hot < cool, "hot neighbour {hot} vs cool {cool}");
    let dead = price_with(vec![peer(1, 3, 20.0, MemberStatus::Dead)]);
    let mut stale = peer(1, 3, 88.0, MemberStatus::Alive);
    stale.freshness = Freshness::Stale;
    let stale = price_with(vec![stale]);
    assert!(
        dead >= alone && dead >= cool,
        "dead {dead}, alone {alone}, cool {cool}"
    );
    assert!(stale >= cool, "stale {stale} vs cool {cool}");
}

#[test]
fn a_neighbour_that_left_is_forgotten_not_held_stale() {
    let mut core = NodeCore::new(config(), T0);
    core.handle_peers(T0, vec![peer(1, 3, 40.0, MemberStatus::Alive)], Vec::new());
    core.handle_reading(T0, &reading(40.0));
    let before = published_price(&mut core);
    // Gone from the view without a leave: held stale, never cheaper.
    core.handle_peers(T0 + 60_000, Vec::new(), Vec::new());
    core.handle_reading(T0 + 60_000, &reading(40.0));
    let held = published_price(&mut core);
    assert!(held >= before, "vanished: {held} vs {before}");
    assert_eq!(core.quote().map(|q| q.stale_peers), Some(1));
    // A signed leave: forgotten, not counted even as stale.
    core.handle_peers(
        T0 + 61_000,
        vec![peer(1, 3, 40.0, MemberStatus::Left)],
        Vec::new(),
    );
    core.handle_peers(T0 + 62_000, Vec::new(), Vec::new());
    core.handle_reading(T0 + 63_000, &reading(40.0));
    let q = core.quote().expect("quoted");
    assert_eq!((q.stale_peers, q.fresh_peers), (0, 0));
}

#[test]
fn a_report_that_ages_past_the_ttl_since_its_observation_is_stale() {
    let mut core = NodeCore::new(config(), T0);
    core.handle_peers(T0, vec![peer(1, 3, 40.0, MemberStatus::Alive)], Vec::new());
    core.handle_reading(T0 + 5_000, &reading(40.0));
    assert_eq!(
        core.quote().map(|q| (q.fresh_peers, q.stale_peers)),
        Some((1, 0))
    );
    // No observation since: 100 ms old then, 10.1 s now, past the 10 s TTL.
    core.handle_reading(T0 + 10_000, &reading(40.0));
    assert_eq!(
        core.quote().map(|q| (q.fresh_peers, q.stale_peers)),
        Some((0, 1))
    );
    let rows = core.member_rows(T0 + 10_000, None, 1);
    assert!(!rows.members[0].counts && !rows.members[0].fresh);
}

#[test]
fn refusals_reach_operators_once_per_reason_per_period() {
    let mut core = NodeCore::new(config(), T0);
    let refused = |reason: RejectReason| MembershipEvent::Rejected {
        gossip_id: "x".into(),
        reason,
    };
    let burst = vec![
        refused(RejectReason::BadSignature),
        refused(RejectReason::BadSignature),
        refused(RejectReason::UnsupportedVersion(9)),
        MembershipEvent::Died {
            node: NodeId([7; maxwell_types::node_id::NODE_ID_LEN]),
        },
    ];
    core.handle_peers(T0, Vec::new(), burst.clone());
    assert_eq!(
        drain(&mut core).len(),
        3,
        "one per reason, and every membership change"
    );
    core.handle_peers(T0 + 9_999, Vec::new(), burst.clone());
    assert_eq!(
        drain(&mut core).len(),
        1,
        "only the death within the period"
    );
    core.handle_peers(T0 + 10_000, Vec::new(), burst);
    assert_eq!(drain(&mut core).len(), 3);
}

#[test]
fn a_stuck_read_is_reported_once_and_its_return_too() {
    let mut core = NodeCore::new(config(), T0);
    core.handle_timeout(T0);
    drain(&mut core);
    for k in 1..=10 {
        core.handle_timeout(T0 + k * 1_000);
    }
    let stuck: Vec<Output> = drain(&mut core)
        .into_iter()
        .filter(|o| matches!(o, Output::Event(Event::SensorStuck { .. })))
        .collect();
    assert_eq!(
        stuck,
        vec![Output::Event(Event::SensorStuck { running_ms: 6_000 })]
    );
    core.handle_reading(T0 + 10_500, &reading(40.0));
    let out = drain(&mut core);
    assert_eq!(out[0], Output::Event(Event::SensorRecovered));
    core.handle_timeout(T0 + 11_000);
    assert!(drain(&mut core).contains(&Output::ReadSensors));
}

#[test]
fn leaving_asks_once_and_then_nothing_is_due() {
    let mut core = NodeCore::new(config(), T0);
    core.handle_command(T0, Command::Leave);
    core.handle_command(T0, Command::Leave);
    assert_eq!(drain(&mut core), vec![Output::Leave { linger_ms: 1_500 }]);
    assert_eq!(core.poll_timeout(), None);
    core.handle_timeout(T0 + 5_000);
    core.handle_reading(T0 + 5_000, &reading(40.0));
    assert_eq!(drain(&mut core), Vec::new());
}

#[test]
fn time_going_backwards_is_no_time_passing() {
    let mut core = NodeCore::new(config(), T0 + 10_000);
    core.handle_timeout(T0);
    assert!(drain(&mut core).contains(&Output::ReadSensors));
    assert_eq!(core.poll_timeout(), Some(T0 + 10_500));
}

#[test]
fn member_rows_put_this_node_first_and_age_the_rest() {
    let mut core = NodeCore::new(config(), T0);
    core.handle_reading(T0, &reading(41.0));
    let mut dead = peer(2, 4, 40.0, MemberStatus::Dead);
    dead.report = None;
    core.handle_peers(
        T0,
        vec![peer(1, 3, 40.0, MemberStatus::Alive), dead],
        Vec::new(),
    );
    let own = peer(9, 2, 41.0, MemberStatus::Alive).report;
    let rows = core.member_rows(T0 + 300, own.as_ref(), 5);
    let m = &rows.members;
    assert_eq!(m.len(), 3);
    assert!(m[0].is_self && m[0].counts && m[0].age_ms == 300);
    assert!(m[1].counts && m[1].age_ms == 400 && m[1].name == "n1");
    assert!(!m[2].counts && m[2].name == "-" && m[2].price_milli.is_none());
    assert_eq!(rows.unverified_peers, 3);
    let json = serde_json::to_value(&m[1]).expect("json");
    assert_eq!(json["status"], "alive");
    assert!(
        json["id"].is_string(),
        "ids are hex in JSON: {}",
        json["id"]
    );
}
