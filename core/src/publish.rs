//! When a node tells the mesh about its heat: sample fast, publish only
//! what peers would act on.
//!
//! A reading is published when it is **urgent** (at once), when it
//! **changed** beyond a deadband (at most once per `min_gap_ms`), or when a
//! **heartbeat** is due (the same heat re-signed, so that peers and joiners
//! can tell it is current). Urgent means what moves neighbours' prices or
//! placement: a jump of [`URGENT_JUMP`], the temperature coming within
//! [`NEAR_CRITICAL`] of the limit or leaving it, headroom collapsing under
//! a tenth of the cap or coming back, the price leaving its hysteresis band,
//! or the sensor source changing. A change in the guest room (a guest
//! arrived or left) is news, not urgent.

use crate::reading::Heat;
use maxwell_types::MilliCelsius;

/// A temperature change under this is noise, not news.
pub const DEADBAND: MilliCelsius = MilliCelsius(500);
/// A temperature jump of this much is published at once.
pub const URGENT_JUMP: MilliCelsius = MilliCelsius(3_000);
/// Within this of the critical limit, a host is near throttling.
pub const NEAR_CRITICAL: MilliCelsius = MilliCelsius(5_000);
/// A price change under this fraction (in thousandths) is not news.
pub const PRICE_DEADBAND_PERMILLE: u64 = 10;
/// A power change under this fraction of the cap (in thousandths) is not news.
pub const POWER_DEADBAND_PERMILLE: i64 = 20;

/// How often a node publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishPolicy {
    /// A change that is not urgent waits at least this long after the last
    /// report, ms.
    pub min_gap_ms: u64,
    /// The same heat is re-signed and sent at least this often, ms.
    pub heartbeat_ms: u64,
    /// `false` publishes every reading (the rack simulation's model).
    pub deadband: bool,
    /// Re-price when peers' records arrive, not only at a reading.
    pub reprice_on_arrival: bool,
}

impl PublishPolicy {
    /// Every reading is published, and the price moves only at readings.
    pub const EVERY_READING: Self = Self {
        min_gap_ms: 0,
        heartbeat_ms: 0,
        deadband: false,
        reprice_on_arrival: false,
    };
}

/// Why a report goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    First,
    Urgent,
    Changed,
    Heartbeat,
}

/// The decision for one reading: `last` was published at `last_at_ms`;
/// `unheld` says the price just left its hysteresis band.
pub fn decide(
    policy: &PublishPolicy,
    last: Option<&Heat>,
    last_at_ms: u64,
    now_ms: u64,
    heat: &Heat,
    unheld: bool,
) -> Option<Why> {
    let Some(last) = last else {
        return Some(Why::First);
    };
    if !policy.deadband {
        return Some(Why::Changed);
    }
    let since = now_ms.saturating_sub(last_at_ms);
    if unheld || urgent(last, heat) {
        return Some(Why::Urgent);
    }
    if since >= policy.min_gap_ms && changed(last, heat) {
        return Some(Why::Changed);
    }
    (since >= policy.heartbeat_ms).then_some(Why::Heartbeat)
}

fn near(h: &Heat) -> bool {
    h.hottest.0 >= h.critical.0 - NEAR_CRITICAL.0
}

fn starved(h: &Heat) -> bool {
    h.headroom.0 * 10 < h.power_cap.0
}

fn urgent(last: &Heat, now: &Heat) -> bool {
    (now.hottest.0 - last.hottest.0).abs() >= URGENT_JUMP.0
        || near(last) != near(now)
        || starved(last) != starved(now)
        || last.source != now.source
        || last.critical != now.critical
}

fn changed(last: &Heat, now: &Heat) -> bool {
    let power_band = now.power_cap.0.max(1) * POWER_DEADBAND_PERMILLE / 1000;
    let price_band = last.price_milli * PRICE_DEADBAND_PERMILLE / 1000;
    (now.hottest.0 - last.hottest.0).abs() >= DEADBAND.0
        || now.price_milli.abs_diff(last.price_milli) > price_band
        || (now.power_draw.0 - last.power_draw.0).abs() > power_band
        || (now.headroom.0 - last.headroom.0).abs() > power_band
        || now.power_cap != last.power_cap
        || now.position != last.position
        || now.room != last.room
}

#[cfg(test)]
mod tests {
    use super::*;
    use maxwell_gossip::SensorSource;
    use maxwell_types::{MicroWatts, Position};

    fn heat(celsius: f64) -> Heat {
        Heat {
            position: Position::new("r1", 1),
            hottest: MilliCelsius::from_celsius(celsius),
            critical: MilliCelsius::from_celsius(95.0),
            power_draw: MicroWatts::from_watts(200.0),
            power_cap: MicroWatts::from_watts(400.0),
            headroom: MicroWatts::from_watts(200.0),
            price_milli: 1_000,
            source: SensorSource::Emulated,
            room: Default::default(),
        }
    }

    const LAN: PublishPolicy = PublishPolicy {
        min_gap_ms: 1_000,
        heartbeat_ms: 60_000,
        deadband: true,
        reprice_on_arrival: true,
    };

    #[test]
    fn noise_waits_for_the_heartbeat_a_change_for_the_gap_and_a_jump_for_nothing() {
        let last = heat(40.0);
        let d = |now, h: &Heat, unheld| decide(&LAN, Some(&last), 0, now, h, unheld);
        assert_eq!(decide(&LAN, None, 0, 0, &last, false), Some(Why::First));
        assert_eq!(d(100, &heat(40.3), false), None);
        assert_eq!(d(59_000, &heat(40.3), false), None);
        assert_eq!(d(60_000, &heat(40.3), false), Some(Why::Heartbeat));
        assert_eq!(
            d(500, &heat(41.0), false),
            None,
            "a change waits for the gap"
        );
        assert_eq!(d(1_000, &heat(41.0), false), Some(Why::Changed));
        assert_eq!(d(100, &heat(43.5), false), Some(Why::Urgent));
        assert_eq!(
            d(100, &heat(40.2), true),
            Some(Why::Urgent),
            "the price left its band"
        );
        assert_eq!(d(100, &heat(91.0).clone(), false), Some(Why::Urgent));
        let starving = Heat {
            headroom: MicroWatts::from_watts(20.0),
            power_draw: MicroWatts::from_watts(380.0),
            ..heat(40.0)
        };
        assert_eq!(d(100, &starving, false), Some(Why::Urgent));
        let pricier = Heat {
            price_milli: 1_011,
            ..heat(40.0)
        };
        assert_eq!(d(1_000, &pricier, false), Some(Why::Changed));
        assert_eq!(
            decide(
                &PublishPolicy::EVERY_READING,
                Some(&last),
                0,
                1,
                &last,
                false
            ),
            Some(Why::Changed)
        );
    }
}
