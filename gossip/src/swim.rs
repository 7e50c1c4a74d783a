//! The mesh protocol as a pure state machine: SWIM membership (foca) and the
//! signed records, carried in sealed datagrams.
//!
//! The shape is quinn-proto's: [`Swim::handle_datagram`] and
//! [`Swim::handle_timeout`] take the time; [`Swim::poll_transmit`],
//! [`Swim::poll_event`] and [`Swim::poll_timeout`] say what to send, what
//! changed and when to call again. The agent, the turmoil suite and the
//! benches drive this same code over their own sockets.
//!
//! How a record travels:
//! - a change is sent straight to every member, up to `push_max` of them
//!   (rack neighbours first): one hop, and each member receives it once;
//! - in a larger mesh, infection carries it past those: it is piggybacked
//!   on foca's messages and gossiped at once to a few random members, each
//!   of which relays it on when it is new to them;
//! - or, with [`Push::TwoHop`], two hops carry it past those: the members
//!   are cut by id into about √n ranges, and one member of each range,
//!   chosen at random, forwards it to the rest of its range when it is new
//!   to it. Each member receives it once, as with a direct push, and no
//!   node sends more than about √n copies of it;
//! - a leave is sent straight to every member (up to [`MAX_LEAVE_PUSH`]);
//! - digests exchanged with one random member each `sync_every_ms` carry
//!   whatever a member missed (a lost push, a partition), and everything to
//!   a member that just joined.
//!
//! Contracts:
//! - a datagram that does not open under the cluster keyring changes
//!   nothing and is never answered: no liveness, no member, no record, no
//!   address; it costs one MAC and a counter (see [`crate::seal`]);
//! - a member's foca messages must name the node that sealed them;
//! - a record is held and relayed only if signed by the key it names and
//!   newer than the one held;
//! - each refusal is counted by reason, and surfaces as an event at most
//!   once per reason every [`REFUSAL_EVENT_EVERY_MS`].

mod frame;
mod peer;
mod records;
mod ring;
#[cfg(test)]
mod tests;

pub use peer::Peer;
pub use records::MAX_RECORD_BYTES;

use crate::node_id::{NodeId, NODE_ID_LEN};
use crate::report::{HeatReport, Record};
use crate::seal::{Keyring, Opener, SealConfig, SealCounters, SealRefusal, Sealer, OVERHEAD};
use crate::summary::Summary;
use foca::{AccumulatingRuntime, Codec, Foca, OwnedNotification, PostcardCodec, Timer};
use frame::{Checksums, Digest, Frame};
use maxwell_types::rng::Rng;
use maxwell_types::sync::lock;
use peer::SeededRng;
use records::{Handler, Held, Slot, Store, REPORT_SLOT, SUMMARY_SLOT};
use ring::Ring;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// At most one refusal event per reason in this many ms.
pub const REFUSAL_EVENT_EVERY_MS: u64 = 10_000;
/// Most seeds a node says hello to.
pub const MAX_SEEDS: usize = 64;
/// [`Swim::publish_spread`] sends straight to up to this many members.
pub const TWO_HOPS_PAST: usize = 8;
/// A leave is pushed straight to at most this many members.
pub const MAX_LEAVE_PUSH: usize = 256;
/// A member's digest of one range is answered at most this often, and a
/// non-member's hello at most this often, ms.
pub const ANSWER_EVERY_MS: u64 = 1_000;

/// Timing and bounds of the protocol; validated by the agent's config.
#[derive(Debug, Clone)]
pub struct SwimConfig {
    /// The next member up the ring of ids is probed each period, and one
    /// member in turn every other period, ms.
    pub probe_period_ms: u64,
    /// A probe not answered within this asks others to try, ms.
    pub probe_rtt_ms: u64,
    /// A suspect not heard from in this long is declared down, ms.
    pub suspect_to_down_ms: u64,
    /// Pending updates are gossiped this often, ms.
    pub gossip_every_ms: u64,
    /// Members gossiped to (and asked to probe indirectly) each time.
    pub fanout: usize,
    /// How many times this node relays each update it learns.
    pub max_transmissions: u8,
    /// Digests are exchanged with one random member this often, ms.
    pub sync_every_ms: u64,
    /// A down member is forgotten after this long, ms.
    pub forget_down_after_ms: u64,
    /// Largest datagram sent, bytes (seal included).
    pub max_datagram: usize,
    /// Members a record is pushed to directly (rack neighbours first); in
    /// a larger mesh infection carries it past them.
    pub push_max: usize,
    /// How a record goes past `push_max` members.
    pub push: Push,
    /// Most nodes whose records are held.
    pub max_records: usize,
    pub seal: SealConfig,
}

/// How a record reaches members past [`SwimConfig::push_max`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Push {
    /// By infection: within a few gossip rounds, each member relaying it
    /// up to `max_transmissions` times.
    #[default]
    Infect,
    /// Through one relay per √n members, in two hops; each member
    /// receives it once (a lost copy waits for a digest).
    TwoHop,
}

impl Default for SwimConfig {
    /// 800 ms probes (250 ms round trip, 1.6 s suspicion), gossip every 200 ms
    /// to 3, 6 relays, pushes to 64, digests every 10 s, 1400-byte datagrams.
    fn default() -> Self {
        Self {
            probe_period_ms: 800,
            probe_rtt_ms: 250,
            suspect_to_down_ms: 1_600,
            gossip_every_ms: 200,
            fanout: 3,
            max_transmissions: 6,
            sync_every_ms: 10_000,
            forget_down_after_ms: 120_000,
            max_datagram: 1_400,
            push_max: 64,
            push: Push::Infect,
            max_records: 4_096,
            seal: SealConfig::default(),
        }
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What was refused, beside the seal's own reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Refusal {
    /// The datagram did not open (see [`SealRefusal`]).
    Seal(SealRefusal),
    /// Longer than any datagram the mesh sends; refused before the MAC.
    Oversized,
    /// It opened, but its frame does not parse.
    Frame,
    /// Its foca message names another node than the one that sealed it,
    /// or it is sealed under this node's own id.
    Impostor,
    /// foca refused the message (undecodable, from ourselves).
    Protocol,
    /// A record that is unsigned, mis-signed, malformed or oversized.
    Record,
    /// A record older than the one held: late (normal in gossip, so never
    /// logged) or replayed.
    Stale,
}

impl Refusal {
    /// Every reason, one counter each.
    pub const ALL: [Refusal; 13] = [
        Refusal::Seal(SealRefusal::Short),
        Refusal::Seal(SealRefusal::Magic),
        Refusal::Seal(SealRefusal::Version),
        Refusal::Seal(SealRefusal::UnknownKey),
        Refusal::Seal(SealRefusal::BadTag),
        Refusal::Seal(SealRefusal::Replay),
        Refusal::Seal(SealRefusal::Skew),
        Refusal::Oversized,
        Refusal::Frame,
        Refusal::Impostor,
        Refusal::Protocol,
        Refusal::Record,
        Refusal::Stale,
    ];

    /// Lower-case name for logs and metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Seal(SealRefusal::Short) => "short",
            Refusal::Seal(SealRefusal::Magic) => "not-sealed",
            Refusal::Seal(SealRefusal::Version) => "version",
            Refusal::Seal(SealRefusal::UnknownKey) => "unknown-key",
            Refusal::Seal(SealRefusal::BadTag) => "bad-tag",
            Refusal::Seal(SealRefusal::Replay) => "replay",
            Refusal::Seal(SealRefusal::Skew) => "skew",
            Refusal::Oversized => "oversized",
            Refusal::Frame => "bad-frame",
            Refusal::Impostor => "impostor",
            Refusal::Protocol => "protocol",
            Refusal::Record => "bad-record",
            Refusal::Stale => "stale-record",
        }
    }
}

/// What changed, for the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwimEvent {
    /// A member is up (new, back, or a new generation).
    Up(Peer),
    /// A member was declared down.
    Down(Peer),
    /// New records arrived from these nodes: re-read the members (and
    /// re-price) now.
    Records(Vec<NodeId>),
    /// The cluster declared this node down; it rejoined as `Peer`.
    Rejoined(Peer),
    /// Refusals for `reason` since its last event (at most one per
    /// [`REFUSAL_EVENT_EVERY_MS`]); `from` sent the latest.
    Refused {
        reason: Refusal,
        count: u64,
        from: SocketAddr,
    },
}

/// One member as the driver sees it.
#[derive(Debug, Clone)]
pub struct MemberState<'a> {
    pub peer: &'a Peer,
    /// Not declared down (a suspect still counts as alive, as in SWIM).
    pub alive: bool,
    /// Its latest signed record, if one is held.
    pub record: Option<&'a [u8]>,
}

/// Counters of the protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SwimCounters {
    pub seal: SealCounters,
    pub refused: BTreeMap<Refusal, u64>,
    pub records_held: usize,
}

impl SwimCounters {
    /// Adds another tier's counts to these.
    pub fn add(&mut self, other: &SwimCounters) {
        self.seal.add(&other.seal);
        for (reason, n) in &other.refused {
            *self.refused.entry(*reason).or_default() += n;
        }
        self.records_held += other.records_held;
    }
}

type Inner = Foca<Peer, PostcardCodec, SeededRng, Handler>;

/// The protocol state of one node.
pub struct Swim {
    foca: Inner,
    runtime: AccumulatingRuntime<Peer>,
    store: Arc<Mutex<Store>>,
    sealer: Sealer,
    opener: Opener,
    config: SwimConfig,
    rng: Rng,
    me: Peer,
    seeds: Vec<SocketAddr>,
    timers: BTreeMap<(u64, u64), Timer<Peer>>,
    timer_seq: u64,
    next_sync_ms: u64,
    /// Members still to sync with this round, taken in a shuffled order.
    sync_round: Vec<NodeId>,
    next_hello_ms: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<SwimEvent>,
    refused: BTreeMap<Refusal, u64>,
    refusal_log: BTreeMap<Refusal, (u64, u64)>,
    absent: BTreeSet<NodeId>,
    /// Suspicion notices to repeat: when, to whom, for which incarnation.
    notices: Vec<(u64, Peer, foca::Incarnation)>,
    ring: Ring,
    /// foca's current timer token, for the down timers the ring sets.
    token: Option<foca::TimerToken>,
    /// The sender of the datagram being handled.
    from: SocketAddr,
    /// Relays per update now in force (see [`transmissions`]).
    tuned: u8,
    /// When each (kind, sender, range start) was last answered.
    answered: BTreeMap<(Answer, NodeId, NodeId), u64>,
    now_ms: u64,
    left: bool,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Swim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swim")
            .field("me", &self.me)
            .field("members", &self.foca.num_members())
            .finish()
    }
}

impl Swim {
    /// A node that will join through `seeds` (none: it founds a mesh).
    pub fn new(
        me: Peer,
        keys: Keyring,
        config: SwimConfig,
        seeds: Vec<SocketAddr>,
        seed: u64,
        now_ms: u64,
    ) -> Self {
        let store = Arc::new(Mutex::new(Store::new(config.max_records)));
        let foca = Foca::with_custom_broadcast(
            me.clone(),
            foca_config(&config),
            SeededRng(Rng::new(seed)),
            PostcardCodec,
            Handler(Arc::clone(&store)),
        );
        let seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| *s != me.addr).collect();
        Self {
            foca,
            runtime: AccumulatingRuntime::new(),
            store,
            sealer: Sealer::new(keys.clone(), me.id, now_ms),
            opener: Opener::new(keys, config.seal),
            rng: Rng::new(seed ^ 0x5157_494d),
            seeds,
            timers: BTreeMap::new(),
            timer_seq: 0,
            next_sync_ms: now_ms + config.sync_every_ms,
            sync_round: Vec::new(),
            next_hello_ms: now_ms,
            out: VecDeque::new(),
            events: VecDeque::new(),
            refused: BTreeMap::new(),
            refusal_log: BTreeMap::new(),
            absent: BTreeSet::new(),
            notices: Vec::new(),
            ring: Ring::new(now_ms, config.probe_period_ms, config.probe_rtt_ms),
            token: None,
            from: me.addr,
            tuned: config.max_transmissions,
            answered: BTreeMap::new(),
            now_ms,
            left: false,
            buf: Vec::new(),
            config,
            me,
        }
    }

    /// This node as members know it.
    pub fn identity(&self) -> &Peer {
        self.foca.identity()
    }

    /// Publishes this node's latest signed record: straight to every
    /// member up to `push_max` (rack neighbours first), by infection past
    /// them.
    pub fn publish(&mut self, now_ms: u64, record: &[u8]) {
        self.advance(now_ms);
        if self.left {
            return;
        }
        if self.config.push == Push::TwoHop && self.foca.num_members() > self.config.push_max {
            return self.publish_in_two_hops(record);
        }
        let to = self.push_set(self.config.push_max);
        let infect = self.foca.num_members() > to.len();
        if infect {
            // foca's handler offers it to the store and keys it for relaying.
            let _ = self.foca.add_broadcast(record);
            let _ = self.foca.gossip(&mut self.runtime);
        } else {
            lock(&self.store).offer(record);
        }
        self.push_records(&to, &[record], infect);
        lock(&self.store).take_changed();
        self.drain_runtime();
    }

    /// Publishes a record that many must get but none at once, whatever
    /// [`SwimConfig::push`] says: past [`TWO_HOPS_PAST`] members, in two
    /// hops (see [`Push::TwoHop`]), so that its sender sends about √n
    /// copies, not n. A carrier's world summary goes into its rack so.
    pub fn publish_spread(&mut self, now_ms: u64, record: &[u8]) {
        self.advance(now_ms);
        if self.left {
            return;
        }
        if self.foca.num_members() > TWO_HOPS_PAST {
            self.publish_in_two_hops(record);
        } else {
            let to = self.push_set(TWO_HOPS_PAST);
            lock(&self.store).offer(record);
            lock(&self.store).take_changed();
            self.push_records(&to, &[record], false);
        }
    }

    fn publish_in_two_hops(&mut self, record: &[u8]) {
        lock(&self.store).offer(record);
        lock(&self.store).take_changed();
        self.push_two_hop(record);
        self.drain_runtime();
    }

    /// Sends `record` to one random member of each of about √n ranges of
    /// the members' ids, to forward to the rest of its range.
    fn push_two_hop(&mut self, record: &[u8]) {
        let mut members: Vec<Peer> = self.foca.iter_members().map(|m| m.id().clone()).collect();
        members.sort_by_key(|p| p.id);
        let n = members.len();
        let ranges = (n as f64).sqrt().ceil().max(1.0) as usize;
        let per = n.div_ceil(ranges).max(1);
        let chunks: Vec<&[Peer]> = members.chunks(per).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let lo = if i == 0 { LOWEST } else { chunk[0].id };
            let hi = chunks
                .get(i + 1)
                .map_or(HIGHEST, |next| predecessor(next[0].id));
            let relay = &chunk[self.rng.below(chunk.len() as u64) as usize];
            for f in frame::forward(lo, hi, [record], self.frame_max()) {
                self.seal_to(relay.addr, &f);
            }
        }
    }

    /// Records a member asked us to forward to the members in `lo..=hi`:
    /// those new to us go on, once, to every member we know there (bar us
    /// and the sender).
    fn take_forward(&mut self, sender: NodeId, lo: NodeId, hi: NodeId, records: &[&[u8]]) {
        let before = lock(&self.store).refused();
        let new: Vec<&[u8]> = records
            .iter()
            .copied()
            .filter(|r| matches!(lock(&self.store).offer(r), records::Offer::New(..)))
            .collect();
        self.count_record_refusals(before);
        self.note_new_records();
        if new.is_empty() {
            return;
        }
        let to: Vec<SocketAddr> = self
            .foca
            .iter_members()
            .map(|m| m.id())
            .filter(|p| p.id >= lo && p.id <= hi && p.id != sender)
            .map(|p| p.addr)
            .collect();
        let frames = frame::records(new, self.frame_max(), false);
        for addr in to {
            for f in &frames {
                self.seal_to(addr, f);
            }
        }
    }

    /// Rack neighbours first, then random members, `max` in all.
    fn push_set(&mut self, max: usize) -> Vec<Peer> {
        let mut to = self.rack_neighbours();
        to.truncate(max);
        let more = self.random_members(max.saturating_sub(to.len()), &to);
        to.extend(more);
        to
    }

    /// Leaves: `record` (a signed leave, if any) goes straight to every
    /// member, and foca declares this node down. Nothing is sent after.
    pub fn leave(&mut self, now_ms: u64, record: Option<&[u8]>) {
        self.advance(now_ms);
        if self.left {
            return;
        }
        if let Some(record) = record {
            {
                let mut store = lock(&self.store);
                store.offer(record);
                store.take_changed();
            }
            let to = self.push_set(MAX_LEAVE_PUSH);
            self.push_records(&to, &[record], true);
        }
        let _ = self.foca.leave_cluster(&mut self.runtime);
        self.drain_runtime();
        self.left = true;
        self.timers.clear();
    }

    /// One datagram from `from`.
    pub fn handle_datagram(&mut self, now_ms: u64, from: SocketAddr, datagram: &[u8]) {
        self.advance(now_ms);
        if self.left {
            return;
        }
        self.from = from;
        if datagram.len() > self.config.max_datagram {
            // Before the MAC: a refusal costs the same whatever the size.
            return self.refuse(Refusal::Oversized);
        }
        let sender = match self.opener.open(datagram, now_ms) {
            Ok(opened) => opened.sender,
            Err(why) => return self.refuse(Refusal::Seal(why)),
        };
        if sender == self.me.id {
            // Our own datagram, reflected back (or a member using our id).
            return self.refuse(Refusal::Impostor);
        }
        self.ring.heard(sender);
        let payload = &datagram[frame_range(datagram)];
        match frame::parse(payload) {
            Err(_) => self.refuse(Refusal::Frame),
            Ok(Frame::Foca(message)) => self.take_foca(sender, message),
            Ok(Frame::Records(records, relay)) => self.take_records(&records, relay),
            Ok(Frame::Forward { lo, hi, records }) => self.take_forward(sender, lo, hi, &records),
            Ok(Frame::Digest(digest)) => self.take_digest(sender, from, digest),
            Ok(Frame::Checksums(sums)) => self.take_checksums(sender, sums),
        }
        self.drain_runtime();
    }

    fn take_foca(&mut self, sender: NodeId, message: &[u8]) {
        let mut cursor = message;
        match Codec::<Peer>::decode_header(&mut PostcardCodec, &mut cursor) {
            Ok(foca::Header {
                src,
                message:
                    foca::Message::ForwardedAck {
                        origin,
                        probe_number,
                    },
                ..
            }) if src.id == sender => self.ring.forwarded(origin.id, probe_number),
            Ok(header) if header.src.id == sender => {}
            Ok(_) => return self.refuse(Refusal::Impostor),
            Err(_) => return self.refuse(Refusal::Protocol),
        }
        let before = lock(&self.store).refused();
        if self.foca.handle_data(message, &mut self.runtime).is_err() {
            self.refuse(Refusal::Protocol);
        }
        self.count_record_refusals(before);
        self.note_new_records();
    }

    fn take_records(&mut self, records: &[&[u8]], relay: bool) {
        let before = lock(&self.store).refused();
        for record in records {
            if relay {
                // foca's handler offers it to the store, and keys it for
                // relaying when it is new.
                if self.foca.add_broadcast(record).is_err() {
                    self.refuse(Refusal::Record);
                }
            } else {
                lock(&self.store).offer(record);
            }
        }
        self.count_record_refusals(before);
        self.note_new_records();
    }

    /// A digest is answered only for a member, at the address foca knows it
    /// by (never at the datagram's source, which a replay chooses), and at
    /// most once per member and range each [`ANSWER_EVERY_MS`]. A node that
    /// is no member yet (a joiner saying hello) is announced to, at most
    /// once per node id each [`ANSWER_EVERY_MS`]; the records follow once it
    /// is one.
    fn take_digest(&mut self, sender: NodeId, from: SocketAddr, digest: Digest) {
        let member = self
            .foca
            .iter_members()
            .find(|m| m.id().id == sender)
            .map(|m| m.id().addr);
        let key = (sender, if member.is_some() { digest.lo } else { LOWEST });
        if !self.may_answer((Answer::Digest, key.0, key.1)) {
            return;
        }
        match member {
            Some(addr) => {
                let newer = lock(&self.store).newer_than(digest.lo, digest.hi, &digest.entries);
                self.send_records_to(addr, &newer, false);
                if digest.answer {
                    self.send_digest(addr, digest.lo, digest.hi, false);
                }
            }
            None if digest.answer => {
                let dst = Peer {
                    id: sender,
                    generation: 0,
                    addr: from,
                };
                let _ = self.foca.announce(dst, &mut self.runtime);
            }
            None => {}
        }
    }

    fn count_record_refusals(&mut self, before: (u64, u64)) {
        let after = lock(&self.store).refused();
        for _ in before.0..after.0 {
            self.refuse(Refusal::Record);
        }
        for _ in before.1..after.1 {
            *self.refused.entry(Refusal::Stale).or_default() += 1;
        }
    }

    fn note_new_records(&mut self) {
        let changed = lock(&self.store).take_changed();
        if !changed.is_empty() {
            self.events.push_back(SwimEvent::Records(changed));
            // Relay a change onward at once rather than at the next gossip
            // tick: infection then moves at network speed.
            if self.foca.custom_broadcast_backlog() > 0 {
                let _ = self.foca.gossip(&mut self.runtime);
            }
        }
    }

    /// Fires due timers; call at [`Self::poll_timeout`].
    pub fn handle_timeout(&mut self, now_ms: u64) {
        // Timers run on the monotonic time: a clock stepped back stalls nothing.
        let now_ms = self.advance(now_ms);
        if self.left {
            return;
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let timer = entry.remove();
            if self.is_refuted(&timer) {
                continue;
            }
            let declared = match &timer {
                Timer::ChangeSuspectToDown {
                    member_id,
                    incarnation,
                    ..
                } => Some((member_id.clone(), *incarnation)),
                _ => None,
            };
            let _ = self.foca.handle_timer(timer, &mut self.runtime);
            if let Some((member, incarnation)) = declared {
                self.push_down(member, incarnation);
            }
            self.drain_runtime();
        }
        self.send_due_notices(now_ms);
        self.run_ring(now_ms);
        if now_ms >= self.next_hello_ms {
            self.next_hello_ms = now_ms + self.config.probe_period_ms;
            if self.foca.num_members() == 0 {
                for seed in self.seeds.clone() {
                    self.send_digest(seed, LOWEST, HIGHEST, true);
                }
            }
        }
        if now_ms >= self.next_sync_ms {
            self.next_sync_ms = now_ms + self.config.sync_every_ms;
            if let Some(peer) = self.next_sync_partner() {
                self.send_checksums(peer.addr);
            }
            self.forget_absent();
        }
        self.drain_runtime();
    }

    /// Scales the relays per update with the mesh, so that infection still
    /// reaches every member as it grows.
    fn retune(&mut self) {
        let wanted = transmissions(self.config.max_transmissions, self.foca.num_members());
        if wanted != self.tuned {
            let mut config = foca_config(&self.config);
            config.max_transmissions = NonZeroU8::new(wanted).unwrap_or(NonZeroU8::MIN);
            if self.foca.set_config(config).is_ok() {
                self.tuned = wanted;
            }
        }
    }

    /// Tells a member we suspect so, in a ping: it refutes at once and its
    /// ack (carrying its new incarnation) clears the suspicion here. This is
    /// Lifeguard's buddy system; without it a suspect learns of its
    /// suspicion only if random gossip happens to reach it in time, and at
    /// 10 % loss some do not.
    fn notify_suspect(&mut self, member: &Peer, incarnation: foca::Incarnation) {
        let suspicion = foca::Member::new(member.clone(), incarnation, foca::State::Suspect);
        self.send_foca(member, foca::Message::Ping(0), Some(&suspicion));
    }

    /// A foca message of our own making to `dst`, with one update or none.
    fn send_foca(
        &mut self,
        dst: &Peer,
        message: foca::Message<Peer>,
        update: Option<&foca::Member<Peer>>,
    ) {
        let header = foca::Header {
            src: self.foca.identity().clone(),
            // Not ours to know: a lower incarnation than a member holds for
            // us changes nothing there.
            src_incarnation: 0,
            dst: dst.clone(),
            message,
        };
        let mut bytes = Vec::new();
        let encoded = Codec::<Peer>::encode_header(&mut PostcardCodec, &header, &mut bytes)
            .and_then(|()| match update {
                Some(member) => {
                    bytes.extend_from_slice(&1u16.to_be_bytes());
                    Codec::<Peer>::encode_member(&mut PostcardCodec, member, &mut bytes)
                }
                None => Ok(()),
            });
        if encoded.is_ok() {
            let mut f = Vec::new();
            frame::foca(&bytes, &mut f);
            self.seal_to(dst.addr, &f);
        }
    }

    /// Repeats the notice halfway through a suspicion still standing.
    fn send_due_notices(&mut self, now_ms: u64) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.notices)
            .into_iter()
            .partition(|n| n.0 <= now_ms);
        self.notices = later;
        for (_, member, incarnation) in due {
            let standing = self.foca.iter_membership_state().any(|m| {
                m.id() == &member
                    && m.state() == foca::State::Suspect
                    && m.incarnation() == incarnation
            });
            if standing {
                self.notify_suspect(&member, incarnation);
            }
        }
    }

    /// Whether `timer` would declare down a member that refuted its
    /// suspicion. foca 0.19 then leaves the member up but still tells it it
    /// was declared down, so that it rejoins under a new identity for
    /// nothing (a false death in every refuted suspicion); such a timer is
    /// dropped here instead.
    fn is_refuted(&self, timer: &Timer<Peer>) -> bool {
        let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = timer
        else {
            return false;
        };
        self.foca
            .iter_membership_state()
            .find(|m| m.id() == member_id)
            .is_none_or(|m| m.state() != foca::State::Suspect || m.incarnation() != *incarnation)
    }

    /// When [`Self::handle_timeout`] is next due (`None` once left).
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.left {
            return None;
        }
        let own = self.next_sync_ms.min(self.next_hello_ms);
        let own = self.notices.iter().map(|n| n.0).fold(own, u64::min);
        let own = own.min(self.ring.poll_timeout());
        Some(self.timers.keys().next().map_or(own, |k| k.0.min(own)))
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SwimEvent> {
        self.events.pop_front()
    }

    /// Every member foca knows (down ones until forgotten), with its record.
    pub fn members(&self) -> Vec<(Peer, bool, Option<Vec<u8>>)> {
        let store = lock(&self.store);
        self.foca
            .iter_membership_state()
            .filter(|m| m.id().id != self.me.id)
            .map(|m| {
                let peer = m.id().clone();
                let record = store.get(&peer.id).map(|h| h.bytes.clone());
                (peer, m.state() != foca::State::Down, record)
            })
            .collect()
    }

    /// The reports held of this node and of the members not declared down.
    pub fn reports(&self) -> Vec<HeatReport> {
        self.alive_records(REPORT_SLOT, |r| match r {
            Record::Report(r) => Some(r.clone()),
            Record::Leave(_) | Record::Summary(_) => None,
        })
    }

    /// The summaries held of this node and of the members not declared down.
    pub fn summaries(&self) -> Vec<Summary> {
        self.alive_records(SUMMARY_SLOT, |r| match r {
            Record::Summary(s) => Some(s.clone()),
            Record::Report(_) | Record::Leave(_) => None,
        })
    }

    /// Visits the reports [`Self::reports`] lists, without copying them.
    pub fn visit_reports(&self, mut visit: impl FnMut(&HeatReport)) {
        self.visit_alive(REPORT_SLOT, |r| {
            if let Record::Report(r) = r {
                visit(r);
            }
        });
    }

    /// Visits the summaries [`Self::summaries`] lists, without copying them
    /// (a carrier's world view reads a thousand on every change).
    pub fn visit_summaries(&self, mut visit: impl FnMut(&Summary)) {
        self.visit_alive(SUMMARY_SLOT, |r| {
            if let Record::Summary(s) = r {
                visit(s);
            }
        });
    }

    /// Visits the summary held of `node`, if any, alive or not.
    pub fn visit_summary_of(&self, node: NodeId, visit: impl FnOnce(&Summary)) {
        if let Some(Record::Summary(s)) =
            lock(&self.store).at(node, SUMMARY_SLOT).map(|h| &h.record)
        {
            visit(s);
        }
    }

    fn alive_records<T>(&self, slot: Slot, take: impl Fn(&Record) -> Option<T>) -> Vec<T> {
        let mut all = Vec::new();
        self.visit_alive(slot, |r| all.extend(take(r)));
        all
    }

    fn visit_alive(&self, slot: Slot, mut visit: impl FnMut(&Record)) {
        let store = lock(&self.store);
        let alive = self.foca.iter_members().map(|m| m.id().id);
        for node in std::iter::once(self.me.id).chain(alive) {
            if let Some(h) = store.at(node, slot) {
                visit(&h.record);
            }
        }
    }

    /// Every member foca knows, down ones included (until forgotten).
    pub fn member_ids(&self) -> BTreeSet<NodeId> {
        self.foca
            .iter_membership_state()
            .map(|m| m.id().id)
            .collect()
    }

    /// Adds a seed to say hello to while this node knows no member.
    pub fn add_seed(&mut self, addr: SocketAddr) {
        if addr != self.me.addr && !self.seeds.contains(&addr) && self.seeds.len() < MAX_SEEDS {
            self.seeds.push(addr);
        }
    }

    /// The members not declared down.
    pub fn alive(&self) -> Vec<Peer> {
        self.foca.iter_members().map(|m| m.id().clone()).collect()
    }

    /// Members not declared down.
    pub fn num_members(&self) -> usize {
        self.foca.num_members()
    }

    /// Counters so far.
    pub fn counters(&self) -> SwimCounters {
        SwimCounters {
            seal: self.opener.counters().clone(),
            refused: self.refused.clone(),
            records_held: lock(&self.store).held(),
        }
    }

    fn advance(&mut self, now_ms: u64) -> u64 {
        self.now_ms = self.now_ms.max(now_ms);
        self.now_ms
    }

    fn refuse(&mut self, reason: Refusal) {
        *self.refused.entry(reason).or_default() += 1;
        let now = self.now_ms;
        let (last, pending) = self.refusal_log.entry(reason).or_insert((0, 0));
        *pending += 1;
        if *last == 0 || now.saturating_sub(*last) >= REFUSAL_EVENT_EVERY_MS {
            self.events.push_back(SwimEvent::Refused {
                reason,
                count: *pending,
                from: self.from,
            });
            *last = now.max(1);
            *pending = 0;
        }
    }

    /// Records of nodes that foca has forgotten for two syncs running.
    fn forget_absent(&mut self) {
        let mut known = self.member_ids();
        known.insert(self.me.id);
        let mut store = lock(&self.store);
        let absent: BTreeSet<NodeId> = store.nodes().difference(&known).copied().collect();
        for node in absent.intersection(&self.absent) {
            store.forget(node);
        }
        self.absent = absent;
    }

    /// Members in our rack, as our own held record names it.
    fn rack_neighbours(&self) -> Vec<Peer> {
        let store = lock(&self.store);
        let Some(rack) = store.get(&self.me.id).and_then(Held::rack) else {
            return Vec::new();
        };
        self.foca
            .iter_members()
            .map(|m| m.id())
            .filter(|p| store.get(&p.id).and_then(Held::rack) == Some(rack))
            .cloned()
            .collect()
    }

    /// The next member to sync with: every member once a round, in a
    /// fresh random order each round (SWIM's round-robin probe order). A
    /// random pick each time could keep picking the one member that cannot
    /// answer us, and leave us without the others' news for many rounds.
    fn next_sync_partner(&mut self) -> Option<Peer> {
        loop {
            if self.sync_round.is_empty() {
                self.sync_round = self
                    .random_members(usize::MAX, &[])
                    .into_iter()
                    .map(|p| p.id)
                    .collect();
            }
            let id = self.sync_round.pop()?;
            if let Some(m) = self.foca.iter_members().find(|m| m.id().id == id) {
                return Some(m.id().clone());
            }
        }
    }

    fn random_members(&mut self, n: usize, except: &[Peer]) -> Vec<Peer> {
        let mut pool: Vec<Peer> = self
            .foca
            .iter_members()
            .map(|m| m.id().clone())
            .filter(|p| !except.iter().any(|e| e.id == p.id))
            .collect();
        let mut chosen = Vec::new();
        while chosen.len() < n && !pool.is_empty() {
            let i = self.rng.below(pool.len() as u64) as usize;
            chosen.push(pool.swap_remove(i));
        }
        chosen
    }

    fn push_records(&mut self, to: &[Peer], records: &[&[u8]], relay: bool) {
        let frames = frame::records(records.iter().copied(), self.frame_max(), relay);
        for peer in to {
            for f in &frames {
                self.seal_to(peer.addr, f);
            }
        }
    }

    fn send_records_to(&mut self, to: SocketAddr, records: &[Vec<u8>], relay: bool) {
        let frames = frame::records(records.iter().map(Vec::as_slice), self.frame_max(), relay);
        for f in &frames {
            self.seal_to(to, f);
        }
    }

    /// Our digest of `lo..=hi`, in as many datagrams as it takes; each covers
    /// a contiguous part of the range, so a receiver can tell what we lack.
    fn send_digest(&mut self, to: SocketAddr, lo: NodeId, hi: NodeId, answer: bool) {
        let entries = lock(&self.store).entries(lo, hi);
        let per = frame::entries_per_frame(self.frame_max()).max(2);
        for (part_lo, part_hi, chunk) in ranges(&entries, lo, hi, per) {
            let f = frame::digest(&Digest {
                answer,
                lo: part_lo,
                hi: part_hi,
                entries: chunk.to_vec(),
            });
            self.seal_to(to, &f);
        }
    }

    /// The periodic sync: a checksum of each digest-sized part of what we
    /// hold. A member holding the same answers nothing; only a part that
    /// differs costs a digest (about 40 bytes a part of 26 records, against
    /// 49 a record in a digest).
    /// While the whole digest fits one datagram, it is sent as is: sums
    /// would save nothing and cost a round trip.
    fn send_checksums(&mut self, to: SocketAddr) {
        let entries = lock(&self.store).entries(LOWEST, HIGHEST);
        let per = frame::entries_per_frame(self.frame_max()).max(2);
        if entries.len() <= per {
            return self.send_digest(to, LOWEST, HIGHEST, true);
        }
        let parts: Vec<(NodeId, frame::Part)> = ranges(&entries, LOWEST, HIGHEST, per)
            .into_iter()
            .map(|(lo, hi, chunk)| {
                let sum = frame::checksum(chunk);
                (lo, frame::Part { hi, sum })
            })
            .collect();
        for group in parts.chunks(frame::parts_per_frame(self.frame_max()).max(1)) {
            let f = frame::checksums(&Checksums {
                lo: group[0].0,
                parts: group.iter().map(|(_, p)| *p).collect(),
            });
            self.seal_to(to, &f);
        }
    }

    /// A member's checksummed digest: each part whose sum differs from ours
    /// is answered with our digest of it, asking for theirs (the exchange
    /// then runs as a digest's). Only for a member, at its own address, at
    /// most once per member and start each [`ANSWER_EVERY_MS`].
    fn take_checksums(&mut self, sender: NodeId, sums: Checksums) {
        let Some(addr) = self
            .foca
            .iter_members()
            .find(|m| m.id().id == sender)
            .map(|m| m.id().addr)
        else {
            return;
        };
        if !self.may_answer((Answer::Sums, sender, sums.lo)) {
            return;
        }
        let mut lo = Some(sums.lo);
        for part in sums.parts {
            let Some(start) = lo else { break };
            let ours = lock(&self.store).entries(start, part.hi);
            if frame::checksum(&ours) != part.sum {
                self.send_digest(addr, start, part.hi, true);
            }
            lo = successor(part.hi);
        }
    }

    /// Whether `key` may be answered now: not within [`ANSWER_EVERY_MS`]
    /// of its last answer, and the map of answers is not full.
    fn may_answer(&mut self, key: (Answer, NodeId, NodeId)) -> bool {
        let now = self.now_ms;
        if self
            .answered
            .get(&key)
            .is_some_and(|at| now.saturating_sub(*at) < ANSWER_EVERY_MS)
        {
            return false;
        }
        if self.answered.len() >= self.config.max_records {
            self.answered
                .retain(|_, at| now.saturating_sub(*at) < ANSWER_EVERY_MS);
            if self.answered.len() >= self.config.max_records {
                return false;
            }
        }
        self.answered.insert(key, now);
        true
    }

    fn frame_max(&self) -> usize {
        self.config.max_datagram.saturating_sub(OVERHEAD)
    }

    fn seal_to(&mut self, to: SocketAddr, frame: &[u8]) {
        let mut bytes = Vec::new();
        self.sealer.seal(self.now_ms, frame, &mut bytes);
        self.out.push_back(Transmit { to, bytes });
    }

    /// Sets `timer` to fire in `after_ms`; a down timer first tells the
    /// suspect, and again halfway.
    fn schedule(&mut self, after_ms: u64, timer: Timer<Peer>) {
        let at = self.now_ms.saturating_add(after_ms);
        if let Timer::ChangeSuspectToDown {
            member_id,
            incarnation,
            ..
        } = &timer
        {
            self.notify_suspect(member_id, *incarnation);
            self.notices
                .push((self.now_ms + after_ms / 2, member_id.clone(), *incarnation));
        }
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }

    fn drain_runtime(&mut self) {
        while let Some((peer, data)) = self.runtime.to_send() {
            let mut f = std::mem::take(&mut self.buf);
            frame::foca(&data, &mut f);
            self.seal_to(peer.addr, &f);
            self.buf = f;
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            if let Timer::ProbeRandomMember(token) = timer {
                self.token = Some(token);
            }
            self.schedule(u64::try_from(after.as_millis()).unwrap_or(u64::MAX), timer);
        }
        let mut met = Vec::new();
        while let Some(note) = self.runtime.to_notify() {
            match note {
                OwnedNotification::MemberUp(peer) => {
                    self.retune();
                    // Introduce ourselves: a new member learns our record now,
                    // not at its next digest.
                    let own: Vec<Vec<u8>> = {
                        let store = lock(&self.store);
                        [REPORT_SLOT, SUMMARY_SLOT]
                            .iter()
                            .filter_map(|slot| store.at(self.me.id, *slot))
                            .map(|h| h.bytes.clone())
                            .collect()
                    };
                    if !own.is_empty() {
                        self.send_records_to(peer.addr, &own, false);
                    }
                    met.push(peer.clone());
                    self.events.push_back(SwimEvent::Up(peer));
                }
                OwnedNotification::MemberDown(peer) => self.events.push_back(SwimEvent::Down(peer)),
                OwnedNotification::Rejoin(me) => self.events.push_back(SwimEvent::Rejoined(me)),
                // Just joined: fetch every record now, not at the next sync.
                OwnedNotification::Active => self.next_sync_ms = self.now_ms,
                _ => {}
            }
        }
        // Announce to each member that comes up: one met by hearsay (a feed,
        // a gossiped update) learns of us now, not when its probes come
        // round to us (up to n probe periods), and so sends us its record
        // (and we ours) at once. One that announced itself gets one more
        // exchange; a member comes up once per incarnation.
        if !met.is_empty() {
            for peer in met {
                let _ = self.foca.announce(peer, &mut self.runtime);
            }
            self.drain_runtime();
        }
    }
}

/// The frame inside a sealed datagram (after the header, before the tag).
fn frame_range(datagram: &[u8]) -> std::ops::Range<usize> {
    crate::seal::HEADER_LEN..datagram.len() - crate::seal::TAG_LEN
}

/// The ends of the node-id range (ids are big-endian numbers).
const LOWEST: NodeId = NodeId([0; NODE_ID_LEN]);
const HIGHEST: NodeId = NodeId([0xff; NODE_ID_LEN]);

/// What kind of frame an answer was to (each is rate-limited apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Digest,
    Sums,
}

/// `entries` (sorted, within `lo..=hi`) cut into contiguous ranges covering
/// `lo..=hi`, of at most `per` entries each; a range never splits one
/// node's slots.
fn ranges(
    entries: &[frame::Entry],
    lo: NodeId,
    hi: NodeId,
    per: usize,
) -> Vec<(NodeId, NodeId, &[frame::Entry])> {
    let mut chunks: Vec<&[frame::Entry]> = Vec::new();
    let mut rest = entries;
    while rest.len() > per {
        let cut = if rest[per - 1].node == rest[per].node {
            per - 1
        } else {
            per
        };
        let (chunk, tail) = rest.split_at(cut);
        chunks.push(chunk);
        rest = tail;
    }
    chunks.push(rest);
    (0..chunks.len())
        .map(|i| {
            let part_lo = if i == 0 { lo } else { chunks[i][0].node };
            let part_hi = chunks
                .get(i + 1)
                .map_or(hi, |next| predecessor(next[0].node));
            (part_lo, part_hi, chunks[i])
        })
        .collect()
}

/// The id just above `id`, if any.
fn successor(id: NodeId) -> Option<NodeId> {
    let mut bytes = id.0;
    for b in bytes.iter_mut().rev() {
        if *b < 0xff {
            *b += 1;
            return Some(NodeId(bytes));
        }
        *b = 0;
    }
    None
}

/// The id just below `id` (the ids are big-endian numbers).
fn predecessor(id: NodeId) -> NodeId {
    let mut bytes = id.0;
    for b in bytes.iter_mut().rev() {
        if *b > 0 {
            *b -= 1;
            return NodeId(bytes);
        }
        *b = 0xff;
    }
    LOWEST
}

fn ms(x: u64) -> Duration {
    Duration::from_millis(x)
}

/// Relays per update for a mesh of `members`: memberlist's 4 × log10(n + 1),
/// never fewer than configured.
fn transmissions(configured: u8, members: usize) -> u8 {
    let n = members as f64 + 1.0;
    let wanted = (4.0 * n.log10()).ceil().min(f64::from(u8::MAX)) as u8;
    configured.max(wanted)
}

fn foca_config(c: &SwimConfig) -> foca::Config {
    let fanout = NonZeroUsize::new(c.fanout.max(1)).unwrap_or(NonZeroUsize::MIN);
    let mut f = foca::Config::simple();
    // The ring probe asks after every member each period (see [`ring`]);
    // foca's round robin, every other period, adds probers from elsewhere
    // in the mesh (a ring prober can be cut off from its successor alone).
    f.probe_period = ms(c.probe_period_ms.saturating_mul(2));
    f.probe_rtt = ms(c.probe_rtt_ms);
    f.num_indirect_probes = fanout;
    f.max_transmissions = NonZeroU8::new(c.max_transmissions.max(1)).unwrap_or(NonZeroU8::MIN);
    f.suspect_to_down_after = ms(c.suspect_to_down_ms);
    f.remove_down_after = ms(c.forget_down_after_ms);
    f.max_packet_size = NonZeroUsize::new(c.max_datagram.saturating_sub(OVERHEAD + 1).max(64))
        .unwrap_or(NonZeroUsize::MIN);
    f.notify_down_members = true;
    // An announce draws a feed of random members: it fills the gaps that
    // infection left in a large mesh.
    f.periodic_announce = Some(foca::PeriodicParams {
        frequency: ms(c.sync_every_ms),
        num_members: NonZeroUsize::MIN,
    });
    // A healed partition is found again by announcing to members declared
    // down, as often as digests go out (only while there are any).
    f.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: ms(c.sync_every_ms),
        num_members: NonZeroUsize::MIN.saturating_add(1),
    });
    f.periodic_gossip = Some(foca::PeriodicParams {
        frequency: ms(c.gossip_every_ms),
        num_members: fanout,
    });
    f
}
