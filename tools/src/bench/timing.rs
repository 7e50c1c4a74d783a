//! Bounded waits and their statistics, for every benchmark's table.

use std::time::Duration;

/// What a bounded wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// Reached after this long.
    Done(Duration),
    /// Not reached in time: `seen` of `of` had got there.
    Timeout { seen: usize, of: usize },
}

impl Waited {
    /// The time taken, if reached.
    pub fn done(self) -> Option<Duration> {
        match self {
            Waited::Done(d) => Some(d),
            Waited::Timeout { .. } => None,
        }
    }
}

impl std::fmt::Display for Waited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waited::Done(d) => write!(f, "{}", secs(*d)),
            Waited::Timeout { seen, of } => write!(f, "timeout ({seen}/{of})"),
        }
    }
}

/// When the `fraction` quantile of `times` was reached: the k-th smallest
/// time with k = ceil(fraction * len); a timeout if fewer got there.
pub fn quantile(times: &[Option<Duration>], fraction: f64) -> Waited {
    let of = times.len();
    let mut reached: Vec<Duration> = times.iter().flatten().copied().collect();
    reached.sort();
    // A fraction of a node rounds up: 99 % of 9 nodes is all 9.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let k = ((fraction * of as f64).ceil() as usize).clamp(1, of.max(1));
    match reached.get(k - 1) {
        Some(d) if of > 0 => Waited::Done(*d),
        _ => Waited::Timeout {
            seen: reached.len(),
            of,
        },
    }
}

/// The median of repeated trials (the lower one of an even count); the
/// first timeout if any trial timed out.
pub fn median(trials: &[Waited]) -> Waited {
    order_stat(trials, |len| (len - 1) / 2)
}

/// The slowest of repeated trials; the first timeout if any timed out.
pub fn slowest(trials: &[Waited]) -> Waited {
    order_stat(trials, |len| len - 1)
}

fn order_stat(trials: &[Waited], index: impl Fn(usize) -> usize) -> Waited {
    if let Some(timeout) = trials.iter().find(|w| w.done().is_none()) {
        return *timeout;
    }
    let mut done: Vec<Duration> = trials.iter().filter_map(|w| w.done()).collect();
    done.sort();
    match done.len() {
        0 => Waited::Timeout { seen: 0, of: 0 },
        len => Waited::Done(done[index(len)]),
    }
}

/// `0.35 s`, `12 ms`.
pub fn secs(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_round_up_and_report_timeouts() {
        let ms = |v: u64| Some(Duration::from_millis(v));
        let t = [ms(30), ms(10), None, ms(20)];
        assert_eq!(quantile(&t, 0.5), Waited::Done(Duration::from_millis(20)));
        assert_eq!(quantile(&t, 0.75), Waited::Done(Duration::from_millis(30)));
        assert_eq!(quantile(&t, 1.0), Waited::Timeout { seen: 3, of: 4 });
        assert_eq!(quantile(&[], 0.5), Waited::Timeout { seen: 0, of: 0 });
    }

    #[test]
    fn medians_of_trials() {
        let d = |v: u64| Waited::Done(Duration::from_millis(v));
        assert_eq!(median(&[d(5), d(1), d(3)]), d(3));
        assert_eq!(median(&[d(4), d(1), d(3), d(2)]), d(2));
        assert_eq!(slowest(&[d(4), d(1)]), d(4));
        let t = Waited::Timeout { seen: 2, of: 3 };
        assert_eq!(median(&[d(1), t, d(2)]), t);
    }
}
