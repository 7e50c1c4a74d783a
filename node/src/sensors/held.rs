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

use super::TempReading;
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
            let held = if crit <= last {
                last
            } else {
                let decay = (-failed_for.as_secs_f64() / rise.as_secs_f64()).exp();
                let v = crit as f64 - (crit - last) as f64 * decay;
                // Rounded up, and clamped: never below the last good value.
                (v.ceil() as i64).clamp(last, crit)
            };
            let mut reading = good.reading.clone();
            reading.input_millicelsius = MilliCelsius(held);
            reading.held_for_ms = Some(u64::try_from(failed_for.as_millis()).unwrap_or(u64::MAX));
            temps.push(reading);
        }
    }
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
