//! Property tests of the static law and the filter, over seeded random cases.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use maxwell_pricing::{PriceConfig, PriceController, PriceParams};
use maxwell_types::Position;

#[test]
fn prices_stay_between_floor_and_ceiling() {
    let mut rng = Rng::new(1);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let (floor, ceiling) = (params.config().floor_milli, params.config().ceiling_milli);
        let mut ctl = PriceController::new(params);
        let mut now = 0;
        for _ in 0..20 {
            now += rng.range(0, 3_000) as u64;
            let q = ctl.update(&random_input(&mut rng), now);
            assert!((floor..=ceiling).contains(&q.price_milli), "{q:?}");
            assert!((floor..=ceiling).contains(&q.target_milli), "{q:?}");
        }
    }
}

#[test]
fn terms_add_up_and_are_non_negative() {
    let mut rng = Rng::new(2);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let t = target(&params, &random_input(&mut rng)).terms;
        for v in [
            t.thermal,
            t.headroom,
            t.neighbour_relief,
            t.rack_power,
            t.staleness_penalty,
        ] {
            assert!(v >= 0, "{t:?}");
        }
        let sum = t.base + t.thermal + t.headroom + t.rack_power + t.staleness_penalty
            - t.neighbour_relief;
        assert_eq!(sum, t.raw_target);
    }
}

#[test]
fn price_rises_as_the_node_nears_its_limit() {
    let mut rng = Rng::new(3);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let mut input = random_input(&mut rng);
        let mut last = 0;
        let crit = input.own.critical.0;
        for temp in (crit - 40_000..=crit + 5_000).step_by(1_000) {
            input.own.temp = mc(temp);
            let p = target(&params, &input).target_milli;
            assert!(p >= last, "price fell from {last} to {p} at {temp} m°C");
            last = p;
        }
    }
    // Strictly, with the defaults, between a cool and a near-critical node.
    let params = PriceParams::default();
    let mut input = random_input(&mut Rng::new(30));
    input.peers.clear();
    input.own.temp = mc(input.own.critical.0 - 20_000);
    let cool = target(&params, &input).target_milli;
    input.own.temp = mc(input.own.critical.0 - 3_000);
    assert!(target(&params, &input).target_milli > cool);
}

#[test]
fn price_rises_as_headroom_shrinks() {
    let mut rng = Rng::new(4);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let mut input = random_input(&mut rng);
        input.own.cap = w(400);
        let mut last = 0;
        for draw in (100..=420).step_by(20) {
            input.own.draw = w(draw);
            let p = target(&params, &input).target_milli;
            assert!(p >= last, "price fell from {last} to {p} at draw {draw} W");
            last = p;
        }
        input.own.draw = w(250);
        let mut last = 0;
        for cap in (260..=500).rev().step_by(20) {
            input.own.cap = w(cap);
            let p = target(&params, &input).target_milli;
            assert!(p >= last, "price fell from {last} to {p} at cap {cap} W");
            last = p;
        }
    }
}

#[test]
fn a_hot_neighbour_makes_a_cooler_node_cheaper() {
    let mut rng = Rng::new(5);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let mut input = random_input(&mut rng);
        input.peers.push(peer(
            99,
            "r0",
            input.position.slot.saturating_add(1),
            30_000,
            200,
        ));
        let i = input.peers.len() - 1;
        let mut last = u64::MAX;
        for temp in (30_000..=100_000).step_by(2_000) {
            input.peers[i].temp = mc(temp);
            let p = target(&params, &input).target_milli;
            assert!(
                p <= last,
                "price rose from {last} to {p} with neighbour at {temp} m°C"
            );
            last = p;
        }
    }
    // Strictly, with the defaults: a cool node next to one at its limit.
    let params = PriceParams::default();
    let own = maxwell_pricing::OwnSummary {
        temp: mc(50_000),
        critical: mc(95_000),
        draw: w(200),
        cap: w(400),
    };
    let input = |t| maxwell_pricing::PriceInput {
        own: own.clone(),
        position: Position::new("r0", 10),
        peers: vec![peer(1, "r0", 11, t, 200)],
    };
    let cool = target(&params, &input(50_000)).target_milli;
    let hot = target(&params, &input(94_000)).target_milli;
    assert!(hot < cool, "hot neighbour {hot} vs cool {cool}");
}

#[test]
fn relief_is_weighted_by_proximity() {
    let params = PriceConfig {
        relief_gain: 0.9,
        other_rack_weight: 0.1,
        ..PriceConfig::default()
    }
    .validate()
    .unwrap();
    let own = maxwell_pricing::OwnSummary {
        temp: mc(50_000),
        critical: mc(95_000),
        draw: w(200),
        cap: w(400),
    };
    let at = |rack: &str, slot| {
        let input = maxwell_pricing::PriceInput {
            own: own.clone(),
            position: Position::new("r0", 10),
            peers: vec![peer(1, rack, slot, 93_000, 200)],
        };
        target(&params, &input).terms.neighbour_relief
    };
    let (adjacent, two, four, far, other) = (
        at("r0", 11),
        at("r0", 12),
        at("r0", 14),
        at("r0", 30),
        at("r1", 11),
    );
    assert!(
        adjacent > two && two > four && four > far,
        "{adjacent} {two} {four} {far}"
    );
    assert_eq!(far, 0);
    assert!(other > 0 && other < adjacent, "{other} vs {adjacent}");
    assert_eq!(at("r0", 9), adjacent, "above and below weigh the same");
}

#[test]
fn a_rack_near_its_budget_makes_every_member_dearer() {
    let mut rng = Rng::new(6);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let mut input = random_input(&mut rng);
        let mut last = 0;
        for draw in (100..=600).step_by(50) {
            for p in input.peers.iter_mut().filter(|p| p.position.rack == "r0") {
                p.draw = w(draw);
            }
            let q = target(&params, &input).target_milli;
            assert!(
                q >= last,
                "price fell from {last} to {q} at peer draw {draw} W"
            );
            last = q;
        }
    }
    // Strictly, for every member of a 10-host rack with a 3 kW budget.
    let params = PriceConfig {
        rack_budget_w: Some(3_000.0),
        ..PriceConfig::default()
    }
    .validate()
    .unwrap();
    for me in 0..10u16 {
        let quote = |draw| {
            let peers = (0..10)
                .filter(|&s| s != me)
                .map(|s| peer(s, "r0", s * 5, 50_000, draw))
                .collect();
            let own = maxwell_pricing::OwnSummary {
                temp: mc(50_000),
                critical: mc(95_000),
                draw: w(draw),
                cap: w(400),
            };
            target(
                &params,
                &maxwell_pricing::PriceInput {
                    own,
                    position: Position::new("r0", me * 5),
                    peers,
                },
            )
        };
        let slack = quote(150); // 1.5 kW of 3 kW
        let tight = quote(290); // 2.9 kW of 3 kW
        assert_eq!(slack.terms.rack_power, 0);
        assert!(tight.terms.rack_power > 0 && tight.target_milli > slack.target_milli);
    }
}

#[test]
fn a_stale_or_missing_neighbour_never_makes_a_node_cheaper() {
    let mut rng = Rng::new(7);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let mut ctl = PriceController::new(params);
        let mut now = 0;
        let mut input = random_input(&mut rng);
        for _ in 0..rng.range(1, 10) {
            now += rng.range(100, 2_000) as u64;
            input = random_input(&mut rng);
            ctl.update(&input, now);
        }
        now += rng.range(0, 2_000) as u64;
        input.peers.push(peer(
            200,
            "r0",
            input.position.slot.saturating_add(1),
            rng.range(20_000, 100_000),
            rng.range(80, 450),
        ));
        let fresh = ctl.clone().update(&input, now).price_milli;
        let i = input.peers.len() - 1;
        let mut stale_input = input.clone();
        stale_input.peers[i].stale = true;
        let stale = ctl.clone().update(&stale_input, now).price_milli;
        let mut old_input = input.clone();
        old_input.peers[i].age_ms = 1_000_000;
        let old = ctl.clone().update(&old_input, now).price_milli;
        // Missing: seen fresh once, then gone.
        let mut seen = ctl.clone();
        seen.update(&input, now);
        let mut missing_input = input.clone();
        missing_input.peers.pop();
        let mut counterfactual = seen.clone();
        let present = counterfactual.update(&input, now + 1_000).price_milli;
        let missing = seen.update(&missing_input, now + 1_000).price_milli;
        assert!(
            stale >= fresh && old >= fresh,
            "fresh {fresh} stale {stale} old {old}"
        );
        assert!(missing >= present, "present {present} missing {missing}");
    }
}

#[test]
fn a_forgotten_neighbour_stops_counting() {
    let params = PriceConfig {
        forget_after_ms: 60_000,
        ..PriceConfig::default()
    }
    .validate()
    .unwrap();
    let own = maxwell_pricing::OwnSummary {
        temp: mc(50_000),
        critical: mc(95_000),
        draw: w(200),
        cap: w(400),
    };
    let with = maxwell_pricing::PriceInput {
        own,
        position: Position::new("r0", 3),
        peers: vec![peer(1, "r0", 4, 50_000, 200)],
    };
    let without = maxwell_pricing::PriceInput {
        peers: vec![],
        ..with.clone()
    };
    let mut ctl = PriceController::new(params);
    ctl.update(&with, 0);
    assert_eq!(ctl.update(&without, 1_000).stale_peers, 1);
    assert_eq!(ctl.update(&without, 30_000).stale_peers, 1);
    assert_eq!(ctl.update(&without, 62_000).stale_peers, 0);
    ctl.update(&with, 63_000);
    ctl.forget(&node(1));
    assert_eq!(ctl.update(&without, 64_000).stale_peers, 0);
}

#[test]
fn one_round_moves_the_price_by_at_most_the_rate_limit() {
    let mut rng = Rng::new(8);
    for _ in 0..CASES {
        let params = random_params(&mut rng);
        let max_step = params.config().max_step_milli;
        let mut ctl = PriceController::new(params);
        let mut now = 0;
        let mut last = ctl.update(&random_input(&mut rng), now).price_milli;
        for _ in 0..10 {
            now += rng.range(0, 5_000) as u64;
            let p = ctl.update(&random_input(&mut rng), now).price_milli;
            assert!(p.abs_diff(last) <= max_step + 1, "{last} -> {p}");
            last = p;
        }
    }
}

#[test]
fn small_target_changes_inside_the_band_do_not_move_a_held_price() {
    let params = PriceParams::default();
    let own = maxwell_pricing::OwnSummary {
        temp: mc(60_000),
        critical: mc(95_000),
        draw: w(200),
        cap: w(400),
    };
    let mut input = maxwell_pricing::PriceInput {
        own,
        position: Position::new("r0", 3),
        peers: vec![],
    };
    let mut ctl = PriceController::new(params);
    let p0 = ctl.update(&input, 0).price_milli;
    // A few hundred millidegrees move the target by a few milli: held.
    for (i, t) in [60_300, 59_800, 60_200, 60_000].into_iter().enumerate() {
        input.own.temp = mc(t);
        let q = ctl.update(&input, 1_000 * (i as u64 + 1));
        assert!(q.held && q.price_milli == p0, "{q:?}");
    }
    // A big move engages the filter, which then settles and holds again.
    input.own.temp = mc(90_000);
    let q = ctl.update(&input, 10_000);
    assert!(!q.held && q.price_milli > p0);
    let mut q = q;
    for k in 0..60 {
        q = ctl.update(&input, 11_000 + 1_000 * k);
    }
    assert!(
        q.held && q.price_milli.abs_diff(q.target_milli) <= ctl.params().config().band_off_milli
    );
}

#[test]
fn config_is_validated_once_and_refuses_nonsense() {
    use maxwell_pricing::ConfigError;
    assert!(PriceConfig::default().validate().is_ok());
    let bad = |c: PriceConfig| c.validate().unwrap_err();
    let d = PriceConfig::default;
    assert!(matches!(
        bad(PriceConfig {
            floor_milli: 5_000,
            ceiling_milli: 5_000,
            ..d()
        }),
        ConfigError::FloorNotBelowCeiling { .. }
    ));
    assert!(matches!(
        bad(PriceConfig {
            base_milli: 50,
            ..d()
        }),
        ConfigError::BaseOutOfBounds { .. }
    ));
    assert!(matches!(
        bad(PriceConfig {
            filter_gain: 0.0,
            ..d()
        }),
        ConfigError::OutOfRange {
            field: "filter_gain",
            ..
        }
    ));
    assert!(matches!(
        bad(PriceConfig {
            filter_gain: 1.5,
            ..d()
        }),
        ConfigError::OutOfRange {
            field: "filter_gain",
            ..
        }
    ));
    assert!(matches!(
        bad(PriceConfig {
            thermal_gain: f64::NAN,
            ..d()
        }),
        ConfigError::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(PriceConfig {
            relief_gain: 1.0,
            ..d()
        }),
        ConfigError::OutOfRange {
            field: "relief_gain",
            ..
        }
    ));
    assert!(matches!(
        bad(PriceConfig {
            rack_budget_w: Some(-1.0),
            ..d()
        }),
        ConfigError::OutOfRange { .. }
    ));
    assert!(matches!(
        bad(PriceConfig { round_ms: 0, ..d() }),
        ConfigError::Zero { field: "round_ms" }
    ));
    assert!(matches!(
        bad(PriceConfig {
            band_off_milli: 50,
            ..d()
        }),
        ConfigError::BandsInverted { .. }
    ));
    assert!(matches!(
        bad(PriceConfig {
            forget_after_ms: 10,
            ..d()
        }),
        ConfigError::ForgetBeforeTtl { .. }
    ));

    let parsed: PriceConfig =
        serde_json::from_str(r#"{"rack_budget_w": 8000.0, "filter_gain": 0.25}"#).unwrap();
    assert_eq!(parsed.rack_budget_w, Some(8_000.0));
    assert_eq!(parsed.ceiling_milli, PriceConfig::default().ceiling_milli);
    assert!(serde_json::from_str::<PriceConfig>(r#"{"rack_budget": 8000.0}"#).is_err());
}
