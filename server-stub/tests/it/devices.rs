//! Device services (SPEC D): the register, refunds once within the return window, and
//! update lookup and download with range requests; money is conserved after each.

use std::time::Duration;

use futures_util::StreamExt;
use protocol::client::Client;
use protocol::device::PackageError;
use protocol::{
    ErrorCode, HardwareId, OrderId, OsVersion, RegisterDevice, Token, UpdateCheck, UpdateKey,
    UpdatePackage,
};
use server_stub::devices::{DEMO_BUYER, DEMO_DISPLAY, DEMO_SOLD, RETURN_WINDOW_DAYS};
use server_stub::testing::{TestServer, assets_dir};
use sha2::{Digest, Sha256};

use crate::*;

fn hw(s: &str) -> HardwareId {
    HardwareId::parse(s).unwrap()
}

fn token(s: &str) -> Token {
    Token::parse(s).unwrap()
}

async fn audit_clean(c: &Client) {
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
}

async fn dana_balance(c: &Client) -> u64 {
    let s = login(c, DEMO_BUYER.0, DEMO_BUYER.2).await;
    c.account(&s.account, &s.token).await.unwrap().balance.minor
}

/// Buys a Couchpay Box as alice for the TV `tv` and returns the order and the registered
/// device with a freshly issued credential.
async fn buy_box(srv: &TestServer, tv: &str) -> (OrderId, HardwareId, Token) {
    let c = srv.client();
    let created = order_on(&c, "box-couchpay", tv).await;
    let mut req = pay_req("alice", pin("1234"));
    req.delivery_address = Some("12 Rose Lane, Springfield".into());
    c.pay(&created.order.id, &key(), &req).await.unwrap();
    let found = c
        .devices_of_order(&srv.admin_token, &created.order.id)
        .await
        .unwrap();
    assert_eq!(found.devices.len(), 1, "{found:?}");
    let device = &found.devices[0];
    assert!(!device.provisioned);
    assert_eq!(device.payer, Some(account("alice")));
    let sale = device.info.sale.as_ref().expect("a sale");
    assert_eq!(
        (sale.order.clone(), sale.amount.minor),
        (created.order.id.clone(), 79_00)
    );
    let cred = c
        .issue_device_credential(&srv.admin_token, &device.info.id)
        .await
        .unwrap();
    (created.order.id, device.info.id.clone(), cred.credential)
}

#[tokio::test]
async fn a_refund_happens_once_under_twenty_concurrent_requests() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let (id, cred) = (hw(DEMO_SOLD.0), token(DEMO_SOLD.1));
    let before = dana_balance(&c).await;
    let info = c.device(&id, &cred).await.unwrap();
    assert_eq!(info.product_name, "Couchpay Box");
    let sale = info.sale.expect("the demo box was sold");
    assert_eq!(sale.refunded_at_ms, None);
    let dana = login(&c, DEMO_BUYER.0, DEMO_BUYER.2).await;
    let mut stream = Box::pin(c.account_events(&dana.account, &dana.token).await.unwrap());

    let results = futures_util::future::join_all((0..20).map(|_| {
        let (c, id, cred) = (c.clone(), id.clone(), cred.clone());
        async move { c.refund_device(&id, &cred).await }
    }))
    .await;
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "{results:?}");
    for r in results.iter().filter(|r| r.is_err()) {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::AlreadyRefunded), "{e}");
    }
    let refund = ok[0];
    assert_eq!(
        (refund.amount, &refund.account),
        (sale.amount, &account(DEMO_BUYER.0))
    );
    assert_eq!(dana_balance(&c).await, before + sale.amount.minor);
    // A later request is refused the same way, and the register shows the refund.
    assert_code(
        c.refund_device(&id, &cred).await,
        ErrorCode::AlreadyRefunded,
    );
    let after = c.device(&id, &cred).await.unwrap();
    assert_eq!(
        after.sale.unwrap().refunded_at_ms,
        Some(refund.refunded_at_ms)
    );
    // The box's entitlement from that sale ends.
    let ents = c
        .entitlements(&protocol::DeviceId::parse(DEMO_SOLD.0).unwrap())
        .await
        .unwrap();
    let ent = ents
        .entitlements
        .iter()
        .find(|e| e.order_id == sale.order)
        .expect("the sale's entitlement");
    assert_eq!(ent.valid_until_ms, Some(refund.refunded_at_ms));
    // The payer hears of it on their account stream.
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = stream.next().await {
            if let Ok(protocol::AccountEvent::DeviceRefunded { refund }) = e {
                return refund;
            }
        }
        panic!("the stream ended");
    })
    .await
    .expect("a device_refunded event");
    assert_eq!(&got, refund);
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test]
async fn refunds_are_refused_for_bad_ids_strangers_late_requests_and_unsold_devices() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let cred = token(DEMO_SOLD.1);
    // A malformed id is refused before any lookup.
    let r = reqwest::Client::new()
        .post(srv.url.join("/v1/devices/35693803564380/refund"))
        .bearer_auth(cred.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: protocol::ErrorBody = r.json().await.unwrap();
    assert_eq!(body.error.code, ErrorCode::InvalidRequest);
    // A well-formed id nobody registered.
    assert_code(
        c.refund_device(&hw("356938035643809"), &cred).await,
        ErrorCode::UnknownDevice,
    );
    // The serial alone, or another device's credential, authorises nothing.
    assert_code(
        c.refund_device(&hw(DEMO_SOLD.0), &token(DEMO_DISPLAY.1))
            .await,
        ErrorCode::Unauthorized,
    );
    assert_code(
        c.device(&hw(DEMO_SOLD.0), &Token::random()).await,
        ErrorCode::Unauthorized,
    );
    let r = reqwest::Client::new()
        .post(srv.url.join(&format!("/v1/devices/{}/refund", DEMO_SOLD.0)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A display unit was never sold here.
    assert_code(
        c.refund_device(&hw(DEMO_DISPLAY.0), &token(DEMO_DISPLAY.1))
            .await,
        ErrorCode::NotRefundable,
    );
    // A box bought through the catalog, refunded after its return window.
    let (_, id, cred) = buy_box(&srv, "CP-LATE-0001").await;
    srv.advance_clock(Duration::from_secs(RETURN_WINDOW_DAYS as u64 * 86_400 + 60));
    assert_code(
        c.refund_device(&id, &cred).await,
        ErrorCode::ReturnWindowClosed,
    );
    // A registered device not yet provisioned refuses every credential.
    let fresh = hw("490154203237518");
    c.register_device(
        &srv.admin_token,
        &RegisterDevice {
            id: fresh.clone(),
            product: "couchpay-box".into(),
            os_version: OsVersion::parse("1.0.0").unwrap(),
        },
    )
    .await
    .unwrap();
    assert_code(c.device(&fresh, &cred).await, ErrorCode::Unauthorized);
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_box_bought_through_the_catalog_is_registered_and_refunded_to_its_payer() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let alice = login(&c, "alice", "1234").await;
    let before = c
        .account(&alice.account, &alice.token)
        .await
        .unwrap()
        .balance
        .minor;
    let (order, id, cred) = buy_box(&srv, "CP-BOX-0001").await;
    let paid = c
        .account(&alice.account, &alice.token)
        .await
        .unwrap()
        .balance
        .minor;
    assert_eq!(paid, before - 79_00);
    let info = c.device(&id, &cred).await.unwrap();
    assert_eq!(info.os_version, OsVersion::parse("1.0.0").unwrap());
    let refund = c.refund_device(&id, &cred).await.unwrap();
    assert_eq!((refund.order, refund.amount.minor), (order, 79_00));
    let after = c
        .account(&alice.account, &alice.token)
        .await
        .unwrap()
        .balance
        .minor;
    assert_eq!(after, before);
    audit_clean(&c).await;
    srv.stop().await;
}

/// Reads a download from `from` on, keeping at most `limit` bytes (then drops the connection).
async fn fetch(c: &Client, url: &str, from: u64, limit: usize) -> (u16, Vec<u8>) {
    let resp = c.download_from(url, from).await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    (status, out)
}

fn available(check: UpdateCheck) -> UpdatePackage {
    match check {
        UpdateCheck::Available { package } => package,
        other => panic!("expected a package, got {other:?}"),
    }
}

#[tokio::test]
async fn an_update_is_found_downloaded_in_two_parts_verified_and_recorded() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let (id, cred) = (hw(DEMO_DISPLAY.0), token(DEMO_DISPLAY.1));
    let package = available(c.check_update(&id, &cred).await.unwrap());
    assert_eq!(package.version, OsVersion::parse("1.1.0").unwrap());
    assert_eq!(package.size, 512 * 1024);
    let key = UpdateKey::demo();
    key.verify_manifest(&package).unwrap();

    // The connection drops half-way; the rest comes with a range request.
    let half = package.size as usize / 2;
    let (status, mut bytes) = fetch(&c, &package.url, 0, half).await;
    assert_eq!((status, bytes.len()), (200, half));
    let (status, rest) = fetch(&c, &package.url, half as u64, usize::MAX).await;
    assert_eq!(status, 206);
    bytes.extend_from_slice(&rest);
    let sha: [u8; 32] = Sha256::digest(&bytes).into();
    key.verify_download(&package, bytes.len() as u64, &sha)
        .unwrap();
    // One changed byte is caught.
    bytes[1000] ^= 1;
    let bad: [u8; 32] = Sha256::digest(&bytes).into();
    assert_eq!(
        key.verify_download(&package, bytes.len() as u64, &bad),
        Err(PackageError::Checksum)
    );
    // A manifest signed by another key is refused.
    let stranger = UpdateKey::parse(&protocol::VendorKey::random().public_hex()).unwrap();
    assert_eq!(
        stranger.verify_manifest(&package),
        Err(PackageError::NotSigned)
    );

    // Installed: the device reports its new version and is up to date.
    assert_code(
        c.report_version(&id, &cred, &OsVersion::parse("9.9").unwrap())
            .await,
        ErrorCode::InvalidRequest,
    );
    let info = c
        .report_version(&id, &cred, &package.version)
        .await
        .unwrap();
    assert_eq!(info.os_version, package.version);
    match c.check_update(&id, &cred).await.unwrap() {
        UpdateCheck::UpToDate { version } => assert_eq!(version, package.version),
        other => panic!("expected up to date, got {other:?}"),
    }
    // Only files of the index are served.
    let r = reqwest::get(srv.url.join("/v1/updates/index.json"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = reqwest::get(srv.url.join("/v1/updates/demo-signing-key"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    srv.stop().await;
}

#[tokio::test]
async fn a_package_changed_on_the_server_fails_verification() {
    // The server's own copy of the updates directory, changed after it started.
    let dir = tempfile::tempdir().unwrap();
    let src = assets_dir().join("updates");
    for f in ["index.json", "couchpay-box-1.1.0.bin"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let updates = dir.path().to_owned();
    let srv = TestServer::start_with(|c| c.updates = Some(updates)).await;
    let c = srv.client();
    let (id, cred) = (hw(DEMO_DISPLAY.0), token(DEMO_DISPLAY.1));
    let package = available(c.check_update(&id, &cred).await.unwrap());
    let path = dir.path().join("couchpay-box-1.1.0.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4096] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (_, got) = fetch(&c, &package.url, 0, usize::MAX).await;
    let sha: [u8; 32] = Sha256::digest(&got).into();
    assert_eq!(
        UpdateKey::demo().verify_download(&package, got.len() as u64, &sha),
        Err(PackageError::Checksum)
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_demo_index_is_signed_by_the_demo_key() {
    let updates = server_stub::devices::Updates::load(&assets_dir().join("updates")).unwrap();
    let server = protocol::ServerUrl::parse("http://127.0.0.1:8080").unwrap();
    let p = updates
        .newest("couchpay-box", &OsVersion::parse("1.0").unwrap(), &server)
        .expect("a demo package");
    UpdateKey::demo().verify_manifest(&p).unwrap();
    // `sign-update` makes the same entry (Ed25519 signatures are deterministic).
    let secret = std::fs::read_to_string(assets_dir().join("updates/demo-signing-key")).unwrap();
    let entry = server_stub::devices::sign(
        &protocol::VendorKey::from_hex(secret.trim()).unwrap(),
        "couchpay-box",
        &p.version,
        &assets_dir().join("updates/couchpay-box-1.1.0.bin"),
    )
    .unwrap();
    assert_eq!((entry.sha256, entry.signature), (p.sha256, p.signature));
}
