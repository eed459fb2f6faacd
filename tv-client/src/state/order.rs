//! The order screen: QR code, short code, countdown; the order's event stream with
//! polling and reconnects; its announcements; cancelling it; and the expired screen.

use protocol::{
    Announcement, CreatedOrder, DiscoveryRecord, ErrorCode, ItemId, Order, OrderId, OrderStatus,
    Token,
};

use super::problem::{refused_order_problem, unreachable_problem};
use super::{
    App, Back, CANCEL_ATTEMPTS_MAX, Choice, Effect, Failure, Key, POLL_INTERVAL_MS, PhoneEntry,
    Problem, RETRY_INITIAL_MS, RETRY_MAX_MS, Retry, STREAM_RETRY_INITIAL_MS, STREAM_RETRY_MAX_MS,
    Screen, backoff,
};

/// The state of the order's event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamPhase {
    Connecting,
    Live,
    /// Dropped: polling every [`POLL_INTERVAL_MS`] and reconnecting at `retry_at_ms`.
    Down {
        retry_at_ms: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamState {
    pub generation: u64,
    pub phase: StreamPhase,
    /// Consecutive failed attempts, for backoff.
    pub failures: u32,
    /// When to poll next while the stream is not live.
    pub next_poll_ms: u64,
}

/// Whether an announcement (mDNS or BLE) is out. `Failed` keeps the reason for the log;
/// the screen only says "not announced".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnnounceState {
    Pending,
    Live,
    Failed(String),
}

impl From<Result<(), String>> for AnnounceState {
    fn from(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Self::Live,
            Err(e) => Self::Failed(e),
        }
    }
}

/// The order screen: QR, short code, countdown, announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderScreen {
    pub index: usize,
    pub order: Order,
    pub tv_token: Token,
    /// Local clock time at which the order expires (the server's TTL measured from when
    /// the TV received the order, so a wrong TV clock does not matter).
    pub deadline_ms: u64,
    pub stream: StreamState,
    pub announce: AnnounceState,
    /// Whether the order is offered over Bluetooth LE as well.
    pub ble: AnnounceState,
    /// The focused button: [`Choice::Primary`] is "Pay with phone number" (left, focused
    /// first: harmless), [`Choice::Secondary`] is "Cancel order". Back cancels too.
    pub focus: Choice,
    /// The phone-number pad or its waiting screen, shown over the order. The order stays
    /// followed, announced and payable by QR while it is up: it is part of this screen.
    pub phone: Option<PhoneEntry>,
}

/// An order the TV cancelled but whose cancel is not yet confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Cancelling {
    order: OrderId,
    tv_token: Token,
    attempts: u32,
    retry_at_ms: Option<u64>,
}

impl App {
    pub(super) fn on_order_key(&mut self, o: &OrderScreen, key: Key, fx: &mut Vec<Effect>) {
        match key {
            Key::Left | Key::Right => {
                if let Screen::Order(o) = &mut self.screen {
                    o.focus = o.focus.toggled(key);
                }
            }
            Key::Ok if o.focus == Choice::Primary => self.open_phone_pad(None),
            // A digit on the order screen starts typing a phone number at once.
            Key::Digit(d) => self.open_phone_pad(Some(d)),
            Key::Ok | Key::Back => {
                self.cancel_on_screen(o, fx);
                self.screen = self.item_screen(o.index, Back::Catalog);
            }
            _ => {}
        }
    }

    pub(super) fn on_expired_key(
        &mut self,
        index: usize,
        order: OrderId,
        confirmed: bool,
        focus: Choice,
        key: Key,
        fx: &mut Vec<Effect>,
    ) {
        match key {
            Key::Left | Key::Right => {
                self.screen = Screen::Expired {
                    index,
                    order,
                    confirmed,
                    focus: focus.toggled(key),
                };
            }
            Key::Ok if focus == Choice::Primary => {
                self.stop_waiting_for_late_payment(confirmed, fx);
                self.buy(index, fx);
            }
            Key::Ok | Key::Back => {
                self.stop_waiting_for_late_payment(confirmed, fx);
                self.screen = self.item_screen(index, Back::Catalog);
            }
            _ => {}
        }
    }

    /// Retries a cancel that could not reach the server, when due.
    pub(super) fn tick_cancel(&mut self, fx: &mut Vec<Effect>) {
        let now = self.now_ms;
        if let Some(c) = &mut self.cancelling
            && c.retry_at_ms.is_some_and(|t| now >= t)
        {
            c.retry_at_ms = None;
            fx.push(Effect::CancelOrder {
                order: c.order.clone(),
                tv_token: c.tv_token.clone(),
            });
        }
    }

    /// The order screen's clock: expiry, stream reconnects and polling.
    pub(super) fn tick_order(&mut self, fx: &mut Vec<Effect>) {
        let now = self.now_ms;
        let Screen::Order(o) = &mut self.screen else {
            return;
        };
        if now >= o.deadline_ms {
            // The code can no longer be paid: stop offering it at once (SPEC P6).
            // The stream stays open until the server confirms, so a payment that
            // squeaked in at the last moment is still seen.
            let (index, order) = (o.index, o.order.id.clone());
            fx.push(Effect::Withdraw);
            self.screen = Screen::Expired {
                index,
                order,
                confirmed: false,
                focus: Choice::Primary,
            };
            return;
        }
        let s = &mut o.stream;
        if let StreamPhase::Down { retry_at_ms } = s.phase
            && now >= retry_at_ms
        {
            s.generation = self.next_generation;
            self.next_generation += 1;
            s.phase = StreamPhase::Connecting;
            fx.push(Effect::FollowOrder {
                order: o.order.id.clone(),
                generation: s.generation,
            });
        }
        if s.phase != StreamPhase::Live && now >= s.next_poll_ms {
            s.next_poll_ms = now + POLL_INTERVAL_MS;
            fx.push(Effect::PollOrder(o.order.id.clone()));
        }
    }

    pub(super) fn on_order_created(
        &mut self,
        item: ItemId,
        result: Result<CreatedOrder, Failure>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(index) = self.index_of(&item) else {
            if let Ok(created) = result {
                fx.push(Effect::CancelOrder {
                    order: created.order.id,
                    tv_token: created.tv_token,
                });
            }
            return;
        };
        let waiting = match &self.screen {
            Screen::Item {
                index: i,
                busy: true,
                ..
            } => *i == index,
            Screen::Problem(Problem {
                retry: Some(Retry::Order { index: i }),
                ..
            }) => *i == index,
            _ => false,
        };
        match result {
            Ok(created) if waiting => {
                let CreatedOrder { order, tv_token } = created;
                self.learn_server_time(order.created_at_ms);
                let ttl_ms = u64::try_from(order.expires_at_ms - order.created_at_ms).unwrap_or(0);
                let generation = self.next_generation;
                self.next_generation += 1;
                fx.push(Effect::FollowOrder {
                    order: order.id.clone(),
                    generation,
                });
                fx.push(Effect::Announce(Announcement::Order(DiscoveryRecord::new(
                    order.id.clone(),
                    order.short_code.clone(),
                    order.amount,
                    order.pay_link.server.clone(),
                    &self.identity.tv_name,
                    self.identity.device_id.clone(),
                    &order.item.title,
                ))));
                self.screen = Screen::Order(Box::new(OrderScreen {
                    index,
                    deadline_ms: self.now_ms + ttl_ms,
                    stream: StreamState {
                        generation,
                        phase: StreamPhase::Connecting,
                        failures: 0,
                        next_poll_ms: self.now_ms + POLL_INTERVAL_MS,
                    },
                    announce: AnnounceState::Pending,
                    ble: AnnounceState::Pending,
                    order,
                    tv_token,
                    focus: Choice::Primary,
                    phone: None,
                }));
            }
            Ok(created) => {
                // Nobody is looking at this order any more: free it at once.
                fx.push(Effect::CancelOrder {
                    order: created.order.id,
                    tv_token: created.tv_token,
                });
            }
            Err(failure) if waiting && failure.code() == Some(ErrorCode::AlreadyOwned) => {
                // The server knows better than our list: this TV owns it. Show that
                // (Play, or until when it is active) and fetch the details.
                self.mark_owned(item);
                fx.push(Effect::LoadEntitlements(self.identity.device_id.clone()));
                self.screen = self.item_screen(index, Back::Catalog);
            }
            Err(failure) if waiting => {
                let attempts = match &self.screen {
                    Screen::Problem(p) => p.attempts + 1,
                    _ => 1,
                };
                let retry = Retry::Order { index };
                self.screen = Screen::Problem(match failure {
                    Failure::Unreachable(_) => unreachable_problem(retry, attempts, self.now_ms),
                    Failure::Refused { code, .. } => refused_order_problem(code, retry, attempts),
                });
            }
            Err(_) => {}
        }
    }

    pub(super) fn on_stream_ended(
        &mut self,
        order: &OrderId,
        generation: u64,
        fx: &mut Vec<Effect>,
    ) {
        let now_ms = self.now_ms;
        let Some(o) = self.order_screen_of(order) else {
            return;
        };
        if o.stream.generation != generation {
            return;
        }
        let s = &mut o.stream;
        s.failures += 1;
        s.phase = StreamPhase::Down {
            retry_at_ms: now_ms + backoff(STREAM_RETRY_INITIAL_MS, STREAM_RETRY_MAX_MS, s.failures),
        };
        // Poll at once: a final state may be exactly what closed the stream.
        s.next_poll_ms = now_ms + POLL_INTERVAL_MS;
        fx.push(Effect::PollOrder(order.clone()));
    }

    pub(super) fn on_order_update(&mut self, order: Order, fx: &mut Vec<Effect>) {
        let cancelled_but_paid = self
            .cancelling
            .as_ref()
            .is_some_and(|c| c.order == order.id && order.status == OrderStatus::Paid);
        if cancelled_but_paid {
            // The payment won the race against Back: the person paid, so show it.
            self.cancelling = None;
            let index = self.index_of(&order.item.id);
            self.show_paid(index, order);
            return;
        }
        match &mut self.screen {
            Screen::Order(o) if o.order.id == order.id => match order.status {
                OrderStatus::Pending => o.order = order,
                OrderStatus::Paid => {
                    fx.extend([Effect::Withdraw, Effect::StopFollowing]);
                    let index = Some(o.index);
                    self.show_paid(index, order);
                }
                OrderStatus::Expired => {
                    fx.extend([Effect::Withdraw, Effect::StopFollowing]);
                    self.screen = Screen::Expired {
                        index: o.index,
                        order: order.id,
                        confirmed: true,
                        focus: Choice::Primary,
                    };
                }
                OrderStatus::Cancelled => {
                    fx.extend([Effect::Withdraw, Effect::StopFollowing]);
                    let index = o.index;
                    self.screen = self.item_screen(index, Back::Catalog);
                }
            },
            Screen::Expired {
                index,
                order: id,
                confirmed: false,
                ..
            } if *id == order.id => match order.status {
                OrderStatus::Pending => {}
                OrderStatus::Paid => {
                    fx.push(Effect::StopFollowing);
                    let index = Some(*index);
                    self.show_paid(index, order);
                }
                OrderStatus::Expired | OrderStatus::Cancelled => {
                    fx.push(Effect::StopFollowing);
                    if let Screen::Expired { confirmed, .. } = &mut self.screen {
                        *confirmed = true;
                    }
                }
            },
            _ => {}
        }
    }

    fn stop_waiting_for_late_payment(&mut self, confirmed: bool, fx: &mut Vec<Effect>) {
        if !confirmed {
            fx.push(Effect::StopFollowing);
        }
    }

    fn cancel_on_screen(&mut self, o: &OrderScreen, fx: &mut Vec<Effect>) {
        fx.extend([
            Effect::Withdraw,
            Effect::StopFollowing,
            Effect::CancelOrder {
                order: o.order.id.clone(),
                tv_token: o.tv_token.clone(),
            },
        ]);
        self.cancelling = Some(Cancelling {
            order: o.order.id.clone(),
            tv_token: o.tv_token.clone(),
            attempts: 1,
            retry_at_ms: None,
        });
    }

    pub(super) fn on_cancel_done(
        &mut self,
        order: &OrderId,
        result: Result<Order, Failure>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(c) = &mut self.cancelling else {
            return;
        };
        if &c.order != order {
            return;
        }
        match result {
            Ok(o) if o.status == OrderStatus::Paid => self.on_order_update(o, fx),
            Ok(_) => self.cancelling = None,
            Err(f) if f.code() == Some(ErrorCode::AlreadyPaid) => {
                // Fetch the paid order; `on_order_update` then shows it.
                fx.push(Effect::PollOrder(order.clone()));
            }
            Err(Failure::Unreachable(_)) if c.attempts < CANCEL_ATTEMPTS_MAX => {
                c.attempts += 1;
                c.retry_at_ms =
                    Some(self.now_ms + backoff(RETRY_INITIAL_MS, RETRY_MAX_MS, c.attempts));
            }
            // Expired, already cancelled, or given up: nothing left to cancel.
            Err(_) => self.cancelling = None,
        }
    }
}
