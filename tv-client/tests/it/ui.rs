//! UI tests: the real Slint window on the headless testing backend with the software
//! renderer, driven only by key events. Screenshots are decoded like a phone would.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use i_slint_backend_testing::{TestingBackend, TestingBackendOptions};
use protocol::{OrderStatus, PayLink};
use slint::platform::{Key as SlintKey, WindowEvent};
use slint::{ComponentHandle, Model};
use tv_client::ble::{BleAnnouncer, Peripheral};
use tv_client::runtime::{Backend, Runtime};
use tv_client::slint_ui::{AppWindow, Page, Tv};
use tv_client::state::{AnnounceState, App, Failure, Input, ItemAction, PhonePhase, Screen};
use tv_client::ui::Shell;

use crate::support::*;

/// Longest wait for the backend to answer in these tests.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes this test thread render headlessly with the software renderer. Slint's platform
/// is per thread and every test runs on its own thread.
fn init_headless() {
    slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
        mock_time: true,
        threading: false,
        renderer_name: Some("software".into()),
    })))
    .expect("the testing platform is set once per test thread");
}

/// The app in a headless window of the given size, with inputs pumped by the test.
pub(crate) struct Ui<B: Backend> {
    pub(crate) shell: Rc<RefCell<Shell<B>>>,
    window: AppWindow,
    rx: mpsc::Receiver<Input>,
    _io: tokio::runtime::Runtime,
}

impl<B: Backend> Ui<B> {
    pub(crate) fn start(
        backend: B,
        width: u32,
        height: u32,
        announcer: Result<tv_client::announce::Announcer, String>,
    ) -> Self {
        Self::start_with_radio(backend, width, height, announcer, SimulatedRadio)
    }

    /// As [`Ui::start`], with the BLE radio `radio`.
    pub(crate) fn start_with_radio<P: Peripheral>(
        backend: B,
        width: u32,
        height: u32,
        announcer: Result<tv_client::announce::Announcer, String>,
        radio: P,
    ) -> Self {
        init_headless();
        let io = io_runtime();
        let (sink, rx) = channel_sink();
        let window = AppWindow::new().expect("window on the testing backend");
        window
            .window()
            .set_size(slint::PhysicalSize::new(width, height));
        window.show().expect("show");
        let (app, initial) = App::init(fresh_identity(), 0);
        // A simulated radio: the runtime's real BLE path (announcer task, status reported
        // to the screen) over a peripheral that accepts every advert.
        let runtime = Runtime::new(backend, io.handle().clone(), sink, announcer)
            .with_ble(BleAnnouncer::start(io.handle(), radio));
        let shell = Shell::start(window.clone_strong(), app, initial, runtime);
        Self {
            shell,
            window,
            rx,
            _io: io,
        }
    }

    pub(crate) fn press(&self, key: SlintKey) {
        self.press_text(key.into());
    }

    pub(crate) fn press_text(&self, text: slint::SharedString) {
        // No borrow of the shell may be held here: the key callback takes one.
        let w = self.window.window();
        w.dispatch_event(WindowEvent::KeyPressed { text: text.clone() });
        w.dispatch_event(WindowEvent::KeyReleased { text });
    }

    /// Pumps backend answers into the app until `done(app)` or the timeout.
    pub(crate) fn wait(&self, what: &str, done: impl Fn(&App) -> bool) {
        let reached = pump_until(
            &self.rx,
            ANSWER_TIMEOUT,
            |input| self.shell.borrow_mut().dispatch(input),
            || done(&self.shell.borrow().app),
        );
        assert!(
            reached,
            "timed out waiting for {what}; screen: {:?}",
            self.shell.borrow().app.screen
        );
    }

    /// Pumps backend answers into the app until `done(app)`; false after `timeout`.
    pub(crate) fn reached(&self, timeout: Duration, done: impl Fn(&App) -> bool) -> bool {
        pump_until(
            &self.rx,
            timeout,
            |input| self.shell.borrow_mut().dispatch(input),
            || done(&self.shell.borrow().app),
        )
    }

    /// Feeds an input as if it came from the server.
    pub(crate) fn inject(&self, input: Input) {
        self.shell.borrow_mut().dispatch(input);
    }

    pub(crate) fn page(&self) -> Page {
        self.window.global::<Tv>().get_page()
    }

    pub(crate) fn focus(&self) -> i32 {
        self.window.global::<Tv>().get_focus()
    }

    /// What the window shows, property by property.
    pub(crate) fn tv(&self) -> Tv<'_> {
        self.window.global::<Tv>()
    }

    /// Types `digits` with the remote's digit keys.
    pub(crate) fn type_digits(&self, digits: &str) {
        for d in digits.chars() {
            self.press_text(d.to_string().into());
        }
    }

    pub(crate) fn snapshot(&self) -> image::RgbaImage {
        let buf = self.window.window().take_snapshot().expect("snapshot");
        image::RgbaImage::from_raw(buf.width(), buf.height(), buf.as_bytes().to_vec())
            .expect("snapshot buffer has width × height RGBA pixels")
    }
}

/// A BLE peripheral that is always on the air (there is no adapter here).
struct SimulatedRadio;

impl Peripheral for SimulatedRadio {
    async fn start(
        &mut self,
        _advert: [u8; protocol::ble::Advert::LEN],
        _record_json: std::sync::Arc<Vec<u8>>,
    ) -> Result<(), tv_client::ble::BleError> {
        Ok(())
    }
    async fn stop(&mut self) {}
}

/// A machine without Bluetooth: every advert fails the way BlueZ fails with no bus.
struct RadioWithoutBus;

impl Peripheral for RadioWithoutBus {
    async fn start(
        &mut self,
        _advert: [u8; protocol::ble::Advert::LEN],
        _record_json: std::sync::Arc<Vec<u8>>,
    ) -> Result<(), tv_client::ble::BleError> {
        Err(tv_client::ble::BleError::NoBus(
            "Failed to connect to socket /run/dbus/system_bus_socket: No such file or directory (os error 2)".into(),
        ))
    }
    async fn stop(&mut self) {}
}

/// Where screenshots go: `target/tmp/tv-client/`.
pub(crate) fn artifact(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tv-client");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The screenshots the README shows, refreshed in `assets/screenshots/` on request.
const README_SHOTS: [&str; 2] = ["catalog-1920x1080.png", "order-1920x1080.png"];

/// Saves a screenshot; with `COUCHPAY_UPDATE_SCREENSHOTS=1` also into
/// `assets/screenshots/` for the README.
pub(crate) fn save(img: &image::RgbaImage, name: &str) {
    let path = artifact(name);
    img.save(&path).unwrap();
    if README_SHOTS.contains(&name) && std::env::var_os("COUCHPAY_UPDATE_SCREENSHOTS").is_some() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        img.save(dir.join(name)).unwrap();
    }
}

/// Every QR code rqrr finds in the picture, decoded.
pub(crate) fn decode_qr(img: &image::RgbaImage) -> Vec<String> {
    let gray = image::imageops::grayscale(img);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        gray.width() as usize,
        gray.height() as usize,
        |x, y| gray.get_pixel(x as u32, y as u32).0[0],
    );
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, content)| content))
        .collect()
}

/// From launch to the order screen using keys only: Right, OK (open), OK (buy).
/// Returns the pay link of the order on screen.
pub(crate) fn walk_to_order<B: Backend>(ui: &Ui<B>) -> PayLink {
    ui.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    assert_eq!(ui.page(), Page::Catalog);
    ui.wait("the posters", |a| a.posters.len() == a.items().len());
    ui.press(SlintKey::RightArrow);
    assert_eq!(ui.focus(), 1);
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Item);
    assert_eq!(ui.focus(), 0, "Buy is focused");
    ui.press(SlintKey::Return);
    ui.wait("the order", |a| a.order_screen().is_some());
    assert_eq!(ui.page(), Page::Order);
    ui.shell
        .borrow()
        .app
        .order_screen()
        .unwrap()
        .order
        .pay_link
        .clone()
}

/// Drives the UI at one resolution and checks that the QR on screen scans to the pay link.
pub(crate) fn check_order_screen_scans<B: Backend>(
    backend: B,
    width: u32,
    height: u32,
    announcer: Result<tv_client::announce::Announcer, String>,
    shots: Option<&str>,
) {
    let ui = Ui::start(backend, width, height, announcer);
    ui.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    ui.wait("the posters", |a| a.posters.len() == a.items().len());
    let shot = ui.snapshot();
    assert_eq!((shot.width(), shot.height()), (width, height));
    if let Some(prefix) = shots {
        save(&shot, &format!("{prefix}catalog-{width}x{height}.png"));
    }
    let link = walk_to_order(&ui);
    // Shoot the screen as a viewer sees it a moment later: stream live, announced.
    ui.wait("the live stream", |a| {
        a.order_screen().is_some_and(|o| {
            o.stream.phase == tv_client::state::StreamPhase::Live
                && o.announce != tv_client::state::AnnounceState::Pending
                && o.ble != tv_client::state::AnnounceState::Pending
        })
    });
    let tv = ui.window.global::<Tv>();
    assert_eq!(tv.get_ble_text(), "Bluetooth ✓");
    assert_eq!(tv.get_ble_state(), 1);
    let shot = ui.snapshot();
    assert_eq!((shot.width(), shot.height()), (width, height));
    if let Some(prefix) = shots {
        save(&shot, &format!("{prefix}order-{width}x{height}.png"));
    }
    let decoded = decode_qr(&shot);
    assert_eq!(
        decoded,
        vec![link.to_string()],
        "the QR on screen is the pay link"
    );
    assert_eq!(PayLink::parse(&decoded[0]).unwrap(), link);
}

#[test]
fn order_screen_qr_scans_at_1080p_with_fake_backend() {
    check_order_screen_scans(
        FakeBackend::default(),
        1920,
        1080,
        Err("off".into()),
        Some("fake-"),
    );
}

#[test]
fn a_long_catalog_scrolls_to_keep_the_focused_card_on_screen() {
    let fake = FakeBackend::default();
    fake.state.lock().unwrap().extra_films = 5;
    let ui = Ui::start(fake.clone(), 1920, 1080, Err("off in this test".into()));
    ui.wait("the nine-card catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. }) && a.items().len() == 9
    });
    let tv = ui.window.global::<Tv>();
    let at = |focus: i32, first: i32| {
        assert_eq!((ui.focus(), tv.get_catalog_first()), (focus, first));
    };
    at(0, 0);
    for _ in 0..3 {
        ui.press(SlintKey::RightArrow);
    }
    at(3, 0);
    ui.press(SlintKey::RightArrow);
    at(4, 1);
    for _ in 0..10 {
        ui.press(SlintKey::RightArrow);
    }
    at(8, 5);
    ui.wait("the posters", |a| a.posters.len() == a.items().len());
    save(&ui.snapshot(), "catalog-scrolled-1920x1080.png");
    for _ in 0..3 {
        ui.press(SlintKey::LeftArrow);
    }
    at(5, 5);
    ui.press(SlintKey::LeftArrow);
    at(4, 4);
    // Up to My purchases leaves the row where it was; Down comes back to the same card.
    ui.press(SlintKey::UpArrow);
    at(-1, 4);
    ui.press(SlintKey::DownArrow);
    at(4, 4);
    // A digit opens that card, wherever the row is.
    ui.press_text("9".into());
    assert_eq!(ui.page(), Page::Item);
    assert_eq!(tv.get_item().title, "Extra Film 5");
}

#[test]
fn every_screen_is_entered_and_left_with_remote_keys_only() {
    let fake = FakeBackend::default();
    fake.state.lock().unwrap().down = true;
    let ui = Ui::start(fake.clone(), 1280, 720, Err("off in this test".into()));

    // Server down at start: a problem screen that OK retries; it comes back up.
    ui.wait("the problem screen", |a| {
        matches!(a.screen, Screen::Problem(_))
    });
    assert_eq!(ui.page(), Page::Problem);
    save(&ui.snapshot(), "problem-1280x720.png");
    fake.state.lock().unwrap().down = false;
    ui.press(SlintKey::Return);
    ui.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    assert_eq!((ui.page(), ui.focus()), (Page::Catalog, 0));
    ui.wait("the posters", |a| a.posters.len() == a.items().len());

    // Tab is swallowed: focus does not wander off (and so cannot get trapped).
    ui.press(SlintKey::Tab);
    assert_eq!((ui.page(), ui.focus()), (Page::Catalog, 0));

    // Arrows move along the row and stop at its ends.
    for _ in 0..10 {
        ui.press(SlintKey::RightArrow);
    }
    assert_eq!(ui.focus(), 3);
    for _ in 0..10 {
        ui.press(SlintKey::LeftArrow);
    }
    assert_eq!(ui.focus(), 0);

    // My purchases: Up, OK in; Back out.
    ui.press(SlintKey::UpArrow);
    assert_eq!(ui.focus(), -1);
    ui.press(SlintKey::Return);
    ui.wait("the purchases", |a| {
        matches!(a.screen, Screen::Purchases { list: Some(_), .. })
    });
    assert_eq!(ui.page(), Page::Purchases);
    save(&ui.snapshot(), "purchases-1280x720.png");
    ui.press(SlintKey::Escape);
    assert_eq!(ui.page(), Page::Catalog);
    ui.press(SlintKey::DownArrow);
    assert_eq!(ui.focus(), 0);

    // Item: OK in, Backspace out; and OK on its Back button.
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Item);
    save(&ui.snapshot(), "item-1280x720.png");
    ui.press(SlintKey::Backspace);
    assert_eq!(ui.page(), Page::Catalog);
    ui.press(SlintKey::Return);
    ui.press(SlintKey::RightArrow);
    assert_eq!(ui.focus(), 1);
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Catalog);

    // Order: in with OK on Buy, out with Back (which cancels it on the server).
    ui.press(SlintKey::Return);
    ui.press(SlintKey::Return);
    ui.wait("the order", |a| a.order_screen().is_some());
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();
    ui.press(SlintKey::Escape);
    assert_eq!(ui.page(), Page::Item);
    let st = fake.state.clone();
    ui.wait("the cancel", |_| {
        st.lock().unwrap().orders[&order.id].status == OrderStatus::Cancelled
    });

    // Expired: entered when the server says so, left with OK (new code) or Back.
    ui.press(SlintKey::Return);
    ui.wait("the order", |a| a.order_screen().is_some());
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();
    ui.inject(Input::OrderUpdate(with_status(
        &order,
        OrderStatus::Expired,
    )));
    assert_eq!(ui.page(), Page::Expired);
    save(&ui.snapshot(), "expired-1280x720.png");
    ui.press(SlintKey::Escape);
    assert_eq!(ui.page(), Page::Item);

    // Paid: entered when the phone pays, left with OK.
    ui.press(SlintKey::Return);
    ui.wait("the order", |a| a.order_screen().is_some());
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();
    ui.inject(Input::OrderUpdate(with_status(&order, OrderStatus::Paid)));
    assert_eq!(ui.page(), Page::Paid);
    save(&ui.snapshot(), "paid-1280x720.png");
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Catalog);

    // Digits jump straight to an item.
    ui.press_text("4".into());
    assert_eq!(ui.page(), Page::Item);
    ui.press(SlintKey::Escape);
    assert_eq!((ui.page(), ui.focus()), (Page::Catalog, 3));
}

/// Runs `check_order_screen_scans` against the real stub server (which serves the posters).
fn check_against_stub_server(width: u32, height: u32) {
    let io = io_runtime();
    let server = io.block_on(server_stub::testing::TestServer::start());
    check_order_screen_scans(
        tv_client::runtime::HttpBackend::new(server.url.clone()),
        width,
        height,
        Ok(crate::mdns::loopback_announcer()),
        Some(""),
    );
    io.block_on(server.stop());
}

#[test]
fn order_screen_qr_scans_at_1920x1080_against_stub_server() {
    check_against_stub_server(1920, 1080);
}

#[test]
fn order_screen_qr_scans_at_1280x720_against_stub_server() {
    check_against_stub_server(1280, 720);
}

/// Presses `key` `n` times.
fn press_n<B: Backend>(ui: &Ui<B>, key: SlintKey, n: usize) {
    for _ in 0..n {
        ui.press(key);
    }
}

/// SPEC W2 through the real window: the phone pad driven with digit keys, arrows, OK and
/// Back; +1 prefilled; a number too short is refused on screen; a complete number puts
/// the focus on ✓; the sent number waits for payment; the longest numbers fit.
fn check_phone_pad(width: u32, height: u32) {
    let fake = FakeBackend::default();
    let ui = Ui::start(fake.clone(), width, height, Err("off in this test".into()));
    let size = format!("{width}x{height}");
    walk_to_order(&ui);
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();

    // "Pay with phone number" is focused first: harmless. "Cancel order" is second.
    assert_eq!(ui.focus(), 0, "Pay with phone number is focused first");
    save(&ui.snapshot(), &format!("order-phone-button-{size}.png"));
    ui.press(SlintKey::Return);
    assert_eq!((ui.page(), ui.focus()), (Page::Phone, 4), "pad up, on 5");
    assert_eq!(
        ui.tv().get_phone_digits(),
        "+1",
        "the country code is prefilled"
    );
    save(&ui.snapshot(), &format!("phone-empty-{size}.png"));

    // Digit keys type after it and the focus follows them; ▼▼ reach 0 and OK types it.
    ui.type_digits("555");
    assert_eq!(ui.focus(), 4, "on the 5 just typed");
    press_n(&ui, SlintKey::DownArrow, 2);
    assert_eq!(ui.focus(), 10);
    ui.press(SlintKey::Return);
    assert_eq!(ui.tv().get_phone_digits(), "+1 5550");

    // ✓ with a number too short: refused on screen, nothing sent.
    ui.press(SlintKey::RightArrow);
    assert_eq!(ui.focus(), 11, "on ✓");
    assert!(!ui.tv().get_phone_can_send());
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Phone);
    assert!(
        ui.tv().get_phone_message().contains("too short"),
        "{}",
        ui.tv().get_phone_message()
    );
    save(&ui.snapshot(), &format!("phone-refused-{size}.png"));

    // Backspace deletes the last digit; the rest of alice's number makes it complete,
    // and the focus is on ✓ at once.
    ui.press(SlintKey::Backspace);
    ui.type_digits("0100001");
    assert_eq!(ui.tv().get_phone_digits(), "+1 555 010 0001");
    assert!(ui.tv().get_phone_can_send());
    assert_eq!(ui.focus(), 11, "a complete number puts the focus on ✓");
    assert_eq!(ui.tv().get_phone_message(), "", "typing clears the message");
    save(&ui.snapshot(), &format!("phone-pad-{size}.png"));

    // OK sends; the waiting screen names the masked number.
    ui.press(SlintKey::Return);
    ui.wait("the waiting screen", |a| {
        a.order_screen()
            .and_then(|o| o.phone.as_ref())
            .is_some_and(|p| matches!(p.phase, PhonePhase::Sent { .. }))
    });
    assert_eq!(ui.page(), Page::PhoneSent);
    let phone = protocol::PhoneNumber::parse("+15550100001").unwrap();
    assert_eq!(
        fake.state.lock().unwrap().phone_requests,
        vec![(order.id.clone(), phone.clone())]
    );
    let detail = ui.tv().get_phone_sent_detail();
    assert!(
        detail.contains("We sent a code to +••••••••001"),
        "{detail}"
    );
    save(&ui.snapshot(), &format!("phone-sent-{size}.png"));

    // BACK: the order screen again, the order untouched and the phone button focused.
    ui.press(SlintKey::Escape);
    assert_eq!((ui.page(), ui.focus()), (Page::Order, 0));
    assert_eq!(
        fake.state.lock().unwrap().orders[&order.id].status,
        OrderStatus::Pending
    );

    // A digit key on the order screen opens the pad with it; BACK deletes it, and BACK
    // with only the prefilled code returns to the order.
    ui.type_digits("7");
    assert_eq!(
        (ui.page(), ui.tv().get_phone_digits().as_str()),
        (Page::Phone, "+1 7")
    );
    ui.press(SlintKey::Escape);
    assert_eq!(
        (ui.page(), ui.tv().get_phone_digits().as_str()),
        (Page::Phone, "+1")
    );
    ui.press(SlintKey::Escape);
    assert_eq!(ui.page(), Page::Order);

    // Another country: ⌫ on the pad (▼▼◀ from 5) deletes the +1. A UK number has 12
    // digits and fits at full size.
    ui.press(SlintKey::Return);
    press_n(&ui, SlintKey::DownArrow, 2);
    ui.press(SlintKey::LeftArrow);
    ui.press(SlintKey::Return);
    assert_eq!(ui.tv().get_phone_digits(), "");
    ui.type_digits("447700900123");
    assert_eq!(ui.tv().get_phone_digits(), "+44 770 090 0123");
    assert_eq!(ui.focus(), 11, "a whole UK number: on ✓");
    check_phone_digits_fit(&ui, &format!("phone-12-digits-{size}.png"));
    press_n(&ui, SlintKey::Backspace, 12);
    assert_eq!(ui.tv().get_phone_digits(), "");

    // An unbound number gets the pay link; the payment arrives while waiting.
    ui.type_digits("4915112345678");
    assert_eq!(ui.tv().get_phone_digits(), "+49 151 123 456 78");
    ui.type_digits("99");
    assert_eq!(ui.tv().get_phone_digits(), "+49 151 123 456 7899");
    check_phone_digits_fit(&ui, &format!("phone-longest-{size}.png"));
    // Digit 16 is refused: 15 is the longest phone number there is.
    ui.type_digits("9");
    assert!(ui.tv().get_phone_message().contains("at most 15 digits"));
    press_n(&ui, SlintKey::Backspace, 2);
    assert_eq!(ui.tv().get_phone_digits(), "+49 151 123 456 78");
    assert_eq!(ui.focus(), 11, "still on ✓");
    ui.press(SlintKey::Return);
    ui.wait("the waiting screen", |a| {
        a.order_screen()
            .and_then(|o| o.phone.as_ref())
            .is_some_and(|p| matches!(p.phase, PhonePhase::Sent { .. }))
    });
    assert!(
        ui.tv()
            .get_phone_sent_detail()
            .contains("We sent a payment link to"),
    );
    ui.inject(Input::OrderUpdate(with_status(&order, OrderStatus::Paid)));
    assert_eq!(ui.page(), Page::Paid);
}

/// The phone number on the pad screen is drawn whole inside its field: the size the UI
/// picked fits the field, and no digit's ink reaches the field's right edge.
fn check_phone_digits_fit<B: Backend>(ui: &Ui<B>, shot: &str) {
    use tv_client::ui::{MONO_ADVANCE_EM, PHONE_FIELD_WIDTH};
    let shown = ui.tv().get_phone_digits().to_string();
    let size = ui.tv().get_phone_digits_size();
    let chars = shown.chars().count() as f32;
    assert!(
        size * MONO_ADVANCE_EM * chars <= PHONE_FIELD_WIDTH,
        "{shown:?} at {size} u is wider than its field"
    );
    assert!(
        size >= 60.0,
        "{shown:?} is still readable from the sofa ({size} u)"
    );

    let img = ui.snapshot();
    save(&img, shot);
    let u = img.height() as f32 / 1080.0;
    let px = |v: f32| (v * u).round() as u32;
    // The field: a panel from x = 120 u with a 4 u amber border; its rows are found
    // from the left border. The text area is 40 u inside on each side.
    let amber = |p: &image::Rgba<u8>| p[0] > 200 && p[1] > 140 && p[1] < 210 && p[2] < 90;
    // (Both borders: the wordmark's amber square is at x = 120 u too.)
    let (left_border, right_border) = (px(121.5), px(1050.5));
    let rows: Vec<u32> = (0..img.height())
        .filter(|&y| amber(img.get_pixel(left_border, y)) && amber(img.get_pixel(right_border, y)))
        .collect();
    assert!(
        rows.len() > 20,
        "{shown:?}: the number's field is not on screen"
    );
    let (top, bottom) = (rows[0] + px(10.0), rows[rows.len() - 1] - px(10.0));
    let field_right = px(1052.0) - px(6.0);
    let bright = |p: &image::Rgba<u8>| p[0] > 200 && p[1] > 200 && p[2] > 200;
    let mut ink_right = 0;
    for y in top..bottom {
        for x in px(124.0)..field_right {
            if bright(img.get_pixel(x, y)) {
                ink_right = ink_right.max(x);
            }
        }
    }
    let text_left = px(160.0);
    let expected = size * u * MONO_ADVANCE_EM * chars;
    assert!(
        (ink_right as f32) < (text_left as f32 + PHONE_FIELD_WIDTH * u),
        "{shown:?}: ink reaches x = {ink_right}, past the field's text area"
    );
    assert!(
        (ink_right as f32) > text_left as f32 + 0.9 * expected,
        "{shown:?}: ink ends at x = {ink_right}, short of the whole number ({expected} px)"
    );
}

#[test]
fn phone_pad_is_driven_with_remote_keys_at_1920x1080() {
    check_phone_pad(1920, 1080);
}

#[test]
fn phone_pad_is_driven_with_remote_keys_at_1280x720() {
    check_phone_pad(1280, 720);
}

/// Waits for the catalog, its posters and what the TV owns.
fn wait_for_catalog<B: Backend>(ui: &Ui<B>) {
    ui.wait("the catalog and purchases", |a| {
        matches!(a.screen, Screen::Catalog { .. })
            && a.posters.len() == a.items().len()
            && a.purchases().is_some()
    });
}

#[test]
fn an_owned_film_shows_play_and_plays_in_the_window() {
    let fake = FakeBackend::default();
    let film = catalog().items[0].clone();
    {
        let mut st = fake.state.lock().unwrap();
        st.entitlements = vec![entitlement(&film, 1_700_000_000_000, None)];
        st.owned = vec![film.id.clone()];
    }
    let ui = Ui::start(fake.clone(), 1920, 1080, Err("off in this test".into()));
    wait_for_catalog(&ui);
    assert_eq!(ui.tv().get_cards().row_data(0).unwrap().price, "✓ Yours");
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Item);
    assert_eq!((ui.tv().get_item_action(), ui.focus()), (1, 0));
    assert_eq!(ui.tv().get_buy_label(), "▶  Play");
    save(&ui.snapshot(), "item-owned-film-1920x1080.png");
    // OK plays it on the same player as after paying; nothing is ordered.
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Paid);
    assert_eq!(ui.tv().get_paid_kind(), "video");
    assert_eq!(ui.tv().get_paid_detail(), "Now playing: Night Train");
    assert_eq!(
        ui.tv().get_play_time(),
        "0:00 / 1:52:00",
        "the film's own length"
    );
    save(&ui.snapshot(), "playing-owned-film-1920x1080.png");
    assert_eq!(
        fake.state.lock().unwrap().created,
        0,
        "no order for an owned film"
    );
    // Back stops it; the film's page is up again.
    ui.press(SlintKey::Escape);
    assert_eq!(ui.page(), Page::Item);

    // My purchases: OK on the film plays it.
    ui.press(SlintKey::Escape);
    ui.press_text("0".into());
    ui.wait("the purchases", |a| {
        matches!(a.screen, Screen::Purchases { list: Some(_), .. })
    });
    assert_eq!(ui.tv().get_rows().row_count(), 1);
    ui.press(SlintKey::Return);
    assert_eq!(
        (ui.page(), ui.tv().get_paid_kind().as_str()),
        (Page::Paid, "video")
    );
    ui.press(SlintKey::Escape);
    ui.wait("the purchases again", |a| {
        matches!(a.screen, Screen::Purchases { list: Some(_), .. })
    });
    assert_eq!(ui.page(), Page::Purchases);
    assert_eq!(fake.state.lock().unwrap().created, 0);
}

#[test]
fn no_second_order_for_an_owned_film_even_when_the_server_must_refuse_it() {
    let fake = FakeBackend::default();
    let film = catalog().items[1].clone();
    // The list does not show it yet (say it was paid on another screen a moment ago),
    // but the server knows: it answers 409 already_owned.
    fake.state.lock().unwrap().owned = vec![film.id.clone()];
    let ui = Ui::start(fake.clone(), 1280, 720, Err("off in this test".into()));
    wait_for_catalog(&ui);
    ui.press(SlintKey::RightArrow);
    ui.press(SlintKey::Return);
    assert_eq!(ui.tv().get_buy_label(), "Buy for €3.49");
    fake.state.lock().unwrap().entitlements = vec![entitlement(&film, 1_700_000_000_000, None)];
    ui.press(SlintKey::Return);
    ui.wait("the owned state", |a| a.item_action(1) == ItemAction::Play);
    assert_eq!(ui.page(), Page::Item, "the owned state, not an error");
    assert_eq!(ui.tv().get_buy_label(), "▶  Play");
    save(&ui.snapshot(), "item-already-owned-1280x720.png");
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Paid);
    assert_eq!(fake.state.lock().unwrap().created, 0);

    // Paying a film in the window makes it owned at once, too.
    ui.press(SlintKey::Escape);
    ui.press(SlintKey::Escape);
    ui.press(SlintKey::LeftArrow);
    let link = {
        ui.press(SlintKey::Return);
        ui.press(SlintKey::Return);
        ui.wait("the order", |a| a.order_screen().is_some());
        ui.shell.borrow().app.order_screen().unwrap().order.clone()
    };
    ui.inject(Input::OrderUpdate(with_status(&link, OrderStatus::Paid)));
    ui.press(SlintKey::Escape);
    ui.press(SlintKey::Return);
    assert_eq!(ui.tv().get_buy_label(), "▶  Play");
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Paid);
    assert_eq!(
        fake.state.lock().unwrap().created,
        1,
        "one order, the one paid"
    );
}

#[test]
fn an_active_membership_shows_until_when_and_offers_only_back() {
    let fake = FakeBackend::default();
    let plus = catalog().items[2].clone();
    let until = 4_102_444_800_000; // 1 Jan 2100
    fake.state.lock().unwrap().entitlements =
        vec![entitlement(&plus, 1_700_000_000_000, Some(until))];
    let ui = Ui::start(fake.clone(), 1920, 1080, Err("off in this test".into()));
    ui.inject(Input::WallClock {
        unix_ms: 1_800_000_000_000,
    });
    wait_for_catalog(&ui);
    ui.press_text("3".into());
    assert_eq!(ui.tv().get_item_action(), 2);
    assert_eq!(ui.tv().get_item_owned_text(), "✓ Active until 1 Jan 2100");
    assert_eq!(ui.focus(), 1, "Back is the only button, and focused");
    save(&ui.snapshot(), "item-active-membership-1920x1080.png");
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Catalog);
    assert_eq!(fake.state.lock().unwrap().created, 0);
}

#[test]
fn the_order_screen_opens_with_a_harmless_button_focused() {
    let fake = FakeBackend::default();
    let ui = Ui::start(fake.clone(), 1920, 1080, Err("off in this test".into()));
    walk_to_order(&ui);
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();
    // One stray OK: the phone pad, not a cancelled order.
    ui.press(SlintKey::Return);
    assert_eq!(ui.page(), Page::Phone);
    ui.press(SlintKey::Escape);
    assert_eq!((ui.page(), ui.focus()), (Page::Order, 0));
    assert_eq!(
        fake.state.lock().unwrap().orders[&order.id].status,
        OrderStatus::Pending
    );
}

/// Every string the UI model holds: the `Tv` global's text properties, the cards, the
/// purchase rows and the item on screen.
fn model_strings(tv: &Tv<'_>) -> Vec<String> {
    let mut all: Vec<String> = [
        tv.get_tv_name(),
        tv.get_item_kind(),
        tv.get_item_merchant(),
        tv.get_item_description(),
        tv.get_buy_label(),
        tv.get_item_owned_text(),
        tv.get_code(),
        tv.get_order_title(),
        tv.get_order_price(),
        tv.get_order_merchant(),
        tv.get_countdown(),
        tv.get_time_left_text(),
        tv.get_announce_text(),
        tv.get_ble_text(),
        tv.get_stream_text(),
        tv.get_phone_digits(),
        tv.get_phone_message(),
        tv.get_phone_sent_title(),
        tv.get_phone_sent_detail(),
        tv.get_phone_sent_status(),
        tv.get_paid_title(),
        tv.get_paid_detail(),
        tv.get_play_time(),
        tv.get_expired_detail(),
        tv.get_problem_title(),
        tv.get_problem_detail(),
        tv.get_problem_status(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let item = tv.get_item();
    all.extend([item.title, item.price, item.kind].map(|s| s.to_string()));
    for c in tv.get_cards().iter() {
        all.extend([c.title, c.price, c.kind].map(|s| s.to_string()));
    }
    for r in tv.get_rows().iter() {
        all.extend([r.title, r.kind, r.detail].map(|s| s.to_string()));
    }
    all
}

/// What developers read and viewers must not: flags, URLs, OS and library errors.
const DEVELOPER_TEXT: [&str; 12] = [
    "--",
    "http",
    "://",
    "os error",
    "failed to connect",
    "error sending request",
    "d-bus",
    "dbus",
    "bluez",
    "mdns",
    "already_owned",
    "internal:",
];

#[track_caller]
fn check_plain<B: Backend>(ui: &Ui<B>, screen: &str) {
    for text in model_strings(&ui.tv()) {
        let lower = text.to_lowercase();
        for bad in DEVELOPER_TEXT {
            assert!(
                !lower.contains(bad),
                "{screen}: {text:?} shows developer text ({bad:?})"
            );
        }
    }
}

#[test]
fn no_screen_shows_flags_urls_or_os_errors() {
    let fake = FakeBackend::default();
    let items = catalog().items;
    {
        let mut st = fake.state.lock().unwrap();
        st.down = true;
        st.entitlements = vec![
            entitlement(&items[0], 1_700_000_000_000, None),
            entitlement(&items[2], 1_700_000_000_000, Some(4_102_444_800_000)),
        ];
    }
    // No radio at all: mDNS failed with an OS error, BLE has no D-Bus.
    let ui = Ui::start_with_radio(
        fake.clone(),
        1280,
        720,
        Err("mDNS is unavailable: Failed to bind --mdns-interface all (os error 19)".into()),
        RadioWithoutBus,
    );
    check_plain(&ui, "starting");
    ui.wait("the problem screen", |a| {
        matches!(a.screen, Screen::Problem(_))
    });
    assert_eq!(ui.tv().get_problem_title(), "Can't reach Couchpay");
    assert!(
        ui.tv().get_problem_status().starts_with("Retrying in "),
        "{}",
        ui.tv().get_problem_status()
    );
    check_plain(&ui, "offline");
    save(&ui.snapshot(), "problem-offline-1280x720.png");

    fake.state.lock().unwrap().down = false;
    ui.press(SlintKey::Return);
    wait_for_catalog(&ui);
    check_plain(&ui, "catalog");

    // An owned film: its page, the player.
    ui.press(SlintKey::Return);
    check_plain(&ui, "owned film");
    ui.press(SlintKey::Return);
    check_plain(&ui, "player");
    ui.press(SlintKey::Escape);
    ui.press(SlintKey::Escape);
    // An active membership.
    ui.press_text("3".into());
    check_plain(&ui, "active membership");
    ui.press(SlintKey::Escape);

    // A film to buy, its order screen with both radios off.
    ui.press_text("2".into());
    check_plain(&ui, "item");
    ui.press(SlintKey::Return);
    ui.wait("the order with radios settled", |a| {
        a.order_screen().is_some_and(|o| {
            o.announce != AnnounceState::Pending && o.ble != AnnounceState::Pending
        })
    });
    assert_eq!(
        (
            ui.tv().get_announce_text().as_str(),
            ui.tv().get_ble_text().as_str()
        ),
        ("network –", "Bluetooth –")
    );
    check_plain(&ui, "order, radios off");
    save(&ui.snapshot(), "order-radios-off-1280x720.png");
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();

    // The pad, a send that cannot reach the server, then one that works.
    ui.press(SlintKey::Return);
    ui.type_digits("5550100001");
    check_plain(&ui, "phone pad");
    fake.state.lock().unwrap().down = true;
    ui.press(SlintKey::Return);
    ui.wait("the send failure", |a| {
        a.order_screen()
            .and_then(|o| o.phone.as_ref())
            .is_some_and(|p| matches!(p.phase, PhonePhase::Typing { message: Some(_) }))
    });
    check_plain(&ui, "phone send failed");
    fake.state.lock().unwrap().down = false;
    ui.press(SlintKey::Return);
    ui.wait("the waiting screen", |a| {
        a.order_screen()
            .and_then(|o| o.phone.as_ref())
            .is_some_and(|p| matches!(p.phase, PhonePhase::Sent { .. }))
    });
    check_plain(&ui, "phone sent");
    ui.press(SlintKey::Escape);

    // Expired, then paid.
    ui.inject(Input::OrderUpdate(with_status(
        &order,
        OrderStatus::Expired,
    )));
    check_plain(&ui, "expired");
    ui.press(SlintKey::Return);
    ui.wait("a fresh order", |a| a.order_screen().is_some());
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();
    ui.inject(Input::OrderUpdate(with_status(&order, OrderStatus::Paid)));
    check_plain(&ui, "paid film");
    ui.press(SlintKey::Return);

    // Goods, paid.
    ui.press_text("4".into());
    ui.press(SlintKey::Return);
    ui.wait("the lamp's order", |a| a.order_screen().is_some());
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();
    ui.inject(Input::OrderUpdate(with_status(&order, OrderStatus::Paid)));
    check_plain(&ui, "paid goods");

    // My purchases.
    ui.press(SlintKey::RightArrow);
    ui.press(SlintKey::Return);
    ui.wait("the purchases", |a| {
        matches!(a.screen, Screen::Purchases { list: Some(_), .. })
    });
    check_plain(&ui, "purchases");
    ui.press(SlintKey::Escape);

    // An order the server refuses with a developer's message.
    fake.state.lock().unwrap().refuse_orders = Some(Failure::Refused {
        code: Some(protocol::ErrorCode::Internal),
        message: "internal: database is locked (http://127.0.0.1:8080/v1/orders)".into(),
    });
    ui.press_text("4".into());
    ui.press(SlintKey::Return);
    ui.wait("the refusal", |a| matches!(a.screen, Screen::Problem(_)));
    check_plain(&ui, "order refused");
    // And the server down when loading the purchases.
    fake.state.lock().unwrap().down = true;
    ui.press(SlintKey::Escape);
    ui.press(SlintKey::Escape);
    ui.press_text("0".into());
    check_plain(&ui, "purchases while offline");
}
