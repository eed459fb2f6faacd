//! Refusals against a real server: unknown order, expired, cancelled, wrong PIN,
//! delivery address missing. Each leaves no money moved and a clear error.

use std::time::Duration;

use couchpay_e2e::{companion, tv_order};
use phone_client::companion::CompanionError;
use phone_client::{Credentials, OrderRef};
use protocol::{AccountId, OrderId, PayLink, Pin, ShortCode};
use server_stub::testing::TestServer;

fn alice() -> Credentials {
    Credentials::Pin {
        account: AccountId::parse("alice").unwrap(),
        pin: Pin::parse("1234").unwrap(),
    }
}

#[tokio::test]
async fn unknown_order_and_unknown_code_are_refused() {
    let server = TestServer::start().await;
    let (phone, _dir) = companion(&server);
    let link = OrderRef::Link(PayLink::new(server.url.clone(), OrderId::random()));
    let err = phone.fetch(&link).await.unwrap_err();
    assert!(matches!(err, CompanionError::UnknownOrder { .. }), "{err}");
    let err = phone
        .fetch(&OrderRef::Code(ShortCode::random()))
        .await
        .unwrap_err();
    assert!(matches!(err, CompanionError::UnknownOrder { .. }), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn expired_order_is_refused_before_and_at_payment() {
    let server = TestServer::start().await;
    let order = tv_order(&server.client(), "plus-monthly").await.order;
    let (mut phone, _dir) = companion(&server);
    let link = OrderRef::Link(order.pay_link.clone());
    // Confirmed while pending, then the order runs out before the person taps Pay.
    let confirmation = phone.fetch(&link).await.unwrap();
    let ttl = Duration::from_millis((order.expires_at_ms - order.created_at_ms) as u64);
    server.advance_clock(ttl + Duration::from_secs(1));
    server.sweep_expired().await;
    let err = phone.pay(&confirmation, &alice(), None).await.unwrap_err();
    assert!(matches!(err, CompanionError::Expired), "{err}");
    let err = phone.fetch(&link).await.unwrap_err();
    assert!(matches!(err, CompanionError::Expired), "{err}");
    // A definitive refusal leaves no payment in flight.
    assert!(phone.state().get().pending.is_empty());
    server.stop().await;
}

#[tokio::test]
async fn cancelled_order_is_refused() {
    let server = TestServer::start().await;
    let tv = server.client();
    let created = tv_order(&tv, "film-night-train").await;
    tv.cancel(&created.order.id, &created.tv_token)
        .await
        .unwrap();
    let (phone, _dir) = companion(&server);
    let err = phone
        .fetch(&OrderRef::Link(created.order.pay_link.clone()))
        .await
        .unwrap_err();
    assert!(matches!(err, CompanionError::Cancelled), "{err}");
    server.stop().await;
}

#[tokio::test]
async fn wrong_pin_then_right_pin_pays_once() {
    let server = TestServer::start().await;
    let order = tv_order(&server.client(), "film-night-train").await.order;
    let (mut phone, _dir) = companion(&server);
    let c = phone
        .fetch(&OrderRef::Link(order.pay_link.clone()))
        .await
        .unwrap();
    let wrong = Credentials::Pin {
        account: AccountId::parse("alice").unwrap(),
        pin: Pin::parse("9999").unwrap(),
    };
    let err = phone.pay(&c, &wrong, None).await.unwrap_err();
    assert!(matches!(err, CompanionError::WrongPin { .. }), "{err}");
    let receipt = phone.pay(&c, &alice(), None).await.unwrap();
    assert_eq!(receipt.order_id, order.id);
    server.stop().await;
}

#[tokio::test]
async fn physical_goods_need_a_delivery_address() {
    let server = TestServer::start().await;
    let order = tv_order(&server.client(), "lamp-aurora").await.order;
    let (mut phone, _dir) = companion(&server);
    let c = phone
        .fetch(&OrderRef::Link(order.pay_link.clone()))
        .await
        .unwrap();
    assert!(c.needs_address());
    let err = phone.pay(&c, &alice(), None).await.unwrap_err();
    assert!(
        matches!(err, CompanionError::DeliveryAddressRequired),
        "{err}"
    );
    let receipt = phone
        .pay(&c, &alice(), Some("1 Canal Street, Venice".into()))
        .await
        .unwrap();
    assert_eq!(receipt.amount.to_string(), "59.00 EUR");
    server.stop().await;
}
