//! Admission: the optional set of public keys allowed into the mesh.
//!
//! File format (the caller reads the file; this module only parses text):
//! one ed25519 public key per line as 64 hex digits; blank lines are ignored;
//! `#` starts a comment, on its own line or after a key. Every key must be a
//! valid ed25519 point. A file with no key at all is an error, since it would
//! shut every node out (including this one) and is almost surely a mistake.
//!
//! ```text
//! # rack r12
//! 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c  # r12-u17
//! ```

use crate::node_id::KeyedNodeId;
use crate::node_id::NodeId;
use ed25519_dalek::VerifyingKey;
use std::collections::BTreeSet;

/// A set of admitted public keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Allowlist {
    keys: BTreeSet<[u8; 32]>,
}

/// Why an allowlist file does not parse. Line numbers start at 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    /// A line holds a character that is not a hex digit.
    #[error("line {line}: {found:?} is not a hex digit (expected 64 hex digits)")]
    NotHex {
        /// Line number, from 1.
        line: usize,
        /// The offending character.
        found: char,
    },
    /// A line holds a number of hex digits other than 64.
    #[error("line {line}: a public key is 64 hex digits, found {len}")]
    WrongLength {
        /// Line number, from 1.
        line: usize,
        /// Number of characters found.
        len: usize,
    },
    /// The 32 bytes are not a valid ed25519 public key.
    #[error("line {line}: not a valid ed25519 public key")]
    NotAKey {
        /// Line number, from 1.
        line: usize,
    },
    /// The text holds no key.
    #[error("allowlist holds no key; it would admit no node")]
    Empty,
}

fn parse_key(text: &str, line: usize) -> Result<[u8; 32], AllowlistError> {
    if let Some(found) = text.chars().find(|c| !c.is_ascii_hexdigit()) {
        return Err(AllowlistError::NotHex { line, found });
    }
    if text.len() != 64 {
        return Err(AllowlistError::WrongLength {
            line,
            len: text.len(),
        });
    }
    let key = maxwell_types::hex::decode::<32>(text).ok_or(AllowlistError::WrongLength {
        line,
        len: text.len(),
    })?;
    VerifyingKey::from_bytes(&key).map_err(|_| AllowlistError::NotAKey { line })?;
    Ok(key)
}

impl Allowlist {
    /// Parses the file format described in the module docs.
    pub fn parse(text: &str) -> Result<Self, AllowlistError> {
        let mut keys = BTreeSet::new();
        for (index, raw) in text.lines().enumerate() {
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            keys.insert(parse_key(content, index + 1)?);
        }
        if keys.is_empty() {
            return Err(AllowlistError::Empty);
        }
        Ok(Self { keys })
    }

    /// An allowlist of the given keys.
    pub fn from_keys<'a>(keys: impl IntoIterator<Item = &'a VerifyingKey>) -> Self {
        Self {
            keys: keys.into_iter().map(VerifyingKey::to_bytes).collect(),
        }
    }

    /// True when `key` is admitted.
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.keys.contains(key)
    }

    /// Number of admitted keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is admitted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The admitted keys, in byte order.
    pub fn keys(&self) -> impl Iterator<Item = &[u8; 32]> {
        self.keys.iter()
    }

    /// Node ids of the admitted keys.
    pub fn node_ids(&self) -> BTreeSet<NodeId> {
        self.keys
            .iter()
            .map(NodeId::from_public_key_bytes)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    use maxwell_types::hex::encode as hex;

    fn key(seed: u8) -> VerifyingKey {
        SigningKey::from_bytes(&[seed; 32]).verifying_key()
    }

    #[test]
    fn parses_keys_comments_and_blank_lines() {
        let (a, b) = (key(1), key(2));
        let text = format!(
            "# cluster allowlist\n\n  {}  # host a\n{}\r\n#{}\n",
            hex(a.as_bytes()),
            hex(b.as_bytes()).to_uppercase(),
            hex(key(3).as_bytes()),
        );
        let list = Allowlist::parse(&text).expect("valid allowlist");
        assert_eq!(list.len(), 2);
        assert!(list.contains(a.as_bytes()));
        assert!(list.contains(b.as_bytes()));
        assert!(!list.contains(key(3).as_bytes()));
        assert_eq!(list, Allowlist::from_keys([&a, &b]));
        let ids = list.node_ids();
        assert!(ids.contains(&NodeId::from_verifying_key(&a)));
        assert_eq!(ids.len(), 2);
        assert_eq!(list.keys().count(), 2);
    }

    #[test]
    fn documented_example_parses() {
        // The example in the module docs and docs/protocol.md (RFC 8032 test 2's key).
        let text = "# rack r12\n\
            3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c  # r12-u17\n";
        let list = Allowlist::parse(text).expect("documented example parses");
        assert_eq!(list.len(), 1);
        let first = list.keys().next().copied();
        assert_eq!(first.map(|k| hex(&k)), Some(text[11..75].to_string()));
    }

    #[test]
    fn duplicates_collapse() {
        let a = hex(key(1).as_bytes());
        let list = Allowlist::parse(&format!("{a}\n{a}\n")).expect("valid allowlist");
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn errors_name_the_line() {
        let good = hex(key(1).as_bytes());
        let cases = [
            (
                format!("{good}\nzz{}\n", &good[2..]),
                AllowlistError::NotHex {
                    line: 2,
                    found: 'z',
                },
            ),
            (
                format!("# c\n\n{}\n", &good[..62]),
                AllowlistError::WrongLength { line: 3, len: 62 },
            ),
            (
                format!("{good}00\n"),
                AllowlistError::WrongLength { line: 1, len: 66 },
            ),
            (
                format!("{good} {good}\n"),
                AllowlistError::NotHex {
                    line: 1,
                    found: ' ',
                },
            ),
            ("# nothing\n\n".to_string(), AllowlistError::Empty),
            (String::new(), AllowlistError::Empty),
        ];
        for (text, want) in cases {
            assert_eq!(Allowlist::parse(&text), Err(want));
        }
        assert_eq!(
            AllowlistError::WrongLength { line: 3, len: 62 }.to_string(),
            "line 3: a public key is 64 hex digits, found 62"
        );
    }

    #[test]
    fn rejects_bytes_that_are_not_a_point() {
        // y = 2 is not the y-coordinate of any point on edwards25519.
        let mut bytes = [0u8; 32];
        bytes[0] = 2;
        assert!(VerifyingKey::from_bytes(&bytes).is_err());
        assert_eq!(
            Allowlist::parse(&format!("\n{}\n", hex(&bytes))),
            Err(AllowlistError::NotAKey { line: 2 })
        );
    }
}
