//! The gossip transport as the agent uses it: any chitchat [`Transport`]
//! (real UDP in production, turmoil in tests) wrapped to count datagrams and
//! bytes, and to keep chitchat alive when a send fails.
//!
//! chitchat stops its server loop when `Socket::send` returns an error; a
//! send to an unreachable peer is routine in a rack (a host being
//! re-cabled), so the wrapper counts the failure and reports success.
//!
//! Malformed datagrams are dropped inside chitchat's UDP socket, which only
//! logs them (`invalid-chitchat-payload`, target `chitchat::transport::udp`).
//! [`InvalidPayloadLayer`] is a tracing layer that counts that event; chitchat
//! is pinned to the exact version whose event it matches, and a test sends
//! garbage to a real agent and checks the count.

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport};
use chitchat::ChitchatEnvelope;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// Malformed datagrams dropped by chitchat's UDP socket, process-wide.
static INVALID_DATAGRAMS: AtomicU64 = AtomicU64::new(0);

/// Gossip traffic counters of one agent.
#[derive(Debug, Default)]
pub struct GossipStats {
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
    /// Sends that failed (counted, then swallowed).
    pub send_errors: AtomicU64,
}

impl GossipStats {
    /// Malformed datagrams dropped so far (process-wide: one agent per process).
    pub fn invalid_datagrams(&self) -> u64 {
        INVALID_DATAGRAMS.load(Ordering::Relaxed)
    }
}

/// A transport whose sockets count traffic into shared [`GossipStats`].
#[derive(Debug)]
pub struct CountingTransport<T> {
    inner: T,
    stats: Arc<GossipStats>,
}

impl<T> CountingTransport<T> {
    pub fn new(inner: T, stats: Arc<GossipStats>) -> Self {
        Self { inner, stats }
    }
}

#[async_trait]
impl<T: Transport> Transport for CountingTransport<T> {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let inner = self.inner.open(listen_addr).await?;
        Ok(Box::new(CountingSocket {
            inner,
            stats: Arc::clone(&self.stats),
        }))
    }
}

struct CountingSocket {
    inner: Box<dyn Socket>,
    stats: Arc<GossipStats>,
}

#[async_trait]
impl Socket for CountingSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.inner.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        match self.inner.send(to, envelope).await {
            Ok(outcome) => {
                self.stats.datagrams_out.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_out
                    .fetch_add(outcome.num_bytes_sent as u64, Ordering::Relaxed);
                Ok(outcome)
            }
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(to = %to, error = %e, "gossip send failed");
                Ok(SendOutcome { num_bytes_sent: 0 })
            }
        }
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        let outcome = self.inner.recv().await?;
        self.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_in
            .fetch_add(outcome.num_bytes_received as u64, Ordering::Relaxed);
        Ok(outcome)
    }
}

/// Counts chitchat's "invalid-chitchat-payload" events.
#[derive(Debug, Default, Clone, Copy)]
pub struct InvalidPayloadLayer;

struct MessageIs(bool);

impl Visit for MessageIs {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" && format!("{value:?}").contains("invalid-chitchat-payload") {
            self.0 = true;
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for InvalidPayloadLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target().starts_with("chitchat::transport") {
            let mut visitor = MessageIs(false);
            event.record(&mut visitor);
            if visitor.0 {
                INVALID_DATAGRAMS.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
