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
            let stream = Watched {
                inner: stream,
                conn: Arc::clone(&conn),
            };
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(served);
            tokio::select! {
                _ = served.as_mut() => {}
                () = conn.write_stalls_past(limits.header_timeout) => {}
                () = conn.evict.notified() => {}
                () = stopped(&mut stop) => {
                    served.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = served.as_mut() => {}
                        () = conn.write_stalls_past(limits.header_timeout) => {}
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

/// A connection's stream, which records on its [`Conn`] when writes stall.
struct Watched<S> {
    inner: S,
    conn: Arc<Conn>,
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
        self.conn.mark_write(r.is_pending());
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.conn.mark_write(r.is_pending());
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Milliseconds since `epoch`.
fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One open connection: when it was last active, whether a request is in
/// progress (for eviction), and since when a write has waited on the client.
#[derive(Debug)]
struct Conn {
    id: u64,
    /// [`Conns::epoch`]: every time below is ms after it.
    epoch: Instant,
    /// Last activity: accept, or a request's start.
    last_ms: AtomicU64,
    /// Requests in progress on it.
    busy: AtomicU64,
    /// When the waiting write began, plus one; 0 while no write waits.
    write_waiting_since: AtomicU64,
    evict: tokio::sync::Notify,
}

impl Conn {
    fn mark_write(&self, waiting: bool) {
        if !waiting {
            self.write_waiting_since.store(0, Ordering::Relaxed);
        } else if self.write_waiting_since.load(Ordering::Relaxed) == 0 {
            let now = ms_since(self.epoch).saturating_add(1);
            self.write_waiting_since.store(now, Ordering::Relaxed);
        }
    }

    /// Resolves once a write has waited on the client longer than `limit`.
    async fn write_stalls_past(&self, limit: Duration) {
        let limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let since = self.write_waiting_since.load(Ordering::Relaxed);
            if since != 0 && ms_since(self.epoch).saturating_sub(since - 1) > limit_ms {
                return;
            }
        }
    }
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
    fn register(&self) -> Arc<Conn> {
        let conn = Arc::new(Conn {
            id: self.next.fetch_add(1, Ordering::Relaxed),
            epoch: self.epoch,
            last_ms: AtomicU64::new(ms_since(self.epoch)),
            busy: AtomicU64::new(0),
            write_waiting_since: AtomicU64::new(0),
            evict: tokio::sync::Notify::new(),
        });
        maxwell_types::sync::lock(&self.open).insert(conn.id, Arc::clone(&conn));
        conn
    }

    fn remove(&self, id: u64) {
        maxwell_types::sync::lock(&self.open).remove(&id);
    }

    /// Asks the idlest connection without a request in progress to close;
    /// false when every one is busy.
    fn evict_idlest(&self) -> bool {
        let open = maxwell_types::sync::lock(&self.open);
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
        conn.last_ms.store(ms_since(conn.epoch), Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}
