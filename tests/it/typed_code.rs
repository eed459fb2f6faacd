//! (3) The person types the short code shown on the TV → the companion shows the
//! server's order → pays → the TV sees it paid; the order is then ignored locally.

use couchpay_e2e::{TV_NAME, companion, tv_order, tv_sees_paid};
use phone_client::companion::CompanionError;
use phone_client::{Credentials, OrderRef};
use protocol::{AccountId, OrderStatus, Pin};
use server_stub::testing::TestServer;

#[tokio::test]
async fn typed_code_pays_and_the_tv_sees_it() {
    let server = TestServer::start().await;
    let tv = server.client();
    let created = tv_order(&tv, "film-night-train").await;
    let order = created.order;
    let (mut phone, _dir) = companion(&server);

    // The code as a person types it: lower case, with a space instead of the dash.
    let typed = order.short_code.display().to_lowercase().replace('-', " ");
    let confirmation = phone
        .fetch(&OrderRef::parse_input(&typed).unwrap())
        .await
        .unwrap();
    let summary = confirmation.summary();
    let field = |k: &str| summary.iter().find(|(key, _)| *key == k).unwrap().1.clone();
    assert_eq!(field("Item"), "Night Train");
    assert_eq!(field("Amount"), "4.99 EUR");
    assert_eq!(field("Merchant"), "Northwind Films");
    assert_eq!(field("TV"), TV_NAME);
    assert_eq!(field("Code"), order.short_code.display());

    let receipt = phone
        .pay(
            &confirmation,
            &Credentials::Pin {
                account: AccountId::parse("alice").unwrap(),
                pin: Pin::parse("1234").unwrap(),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(receipt.order_id, order.id);
    assert_eq!(receipt.amount, order.amount);
    assert!(tv_sees_paid(&tv, &order.id).await);
    assert_eq!(tv.order(&order.id).await.unwrap().status, OrderStatus::Paid);

    // Scanning the same order again is refused on the device, without a request.
    let again = phone.fetch(&OrderRef::Link(order.pay_link.clone())).await;
    assert!(
        matches!(again, Err(CompanionError::AlreadyPaidHere { .. })),
        "{again:?}"
    );
    // Typing the code again: the server retired it, and the device knows it paid it.
    let again = phone.fetch(&OrderRef::Code(order.short_code.clone())).await;
    assert!(
        matches!(again, Err(CompanionError::AlreadyPaidHere { .. })),
        "{again:?}"
    );
    server.stop().await;
}
