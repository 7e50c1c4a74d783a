//! Which guests a node takes: admission against the host's share for
//! guests, counted over the guests it admitted and has not seen killed.
//!
//! A start is reserved the moment it is admitted, before the driver has
//! carried it out, so requests that race each other are decided one after
//! the other against everything admitted before them. An exited guest keeps
//! its memory until it is killed, so only a kill frees its share.
//!
//! The backend is the truth for what runs: a survey of its live guests
//! (asked for each observation period) replaces what the book believes
//! runs, so a kill the driver could not report costs a share for one period
//! at most. Reservations are the driver's to settle: it must report the
//! outcome of every start it was asked for, and deliver a survey after the
//! outcome of every start it began before taking it. Guest ids are never
//! reused.

use std::collections::{BTreeMap, BTreeSet};

/// A guest request, named by the core when it is asked; the driver carries
/// the request's details beside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// What a guest takes of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GuestLoad {
    pub vcpus: u64,
    pub memory_mib: u64,
}

impl std::ops::Add for GuestLoad {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            vcpus: self.vcpus.saturating_add(o.vcpus),
            memory_mib: self.memory_mib.saturating_add(o.memory_mib),
        }
    }
}

/// The host's share for guests: its cores and memory, and the fractions of
/// each that guests may take in all.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Admission {
    pub cores: u64,
    pub memory_mib: u64,
    pub cpu_fraction: f64,
    pub memory_fraction: f64,
}

impl Admission {
    /// A host that admits no guest (a simulation, a harness).
    pub const NONE: Self = Self {
        cores: 0,
        memory_mib: 0,
        cpu_fraction: 0.0,
        memory_fraction: 0.0,
    };

    /// The most vCPUs guests may have in all.
    pub fn max_vcpus(&self) -> u64 {
        (self.cores as f64 * self.cpu_fraction).floor() as u64
    }

    /// The most memory guests may have in all, MiB.
    pub fn max_memory_mib(&self) -> u64 {
        (self.memory_mib as f64 * self.memory_fraction).floor() as u64
    }

    fn check(&self, used: GuestLoad, ask: GuestLoad) -> Result<(), Refusal> {
        let want = used + ask;
        if want.vcpus > self.max_vcpus() {
            return Err(Refusal::Vcpus {
                want: want.vcpus,
                share: *self,
            });
        }
        if want.memory_mib > self.max_memory_mib() {
            return Err(Refusal::Memory {
                want_mib: want.memory_mib,
                share: *self,
            });
        }
        Ok(())
    }
}

/// Why a guest was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Its vCPUs and those admitted before would exceed the share.
    Vcpus { want: u64, share: Admission },
    /// Its memory and that admitted before would exceed the share.
    Memory { want_mib: u64, share: Admission },
    /// The node is leaving: it starts nothing more.
    Leaving,
    /// An offered guest's bid is below this node's price.
    AboveBid { bid_milli: u64, price_milli: u64 },
    /// A moved guest came within `every_ms` of the last one taken.
    Paced { ago_ms: u64, every_ms: u64 },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Vcpus { want, share } => write!(
                f,
                "admission refused: {want} vCPUs in all would exceed the {} this host admits \
                 ({} cores x guests.cpu_fraction {})",
                share.max_vcpus(),
                share.cores,
                share.cpu_fraction
            ),
            Refusal::Memory { want_mib, share } => write!(
                f,
                "admission refused: {want_mib} MiB of guest memory in all would exceed the {} MiB \
                 this host admits ({} MiB x guests.memory_fraction {})",
                share.max_memory_mib(),
                share.memory_mib,
                share.memory_fraction
            ),
            Refusal::Leaving => f.write_str("the agent is shutting down"),
            Refusal::AboveBid {
                bid_milli,
                price_milli,
            } => write!(
                f,
                "price {price_milli} milli-credits per CPU-second is above the bid {bid_milli}"
            ),
            Refusal::Paced { ago_ms, every_ms } => write!(
                f,
                "this node took a moved guest {ago_ms} ms ago and takes one per {every_ms} ms \
                 (placement.move_admit_every_ms)"
            ),
        }
    }
}

/// What the core asks of the driver's guest backend.
#[derive(Debug, Clone, PartialEq)]
pub enum GuestAction {
    /// Start the guest of this request; answer with
    /// [`crate::NodeCore::handle_guest_started`].
    Start(Ticket),
    /// Tell the requester why not; nothing was started.
    Refuse(Ticket, Refusal),
    /// List the backend's live guests; answer with
    /// [`crate::NodeCore::handle_guests`].
    Survey,
    /// Kill every guest on this host (the node is leaving), after every
    /// start already asked for.
    StopAll,
}

/// The guests admitted: reserved while starting, then live until killed.
#[derive(Debug, Default)]
pub(crate) struct Book {
    next_ticket: u64,
    starting: BTreeMap<Ticket, GuestLoad>,
    live: BTreeMap<u64, GuestLoad>,
    /// Reported killed and perhaps still in a survey taken before the kill.
    killed: BTreeSet<u64>,
}

impl Book {
    /// What everything admitted and not seen killed takes.
    pub(crate) fn load(&self) -> GuestLoad {
        self.starting
            .values()
            .chain(self.live.values())
            .fold(GuestLoad::default(), |a, b| a + *b)
    }

    /// The guests admitted and not seen killed, and what `admission` still
    /// leaves; counts past `u32` saturate (no host holds that many).
    pub(crate) fn room(&self, admission: &Admission) -> maxwell_gossip::Room {
        let load = self.load();
        let narrow = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        maxwell_gossip::Room {
            guests: narrow((self.starting.len() + self.live.len()) as u64),
            free_vcpus: narrow(admission.max_vcpus().saturating_sub(load.vcpus)),
            free_memory_mib: narrow(admission.max_memory_mib().saturating_sub(load.memory_mib)),
        }
    }

    /// A new request's ticket.
    pub(crate) fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }

    /// Reserves `ask` for `ticket` if it fits `share` beside everything
    /// admitted before it; else says why not.
    pub(crate) fn reserve(
        &mut self,
        ticket: Ticket,
        share: &Admission,
        ask: GuestLoad,
    ) -> Result<(), Refusal> {
        share.check(self.load(), ask)?;
        self.starting.insert(ticket, ask);
        Ok(())
    }

    /// A reserved start finished: the guest `started` is live, or (`None`)
    /// the start failed and its share is free again.
    pub(crate) fn started(&mut self, ticket: Ticket, started: Option<u64>) {
        if let (Some(load), Some(guest)) = (self.starting.remove(&ticket), started) {
            if !self.killed.contains(&guest) {
                self.live.insert(guest, load);
            }
        }
    }

    /// Guest `guest` was killed: its share is free.
    pub(crate) fn gone(&mut self, guest: u64) {
        self.live.remove(&guest);
        self.killed.insert(guest);
    }

    /// The backend's live guests, now: what runs is what it says, less the
    /// guests reported killed since (a kill may race the survey). A killed
    /// id the survey no longer holds is gone for good.
    pub(crate) fn surveyed(&mut self, live: &[(u64, GuestLoad)]) {
        self.killed
            .retain(|k| live.iter().any(|(guest, _)| guest == k));
        self.live = live
            .iter()
            .filter(|(guest, _)| !self.killed.contains(guest))
            .copied()
            .collect();
    }

    /// Every guest is killed, those still starting too (their kill is
    /// queued behind their start).
    pub(crate) fn clear(&mut self) {
        self.starting.clear();
        self.live.clear();
        self.killed.clear();
    }
}
