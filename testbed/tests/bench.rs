//! The benchmark, in its short version: complete, deterministic, and the
//! oracle bounds everyone.
#![allow(clippy::unwrap_used)]

use maxwell_testbed::{run_thermal_bench_with, BenchConfig, ThermalBenchReport};
use std::sync::OnceLock;

fn report() -> &'static ThermalBenchReport {
    static R: OnceLock<ThermalBenchReport> = OnceLock::new();
    R.get_or_init(|| run_thermal_bench_with(&BenchConfig::short(7)))
}

fn row<'a>(r: &'a ThermalBenchReport, scenario: &str, policy: &str) -> &'a maxwell_testbed::Row {
    r.rows
        .iter()
        .find(|x| x.scenario == scenario && x.policy == policy)
        .unwrap()
}

#[test]
fn every_scenario_has_every_policy_and_the_oracle() {
    let r = report();
    assert!(r.oracle_errors.is_empty(), "{:?}", r.oracle_errors);
    // Five policies and the oracle in each scenario; after the fan failure
    // also the bound on its moves.
    assert_eq!(r.rows.len(), 6 * 6 + 1);
    let text = r.to_string();
    for name in [
        "steady-40%",
        "cooling+6C",
        "fan-failure",
        "burst-30%",
        "partition",
        "heavy85+cool",
        "hw-throttle",
        "least-loaded",
        "local-cap",
        "central-80%",
        "maxwell",
        "oracle",
        "maxwell/oracle",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

#[test]
fn same_seed_same_table_other_seed_other_table() {
    let again = run_thermal_bench_with(&BenchConfig::short(7));
    assert_eq!(report().to_string(), again.to_string());
    let other = run_thermal_bench_with(&BenchConfig {
        duration_s: 120,
        ..BenchConfig::short(8)
    });
    assert_ne!(report().to_string(), other.to_string());
}

#[test]
fn the_oracle_delivers_at_least_as_much_value_as_anyone() {
    let r = report();
    for x in &r.rows {
        let oracle = row(r, x.scenario, "oracle").metrics.value;
        assert!(
            oracle >= 0.99 * x.metrics.value,
            "{} {}: {} > oracle {}",
            x.scenario,
            x.policy,
            x.metrics.value,
            oracle
        );
    }
    for s in ["steady-40%", "fan-failure", "burst-30%"] {
        let ratio = r.ratio(s).unwrap();
        assert!(ratio > 0.8 && ratio <= 1.01, "{s}: {ratio}");
    }
}

#[test]
fn maxwell_drains_work_away_from_a_failed_fan() {
    let r = report();
    let (hw, mx) = (
        &row(r, "fan-failure", "hw-throttle").metrics,
        &row(r, "fan-failure", "maxwell").metrics,
    );
    assert!(
        mx.peak_c < hw.peak_c,
        "maxwell {} vs throttling {}",
        mx.peak_c,
        hw.peak_c
    );
    assert!(mx.throttle_s <= hw.throttle_s);
    assert!(mx.moves > 0 && mx.price_osc_milli.is_some());
}

#[test]
fn the_bound_on_a_fan_failures_moves_is_the_fewest_that_hold_the_best_baselines_peak() {
    use maxwell_testbed::bound::{best_of, failed_host_peak, NAME};
    let r = report();
    let cfg = &r.config;
    let best = maxwell_testbed::goals::BASELINES
        .map(|p| row(r, "fan-failure", p).metrics.peak_c)
        .into_iter()
        .fold(f64::INFINITY, f64::min);
    let k = row(r, "fan-failure", NAME).metrics.moves as usize;
    let sc = maxwell_testbed::scenarios::Scenario::all(&cfg.layout, cfg.event_s, cfg.seed)
        .into_iter()
        .find(|s| s.name == "fan-failure")
        .unwrap();
    let tenth = |c: f64| (c * 10.0).round() as i64;
    let peak_with = |k| {
        failed_host_peak(
            &sc,
            &best_of(cfg.layout, &sc, cfg.seed, cfg.duration_s, k).unwrap(),
        )
    };
    // k moves hold it, k - 1 (the best of every way) do not.
    assert!(k >= 1, "the failed host must shed something");
    assert!(
        tenth(peak_with(k)) <= tenth(best),
        "{} > {best}",
        peak_with(k)
    );
    assert!(
        k == 1 || tenth(peak_with(k - 1)) > tenth(best),
        "{k} is not the fewest"
    );
    // After the fan failure only.
    assert_eq!(r.rows.iter().filter(|x| x.policy == NAME).count(), 1);
}

#[test]
fn plots_are_svg_files() {
    let dir = tempfile::tempdir().unwrap();
    let paths = report().write_plots(dir.path()).unwrap();
    assert_eq!(paths.len(), 2);
    for p in paths {
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.starts_with("<svg")
                && text.contains("<polyline")
                && text.trim_end().ends_with("</svg>"),
            "{}",
            p.display()
        );
    }
}

#[test]
fn the_report_ends_with_a_verdict_on_every_goal_in_every_scenario() {
    let r = report();
    let text = r.to_string();
    let verdicts = maxwell_testbed::goals::verdicts(&r.rows);
    assert_eq!(verdicts.len(), 6);
    for v in &verdicts {
        assert!(text.contains(&v.to_string()), "{v} missing from\n{text}");
        // Only the heavy scenario is held to the oracle's value.
        assert_eq!(v.value_share.is_some(), v.scenario == "heavy85+cool");
    }
}
