//! The TV app's state machine: remote keys, clock ticks and server answers go in,
//! effects (requests, mDNS announcements) come out. No I/O and no Slint here, so every
//! flow can be driven and checked without a window or a server.
//!
//! This module keeps the shared types, [`App::handle`] and the dispatch of keys to the
//! screen that is up; each screen's logic lives in its own module: `catalog` (catalog and
//! item page), `order` (the order screen, its stream, announcements and cancel), `phone`
//! (the phone-number pad, a sub-state of the order screen), `device` (the Device menu:
//! the box's register entry, updates and its refund), `owned` (the device's
//! entitlements: what is owned, My purchases), `player` (the paid screen and the player),
//! `packets` (red packets a sender's phone offers to this TV) and `problem` (errors and
//! retries).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use protocol::{
    Announcement, Catalog, CatalogItem, CreateOrder, CreatedOrder, DeviceId, DeviceInfo,
    DeviceRefund, Entitlement, Entitlements, ErrorCode, HardwareId, ItemId, Order, OrderId,
    OrderItem, OsVersion, PacketSet, PacketSetId, PhoneNumber, PhonePayStarted, Token, UpdateCheck,
    UpdatePackage,
};

mod catalog;
mod device;
mod order;
mod owned;
mod packets;
mod phone;
mod player;
mod problem;

pub use catalog::ItemAction;
pub use device::{DevicePhase, DeviceScreen, DownloadOutcome};
pub use order::{AnnounceState, OrderScreen, StreamPhase, StreamState};
pub use owned::{Ownership, dedupe_entitlements};
pub use packets::PacketsScreen;
pub use phone::{
    DEFAULT_COUNTRY_CODE, MAX_PHONE_DIGITS, PAD, PAD_COLUMNS, PadKey, PhoneEntry, PhonePhase,
    country_code_len, full_number_len, phone_failure_text,
};
pub use problem::{Problem, Retry};

use order::Cancelling;

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

/// Why a request failed, as far as the TV needs to know. The message is for the log:
/// screens never show it (they say what happened in words of their own).
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
    /// The TV's wall clock (Unix milliseconds), to tell whether a membership is still
    /// active. Sent now and then; without it the TV goes by the server's timestamps.
    WallClock {
        unix_ms: i64,
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
    /// Whether the mDNS announcement of `offer` went out on a network interface.
    Announced {
        offer: Offer,
        result: Result<(), String>,
    },
    /// Whether `offer` went on the air over Bluetooth LE (`Err` says why not).
    BleAnnounced {
        offer: Offer,
        result: Result<(), String>,
    },
    /// The server's answer to sending `order` to a phone number.
    PhonePayDone {
        order: OrderId,
        result: Result<PhonePayStarted, Failure>,
    },
    /// A sender's phone asks this TV to show red packets (from the device stream).
    PacketsOffered(PacketSet),
    /// The set's current state, from its event stream.
    PacketsUpdate(PacketSet),
    /// The set's event stream `generation` is connected (its snapshot arrived).
    PacketsStreamOpened {
        set: PacketSetId,
        generation: u64,
    },
    /// The set's event stream `generation` ended or could not be opened.
    PacketsStreamEnded {
        set: PacketSetId,
        generation: u64,
    },
    /// This box's register entry (the Device menu).
    DeviceLoaded(Result<DeviceInfo, Failure>),
    UpdateChecked(Result<UpdateCheck, Failure>),
    /// `received` bytes of the package `version` are in.
    DownloadProgress {
        version: OsVersion,
        received: u64,
    },
    DownloadFinished {
        version: OsVersion,
        outcome: DownloadOutcome,
    },
    /// The server's answer to the installed version.
    VersionReported(Result<DeviceInfo, Failure>),
    RefundDone(Result<DeviceRefund, Failure>),
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
    /// Offer this on the network (mDNS and BLE), replacing the TV's earlier offer.
    Announce(Announcement),
    /// Withdraw this TV's offer (mDNS and BLE) at once.
    Withdraw,
    LoadEntitlements(DeviceId),
    /// Ask the server to text `phone` a code or the pay link for `order` (SPEC W2).
    PayByPhone {
        order: OrderId,
        tv_token: Token,
        phone: PhoneNumber,
    },
    /// Listen, for as long as the app runs, for what others ask this TV to show (the
    /// device's event stream, reconnected by the runtime).
    ListenForOffers(DeviceId),
    /// Open the red-packet set's event stream (replacing any open one).
    FollowPackets {
        set: PacketSetId,
        generation: u64,
    },
    /// Close the set's event stream, if one is open.
    StopFollowingPackets,
    /// Device services (the Device menu), each request with this box's credential.
    LoadDevice {
        id: HardwareId,
        credential: Token,
    },
    CheckUpdate {
        id: HardwareId,
        credential: Token,
    },
    /// Download the package (resuming after a dropped connection), then check its size,
    /// SHA-256 and signature; progress and the outcome come back as inputs.
    DownloadUpdate(UpdatePackage),
    ReportVersion {
        id: HardwareId,
        credential: Token,
        version: OsVersion,
    },
    RefundDevice {
        id: HardwareId,
        credential: Token,
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

/// Focus on the catalog screen: the "Device" or "My purchases" button above the grid, or
/// a poster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatalogFocus {
    Device,
    Purchases,
    Item(usize),
}

/// Where Back leads from an item page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Back {
    Catalog,
    Purchases,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Screen {
    /// The first catalog load is in flight.
    Starting,
    Catalog {
        focus: CatalogFocus,
    },
    /// One item: buy it, play it (a film this TV owns) or see until when it is active
    /// (a membership). [`App::item_action`] says which.
    Item {
        index: usize,
        focus: Choice,
        /// An order is being created for this item.
        busy: bool,
        back: Back,
    },
    Order(Box<OrderScreen>),
    Paid {
        index: Option<usize>,
        order: Box<Order>,
        /// Local time the TV learnt of the payment (the film "plays" from here).
        since_ms: u64,
        focus: Choice,
    },
    /// A film this TV owns, playing (the same player as on the paid screen).
    Playing {
        item: OrderItem,
        index: Option<usize>,
        since_ms: u64,
        /// "Stop & go back" (primary) or "My purchases".
        focus: Choice,
        /// The screen the film was started from, shown again when it stops.
        back_to: Box<Screen>,
    },
    Expired {
        index: usize,
        order: OrderId,
        /// Still listening for a late "paid" until the server confirms the expiry.
        confirmed: bool,
        focus: Choice,
    },
    Purchases {
        /// Each item once, newest first; `None` while the first load is in flight.
        list: Option<Vec<Entitlement>>,
        selected: usize,
    },
    Problem(Problem),
    /// A sender asks to show red packets: OK shows them, Back refuses.
    PacketsPrompt {
        set: Box<PacketSet>,
        focus: Choice,
        back_to: Box<Screen>,
    },
    /// Red packets on screen: claim code and who got how much.
    Packets(Box<PacketsScreen>),
    /// The Device menu: this box, its updates and its refund.
    Device(Box<DeviceScreen>),
}

/// The TV's identity, sent with every order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub device_id: DeviceId,
    pub tv_name: String,
}

/// What the TV offers on the network: the order or the red-packet set on screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    Order(OrderId),
    Packets(PacketSetId),
}

impl Offer {
    /// The offer an announcement makes; `None` for the TV's bare presence.
    pub fn of(a: &Announcement) -> Option<Self> {
        match a {
            Announcement::Order(r) => Some(Self::Order(r.order.clone())),
            Announcement::Packets(p) => Some(Self::Packets(p.set.clone())),
            Announcement::Tv(_) => None,
        }
    }
}

impl std::fmt::Display for Offer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Order(o) => write!(f, "order {o}"),
            Self::Packets(p) => write!(f, "red packets {}", p.log_prefix()),
        }
    }
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
    /// The device's entitlements, each item once; `None` until first loaded.
    purchases: Option<Vec<Entitlement>>,
    /// Items the server refused to sell because this TV already owns them, until the
    /// next entitlements load says more.
    owned_hint: HashSet<ItemId>,
    /// Bumped whenever what the TV owns changes (the UI rebuilds its cards then).
    owned_version: u64,
    /// A wall-clock reading: (Unix ms, local ms when read).
    wall: Option<(i64, u64)>,
    /// Digits prefilled on the phone pad: the country calling code.
    phone_country_code: String,
    /// A red-packet offer waiting for a quiet screen (the newest only).
    pending_offer: Option<PacketSet>,
    /// This box's device credential (device services); `None` when not set up.
    device_credential: Option<Token>,
}

fn backoff(initial_ms: u64, max_ms: u64, failures: u32) -> u64 {
    let shift = failures.saturating_sub(1).min(16);
    initial_ms.saturating_mul(1 << shift).min(max_ms)
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
            purchases: None,
            owned_hint: HashSet::new(),
            owned_version: 0,
            wall: None,
            phone_country_code: DEFAULT_COUNTRY_CODE.to_owned(),
            pending_offer: None,
            device_credential: None,
        };
        let device = app.identity.device_id.clone();
        (
            app,
            vec![Effect::LoadCatalog, Effect::ListenForOffers(device)],
        )
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
            Input::WallClock { unix_ms } => self.set_wall_clock(unix_ms),
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
            Input::Announced { offer, result } => {
                if let Some(state) = self.announce_state_of(&offer, false) {
                    *state = AnnounceState::from(result);
                }
            }
            Input::BleAnnounced { offer, result } => {
                if let Some(state) = self.announce_state_of(&offer, true) {
                    *state = AnnounceState::from(result);
                }
            }
            Input::PacketsOffered(set) => self.on_packets_offered(set),
            Input::PacketsUpdate(set) => self.on_packets_update(set, &mut fx),
            Input::PacketsStreamOpened { set, generation } => {
                self.on_packets_stream_opened(&set, generation)
            }
            Input::PacketsStreamEnded { set, generation } => {
                self.on_packets_stream_ended(&set, generation)
            }
            Input::DeviceLoaded(result) => self.on_device_loaded(result),
            Input::UpdateChecked(result) => self.on_update_checked(result),
            Input::DownloadProgress { version, received } => {
                self.on_download_progress(&version, received)
            }
            Input::DownloadFinished { version, outcome } => {
                self.on_download_finished(&version, outcome, &mut fx)
            }
            Input::VersionReported(result) => self.on_version_reported(result),
            Input::RefundDone(result) => self.on_refund_done(result),
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

    /// Where the screen showing `offer` keeps whether it is announced over mDNS (or,
    /// with `ble`, over Bluetooth LE).
    fn announce_state_of(&mut self, offer: &Offer, ble: bool) -> Option<&mut AnnounceState> {
        let (mdns, radio) = match (&mut self.screen, offer) {
            (Screen::Order(o), Offer::Order(id)) if o.order.id == *id => {
                (&mut o.announce, &mut o.ble)
            }
            (Screen::Packets(p), Offer::Packets(id)) if p.set.id == *id => {
                (&mut p.announce, &mut p.ble)
            }
            _ => return None,
        };
        Some(if ble { radio } else { mdns })
    }

    fn on_key(&mut self, key: Key, fx: &mut Vec<Effect>) {
        match self.screen.clone() {
            Screen::Starting => {}
            Screen::Catalog { focus } => self.on_catalog_key(focus, key, fx),
            Screen::Item {
                index,
                focus,
                busy,
                back,
            } => self.on_item_key(index, focus, busy, back, key, fx),
            Screen::Order(o) if o.phone.is_some() => self.on_phone_key(key, fx),
            Screen::Order(o) => self.on_order_key(&o, key, fx),
            Screen::Paid { index, focus, .. } => self.on_paid_key(index, focus, key, fx),
            Screen::Playing { focus, back_to, .. } => self.on_playing_key(focus, *back_to, key, fx),
            Screen::Expired {
                index,
                order,
                confirmed,
                focus,
            } => self.on_expired_key(index, order, confirmed, focus, key, fx),
            Screen::Purchases { list, selected } => self.on_purchases_key(list, selected, key),
            Screen::Problem(p) => self.on_problem_key(p, key, fx),
            Screen::PacketsPrompt {
                set,
                focus,
                back_to,
            } => self.on_packets_prompt_key(*set, focus, *back_to, key, fx),
            Screen::Packets(p) => self.on_packets_key(&p, key, fx),
            Screen::Device(d) => self.on_device_key(&d, key, fx),
        }
        // Leaving an order (or a problem) for a quiet screen shows a waiting offer.
        self.show_pending_offer();
    }

    fn on_tick(&mut self, fx: &mut Vec<Effect>) {
        self.tick_cancel(fx);
        match &self.screen {
            Screen::Problem(p) if p.next_retry_ms.is_some_and(|t| self.now_ms >= t) => {
                let p = p.clone();
                if let Some(retry) = p.retry {
                    self.retry_now(retry, p, fx);
                }
            }
            Screen::Order(_) => self.tick_order(fx),
            Screen::Packets(_) => self.tick_packets(fx),
            _ => {}
        }
        self.show_pending_offer();
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

    /// Sets this box's device credential, which device services need (SPEC D2).
    pub fn set_device_credential(&mut self, credential: Option<Token>) {
        self.device_credential = credential;
    }

    /// The digits prefilled on the phone pad (the country calling code, without `+`).
    pub fn phone_country_code(&self) -> &str {
        &self.phone_country_code
    }

    /// Sets the country calling code prefilled on the phone pad: 1 to 3 digits, an
    /// optional leading `+`, not starting with 0; anything else is refused.
    pub fn set_phone_country_code(&mut self, code: &str) -> Result<(), String> {
        let digits = code.trim().trim_start_matches('+');
        if (1..=3).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            self.phone_country_code = digits.to_owned();
            Ok(())
        } else {
            Err(format!(
                "{code:?} is not a country calling code (1 to 3 digits, e.g. 1 or 44)"
            ))
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

    #[test]
    fn country_codes_are_checked() {
        let (mut app, _) = App::init(
            Identity {
                device_id: DeviceId::parse("SN-1").unwrap(),
                tv_name: "TV".into(),
            },
            0,
        );
        assert_eq!(app.phone_country_code(), "1");
        assert!(app.set_phone_country_code("+44").is_ok());
        assert_eq!(app.phone_country_code(), "44");
        for bad in ["", "+", "0", "1234", "4a", "+-1"] {
            assert!(app.set_phone_country_code(bad).is_err(), "{bad:?}");
        }
        assert_eq!(app.phone_country_code(), "44");
    }
}
