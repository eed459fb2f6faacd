//! A payment whose answer was lost is retried with the key saved before sending: the
//! server answers with the original receipt and the payer is charged once.

use couchpay_e2e::{companion, tv_order};
use phone_client::state::PendingPayment;
use phone_client::{Credentials, OrderRef};
use protocol::{AccountId, LoginRequest, PayRequest, PayerAuth, Pin};
use server_stub::testing::TestServer;

#[tokio::test]
async fn lost_answer_is_replayed_with_the_saved_key_and_charges_once() {
    let server = TestServer::start().await;
    let api = server.client();
    let order = tv_order(&api, "film-night-train").await.order;
    let alice = AccountId::parse("alice").unwrap();
    let pin = Pin::parse("1234").unwrap();
    let session = api
        .login(&LoginRequest {
            account: alice.clone(),
            pin: pin.clone(),
        })
        .await
        .unwrap();
    let before = api.account(&alice, &session.token).await.unwrap().balance;

    let (phone, _dir) = companion(&server);
    let confirmation = phone
        .fetch(&OrderRef::Link(order.pay_link.clone()))
        .await
        .unwrap();
    // The first attempt: the companion saved its key, the request reached the server
    // and was paid, and then the connection dropped before the answer arrived.
    let key = protocol::IdempotencyKey::random();
    let mut store = phone_client::StateStore::open(phone.state().path()).unwrap();
    store
        .update(|s| {
            s.add_pending(PendingPayment {
                server: server.url.clone(),
                order: order.id.clone(),
                account: alice.clone(),
                key: key.clone(),
            })
        })
        .unwrap();
    let first = api
        .pay(
            &order.id,
            &key,
            &PayRequest {
                account: alice.clone(),
                auth: PayerAuth::Pin(pin.clone()),
                delivery_address: None,
            },
        )
        .await
        .unwrap();
    // The companion restarts (state reloaded from disk) and the person retries.
    drop(phone);
    let mut phone = phone_client::Companion::new(vec![server.url.clone()], store).unwrap();
    // The order now reads as paid, but a payment of ours is in flight: not refused.
    let again = phone
        .fetch(&OrderRef::Link(order.pay_link.clone()))
        .await
        .unwrap();
    assert_eq!(again.order.id, confirmation.order.id);
    let replay = phone
        .pay(
            &again,
            &Credentials::Pin {
                account: alice.clone(),
                pin,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(replay, first, "the replay returns the original receipt");
    assert_eq!(replay.payment_id, key);
    let after = api.account(&alice, &session.token).await.unwrap().balance;
    assert_eq!(
        before.minor - after.minor,
        order.amount.minor,
        "charged exactly once"
    );
    assert!(phone.state().get().pending.is_empty());
    assert!(phone.is_paid_here(&server.url, &order.id));
    server.stop().await;
}
