//! Node identity as a value: the id is the first bytes of SHA-256 over the
//! node's ed25519 public key (derived in `maxwell-gossip`, which holds the
//! keys); here it is only bytes, shown as hex.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Length in bytes of a node id: the first bytes of SHA-256 over the public key.
pub const NODE_ID_LEN: usize = 10;

/// A node's id: `SHA-256(public key)[..10]`, shown as 20 lowercase hex digits.
///
/// Serialized as that hex string in human-readable formats (JSON: the API,
/// the logs and the CLI agree), and as its 10 bytes in binary ones (the
/// postcard wire form of signed records is unchanged).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

impl Serialize for NodeId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_newtype_struct("NodeId", &self.0)
        }
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            text.parse().map_err(serde::de::Error::custom)
        } else {
            /// The derived form, for binary formats.
            #[derive(Deserialize)]
            #[serde(rename = "NodeId")]
            struct Raw([u8; NODE_ID_LEN]);
            Raw::deserialize(deserializer).map(|r| NodeId(r.0))
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Error from parsing a node id written as hex.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
// `NODE_ID_LEN * 2` hex digits; thiserror 2 forbids mixing `{0}` with extra
// format arguments, so the count is spelled out (a test pins it).
#[error("a node id is 20 hex digits, got {0:?}")]
pub struct ParseNodeIdError(pub String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        crate::hex::decode(s)
            .map(Self)
            .ok_or_else(|| ParseNodeIdError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_carries_hex_and_postcard_the_bytes() {
        let id = NodeId([0x4c, 0xff, 0, 1, 2, 3, 4, 5, 6, 7]);
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, "\"4cff0001020304050607\"");
        assert_eq!(serde_json::from_str::<NodeId>(&json).expect("back"), id);
        assert!(serde_json::from_str::<NodeId>("[76,255,0,1,2,3,4,5,6,7]").is_err());
        let wire = postcard::to_stdvec(&id).expect("postcard");
        assert_eq!(
            wire,
            id.0.to_vec(),
            "the wire form is the 10 bytes, as before"
        );
        assert_eq!(postcard::from_bytes::<NodeId>(&wire).expect("back"), id);
    }

    #[test]
    fn ids_parse_back_from_hex() {
        let id = NodeId([9; NODE_ID_LEN]);
        let text = id.to_string();
        assert_eq!(text.len(), 20);
        assert_eq!(text.parse::<NodeId>(), Ok(id));
        assert_eq!(
            "xyz".parse::<NodeId>().map_err(|e| e.to_string()),
            Err("a node id is 20 hex digits, got \"xyz\"".to_string())
        );
        assert!("zz".repeat(10).parse::<NodeId>().is_err());
    }
}
