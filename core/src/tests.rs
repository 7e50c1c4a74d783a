use super::*;
use maxwell_gossip::{Freshness, RejectReason, SensorSource};
use maxwell_types::{MicroWatts, NodeId, Position};

pub(crate) const T0: u64 = 1_800_000_000_000;

pub(crate) fn config() -> CoreConfig {
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
        admission: Admission {
            cores: 4,
            memory_mib: 1_000,
            cpu_fraction: 0.5,
            memory_fraction: 0.5,
        },
        publish: PublishPolicy::EVERY_READING,
        admit_moved_every_ms: 10_000,
    }
}

pub(crate) fn reading(celsius: f64) -> Reading {
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

pub(crate) fn peer(k: u8, slot: u16, celsius: f64, status: MemberStatus) -> Member {
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
            room: Default::default(),
            api: None,
            p2p: None,
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
    let mut core = NodeCore::new(config(), T0, 1);
    core.handle_peers(T0, peers, Vec::new());
    core.handle_reading(T0, &reading(40.0));
    published_price(&mut core)
}

#[test]
fn timers_ask_for_reads_and_observations_and_say_when_next() {
    let mut core = NodeCore::new(config(), T0, 1);
    assert_eq!(core.poll_timeout(), Some(T0));
    core.handle_timeout(T0);
    let survey = Output::Guest(GuestAction::Survey);
    assert_eq!(
        drain(&mut core),
        vec![Output::ReadSensors, Output::ObservePeers, survey.clone()]
    );
    assert_eq!(core.poll_timeout(), Some(T0 + 500));
    core.handle_timeout(T0 + 500);
    assert_eq!(drain(&mut core), vec![Output::ObservePeers, survey.clone()]);
    // The read is still outstanding: no second read is asked for.
    core.handle_timeout(T0 + 1_000);
    assert_eq!(drain(&mut core), vec![Output::ObservePeers, survey]);
    // A host that admits no guest is never asked to survey them.
    let mut none = config();
    none.admission = Admission::NONE;
    let mut core = NodeCore::new(none, T0, 1);
    core.handle_timeout(T0);
    assert_eq!(
        drain(&mut core),
        vec![Output::ReadSensors, Output::ObservePeers]
    );
}

#[test]
fn an_unknown_temperature_is_reported_at_the_limit_and_no_power_as_no_headroom() {
    let mut core = NodeCore::new(config(), T0, 1);
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
    let mut core = NodeCore::new(config(), T0, 1);
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
    let mut core = NodeCore::new(config(), T0, 1);
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
    let mut core = NodeCore::new(config(), T0, 1);
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
    let mut core = NodeCore::new(config(), T0, 1);
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
    let mut core = NodeCore::new(config(), T0, 1);
    core.handle_command(T0, Command::Leave);
    core.handle_command(T0, Command::Leave);
    assert_eq!(
        drain(&mut core),
        vec![
            Output::Guest(GuestAction::StopAll),
            Output::Leave { linger_ms: 1_500 }
        ]
    );
    assert_eq!(core.poll_timeout(), None);
    core.handle_timeout(T0 + 5_000);
    core.handle_reading(T0 + 5_000, &reading(40.0));
    assert_eq!(drain(&mut core), Vec::new());
}

#[test]
fn time_going_backwards_is_no_time_passing() {
    let mut core = NodeCore::new(config(), T0 + 10_000, 1);
    core.handle_timeout(T0);
    assert!(drain(&mut core).contains(&Output::ReadSensors));
    assert_eq!(core.poll_timeout(), Some(T0 + 10_500));
}

#[test]
fn member_rows_put_this_node_first_and_age_the_rest() {
    let mut core = NodeCore::new(config(), T0, 1);
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

fn guest_actions(core: &mut NodeCore) -> Vec<GuestAction> {
    drain(core)
        .into_iter()
        .filter_map(|o| match o {
            Output::Guest(a) => Some(a),
            _ => None,
        })
        .collect()
}

const ONE: GuestLoad = GuestLoad {
    vcpus: 1,
    memory_mib: 100,
};

#[test]
fn guests_are_admitted_against_everything_admitted_before_even_while_starting() {
    // The share: 2 vCPUs (4 cores x 0.5), 500 MiB (1000 x 0.5).
    let mut core = NodeCore::new(config(), T0, 1);
    let a = core.request_guest(T0, ONE);
    let b = core.request_guest(T0, ONE);
    let c = core.request_guest(T0, ONE);
    let acts = guest_actions(&mut core);
    assert_eq!(acts[..2], [GuestAction::Start(a), GuestAction::Start(b)]);
    let GuestAction::Refuse(t, why) = &acts[2] else {
        panic!("{acts:?}")
    };
    assert_eq!(*t, c);
    assert!(
        why.to_string()
            .contains("3 vCPUs in all would exceed the 2"),
        "{why}"
    );
    // A failed start frees its share; a started one holds it until killed.
    core.handle_guest_started(T0, a, None);
    core.handle_guest_started(T0, b, Some(7));
    assert_eq!(core.guest_load(), ONE);
    let d = core.request_guest(T0, ONE);
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(d)]);
    core.handle_guest_started(T0, d, Some(8));
    let big = GuestLoad {
        vcpus: 0,
        memory_mib: 400,
    };
    let e = core.request_guest(T0, big);
    assert!(
        matches!(&guest_actions(&mut core)[..], [GuestAction::Refuse(t, Refusal::Vcpus { .. } | Refusal::Memory { .. })] if *t == e)
    );
    core.handle_guest_gone(T0, 7);
    core.handle_guest_gone(T0, 7);
    assert_eq!(core.guest_load(), ONE);
    let f = core.request_guest(T0, ONE);
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(f)]);
}

#[test]
fn a_node_takes_one_guest_moved_by_rule_per_pace_and_offers_as_they_come() {
    let mut core = NodeCore::new(config(), T0, 1);
    let a = core.offer_moved_guest(T0, ONE, None);
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(a)]);
    // Within the pace: refused, and the refusal says why and for how long.
    let b = core.offer_moved_guest(T0 + 4_000, ONE, None);
    let acts = guest_actions(&mut core);
    assert_eq!(
        acts,
        [GuestAction::Refuse(
            b,
            Refusal::Paced {
                ago_ms: 4_000,
                every_ms: 10_000
            }
        )]
    );
    assert!(
        acts_text(&acts).contains("placement.move_admit_every_ms"),
        "{acts:?}"
    );
    // Offers (submissions) are not paced.
    let c = core.offer_guest(T0 + 4_000, ONE, None);
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(c)]);
    // A move refused for room does not restart the pace; one taken does.
    let full = GuestLoad {
        vcpus: 9,
        memory_mib: 1,
    };
    let d = core.offer_moved_guest(T0 + 10_000, full, None);
    assert!(matches!(
        &guest_actions(&mut core)[..],
        [GuestAction::Refuse(t, Refusal::Vcpus { .. })] if *t == d
    ));
    let e = core.offer_moved_guest(T0 + 10_000, GuestLoad::default(), None);
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(e)]);
    let f = core.offer_moved_guest(T0 + 19_999, GuestLoad::default(), None);
    assert!(matches!(
        &guest_actions(&mut core)[..],
        [GuestAction::Refuse(t, Refusal::Paced { ago_ms: 9_999, .. })] if *t == f
    ));
    // A moved guest whose start failed took nothing: the next may come.
    let g = core.offer_moved_guest(T0 + 20_000, GuestLoad::default(), None);
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(g)]);
    core.handle_guest_started(T0 + 20_000, g, None);
    let h = core.offer_moved_guest(T0 + 20_001, GuestLoad::default(), None);
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(h)]);
    // Within the pace, a leaving node still says it is leaving.
    core.handle_command(T0 + 20_002, Command::Leave);
    drain(&mut core);
    let i = core.offer_moved_guest(T0 + 20_002, GuestLoad::default(), None);
    assert_eq!(
        guest_actions(&mut core),
        [GuestAction::Refuse(i, Refusal::Leaving)]
    );
}

#[test]
fn within_the_pace_a_bid_below_the_price_is_refused_as_such() {
    let mut core = NodeCore::new(config(), T0, 1);
    core.handle_reading(T0, &reading(40.0));
    let price = published_price(&mut core);
    let a = core.offer_moved_guest(T0, ONE, Some(price));
    assert_eq!(guest_actions(&mut core), [GuestAction::Start(a)]);
    let b = core.offer_moved_guest(T0 + 1, ONE, Some(price - 1));
    assert!(matches!(
        &guest_actions(&mut core)[..],
        [GuestAction::Refuse(t, Refusal::AboveBid { .. })] if *t == b
    ));
}

fn acts_text(acts: &[GuestAction]) -> String {
    acts.iter()
        .map(|a| match a {
            GuestAction::Refuse(_, why) => why.to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_leaving_node_kills_its_guests_first_and_admits_none() {
    let mut core = NodeCore::new(config(), T0, 1);
    let a = core.request_guest(T0, ONE);
    core.handle_guest_started(T0, a, Some(1));
    let starting = core.request_guest(T0, ONE);
    drain(&mut core);
    core.handle_command(T0, Command::Leave);
    assert_eq!(
        drain(&mut core),
        [
            Output::Guest(GuestAction::StopAll),
            Output::Leave { linger_ms: 1_500 }
        ]
    );
    // A start in flight is killed behind its start: it holds nothing.
    core.handle_guest_started(T0, starting, Some(2));
    assert_eq!(core.guest_load(), GuestLoad::default());
    let late = core.request_guest(T0, ONE);
    assert_eq!(
        guest_actions(&mut core),
        [GuestAction::Refuse(late, Refusal::Leaving)]
    );
}

#[test]
fn sensor_periods_are_jittered_by_the_seed_and_never_longer_than_configured() {
    let periods = |seed: u64| {
        let mut core = NodeCore::new(config(), T0, seed);
        let mut now = T0;
        let mut periods = Vec::new();
        for _ in 0..50 {
            core.handle_reading(now, &reading(40.0));
            drain(&mut core);
            let next = core.poll_timeout().expect("a timer");
            // The observation timer may come first; run to the read.
            let mut at = next;
            loop {
                core.handle_timeout(at);
                if drain(&mut core).contains(&Output::ReadSensors) {
                    break;
                }
                at = core.poll_timeout().expect("a timer");
            }
            periods.push(at - now);
            now = at;
        }
        periods
    };
    let one = periods(1);
    assert_eq!(one, periods(1), "a seed is one schedule");
    assert_ne!(one, periods(2), "another seed, another schedule");
    assert!(one.iter().all(|p| (900..=1_000).contains(p)), "{one:?}");
    let distinct: std::collections::BTreeSet<_> = one.iter().collect();
    assert!(distinct.len() > 10, "{one:?}");
}

#[test]
fn a_survey_of_the_backend_frees_what_no_message_reported_and_a_kill_wins_a_race() {
    let mut core = NodeCore::new(config(), T0, 1);
    let a = core.request_guest(T0, ONE);
    let b = core.request_guest(T0, ONE);
    drain(&mut core);
    core.handle_guest_started(T0, a, Some(1));
    // Guest 1 is killed without a message reaching the core; b has not
    // reported yet. The survey is the truth for what runs, and b's
    // reservation holds until its outcome comes.
    core.handle_guests(T0, &[]);
    assert_eq!(core.guest_load(), ONE, "b is still starting");
    core.handle_guest_started(T0, b, Some(2));
    core.handle_guests(T0, &[]);
    assert_eq!(core.guest_load(), GuestLoad::default(), "nothing runs");

    // A kill reported before its start's outcome, and a survey taken before
    // the kill: the guest stays free.
    let c = core.request_guest(T0, ONE);
    drain(&mut core);
    core.handle_guest_gone(T0, 3);
    core.handle_guest_started(T0, c, Some(3));
    assert_eq!(core.guest_load(), GuestLoad::default());
    core.handle_guests(T0, &[(3, ONE)]);
    assert_eq!(core.guest_load(), GuestLoad::default(), "a stale survey");
    // Once a survey no longer holds it, the kill is forgotten; a guest the
    // book never admitted but the backend runs is counted.
    core.handle_guests(T0, &[(9, ONE)]);
    assert_eq!(core.guest_load(), ONE);
}

#[test]
fn with_a_deadband_noise_is_not_published_and_a_neighbours_jump_reprices_at_once() {
    let mut c = config();
    c.publish = PublishPolicy {
        min_gap_ms: 1_000,
        heartbeat_ms: 60_000,
        deadband: true,
        reprice_on_arrival: true,
    };
    c.read_every_ms = 100;
    let mut core = NodeCore::new(c, T0, 1);
    let publishes = |core: &mut NodeCore| {
        std::iter::from_fn(|| core.poll_output())
            .filter(|o| matches!(o, Output::Publish(_)))
            .count()
    };
    core.handle_reading(T0, &reading(40.0));
    assert_eq!(publishes(&mut core), 1, "the first reading");
    for i in 1..50 {
        let noise = if i % 2 == 0 { 40.2 } else { 39.9 };
        core.handle_reading(T0 + i * 100, &reading(noise));
    }
    assert_eq!(publishes(&mut core), 0, "noise within the deadband");
    let price = core.quote().expect("quoted").price_milli;
    // A rack neighbour near its limit arrives between two readings: the
    // price moves now (down: work should come here, away from its heat), and
    // the move is published at once (the price left its band).
    let neighbour = peer(9, 3, 94.0, MemberStatus::Alive);
    core.handle_peers(T0 + 4_950, vec![neighbour], Vec::new());
    let q = core.quote().expect("quoted");
    assert_ne!(q.price_milli, price, "re-priced on arrival: {q:?}");
    assert_eq!(publishes(&mut core), 1, "the move is news");
    core.handle_reading(T0 + 60_000, &reading(40.0));
    assert!(publishes(&mut core) <= 1);
}
