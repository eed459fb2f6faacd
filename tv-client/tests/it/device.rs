//! The Device menu (SPEC D5): the state machine from the catalog through updates and the
//! refund, with Back from every screen, and the runtime's download: resumed after a
//! dropped connection, refused when the bytes are not what the vendor signed.

use std::time::Duration;

use protocol::{
    AccountId, DeviceInfo, DeviceRefund, DeviceSale, HardwareId, HardwareIdKind, Merchant, OrderId,
    OsVersion, Token, UpdateCheck, UpdateKey, UpdatePackage, VendorKey,
};
use sha2::{Digest, Sha256};
use tv_client::device_view::device_view;
use tv_client::state::*;
use tv_client::updates::download_update;

use crate::support::*;

fn v(s: &str) -> OsVersion {
    OsVersion::parse(s).unwrap()
}

fn info(version: &str) -> DeviceInfo {
    DeviceInfo {
        id: HardwareId::parse(identity().device_id.as_str()).unwrap(),
        id_kind: HardwareIdKind::Serial,
        product: "couchpay-box".into(),
        product_name: "Couchpay Box".into(),
        os_version: v(version),
        sale: Some(DeviceSale {
            order: OrderId::random(),
            amount: eur(79_00),
            merchant: Merchant {
                id: AccountId::parse("aurora-home").unwrap(),
                name: "Aurora Home".into(),
            },
            sold_at_ms: 1_800_000_000_000,
            refundable_until_ms: 1_800_000_000_000 + 30 * 86_400_000,
            refunded_at_ms: None,
        }),
    }
}

/// A package of `len` bytes signed by `key` (the bytes and the manifest).
fn package(key: &VendorKey, len: usize) -> (Vec<u8>, UpdatePackage) {
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    let version = v("1.1.0");
    let pkg = UpdatePackage {
        product: "couchpay-box".into(),
        version: version.clone(),
        size: len as u64,
        url: "http://192.168.1.20:8080/v1/updates/couchpay-box-1.1.0.bin".into(),
        sha256: protocol::hex(&sha),
        signature: key.sign("couchpay-box", &version, len as u64, &sha),
    };
    (bytes, pkg)
}

fn device(app: &App) -> &DeviceScreen {
    match &app.screen {
        Screen::Device(d) => d,
        other => panic!("not on the Device menu: {other:?}"),
    }
}

fn key(app: &mut App, k: Key) -> Vec<Effect> {
    app.handle(Input::Key(k))
}

/// The catalog with a credential set, then Up, Left (to "Device") and OK: the menu loads.
fn app_on_device_menu() -> App {
    let (mut app, _) = App::init(identity(), 0);
    app.set_device_credential(Some(Token::random()));
    app.handle(Input::CatalogLoaded(Ok(catalog())));
    key(&mut app, Key::Up);
    key(&mut app, Key::Left);
    assert_eq!(
        app.screen,
        Screen::Catalog {
            focus: CatalogFocus::Device
        }
    );
    let fx = key(&mut app, Key::Ok);
    assert!(
        matches!(&fx[..], [Effect::LoadDevice { id, .. }] if id.as_str() == "SN-TEST-0001"),
        "{fx:?}"
    );
    assert_eq!(device(&app).phase, DevicePhase::Loading);
    app.handle(Input::DeviceLoaded(Ok(info("1.0.0"))));
    assert_eq!(device(&app).phase, DevicePhase::Info);
    app
}

#[test]
fn device_menu_checks_downloads_and_installs_an_update_with_back_on_every_screen() {
    let mut app = app_on_device_menu();
    let view = device_view(device(&app));
    assert_eq!(view.title, "Couchpay Box");
    assert!(
        view.detail.contains("SN-TEST-0001") && view.detail.contains("1.0.0"),
        "{view:?}"
    );
    assert!(view.status.contains("79.00"), "{view:?}");
    assert_eq!(
        (view.primary.as_str(), view.secondary.as_str()),
        ("Check for updates", "Request refund")
    );

    let (_, pkg) = package(&VendorKey::random(), 300_000);
    let check = |app: &mut App| {
        let fx = key(app, Key::Ok);
        assert!(matches!(&fx[..], [Effect::CheckUpdate { .. }]), "{fx:?}");
        assert_eq!(device(app).phase, DevicePhase::Checking);
    };
    // Back from "checking" and from "available".
    check(&mut app);
    key(&mut app, Key::Back);
    assert_eq!(device(&app).phase, DevicePhase::Info);
    check(&mut app);
    app.handle(Input::UpdateChecked(Ok(UpdateCheck::Available {
        package: pkg.clone(),
    })));
    let view = device_view(device(&app));
    assert_eq!(view.title, "Software 1.1.0 is available");
    assert!(view.detail.contains("300 KB"), "{view:?}");
    key(&mut app, Key::Back);
    assert_eq!(device(&app).phase, DevicePhase::Info);
    check(&mut app);
    app.handle(Input::UpdateChecked(Ok(UpdateCheck::Available {
        package: pkg.clone(),
    })));

    // Download with progress, then install.
    assert_eq!(
        key(&mut app, Key::Ok),
        vec![Effect::DownloadUpdate(pkg.clone())]
    );
    app.handle(Input::DownloadProgress {
        version: v("1.1.0"),
        received: 150_000,
    });
    let view = device_view(device(&app));
    assert_eq!(view.progress, 0.5);
    assert!(
        view.status.starts_with("50% · 150 KB of 300 KB"),
        "{view:?}"
    );
    let fx = app.handle(Input::DownloadFinished {
        version: v("1.1.0"),
        outcome: DownloadOutcome::Verified,
    });
    assert!(
        matches!(&fx[..], [Effect::ReportVersion { version, .. }] if *version == v("1.1.0")),
        "{fx:?}"
    );
    app.handle(Input::VersionReported(Ok(info("1.1.0"))));
    assert_eq!(device(&app).phase, DevicePhase::Installed(v("1.1.0")));
    assert_eq!(
        device_view(device(&app)).title,
        "Software 1.1.0 is installed"
    );
    key(&mut app, Key::Ok);
    assert!(device_view(device(&app)).detail.contains("Software 1.1.0"));
    // Up to date now; Back from there, then Back to the catalog.
    check(&mut app);
    app.handle(Input::UpdateChecked(Ok(UpdateCheck::UpToDate {
        version: v("1.1.0"),
    })));
    assert_eq!(device_view(device(&app)).title, "This TV is up to date");
    key(&mut app, Key::Back);
    key(&mut app, Key::Back);
    assert_eq!(
        app.screen,
        Screen::Catalog {
            focus: CatalogFocus::Device
        }
    );
}

#[test]
fn a_refused_package_keeps_the_old_version() {
    let mut app = app_on_device_menu();
    let (_, pkg) = package(&VendorKey::random(), 10_000);
    key(&mut app, Key::Ok);
    app.handle(Input::UpdateChecked(Ok(UpdateCheck::Available {
        package: pkg,
    })));
    key(&mut app, Key::Ok);
    let fx = app.handle(Input::DownloadFinished {
        version: v("1.1.0"),
        outcome: DownloadOutcome::Rejected("the download's SHA-256 does not match".into()),
    });
    assert!(fx.is_empty(), "nothing is installed: {fx:?}");
    let view = device_view(device(&app));
    assert_eq!(view.title, "The update was not installed");
    assert!(view.detail.contains("keeps software 1.0.0"), "{view:?}");
    assert!(
        !view.detail.contains("SHA"),
        "no jargon on screen: {view:?}"
    );
    assert_eq!(app.installed_version(), Some(v("1.0.0")));
    key(&mut app, Key::Back);
    assert_eq!(device(&app).phase, DevicePhase::Info);
}

#[test]
fn device_menu_refunds_after_a_confirmation_and_back_keeps_the_box() {
    let mut app = app_on_device_menu();
    key(&mut app, Key::Right);
    key(&mut app, Key::Ok);
    assert_eq!(device(&app).phase, DevicePhase::ConfirmRefund);
    let view = device_view(device(&app));
    assert_eq!(view.title, "Refund this Couchpay Box?");
    assert!(view.detail.starts_with("€79.00 goes back"), "{view:?}");
    // Back, and "Keep it", return to the menu without a request.
    assert!(key(&mut app, Key::Back).is_empty());
    assert_eq!(device(&app).phase, DevicePhase::Info);
    key(&mut app, Key::Right);
    key(&mut app, Key::Ok);
    key(&mut app, Key::Right);
    assert!(key(&mut app, Key::Ok).is_empty());
    assert_eq!(device(&app).phase, DevicePhase::Info);
    // Refund.
    key(&mut app, Key::Right);
    key(&mut app, Key::Ok);
    let fx = key(&mut app, Key::Ok);
    assert!(matches!(&fx[..], [Effect::RefundDevice { .. }]), "{fx:?}");
    assert_eq!(device(&app).phase, DevicePhase::Refunding);
    let refund = DeviceRefund {
        device: info("1.0.0").id,
        order: OrderId::random(),
        amount: eur(79_00),
        account: AccountId::parse("dana").unwrap(),
        refunded_at_ms: 1_800_000_100_000,
    };
    app.handle(Input::RefundDone(Ok(refund)));
    assert_eq!(device_view(device(&app)).title, "Refunded");
    key(&mut app, Key::Ok);
    let view = device_view(device(&app));
    assert_eq!(view.secondary, "", "no second refund offered: {view:?}");
    assert!(view.status.contains("refunded"), "{view:?}");
}

#[test]
fn refusals_are_said_in_words() {
    let mut app = app_on_device_menu();
    key(&mut app, Key::Right);
    key(&mut app, Key::Ok);
    key(&mut app, Key::Ok);
    app.handle(Input::RefundDone(Err(Failure::Refused {
        code: Some(protocol::ErrorCode::ReturnWindowClosed),
        message: "return_window_closed: HTTP 410 from http://127.0.0.1:8080/v1/devices/x/refund"
            .into(),
    })));
    let view = device_view(device(&app));
    assert_eq!(view.title, "The return period has ended");
    assert!(!view.detail.contains("http"), "{view:?}");
    key(&mut app, Key::Back);
    assert_eq!(device(&app).phase, DevicePhase::Info);
}

#[test]
fn without_a_credential_the_menu_says_device_services_are_not_set_up() {
    let (mut app, _) = App::init(identity(), 0);
    app.handle(Input::CatalogLoaded(Ok(catalog())));
    key(&mut app, Key::Up);
    key(&mut app, Key::Left);
    assert!(key(&mut app, Key::Ok).is_empty(), "nothing is asked");
    assert_eq!(device(&app).phase, DevicePhase::NotSetUp);
    assert_eq!(
        device_view(device(&app)).title,
        "Device services aren't set up on this TV"
    );
    key(&mut app, Key::Back);
    assert_eq!(
        app.screen,
        Screen::Catalog {
            focus: CatalogFocus::Device
        }
    );
}

/// How the download ended: the outcome of the last input, if it is the finish.
fn finished(inputs: &[Input]) -> Option<&DownloadOutcome> {
    match inputs.last() {
        Some(Input::DownloadFinished { outcome, .. }) => Some(outcome),
        _ => None,
    }
}

/// Runs the runtime's download of `pkg` from `backend` and returns what it reported.
fn run_download(backend: FakeBackend, pkg: UpdatePackage, key: UpdateKey) -> Vec<Input> {
    let rt = io_runtime();
    let (sink, rx) = channel_sink();
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(20),
            download_update(backend, pkg, key, sink),
        )
        .await
    })
    .expect("the download ends");
    rx.try_iter().collect()
}

#[test]
fn a_dropped_download_resumes_where_it_stopped_and_verifies() {
    let vendor = VendorKey::random();
    let (bytes, pkg) = package(&vendor, 200_000);
    let backend = FakeBackend::default();
    {
        let mut st = backend.state.lock().unwrap();
        st.package = Some(bytes);
        st.drop_download_at = Some(100_000);
    }
    let inputs = run_download(
        backend.clone(),
        pkg,
        UpdateKey::parse(&vendor.public_hex()).unwrap(),
    );
    let offsets = backend.state.lock().unwrap().download_offsets.clone();
    assert_eq!(offsets, vec![0, 100_000], "resumed at the byte it stopped");
    let progress: Vec<u64> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::DownloadProgress { received, .. } => Some(*received),
            _ => None,
        })
        .collect();
    assert!(progress.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
    assert_eq!(progress.last(), Some(&200_000));
    let outcome = finished(&inputs);
    assert_eq!(outcome, Some(&DownloadOutcome::Verified));
}

#[test]
fn a_tampered_or_foreign_package_is_refused() {
    let vendor = VendorKey::random();
    let (mut bytes, pkg) = package(&vendor, 50_000);
    bytes[123] ^= 1;
    let backend = FakeBackend::default();
    backend.state.lock().unwrap().package = Some(bytes);
    let key = UpdateKey::parse(&vendor.public_hex()).unwrap();
    let inputs = run_download(backend, pkg.clone(), key);
    let outcome = finished(&inputs);
    assert!(
        matches!(outcome, Some(DownloadOutcome::Rejected(_))),
        "{outcome:?}"
    );
    // Signed by someone else: refused before a byte is fetched.
    let backend = FakeBackend::default();
    let inputs = run_download(backend.clone(), pkg, UpdateKey::demo());
    assert!(backend.state.lock().unwrap().download_offsets.is_empty());
    let outcome = finished(&inputs);
    assert!(
        matches!(outcome, Some(DownloadOutcome::Rejected(_))),
        "{outcome:?}"
    );
}
