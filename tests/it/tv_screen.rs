//! The real TV app (its Slint window on the headless software renderer, its mDNS
//! announcer on `lo`, its HTTP backend) against a real server, and the companion core:
//! (1) TV screenshot → decode → pay → the TV shows "paid" and withdraws its record;
//! (2) the TV's own mDNS announcement → discover → pay;
//! and the camera set generated from the TV's screenshot (≥ 95% must decode).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use i_slint_backend_testing::{TestingBackend, TestingBackendOptions};
use image::GrayImage;
use phone_client::discovery::IgnoreFn;
use phone_client::{Browser, Credentials, Decoder, Interfaces, NearbyEvent, OrderRef};
use protocol::{AccountId, PayLink, Pin};
use server_stub::testing::TestServer;
use slint::ComponentHandle;
use slint::platform::{Key, WindowEvent};
use tv_client::announce::{Announcer, Interfaces as TvInterfaces};
use tv_client::runtime::{HttpBackend, Runtime, Sink};
use tv_client::slint_ui::{AppWindow, Page, Tv};
use tv_client::state::{App, Identity, Input, Screen};
use tv_client::ui::Shell;

#[path = "../../phone-client/tests/it/support.rs"]
#[allow(dead_code)]
mod support;

/// Longest wait for the TV to reach a state, in seconds.
const TV_TIMEOUT_S: u64 = 15;
/// Camera frames generated from the TV screenshot, per resolution.
const CAMERA_FRAMES: usize = 30;

pub(crate) struct TvUnderTest {
    pub(crate) shell: Rc<RefCell<Shell<HttpBackend>>>,
    pub(crate) window: AppWindow,
    inputs: mpsc::Receiver<Input>,
}

impl TvUnderTest {
    pub(crate) fn start(server: &TestServer, io: &tokio::runtime::Runtime, w: u32, h: u32) -> Self {
        slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
            mock_time: true,
            threading: false,
            renderer_name: Some("software".into()),
        })))
        .expect("the headless platform is set once per test thread");
        let (tx, inputs) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let sink: Sink = std::sync::Arc::new(move |input| {
            let _ = tx.lock().unwrap().send(input);
        });
        let window = AppWindow::new().expect("window");
        window.window().set_size(slint::PhysicalSize::new(w, h));
        window.show().expect("show");
        let identity = Identity {
            device_id: protocol::DeviceId::parse(couchpay_e2e::TV_ID).unwrap(),
            tv_name: couchpay_e2e::TV_NAME.into(),
        };
        let (app, initial) = App::init(identity, 0);
        let announcer =
            Announcer::new(&TvInterfaces::Only(vec!["lo".into()])).map_err(|e| e.to_string());
        let runtime = Runtime::new(
            HttpBackend::new(server.url.clone()),
            io.handle().clone(),
            sink,
            announcer,
        );
        let shell = Shell::start(window.clone_strong(), app, initial, runtime);
        Self {
            shell,
            window,
            inputs,
        }
    }

    fn press(&self, key: Key) {
        let text: slint::SharedString = key.into();
        let w = self.window.window();
        w.dispatch_event(WindowEvent::KeyPressed { text: text.clone() });
        w.dispatch_event(WindowEvent::KeyReleased { text });
    }

    /// Feeds the backend's answers to the app until `done`.
    pub(crate) fn wait(&self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(TV_TIMEOUT_S);
        while !done(&self.shell.borrow().app) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(left) {
                Ok(input) => self.shell.borrow_mut().dispatch(input),
                Err(_) => panic!(
                    "the TV did not reach {what}: {:?}",
                    self.shell.borrow().app.screen
                ),
            }
        }
    }

    /// Remote keys only: Right to the second poster, OK (open), OK (buy).
    pub(crate) fn buy_second_item(&self) -> PayLink {
        self.wait("the catalog", |a| {
            matches!(a.screen, Screen::Catalog { .. })
        });
        self.wait("the posters", |a| a.posters.len() == a.items().len());
        self.press(Key::RightArrow);
        self.press(Key::Return);
        self.press(Key::Return);
        self.wait("the order screen", |a| a.order_screen().is_some());
        let shell = self.shell.borrow();
        shell.app.order_screen().unwrap().order.pay_link.clone()
    }

    fn screenshot(&self) -> GrayImage {
        let buf = self.window.window().take_snapshot().expect("snapshot");
        let rgba = image::RgbaImage::from_raw(buf.width(), buf.height(), buf.as_bytes().to_vec())
            .expect("RGBA snapshot");
        image::DynamicImage::ImageRgba8(rgba).into_luma8()
    }

    fn page(&self) -> Page {
        self.window.global::<Tv>().get_page()
    }

    pub(crate) fn is_announcing(&self) -> bool {
        self.shell.borrow().runtime.is_announcing()
    }
}

pub(crate) fn io_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) fn alice() -> Credentials {
    Credentials::Pin {
        account: AccountId::parse("alice").unwrap(),
        pin: Pin::parse("1234").unwrap(),
    }
}

#[test]
fn tv_screenshot_is_decoded_paid_and_withdrawn() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let tv = TvUnderTest::start(&server, &io, 1280, 720);
    let link = tv.buy_second_item();
    assert_eq!(tv.page(), Page::Order);

    // The phone browses on `lo` while the TV shows the order.
    let ignore: IgnoreFn = Box::new(|_| false);
    let mut browser =
        Browser::start(&Interfaces::loopback(), vec![server.url.clone()], ignore).unwrap();

    let shot = tv.screenshot();
    let mut png = std::io::Cursor::new(Vec::new());
    shot.write_to(&mut png, image::ImageFormat::Png).unwrap();
    let frame = phone_client::decode::picture_from_bytes(png.get_ref()).unwrap();
    let report = Decoder::default().decode(&frame, &|t| PayLink::parse(t).is_ok());
    let decoded = PayLink::parse(report.text.as_deref().expect("the TV's QR decodes")).unwrap();
    assert_eq!(decoded, link);

    // The TV's own announcement is listed with its name, item and amount.
    let deadline = Instant::now() + Duration::from_secs(TV_TIMEOUT_S);
    let listed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the TV's mDNS record was not listed");
        if let Some(NearbyEvent::Listed(n)) = browser.next_event(left) {
            break n;
        }
    };
    assert_eq!(listed.record.order, link.order);
    assert_eq!(listed.record.tv_name, couchpay_e2e::TV_NAME);
    assert!(tv.is_announcing());

    let (mut phone, _dir) = couchpay_e2e::companion(&server);
    let c = io.block_on(phone.fetch(&OrderRef::Link(decoded))).unwrap();
    assert_eq!(c.order.device.name, couchpay_e2e::TV_NAME);
    let receipt = io.block_on(phone.pay(&c, &alice(), None)).unwrap();
    assert_eq!(receipt.order_id, link.order);

    // The TV learns it over its event stream, shows "paid" and withdraws the record.
    tv.wait("the paid screen", |a| {
        matches!(a.screen, Screen::Paid { .. })
    });
    assert_eq!(tv.page(), Page::Paid);
    assert!(!tv.is_announcing());
    let deadline = Instant::now() + Duration::from_secs(TV_TIMEOUT_S);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the record was not withdrawn");
        if let Some(NearbyEvent::Withdrawn(n)) = browser.next_event(left) {
            assert_eq!(n.record.order, link.order);
            break;
        }
    }
    browser.stop();
    io.block_on(server.stop());
}

#[test]
fn tv_discovered_over_mdns_is_paid() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let tv = TvUnderTest::start(&server, &io, 1280, 720);
    let link = tv.buy_second_item();

    let ignore: IgnoreFn = Box::new(|_| false);
    let mut browser =
        Browser::start(&Interfaces::loopback(), vec![server.url.clone()], ignore).unwrap();
    let deadline = Instant::now() + Duration::from_secs(TV_TIMEOUT_S);
    let listed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the TV's mDNS record was not listed");
        if let Some(NearbyEvent::Listed(n)) = browser.next_event(left) {
            break n;
        }
    };
    browser.stop();
    let (mut phone, _dir) = couchpay_e2e::companion(&server);
    let c = io
        .block_on(phone.fetch(&OrderRef::Discovered(listed.record)))
        .unwrap();
    assert_eq!(c.order.id, link.order);
    io.block_on(phone.pay(&c, &alice(), None)).unwrap();
    tv.wait("the paid screen", |a| {
        matches!(a.screen, Screen::Paid { .. })
    });
    assert!(!tv.is_announcing());
    io.block_on(server.stop());
}

#[test]
fn camera_set_from_the_tv_screenshot_decodes_at_least_95_percent() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let tv = TvUnderTest::start(&server, &io, 1280, 720);
    let link = tv.buy_second_item().to_string();
    let screen = tv.screenshot();
    let mut rng = support::Rng::new(0x7E1E);
    let decoder = Decoder::default();
    let (mut ok, mut total) = (0, 0);
    for (w, h) in [(1280, 720), (640, 480)] {
        for _ in 0..CAMERA_FRAMES {
            let shot = support::Shot::random(&mut rng, w, h);
            let frame = support::photograph(&screen, &shot, &mut rng);
            total += 1;
            if decoder.decode(&frame, &|t| t == link).text.as_deref() == Some(link.as_str()) {
                ok += 1;
            } else {
                println!("not decoded: {shot:?}");
            }
        }
    }
    let rate = f64::from(ok) / f64::from(total);
    println!(
        "camera set from the TV screenshot: {ok}/{total} decoded ({:.1}%)",
        rate * 100.0
    );
    assert!(rate >= 0.95, "decode rate {rate:.3}");
    io.block_on(server.stop());
}
