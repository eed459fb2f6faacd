//! Shared helpers of the end-to-end checks: a running server with a TV-side order and a
//! companion with its own state directory.

use std::time::Duration;

use phone_client::{Companion, StateStore};
use protocol::client::Client;
use protocol::{
    CreateOrder, CreatedOrder, DeviceId, DiscoveryRecord, ItemId, Order, OrderEvent, OrderId,
};
use server_stub::testing::TestServer;

/// The TV's device id in these checks.
pub const TV_ID: &str = "SN-E2E-TV-0001";
/// The TV's friendly name in these checks.
pub const TV_NAME: &str = "Living-room TV";
/// Longest wait for a server event in a check, in seconds.
pub const EVENT_TIMEOUT_S: u64 = 10;

/// A companion trusting exactly `server`, with its state in a fresh directory.
pub fn companion(server: &TestServer) -> (Companion, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = StateStore::open(&dir.path().join("companion.json")).expect("state");
    let c = Companion::new(vec![server.url.clone()], store).expect("companion");
    (c, dir)
}

/// What the TV does when the person picks `item`: create the order on the server.
pub async fn tv_order(client: &Client, item: &str) -> CreatedOrder {
    client
        .create_order(&CreateOrder {
            item_id: ItemId::parse(item).expect("item id"),
            device_id: DeviceId::parse(TV_ID).expect("device id"),
            device_name: TV_NAME.into(),
        })
        .await
        .expect("order created")
}

/// The discovery record the TV announces (mDNS, BLE) while it shows `order`.
pub fn tv_record(server: &TestServer, order: &Order) -> DiscoveryRecord {
    DiscoveryRecord::new(
        order.id.clone(),
        order.short_code.clone(),
        order.amount,
        server.url.clone(),
        TV_NAME,
        DeviceId::parse(TV_ID).expect("device id"),
        &order.item.title,
    )
}

/// Waits (as the TV does, over server-sent events) until `order` is paid.
pub async fn tv_sees_paid(client: &Client, order: &OrderId) -> bool {
    use futures_util::StreamExt;
    let wait = async {
        let stream = client.order_events(order).await.expect("order events");
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev.expect("event") {
                OrderEvent::Paid { .. } => return true,
                OrderEvent::Snapshot { order } if order.status == protocol::OrderStatus::Paid => {
                    return true;
                }
                OrderEvent::Snapshot { .. } => {}
                _ => return false,
            }
        }
        false
    };
    tokio::time::timeout(Duration::from_secs(EVENT_TIMEOUT_S), wait)
        .await
        .unwrap_or(false)
}
