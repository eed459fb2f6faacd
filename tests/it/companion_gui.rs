//! The companion's real window, headless (Slint testing backend, software renderer),
//! driven as a person would: the TV's order appears under Nearby (mDNS on `lo`) → tap it
//! → the confirmation sheet shows the server's order → a wrong PIN is refused with the
//! server's count of tries and the sheet stays → the right PIN pays → the Wallet opens
//! signed in, with the balance and only this account's receipts, and the TV sees it
//! paid. Typing the same code afterwards is refused. Then the TV sends a new order to
//! the account's phone number and the SMS code, paid from the Wallet's messages,
//! completes it. Every screen is checked for developer text and saved as a PNG.
//!
//! This is the only test in the binary that gives Slint an event loop (the companion
//! posts results from its I/O threads with `upgrade_in_event_loop`); Slint allows one
//! such platform per process.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use couchpay_e2e::{TV_NAME, tv_order, tv_sees_paid};
use i_slint_backend_testing::{ElementHandle, TestingBackend, TestingBackendOptions};
use phone_client::gui::ui::{CompanionWindow, Phone, ReceiptRow};
use phone_client::gui::{self, GuiOptions};
use phone_client::{Announcer, Credentials, Interfaces, OrderRef};
use protocol::{AccountId, OrderStatus, PhoneNumber, PhonePayKind, PhonePayRequest, Pin};
use server_stub::testing::TestServer;
use slint::{ComponentHandle, Model};

/// Longest wait for the window to reach a state, in seconds.
const GUI_TIMEOUT_S: u64 = 15;

/// Runs the window's event loop until `done` holds; fails the test after the timeout.
fn pump_until(window: &CompanionWindow, what: &str, done: impl Fn(&Phone<'_>) -> bool + 'static) {
    let met = Rc::new(Cell::new(false));
    let deadline = Instant::now() + Duration::from_secs(GUI_TIMEOUT_S);
    let timer = slint::Timer::default();
    {
        let (met, weak) = (met.clone(), window.as_weak());
        timer.start(
            slint::TimerMode::Repeated,
            Duration::from_millis(10),
            move || {
                let Some(w) = weak.upgrade() else { return };
                if done(&w.global::<Phone>()) {
                    met.set(true);
                    let _ = slint::quit_event_loop();
                } else if Instant::now() > deadline {
                    let _ = slint::quit_event_loop();
                }
            },
        );
    }
    slint::run_event_loop().expect("event loop");
    let p = window.global::<Phone>();
    assert!(
        met.get(),
        "timed out waiting for {what}; status {:?}, error {:?}",
        p.get_status(),
        p.get_error()
    );
}

fn idle_with_error(p: &Phone<'_>) -> bool {
    !p.get_busy() && !p.get_error().is_empty()
}

/// Every text element of the window as it is now (needs the debug element info of
/// debug builds, see phone-client/build.rs).
fn screen_texts(window: &CompanionWindow) -> Vec<String> {
    ElementHandle::find_by_element_type_name(window, "Text")
        .filter_map(|e| e.accessible_label())
        .map(|t| t.to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// No developer text on screen: no flags, URL schemes or OS errors; returns the texts.
fn assert_plain_screen(window: &CompanionWindow, screen: &str) -> Vec<String> {
    let texts = screen_texts(window);
    assert!(texts.len() > 3, "{screen}: no texts found ({texts:?})");
    for t in &texts {
        for bad in ["--", "://", "os error"] {
            assert!(!t.contains(bad), "{screen} shows {bad:?}: {t:?}");
        }
    }
    texts
}

/// Saves the window as `target/test-artifacts/companion-{name}.png`; checks it is not blank.
fn screenshot(window: &CompanionWindow, name: &str) {
    let shot = window.window().take_snapshot().expect("snapshot");
    let (w, h) = (shot.width(), shot.height());
    let rgba = image::RgbaImage::from_raw(w, h, shot.as_bytes().to_vec()).unwrap();
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    rgba.save(artifacts.join(format!("companion-{name}.png")))
        .unwrap();
    let distinct: std::collections::HashSet<_> = rgba.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 16, "the {name} screen rendered blank");
}

fn receipts(p: &Phone<'_>) -> Vec<ReceiptRow> {
    p.get_receipts().iter().collect()
}

#[test]
fn companion_window_pays_a_nearby_order() {
    let io = tokio::runtime::Runtime::new().unwrap();
    let server = io.block_on(TestServer::start());
    let tv = server.client();
    // Bob bought something earlier on another phone: alice's wallet must not list it.
    io.block_on(async {
        let other = tv_order(&tv, "plus-monthly").await.order;
        let (mut bob, _dir) = couchpay_e2e::companion(&server);
        let c = bob.fetch(&OrderRef::Link(other.pay_link)).await.unwrap();
        let bob_pin = Credentials::Pin {
            account: AccountId::parse("bob").unwrap(),
            pin: Pin::parse("2468").unwrap(),
        };
        bob.pay(&c, &bob_pin, None).await.unwrap();
    });
    let order = io.block_on(tv_order(&tv, "film-night-train")).order;
    let record = couchpay_e2e::tv_record(&server, &order);
    let mut announcer = Announcer::start(&Interfaces::loopback()).unwrap();
    announcer.announce(&record).unwrap();

    slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
        mock_time: false,
        threading: true,
        renderer_name: Some("software".into()),
    })))
    .expect("the only event-loop platform in this test binary");
    let dir = tempfile::tempdir().unwrap();
    let app = gui::open(GuiOptions {
        servers: vec![server.url.clone()],
        state: dir.path().join("companion.json"),
        interfaces: Interfaces::loopback(),
        frames: None,
    })
    .expect("companion window");
    let window = app.window.clone_strong();
    window.show().unwrap();
    let phone = window.global::<Phone>();

    // Developer text stays in the log: an empty folder field, no camera in this build.
    phone.invoke_scan_folder("".into());
    pump_until(&window, "the empty-folder message", idle_with_error);
    assert_eq!(phone.get_error(), "Type the folder of frames to scan.");
    assert_plain_screen(&window, "scan");
    phone.invoke_scan_folder(
        dir.path()
            .join("no-such-folder")
            .display()
            .to_string()
            .into(),
    );
    pump_until(&window, "the missing-folder message", |p| {
        p.get_error() == "That folder cannot be opened."
    });
    assert_plain_screen(&window, "scan, missing folder");
    screenshot(&window, "scan");

    // A mistyped code says what is wrong with it.
    phone.set_tab(2);
    phone.invoke_lookup_code("ABCD-EFGH".into());
    pump_until(&window, "the bad-code message", idle_with_error);
    assert!(
        phone.get_error().contains("is not a Couchpay code"),
        "{}",
        phone.get_error()
    );
    assert_plain_screen(&window, "code");

    // Nearby lists the TV's order with its name, item and amount.
    phone.set_tab(1);
    pump_until(&window, "the TV under Nearby", |p| {
        p.get_nearby().row_count() > 0
    });
    // The code tab's error stays on the code tab.
    assert!(
        !screen_texts(&window)
            .iter()
            .any(|t| t.contains("Couchpay code"))
    );
    let row = phone.get_nearby().row_data(0).unwrap();
    assert_eq!(row.tv, TV_NAME);
    assert_eq!(row.item, "Night Train");
    assert_eq!(row.amount, order.amount.to_string());
    assert_eq!(row.code, order.short_code.display());

    // Tapping it fetches the order from the server and shows it for confirmation.
    phone.invoke_pick_nearby(0);
    pump_until(&window, "the confirmation sheet", |p| p.get_confirming());
    let c = phone.get_confirm();
    assert_eq!(c.item, "Night Train");
    assert_eq!(c.amount, "4.99 EUR");
    assert_eq!(c.merchant, "Northwind Films");
    assert_eq!(c.tv, TV_NAME);
    assert_eq!(c.code, order.short_code.display());
    assert_eq!(c.server, phone_client::companion::host(&server.url));
    assert_plain_screen(&window, "confirm");
    screenshot(&window, "confirm");

    // A wrong PIN is refused with the server's count of tries; the sheet stays.
    phone.invoke_pay("alice".into(), "9999".into(), "".into());
    pump_until(&window, "the wrong-PIN error", idle_with_error);
    let error = phone.get_error().to_string();
    assert!(
        error.starts_with("Wrong PIN (") && error.contains("tries left"),
        "{error}"
    );
    assert!(error.ends_with("Nothing was charged."), "{error}");
    assert!(phone.get_confirming());
    assert_plain_screen(&window, "wrong PIN");
    screenshot(&window, "wrong-pin");
    let still = io.block_on(tv.order(&order.id)).unwrap();
    assert_eq!(still.status, OrderStatus::Pending);

    // The right PIN pays: the Wallet opens signed in as alice (the same PIN, in the
    // background), with her balance and only her receipts, and the TV sees it paid.
    phone.invoke_pay("alice".into(), "1234".into(), "".into());
    pump_until(&window, "the payment and the wallet", |p| {
        !p.get_busy() && p.get_logged_in() && p.get_receipts().row_count() > 0
    });
    assert_eq!(phone.get_error(), "");
    assert_eq!(phone.get_status(), "Paid 4.99 EUR for Night Train.");
    assert!(!phone.get_confirming());
    assert_eq!(phone.get_tab(), 3);
    assert_eq!(phone.get_account(), "alice");
    assert_eq!(phone.get_balance().wallet, "495.01 EUR");
    assert!(
        phone.get_balance().card.starts_with("Card: "),
        "{}",
        phone.get_balance().card
    );
    let rows = receipts(&phone);
    assert_eq!(rows.len(), 1, "only alice's receipt: {rows:?}");
    assert_eq!(rows[0].title, "Night Train");
    assert_eq!(rows[0].amount, "4.99 EUR");
    assert!(rows[0].detail.contains("Northwind Films"), "{:?}", rows[0]);
    assert!(io.block_on(tv_sees_paid(&tv, &order.id)));
    let texts = assert_plain_screen(&window, "wallet");
    assert!(texts.iter().any(|t| t == "Signed in as alice"), "{texts:?}");
    screenshot(&window, "wallet");

    // The payment's banner belongs to the wallet, not to the other tabs.
    phone.set_tab(0);
    assert!(
        !screen_texts(&window)
            .iter()
            .any(|t| t.contains("Paid 4.99"))
    );
    phone.set_tab(3);

    // The same order typed again is refused on the device, without paying twice.
    phone.set_tab(2);
    phone.invoke_lookup_code(order.short_code.display().into());
    pump_until(&window, "the refusal", idle_with_error);
    assert!(
        phone.get_error().contains("already paid this order"),
        "{}",
        phone.get_error()
    );
    assert!(!phone.get_confirming());

    // The TV moves on to a new order and sends it to alice's phone number; the code
    // arrives in the wallet's messages and paying with it completes the TV's order.
    let second = io.block_on(tv_order(&tv, "film-cloud-atlas-of-birds"));
    announcer.withdraw().unwrap();
    announcer
        .announce(&couchpay_e2e::tv_record(&server, &second.order))
        .unwrap();
    let started = io
        .block_on(tv.pay_by_phone(
            &second.order.id,
            &PhonePayRequest {
                tv_token: second.tv_token.clone(),
                phone: PhoneNumber::parse("+15550100001").unwrap(),
            },
        ))
        .unwrap();
    assert_eq!(started.kind, PhonePayKind::CodeSent);
    phone.set_tab(1);
    let code = second.order.short_code.display();
    pump_until(&window, "the second order under Nearby", move |p| {
        p.get_nearby().iter().any(|r| r.code == code)
    });
    phone.set_tab(3);
    phone.set_wallet_view(1);
    phone.invoke_refresh_receipts();
    pump_until(&window, "the SMS in the wallet", |p| {
        !p.get_busy() && p.get_sms().iter().any(|m| !m.code.is_empty())
    });
    let (i, sms) = phone
        .get_sms()
        .iter()
        .enumerate()
        .find(|(_, m)| !m.code.is_empty())
        .unwrap();
    assert_eq!(sms.amount, second.order.amount.to_string());
    assert!(sms.body.contains(&second.order.item.title), "{sms:?}");
    assert_plain_screen(&window, "messages");
    screenshot(&window, "messages");
    phone.invoke_pay_sms(i as i32);
    pump_until(&window, "the SMS payment", |p| {
        !p.get_busy() && (p.get_status().contains("SMS code") || !p.get_error().is_empty())
    });
    assert_eq!(phone.get_error(), "");
    assert_eq!(
        phone.get_status(),
        format!(
            "Paid {} for {} with the SMS code.",
            second.order.amount, second.order.item.title
        )
    );
    assert!(io.block_on(tv_sees_paid(&tv, &second.order.id)));
    assert!(phone.get_sms().row_data(i).unwrap().paid);
    let rows = receipts(&phone);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].title, second.order.item.title, "newest first");
    assert_plain_screen(&window, "messages, paid");

    // Signing out empties the wallet.
    phone.set_wallet_view(0);
    phone.invoke_logout();
    pump_until(&window, "the sign-out", |p| !p.get_logged_in());
    assert_eq!(phone.get_receipts().row_count(), 0);
    assert_plain_screen(&window, "signed out");
    screenshot(&window, "sign-in");

    drop(window);
    app.shutdown();
    announcer.stop();
    io.block_on(server.stop());
}
