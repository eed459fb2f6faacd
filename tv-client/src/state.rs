//! The TV app's state machine: remote keys, clock ticks and server answers go in,
//! effects (requests, mDNS announcements) come out. The phone-number pad and its waiting
//! screen ([`PhoneEntry`]) are a sub-state of the order screen, so the order keeps being
//! followed, announced and payable by QR while they are up. No I/O and no Slint here, so
//! every flow can be driven and checked without a window or a server.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::{
    Catalog, CatalogItem, CreateOrder, CreatedOrder, DeviceId, DiscoveryRecord, Entitlement,
    Entitlements, ErrorCode, ItemId, Order, OrderId, OrderStatus, PhoneNumber, PhonePayKind,
    PhonePayStarted, Token,
};

/// First wait before retrying a request that failed because the server was unreachable.
pub const RETRY_INITIAL_MS: u64 = 1_000;
/// Longest wait between two automatic retries (exponential backoff is capped here).
pub const RETRY_MAX_MS: u64 = 16_000;
/// First wait before reopening a dropped order event stream.
pub const STREAM_RETRY_INITIAL_MS: u64 = 500;
/// Longest wait between two attempts to reopen the order event stream.
pub const STREAM_RETRY_MAX_MS: u64 = 8_000;
/// How often the order is polled while its event stream is down.
pub const POLL_INTERVAL_MS: u64 = 2_000;
/// How many times a cancel that could not reach the server is retried before giving up
/// (the server expires the order on its own anyway).
pub const CANCEL_ATTEMPTS_MAX: u32 = 5;
/// Longest TV name accepted, in characters (the server's limit for `device_name`).
pub const MAX_TV_NAME_CHARS: usize = 64;
/// Most digits the phone-number pad takes: the longest E.164 number, country code included.
pub const MAX_PHONE_DIGITS: usize = 15;

/// A button on the remote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Left,
    Right,
    /// OK / Enter.
    Ok,
    /// Back / Escape / Backspace.
    Back,
    Digit(u8),
}

/// Why a request failed, as far as the TV needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Network trouble or a 503: retrying later may succeed.
    Unreachable(String),
    /// The server answered and refused; `code` says why when it gave one.
    Refused {
        code: Option<ErrorCode>,
        message: String,
    },
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Self::Unreachable(m) => m,
            Self::Refused { message, .. } => message,
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Unreachable(_) => None,
            Self::Refused { code, .. } => *code,
        }
    }
}

impl From<protocol::client::ClientError> for Failure {
    fn from(e: protocol::client::ClientError) -> Self {
        if e.is_transient() {
            Self::Unreachable(e.to_string())
        } else {
            Self::Refused {
                code: e.code(),
                message: e.to_string(),
            }
        }
    }
}

/// A decoded poster: RGBA8 pixels, row by row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poster {
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// Everything that can happen to the app.
#[derive(Clone, Debug)]
pub enum Input {
    Key(Key),
    /// The local monotonic clock, in milliseconds. Sent a few times a second.
    Tick {
        now_ms: u64,
    },
    CatalogLoaded(Result<Catalog, Failure>),
    PosterLoaded {
        item: ItemId,
        poster: Arc<Poster>,
    },
    OrderCreated {
        item: ItemId,
        result: Result<CreatedOrder, Failure>,
    },
    /// The order event stream `generation` is connected (its snapshot arrived).
    StreamOpened {
        order: OrderId,
        generation: u64,
    },
    /// The order event stream `generation` ended or could not be opened.
    StreamEnded {
        order: OrderId,
        generation: u64,
        reason: String,
    },
    /// The order's current state, from the event stream, a poll or a cancel.
    OrderUpdate(Order),
    /// A poll of the order failed.
    PollFailed {
        order: OrderId,
        failure: Failure,
    },
    CancelDone {
        order: OrderId,
        result: Result<Order, Failure>,
    },
    EntitlementsLoaded(Result<Entitlements, Failure>),
    /// Whether the mDNS announcement of `order` went out.
    Announced {
        order: OrderId,
        result: Result<(), String>,
    },
    /// Whether `order` went on the air over Bluetooth LE (`Err` says why not).
    BleAnnounced {
        order: OrderId,
        result: Result<(), String>,
    },
    /// The server's answer to sending `order` to a phone number.
    PhonePayDone {
        order: OrderId,
        result: Result<PhonePayStarted, Failure>,
    },
}

/// What the app asks the outside world to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    LoadCatalog,
    LoadPoster {
        item: ItemId,
        path: String,
    },
    CreateOrder(CreateOrder),
    /// Open the order's event stream; its inputs carry `generation` so that answers from
    /// an older stream are recognised and ignored.
    FollowOrder {
        order: OrderId,
        generation: u64,
    },
    /// Close the order event stream, if one is open.
    StopFollowing,
    PollOrder(OrderId),
    CancelOrder {
        order: OrderId,
        tv_token: Token,
    },
    /// Register (or replace) this TV's mDNS announcement.
    Announce(DiscoveryRecord),
    /// Withdraw this TV's mDNS announcement at once.
    Withdraw,
    LoadEntitlements(DeviceId),
    /// Ask the server to text `phone` a code or the pay link for `order` (SPEC W2).
    PayByPhone {
        order: OrderId,
        tv_token: Token,
        phone: PhoneNumber,
    },
}

/// Which of its buttons a two-button screen has focused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Primary,
    Secondary,
}

impl Choice {
    fn toggled(self, key: Key) -> Self {
        match key {
            Key::Left => Self::Primary,
            Key::Right => Self::Secondary,
            _ => self,
        }
    }
}

/// Focus on the catalog screen: the "My purchases" button above the grid, or a poster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogFocus {
    Purchases,
    Item(usize),
}

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

/// Whether an announcement (mDNS or BLE) is out.
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
    /// The focused button: [`Choice::Primary`] is "Cancel order" (left, focused first),
    /// [`Choice::Secondary`] is "Pay with phone number".
    pub focus: Choice,
    /// The phone-number pad or its waiting screen, shown over the order. The order stays
    /// followed, announced and payable by QR while it is up: it is part of this screen.
    pub phone: Option<PhoneEntry>,
}

/// A key of the on-screen number pad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadKey {
    Digit(u8),
    /// ⌫: deletes the last digit.
    Delete,
    /// ✓: sends the number.
    Send,
}

/// Columns of the on-screen number pad.
pub const PAD_COLUMNS: usize = 3;

/// The on-screen number pad, row by row, as laid out on the TV (a phone's layout).
pub const PAD: [PadKey; 12] = [
    PadKey::Digit(1),
    PadKey::Digit(2),
    PadKey::Digit(3),
    PadKey::Digit(4),
    PadKey::Digit(5),
    PadKey::Digit(6),
    PadKey::Digit(7),
    PadKey::Digit(8),
    PadKey::Digit(9),
    PadKey::Delete,
    PadKey::Digit(0),
    PadKey::Send,
];

/// Where "pay with phone number" is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhonePhase {
    /// Typing on the pad; `message` explains why the last OK on ✓ (or a digit) was refused.
    Typing { message: Option<String> },
    /// The number went to the server; waiting for its answer.
    Sending,
    /// The server texted the number: waiting for the payment (the order's stream says).
    Sent {
        kind: PhonePayKind,
        /// The number as the server masked it, e.g. `+••••••••001`.
        phone_masked: String,
        /// "Back to the QR code" (primary) or "Edit number" (secondary).
        focus: Choice,
    },
}

/// The phone-number pad and its waiting screen (SPEC W2).
///
/// Keys on the pad: digits type directly; arrows move over the pad and OK presses the
/// focused key; Back deletes the last digit, and with no digits left returns to the
/// order screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneEntry {
    /// Digits typed, country code first, at most [`MAX_PHONE_DIGITS`].
    pub digits: String,
    /// Index into [`PAD`] of the focused pad key.
    pub pad_focus: usize,
    pub phase: PhonePhase,
}

impl PhoneEntry {
    fn new() -> Self {
        Self {
            digits: String::new(),
            pad_focus: 0,
            phase: PhonePhase::Typing { message: None },
        }
    }

    /// The number typed, if it is a whole phone number that can be sent.
    pub fn number(&self) -> Option<PhoneNumber> {
        PhoneNumber::parse(&self.digits).ok()
    }

    /// Why the digits typed so far cannot be sent yet, in words for the screen.
    pub fn why_not_sendable(&self) -> Option<&'static str> {
        if self.number().is_some() {
            None
        } else if self.digits.is_empty() {
            Some("Type your phone number first, starting with the country code.")
        } else if self.digits.starts_with('0') {
            Some("Start with the country code instead of 0 — for example 44 for the UK.")
        } else {
            Some("That number is too short — include the country code, e.g. 1 for the US.")
        }
    }

    fn push(&mut self, d: u8) {
        if self.digits.len() >= MAX_PHONE_DIGITS {
            self.phase = PhonePhase::Typing {
                message: Some(format!(
                    "A phone number has at most {MAX_PHONE_DIGITS} digits."
                )),
            };
        } else {
            self.digits.push(char::from(b'0' + d.min(9)));
            self.phase = PhonePhase::Typing { message: None };
        }
    }

    fn pop(&mut self) {
        self.digits.pop();
        self.phase = PhonePhase::Typing { message: None };
    }

    /// Moves the pad focus one step, stopping at the pad's edges.
    fn move_focus(&mut self, key: Key) {
        let (row, col) = (self.pad_focus / PAD_COLUMNS, self.pad_focus % PAD_COLUMNS);
        let rows = PAD.len() / PAD_COLUMNS;
        let (row, col) = match key {
            Key::Up => (row.saturating_sub(1), col),
            Key::Down => ((row + 1).min(rows - 1), col),
            Key::Left => (row, col.saturating_sub(1)),
            Key::Right => (row, (col + 1).min(PAD_COLUMNS - 1)),
            _ => (row, col),
        };
        self.pad_focus = row * PAD_COLUMNS + col;
    }
}

/// What the TV says when the server refuses to text a number, in words for the viewer.
pub fn phone_failure_text(failure: &Failure) -> String {
    match failure {
        Failure::Unreachable(_) => {
            "Can't reach the Couchpay server. Check the connection and press ✓ again.".into()
        }
        Failure::Refused { code, message } => match code {
            Some(ErrorCode::InvalidRequest) => {
                "The server did not accept that number. Check it, with its country code.".into()
            }
            // The server allows 3 phone numbers per order.
            Some(ErrorCode::TooManyAttempts) => {
                "This order was already sent to a phone 3 times. Scan the QR code instead.".into()
            }
            Some(ErrorCode::RateLimited | ErrorCode::Unavailable) => {
                "The server is busy. Wait a moment, then press ✓ again.".into()
            }
            Some(ErrorCode::AlreadyPaid) => "This order is already paid.".into(),
            Some(ErrorCode::OrderExpired) => "This order has expired.".into(),
            Some(ErrorCode::OrderCancelled) => "This order was cancelled.".into(),
            Some(ErrorCode::Unauthorized) => {
                "The server did not recognise this TV for this order. Get a new code.".into()
            }
            _ => format!("The server refused: {message}"),
        },
    }
}

/// What to do again when a retry is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    Catalog,
    Order { index: usize },
    Purchases,
}

/// Something went wrong; maybe retrying automatically.
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    /// The first catalog load is in flight.
    Starting,
    Catalog {
        focus: CatalogFocus,
    },
    Item {
        index: usize,
        focus: Choice,
        /// An order is being created for this item.
        busy: bool,
    },
    Order(Box<OrderScreen>),
    Paid {
        index: Option<usize>,
        order: Box<Order>,
        /// Local time the TV learnt of the payment (the film "plays" from here).
        since_ms: u64,
        focus: Choice,
    },
    Expired {
        index: usize,
        order: OrderId,
        /// Still listening for a late "paid" until the server confirms the expiry.
        confirmed: bool,
        focus: Choice,
    },
    Purchases {
        list: Option<Vec<Entitlement>>,
        selected: usize,
    },
    Problem(Problem),
}

/// The TV's identity, sent with every order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub device_id: DeviceId,
    pub tv_name: String,
}

/// An order the TV cancelled but whose cancel is not yet confirmed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Cancelling {
    order: OrderId,
    tv_token: Token,
    attempts: u32,
    retry_at_ms: Option<u64>,
}

/// The whole app state.
#[derive(Clone, Debug)]
pub struct App {
    pub identity: Identity,
    pub screen: Screen,
    pub catalog: Option<Catalog>,
    pub posters: HashMap<ItemId, Arc<Poster>>,
    pub now_ms: u64,
    cancelling: Option<Cancelling>,
    next_generation: u64,
    /// The card that had focus before Up moved it to "My purchases"; Down returns there.
    catalog_return: usize,
}

fn backoff(initial_ms: u64, max_ms: u64, failures: u32) -> u64 {
    let shift = failures.saturating_sub(1).min(16);
    initial_ms.saturating_mul(1 << shift).min(max_ms)
}

fn unreachable_problem(retry: Retry, attempts: u32, now_ms: u64, message: &str) -> Problem {
    Problem {
        title: "Can't reach the Couchpay server".into(),
        detail: message.to_owned(),
        retry: Some(retry),
        attempts,
        next_retry_ms: Some(now_ms + backoff(RETRY_INITIAL_MS, RETRY_MAX_MS, attempts)),
    }
}

impl App {
    /// The app as it starts: loading the catalog.
    pub fn init(identity: Identity, now_ms: u64) -> (Self, Vec<Effect>) {
        let app = Self {
            identity,
            screen: Screen::Starting,
            catalog: None,
            posters: HashMap::new(),
            now_ms,
            cancelling: None,
            next_generation: 1,
            catalog_return: 0,
        };
        (app, vec![Effect::LoadCatalog])
    }

    pub fn items(&self) -> &[CatalogItem] {
        self.catalog.as_ref().map_or(&[], |c| &c.items)
    }

    pub fn item(&self, index: usize) -> Option<&CatalogItem> {
        self.items().get(index)
    }

    fn index_of(&self, id: &ItemId) -> Option<usize> {
        self.items().iter().position(|i| &i.id == id)
    }

    /// The order on screen, if the order screen is up.
    pub fn order_screen(&self) -> Option<&OrderScreen> {
        match &self.screen {
            Screen::Order(o) => Some(o),
            _ => None,
        }
    }

    /// Applies one input and returns what must be done as a consequence.
    pub fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Key(key) => self.on_key(key, &mut fx),
            Input::Tick { now_ms } => {
                self.now_ms = self.now_ms.max(now_ms);
                self.on_tick(&mut fx);
            }
            Input::CatalogLoaded(result) => self.on_catalog(result, &mut fx),
            Input::PosterLoaded { item, poster } => {
                self.posters.insert(item, poster);
            }
            Input::OrderCreated { item, result } => self.on_order_created(item, result, &mut fx),
            Input::StreamOpened { order, generation } => {
                if let Some(o) = self.order_screen_of(&order)
                    && o.stream.generation == generation
                {
                    o.stream.phase = StreamPhase::Live;
                    o.stream.failures = 0;
                }
            }
            Input::StreamEnded {
                order, generation, ..
            } => self.on_stream_ended(&order, generation, &mut fx),
            Input::OrderUpdate(order) => self.on_order_update(order, &mut fx),
            Input::PollFailed { .. } => {
                // Nothing to do: the next poll is already scheduled and the stream keeps
                // reconnecting; the screen shows the connection as down meanwhile.
            }
            Input::CancelDone { order, result } => self.on_cancel_done(&order, result, &mut fx),
            Input::EntitlementsLoaded(result) => self.on_entitlements(result),
            Input::PhonePayDone { order, result } => {
                self.on_phone_pay_done(&order, result, &mut fx)
            }
            Input::Announced { order, result } => {
                if let Some(o) = self.order_screen_of(&order) {
                    o.announce = AnnounceState::from(result);
                }
            }
            Input::BleAnnounced { order, result } => {
                if let Some(o) = self.order_screen_of(&order) {
                    o.ble = AnnounceState::from(result);
                }
            }
        }
        fx
    }

    /// The order screen, if it shows `order` (late answers about older orders are dropped).
    fn order_screen_of(&mut self, order: &OrderId) -> Option<&mut OrderScreen> {
        match &mut self.screen {
            Screen::Order(o) if o.order.id == *order => Some(o),
            _ => None,
        }
    }

    fn on_key(&mut self, key: Key, fx: &mut Vec<Effect>) {
        let n = self.items().len();
        match self.screen.clone() {
            Screen::Starting => {}
            Screen::Catalog { focus } => match (focus, key) {
                (CatalogFocus::Purchases, Key::Down) if n > 0 => {
                    self.screen = Screen::Catalog {
                        focus: CatalogFocus::Item(self.catalog_return.min(n - 1)),
                    };
                }
                (CatalogFocus::Purchases, Key::Ok) | (_, Key::Digit(0)) => {
                    self.open_purchases(fx);
                }
                (CatalogFocus::Item(i), Key::Up) => {
                    self.catalog_return = i;
                    self.screen = Screen::Catalog {
                        focus: CatalogFocus::Purchases,
                    };
                }
                (CatalogFocus::Item(i), Key::Left) => {
                    self.screen = Screen::Catalog {
                        focus: CatalogFocus::Item(i.saturating_sub(1)),
                    };
                }
                (CatalogFocus::Item(i), Key::Right) => {
                    self.screen = Screen::Catalog {
                        focus: CatalogFocus::Item((i + 1).min(n.saturating_sub(1))),
                    };
                }
                (CatalogFocus::Item(i), Key::Ok) => self.open_item(i),
                (_, Key::Digit(d)) if usize::from(d) <= n => self.open_item(usize::from(d) - 1),
                _ => {}
            },
            Screen::Item { index, focus, busy } => match key {
                Key::Left | Key::Right => {
                    self.screen = Screen::Item {
                        index,
                        focus: focus.toggled(key),
                        busy,
                    };
                }
                Key::Ok if focus == Choice::Primary && !busy => self.buy(index, fx),
                // A second OK while the order is being created must not create another.
                Key::Ok if focus == Choice::Primary => {}
                // Leaving while an order is being created is allowed: the order is
                // cancelled as soon as it arrives (see `on_order_created`).
                Key::Ok | Key::Back => {
                    self.screen = Screen::Catalog {
                        focus: CatalogFocus::Item(index),
                    };
                }
                _ => {}
            },
            Screen::Order(o) if o.phone.is_some() => self.on_phone_key(key, fx),
            Screen::Order(o) => match key {
                Key::Left | Key::Right => {
                    if let Screen::Order(o) = &mut self.screen {
                        o.focus = o.focus.toggled(key);
                    }
                }
                Key::Ok if o.focus == Choice::Secondary => self.open_phone_pad(None),
                // A digit on the order screen starts typing a phone number at once.
                Key::Digit(d) => self.open_phone_pad(Some(d)),
                Key::Ok | Key::Back => {
                    self.cancel_on_screen(&o, fx);
                    self.screen = Screen::Item {
                        index: o.index,
                        focus: Choice::Primary,
                        busy: false,
                    };
                }
                _ => {}
            },
            Screen::Paid { index, focus, .. } => match key {
                Key::Left | Key::Right => {
                    if let Screen::Paid { focus, .. } = &mut self.screen {
                        *focus = focus.toggled(key);
                    }
                }
                Key::Ok if focus == Choice::Secondary => self.open_purchases(fx),
                Key::Ok | Key::Back => {
                    self.screen = Screen::Catalog {
                        focus: index.map_or(CatalogFocus::Purchases, CatalogFocus::Item),
                    };
                }
                _ => {}
            },
            Screen::Expired {
                index,
                order,
                confirmed,
                focus,
            } => match key {
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
                    self.screen = Screen::Item {
                        index,
                        focus: Choice::Primary,
                        busy: false,
                    };
                }
                _ => {}
            },
            Screen::Purchases { list, selected } => match key {
                Key::Up => {
                    self.screen = Screen::Purchases {
                        list,
                        selected: selected.saturating_sub(1),
                    };
                }
                Key::Down => {
                    let len = list.as_ref().map_or(0, Vec::len);
                    self.screen = Screen::Purchases {
                        list,
                        selected: (selected + 1).min(len.saturating_sub(1)),
                    };
                }
                Key::Back | Key::Ok => self.go_home(),
                _ => {}
            },
            Screen::Problem(p) => match key {
                Key::Ok => match p.retry {
                    Some(retry) => self.retry_now(retry, p, fx),
                    None => self.go_home(),
                },
                Key::Back => match p.retry {
                    Some(Retry::Order { index }) if self.catalog.is_some() => {
                        self.screen = Screen::Item {
                            index,
                            focus: Choice::Primary,
                            busy: false,
                        };
                    }
                    _ if self.catalog.is_some() => self.go_home(),
                    // Nothing to go back to before the catalog has ever loaded; OK retries.
                    _ => {}
                },
                _ => {}
            },
        }
    }

    fn open_phone_pad(&mut self, first_digit: Option<u8>) {
        if let Screen::Order(o) = &mut self.screen {
            let mut entry = PhoneEntry::new();
            if let Some(d) = first_digit {
                entry.push(d);
            }
            o.focus = Choice::Secondary;
            o.phone = Some(entry);
        }
    }

    /// Keys while the phone-number pad or its waiting screen is up.
    fn on_phone_key(&mut self, key: Key, fx: &mut Vec<Effect>) {
        let Screen::Order(o) = &mut self.screen else {
            return;
        };
        let Some(p) = &mut o.phone else {
            return;
        };
        match &mut p.phase {
            PhonePhase::Typing { .. } => match key {
                Key::Digit(d) => p.push(d),
                Key::Up | Key::Down | Key::Left | Key::Right => p.move_focus(key),
                Key::Ok => match PAD.get(p.pad_focus) {
                    Some(PadKey::Digit(d)) => p.push(*d),
                    Some(PadKey::Delete) => p.pop(),
                    Some(PadKey::Send) => match p.number() {
                        Some(phone) => {
                            p.phase = PhonePhase::Sending;
                            fx.push(Effect::PayByPhone {
                                order: o.order.id.clone(),
                                tv_token: o.tv_token.clone(),
                                phone,
                            });
                        }
                        None => {
                            p.phase = PhonePhase::Typing {
                                message: p.why_not_sendable().map(str::to_owned),
                            };
                        }
                    },
                    None => {}
                },
                Key::Back if !p.digits.is_empty() => p.pop(),
                Key::Back => o.phone = None,
            },
            // Back gives up waiting for the answer (which is then ignored); the SMS may
            // still arrive, and a payment through it is still seen on the order stream.
            PhonePhase::Sending => {
                if key == Key::Back {
                    o.phone = None;
                }
            }
            PhonePhase::Sent { focus, .. } => match key {
                Key::Left | Key::Right => *focus = focus.toggled(key),
                Key::Ok if *focus == Choice::Secondary => {
                    p.phase = PhonePhase::Typing { message: None };
                }
                Key::Ok | Key::Back => o.phone = None,
                _ => {}
            },
        }
    }

    fn on_phone_pay_done(
        &mut self,
        order: &OrderId,
        result: Result<PhonePayStarted, Failure>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(p) = self.order_screen_of(order).and_then(|o| o.phone.as_mut()) else {
            return;
        };
        if p.phase != PhonePhase::Sending {
            return;
        }
        match result {
            Ok(started) => {
                p.phase = PhonePhase::Sent {
                    kind: started.kind,
                    phone_masked: started.phone_masked,
                    focus: Choice::Primary,
                };
            }
            Err(failure) => {
                if matches!(
                    failure.code(),
                    Some(
                        ErrorCode::AlreadyPaid
                            | ErrorCode::OrderExpired
                            | ErrorCode::OrderCancelled
                    )
                ) {
                    // The order changed under the pad: fetch it, and `on_order_update`
                    // moves to the paid or expired screen.
                    fx.push(Effect::PollOrder(order.clone()));
                }
                p.phase = PhonePhase::Typing {
                    message: Some(phone_failure_text(&failure)),
                };
            }
        }
    }

    fn go_home(&mut self) {
        self.screen = if self.catalog.is_some() {
            Screen::Catalog {
                focus: CatalogFocus::Purchases,
            }
        } else {
            Screen::Starting
        };
    }

    fn open_item(&mut self, index: usize) {
        if index < self.items().len() {
            self.screen = Screen::Item {
                index,
                focus: Choice::Primary,
                busy: false,
            };
        }
    }

    fn open_purchases(&mut self, fx: &mut Vec<Effect>) {
        self.screen = Screen::Purchases {
            list: None,
            selected: 0,
        };
        fx.push(Effect::LoadEntitlements(self.identity.device_id.clone()));
    }

    fn buy(&mut self, index: usize, fx: &mut Vec<Effect>) {
        let Some(item) = self.item(index) else {
            return;
        };
        fx.push(Effect::CreateOrder(CreateOrder {
            item_id: item.id.clone(),
            device_id: self.identity.device_id.clone(),
            device_name: self.identity.tv_name.clone(),
        }));
        self.screen = Screen::Item {
            index,
            focus: Choice::Primary,
            busy: true,
        };
    }

    fn retry_now(&mut self, retry: Retry, mut p: Problem, fx: &mut Vec<Effect>) {
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

    fn on_tick(&mut self, fx: &mut Vec<Effect>) {
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
        match &mut self.screen {
            Screen::Problem(p) if p.next_retry_ms.is_some_and(|t| now >= t) => {
                let (retry, p) = (p.retry, p.clone());
                if let Some(retry) = retry {
                    self.retry_now(retry, p, fx);
                }
            }
            Screen::Order(o) => {
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
            _ => {}
        }
    }

    fn on_catalog(&mut self, result: Result<Catalog, Failure>, fx: &mut Vec<Effect>) {
        let waiting = matches!(
            self.screen,
            Screen::Starting
                | Screen::Problem(Problem {
                    retry: Some(Retry::Catalog),
                    ..
                })
        );
        match result {
            Ok(catalog) => {
                for item in &catalog.items {
                    if !self.posters.contains_key(&item.id) {
                        fx.push(Effect::LoadPoster {
                            item: item.id.clone(),
                            path: item.poster.clone(),
                        });
                    }
                }
                let has_items = !catalog.items.is_empty();
                self.catalog = Some(catalog);
                if waiting {
                    self.screen = Screen::Catalog {
                        focus: if has_items {
                            CatalogFocus::Item(0)
                        } else {
                            CatalogFocus::Purchases
                        },
                    };
                }
            }
            Err(failure) if waiting => {
                let attempts = match &self.screen {
                    Screen::Problem(p) => p.attempts + 1,
                    _ => 1,
                };
                self.screen = Screen::Problem(match failure {
                    Failure::Unreachable(m) => {
                        unreachable_problem(Retry::Catalog, attempts, self.now_ms, &m)
                    }
                    // A refusal of the catalog is still worth retrying: nothing else works
                    // without it.
                    Failure::Refused { message, .. } => Problem {
                        title: "The server refused to send the catalog".into(),
                        ..unreachable_problem(Retry::Catalog, attempts, self.now_ms, &message)
                    },
                });
            }
            Err(_) => {}
        }
    }

    fn on_order_created(
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
                let ttl_ms = u64::try_from(order.expires_at_ms - order.created_at_ms).unwrap_or(0);
                let generation = self.next_generation;
                self.next_generation += 1;
                fx.push(Effect::FollowOrder {
                    order: order.id.clone(),
                    generation,
                });
                fx.push(Effect::Announce(DiscoveryRecord::new(
                    order.id.clone(),
                    order.short_code.clone(),
                    order.amount,
                    order.pay_link.server.clone(),
                    &self.identity.tv_name,
                    self.identity.device_id.clone(),
                    &order.item.title,
                )));
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
            Err(failure) if waiting => {
                let attempts = match &self.screen {
                    Screen::Problem(p) => p.attempts + 1,
                    _ => 1,
                };
                let retry = Retry::Order { index };
                self.screen = Screen::Problem(match failure {
                    Failure::Unreachable(m) => {
                        unreachable_problem(retry, attempts, self.now_ms, &m)
                    }
                    Failure::Refused { message, .. } => Problem {
                        title: "This item can't be bought right now".into(),
                        detail: message,
                        retry: Some(retry),
                        attempts,
                        next_retry_ms: None,
                    },
                });
            }
            Err(_) => {}
        }
    }

    fn on_stream_ended(&mut self, order: &OrderId, generation: u64, fx: &mut Vec<Effect>) {
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

    fn on_order_update(&mut self, order: Order, fx: &mut Vec<Effect>) {
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
                    self.screen = Screen::Item {
                        index: o.index,
                        focus: Choice::Primary,
                        busy: false,
                    };
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

    fn show_paid(&mut self, index: Option<usize>, order: Order) {
        self.screen = Screen::Paid {
            index,
            order: Box::new(order),
            since_ms: self.now_ms,
            focus: Choice::Primary,
        };
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

    fn on_cancel_done(
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

    fn on_entitlements(&mut self, result: Result<Entitlements, Failure>) {
        let waiting = matches!(
            self.screen,
            Screen::Purchases { list: None, .. }
                | Screen::Problem(Problem {
                    retry: Some(Retry::Purchases),
                    ..
                })
        );
        if !waiting {
            return;
        }
        match result {
            Ok(e) => {
                let mut list = e.entitlements;
                list.sort_by_key(|e| std::cmp::Reverse(e.granted_at_ms));
                self.screen = Screen::Purchases {
                    list: Some(list),
                    selected: 0,
                };
            }
            Err(failure) => {
                let attempts = match &self.screen {
                    Screen::Problem(p) => p.attempts + 1,
                    _ => 1,
                };
                self.screen = Screen::Problem(match failure {
                    Failure::Unreachable(m) => {
                        unreachable_problem(Retry::Purchases, attempts, self.now_ms, &m)
                    }
                    Failure::Refused { message, .. } => Problem {
                        title: "Couldn't load your purchases".into(),
                        detail: message,
                        retry: Some(Retry::Purchases),
                        attempts,
                        next_retry_ms: None,
                    },
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_backoff(failures: u32, expected_ms: u64) {
        assert_eq!(
            backoff(RETRY_INITIAL_MS, RETRY_MAX_MS, failures),
            expected_ms,
            "after {failures} failures"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        check_backoff(0, 1_000);
        check_backoff(1, 1_000);
        check_backoff(2, 2_000);
        check_backoff(3, 4_000);
        check_backoff(5, 16_000);
        check_backoff(6, 16_000);
        check_backoff(u32::MAX, 16_000);
    }
}
