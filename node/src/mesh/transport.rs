//! The gossip transport: one trait for a datagram socket, with real UDP
//! here and turmoil's simulated UDP in the partition tests; one
//! conformance suite (`tests/src/conformance.rs`) runs against both.
//!
//! A socket is shared by reference: the mesh driver receives on it while
//! it sends. Traffic is counted into [`GossipStats`] by the driver.

use async_trait::async_trait;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Opens gossip sockets.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Binds `addr`; port 0 takes any free port (see [`Socket::local_addr`]).
    async fn bind(&self, addr: SocketAddr) -> io::Result<Arc<dyn Socket>>;
}

/// A bound datagram socket.
#[async_trait]
pub trait Socket: Send + Sync {
    /// Where it is bound (the port the OS chose, for port 0).
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Sends one datagram.
    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize>;
    /// Receives one datagram into `buf`; a longer one is truncated.
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
}

/// Real UDP.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpTransport;

#[async_trait]
impl Transport for UdpTransport {
    async fn bind(&self, addr: SocketAddr) -> io::Result<Arc<dyn Socket>> {
        Ok(Arc::new(tokio::net::UdpSocket::bind(addr).await?))
    }
}

#[async_trait]
impl Socket for tokio::net::UdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::UdpSocket::local_addr(self)
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        tokio::net::UdpSocket::send_to(self, datagram, to).await
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        tokio::net::UdpSocket::recv_from(self, buf).await
    }
}

/// Gossip traffic counters of one agent.
#[derive(Debug, Default)]
pub struct GossipStats {
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Sends that failed (counted, then dropped: gossip goes on).
    pub send_errors: AtomicU64,
}
