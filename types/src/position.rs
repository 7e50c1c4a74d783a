//! Where a host sits: its rack and its slot in that rack. Proximity (who
//! counts as a neighbour, and how much) is the price law's business; here
//! it is only the place and the distance between two places.

use serde::{Deserialize, Serialize};

/// A host's place: rack name and slot (rack unit, from the bottom).
///
/// Serialized as its two fields in order, so a record that carried `rack`
/// and `slot` side by side encodes to the same postcard bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// The rack's name.
    pub rack: String,
    /// The slot within the rack.
    pub slot: u16,
}

impl Position {
    /// A place.
    pub fn new(rack: impl Into<String>, slot: u16) -> Self {
        Self {
            rack: rack.into(),
            slot,
        }
    }

    /// Slots between the two places, or `None` in different racks.
    pub fn slots_apart(&self, other: &Position) -> Option<u16> {
        (self.rack == other.rack).then(|| self.slot.abs_diff(other.slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_within_a_rack_only() {
        let a = Position::new("r1", 3);
        assert_eq!(a.slots_apart(&Position::new("r1", 7)), Some(4));
        assert_eq!(a.slots_apart(&a), Some(0));
        assert_eq!(a.slots_apart(&Position::new("r2", 3)), None);
    }

    #[test]
    fn postcard_bytes_are_those_of_the_two_fields() {
        let nested = postcard::to_allocvec(&Position::new("r12", 17)).expect("encode");
        let flat = postcard::to_allocvec(&("r12".to_string(), 17u16)).expect("encode");
        assert_eq!(nested, flat);
    }
}
