//! Receipts stream to the logged-in companion as payments complete (server-sent
//! events), and the receipt list shows them; the session token, not the PIN, is saved.

use std::time::Duration;

use couchpay_e2e::{EVENT_TIMEOUT_S, companion, tv_order};
use phone_client::{Credentials, OrderRef};
use protocol::{AccountId, Pin};
use server_stub::testing::TestServer;

#[tokio::test]
async fn receipts_stream_and_list_after_login() {
    let server = TestServer::start().await;
    let order = tv_order(&server.client(), "plus-monthly").await.order;
    let (mut phone, dir) = companion(&server);
    phone
        .login(
            None,
            AccountId::parse("bob").unwrap(),
            Pin::parse("2468").unwrap(),
        )
        .await
        .unwrap();
    let saved = std::fs::read_to_string(dir.path().join("companion.json")).unwrap();
    assert!(!saved.contains("2468"), "the PIN is never stored");
    assert!(saved.contains("\"bob\""));

    // A second companion on the same device state watches the receipts stream.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch_store = phone_client::StateStore::open(phone.state().path()).unwrap();
    let mut watcher = phone_client::Companion::new(vec![server.url.clone()], watch_store).unwrap();
    let url = server.url.clone();
    let watch = tokio::spawn(async move {
        watcher
            .watch_receipts(&url, |r| {
                let _ = tx.send(r.clone());
            })
            .await
    });
    // Give the stream a moment to connect (its first event is `hello`).
    tokio::time::sleep(Duration::from_millis(300)).await;

    let c = phone
        .fetch(&OrderRef::Link(order.pay_link.clone()))
        .await
        .unwrap();
    let receipt = phone.pay(&c, &Credentials::Session, None).await.unwrap();
    assert_eq!(receipt.payer.as_str(), "bob");
    let streamed = tokio::time::timeout(Duration::from_secs(EVENT_TIMEOUT_S), rx.recv())
        .await
        .expect("a receipt event in time")
        .unwrap();
    assert_eq!(streamed, receipt);
    let list = phone.receipts(&server.url).await.unwrap();
    assert_eq!(list.first(), Some(&receipt));
    watch.abort();
    server.stop().await;
}
