//! Sealed datagrams: every gossip datagram carries its sender, a counter
//! and a MAC under the cluster key, and is believed only if the MAC holds
//! and the counter is new.
//!
//! This is the layer under the membership protocol: a datagram from anyone
//! without the cluster key is refused before a byte of it is parsed, so it
//! changes no one's view of liveness, members, state or addresses, and
//! draws no reply. The records inside stay signed by each node's own key
//! ([`crate::wire`]): the cluster key says "a member sent this datagram",
//! the node key says "this node said this".
//!
//! Layout (big-endian):
//!
//! ```text
//! magic "MX" | version 1 | key id 1 | sender NodeId 10 | counter 8 | payload | tag 16
//! ```
//!
//! The tag is HMAC-SHA256 over everything before it, truncated to 16 bytes.
//! The counter is the sender's clock in microseconds, plus one per datagram
//! since it last caught up with the clock (within a second of it), so it
//! grows across restarts without a disk and a window of counters spans
//! datagrams, not microseconds; a receiver
//! refuses a counter more than [`SealConfig::max_skew_ms`] away from its own
//! clock (which bounds what a captured datagram is worth) and one it has
//! seen, within a window of [`WINDOW`] below the highest.
//!
//! Contracts:
//! - opening never panics and never allocates: the payload is a slice of
//!   the datagram;
//! - the cost of refusing a datagram does not grow with what it claims: a
//!   length check, a MAC over its bytes, a table lookup;
//! - state is kept only for senders whose datagrams passed the MAC, at most
//!   [`SealConfig::max_senders`] of them (the least recently heard go first);
//! - every refusal is counted by reason ([`SealCounters`]).

use crate::NodeId;
use hmac::{Hmac, Mac};
use maxwell_types::NODE_ID_LEN;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// The first two bytes of every sealed datagram.
pub const MAGIC: [u8; 2] = *b"MX";
/// The layout version this module writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 2 + 1 + 1 + NODE_ID_LEN + 8;
/// Bytes of the truncated MAC.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Counters below the highest seen by this many or more are refused.
pub const WINDOW: u64 = 64;
/// A counter this far behind the clock (µs) jumps to it.
pub const CATCH_UP_US: u64 = 1_000_000;

/// A 32-byte cluster key, and the id that names it in a keyring.
#[derive(Clone)]
pub struct ClusterKey {
    pub id: u8,
    bytes: [u8; 32],
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterKey {{ id: {}, .. }}", self.id)
    }
}

impl ClusterKey {
    pub fn new(id: u8, bytes: [u8; 32]) -> Self {
        Self { id, bytes }
    }

    /// The key a cluster named `cluster_id` seals with, from a shared
    /// secret: two clusters that share a secret but not a name never open
    /// each other's datagrams. Its id is derived from the key, so every
    /// host names a key alike whatever order it lists its keys in.
    pub fn derive(secret: &[u8; 32], cluster_id: &str) -> Self {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts any key length");
        mac.update(b"maxwell/cluster-key/v1\0");
        mac.update(cluster_id.as_bytes());
        let bytes: [u8; 32] = mac.finalize().into_bytes().into();
        let id = Sha256::digest(bytes)[0];
        Self { id, bytes }
    }

    /// The id a sealed datagram names this key by.
    pub fn id(&self) -> u8 {
        self.id
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.bytes).expect("HMAC accepts any key length")
    }
}

/// The keys a node opens with; it seals with the first. Rotation: add the
/// new key second everywhere, then make it first everywhere, then drop the
/// old one.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<ClusterKey>,
}

impl Keyring {
    /// A keyring sealing with `primary`, opening with it and `others`.
    pub fn new(primary: ClusterKey, others: Vec<ClusterKey>) -> Self {
        let mut keys = vec![primary];
        keys.extend(others);
        Self { keys }
    }

    fn primary(&self) -> &ClusterKey {
        &self.keys[0]
    }

    fn by_id(&self, id: u8) -> Option<&ClusterKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SealRefusal {
    /// Shorter than a header and a tag.
    Short,
    /// Not a sealed maxwell datagram (wrong magic).
    Magic,
    /// A layout version this node does not read.
    Version,
    /// Sealed with a key this node does not hold.
    UnknownKey,
    /// The MAC does not hold: forged, mutated, or another cluster's key.
    BadTag,
    /// A counter already seen, or too far below the highest.
    Replay,
    /// A counter too far from this node's clock.
    Skew,
}

impl SealRefusal {
    /// Every reason, one counter each.
    pub const ALL: [SealRefusal; 7] = [
        SealRefusal::Short,
        SealRefusal::Magic,
        SealRefusal::Version,
        SealRefusal::UnknownKey,
        SealRefusal::BadTag,
        SealRefusal::Replay,
        SealRefusal::Skew,
    ];
}

/// Datagrams opened and refused, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealCounters {
    pub opened: u64,
    refused: [u64; SealRefusal::ALL.len()],
}

impl SealCounters {
    /// Adds another socket's counts to these.
    pub fn add(&mut self, other: &SealCounters) {
        self.opened += other.opened;
        for (a, b) in self.refused.iter_mut().zip(other.refused) {
            *a += b;
        }
    }

    /// Datagrams refused for `why`.
    pub fn refused(&self, why: SealRefusal) -> u64 {
        self.refused[why as usize]
    }

    /// Datagrams refused for any reason.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// Limits of an [`Opener`].
#[derive(Debug, Clone, Copy)]
pub struct SealConfig {
    /// A counter more than this far from our clock is refused, ms.
    pub max_skew_ms: u64,
    /// The most senders whose replay windows are kept.
    pub max_senders: usize,
}

impl Default for SealConfig {
    fn default() -> Self {
        Self {
            max_skew_ms: 60_000,
            max_senders: 16_384,
        }
    }
}

/// Seals this node's datagrams.
#[derive(Debug)]
pub struct Sealer {
    keys: Keyring,
    sender: NodeId,
    counter: u64,
}

impl Sealer {
    /// Seals as `sender`, counting from `now_ms` (in microseconds).
    pub fn new(keys: Keyring, sender: NodeId, now_ms: u64) -> Self {
        Self {
            keys,
            sender,
            counter: now_ms.saturating_mul(1000),
        }
    }

    /// `payload` sealed at `now_ms`, into `out` (cleared first). The counter
    /// grows by one per datagram, so that the receiver's window of
    /// [`WINDOW`] counters spans that many datagrams (reordered ones are not
    /// replays), and jumps to the clock in microseconds when it falls more
    /// than [`CATCH_UP_US`] behind (the receiver bounds its skew).
    pub fn seal(&mut self, now_ms: u64, payload: &[u8], out: &mut Vec<u8>) {
        let now_us = now_ms.saturating_mul(1000);
        self.counter = if now_us > self.counter.saturating_add(CATCH_UP_US) {
            now_us
        } else {
            self.counter.saturating_add(1)
        };
        let key = self.keys.primary();
        out.clear();
        out.reserve(OVERHEAD + payload.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(key.id);
        out.extend_from_slice(&self.sender.0);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(payload);
        let mut mac = key.mac();
        mac.update(out);
        out.extend_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
    }
}

/// A sender's replay window: the highest counter, and which of the
/// [`WINDOW`] below it were seen.
#[derive(Debug, Clone, Copy)]
struct Window {
    highest: u64,
    seen: u64,
    heard_at: u64,
}

impl Window {
    /// Whether `counter` is new; records it if so.
    fn admit(&mut self, counter: u64) -> bool {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.seen = if shift >= WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = counter;
            return true;
        }
        let back = self.highest - counter;
        if back >= WINDOW || self.seen & (1 << back) != 0 {
            return false;
        }
        self.seen |= 1 << back;
        true
    }
}

/// Opens sealed datagrams: the MAC, then the replay window.
#[derive(Debug)]
pub struct Opener {
    keys: Keyring,
    config: SealConfig,
    windows: HashMap<NodeId, Window>,
    counters: SealCounters,
    heard: u64,
}

/// An opened datagram: who sent it, and what it carries.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    pub sender: NodeId,
    pub payload: &'a [u8],
}

impl Opener {
    pub fn new(keys: Keyring, config: SealConfig) -> Self {
        Self {
            keys,
            config,
            windows: HashMap::new(),
            counters: SealCounters::default(),
            heard: 0,
        }
    }

    /// Opens `datagram` at `now_ms`, or says why not (and counts it).
    pub fn open<'a>(&mut self, datagram: &'a [u8], now_ms: u64) -> Result<Opened<'a>, SealRefusal> {
        let opened = self.check(datagram, now_ms);
        match &opened {
            Ok(_) => self.counters.opened += 1,
            Err(why) => self.counters.refused[*why as usize] += 1,
        }
        opened
    }

    fn check<'a>(&mut self, datagram: &'a [u8], now_ms: u64) -> Result<Opened<'a>, SealRefusal> {
        if datagram.len() < OVERHEAD {
            return Err(SealRefusal::Short);
        }
        if datagram[..2] != MAGIC {
            return Err(SealRefusal::Magic);
        }
        if datagram[2] != VERSION {
            return Err(SealRefusal::Version);
        }
        let key = self
            .keys
            .by_id(datagram[3])
            .ok_or(SealRefusal::UnknownKey)?;
        let (body, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        let mut mac = key.mac();
        mac.update(body);
        mac.verify_truncated_left(tag)
            .map_err(|_| SealRefusal::BadTag)?;
        let mut sender = [0u8; NODE_ID_LEN];
        sender.copy_from_slice(&body[4..4 + NODE_ID_LEN]);
        let sender = NodeId(sender);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&body[4 + NODE_ID_LEN..HEADER_LEN]);
        let counter = u64::from_be_bytes(counter);
        let now_us = now_ms.saturating_mul(1000);
        if counter.abs_diff(now_us) > self.config.max_skew_ms.saturating_mul(1000) {
            return Err(SealRefusal::Skew);
        }
        self.heard += 1;
        let heard = self.heard;
        match self.windows.get_mut(&sender) {
            Some(w) => {
                if !w.admit(counter) {
                    return Err(SealRefusal::Replay);
                }
                w.heard_at = heard;
            }
            None => {
                self.make_room();
                let window = Window {
                    highest: counter,
                    seen: 1,
                    heard_at: heard,
                };
                self.windows.insert(sender, window);
            }
        }
        Ok(Opened {
            sender,
            payload: &body[HEADER_LEN..],
        })
    }

    /// Evicts the least recently heard sender when the table is full. An
    /// evicted sender's next datagram starts a new window: a replay of its
    /// older datagrams is then bounded by the skew limit.
    fn make_room(&mut self) {
        if self.windows.len() < self.config.max_senders.max(1) {
            return;
        }
        let oldest = self
            .windows
            .iter()
            .min_by_key(|(_, w)| w.heard_at)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.windows.remove(&id);
        }
    }

    /// Datagrams opened and refused so far.
    pub fn counters(&self) -> &SealCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests;
