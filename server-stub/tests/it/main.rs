//! Integration tests of the server: in-process and over real loopback sockets with the
//! typed client, a fresh database per test.

#[cfg(feature = "browser-tests")]
mod browser;
mod concurrency;
mod console;
mod devices;
mod durability;
mod errors;
mod flow;
mod hardening;
mod inprocess;
mod ledger;
mod multinode;
mod offers;
mod packetpage;
mod packets;
mod paypage;
mod pg_crash;
mod phone;
mod testclock;
mod voucherpage;
mod vouchers;
mod webhooks;

use protocol::client::{Client, ClientError};
use protocol::{
    AccountId, CreateOrder, CreatedOrder, DeviceId, ErrorCode, IdempotencyKey, ItemId,
    LoginRequest, PayRequest, PayerAuth, Pin, Session,
};

pub(crate) const DEVICE: &str = "SN-TEST-0001";

pub(crate) fn account(id: &str) -> AccountId {
    AccountId::parse(id).unwrap()
}

pub(crate) fn pin(p: &str) -> PayerAuth {
    PayerAuth::Pin(Pin::parse(p).unwrap())
}

pub(crate) async fn order(client: &Client, item: &str) -> CreatedOrder {
    order_on(client, item, DEVICE).await
}

/// An order for `item` made by the TV with serial `device`.
pub(crate) async fn order_on(client: &Client, item: &str, device: &str) -> CreatedOrder {
    client
        .create_order(&CreateOrder {
            item_id: ItemId::parse(item).unwrap(),
            device_id: DeviceId::parse(device).unwrap(),
            device_name: "Living-room TV".into(),
        })
        .await
        .unwrap()
}

pub(crate) async fn login(client: &Client, id: &str, p: &str) -> Session {
    client
        .login(&LoginRequest {
            account: account(id),
            pin: Pin::parse(p).unwrap(),
        })
        .await
        .unwrap()
}

pub(crate) fn pay_req(id: &str, auth: PayerAuth) -> PayRequest {
    PayRequest {
        account: account(id),
        auth,
        delivery_address: None,
    }
}

pub(crate) fn key() -> IdempotencyKey {
    IdempotencyKey::random()
}

/// Asserts that `r` failed with the API error `code`.
#[track_caller]
pub(crate) fn assert_code<T: std::fmt::Debug>(r: Result<T, ClientError>, code: ErrorCode) {
    match r {
        Err(e) => assert_eq!(e.code(), Some(code), "error was: {e}"),
        Ok(v) => panic!("expected {code}, got success: {v:?}"),
    }
}
