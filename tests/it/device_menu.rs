//! The Device menu end to end (SPEC D): the real TV app (headless Slint window, remote
//! keys only) against a real server. A Couchpay Box bought from the TV's catalog is
//! registered when paid; the box, with its serial and provisioned credential, refunds
//! itself from the Device menu and the payer's wallet is credited exactly once; then it
//! checks for, downloads and installs the demo update.

use protocol::client::Client;
use protocol::{DeviceId, ErrorCode, LoginRequest, PayRequest, PayerAuth, Pin};
use server_stub::testing::TestServer;
use slint::ComponentHandle;
use slint::platform::{Key, WindowEvent};
use tv_client::slint_ui::{Page, Tv};
use tv_client::state::{DevicePhase, Screen};

use crate::tv_screen::{TvUnderTest, io_runtime};

fn press(tv: &TvUnderTest, key: Key) {
    let text: slint::SharedString = key.into();
    let w = tv.window.window();
    w.dispatch_event(WindowEvent::KeyPressed { text: text.clone() });
    w.dispatch_event(WindowEvent::KeyReleased { text });
}

fn phase(tv: &TvUnderTest) -> Option<DevicePhase> {
    match &tv.shell.borrow().app.screen {
        Screen::Device(d) => Some(d.phase.clone()),
        _ => None,
    }
}

/// Saves the window as `target/test-artifacts/tv-device-{name}.png`.
fn artifact(tv: &TvUnderTest, name: &str) {
    let buf = tv.window.window().take_snapshot().expect("snapshot");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    image::RgbaImage::from_raw(buf.width(), buf.height(), buf.as_bytes().to_vec())
        .expect("RGBA snapshot")
        .save(dir.join(format!("tv-device-{name}.png")))
        .unwrap();
}

async fn wallet(c: &Client) -> u64 {
    let s = c
        .login(&LoginRequest {
            account: protocol::AccountId::parse("alice").unwrap(),
            pin: Pin::parse("1234").unwrap(),
        })
        .await
        .unwrap();
    c.account(&s.account, &s.token).await.unwrap().balance.minor
}

#[test]
fn a_box_bought_on_the_tv_refunds_itself_once_and_installs_an_update_from_the_device_menu() {
    let io = io_runtime();
    let srv = io.block_on(TestServer::start());
    let c = srv.client();
    let before = io.block_on(wallet(&c));
    let tv = TvUnderTest::start(&srv, &io, 1280, 720);

    // Buy the box (the fifth poster) with the remote, pay for it with alice's wallet.
    tv.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    tv.wait("the posters", |a| a.posters.len() == a.items().len());
    for _ in 0..4 {
        press(&tv, Key::RightArrow);
    }
    press(&tv, Key::Return);
    press(&tv, Key::Return);
    tv.wait("the order screen", |a| a.order_screen().is_some());
    let order = tv.shell.borrow().app.order_screen().unwrap().order.clone();
    assert_eq!(order.item.id.as_str(), "box-couchpay");
    io.block_on(c.pay(
        &order.id,
        &protocol::IdempotencyKey::random(),
        &PayRequest {
            account: protocol::AccountId::parse("alice").unwrap(),
            auth: PayerAuth::Pin(Pin::parse("1234").unwrap()),
            delivery_address: Some("12 Rose Lane, Springfield".into()),
        },
    ))
    .unwrap();
    tv.wait("the paid screen", |a| {
        matches!(a.screen, Screen::Paid { .. })
    });
    assert_eq!(io.block_on(wallet(&c)), before - 79_00);

    // The sale registered a box; the factory flashes its credential, and it comes up
    // with its own serial.
    let found = io
        .block_on(c.devices_of_order(&srv.admin_token, &order.id))
        .unwrap();
    assert_eq!(found.devices.len(), 1);
    let box_id = found.devices[0].info.id.clone();
    let cred = io
        .block_on(c.issue_device_credential(&srv.admin_token, &box_id))
        .unwrap();
    {
        let mut shell = tv.shell.borrow_mut();
        shell.app.identity.device_id = DeviceId::parse(box_id.as_str()).unwrap();
        shell
            .app
            .set_device_credential(Some(cred.credential.clone()));
    }

    // Catalog → Device: Back home, Up to the buttons, Left to "Device", OK.
    press(&tv, Key::Escape);
    tv.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    press(&tv, Key::UpArrow);
    press(&tv, Key::LeftArrow);
    artifact(&tv, "catalog");
    press(&tv, Key::Return);
    tv.wait("the device menu", |_| phase(&tv) == Some(DevicePhase::Info));
    assert_eq!(tv.window.global::<Tv>().get_page(), Page::Device);
    assert_eq!(tv.window.global::<Tv>().get_device_title(), "Couchpay Box");
    assert!(
        tv.window
            .global::<Tv>()
            .get_device_detail()
            .contains(box_id.as_str())
    );
    artifact(&tv, "info");

    // Request refund → the confirmation with the amount → refunded.
    press(&tv, Key::RightArrow);
    press(&tv, Key::Return);
    assert_eq!(phase(&tv), Some(DevicePhase::ConfirmRefund));
    assert!(
        tv.window
            .global::<Tv>()
            .get_device_detail()
            .contains("79.00")
    );
    artifact(&tv, "confirm-refund");
    press(&tv, Key::Return);
    tv.wait("the refund", |_| {
        matches!(phase(&tv), Some(DevicePhase::Refunded(_)))
    });
    assert_eq!(tv.window.global::<Tv>().get_device_title(), "Refunded");
    artifact(&tv, "refunded");
    assert_eq!(io.block_on(wallet(&c)), before, "credited exactly once");
    // A second request, from the API, is refused; the wallet stays.
    let again = io.block_on(c.refund_device(&box_id, &cred.credential));
    assert_eq!(again.unwrap_err().code(), Some(ErrorCode::AlreadyRefunded));
    assert_eq!(io.block_on(wallet(&c)), before);
    assert!(io.block_on(c.audit()).unwrap().ok);

    // Back to the menu, then check → download (progress shown) → installed.
    press(&tv, Key::Return);
    tv.wait("the device menu", |_| phase(&tv) == Some(DevicePhase::Info));
    press(&tv, Key::Return);
    tv.wait("an update", |_| {
        matches!(phase(&tv), Some(DevicePhase::Available(_)))
    });
    artifact(&tv, "update-available");
    press(&tv, Key::Return);
    let saw_progress = std::cell::Cell::new(false);
    tv.wait("the installed update", |_| {
        if let Some(DevicePhase::Downloading { received, .. }) = phase(&tv)
            && received > 0
        {
            saw_progress.set(true);
        }
        matches!(phase(&tv), Some(DevicePhase::Installed(_)))
    });
    assert!(saw_progress.get(), "the progress bar moved");
    assert_eq!(
        tv.window.global::<Tv>().get_device_title(),
        "Software 1.1.0 is installed"
    );
    artifact(&tv, "installed");
    let info = io.block_on(c.device(&box_id, &cred.credential)).unwrap();
    assert_eq!(info.os_version.to_string(), "1.1.0");

    // Back from the menu returns to the catalog.
    press(&tv, Key::Escape);
    press(&tv, Key::Escape);
    tv.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    drop(tv);
    io.block_on(srv.stop());
}
