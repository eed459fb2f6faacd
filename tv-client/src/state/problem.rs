//! Something went wrong: the problem screen, in plain words, with automatic retries.
//! What the server or the network actually said goes to the log (the runtime logs every
//! failed request), never onto the screen.

use protocol::{CreateOrder, ErrorCode};

use super::{App, Back, Effect, Key, RETRY_INITIAL_MS, RETRY_MAX_MS, Screen, backoff};

/// What to do again when a retry is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    Catalog,
    Order { index: usize },
    Purchases,
}

/// Something went wrong; maybe retrying automatically. `title` and `detail` are plain
/// sentences for the screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub title: String,
    pub detail: String,
    pub retry: Option<Retry>,
    /// Failed attempts so far (1 after the first failure).
    pub attempts: u32,
    /// When the next automatic retry is due; `None` while one is in flight or when the
    /// failure is not worth retrying automatically.
    pub next_retry_ms: Option<u64>,
}

/// The server could not be reached: say so, and retry with backoff.
pub(super) fn unreachable_problem(retry: Retry, attempts: u32, now_ms: u64) -> Problem {
    let detail = match retry {
        Retry::Order { .. } => "Nothing was charged. Check that the TV is online.",
        Retry::Catalog | Retry::Purchases => "Check that the TV is online.",
    };
    Problem {
        title: "Can't reach Couchpay".into(),
        detail: detail.into(),
        retry: Some(retry),
        attempts,
        next_retry_ms: Some(now_ms + backoff(RETRY_INITIAL_MS, RETRY_MAX_MS, attempts)),
    }
}

/// The server refused to create an order: why, in words, and OK to try again.
pub(super) fn refused_order_problem(
    code: Option<ErrorCode>,
    retry: Retry,
    attempts: u32,
) -> Problem {
    let detail = match code {
        Some(ErrorCode::UnknownItem) => "It is no longer in the catalog.",
        Some(ErrorCode::RateLimited | ErrorCode::Unavailable) => {
            "Couchpay is busy. Try again in a moment."
        }
        _ => "Nothing was charged. Please try again later.",
    };
    Problem {
        title: "This item can't be bought right now".into(),
        detail: detail.into(),
        retry: Some(retry),
        attempts,
        next_retry_ms: None,
    }
}

impl App {
    pub(super) fn on_problem_key(&mut self, p: Problem, key: Key, fx: &mut Vec<Effect>) {
        match key {
            Key::Ok => match p.retry {
                Some(retry) => self.retry_now(retry, p, fx),
                None => self.go_home(),
            },
            Key::Back => match p.retry {
                Some(Retry::Order { index }) if self.catalog.is_some() => {
                    self.screen = self.item_screen(index, Back::Catalog);
                }
                _ if self.catalog.is_some() => self.go_home(),
                // Nothing to go back to before the catalog has ever loaded; OK retries.
                _ => {}
            },
            _ => {}
        }
    }

    pub(super) fn retry_now(&mut self, retry: Retry, mut p: Problem, fx: &mut Vec<Effect>) {
        p.next_retry_ms = None;
        match retry {
            Retry::Catalog => fx.push(Effect::LoadCatalog),
            Retry::Purchases => fx.push(Effect::LoadEntitlements(self.identity.device_id.clone())),
            Retry::Order { index } => {
                if let Some(item) = self.item(index) {
                    fx.push(Effect::CreateOrder(CreateOrder {
                        item_id: item.id.clone(),
                        device_id: self.identity.device_id.clone(),
                        device_name: self.identity.tv_name.clone(),
                    }));
                }
            }
        }
        self.screen = Screen::Problem(p);
    }
}
