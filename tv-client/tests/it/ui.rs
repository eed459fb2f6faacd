//! UI tests: the real Slint window on the headless testing backend with the software
//! renderer, driven only by key events. Screenshots are decoded like a phone would.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use i_slint_backend_testing::{TestingBackend, TestingBackendOptions};
use protocol::{OrderStatus, PayLink};
use slint::ComponentHandle;
use slint::platform::{Key as SlintKey, WindowEvent};
use tv_client::ble::{BleAnnouncer, Peripheral};
use tv_client::runtime::{Backend, Runtime};
use tv_client::slint_ui::{AppWindow, Page, Tv};
use tv_client::state::{App, Input, PhonePhase, Screen};
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
            .with_ble(BleAnnouncer::start(io.handle(), SimulatedRadio));
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
    assert_eq!(tv.get_ble_text(), "Also offered over Bluetooth LE");
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
/// Back; a number too short is refused on screen; the sent number waits for payment.
fn check_phone_pad(width: u32, height: u32) {
    let fake = FakeBackend::default();
    let ui = Ui::start(fake.clone(), width, height, Err("off in this test".into()));
    let size = format!("{width}x{height}");
    walk_to_order(&ui);
    let order = ui.shell.borrow().app.order_screen().unwrap().order.clone();

    // The order screen's second button, reached with ▶.
    assert_eq!(ui.focus(), 0, "Cancel order is focused first");
    ui.press(SlintKey::RightArrow);
    assert_eq!((ui.page(), ui.focus()), (Page::Order, 1));
    save(&ui.snapshot(), &format!("order-phone-button-{size}.png"));
    ui.press(SlintKey::Return);
    assert_eq!((ui.page(), ui.focus()), (Page::Phone, 0), "pad up, on 1");
    assert_eq!(ui.tv().get_phone_digits(), "");
    save(&ui.snapshot(), &format!("phone-empty-{size}.png"));

    // A digit key types; ▼ ▶ reach 5 on the pad and OK presses it.
    ui.type_digits("1");
    ui.press(SlintKey::DownArrow);
    ui.press(SlintKey::RightArrow);
    assert_eq!(ui.focus(), 4);
    press_n(&ui, SlintKey::Return, 3);
    assert_eq!(ui.tv().get_phone_digits(), "+1 555");

    // ✓ with a number too short: refused on screen, nothing sent.
    press_n(&ui, SlintKey::DownArrow, 2);
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

    // ◀ to 0 and OK; digit keys; Backspace deletes the last digit.
    ui.press(SlintKey::LeftArrow);
    ui.press(SlintKey::Return);
    ui.type_digits("100");
    press_n(&ui, SlintKey::Return, 3);
    assert_eq!(ui.tv().get_phone_digits(), "+1 555 010 0000");
    ui.press(SlintKey::Backspace);
    ui.type_digits("1");
    assert_eq!(ui.tv().get_phone_digits(), "+1 555 010 0001");
    assert!(ui.tv().get_phone_can_send());
    assert_eq!(ui.tv().get_phone_message(), "", "typing clears the message");
    save(&ui.snapshot(), &format!("phone-pad-{size}.png"));

    // ▶ to ✓, OK sends; the waiting screen names the masked number.
    ui.press(SlintKey::RightArrow);
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
    assert_eq!((ui.page(), ui.focus()), (Page::Order, 1));
    assert_eq!(
        fake.state.lock().unwrap().orders[&order.id].status,
        OrderStatus::Pending
    );

    // A digit key on the order screen opens the pad with it; BACK deletes it, and BACK
    // on the empty pad returns to the order.
    ui.type_digits("7");
    assert_eq!(
        (ui.page(), ui.tv().get_phone_digits().as_str()),
        (Page::Phone, "+7")
    );
    ui.press(SlintKey::Escape);
    assert_eq!(
        (ui.page(), ui.tv().get_phone_digits().as_str()),
        (Page::Phone, "")
    );
    ui.press(SlintKey::Escape);
    assert_eq!(ui.page(), Page::Order);

    // An unbound number gets the pay link; the payment arrives while waiting.
    ui.press(SlintKey::Return);
    ui.type_digits("4915112345678");
    assert_eq!(ui.tv().get_phone_digits(), "+49 151 123 456 78");
    ui.type_digits("99");
    assert_eq!(ui.tv().get_phone_digits(), "+49 151 123 456 7899");
    // Digit 16 is refused: 15 is the longest phone number there is.
    ui.type_digits("9");
    assert!(ui.tv().get_phone_message().contains("at most 15 digits"));
    save(&ui.snapshot(), &format!("phone-longest-{size}.png"));
    press_n(&ui, SlintKey::Backspace, 2);
    assert_eq!(ui.tv().get_phone_digits(), "+49 151 123 456 78");
    press_n(&ui, SlintKey::DownArrow, 3);
    press_n(&ui, SlintKey::RightArrow, 2);
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

#[test]
fn phone_pad_is_driven_with_remote_keys_at_1920x1080() {
    check_phone_pad(1920, 1080);
}

#[test]
fn phone_pad_is_driven_with_remote_keys_at_1280x720() {
    check_phone_pad(1280, 720);
}
