//! Energy receipts: what a guest used and paid over a window, signed by the
//! host's ed25519 key, each naming the hash of the one before so that a
//! guest's receipts form a chain.
//!
//! The hash is SHA-256 of the body's postcard encoding, and the signature
//! is over the same bytes, so a receipt can be checked offline with the
//! node's public key alone ([`verify_chain`]). The market makes bodies; the
//! driver, which holds the key, signs them.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use maxwell_types::{hex, NodeId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBody {
    pub node: NodeId,
    /// The guest's account on this node, and its name.
    pub account: u64,
    pub guest: String,
    /// 1 for a guest's first receipt, then one more each.
    pub seq: u64,
    /// The window, unix ms: `[from_ms, to_ms)`.
    pub from_ms: u64,
    pub to_ms: u64,
    pub cpu_ms: u64,
    pub joules_micro: u64,
    /// Credits charged in the window (CPU and memory rent, and any tax),
    /// micro-credits.
    pub charged_micro: u64,
    /// The prices in force over the window, milli-credits per CPU-second.
    pub price_min_milli: u64,
    pub price_max_milli: u64,
    /// The hash of the previous receipt's body (hex), zeros for the first.
    pub prev: String,
}

impl ReceiptBody {
    pub fn bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("a receipt body encodes")
    }

    /// SHA-256 of [`Self::bytes`], hex: what the next receipt names.
    pub fn hash(&self) -> String {
        hex::encode(&Sha256::digest(self.bytes()))
    }

    pub fn sign(self, key: &SigningKey) -> Receipt {
        let signature = hex::encode(&key.sign(&self.bytes()).to_bytes());
        Receipt {
            body: self,
            signature,
        }
    }
}

/// The hash a first receipt names.
pub fn genesis() -> String {
    "0".repeat(64)
}

/// A signed receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub body: ReceiptBody,
    /// Ed25519 over the body's bytes, hex.
    pub signature: String,
}

/// Why a receipt or a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReceiptError {
    #[error("receipt {index} (seq {seq}): the signature is malformed")]
    Malformed { index: usize, seq: u64 },
    #[error("receipt {index} (seq {seq}): the signature does not match the body under this key (tampered, or another node's)")]
    BadSignature { index: usize, seq: u64 },
    #[error(
        "receipt {index} (seq {seq}): follows seq {prev_seq}; a receipt is missing or out of order"
    )]
    Gap {
        index: usize,
        seq: u64,
        prev_seq: u64,
    },
    #[error("receipt {index} (seq {seq}): names previous hash {named}, but the receipt before it hashes to {actual}")]
    BrokenLink {
        index: usize,
        seq: u64,
        named: String,
        actual: String,
    },
    #[error("receipt {index} (seq {seq}): belongs to account {account} of node {node}, not to the chain's {expected}")]
    Foreign {
        index: usize,
        seq: u64,
        account: u64,
        node: NodeId,
        expected: String,
    },
    #[error("receipt {index} (seq {seq}): its window [{from}, {to}) runs backwards or overlaps the one before")]
    Window {
        index: usize,
        seq: u64,
        from: u64,
        to: u64,
    },
    #[error("no receipts to verify")]
    Empty,
}

/// What a verified chain covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    pub receipts: usize,
    pub first_seq: u64,
    pub last_seq: u64,
    pub cpu_ms: u64,
    pub joules_micro: u64,
    pub charged_micro: u64,
    /// The chain starts at its first receipt (seq 1, genesis link) rather
    /// than after a retention cut.
    pub complete: bool,
}

/// Checks every signature under `key` and every link. One receipt is a
/// chain of one (its link cannot be checked unless it is the first).
pub fn verify_chain(
    receipts: &[Receipt],
    key: &VerifyingKey,
) -> Result<ChainSummary, ReceiptError> {
    let first = receipts.first().ok_or(ReceiptError::Empty)?;
    let mut sum = ChainSummary {
        receipts: receipts.len(),
        first_seq: first.body.seq,
        last_seq: first.body.seq,
        cpu_ms: 0,
        joules_micro: 0,
        charged_micro: 0,
        complete: first.body.seq == 1 && first.body.prev == genesis(),
    };
    let mut prev: Option<&ReceiptBody> = None;
    for (index, r) in receipts.iter().enumerate() {
        let b = &r.body;
        let seq = b.seq;
        let sig = hex::decode::<64>(&r.signature).ok_or(ReceiptError::Malformed { index, seq })?;
        key.verify(&b.bytes(), &Signature::from_bytes(&sig))
            .map_err(|_| ReceiptError::BadSignature { index, seq })?;
        if b.to_ms < b.from_ms {
            return Err(ReceiptError::Window {
                index,
                seq,
                from: b.from_ms,
                to: b.to_ms,
            });
        }
        if let Some(p) = prev {
            if p.account != b.account || p.node != b.node {
                return Err(ReceiptError::Foreign {
                    index,
                    seq,
                    account: b.account,
                    node: b.node,
                    expected: format!("account {} of node {}", p.account, p.node),
                });
            }
            if seq != p.seq + 1 {
                return Err(ReceiptError::Gap {
                    index,
                    seq,
                    prev_seq: p.seq,
                });
            }
            let actual = p.hash();
            if b.prev != actual {
                return Err(ReceiptError::BrokenLink {
                    index,
                    seq,
                    named: b.prev.clone(),
                    actual,
                });
            }
            if b.from_ms < p.to_ms {
                return Err(ReceiptError::Window {
                    index,
                    seq,
                    from: b.from_ms,
                    to: b.to_ms,
                });
            }
        }
        sum.last_seq = seq;
        sum.cpu_ms += b.cpu_ms;
        sum.joules_micro += b.joules_micro;
        sum.charged_micro += b.charged_micro;
        prev = Some(b);
    }
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(key: &SigningKey, n: u64) -> Vec<Receipt> {
        let mut prev = genesis();
        (1..=n)
            .map(|seq| {
                let body = ReceiptBody {
                    node: NodeId([7; 10]),
                    account: 3,
                    guest: "g".into(),
                    seq,
                    from_ms: seq * 10,
                    to_ms: seq * 10 + 10,
                    cpu_ms: 5,
                    joules_micro: 9,
                    charged_micro: 11,
                    price_min_milli: 1,
                    price_max_milli: 2,
                    prev: prev.clone(),
                };
                prev = body.hash();
                body.sign(key)
            })
            .collect()
    }

    #[test]
    fn a_chain_verifies_and_every_kind_of_damage_is_named() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let pk = key.verifying_key();
        let good = chain(&key, 4);
        let s = verify_chain(&good, &pk).expect("verifies");
        assert_eq!((s.receipts, s.cpu_ms, s.complete), (4, 20, true));

        let mut tampered = good.clone();
        tampered[2].body.charged_micro += 1;
        assert!(matches!(
            verify_chain(&tampered, &pk),
            Err(ReceiptError::BadSignature { index: 2, .. })
        ));

        let mut missing = good.clone();
        missing.remove(1);
        assert!(matches!(
            verify_chain(&missing, &pk),
            Err(ReceiptError::Gap { index: 1, .. })
        ));

        let mut reordered = good.clone();
        reordered.swap(1, 2);
        assert!(matches!(
            verify_chain(&reordered, &pk),
            Err(ReceiptError::Gap { .. })
        ));

        let other = SigningKey::from_bytes(&[2; 32]).verifying_key();
        assert!(matches!(
            verify_chain(&good, &other),
            Err(ReceiptError::BadSignature { index: 0, .. })
        ));

        // A re-signed forgery of the link is caught by the hash.
        let mut relinked = good.clone();
        relinked[3].body.prev = genesis();
        relinked[3] = relinked[3].body.clone().sign(&key);
        assert!(matches!(
            verify_chain(&relinked, &pk),
            Err(ReceiptError::BrokenLink { index: 3, .. })
        ));

        let tail = verify_chain(&good[2..], &pk).expect("a tail verifies");
        assert!(!tail.complete);
    }
}
