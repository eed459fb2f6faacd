//! Accepting connections: HTTP/1.1 over hyper with a header-read timeout, a cap on open
//! connections per client address and in total, and graceful shutdown.
//!
//! `axum::serve` offers none of these knobs, so the server runs its own accept loop
//! (the same shape as axum's: one task per connection, `TowerToHyperService`).
//! A client that opens a socket and sends its headers slowly (or never) is closed after
//! the header-read timeout; a client address that already holds its share of
//! connections has new ones closed at once.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::limits::{PerAddress, Refused};

/// Largest request head (request line and headers) hyper buffers. Above the router's own
/// limits ([`crate::middleware::MAX_URI_BYTES`], [`crate::middleware::MAX_HEADER_BYTES`]),
/// so that those answer with JSON bodies; only heads beyond this get hyper's bare 431.
pub const MAX_HEAD_BUF_BYTES: usize = 256 * 1024;
/// Most headers hyper parses (the router refuses more than `MAX_HEADERS` with JSON; only
/// a request with more than this many gets hyper's bare 431). Kept close to
/// `MAX_HEADERS`: hyper zero-fills a slot per allowed header on every request, and at 400
/// that was a measurable share of the server's time under load.
const MAX_PARSED_HEADERS: usize = 128;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// Connection limits, from [`crate::Config`].
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
}

/// Serves `router` on `listener` until `shutdown` completes; then stops accepting, lets
/// in-flight requests finish and waits for every connection to close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = PerAddress::new(limits.max_connections_per_address, limits.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a clone of `alive_rx`; `alive_tx.closed()` resolves
    // when the last one ends.
    let (alive_tx, alive_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = match slots.acquire(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                // Closing at once is the cheapest answer; the client sees a reset.
                tracing::debug!(%peer, ?why, "connection refused: too many open");
                if why == Refused::Total {
                    tracing::warn!("connection limit reached: refusing new connections");
                }
                drop(stream);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let svc = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.map(axum::body::Body::new)
            });
        let mut stop_rx = stop_rx.clone();
        let alive = alive_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _alive = alive;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(MAX_HEAD_BUF_BYTES)
                .max_headers(MAX_PARSED_HEADERS);
            let conn =
                builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended"); }
                    return;
                }
                _ = stop_rx.wait_for(|stop| *stop) => {}
            }
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended during shutdown");
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_rx);
    alive_tx.closed().await;
}
