//! What a run measured: [`Recorder`] accumulates during a run, [`RunMetrics`]
//! is the summary row of the benchmark table.

use crate::world::World;

/// A price step larger than this (thousandths) counts as "still moving".
pub const SETTLE_STEP_MILLI: u64 = 100;
/// Window at the end of a run over which oscillation is measured, s.
pub const OSC_WINDOW_S: usize = 300;
/// Moving-average length used to detrend prices before measuring oscillation, s.
pub const DETREND_S: usize = 31;

/// One run's summary.
#[derive(Debug, Clone, PartialEq)]
pub struct RunMetrics {
    /// Hottest die temperature seen, °C.
    pub peak_c: f64,
    /// 99th percentile of all die temperatures (hosts × seconds), °C.
    pub p99_c: f64,
    /// Host-seconds spent throttled.
    pub throttle_s: f64,
    /// Times throttling engaged.
    pub throttle_events: u64,
    /// Value-weighted work delivered (host-seconds × value).
    pub value: f64,
    /// Work delivered (host-seconds of full utilisation) per kJ.
    pub work_per_kj: f64,
    /// Guest migrations.
    pub moves: u64,
    /// Seconds from the event until every host stays under its alert
    /// threshold (critical − 10 °C); `None` if not back by the end.
    pub reaction_s: Option<u64>,
    /// Largest peak-to-peak of a detrended price over the last
    /// [`OSC_WINDOW_S`] s (price-setting policies only).
    pub price_osc_milli: Option<u64>,
    /// Seconds from the event until no price steps by more than
    /// [`SETTLE_STEP_MILLI`] any more (price-setting policies only).
    pub settle_s: Option<u64>,
}

/// A run's summary and traces.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The summary.
    pub metrics: RunMetrics,
    /// Die temperature of every host, per second.
    pub die_c: Vec<Vec<f32>>,
    /// Price of every host, per second (empty for policies without prices).
    pub prices: Vec<Vec<u64>>,
}

/// Accumulates one run.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Migrations so far.
    pub moves: u64,
    /// Throttle engagements so far.
    pub throttle_events: u64,
    throttle_s: f64,
    all_c: Vec<f32>,
    die_c: Vec<Vec<f32>>,
    over: Vec<bool>,
    prices: Vec<Vec<u64>>,
    value: f64,
    work: f64,
    energy_j: f64,
}

impl Recorder {
    /// A recorder for `hosts` hosts over about `steps` seconds.
    pub fn new(hosts: usize, steps: usize) -> Self {
        Self {
            moves: 0,
            throttle_events: 0,
            throttle_s: 0.0,
            all_c: Vec::with_capacity(hosts * steps),
            die_c: Vec::with_capacity(steps),
            over: Vec::with_capacity(steps),
            prices: Vec::new(),
            value: 0.0,
            work: 0.0,
            energy_j: 0.0,
        }
    }

    /// Records one second of temperatures.
    pub fn record_thermal(&mut self, w: &World) {
        let die: Vec<f32> = w.thermal.iter().map(|s| s.die_c as f32).collect();
        self.all_c.extend_from_slice(&die);
        self.throttle_s += w.thermal.iter().filter(|s| s.throttled).count() as f64;
        self.over.push(
            w.thermal
                .iter()
                .enumerate()
                .any(|(h, s)| s.die_c > w.alert_c(h)),
        );
        self.die_c.push(die);
    }

    /// Records one second of work, value and power.
    pub fn record_work(&mut self, work: f64, value: f64, power_w: f64) {
        self.work += work;
        self.value += value;
        self.energy_j += power_w;
    }

    /// Records one second of prices, if the policy sets any.
    pub fn record_prices(&mut self, prices: Option<&[u64]>) {
        if let Some(p) = prices {
            self.prices.push(p.to_vec());
        }
    }

    /// The summary.
    pub fn finish(mut self, _w: &World, event_s: u64) -> RunResult {
        self.all_c.sort_by(f32::total_cmp);
        let peak_c = self.all_c.last().copied().unwrap_or(0.0) as f64;
        let p99_c = self
            .all_c
            .get(self.all_c.len().saturating_sub(1) * 99 / 100)
            .copied()
            .unwrap_or(0.0) as f64;
        let ev = event_s as usize;
        let reaction_s = match self.over.iter().rposition(|&o| o) {
            None => Some(0),
            Some(last) if last + 1 == self.over.len() => None,
            Some(last) => Some((last + 1).saturating_sub(ev) as u64),
        };
        let (price_osc_milli, settle_s) = if self.prices.is_empty() {
            (None, None)
        } else {
            (
                Some(oscillation(&self.prices)),
                Some(settling(&self.prices, ev)),
            )
        };
        let metrics = RunMetrics {
            peak_c,
            p99_c,
            throttle_s: self.throttle_s,
            throttle_events: self.throttle_events,
            value: self.value,
            work_per_kj: if self.energy_j > 0.0 {
                self.work / (self.energy_j / 1000.0)
            } else {
                0.0
            },
            moves: self.moves,
            reaction_s,
            price_osc_milli,
            settle_s,
        };
        RunResult {
            metrics,
            die_c: self.die_c,
            prices: self.prices,
        }
    }
}

/// Largest peak-to-peak, over hosts, of price minus its centred moving
/// average, in the last [`OSC_WINDOW_S`] seconds.
pub fn oscillation(prices: &[Vec<u64>]) -> u64 {
    let steps = prices.len();
    let hosts = prices.first().map_or(0, Vec::len);
    let half = DETREND_S / 2;
    let start = steps.saturating_sub(OSC_WINDOW_S).max(half);
    let end = steps.saturating_sub(half);
    let mut worst = 0.0f64;
    for h in 0..hosts {
        let (mut lo, mut hi) = (f64::MAX, f64::MIN);
        let series: Vec<f64> = prices.iter().map(|p| p[h] as f64).collect();
        for t in start..end {
            let avg = series[t - half..=t + half].iter().sum::<f64>() / DETREND_S as f64;
            let d = series[t] - avg;
            lo = lo.min(d);
            hi = hi.max(d);
        }
        if hi >= lo {
            worst = worst.max(hi - lo);
        }
    }
    worst.round() as u64
}

/// Seconds after `event` until no host's price steps by more than
/// [`SETTLE_STEP_MILLI`] in one second for the rest of the run.
pub fn settling(prices: &[Vec<u64>], event: usize) -> u64 {
    let last_jump = (1..prices.len()).rev().find(|&t| {
        prices[t]
            .iter()
            .zip(&prices[t - 1])
            .any(|(a, b)| a.abs_diff(*b) > SETTLE_STEP_MILLI)
    });
    last_jump.map_or(0, |t| (t + 1).saturating_sub(event) as u64)
}
