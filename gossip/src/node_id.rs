//! Node identity from keys: a node id is derived from the node's ed25519
//! public key, so a report's author can be checked against the key that
//! signed it. The id itself is [`maxwell_types::NodeId`].

use ed25519_dalek::VerifyingKey;
pub use maxwell_types::node_id::{NodeId, ParseNodeIdError, NODE_ID_LEN};
use sha2::{Digest, Sha256};

/// Deriving and checking a [`NodeId`] from a key.
pub trait KeyedNodeId: Sized {
    /// Derives the id of the node that owns `key`.
    fn from_verifying_key(key: &VerifyingKey) -> Self;

    /// Derives the id from raw public key bytes, valid point or not (the hash
    /// is over the bytes, so this equals [`Self::from_verifying_key`] for a
    /// valid key). Lets a verifier match a claimed id before any curve math.
    fn from_public_key_bytes(key: &[u8; 32]) -> Self;

    /// True when `key` is the key this id was derived from.
    fn matches(&self, key: &VerifyingKey) -> bool;
}

impl KeyedNodeId for NodeId {
    fn from_verifying_key(key: &VerifyingKey) -> Self {
        Self::from_public_key_bytes(key.as_bytes())
    }

    fn from_public_key_bytes(key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(key);
        let mut id = [0u8; NODE_ID_LEN];
        id.copy_from_slice(&digest[..NODE_ID_LEN]);
        Self(id)
    }

    fn matches(&self, key: &VerifyingKey) -> bool {
        Self::from_verifying_key(key) == *self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn id_is_derived_from_key() {
        let key = SigningKey::from_bytes(&[7u8; 32]).verifying_key();
        let id = NodeId::from_verifying_key(&key);
        assert!(id.matches(&key));
        assert_eq!(NodeId::from_public_key_bytes(key.as_bytes()), id);
        let other = SigningKey::from_bytes(&[8u8; 32]).verifying_key();
        assert!(!id.matches(&other));
    }
}
