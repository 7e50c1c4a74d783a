//! The signed envelope of a record, its bytes and its text form.
//!
//! Bytes of an envelope, before base64url:
//!
//! ```text
//! offset  len  field
//!      0    1  kind: 0x01 heat report, 0x02 leave (RecordKind)
//!      1   32  ed25519 public key of the author
//!     33   64  ed25519 signature over SIGNING_CONTEXT || kind || body
//!     97    n  body: postcard(RECORD_VERSION as u16, record)
//! ```
//!
//! The text form is that byte string in strict, unpadded base64url, so it is
//! a plain ASCII string (what `Membership` takes). [`SignedRecord::decode`] refuses
//! any text longer than [`MAX_ENCODED_LEN`] before looking at it.
//! [`SignedRecord::open`] checks the signature with `verify_strict` (no
//! malleable signatures, no small-order keys) before it parses the body.

use crate::b64;
use crate::node_id::KeyedNodeId;
use crate::node_id::NodeId;
use crate::report::{HeatReport, Leave, Record, RecordError, RecordKind, Signable, RECORD_VERSION};
use crate::summary::Summary;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Domain separation for every maxwell signature: a key that signs records
/// for this protocol signs nothing that could be mistaken for anything else.
pub const SIGNING_CONTEXT: &[u8] = b"maxwell-gossip/record/v1\0";

/// Longest accepted text form. The largest possible v3 record (a 64-byte
/// name and rack, every integer at its widest varint, IPv6 API and p2p
/// addresses) encodes to 519 characters.
pub const MAX_ENCODED_LEN: usize = 576;

/// Bytes in front of the body: kind, public key, signature.
pub const HEADER_LEN: usize = 1 + 32 + 64;

/// A text or envelope that does not hold a record signed by its key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The text is longer than [`MAX_ENCODED_LEN`]; nothing else was looked at.
    #[error("value is {len} bytes, the limit is {MAX_ENCODED_LEN}")]
    Oversized {
        /// Length of the text, in bytes.
        len: usize,
    },
    /// The text is not canonical unpadded base64url.
    #[error("value is not canonical base64url (at byte {at})")]
    NotBase64 {
        /// Offset of the first bad character, or the length for a bad length.
        at: usize,
    },
    /// Fewer bytes than a header and a non-empty body.
    #[error("envelope is {len} bytes, shorter than its {HEADER_LEN}-byte header and a body")]
    TooShort {
        /// Decoded length, in bytes.
        len: usize,
    },
    /// The kind byte names no known record.
    #[error("unknown record kind {0:#04x}")]
    UnknownKind(u8),
    /// The envelope carries another kind than the one asked for.
    #[error("envelope carries a {found} record, not a {wanted}")]
    WrongKind {
        /// The kind asked for.
        wanted: &'static str,
        /// The kind the envelope says it carries.
        found: &'static str,
    },
    /// The public key bytes are not a valid ed25519 point.
    #[error("public key is not a valid ed25519 point")]
    BadKey,
    /// The signature does not verify (strictly) over the body with the key.
    #[error("signature does not verify")]
    BadSignature,
    /// The body starts with a version this crate does not read.
    #[error("record version {0} is not supported (this build reads {RECORD_VERSION})")]
    UnsupportedVersion(u16),
    /// The body is not a postcard record of its kind.
    #[error("body does not decode: {0}")]
    Body(postcard::Error),
    /// Bytes are left after the record.
    #[error("{0} bytes after the record")]
    TrailingBytes(usize),
    /// The record decoded but breaks a bound ([`RecordError::RackTooLong`]) or
    /// names a node other than its key's ([`RecordError::NodeIdMismatch`]).
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// A record with its author's key and signature. Decoding one proves
/// nothing; [`SignedRecord::open`] checks the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    kind: RecordKind,
    public_key: [u8; 32],
    signature: [u8; 64],
    body: Vec<u8>,
}

fn signed_message(kind: RecordKind, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNING_CONTEXT.len() + 1 + body.len());
    msg.extend_from_slice(SIGNING_CONTEXT);
    msg.push(kind.byte());
    msg.extend_from_slice(body);
    msg
}

fn read_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    let (version, rest) = postcard::take_from_bytes::<u16>(body).map_err(DecodeError::Body)?;
    if version != RECORD_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let (record, rest) = postcard::take_from_bytes::<T>(rest).map_err(DecodeError::Body)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(record)
}

impl SignedRecord {
    /// Signs `record` with `key`, which must be the key of its author.
    pub fn sign<R: Signable>(record: &R, key: &SigningKey) -> Result<Self, RecordError> {
        record.validate()?;
        let verifying = key.verifying_key();
        let key_id = NodeId::from_verifying_key(&verifying);
        if record.author() != key_id {
            return Err(RecordError::NodeIdMismatch {
                record: record.author(),
                key: key_id,
            });
        }
        let body = to_body(record)?;
        let signature = key.sign(&signed_message(R::KIND, &body));
        Ok(Self {
            kind: R::KIND,
            public_key: verifying.to_bytes(),
            signature: signature.to_bytes(),
            body,
        })
    }

    /// The text form: unpadded base64url of the envelope bytes.
    pub fn encode(&self) -> String {
        b64::encode(&self.to_bytes())
    }

    /// The envelope bytes (see the module docs for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.body.len());
        out.push(self.kind.byte());
        out.extend_from_slice(&self.public_key);
        out.extend_from_slice(&self.signature);
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses the text form, refusing anything over [`MAX_ENCODED_LEN`] first.
    /// Checks the layout only, not the signature.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        if text.len() > MAX_ENCODED_LEN {
            return Err(DecodeError::Oversized { len: text.len() });
        }
        let bytes = b64::decode(text).map_err(|e| DecodeError::NotBase64 { at: e.at })?;
        Self::from_bytes(&bytes)
    }

    /// Parses envelope bytes. Checks the layout only, not the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let too_short = DecodeError::TooShort { len: bytes.len() };
        if bytes.len() <= HEADER_LEN {
            return Err(too_short);
        }
        let (head, body) = bytes.split_at(HEADER_LEN);
        let (kind, rest) = head.split_first().ok_or(too_short.clone())?;
        let kind = RecordKind::from_byte(*kind).ok_or(DecodeError::UnknownKind(*kind))?;
        let (key, sig) = rest.split_at(32);
        Ok(Self {
            kind,
            public_key: key.try_into().map_err(|_| too_short.clone())?,
            signature: sig.try_into().map_err(|_| too_short)?,
            body: body.to_vec(),
        })
    }

    /// Which record the envelope says it carries.
    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    /// The author's public key as sent (not yet checked).
    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Node id of [`Self::public_key`].
    pub fn key_node_id(&self) -> NodeId {
        NodeId::from_public_key_bytes(&self.public_key)
    }

    /// The signature as sent (not yet checked).
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }

    /// The signed body as sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Verifies the signature with the embedded key, then decodes the body
    /// (of whichever kind it is) and checks its version, bounds and that it
    /// names the key's node. Says nothing about time, order or admission:
    /// see [`crate::verify`].
    pub fn open(&self) -> Result<Record, DecodeError> {
        Ok(match self.kind {
            RecordKind::Report => self.open_as::<HeatReport>()?.into(),
            RecordKind::Leave => self.open_as::<Leave>()?.into(),
            RecordKind::Summary => self.open_as::<Summary>()?.into(),
        })
    }

    /// [`Self::open`] for one kind: refuses an envelope of another kind.
    pub fn open_as<R: Signable>(&self) -> Result<R, DecodeError> {
        if self.kind != R::KIND {
            return Err(DecodeError::WrongKind {
                wanted: R::KIND.label(),
                found: self.kind.label(),
            });
        }
        let key = VerifyingKey::from_bytes(&self.public_key).map_err(|_| DecodeError::BadKey)?;
        let signature = Signature::from_bytes(&self.signature);
        key.verify_strict(&signed_message(self.kind, &self.body), &signature)
            .map_err(|_| DecodeError::BadSignature)?;
        let record: R = read_body(&self.body)?;
        record.validate()?;
        let key_id = NodeId::from_verifying_key(&key);
        if record.author() != key_id {
            return Err(RecordError::NodeIdMismatch {
                record: record.author(),
                key: key_id,
            }
            .into());
        }
        Ok(record)
    }
}

fn to_body<T: Serialize>(record: &T) -> Result<Vec<u8>, RecordError> {
    postcard::to_allocvec(&(RECORD_VERSION, record)).map_err(RecordError::Encode)
}

#[cfg(test)]
mod tests;

/// Test helper: signs arbitrary body bytes, valid record or not.
#[cfg(test)]
pub(crate) fn sign_raw(kind: RecordKind, body: Vec<u8>, key: &SigningKey) -> SignedRecord {
    let signature = key.sign(&signed_message(kind, &body));
    SignedRecord {
        kind,
        public_key: key.verifying_key().to_bytes(),
        signature: signature.to_bytes(),
        body,
    }
}
