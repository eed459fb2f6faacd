//! The companion's real window, headless (Slint testing backend, software renderer),
//! driven as a person would: the TV's order appears under Nearby (mDNS on `lo`) → tap it
//! → the confirmation sheet shows the server's order → a wrong PIN is refused and the
//! sheet stays → the right PIN pays → the receipt is in Wallet and the TV sees it paid.
//! Typing the same code afterwards is refused.
//!
//! This is the only test in the binary that gives Slint an event loop (the companion
//! posts results from its I/O threads with `upgrade_in_event_loop`); Slint allows one
//! such platform per process.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use couchpay_e2e::{TV_NAME, tv_order, tv_sees_paid};
use i_slint_backend_testing::{TestingBackend, TestingBackendOptions};
use phone_client::gui::ui::{CompanionWindow, Phone};
use phone_client::gui::{self, GuiOptions};
use phone_client::{Announcer, Interfaces};
use protocol::OrderStatus;
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

#[test]
fn companion_window_pays_a_nearby_order() {
    let io = tokio::runtime::Runtime::new().unwrap();
    let server = io.block_on(TestServer::start());
    let tv = server.client();
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

    // Nearby lists the TV's order with its name, item and amount.
    let phone = window.global::<Phone>();
    phone.set_tab(1);
    pump_until(&window, "the TV under Nearby", |p| {
        p.get_nearby().row_count() > 0
    });
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
    assert_eq!(c.server, server.url.to_string());
    let shot = window.window().take_snapshot().expect("snapshot");
    let (w, h) = (shot.width(), shot.height());
    let rgba = image::RgbaImage::from_raw(w, h, shot.as_bytes().to_vec()).unwrap();
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    rgba.save(artifacts.join("companion-confirm.png")).unwrap();
    let distinct: std::collections::HashSet<_> = rgba.pixels().map(|p| p.0).collect();
    assert!(
        distinct.len() > 16,
        "the confirmation screen rendered blank"
    );

    // A wrong PIN is refused; the sheet stays so the person can retry.
    phone.invoke_pay("alice".into(), "9999".into(), "".into());
    pump_until(&window, "the wrong-PIN error", idle_with_error);
    assert_eq!(phone.get_error(), "wrong PIN");
    assert!(phone.get_confirming());
    let still = io.block_on(tv.order(&order.id)).unwrap();
    assert_eq!(still.status, OrderStatus::Pending);

    // The right PIN pays: the receipt opens in Wallet and the TV sees the order paid.
    phone.invoke_pay("alice".into(), "1234".into(), "".into());
    pump_until(&window, "the payment", |p| {
        p.get_status().starts_with("Paid")
    });
    assert_eq!(phone.get_status(), "Paid 4.99 EUR for Night Train.");
    assert!(!phone.get_confirming());
    assert_eq!(phone.get_tab(), 3);
    let receipt = phone.get_receipts().row_data(0).unwrap();
    assert_eq!(receipt.title, "Night Train");
    assert_eq!(receipt.amount, "4.99 EUR");
    assert!(io.block_on(tv_sees_paid(&tv, &order.id)));

    // The same order typed again is refused on the device, without paying twice.
    phone.invoke_lookup_code(order.short_code.display().into());
    pump_until(&window, "the refusal", idle_with_error);
    assert!(!phone.get_confirming());

    drop(window);
    app.shutdown();
    announcer.stop();
    io.block_on(server.stop());
}
