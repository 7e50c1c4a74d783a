//! The physics, recirculation and oracle behave like their documentation says.
#![allow(clippy::unwrap_used)]

use maxwell_testbed::oracle::plan_window;
use maxwell_testbed::physics::{HostModel, HostThermal};
use maxwell_testbed::recirculation::{Layout, Recirculation};
use maxwell_testbed::rng::Rng;
use maxwell_testbed::scenarios::{Kind, Scenario};
use maxwell_testbed::sim::serve;
use maxwell_testbed::world::World;

#[test]
fn a_host_settles_at_its_steady_state_and_power_is_linear() {
    let m = HostModel::typical(&mut Rng::new(1));
    assert!((100.0..=140.0).contains(&m.idle_w) && (300.0..=400.0).contains(&m.peak_w));
    assert_eq!(m.power_w(0.0), m.idle_w);
    assert!((m.power_w(0.5) - (m.idle_w + m.peak_w) / 2.0).abs() < 1e-9);
    let mut s = HostThermal::steady(&m, 25.0, m.power_w(0.2));
    let p = m.power_w(0.6);
    for _ in 0..900 {
        s.step(&m, p, 25.0, 1.0, 1.0);
    }
    assert!(
        (s.die_c - m.steady_die_c(25.0, p, 1.0)).abs() < 0.1,
        "{} vs {}",
        s.die_c,
        m.steady_die_c(25.0, p, 1.0)
    );
    // Time constants of tens of seconds: after 10 s it is far from there.
    let mut s = HostThermal::steady(&m, 25.0, m.power_w(0.2));
    let start = s.die_c;
    for _ in 0..10 {
        s.step(&m, p, 25.0, 1.0, 1.0);
    }
    let frac = (s.die_c - start) / (m.steady_die_c(25.0, p, 1.0) - start);
    assert!(frac > 0.1 && frac < 0.7, "{frac}");
}

#[test]
fn throttling_engages_near_critical_and_releases_with_hysteresis() {
    let m = HostModel::typical(&mut Rng::new(2));
    let mut s = HostThermal::steady(&m, 25.0, m.power_w(0.4));
    let mut events = 0;
    for _ in 0..600 {
        events += u32::from(s.step(&m, m.peak_w, 25.0, 2.0, 1.0));
    }
    assert!(s.throttled && events == 1 && s.die_c >= m.throttle_c);
    let mut released_at = None;
    for k in 0..600 {
        s.step(&m, m.idle_w, 25.0, 1.0, 1.0);
        if !s.throttled && released_at.is_none() {
            released_at = Some(k);
            assert!(s.die_c < m.release_c && m.release_c < m.throttle_c);
        }
    }
    assert!(released_at.is_some());
}

#[test]
fn recirculation_heats_hosts_above_more_than_below() {
    let l = Layout::standard();
    let d = Recirculation::from_layout(&l);
    let coef = |i: usize, j: usize| d.row(i).iter().find(|e| e.0 == j).map_or(0.0, |e| e.1);
    let (low, high) = (l.host(0, 10), l.host(0, 11));
    assert!(coef(high, low) > coef(low, high) && coef(low, high) > 0.0);
    assert!(coef(l.host(1, 10), low) > 0.0, "beside, same row");
    assert_eq!(coef(l.host(2, 10), low), 0.0, "other row");
    assert!(d.rise(&vec![0.0; l.hosts()]).iter().all(|&r| r == 0.0));
    let rise = d.rise(&vec![200.0; l.hosts()]);
    assert!(rise[l.host(0, 39)] > rise[l.host(0, 20)] && rise[l.host(0, 20)] > rise[l.host(0, 0)]);
    assert!(
        rise.iter().all(|&r| r > 0.5 && r < 8.0),
        "a few kelvin: {rise:?}"
    );
}

#[test]
fn scenarios_change_what_they_say() {
    let l = Layout::standard();
    let all = Scenario::all(&l, 100, 3);
    let cool = &all[1];
    assert_eq!(cool.kind, Kind::CoolingFailure);
    assert_eq!(cool.supply_c(&l, 0, 99) + 6.0, cool.supply_c(&l, 0, 100));
    assert_eq!(
        cool.supply_c(&l, l.host(3, 0), 100),
        cool.supply_c(&l, l.host(3, 0), 0)
    );
    let fan = &all[2];
    assert_eq!(fan.r_scale(fan.fan_host, 100), 2.0);
    assert_eq!(fan.r_scale(fan.fan_host + 1, 100), 1.0);
    let burst = all[3].burst.iter().filter(|&&b| b).count() as f64 / l.hosts() as f64;
    assert!((0.2..0.4).contains(&burst), "{burst}");
    let part = &all[4];
    assert!(!part.reachable(&l, 0, l.host(3, 0), 150) && part.reachable(&l, 0, l.host(1, 0), 150));
    assert!(part.reachable(&l, 0, l.host(3, 0), 50) && part.reachable(&l, 0, l.host(3, 0), 500));
    let heavy = &all[5];
    assert_eq!(heavy.kind, Kind::HeavyCooling);
    assert_eq!(heavy.base_load, 0.85);
    assert_eq!(heavy.supply_c(&l, 0, 99) + 6.0, heavy.supply_c(&l, 0, 100));
}

#[test]
fn the_floor_starts_near_its_base_load() {
    let l = Layout::standard();
    let w = World::new(l, Scenario::new(Kind::Steady, &l, 100, 4), 4);
    let mean = w.util.iter().sum::<f64>() / l.hosts() as f64;
    assert!((0.35..0.5).contains(&mean), "{mean}");
    assert!(w.thermal.iter().all(|s| s.die_c > 40.0 && s.die_c < 80.0));
}

#[test]
fn a_market_serves_value_first_others_share() {
    let mut items = vec![(0.5, 1.0), (0.5, 4.0)];
    assert_eq!(serve(&mut items.clone(), 0.5, true), (0.5, 2.0));
    assert_eq!(serve(&mut items, 0.5, false), (0.5, 1.25));
    assert_eq!(serve(&mut [(0.2, 2.0)], 1.0, false), (0.2, 0.4));
}

#[test]
fn the_oracle_plan_respects_capacity_and_demand() {
    let l = Layout {
        racks: 2,
        hosts_per_rack: 10,
        racks_per_row: 1,
    };
    let w = World::new(l, Scenario::new(Kind::Burst, &l, 0, 5), 5);
    let plan = plan_window(&w, 0, 30).unwrap();
    assert!(plan
        .alloc
        .iter()
        .all(|a| a.iter().sum::<f64>() <= 1.0 + 1e-6 && a.iter().all(|&x| x >= -1e-9)));
    let demand = maxwell_testbed::oracle::class_demand(&w, 0);
    let planned: f64 = plan.total.iter().sum();
    assert!(planned > 0.5 * demand.iter().sum::<f64>());
}
