//! Fail-safe temperatures: unknown never reads as cool.
//!
//! A temperature channel that was read once and then fails (its file turns
//! to garbage, disappears, becomes a directory, or its whole chip goes)
//! keeps counting. Its held value starts at the last good reading and rises
//! toward the channel's critical limit with time constant
//! `sensors.failed_channel_rise_s`:
//!
//! `held(t) = crit − (crit − last) · e^(−t / rise)`
//!
//! so it is never below the last good value and never above the limit. It
//! counts until the channel reads again or an operator excludes its chip
//! (`sensors.exclude_chips`, reloaded on SIGHUP). A channel that was never
//! read is not invented; the summary already treats "no temperature at all"
//! as "at the limit".
//!
//! Power draws follow the same rule, rising from the last good draw toward
//! the channel's cap (held flat without one): a failed power meter must not
//! hand the summary to a smaller source and overstate the headroom.

use super::{PowerReading, Problem, ProblemKind, TempReading};
use maxwell_gossip::MilliCelsius;
use std::collections::BTreeMap;
use std::time::Duration;

/// The last good reading of a channel and when it was taken.
#[derive(Debug, Clone)]
struct Good {
    reading: TempReading,
    at: Duration,
}

/// Every channel seen so far, by (device, chip, sensor).
#[derive(Debug, Default)]
pub struct HeldChannels {
    seen: BTreeMap<(String, String, String), Good>,
    /// Power channels with a draw: the reading and when.
    draws: BTreeMap<(String, String, String), (PowerReading, Duration)>,
}

/// `last` rising toward `limit` with time constant `rise` after `t`, never
/// below `last` nor above `limit` (flat when the limit is not above it).
fn rising(last: i64, limit: i64, t: Duration, rise: Duration) -> i64 {
    if limit <= last {
        return last;
    }
    let decay = (-t.as_secs_f64() / rise.as_secs_f64()).exp();
    let v = limit as f64 - (limit - last) as f64 * decay;
    (v.ceil() as i64).clamp(last, limit)
}

impl HeldChannels {
    /// Records this period's good readings and appends a held reading for
    /// each channel seen before and missing now. `now` is monotonic.
    pub fn apply(
        &mut self,
        temps: &mut Vec<TempReading>,
        now: Duration,
        rise: Duration,
        default_critical: MilliCelsius,
        exclude_chips: &[String],
    ) {
        self.seen
            .retain(|(_, chip, _), _| !exclude_chips.contains(chip));
        let mut present = std::collections::BTreeSet::new();
        for t in temps.iter().filter(|t| !exclude_chips.contains(&t.chip)) {
            let key = (t.device.clone(), t.chip.clone(), t.sensor.clone());
            present.insert(key.clone());
            self.seen.insert(
                key,
                Good {
                    reading: t.clone(),
                    at: now,
                },
            );
        }
        for (key, good) in &self.seen {
            if present.contains(key) {
                continue;
            }
            let failed_for = now.saturating_sub(good.at);
            let last = good.reading.input_millicelsius.0;
            let crit = good.reading.crit_millicelsius.unwrap_or(default_critical).0;
            let held = rising(last, crit, failed_for, rise);
            let mut reading = good.reading.clone();
            reading.input_millicelsius = MilliCelsius(held);
            reading.held_for_ms = Some(u64::try_from(failed_for.as_millis()).unwrap_or(u64::MAX));
            temps.push(reading);
        }
    }
}

impl HeldChannels {
    /// The same for power: a channel whose draw was read before and is
    /// missing now (the file, or the whole channel) gets a held draw, and a
    /// problem saying so.
    pub fn apply_power(
        &mut self,
        power: &mut Vec<PowerReading>,
        problems: &mut Vec<Problem>,
        now: Duration,
        rise: Duration,
        exclude_chips: &[String],
    ) {
        self.draws
            .retain(|(_, chip, _), _| !exclude_chips.contains(chip));
        let key = |p: &PowerReading| (p.device.clone(), p.chip.clone(), p.sensor.clone());
        let mut present = std::collections::BTreeSet::new();
        for p in power
            .iter_mut()
            .filter(|p| !exclude_chips.contains(&p.chip))
        {
            present.insert(key(p));
            if p.draw().is_some() {
                self.draws.insert(key(p), (p.clone(), now));
            } else if let Some((good, at)) = self.draws.get(&key(p)) {
                hold_draw(p, good, now.saturating_sub(*at), rise, problems);
            }
        }
        for (k, (good, at)) in &self.draws {
            if !present.contains(k) {
                let mut p = good.clone();
                hold_draw(&mut p, good, now.saturating_sub(*at), rise, problems);
                power.push(p);
            }
        }
    }
}

/// Gives `p` the held draw of `good`, failed `for_` ago.
fn hold_draw(
    p: &mut PowerReading,
    good: &PowerReading,
    for_: Duration,
    rise: Duration,
    problems: &mut Vec<Problem>,
) {
    let last = good.draw().map_or(0, |w| w.0);
    let cap = p
        .cap_microwatts
        .or(good.cap_microwatts)
        .map_or(last, |c| c.0);
    p.average_microwatts = Some(maxwell_gossip::MicroWatts(rising(last, cap, for_, rise)));
    p.input_microwatts = None;
    p.cap_microwatts = p.cap_microwatts.or(good.cap_microwatts);
    p.held_for_ms = Some(u64::try_from(for_.as_millis()).unwrap_or(u64::MAX));
    problems.push(Problem {
        path: format!("{}/{}", p.device, p.sensor),
        kind: ProblemKind::Missing,
        detail: "the draw stopped reading; held at its last value, rising toward the cap".into(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensors::TempRole;

    fn reading(sensor: &str, millicelsius: i64) -> TempReading {
        TempReading {
            chip: "k10temp".into(),
            device: "hwmon1".into(),
            sensor: sensor.into(),
            label: Some("Tccd1".into()),
            role: TempRole::Die,
            input_millicelsius: MilliCelsius(millicelsius),
            max_millicelsius: None,
            crit_millicelsius: Some(MilliCelsius(100_000)),
            crit_hyst_millicelsius: None,
            held_for_ms: None,
        }
    }

    #[test]
    fn a_failed_channel_holds_its_last_value_and_rises_toward_the_limit() {
        let mut held = HeldChannels::default();
        let rise = Duration::from_secs(60);
        let crit = MilliCelsius(95_000);
        let s = Duration::from_secs;
        let mut temps = vec![reading("temp3", 94_000), reading("temp4", 58_000)];
        held.apply(&mut temps, s(0), rise, crit, &[]);
        assert_eq!(temps.len(), 2, "nothing held while all read");

        let mut previous = 94_000;
        for t in [1, 10, 60, 600, 6000] {
            let mut temps = vec![reading("temp4", 58_000)];
            held.apply(&mut temps, s(t), rise, crit, &[]);
            let h = temps.iter().find(|r| r.sensor == "temp3").expect("held");
            assert_eq!(h.held_for_ms, Some(t * 1000));
            let v = h.input_millicelsius.0;
            assert!(v >= previous && v <= 100_000, "t={t}: {v}");
            previous = v;
        }
        assert!(
            previous > 99_900,
            "close to the limit after 100 rise times: {previous}"
        );

        // It reads again: the measurement, not the held value.
        let mut temps = vec![reading("temp3", 70_000), reading("temp4", 58_000)];
        held.apply(&mut temps, s(7000), rise, crit, &[]);
        assert_eq!(temps.len(), 2);
        assert!(temps.iter().all(|t| t.held_for_ms.is_none()));
    }

    fn meter(average_w: Option<i64>) -> PowerReading {
        PowerReading {
            chip: "power_meter".into(),
            device: "hwmon2".into(),
            sensor: "power1".into(),
            label: None,
            input_microwatts: None,
            average_microwatts: average_w.map(|w| maxwell_gossip::MicroWatts(w * 1_000_000)),
            cap_microwatts: Some(maxwell_gossip::MicroWatts(450_000_000)),
            held_for_ms: None,
        }
    }

    #[test]
    fn a_failed_power_meter_holds_its_draw_and_rises_toward_the_cap() {
        let mut held = HeldChannels::default();
        let (rise, s) = (Duration::from_secs(60), Duration::from_secs);
        let mut problems = Vec::new();
        let mut power = vec![meter(Some(231))];
        held.apply_power(&mut power, &mut problems, s(0), rise, &[]);
        assert!(problems.is_empty());
        // The average file vanishes: the channel is there, its draw is not.
        let mut power = vec![meter(None)];
        held.apply_power(&mut power, &mut problems, s(1), rise, &[]);
        let w = power[0].draw().expect("held draw").0;
        assert!((231_000_000..=450_000_000).contains(&w), "{w}");
        assert_eq!(power[0].held_for_ms, Some(1000));
        assert_eq!(problems.len(), 1, "the failure is listed");
        // The whole channel goes: held and rising.
        let mut power = Vec::new();
        held.apply_power(&mut power, &mut problems, s(600), rise, &[]);
        assert!(power[0].draw().expect("held").0 > 449_000_000);
    }

    #[test]
    fn excluding_the_chip_forgets_the_channel() {
        let mut held = HeldChannels::default();
        let (rise, crit) = (Duration::from_secs(60), MilliCelsius(95_000));
        let mut temps = vec![reading("temp3", 94_000)];
        held.apply(&mut temps, Duration::ZERO, rise, crit, &[]);
        let mut temps = Vec::new();
        held.apply(
            &mut temps,
            Duration::from_secs(1),
            rise,
            crit,
            &["k10temp".into()],
        );
        assert!(temps.is_empty());
        held.apply(&mut temps, Duration::from_secs(2), rise, crit, &[]);
        assert!(temps.is_empty(), "forgotten, not resurrected");
    }
}
