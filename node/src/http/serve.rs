//! The API's accept loop: HTTP/1.1 with a header timeout (which also closes
//! idle keep-alive connections), a write timeout (a client that stops
//! reading its answers is dropped), a bound on connections served at once,
//! and graceful shutdown. `axum::serve` has neither bound nor timeout: 2000
//! half-sent requests once held every descriptor and `/healthz` went dark.
//!
//! When every slot is taken, a new connection evicts the one that has been
//! idle longest (no request in progress, oldest last activity): a flood of
//! half-sent requests cannot keep a probe or an operator out.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::counter::Counter;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// What the accept loop counts.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Connections closed at accept: every slot busy with a request.
    pub refused: Counter,
    /// Idle connections closed to make room for a new one.
    pub evicted: Counter,
}

/// Limits of the accept loop (from `[api]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` turns true; then lets open
/// requests finish for up to `drain`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    counters: Counters,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let conns = Arc::new(Conns::default());
    let mut last_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stopped(&mut stop) => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(error = %e, "cannot accept HTTP connections");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                let evicted = conns.evict_idlest();
                let freed = tokio::time::timeout(
                    Duration::from_millis(200),
                    Arc::clone(&slots).acquire_owned(),
                )
                .await;
                match (evicted, freed) {
                    (true, Ok(Ok(slot))) => {
                        counters.evicted.inc();
                        slot
                    }
                    _ => {
                        counters.refused.inc();
                        drop(stream);
                        continue;
                    }
                }
            }
        };
        let conn = conns.register();
        let service = {
            let (router, conn) = (router.clone(), Arc::clone(&conn));
            hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let busy = Busy::start(Arc::clone(&conn));
                let call = tower::ServiceExt::oneshot(router.clone(), req);
                async move {
                    let answer = call.await;
                    drop(busy);
                    answer
                }
            })
        };
        let mut stop = stop.clone();
        let conns_for_task = Arc::clone(&conns);
        tokio::spawn(async move {
            let _slot = slot;
            let stream = Watched::new(stream);
            let stall = stream.stall.clone();
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(served);
            tokio::select! {
                _ = served.as_mut() => {}
                () = stall.exceeds(limits.header_timeout) => {}
                () = conn.evict.notified() => {}
                () = stopped(&mut stop) => {
                    served.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = served.as_mut() => {}
                        () = stall.exceeds(limits.header_timeout) => {}
                    }
                }
            }
            conns_for_task.remove(conn.id);
        });
    }
    // Every slot back means every connection closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "HTTP connections still open after {} s; closing them",
            drain.as_secs()
        );
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Since when a write to the client has been waiting, in ms after `epoch`
/// plus one (0: no write waiting).
#[derive(Debug, Clone)]
struct Stall {
    epoch: Instant,
    since: Arc<AtomicU64>,
}

impl Stall {
    fn mark(&self, waiting: bool) {
        if !waiting {
            self.since.store(0, Ordering::Relaxed);
        } else if self.since.load(Ordering::Relaxed) == 0 {
            let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
            self.since.store(ms + 1, Ordering::Relaxed);
        }
    }

    /// Resolves once a write has waited longer than `limit`.
    async fn exceeds(&self, limit: Duration) {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let since = self.since.load(Ordering::Relaxed);
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            if since != 0 && now.saturating_sub(since - 1) > limit.as_millis() as u64 {
                return;
            }
        }
    }
}

/// A connection that records when its writes stall.
struct Watched<S> {
    inner: S,
    stall: Stall,
}

impl<S> Watched<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            stall: Stall {
                epoch: Instant::now(),
                since: Arc::default(),
            },
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stall.mark(r.is_pending());
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.stall.mark(r.is_pending());
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One open connection: when it was last active and whether a request is in
/// progress, for eviction.
#[derive(Debug)]
struct Conn {
    id: u64,
    epoch: Instant,
    /// Last activity (accept or a request's start), ms after [`Conns::epoch`].
    last_ms: AtomicU64,
    /// Requests in progress on it.
    busy: AtomicU64,
    evict: tokio::sync::Notify,
}

/// The open connections.
#[derive(Debug)]
struct Conns {
    epoch: Instant,
    next: AtomicU64,
    open: std::sync::Mutex<std::collections::HashMap<u64, Arc<Conn>>>,
}

impl Default for Conns {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            next: AtomicU64::new(0),
            open: Default::default(),
        }
    }
}

impl Conns {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn register(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            last_ms: AtomicU64::new(self.now_ms()),
            busy: AtomicU64::new(0),
            evict: tokio::sync::Notify::new(),
        });
        crate::mesh::lock(&self.open).insert(conn.id, Arc::clone(&conn));
        conn
    }

    fn remove(&self, id: u64) {
        crate::mesh::lock(&self.open).remove(&id);
    }

    /// Asks the idlest connection without a request in progress to close;
    /// false when every one is busy.
    fn evict_idlest(&self) -> bool {
        let open = crate::mesh::lock(&self.open);
        let idlest = open
            .values()
            .filter(|c| c.busy.load(Ordering::Relaxed) == 0)
            .min_by_key(|c| c.last_ms.load(Ordering::Relaxed));
        match idlest {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A request in progress on a connection (dropped when it is answered).
struct Busy(Arc<Conn>);

impl Busy {
    fn start(conn: Arc<Conn>) -> Self {
        conn.busy.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(conn.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        conn.last_ms.store(ms, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}
