//! The market issue's goals for Maxwell in the thermal bench, read off a
//! report's rows (docs/pricing.md §4): in every scenario, a peak, p99 and
//! throttle-seconds no worse than any baseline's; a peak within 1 °C of the
//! oracle's; fewer moves than the central rule; and in the heavy scenario
//! at least 95 % of the oracle's value. Figures are compared as they are
//! printed: temperatures to 0.1 °C, the value share to 0.001. Where no
//! policy can make fewer moves than the central rule (it made none), or
//! none that serves every guest in full ([`crate::bound`] needs as many),
//! the verdict says so.

use crate::bench::Row;
use crate::metrics::RunMetrics;
use std::fmt;

/// The policies Maxwell is held against.
pub const BASELINES: [&str; 4] = ["hw-throttle", "least-loaded", "local-cap", "central-80%"];
/// The scenario whose value is held against the oracle's.
pub const VALUE_SCENARIO: &str = "heavy85+cool";
/// Within this of the oracle's peak, °C.
pub const NEAR_ORACLE_C: f64 = 1.0;
/// At least this share of the oracle's value.
pub const VALUE_SHARE: f64 = 0.95;

/// One scenario's verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub scenario: &'static str,
    /// `None`: no worse than any baseline; else what was worse, and whose.
    pub worse: Option<String>,
    /// Maxwell's peak less the oracle's, °C.
    pub above_oracle_c: f64,
    /// Maxwell's moves and the central rule's.
    pub moves: (u64, u64),
    /// The fewest moves that can hold the failed host to the best
    /// baseline's peak while serving every guest in full, where
    /// [`crate::bound`] knows.
    pub fewest: Option<u64>,
    /// Maxwell's value over the oracle's, in the value scenario.
    pub value_share: Option<f64>,
}

fn tenth(c: f64) -> i64 {
    (c * 10.0).round() as i64
}

/// The verdicts of every scenario that has Maxwell, the oracle and every
/// baseline in `rows`.
pub fn verdicts(rows: &[Row]) -> Vec<Verdict> {
    let mut scenarios: Vec<&'static str> = Vec::new();
    for r in rows {
        if !scenarios.contains(&r.scenario) {
            scenarios.push(r.scenario);
        }
    }
    scenarios
        .into_iter()
        .filter_map(|s| {
            let get = |p: &str| rows.iter().find(|r| r.scenario == s && r.policy == p);
            let (mx, oracle) = (&get("maxwell")?.metrics, &get("oracle")?.metrics);
            let base: Vec<(&str, &RunMetrics)> = BASELINES
                .iter()
                .map(|p| Some((*p, &get(p)?.metrics)))
                .collect::<Option<_>>()?;
            let mut worse = Vec::new();
            let mut check = |what: &str, of: fn(&RunMetrics) -> i64, unit: f64| {
                let best = base.iter().min_by_key(|(_, m)| of(m));
                if let Some((p, m)) = best.filter(|(_, m)| of(m) < of(mx)) {
                    let (a, b) = (of(mx) as f64 / unit, of(m) as f64 / unit);
                    let digits = usize::from(unit > 1.0);
                    worse.push(format!("{what} {a:.digits$} > {b:.digits$} ({p})"));
                }
            };
            check("peak", |m| tenth(m.peak_c), 10.0);
            check("p99", |m| tenth(m.p99_c), 10.0);
            check("throttle-s", |m| m.throttle_s.round() as i64, 1.0);
            let central = base.iter().find(|(p, _)| *p == "central-80%")?.1;
            Some(Verdict {
                scenario: s,
                worse: (!worse.is_empty()).then(|| worse.join(", ")),
                above_oracle_c: (tenth(mx.peak_c) - tenth(oracle.peak_c)) as f64 / 10.0,
                moves: (mx.moves, central.moves),
                fewest: get(crate::bound::NAME).map(|r| r.metrics.moves),
                value_share: (s == VALUE_SCENARIO).then(|| mx.value / oracle.value),
            })
        })
        .collect()
}

fn yes(ok: bool) -> &'static str {
    if ok {
        "yes"
    } else {
        "NO"
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let worse = match &self.worse {
            None => "yes".to_string(),
            Some(w) => format!("NO: {w}"),
        };
        let near = self.above_oracle_c <= NEAR_ORACLE_C;
        let (mine, central) = self.moves;
        let mut fewer = match mine.cmp(&central) {
            std::cmp::Ordering::Less => "yes",
            std::cmp::Ordering::Equal => "equal",
            std::cmp::Ordering::Greater => "NO",
        }
        .to_string();
        if central == 0 {
            fewer.push_str(" (fewer than none cannot be)");
        } else if let Some(k) = self.fewest {
            let can = if k < central { "can" } else { "cannot" };
            fewer.push_str(&format!(
                " (fewest at the best baseline's peak: {k}, so fewer {can} be)"
            ));
        }
        let value = self.value_share.map_or("-".to_string(), |v| {
            let met = (v * 1000.0).round() >= VALUE_SHARE * 1000.0;
            format!("{v:.3} {}", yes(met))
        });
        write!(
            f,
            "{:<12} no worse than baselines: {worse}; peak - oracle {:+.1} °C {}; moves {mine} vs central {central} {fewer}; value/LP {value}",
            self.scenario,
            self.above_oracle_c,
            yes(near)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(policy: &'static str, peak_c: f64, moves: u64, value: f64) -> Row {
        Row {
            scenario: VALUE_SCENARIO,
            policy,
            metrics: RunMetrics {
                peak_c,
                p99_c: 60.0,
                throttle_s: 0.0,
                throttle_events: 0,
                value,
                work_per_kj: 1.0,
                moves,
                reaction_s: None,
                price_osc_milli: None,
                settle_s: None,
            },
        }
    }

    #[test]
    fn each_goal_is_read_off_the_rows_and_a_miss_names_whom_it_lost_to() {
        let mut rows: Vec<Row> = BASELINES.iter().map(|p| row(p, 80.0, 10, 90.0)).collect();
        rows.push(row("maxwell", 80.04, 10, 95.0));
        rows.push(row("oracle", 79.0, 0, 100.0));
        let v = &verdicts(&rows)[0];
        // 80.04 prints as 80.0: no worse; 1.0 above the oracle is within.
        assert_eq!(v.worse, None);
        assert_eq!((v.above_oracle_c, v.moves), (1.0, (10, 10)));
        let text = v.to_string();
        assert!(text.contains("+1.0 °C yes") && text.contains("10 vs central 10 equal"));
        assert!(text.contains("value/LP 0.950 yes"), "{text}");

        // A miss names the best baseline, not the first that beat it.
        rows[1].metrics.peak_c = 79.9;
        rows[2].metrics.peak_c = 79.5;
        rows[3].metrics.moves = 11;
        rows[4].metrics.value = 94.96;
        let v = &verdicts(&rows)[0];
        assert_eq!(v.worse.as_deref(), Some("peak 80.0 > 79.5 (local-cap)"));
        assert!(v.to_string().contains("value/LP 0.950 yes"), "as printed");
        assert!(v.to_string().contains("moves 10 vs central 11 yes"));
        // The bound, where there is one, says whether fewer can be.
        let mut bound = row(crate::bound::NAME, 72.0, 11, 90.0);
        rows.insert(4, bound.clone());
        rows[5].metrics.moves = 12;
        let text = verdicts(&rows)[0].to_string();
        assert!(text.contains("moves 12 vs central 11 NO (fewest at the best baseline's peak: 11, so fewer cannot be)"), "{text}");
        bound.metrics.moves = 3;
        rows[4] = bound;
        let text = verdicts(&rows)[0].to_string();
        assert!(text.contains("peak: 3, so fewer can be)"), "{text}");
        rows.remove(4);
        rows[3].metrics.moves = 0;
        assert!(verdicts(&rows)[0]
            .to_string()
            .contains("moves 12 vs central 0 NO (fewer than none cannot be)"));
        // A scenario without the oracle has no verdict.
        rows.pop();
        assert!(verdicts(&rows).is_empty());
    }
}
