//! A chitchat [`Transport`] over turmoil's simulated UDP.
//!
//! chitchat 0.13 hands a socket a typed `ChitchatEnvelope` whose byte
//! serialization is crate-private, so no outside transport can put the real
//! bytes on a wire. This one sends a real (simulated) datagram holding an
//! 8-byte ticket, and parks the envelope in a [`Mailbox`] under that ticket:
//! turmoil decides delivery, partitions, latency and ordering of the
//! datagram; the receiver redeems the ticket. Parcels whose datagram was
//! dropped are swept after [`PARCEL_TTL`] of simulated time, and the mailbox
//! never holds more than [`MAX_PARCELS`], so long runs do not leak.
//!
//! Loss is applied here, per datagram, from a seeded generator: turmoil's own
//! `fail_rate` takes whole links down, which is a different failure.

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// How long an undelivered parcel is kept.
pub const PARCEL_TTL: Duration = Duration::from_secs(30);
/// Most parcels in flight; the oldest go first past this.
pub const MAX_PARCELS: usize = 200_000;
const TICKET_LEN: usize = 8;

#[derive(Debug)]
struct Parcel {
    at: Instant,
    envelope: ChitchatEnvelope,
}

#[derive(Debug, Default)]
struct Inner {
    next: u64,
    parcels: BTreeMap<u64, Parcel>,
    order: VecDeque<u64>,
    loss: f64,
    rng: u64,
    sent: u64,
    dropped_by_loss: u64,
    swept: u64,
}

/// Envelopes in flight, shared by every host of one simulation.
#[derive(Debug, Clone, Default)]
pub struct Mailbox {
    inner: Arc<Mutex<Inner>>,
}

/// Counters of a mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxStats {
    pub sent: u64,
    pub dropped_by_loss: u64,
    pub swept: u64,
    pub in_flight: usize,
}

impl Mailbox {
    /// A mailbox whose loss generator starts from `seed`.
    pub fn new(seed: u64) -> Self {
        let inner = Inner {
            rng: seed | 1,
            ..Inner::default()
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        maxwell_types::sync::lock(&self.inner)
    }

    /// Drops each datagram with probability `p` from now on.
    pub fn set_loss(&self, p: f64) {
        self.lock().loss = p.clamp(0.0, 1.0);
    }

    /// Counters so far.
    pub fn stats(&self) -> MailboxStats {
        let g = self.lock();
        MailboxStats {
            sent: g.sent,
            dropped_by_loss: g.dropped_by_loss,
            swept: g.swept,
            in_flight: g.parcels.len(),
        }
    }

    /// Parks an envelope; `None` when the loss generator drops it.
    fn post(&self, envelope: ChitchatEnvelope, now: Instant) -> Option<u64> {
        let mut g = self.lock();
        g.sent += 1;
        if g.loss > 0.0 && next_unit(&mut g.rng) < g.loss {
            g.dropped_by_loss += 1;
            return None;
        }
        while let Some(&oldest) = g.order.front() {
            let expired = g
                .parcels
                .get(&oldest)
                .is_none_or(|p| now.duration_since(p.at) > PARCEL_TTL);
            if !expired && g.parcels.len() < MAX_PARCELS {
                break;
            }
            g.order.pop_front();
            if g.parcels.remove(&oldest).is_some() {
                g.swept += 1;
            }
        }
        let ticket = g.next;
        g.next += 1;
        g.parcels.insert(ticket, Parcel { at: now, envelope });
        g.order.push_back(ticket);
        Some(ticket)
    }

    fn take(&self, ticket: u64) -> Option<ChitchatEnvelope> {
        self.lock().parcels.remove(&ticket).map(|p| p.envelope)
    }

    fn forget(&self, ticket: u64) {
        self.lock().parcels.remove(&ticket);
    }
}

/// xorshift64*: a uniform number in [0, 1).
fn next_unit(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// The turmoil transport.
#[derive(Debug, Clone)]
pub struct TurmoilTransport {
    mailbox: Mailbox,
}

impl TurmoilTransport {
    pub fn new(mailbox: Mailbox) -> Self {
        Self { mailbox }
    }
}

#[async_trait]
impl Transport for TurmoilTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = turmoil::net::UdpSocket::bind(listen_addr).await?;
        Ok(Box::new(TurmoilSocket {
            socket,
            mailbox: self.mailbox.clone(),
        }))
    }
}

struct TurmoilSocket {
    socket: turmoil::net::UdpSocket,
    mailbox: Mailbox,
}

#[async_trait]
impl Socket for TurmoilSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.socket.local_addr()?)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let Some(ticket) = self.mailbox.post(envelope, Instant::now()) else {
            // Lost on the way: the sender cannot tell.
            return Ok(SendOutcome {
                num_bytes_sent: TICKET_LEN,
            });
        };
        match self.socket.send_to(&ticket.to_le_bytes(), to).await {
            Ok(n) => Ok(SendOutcome { num_bytes_sent: n }),
            Err(e) => {
                // A failed send must not stop chitchat's loop: drop the parcel, carry on.
                self.mailbox.forget(ticket);
                tracing::debug!(%to, error = %e, "simulated send failed");
                Ok(SendOutcome { num_bytes_sent: 0 })
            }
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let mut buf = [0u8; 64];
        loop {
            let (n, from_addr) = self.socket.recv_from(&mut buf).await?;
            let Ok(ticket) = <[u8; TICKET_LEN]>::try_from(&buf[..n]) else {
                continue; // not one of ours: garbage on the port
            };
            if let Some(envelope) = self.mailbox.take(u64::from_le_bytes(ticket)) {
                return Ok(RecvOutcome {
                    from_addr,
                    envelope,
                    num_bytes_received: n,
                });
            }
        }
    }
}
