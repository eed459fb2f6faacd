//! The glue between the state machine and the Slint window: maps remote keys to
//! [`Key`]s, renders [`App`] into the `Tv` global, and runs effects through the runtime.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use protocol::{ItemId, ItemKind, Money, PacketSetState, PhonePayKind};
use slint::platform::Key as SlintKey;
use slint::{
    ComponentHandle, Image, Model, ModelRc, Rgba8Pixel, SharedPixelBuffer, SharedString, VecModel,
};

use crate::qr;
use crate::runtime::{Backend, Runtime};
use crate::slint_ui::{AppWindow, Card, Page, Row, Tv};
use crate::state::{
    AnnounceState, App, CatalogFocus, Choice, Effect, Input, ItemAction, Key, Ownership,
    PhonePhase, Poster, Screen, StreamPhase, country_code_len,
};

/// Maps the text of a Slint key event to a remote button.
pub fn key_from_text(text: &str) -> Option<Key> {
    let mut chars = text.chars();
    let (c, None) = (chars.next()?, chars.next()) else {
        return None;
    };
    let is = |k: SlintKey| char::from(k) == c;
    Some(if is(SlintKey::UpArrow) {
        Key::Up
    } else if is(SlintKey::DownArrow) {
        Key::Down
    } else if is(SlintKey::LeftArrow) {
        Key::Left
    } else if is(SlintKey::RightArrow) {
        Key::Right
    } else if is(SlintKey::Return) || c == '\r' || c == ' ' {
        Key::Ok
    } else if is(SlintKey::Escape) || is(SlintKey::Backspace) || is(SlintKey::Back) {
        Key::Back
    } else if let Some(d) = c.to_digit(10) {
        Key::Digit(u8::try_from(d).unwrap_or(0))
    } else {
        return None;
    })
}

/// Largest size of the phone number's digits, in `u` (1/1080 of the screen height).
pub const PHONE_DIGITS_MAX_SIZE: f32 = 84.0;
/// Width the phone number has on the pad screen, in `u`: `PhonePage` in `ui/app.slint`
/// on a 16:9 screen (1920 u wide) leaves 852 u between the field's paddings.
pub const PHONE_FIELD_WIDTH: f32 = 852.0;
/// Advance of one DejaVu Sans Mono glyph, in em (the bold face is as wide).
pub const MONO_ADVANCE_EM: f32 = 0.602;

/// The size (in `u`) at which the phone number `display` fits its field: full size
/// while it fits, smaller for the longest numbers, so no digit is ever cut off.
pub fn phone_digits_size(display: &str) -> f32 {
    let chars = display.chars().count().max(1) as f32;
    // 2% to spare for rounding in the renderer.
    let fit = PHONE_FIELD_WIDTH * 0.98 / (chars * MONO_ADVANCE_EM);
    fit.min(PHONE_DIGITS_MAX_SIZE).floor()
}

/// The digits typed on the pad as the TV shows them: `+`, the country code, then groups
/// of three (a lone last digit joins the group before).
pub fn phone_display(digits: &str) -> String {
    if digits.is_empty() {
        return String::new();
    }
    let cc = country_code_len(digits);
    let (country, rest) = digits.split_at(cc);
    let mut groups: Vec<&str> = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        let take = if rest.len() == 4 {
            4
        } else {
            rest.len().min(3)
        };
        let (g, r) = rest.split_at(take);
        groups.push(g);
        rest = r;
    }
    let mut out = format!("+{country}");
    for g in groups {
        out.push(' ');
        out.push_str(g);
    }
    out
}

/// How an amount is shown on the TV: `€4.99`, `$3.00`, `12.50 CHF`.
pub fn price(m: &Money) -> String {
    let symbol = match m.currency.as_str() {
        "EUR" => "€",
        "USD" => "$",
        "GBP" => "£",
        _ => return m.to_string(),
    };
    format!("{symbol}{}", m.decimal())
}

fn kind_label(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Video => "FILM",
        ItemKind::Membership => "MEMBERSHIP",
        ItemKind::Physical => "HOME DELIVERY",
    }
}

/// A calm colour per item for placeholder posters, stable across runs.
fn tint(id: &ItemId) -> slint::Color {
    const PALETTE: [(u8, u8, u8); 5] = [
        (0x3b, 0x5b, 0xdb),
        (0x0f, 0x9d, 0x8a),
        (0xc0, 0x39, 0x6b),
        (0xd9, 0x7a, 0x1e),
        (0x7c, 0x4d, 0xd8),
    ];
    let h = id.as_str().bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let (r, g, b) = PALETTE[h % PALETTE.len()];
    slint::Color::from_rgb_u8(r, g, b)
}

/// `23 Nov 2026` from Unix milliseconds (UTC; a TV shows dates, not times, here).
pub fn date(unix_ms: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = unix_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = usize::try_from(month - 1)
        .ok()
        .and_then(|m| MONTHS.get(m))
        .unwrap_or(&"?");
    format!("{day} {name} {year}")
}

/// Text for the screen with the spaces inside a quantity made unbreakable, so a line
/// never breaks inside `1 h 52 min` or `30 days`: between a number and the word after it,
/// and between `h` and the minutes after it.
pub fn keep_quantities_together(text: &str) -> String {
    const NBSP: char = '\u{a0}';
    let words: Vec<&str> = text.split(' ').collect();
    let mut out = String::with_capacity(text.len() + 8);
    for (i, w) in words.iter().enumerate() {
        out.push_str(w);
        let Some(next) = words.get(i + 1) else {
            break;
        };
        let number_then_word = w.ends_with(|c: char| c.is_ascii_digit())
            && next.starts_with(|c: char| c.is_alphabetic());
        let hours_then_minutes = *w == "h" && next.starts_with(|c: char| c.is_ascii_digit());
        out.push(if number_then_word || hours_then_minutes {
            NBSP
        } else {
            ' '
        });
    }
    out
}

/// A film's running time from its description (`… 1 h 52 min, HD.`), in seconds.
pub fn film_length_s(description: &str) -> Option<u64> {
    let words: Vec<&str> = description
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.' || c == '\u{a0}')
        .filter(|w| !w.is_empty())
        .collect();
    let mut total = 0;
    for pair in words.windows(2) {
        let Ok(n) = pair[0].parse::<u64>() else {
            continue;
        };
        total += match pair[1] {
            "h" | "hr" | "hours" | "hour" => n * 3600,
            "min" | "mins" | "minutes" => n * 60,
            _ => 0,
        };
    }
    (total > 0).then_some(total)
}

/// `4:05` or `1:02:03`.
fn clock(total_s: u64) -> String {
    let (h, m, s) = (total_s / 3600, total_s / 60 % 60, total_s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

fn to_image(width: u32, height: u32, rgba: &[u8]) -> Image {
    Image::from_rgba8(SharedPixelBuffer::<Rgba8Pixel>::clone_from_slice(
        rgba, width, height,
    ))
}

/// Images built once and reused while their source is unchanged.
#[derive(Default)]
struct RenderCache {
    /// The QR code on screen: the link it encodes, its image, its size in modules.
    qr: Option<(String, Image, u32)>,
    posters: HashMap<ItemId, (Arc<Poster>, Image)>,
    /// (items, posters, what is owned) when the card model was last built.
    cards_key: Option<(usize, usize, u64)>,
    /// The first catalog card on screen: the row scrolls only when the focus leaves it.
    catalog_first: usize,
}

/// How many catalog cards fit in the row (`CatalogPage` in `ui/app.slint`).
pub const CATALOG_VISIBLE: usize = 4;

/// The first card to show so that `focus` is on screen, moving the row as little as
/// possible from `first`.
pub fn catalog_window(first: usize, focus: usize, len: usize) -> usize {
    let first = if focus < first {
        focus
    } else if focus >= first + CATALOG_VISIBLE {
        focus + 1 - CATALOG_VISIBLE
    } else {
        first
    };
    first.min(len.saturating_sub(CATALOG_VISIBLE))
}

impl RenderCache {
    fn poster(&mut self, id: &ItemId, poster: Option<&Arc<Poster>>) -> Option<Image> {
        let poster = poster?;
        if let Some((p, img)) = self.posters.get(id)
            && Arc::ptr_eq(p, poster)
        {
            return Some(img.clone());
        }
        let img = to_image(poster.width, poster.height, &poster.rgba);
        self.posters
            .insert(id.clone(), (poster.clone(), img.clone()));
        Some(img)
    }
}

/// The running app: state machine, window and runtime, on the UI thread.
pub struct Shell<B: Backend> {
    pub app: App,
    pub window: AppWindow,
    pub runtime: Runtime<B>,
    cache: RenderCache,
}

impl<B: Backend> std::fmt::Debug for Shell<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("screen", &self.app.screen)
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Shell<B> {
    /// Wires the window's keys to the state machine, runs the initial effects and renders.
    pub fn start(
        window: AppWindow,
        app: App,
        initial: Vec<Effect>,
        runtime: Runtime<B>,
    ) -> Rc<RefCell<Self>> {
        let shell = Rc::new(RefCell::new(Self {
            app,
            window,
            runtime,
            cache: RenderCache::default(),
        }));
        let weak = Rc::downgrade(&shell);
        shell.borrow().window.global::<Tv>().on_key(move |text| {
            if let (Some(key), Some(shell)) = (key_from_text(&text), weak.upgrade()) {
                shell.borrow_mut().dispatch(Input::Key(key));
            }
        });
        {
            let mut s = shell.borrow_mut();
            s.runtime.execute_all(initial);
            s.render();
        }
        shell
    }

    /// Applies one input, carries out its effects and redraws.
    pub fn dispatch(&mut self, input: Input) {
        let effects = self.app.handle(input);
        self.runtime.execute_all(effects);
        self.render();
    }

    /// Renders the state into the window's `Tv` global.
    pub fn render(&mut self) {
        let cards_key = (
            self.app.items().len(),
            self.app.posters.len(),
            self.app.owned_version(),
        );
        if self.cache.cards_key != Some(cards_key) {
            let cards: Vec<Card> = self
                .app
                .items()
                .iter()
                .map(|item| card(&mut self.cache, &self.app, item))
                .collect();
            self.window
                .global::<Tv>()
                .set_cards(ModelRc::new(VecModel::from(cards)));
            self.cache.cards_key = Some(cards_key);
        }
        let tv = self.window.global::<Tv>();
        let app = &self.app;
        tv.set_tv_name(app.identity.tv_name.as_str().into());

        let now = app.now_ms;
        match &app.screen {
            Screen::Starting => tv.set_page(Page::Starting),
            Screen::Catalog { focus } => {
                tv.set_page(Page::Catalog);
                let first = match focus {
                    CatalogFocus::Purchases | CatalogFocus::Device => self.cache.catalog_first,
                    CatalogFocus::Item(i) => {
                        catalog_window(self.cache.catalog_first, *i, app.items().len())
                    }
                };
                self.cache.catalog_first = first;
                tv.set_catalog_first(index(first));
                tv.set_focus(match focus {
                    CatalogFocus::Purchases => -1,
                    CatalogFocus::Device => -2,
                    CatalogFocus::Item(i) => index(*i),
                });
            }
            Screen::Item {
                index: i,
                focus,
                busy,
                ..
            } => {
                if let Some(item) = app.item(*i) {
                    if let Some(card) = tv.get_cards().row_data(*i) {
                        tv.set_item(card);
                    }
                    tv.set_item_kind(kind_label(item.kind).into());
                    tv.set_item_merchant(item.merchant.name.as_str().into());
                    tv.set_item_description(keep_quantities_together(&item.description).into());
                    let (action, label, owned) = match app.item_action(*i) {
                        ItemAction::Buy => {
                            let verb = match item.kind {
                                ItemKind::Video => "Buy",
                                ItemKind::Membership => "Subscribe",
                                ItemKind::Physical => "Order",
                            };
                            (
                                0,
                                format!("{verb} for {}", price(&item.price)),
                                String::new(),
                            )
                        }
                        ItemAction::Play => {
                            (1, "▶  Play".to_owned(), "✓ Yours to watch".to_owned())
                        }
                        ItemAction::Active { until_ms } => (
                            2,
                            String::new(),
                            match until_ms {
                                Some(u) => format!("✓ Active until {}", date(u)),
                                None => "✓ Active on this TV".to_owned(),
                            },
                        ),
                    };
                    tv.set_item_action(action);
                    tv.set_buy_label(label.into());
                    tv.set_item_owned_text(owned.into());
                }
                tv.set_busy(*busy);
                tv.set_focus(choice(*focus));
                tv.set_page(Page::Item);
            }
            Screen::Order(o) => {
                show_qr(&mut self.cache, &tv, &o.order.pay_link.to_string());
                tv.set_code(o.order.short_code.display().into());
                tv.set_order_title(o.order.item.title.as_str().into());
                tv.set_order_price(price(&o.order.amount).into());
                tv.set_order_merchant(o.order.merchant.name.as_str().into());
                let ttl = u64::try_from(o.order.expires_at_ms - o.order.created_at_ms).unwrap_or(0);
                let left_ms = o.deadline_ms.saturating_sub(now);
                let left = clock(left_ms.div_ceil(1000));
                tv.set_countdown(format!("Code expires in {left}").into());
                tv.set_time_left_text(left.as_str().into());
                tv.set_time_left(if ttl == 0 {
                    0.0
                } else {
                    left_ms as f32 / ttl as f32
                });
                // Where nearby phones can find the order besides the QR code: a small
                // indicator; why a channel is off is in the log, not on the screen.
                show_nearby(&tv, &o.announce, &o.ble);
                let (text, live) = match o.stream.phase {
                    StreamPhase::Live => ("Waiting for your payment…".to_owned(), true),
                    StreamPhase::Connecting => ("Connecting to Couchpay…".to_owned(), false),
                    StreamPhase::Down { .. } => (
                        "Connection lost — still checking for your payment".to_owned(),
                        false,
                    ),
                };
                tv.set_stream_text(text.as_str().into());
                tv.set_stream_live(live);
                match &o.phone {
                    None => {
                        tv.set_focus(choice(o.focus));
                        tv.set_page(Page::Order);
                    }
                    Some(p) => match &p.phase {
                        PhonePhase::Typing { .. } | PhonePhase::Sending => {
                            let sending = p.phase == PhonePhase::Sending;
                            let shown = phone_display(&p.digits);
                            tv.set_phone_digits_size(phone_digits_size(&shown));
                            tv.set_phone_digits(shown.into());
                            tv.set_phone_can_send(p.number().is_some());
                            tv.set_phone_sending(sending);
                            let message = match &p.phase {
                                PhonePhase::Typing { message: Some(m) } => m.as_str(),
                                _ => "",
                            };
                            tv.set_phone_message(message.into());
                            tv.set_focus(index(p.pad_focus));
                            tv.set_page(Page::Phone);
                        }
                        PhonePhase::Sent {
                            kind,
                            phone_masked,
                            focus,
                        } => {
                            let what =
                                format!("{} for {}", price(&o.order.amount), o.order.item.title);
                            let (title, detail) = match kind {
                                PhonePayKind::CodeSent => (
                                    "Check your phone for a code",
                                    format!(
                                        "We sent a code to {phone_masked}. Reply with the code on your phone to pay {what}."
                                    ),
                                ),
                                PhonePayKind::LinkSent => (
                                    "Check your phone for a link",
                                    format!(
                                        "We sent a payment link to {phone_masked}. Open it on your phone to pay {what}."
                                    ),
                                ),
                            };
                            tv.set_phone_sent_title(title.into());
                            tv.set_phone_sent_detail(detail.into());
                            let status = if live {
                                format!("Waiting for your payment · the order expires in {left}")
                            } else {
                                text
                            };
                            tv.set_phone_sent_status(status.into());
                            tv.set_focus(choice(*focus));
                            tv.set_page(Page::PhoneSent);
                        }
                    },
                }
            }
            Screen::Paid {
                index: i,
                order,
                since_ms,
                focus,
            } => {
                let (kind, title, detail) = match order.item.kind {
                    ItemKind::Video => (
                        "video",
                        "Paid — enjoy the film".to_owned(),
                        format!("Now playing: {}", order.item.title),
                    ),
                    ItemKind::Membership => {
                        let days = i.and_then(|i| app.item(i)).and_then(|it| it.period_days);
                        let paid_at = order.paid_at_ms.unwrap_or(order.created_at_ms);
                        let detail = match days {
                            Some(d) => format!(
                                "{} is active on this TV until {}",
                                order.item.title,
                                date(paid_at + i64::from(d) * 86_400_000)
                            ),
                            None => format!("{} is active on this TV", order.item.title),
                        };
                        ("membership", "Paid — membership active".to_owned(), detail)
                    }
                    ItemKind::Physical => (
                        "physical",
                        "Paid — order placed".to_owned(),
                        format!(
                            "{} will deliver {} to the address you gave on your phone.",
                            order.merchant.name, order.item.title
                        ),
                    ),
                };
                tv.set_paid_kind(kind.into());
                tv.set_paid_check(true);
                tv.set_paid_title(title.into());
                tv.set_paid_detail(detail.into());
                let length = i
                    .and_then(|i| app.item(i))
                    .and_then(|it| film_length_s(&it.description));
                set_player(&tv, now.saturating_sub(*since_ms) / 1000, length);
                tv.set_focus(choice(*focus));
                tv.set_page(Page::Paid);
            }
            Screen::Playing {
                item,
                index: i,
                since_ms,
                focus,
                ..
            } => {
                tv.set_paid_kind("video".into());
                tv.set_paid_check(false);
                tv.set_paid_title("Enjoy the film".into());
                tv.set_paid_detail(format!("Now playing: {}", item.title).into());
                let length = i
                    .and_then(|i| app.item(i))
                    .and_then(|it| film_length_s(&it.description));
                set_player(&tv, now.saturating_sub(*since_ms) / 1000, length);
                tv.set_focus(choice(*focus));
                tv.set_page(Page::Paid);
            }
            Screen::Expired {
                index: i, focus, ..
            } => {
                let title = app.item(*i).map_or("this item", |it| it.title.as_str());
                tv.set_expired_detail(
                    format!("Nothing was charged for {title}. Get a fresh code to try again.")
                        .into(),
                );
                tv.set_focus(choice(*focus));
                tv.set_page(Page::Expired);
            }
            Screen::Purchases { list, selected } => {
                let rows: Vec<Row> = list
                    .iter()
                    .flatten()
                    .map(|e| Row {
                        title: e.item.title.as_str().into(),
                        kind: kind_label(e.item.kind).into(),
                        detail: match (e.item.kind, e.valid_until_ms) {
                            (ItemKind::Membership, Some(until)) if app.is_active(e) => {
                                format!("active until {}", date(until))
                            }
                            (ItemKind::Membership, Some(until)) => format!("ended {}", date(until)),
                            (ItemKind::Membership, None) => "active".to_owned(),
                            (ItemKind::Video, _) => format!("bought {}", date(e.granted_at_ms)),
                            (ItemKind::Physical, _) => {
                                format!("ordered {}", date(e.granted_at_ms))
                            }
                        }
                        .into(),
                    })
                    .collect();
                tv.set_rows(ModelRc::new(VecModel::from(rows)));
                tv.set_rows_loading(list.is_none());
                tv.set_focus(index(*selected));
                tv.set_page(Page::Purchases);
            }
            Screen::PacketsPrompt { set, focus, .. } => {
                tv.set_packets_title(
                    format!("{} would like to show red packets here", set.sender_name).into(),
                );
                let message = if set.message.is_empty() {
                    String::new()
                } else {
                    format!(": “{}”", set.message)
                };
                tv.set_packets_detail(
                    keep_quantities_together(&format!(
                        "{} in {} packets for the people in the room{message}",
                        price(&set.total),
                        set.count
                    ))
                    .into(),
                );
                tv.set_focus(choice(*focus));
                tv.set_page(Page::PacketsPrompt);
            }
            Screen::Packets(p) => {
                let set = &p.set;
                if p.is_open() {
                    show_qr(&mut self.cache, &tv, &set.link.to_string());
                }
                tv.set_code(
                    set.short_code
                        .as_ref()
                        .map(|c| c.display())
                        .unwrap_or_default()
                        .into(),
                );
                tv.set_packets_title(format!("Red packets from {}", set.sender_name).into());
                tv.set_packets_detail(set.message.as_str().into());
                let left = match set.state {
                    PacketSetState::Open => format!(
                        "{} of {} packets left · {} in all",
                        set.remaining,
                        set.count,
                        price(&set.total)
                    ),
                    PacketSetState::Finished => {
                        format!("All {} packets were opened", set.count)
                    }
                    PacketSetState::Refunded => format!(
                        "Time is up: {} went back to {}",
                        price(&set.refunded),
                        set.sender_name
                    ),
                };
                tv.set_packets_left(keep_quantities_together(&left).into());
                tv.set_packets_open(p.is_open());
                tv.set_packets_live(p.live);
                show_nearby(&tv, &p.announce, &p.ble);
                // Newest first: the latest claim is at the top of the list.
                let rows: Vec<Row> = set
                    .claims
                    .iter()
                    .rev()
                    .map(|c| Row {
                        title: c.recipient_name.as_str().into(),
                        // Equal packets have no luckiest.
                        kind: if c.largest && !set.fixed {
                            "★ luckiest"
                        } else {
                            ""
                        }
                        .into(),
                        detail: price(&c.amount).into(),
                    })
                    .collect();
                tv.set_rows(ModelRc::new(VecModel::from(rows)));
                tv.set_page(Page::Packets);
            }
            Screen::Device(d) => {
                let v = crate::device_view::device_view(d);
                tv.set_device_icon(v.icon.into());
                tv.set_device_tint(v.tint);
                tv.set_device_title(v.title.into());
                tv.set_device_detail(keep_quantities_together(&v.detail).into());
                tv.set_device_status(v.status.into());
                tv.set_device_primary(v.primary.into());
                tv.set_device_secondary(v.secondary.into());
                tv.set_device_hint(v.hint.into());
                tv.set_device_progress(v.progress);
                tv.set_focus(choice(d.focus));
                tv.set_page(Page::Device);
            }
            Screen::Problem(p) => {
                tv.set_problem_title(p.title.as_str().into());
                tv.set_problem_detail(p.detail.as_str().into());
                let status = match (p.retry, p.next_retry_ms) {
                    (Some(_), Some(at)) => format!(
                        "Retrying in {} s.",
                        at.saturating_sub(now).div_ceil(1000).max(1)
                    ),
                    (Some(_), None) if p.attempts > 0 => "Retrying…".to_owned(),
                    _ => String::new(),
                };
                tv.set_problem_status(SharedString::from(status));
                tv.set_focus(0);
                tv.set_page(Page::Problem);
            }
        }
    }
}

/// Puts the QR code of `link` on screen, drawing it only when the link changed.
fn show_qr(cache: &mut RenderCache, tv: &Tv<'_>, link: &str) {
    if cache.qr.as_ref().is_none_or(|(l, ..)| l != link) {
        match qr::render_text(link) {
            Ok(q) => {
                let img = to_image(q.size, q.size, &q.rgba);
                cache.qr = Some((link.to_owned(), img, q.size));
            }
            Err(e) => tracing::error!(error = %e, "cannot draw the QR code"),
        }
    }
    if let Some((_, img, size)) = &cache.qr {
        tv.set_qr(img.clone());
        tv.set_qr_modules(i32::try_from(*size).unwrap_or(0));
    }
}

/// One nearby channel's indicator: `network ✓`, `network …` (going out) or `network –`.
/// The "Nearby: network ✓ Bluetooth –" line of the order and red-packet screens.
fn show_nearby(tv: &Tv<'_>, mdns: &AnnounceState, ble: &AnnounceState) {
    let (text, state) = nearby("network", mdns);
    tv.set_announce_text(text.into());
    tv.set_announce_state(state);
    let (text, state) = nearby("Bluetooth", ble);
    tv.set_ble_text(text.into());
    tv.set_ble_state(state);
}

fn nearby(channel: &str, state: &AnnounceState) -> (String, i32) {
    match state {
        AnnounceState::Pending => (format!("{channel} …"), 0),
        AnnounceState::Live => (format!("{channel} ✓"), 1),
        AnnounceState::Failed(_) => (format!("{channel} –"), 2),
    }
}

/// The stand-in player: time played, of the film's length when known.
fn set_player(tv: &Tv<'_>, played_s: u64, length_s: Option<u64>) {
    match length_s {
        Some(total) => {
            let played = played_s.min(total);
            tv.set_play_time(format!("{} / {}", clock(played), clock(total)).into());
            tv.set_play_progress(played as f32 / total as f32);
        }
        None => {
            tv.set_play_time(clock(played_s).into());
            tv.set_play_progress(0.0);
        }
    }
}

fn card(cache: &mut RenderCache, app: &App, item: &protocol::CatalogItem) -> Card {
    let poster = cache.poster(&item.id, app.posters.get(&item.id));
    let price_text = match app.ownership(&item.id) {
        Ownership::NotOwned => price(&item.price),
        Ownership::Film => "✓ Yours".to_owned(),
        Ownership::Membership { .. } => "✓ Active".to_owned(),
    };
    Card {
        title: item.title.as_str().into(),
        price: price_text.into(),
        kind: kind_label(item.kind).into(),
        has_poster: poster.is_some(),
        poster: poster.unwrap_or_default(),
        tint: tint(&item.id),
    }
}

fn index(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

fn choice(c: Choice) -> i32 {
    match c {
        Choice::Primary => 0,
        Choice::Secondary => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_key(text: &str, expected: Option<Key>) {
        assert_eq!(key_from_text(text), expected, "{text:?}");
    }

    #[test]
    fn catalog_window_table() {
        // (first, focus, len) → first card on screen
        let cases = [
            ((0, 0, 4), 0),
            ((0, 3, 4), 0),
            ((0, 3, 9), 0),
            ((0, 4, 9), 1), // one step past the right edge scrolls by one
            ((1, 8, 9), 5), // a jump to the end shows the last four
            ((5, 5, 9), 5), // moving left inside the window does not scroll
            ((5, 4, 9), 4),
            ((5, 0, 9), 0),
            ((3, 1, 3), 0), // the catalog shrank: never past the start
            ((0, 0, 0), 0),
        ];
        for ((first, focus, len), want) in cases {
            assert_eq!(
                catalog_window(first, focus, len),
                want,
                "first {first}, focus {focus}, {len} cards"
            );
        }
    }

    #[test]
    fn remote_keys_table() {
        check_key(&SharedString::from(SlintKey::UpArrow), Some(Key::Up));
        check_key(&SharedString::from(SlintKey::DownArrow), Some(Key::Down));
        check_key(&SharedString::from(SlintKey::LeftArrow), Some(Key::Left));
        check_key(&SharedString::from(SlintKey::RightArrow), Some(Key::Right));
        check_key(&SharedString::from(SlintKey::Return), Some(Key::Ok));
        check_key(&SharedString::from(SlintKey::Escape), Some(Key::Back));
        check_key(&SharedString::from(SlintKey::Backspace), Some(Key::Back));
        check_key("7", Some(Key::Digit(7)));
        check_key("a", None);
        check_key("", None);
        check_key("12", None);
    }

    #[track_caller]
    fn check_phone(digits: &str, expected: &str) {
        assert_eq!(phone_display(digits), expected, "{digits:?}");
    }

    #[test]
    fn phone_display_table() {
        check_phone("", "");
        check_phone("1", "+1");
        check_phone("15", "+1 5");
        check_phone("1555", "+1 555");
        check_phone("15550", "+1 5550");
        check_phone("15550100001", "+1 555 010 0001");
        check_phone("447700900123", "+44 770 090 0123");
        check_phone("4915112345678", "+49 151 123 456 78");
        check_phone("123456789012345", "+1 234 567 890 123 45");
        assert!(phone_display(&"9".repeat(crate::state::MAX_PHONE_DIGITS)).len() <= 21);
    }

    #[test]
    fn quantities_do_not_break_across_lines() {
        let nb = |s: &str| s.replace(' ', "\u{a0}");
        assert_eq!(
            keep_quantities_together("to Venice. 1 h 52 min, HD."),
            format!("to Venice. {}, HD.", nb("1 h 52 min"))
        );
        assert_eq!(
            keep_quantities_together("for 30 days."),
            format!("for {}", nb("30 days."))
        );
        assert_eq!(
            keep_quantities_together("Delivered in 3–5 days."),
            format!("Delivered in {}", nb("3–5 days."))
        );
        assert_eq!(
            keep_quantities_together("no numbers here"),
            "no numbers here"
        );
    }

    #[test]
    fn film_lengths_come_from_the_description() {
        assert_eq!(film_length_s("A thriller. 1 h 52 min, HD."), Some(6720));
        assert_eq!(
            film_length_s("Nature. 1\u{a0}h\u{a0}31\u{a0}min, 4K."),
            Some(5460)
        );
        assert_eq!(film_length_s("Short: 45 min."), Some(2700));
        assert_eq!(film_length_s("Dimmable LED floor lamp."), None);
        assert_eq!(clock(film_length_s("1 h 52 min").unwrap()), "1:52:00");
    }

    #[test]
    fn every_phone_number_fits_its_field() {
        for digits in ["1", "15550100001", "447700900123", "123456789012345"] {
            let shown = phone_display(digits);
            let size = phone_digits_size(&shown);
            let width = size * MONO_ADVANCE_EM * shown.chars().count() as f32;
            assert!(width <= PHONE_FIELD_WIDTH, "{shown:?} at {size}");
            assert!(size >= 60.0, "{shown:?} at {size}");
        }
        assert_eq!(phone_digits_size("+1 555 010 0001"), PHONE_DIGITS_MAX_SIZE);
    }

    #[track_caller]
    fn check_date(ms: i64, expected: &str) {
        assert_eq!(date(ms), expected);
    }

    #[test]
    fn dates_table() {
        check_date(0, "1 Jan 1970");
        check_date(951_782_400_000, "29 Feb 2000");
        check_date(1_795_392_000_000, "23 Nov 2026");
    }

    #[test]
    fn prices_and_clocks() {
        let eur = protocol::Currency::parse("EUR").unwrap();
        assert_eq!(price(&Money::new(499, eur)), "€4.99");
        let chf = protocol::Currency::parse("CHF").unwrap();
        assert_eq!(price(&Money::new(1250, chf)), "12.50 CHF");
        assert_eq!(clock(65), "1:05");
        assert_eq!(clock(3723), "1:02:03");
    }
}
