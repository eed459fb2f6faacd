//! Vouchers end to end: companion A makes a voucher and saves its QR code as a PNG;
//! companion B reads that picture with the real decoder, checks the voucher on the
//! server and redeems part of it; A's account stream hears of it, the rest is back in
//! A's wallet at once, and the ledger audit is clean.

use std::time::Duration;

use futures_util::StreamExt;
use phone_client::Credentials;
use phone_client::companion::vouchers::{save_voucher_png, voucher_in_picture};
use protocol::{AccountEvent, AccountId, Currency, Money, Pin, VoucherState};
use server_stub::testing::TestServer;

fn creds(account: &str, pin: &str) -> Credentials {
    Credentials::Pin {
        account: AccountId::parse(account).unwrap(),
        pin: Pin::parse(pin).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_voucher_picture_is_redeemed_in_part_on_another_companion() {
    let server = TestServer::start().await;
    let eur = Currency::parse("EUR").unwrap();
    let (mut a, _da) = couchpay_e2e::companion(&server);
    let (mut b, _db) = couchpay_e2e::companion(&server);
    let alice = a
        .login(
            None,
            AccountId::parse("alice").unwrap(),
            Pin::parse("1234").unwrap(),
        )
        .await
        .unwrap();
    b.login(
        None,
        AccountId::parse("bob").unwrap(),
        Pin::parse("2468").unwrap(),
    )
    .await
    .unwrap();
    let api = server.client();
    let mut stream = Box::pin(
        api.account_events(&alice.account, &alice.token)
            .await
            .unwrap(),
    );
    assert!(matches!(
        stream.next().await.unwrap().unwrap(),
        AccountEvent::Hello { .. }
    ));
    let before_a = a.account_view(&server.url).await.unwrap();
    let before_b = b.account_view(&server.url).await.unwrap();

    // A makes the voucher and saves its picture.
    let v = a
        .create_voucher(&creds("alice", "1234"), Money::new(20_00, eur), None, None)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("voucher.png");
    save_voucher_png(&v.link, &png).unwrap();
    assert_eq!(a.account_view(&server.url).await.unwrap().held.minor, 20_00);

    // B opens the picture later: the real decoder finds the link.
    let link = tokio::task::spawn_blocking(move || voucher_in_picture(&png))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link, v.link);
    let seen = b.open_voucher(&link).await.unwrap();
    assert_eq!(seen.payer_name, "Alice Martin");
    assert_eq!(seen.face_value, Money::new(20_00, eur));
    assert_eq!(seen.state, VoucherState::Unused);
    let r = b
        .redeem_voucher(&link, &Credentials::Session, Some(Money::new(7_25, eur)))
        .await
        .unwrap();
    assert_eq!(r.amount, Money::new(7_25, eur));
    assert_eq!(r.released, Money::new(12_75, eur));

    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        AccountEvent::VoucherRedeemed { voucher } => {
            assert_eq!(voucher.id, v.id);
            assert_eq!(voucher.used, Money::new(7_25, eur));
            assert_eq!(voucher.payee.as_ref().map(AccountId::as_str), Some("bob"));
        }
        other => panic!("A's stream got {other:?}"),
    }
    let after_a = a.account_view(&server.url).await.unwrap();
    let after_b = b.account_view(&server.url).await.unwrap();
    assert_eq!(before_a.balance.minor - after_a.balance.minor, 7_25);
    assert_eq!(after_a.held.minor, 0);
    assert_eq!(after_b.balance.minor - before_b.balance.minor, 7_25);

    // The picture is worth nothing now.
    let again = b.redeem_voucher(&link, &Credentials::Session, None).await;
    let msg = again.unwrap_err().to_string();
    assert!(msg.contains("redeemed already"), "{msg}");
    let audit = api.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    server.stop().await;
}
