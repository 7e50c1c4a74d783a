//! The API's accept loop: HTTP/1.1 with a header timeout (which also closes
//! idle keep-alive connections), a write timeout (a client that stops
//! reading its answers is dropped), a bound on connections served at once,
//! and graceful shutdown. `axum::serve` has neither bound nor timeout: 2000
//! half-sent requests once held every descriptor and `/healthz` went dark.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use prometheus_client::metrics::counter::Counter;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Limits of the accept loop (from `[api]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `router` on `listener` until `stop` turns true; then lets open
/// requests finish for up to `drain`. Connections past the bound are closed
/// at once and counted in `refused`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    refused: Counter,
    drain: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refused.inc();
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(router.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let stream = Watched::new(stream);
            let stall = stream.stall.clone();
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stall.exceeds(limits.header_timeout) => {}
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        () = stall.exceeds(limits.header_timeout) => {}
                    }
                }
            }
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
