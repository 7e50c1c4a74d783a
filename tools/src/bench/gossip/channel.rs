//! An in-memory gossip [`Transport`] for the simulation: a datagram sent is
//! queued for the socket bound at its address, or dropped when there is
//! none (as UDP drops it). Runs on tokio's paused clock: no wall time.

use async_trait::async_trait;
use maxwell_node::mesh::transport::{Socket, Transport};
use maxwell_types::sync::lock;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type Inbox = mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>;

/// The in-memory network: every socket bound on it.
#[derive(Debug, Clone, Default)]
pub struct ChannelTransport {
    sockets: Arc<Mutex<HashMap<SocketAddr, Inbox>>>,
}

#[async_trait]
impl Transport for ChannelTransport {
    async fn bind(&self, addr: SocketAddr) -> io::Result<Arc<dyn Socket>> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut sockets = lock(&self.sockets);
        if sockets.get(&addr).is_some_and(|s| !s.is_closed()) || addr.port() == 0 {
            return Err(io::Error::from(io::ErrorKind::AddrInUse));
        }
        sockets.insert(addr, tx);
        Ok(Arc::new(ChannelSocket {
            addr,
            net: self.clone(),
            rx: tokio::sync::Mutex::new(rx),
        }))
    }
}

struct ChannelSocket {
    addr: SocketAddr,
    net: ChannelTransport,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>>,
}

#[async_trait]
impl Socket for ChannelSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }

    async fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<usize> {
        if let Some(inbox) = lock(&self.net.sockets).get(&to) {
            let _ = inbox.send((datagram.to_vec(), self.addr));
        }
        Ok(datagram.len())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (bytes, from) = self
            .rx
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        Ok((n, from))
    }
}
