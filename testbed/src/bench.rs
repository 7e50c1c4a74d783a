//! `maxwell bench thermal`: every scenario × every policy, the oracle, and
//! Maxwell's ratio to the oracle.

use crate::bound::fewest_moves;
use crate::mesh::Maxwell;
use crate::metrics::{RunMetrics, RunResult};
use crate::oracle::run_oracle;
use crate::plot::{line_chart, Series};
use crate::policies::{CentralRules, LeastLoaded, LocalCapping, Policy, ThrottleOnly};
use crate::recirculation::Layout;
use crate::scenarios::{Kind, Scenario};
use crate::sim::run;
use maxwell_pricing::PriceParams;
use std::fmt;
use std::path::{Path, PathBuf};

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Seed of everything random (hosts, traces, gossip loss, scenarios).
    pub seed: u64,
    /// The floor.
    pub layout: Layout,
    /// Simulated seconds per run.
    pub duration_s: u64,
    /// When the scenario's event happens, s.
    pub event_s: u64,
    /// Gossip delay, rounds (1 round = 1 s).
    pub gossip_delay: usize,
    /// Probability that a report is lost between two nodes in a round.
    pub gossip_loss: f64,
    /// The price law's parameters.
    pub params: PriceParams,
}

impl BenchConfig {
    /// The benchmark: 4 racks × 40 hosts, 15 simulated minutes per run,
    /// events at 3 min, gossip 2 rounds late with 10% loss.
    pub fn standard(seed: u64) -> Self {
        Self {
            seed,
            layout: Layout::standard(),
            duration_s: 900,
            event_s: 180,
            gossip_delay: 2,
            gossip_loss: 0.1,
            params: PriceParams::default(),
        }
    }

    /// A small version for tests: 2 racks × 10 hosts, 4 minutes.
    pub fn short(seed: u64) -> Self {
        Self {
            layout: Layout {
                racks: 2,
                hosts_per_rack: 10,
                racks_per_row: 1,
            },
            duration_s: 240,
            event_s: 60,
            ..Self::standard(seed)
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Scenario name.
    pub scenario: &'static str,
    /// Policy name (`oracle` for the LP bound).
    pub policy: &'static str,
    /// What it measured.
    pub metrics: RunMetrics,
}

/// Everything the benchmark measured.
#[derive(Debug, Clone)]
pub struct ThermalBenchReport {
    /// What was run.
    pub config: BenchConfig,
    /// One row per scenario × policy, the oracle last in each scenario;
    /// after a fan failure also the bound on its moves ([`crate::bound`]).
    pub rows: Vec<Row>,
    /// Oracle failures, by scenario (empty when every LP solved).
    pub oracle_errors: Vec<(&'static str, String)>,
    /// Charts of the fan-failure scenario: file name and SVG text.
    pub plots: Vec<(String, String)>,
}

fn policies(cfg: &BenchConfig, salt: u64) -> Vec<Box<dyn Policy>> {
    vec![
        Box::new(ThrottleOnly),
        Box::new(LeastLoaded),
        Box::new(LocalCapping::default()),
        Box::new(CentralRules),
        Box::new(Maxwell::new(
            &cfg.layout,
            cfg.params.clone(),
            cfg.gossip_delay,
            cfg.gossip_loss,
            cfg.seed ^ salt,
        )),
    ]
}

/// Runs the benchmark described by `cfg`. Same config, same report.
pub fn run_thermal_bench_with(cfg: &BenchConfig) -> ThermalBenchReport {
    let mut rows = Vec::new();
    let mut oracle_errors = Vec::new();
    let mut plots = Vec::new();
    for (i, sc) in Scenario::all(&cfg.layout, cfg.event_s, cfg.seed)
        .into_iter()
        .enumerate()
    {
        let mut runs: Vec<(&'static str, RunResult)> = Vec::new();
        for mut p in policies(cfg, i as u64) {
            let r = run(cfg.layout, &sc, p.as_mut(), cfg.seed, cfg.duration_s);
            runs.push((p.name(), r));
        }
        let best_baseline = runs
            .iter()
            .filter(|(p, _)| crate::goals::BASELINES.contains(p))
            .map(|(_, r)| r.metrics.peak_c)
            .fold(f64::INFINITY, f64::min);
        let bound = fewest_moves(cfg.layout, &sc, cfg.seed, cfg.duration_s, best_baseline);
        match run_oracle(cfg.layout, &sc, cfg.seed, cfg.duration_s) {
            Ok(r) => runs.push(("oracle", r)),
            Err(e) => oracle_errors.push((sc.name, e)),
        }
        if sc.kind == Kind::FanFailure {
            plots = fan_failure_plots(cfg, &sc, &runs);
        }
        if let Some(r) = bound {
            // Before the oracle, which stays last.
            let at = runs.len() - usize::from(runs.last().is_some_and(|(p, _)| *p == "oracle"));
            runs.insert(at, (crate::bound::NAME, r));
        }
        rows.extend(runs.into_iter().map(|(policy, r)| Row {
            scenario: sc.name,
            policy,
            metrics: r.metrics,
        }));
    }
    ThermalBenchReport {
        config: cfg.clone(),
        rows,
        oracle_errors,
        plots,
    }
}

fn fan_failure_plots(
    cfg: &BenchConfig,
    sc: &Scenario,
    runs: &[(&'static str, RunResult)],
) -> Vec<(String, String)> {
    let h = sc.fan_host;
    let temps: Vec<Series> = runs
        .iter()
        .map(|(name, r)| Series {
            label: name.to_string(),
            values: r.die_c.iter().map(|v| v[h] as f64).collect(),
        })
        .collect();
    let crit = crate::world::World::new(cfg.layout, sc.clone(), cfg.seed).models[h].critical_c;
    let marks = [
        (crit - 3.0, "throttle".to_string()),
        (crit - 10.0, "alert".to_string()),
    ];
    let t_svg = line_chart(
        "Fan failure: die temperature of the failed host",
        "°C",
        &temps,
        &marks,
        Some(sc.event_s),
    );
    let mut prices = Vec::new();
    if let Some((_, r)) = runs.iter().find(|(n, _)| *n == "maxwell") {
        let l = &cfg.layout;
        let (rack, slot) = (l.rack_of(h), l.slot_of(h));
        let far = if slot >= l.hosts_per_rack / 2 {
            0
        } else {
            l.hosts_per_rack - 1
        };
        let picks = [
            (h, "failed host".to_string()),
            (h - 1, "slot below".into()),
            (h + 1, "slot above".into()),
            (h + 2, "two above".into()),
            (l.host(rack, far), "far end of rack".into()),
        ];
        for (j, label) in picks.into_iter().filter(|(j, _)| l.rack_of(*j) == rack) {
            prices.push(Series {
                label,
                values: r.prices.iter().map(|p| p[j] as f64 / 1000.0).collect(),
            });
        }
    }
    let p_svg = line_chart(
        "Fan failure under Maxwell: prices around the failed host",
        "price",
        &prices,
        &[],
        Some(sc.event_s),
    );
    vec![
        ("fan-failure-temperature.svg".into(), t_svg),
        ("fan-failure-price.svg".into(), p_svg),
    ]
}

impl ThermalBenchReport {
    /// Maxwell's value delivered divided by the oracle's, for `scenario`.
    pub fn ratio(&self, scenario: &str) -> Option<f64> {
        let get = |p: &str| {
            self.rows
                .iter()
                .find(|r| r.scenario == scenario && r.policy == p)
                .map(|r| r.metrics.value)
        };
        Some(get("maxwell")? / get("oracle")?)
    }

    /// Writes the SVG charts into `dir` (created if missing); returns their paths.
    pub fn write_plots(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        self.plots
            .iter()
            .map(|(name, svg)| {
                let path = dir.join(name);
                std::fs::write(&path, svg)?;
                Ok(path)
            })
            .collect()
    }
}

fn opt<T: fmt::Display>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

impl fmt::Display for ThermalBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(f, "thermal bench: seed {}, {} racks x {} hosts, {} s per run, event at {} s, gossip delay {} rounds, loss {:.0}%", c.seed, c.layout.racks, c.layout.hosts_per_rack, c.duration_s, c.event_s, c.gossip_delay, c.gossip_loss * 100.0)?;
        writeln!(
            f,
            "{:<12} {:<13} {:>7} {:>7} {:>9} {:>6} {:>10} {:>8} {:>6} {:>8} {:>8} {:>7}",
            "scenario",
            "policy",
            "peak°C",
            "p99°C",
            "thr-s",
            "thr-ev",
            "value",
            "work/kJ",
            "moves",
            "react-s",
            "osc-m",
            "settle"
        )?;
        for r in &self.rows {
            let m = &r.metrics;
            writeln!(
                f,
                "{:<12} {:<13} {:>7.1} {:>7.1} {:>9.0} {:>6} {:>10.0} {:>8.3} {:>6} {:>8} {:>8} {:>7}",
                r.scenario, r.policy, m.peak_c, m.p99_c, m.throttle_s, m.throttle_events, m.value, m.work_per_kj, m.moves, opt(m.reaction_s), opt(m.price_osc_milli), opt(m.settle_s)
            )?;
            if r.policy == "oracle" {
                writeln!(
                    f,
                    "{:<12} maxwell/oracle value ratio: {}",
                    r.scenario,
                    self.ratio(r.scenario)
                        .map_or("-".into(), |x| format!("{x:.3}"))
                )?;
            }
        }
        for (s, e) in &self.oracle_errors {
            writeln!(f, "{s}: oracle LP failed: {e}")?;
        }
        writeln!(f, "value: value-weighted host-seconds of work delivered; react-s: event -> every host back under critical-10°C (- = not back); osc-m: price oscillation amplitude (milli, detrended, last 300 s); settle: s after event until no price steps > 100 milli")?;
        writeln!(f, "goals (docs/pricing.md §4), maxwell in each scenario:")?;
        for v in crate::goals::verdicts(&self.rows) {
            writeln!(f, "{v}")?;
        }
        Ok(())
    }
}
