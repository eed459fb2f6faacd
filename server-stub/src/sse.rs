//! Server-sent event streams: a first event, then broadcast events until a final one,
//! the subscriber falls behind, or the server shuts down.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// Interval of keep-alive comments, so idle proxies and clients see the stream is alive.
pub const KEEP_ALIVE_S: u64 = 15;

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

fn encode<E: Serialize + Named>(e: &E) -> SseEvent {
    SseEvent::default()
        .event(e.event_name())
        .json_data(e)
        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"))
}

struct St<E> {
    first: Option<E>,
    rx: broadcast::Receiver<E>,
    shutdown: watch::Receiver<bool>,
    done: bool,
}

pub fn stream<E>(
    first: E,
    rx: broadcast::Receiver<E>,
    shutdown: watch::Receiver<bool>,
    is_final: fn(&E) -> bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>>
where
    E: Serialize + Named + Clone + Send + 'static,
{
    let st = St {
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
