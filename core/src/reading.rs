//! What the core reads from the host ([`Reading`]) and what it asks the
//! driver to sign and gossip ([`Heat`]).

use maxwell_gossip::{Room, SensorSource};
use maxwell_types::{MicroWatts, MilliCelsius, Position};

/// One sensor period, as the OS edge measured it. `None` means "not
/// measured"; the core turns every unknown into the pessimistic value.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The hottest sensor and its critical limit.
    pub hottest: Option<(MilliCelsius, MilliCelsius)>,
    /// Power the host draws now.
    pub power_draw: Option<MicroWatts>,
    /// Power cap in force.
    pub power_cap: Option<MicroWatts>,
    /// Cap − draw (negative when over the cap).
    pub headroom: Option<MicroWatts>,
    /// Where the values came from.
    pub source: SensorSource,
}

/// The fields of our next heat report that the core decides: what we
/// measured, made pessimistic, and our price. The driver adds who we are,
/// the sequence number and the time, signs it and gossips it.
#[derive(Debug, Clone, PartialEq)]
pub struct Heat {
    pub position: Position,
    pub hottest: MilliCelsius,
    pub critical: MilliCelsius,
    pub power_draw: MicroWatts,
    pub power_cap: MicroWatts,
    pub headroom: MicroWatts,
    pub price_milli: u64,
    pub source: SensorSource,
    /// The host's guests and the room left for more (the core's own book).
    pub room: Room,
}

impl Reading {
    /// `(temperature, critical limit)`: an unknown temperature is "at the
    /// limit" (`default_critical`), never cool.
    pub fn temperature_or_limit(
        &self,
        default_critical: MilliCelsius,
    ) -> (MilliCelsius, MilliCelsius) {
        self.hottest.unwrap_or((default_critical, default_critical))
    }

    /// The report fields, at `price_milli` with `room`. No power reading is reported as
    /// zero draw, zero cap and zero headroom: no headroom, never spare power.
    pub fn heat(
        &self,
        position: &Position,
        default_critical: MilliCelsius,
        price_milli: u64,
        room: Room,
    ) -> Heat {
        let (hottest, critical) = self.temperature_or_limit(default_critical);
        Heat {
            position: position.clone(),
            hottest,
            critical,
            power_draw: self.power_draw.unwrap_or(MicroWatts(0)),
            power_cap: self.power_cap.unwrap_or(MicroWatts(0)),
            headroom: self.headroom.unwrap_or(MicroWatts(0)),
            price_milli,
            source: self.source,
            room,
        }
    }
}
