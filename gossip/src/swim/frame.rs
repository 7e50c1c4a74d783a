//! What a sealed datagram carries: one frame, tagged by its first byte.
//!
//! - `0`: a foca message (probes, membership updates, piggybacked records);
//! - `1`: signed records sent directly, to be relayed on (an urgent change,
//!   a leave): `u16` big-endian length, bytes, repeated;
//! - `3`: the same, to be held only (an answer to a digest, a newly met
//!   member's introduction);
//! - `4`: signed records for a relay to forward, held only, to every member
//!   it knows in a node-id range: the range (`lo`, `hi`), then records as in
//!   `1`;
//! - `5`: a checksummed digest (the periodic sync): the node-id `lo` its
//!   first part starts at, a `u16` count, then per part the id it ends at
//!   (each starts after the one before) and a 64-bit checksum of the
//!   digest entries held in it. A receiver answers only the parts whose
//!   sum differs from its own, with a digest (`2`) of each.
//! - `2`: a digest for anti-entropy: flags (`1` = answer with yours),
//!   the node-id range it covers, a `u16` count, then per record its node
//!   id, slot (`u8`), generation and seq (`u64` big-endian each).
//!
//! Parsing is bounded by the datagram: nothing allocates more than it read.

use crate::node_id::{NodeId, NODE_ID_LEN};

const FOCA: u8 = 0;
const RECORDS: u8 = 1;
const DIGEST: u8 = 2;
const HELD: u8 = 3;
const FORWARD: u8 = 4;
const CHECKSUMS: u8 = 5;
const ENTRY_LEN: usize = NODE_ID_LEN + 1 + 16;
/// Bytes of a digest frame before its entries.
pub const DIGEST_HEAD: usize = 1 + 1 + 2 * NODE_ID_LEN + 2;
/// Bytes of a checksummed digest frame before its parts.
pub const CHECKSUMS_HEAD: usize = 1 + NODE_ID_LEN + 2;
/// Bytes of one part of a checksummed digest.
const PART_LEN: usize = NODE_ID_LEN + 8;
/// Bytes of one record's length prefix.
pub const RECORD_PREFIX: usize = 2;

/// Why a frame (inside a datagram that opened) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("empty frame")]
    Empty,
    #[error("unknown frame tag {0}")]
    Tag(u8),
    #[error("frame cut short")]
    Short,
    #[error("a digest whose range ends before it starts")]
    Range,
}

/// One record's order, as a digest lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub node: NodeId,
    /// Which of the node's records (see [`super::records::Slot`]).
    pub slot: u8,
    pub generation: u64,
    pub seq: u64,
}

/// A digest of the records held for node ids in `lo..=hi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub answer: bool,
    pub lo: NodeId,
    pub hi: NodeId,
    pub entries: Vec<Entry>,
}

/// One part of a checksummed digest: the ids after the previous part's
/// end (or the frame's `lo`) up to `hi`, and [`checksum`] of their entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub hi: NodeId,
    pub sum: u64,
}

/// A checksummed digest: contiguous parts from `lo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksums {
    pub lo: NodeId,
    pub parts: Vec<Part>,
}

/// A frame, borrowed from the datagram.
#[derive(Debug)]
pub enum Frame<'a> {
    Foca(&'a [u8]),
    /// Records, and whether to relay them on.
    Records(Vec<&'a [u8]>, bool),
    /// Records to forward to the members in `lo..=hi`.
    Forward {
        lo: NodeId,
        hi: NodeId,
        records: Vec<&'a [u8]>,
    },
    Digest(Digest),
    Checksums(Checksums),
}

/// Reads one frame.
pub fn parse(payload: &[u8]) -> Result<Frame<'_>, FrameError> {
    let (&tag, rest) = payload.split_first().ok_or(FrameError::Empty)?;
    match tag {
        FOCA => Ok(Frame::Foca(rest)),
        RECORDS | HELD => Ok(Frame::Records(take_records(rest)?, tag == RECORDS)),
        FORWARD => {
            let (lo, rest) = take_id(rest)?;
            let (hi, rest) = take_id(rest)?;
            if lo > hi {
                return Err(FrameError::Range);
            }
            let records = take_records(rest)?;
            Ok(Frame::Forward { lo, hi, records })
        }
        DIGEST => {
            let (&flags, rest) = rest.split_first().ok_or(FrameError::Short)?;
            let (lo, rest) = take_id(rest)?;
            let (hi, rest) = take_id(rest)?;
            if lo > hi {
                return Err(FrameError::Range);
            }
            let (count, mut rest) = take_u16(rest)?;
            if rest.len() != count * ENTRY_LEN {
                return Err(FrameError::Short);
            }
            let mut entries = Vec::with_capacity(count);
            while !rest.is_empty() {
                let (node, tail) = take_id(rest)?;
                let (&slot, tail) = tail.split_first().ok_or(FrameError::Short)?;
                let (generation, tail) = take_u64(tail)?;
                let (seq, tail) = take_u64(tail)?;
                entries.push(Entry {
                    node,
                    slot,
                    generation,
                    seq,
                });
                rest = tail;
            }
            Ok(Frame::Digest(Digest {
                answer: flags & 1 == 1,
                lo,
                hi,
                entries,
            }))
        }
        CHECKSUMS => {
            let (lo, rest) = take_id(rest)?;
            let (count, mut rest) = take_u16(rest)?;
            if rest.len() != count * PART_LEN {
                return Err(FrameError::Short);
            }
            let mut parts = Vec::with_capacity(count);
            let mut prev: Option<NodeId> = None;
            while !rest.is_empty() {
                let (hi, tail) = take_id(rest)?;
                let (sum, tail) = take_u64(tail)?;
                // Each part ends past the one before: none is empty.
                if hi < lo || prev.is_some_and(|p| hi <= p) {
                    return Err(FrameError::Range);
                }
                prev = Some(hi);
                parts.push(Part { hi, sum });
                rest = tail;
            }
            Ok(Frame::Checksums(Checksums { lo, parts }))
        }
        other => Err(FrameError::Tag(other)),
    }
}

/// A foca message as a frame.
pub fn foca(message: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.push(FOCA);
    out.extend_from_slice(message);
}

/// Records packed into frames of at most `max` bytes each (a record too big
/// for one frame on its own is skipped: records are far smaller); `relay`
/// asks the receiver to spread them on.
pub fn records<'a>(
    items: impl IntoIterator<Item = &'a [u8]>,
    max: usize,
    relay: bool,
) -> Vec<Vec<u8>> {
    pack(vec![if relay { RECORDS } else { HELD }], items, max)
}

/// Records packed into frames of at most `max` bytes each, for a relay to
/// forward to the members in `lo..=hi`.
pub fn forward<'a>(
    lo: NodeId,
    hi: NodeId,
    items: impl IntoIterator<Item = &'a [u8]>,
    max: usize,
) -> Vec<Vec<u8>> {
    let mut head = vec![FORWARD];
    head.extend_from_slice(&lo.0);
    head.extend_from_slice(&hi.0);
    pack(head, items, max)
}

/// Frames of `head` then as many length-prefixed records as fit `max`.
fn pack<'a>(head: Vec<u8>, items: impl IntoIterator<Item = &'a [u8]>, max: usize) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut frame = head.clone();
    for item in items {
        let need = RECORD_PREFIX + item.len();
        if head.len() + need > max || item.is_empty() || item.len() > usize::from(u16::MAX) {
            continue;
        }
        if frame.len() + need > max {
            frames.push(std::mem::replace(&mut frame, head.clone()));
        }
        frame.extend_from_slice(&(item.len() as u16).to_be_bytes());
        frame.extend_from_slice(item);
    }
    if frame.len() > head.len() {
        frames.push(frame);
    }
    frames
}

fn take_records(mut rest: &[u8]) -> Result<Vec<&[u8]>, FrameError> {
    let mut records = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = take_u16(rest)?;
        if tail.len() < len || len == 0 {
            return Err(FrameError::Short);
        }
        let (record, tail) = tail.split_at(len);
        records.push(record);
        rest = tail;
    }
    Ok(records)
}

/// How many digest entries fit a frame of `max` bytes.
pub fn entries_per_frame(max: usize) -> usize {
    max.saturating_sub(DIGEST_HEAD) / ENTRY_LEN
}

/// A digest as a frame; `entries` must fit (see [`entries_per_frame`]).
pub fn digest(d: &Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(DIGEST_HEAD + d.entries.len() * ENTRY_LEN);
    out.push(DIGEST);
    out.push(u8::from(d.answer));
    out.extend_from_slice(&d.lo.0);
    out.extend_from_slice(&d.hi.0);
    out.extend_from_slice(&(d.entries.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for e in d.entries.iter().take(usize::from(u16::MAX)) {
        out.extend_from_slice(&e.node.0);
        out.push(e.slot);
        out.extend_from_slice(&e.generation.to_be_bytes());
        out.extend_from_slice(&e.seq.to_be_bytes());
    }
    out
}

/// How many parts fit a checksummed digest frame of `max` bytes.
pub fn parts_per_frame(max: usize) -> usize {
    max.saturating_sub(CHECKSUMS_HEAD) / PART_LEN
}

/// A checksummed digest as a frame; its parts must fit (see
/// [`parts_per_frame`]).
pub fn checksums(c: &Checksums) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKSUMS_HEAD + c.parts.len() * PART_LEN);
    out.push(CHECKSUMS);
    out.extend_from_slice(&c.lo.0);
    out.extend_from_slice(&(c.parts.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    for p in c.parts.iter().take(usize::from(u16::MAX)) {
        out.extend_from_slice(&p.hi.0);
        out.extend_from_slice(&p.sum.to_be_bytes());
    }
    out
}

/// FNV-1a (64-bit) over the entries as a digest frame lays them out: the
/// same on every node and every build. Only members (behind the seal) send
/// sums, and a collision delays a sync, never corrupts one.
pub fn checksum(entries: &[Entry]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    };
    for e in entries {
        eat(&e.node.0);
        eat(&[e.slot]);
        eat(&e.generation.to_be_bytes());
        eat(&e.seq.to_be_bytes());
    }
    h
}

fn take_u16(b: &[u8]) -> Result<(usize, &[u8]), FrameError> {
    let (head, rest) = b.split_at_checked(2).ok_or(FrameError::Short)?;
    Ok((usize::from(u16::from_be_bytes([head[0], head[1]])), rest))
}

fn take_u64(b: &[u8]) -> Result<(u64, &[u8]), FrameError> {
    let (head, rest) = b.split_at_checked(8).ok_or(FrameError::Short)?;
    let mut x = [0u8; 8];
    x.copy_from_slice(head);
    Ok((u64::from_be_bytes(x), rest))
}

fn take_id(b: &[u8]) -> Result<(NodeId, &[u8]), FrameError> {
    let (head, rest) = b.split_at_checked(NODE_ID_LEN).ok_or(FrameError::Short)?;
    let mut id = [0u8; NODE_ID_LEN];
    id.copy_from_slice(head);
    Ok((NodeId(id), rest))
}
