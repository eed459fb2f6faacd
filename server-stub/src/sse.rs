//! Server-sent event streams: a first event, then broadcast events until a final one,
//! the subscriber falls behind, or the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::limits::{Refused, Slot};
use std::net::IpAddr;

/// Interval of keep-alive comments, so idle proxies and clients see the stream is alive.
pub const KEEP_ALIVE_S: u64 = 15;
/// Retry hint for a client address that holds all its event-stream slots.
const STREAM_RETRY_S: u64 = 5;

/// Something with an SSE event name.
pub trait Named {
    fn event_name(&self) -> &'static str;
}

impl Named for protocol::OrderEvent {
    fn event_name(&self) -> &'static str {
        self.name()
    }
}

impl Named for protocol::AccountEvent {
    fn event_name(&self) -> &'static str {
        self.name()
    }
}

impl Named for protocol::DeviceEvent {
    fn event_name(&self) -> &'static str {
        self.name()
    }
}

impl Named for protocol::PacketsEvent {
    fn event_name(&self) -> &'static str {
        self.name()
    }
}

fn encode<E: Serialize + Named>(e: &E) -> SseEvent {
    SseEvent::default()
        .event(e.event_name())
        .json_data(e)
        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"))
}

struct St<E> {
    /// The client address's stream slot, given back when the stream ends.
    _slot: Slot,
    first: Option<E>,
    rx: broadcast::Receiver<E>,
    shutdown: watch::Receiver<bool>,
    done: bool,
}

/// Takes one of `ip`'s event-stream slots, or refuses with a clear error.
pub fn slot(s: &AppState, ip: IpAddr) -> ApiResult<Slot> {
    s.stream_slots.acquire(ip).map_err(|why| match why {
        Refused::Address => ApiError::RateLimited {
            retry_after_s: STREAM_RETRY_S,
        },
        Refused::Total => ApiError::Unavailable,
    })
}

pub fn stream<E>(
    slot: Slot,
    first: E,
    rx: broadcast::Receiver<E>,
    shutdown: watch::Receiver<bool>,
    is_final: fn(&E) -> bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>>
where
    E: Serialize + Named + Clone + Send + 'static,
{
    let st = St {
        _slot: slot,
        first: Some(first),
        rx,
        shutdown,
        done: false,
    };
    let s = futures_util::stream::unfold(st, move |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(e) = st.first.take() {
            st.done = is_final(&e);
            return Some((Ok(encode(&e)), st));
        }
        if *st.shutdown.borrow() {
            return None;
        }
        tokio::select! {
            r = st.rx.recv() => match r {
                Ok(e) => {
                    st.done = is_final(&e);
                    Some((Ok(encode(&e)), st))
                }
                // Lagged or closed: end the stream; the client reconnects and gets a
                // fresh snapshot, which is always correct.
                Err(_) => None,
            },
            _ = st.shutdown.changed() => None,
        }
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_S)))
}
