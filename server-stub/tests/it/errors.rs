//! Every refusal has its own stable code, and none of them moves money.

use std::time::Duration;

use protocol::{
    CreateOrder, DeviceId, ErrorCode, IdempotencyKey, ItemId, OrderId, PayerAuth, ShortCode, Token,
};
use server_stub::testing::TestServer;

use crate::*;

#[tokio::test]
async fn unknown_things_and_bad_auth_are_refused_with_their_codes() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let ghost = OrderId::random();
    assert_code(c.order(&ghost).await, ErrorCode::UnknownOrder);
    assert_code(
        c.pay(&ghost, &key(), &pay_req("alice", pin("1234"))).await,
        ErrorCode::UnknownOrder,
    );
    assert_code(
        c.create_order(&CreateOrder {
            item_id: ItemId::parse("no-such-item").unwrap(),
            device_id: DeviceId::parse(DEVICE).unwrap(),
            device_name: "TV".into(),
        })
        .await,
        ErrorCode::UnknownItem,
    );
    assert_code(
        c.create_order(&CreateOrder {
            item_id: ItemId::parse("film-night-train").unwrap(),
            device_id: DeviceId::parse(DEVICE).unwrap(),
            device_name: "x".repeat(200),
        })
        .await,
        ErrorCode::InvalidRequest,
    );

    let o = order(&c, "film-night-train").await;
    assert_code(
        c.pay(&o.order.id, &key(), &pay_req("nobody", pin("1234")))
            .await,
        ErrorCode::UnknownAccount,
    );
    // A session of another account, and a made-up session, are not accepted.
    let bob = login(&c, "bob", "2468").await;
    assert_code(
        c.pay(
            &o.order.id,
            &key(),
            &pay_req("alice", PayerAuth::Session(bob.token.clone())),
        )
        .await,
        ErrorCode::Unauthorized,
    );
    assert_code(
        c.pay(
            &o.order.id,
            &key(),
            &pay_req("alice", PayerAuth::Session(Token::random())),
        )
        .await,
        ErrorCode::Unauthorized,
    );
    assert_code(
        c.account(&account("alice"), &bob.token).await,
        ErrorCode::Unauthorized,
    );
    // Only the TV that created the order can cancel it.
    assert_code(
        c.cancel(&o.order.id, &Token::random()).await,
        ErrorCode::Unauthorized,
    );
    // Sessions expire.
    srv.advance_clock(Duration::from_secs(16 * 60));
    assert_code(
        c.account(&bob.account, &bob.token).await,
        ErrorCode::Unauthorized,
    );

    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn already_paid_and_insufficient_funds() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await.order;
    c.pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    assert_code(
        c.pay(&o.id, &key(), &pay_req("bob", pin("2468"))).await,
        ErrorCode::AlreadyPaid,
    );

    // carol: wallet 5.00, no card; the lamp is 59.00.
    let lamp = order(&c, "lamp-aurora").await.order;
    let mut req = pay_req("carol", pin("1357"));
    req.delivery_address = Some("3 High St".into());
    let err = c.pay(&lamp.id, &key(), &req).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InsufficientFunds));
    assert!(err.to_string().contains("no linked card"), "{err}");
    // Goods need an address.
    assert_code(
        c.pay(&lamp.id, &key(), &pay_req("alice", pin("1234")))
            .await,
        ErrorCode::DeliveryAddressRequired,
    );
    let s = login(&c, "carol", "1357").await;
    assert_eq!(
        c.account(&s.account, &s.token).await.unwrap().balance.minor,
        5_00
    );
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn wrong_pins_lock_the_account_for_fifteen_minutes() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await.order;
    for remaining in (1..=4).rev() {
        let err = c
            .pay(&o.id, &key(), &pay_req("bob", pin("0000")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::WrongPin));
        assert!(
            err.to_string().contains(&format!("{remaining} tries left")),
            "{err}"
        );
    }
    // The fifth wrong PIN locks; from then on even the right PIN is refused.
    assert_code(
        c.pay(&o.id, &key(), &pay_req("bob", pin("0000"))).await,
        ErrorCode::AccountLocked,
    );
    let err = c
        .pay(&o.id, &key(), &pay_req("bob", pin("2468")))
        .await
        .unwrap_err();
    match &err {
        protocol::client::ClientError::Api { error, status } => {
            assert_eq!(error.code, ErrorCode::AccountLocked);
            assert_eq!(*status, 423);
            assert!(error.retry_after_s.unwrap() > 14 * 60);
        }
        other => panic!("{other}"),
    }
    assert_code(
        c.login(&protocol::LoginRequest {
            account: account("bob"),
            pin: protocol::Pin::parse("2468").unwrap(),
        })
        .await,
        ErrorCode::AccountLocked,
    );
    srv.advance_clock(Duration::from_secs(15 * 60 + 1));
    // The lock has passed (and so has the first order's lifetime).
    let o = order(&c, "film-night-train").await.order;
    c.pay(&o.id, &key(), &pay_req("bob", pin("2468")))
        .await
        .unwrap();
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn malformed_ids_keys_and_links_are_invalid_requests() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let http = reqwest::Client::new();
    let base = srv.url.as_str();
    for path in [
        "/v1/orders/not-an-id",
        "/v1/orders/AAAAAAAAAAAAAAAAAAAAAAAAAB", // non-canonical base32
        "/v1/orders/by-code/AEIO-UAEI",
        "/v1/devices/x/entitlements",
    ] {
        let resp = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let body: protocol::ErrorBody = resp.json().await.unwrap();
        assert_eq!(body.error.code, ErrorCode::InvalidRequest, "{path}");
    }
    let o = order(&c, "film-night-train").await.order;
    // Missing and malformed idempotency keys.
    let url = format!("{base}/v1/orders/{}/pay", o.id);
    let body = serde_json::to_string(&pay_req("alice", pin("1234"))).unwrap();
    for key in [None, Some("short"), Some("has spaces in it")] {
        let mut req = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{key:?}");
    }
    // Bad JSON shapes: unknown auth kind, PIN of letters, negative amount type.
    for bad in [
        r#"{"account":"alice","auth":{"password":"x"}}"#,
        r#"{"account":"alice","auth":{"pin":"abcd"}}"#,
        r#"{"account":"ALICE","auth":{"pin":"1234"}}"#,
        "not json",
    ] {
        let resp = http
            .post(&url)
            .header("content-type", "application/json")
            .header("Idempotency-Key", IdempotencyKey::random().as_str())
            .body(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
    // The pay-link page refuses a malformed link with a human page, not a crash.
    let resp = http
        .get(format!("{base}/P/NOT-AN-ORDER"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("Not a Couchpay link"));
    let resp = http.get(o.pay_link.to_string()).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the upper-case pay link opens in a browser"
    );
    assert!(resp.text().await.unwrap().contains(&o.short_code.display()));
    // Nothing moved.
    assert_eq!(
        c.order(&o.id).await.unwrap().status,
        protocol::OrderStatus::Pending
    );
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_refused() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "lamp-aurora").await.order;
    let mut req = pay_req("alice", pin("1234"));
    req.delivery_address = Some("x".repeat(64 * 1024));
    assert_code(c.pay(&o.id, &key(), &req).await, ErrorCode::PayloadTooLarge);
    // Under the body limit but over the field limit: invalid, not truncated.
    req.delivery_address = Some("x".repeat(2_000));
    assert_code(c.pay(&o.id, &key(), &req).await, ErrorCode::InvalidRequest);
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn short_code_guessing_is_rate_limited() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let mut limited = 0;
    for _ in 0..15 {
        match c.order_by_code(&ShortCode::random()).await {
            Err(e) if e.code() == Some(ErrorCode::RateLimited) => limited += 1,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::UnknownOrder), "{e}"),
            Ok(o) => panic!("guessed a live order {o:?}"),
        }
    }
    assert_eq!(limited, 5, "burst of 10, then refused");
    srv.stop().await;
}
