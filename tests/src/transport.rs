//! The gossip [`Transport`] over turmoil's simulated UDP: the agent's own
//! bytes on a simulated wire. turmoil decides delivery, partitions, latency
//! and ordering; loss is applied here, per datagram, from a seeded
//! generator (turmoil's `fail_rate` takes whole links down, a different
//! failure), so a run replays from its seed.

use async_trait::async_trait;
use maxwell_node::mesh::transport::{Socket, Transport};
use maxwell_types::rng::Rng;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Inner {
    loss: f64,
    rng: Rng,
    sent: u64,
    dropped_by_loss: u64,
}

/// The simulated wire's loss, shared by every host of one simulation.
#[derive(Debug, Clone)]
pub struct Wire {
    inner: Arc<Mutex<Inner>>,
}

/// Counters of a wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireStats {
    pub sent: u64,
    pub dropped_by_loss: u64,
}

impl Wire {
    /// A lossless wire whose loss generator starts from `seed`.
    pub fn new(seed: u64) -> Self {
        let inner = Inner {
            loss: 0.0,
            rng: Rng::new(seed),
            sent: 0,
            dropped_by_loss: 0,
        };
        Self {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// Drops each datagram with probability `p` from now on.
    pub fn set_loss(&self, p: f64) {
        maxwell_types::sync::lock(&self.inner).loss = p.clamp(0.0, 1.0);
    }

    /// Counters so far.
    pub fn stats(&self) -> WireStats {
        let g = maxwell_types::sync::lock(&self.inner);
        WireStats {
            sent: g.sent,
            dropped_by_loss: g.dropped_by_loss,
        }
    }

    /// Whether the next datagram is lost.
    fn lose(&self) -> bool {
        let mut g = maxwell_types::sync::lock(&self.inner);
        g.sent += 1;
        let lost = g.loss > 0.0 && g.rng.unit() < g.loss;
        if lost {
            g.dropped_by_loss += 1;
        }
        lost
    }
}

/// The turmoil transport.
#[derive(Debug, Clone)]
pub struct TurmoilTransport {
    wire: Wire,
}

impl TurmoilTransport {
    pub fn new(wire: Wire) -> Self {
        Self { wire }
    }
}

#[async_trait]
impl Transport for TurmoilTransport {
    async fn bind(&self, addr: SocketAddr) -> io::Result<Arc<dyn Socket>> {
        let socket = turmoil::net::UdpSocket::bind(addr).await?;
        Ok(Arc::new(TurmoilSocket {
            socket,
            wire: self.wire.clone(),
        }))
    }
}

struct TurmoilSocket {
    socket: turmoil::net::UdpSocket,
    wire: Wire,
}

#[async_trait]
impl Socket for TurmoilSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        if self.wire.lose() {
            // Lost on the way: the sender cannot tell.
            return Ok(datagram.len());
        }
        self.socket.send_to(datagram, to).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }
}
