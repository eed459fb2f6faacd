//! The core flow end to end over a real socket: create → pay → events → entitlement.

use std::time::Duration;

use futures_util::StreamExt;
use protocol::{AccountEvent, FundingSource, OrderEvent, OrderStatus};
use server_stub::testing::TestServer;

use crate::*;

const EVENT_WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn pay_flow_notifies_tv_and_companion_and_moves_money_exactly() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let created = order(&c, "film-night-train").await;
    let o = &created.order;
    assert_eq!(o.status, OrderStatus::Pending);
    assert_eq!(o.amount.minor, 499);
    assert_eq!(o.merchant.id.as_str(), "northwind-films");
    assert_eq!(o.device.name, "Living-room TV");
    assert_eq!(o.pay_link.order, o.id);
    assert_eq!(o.pay_link.server, srv.url);
    assert_eq!(o.expires_at_ms - o.created_at_ms, 600_000);

    // TV: subscribe to the order; first event is the snapshot.
    let mut tv = Box::pin(c.order_events(&o.id).await.unwrap());
    let first = tv.next().await.unwrap().unwrap();
    assert!(
        matches!(first, OrderEvent::Snapshot { ref order } if order.status == OrderStatus::Pending)
    );

    // Companion: log in, subscribe to the account stream, look at the balance.
    let session = login(&c, "alice", "1234").await;
    let mut phone = Box::pin(
        c.account_events(&session.account, &session.token)
            .await
            .unwrap(),
    );
    assert!(matches!(
        phone.next().await.unwrap().unwrap(),
        AccountEvent::Hello { .. }
    ));
    let before = c.account(&session.account, &session.token).await.unwrap();

    // The companion finds the order by short code too.
    let by_code = c.order_by_code(&o.short_code).await.unwrap();
    assert_eq!(by_code.id, o.id);

    let receipt = c
        .pay(
            &o.id,
            &key(),
            &pay_req("alice", PayerAuth::Session(session.token.clone())),
        )
        .await
        .unwrap();
    assert_eq!(receipt.order_id, o.id);
    assert_eq!(receipt.funding, FundingSource::Wallet);
    assert_eq!(receipt.amount, o.amount);

    let ev = tokio::time::timeout(EVENT_WAIT, tv.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        OrderEvent::Paid { order } => assert_eq!(order.status, OrderStatus::Paid),
        other => panic!("TV got {other:?}"),
    }
    assert!(
        tv.next().await.is_none(),
        "order stream ends after a final event"
    );

    let ev = tokio::time::timeout(EVENT_WAIT, phone.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        AccountEvent::Receipt {
            receipt: receipt.clone()
        }
    );

    let after = c.account(&session.account, &session.token).await.unwrap();
    assert_eq!(before.balance.minor - after.balance.minor, 499);
    let ents = c
        .entitlements(&protocol::DeviceId::parse(DEVICE).unwrap())
        .await
        .unwrap();
    assert_eq!(ents.entitlements.len(), 1);
    assert_eq!(ents.entitlements[0].order_id, o.id);
    assert_eq!(ents.entitlements[0].valid_until_ms, None);

    let receipts = c.receipts(&session.account, &session.token).await.unwrap();
    assert_eq!(receipts, vec![receipt]);
    assert_eq!(c.order(&o.id).await.unwrap().status, OrderStatus::Paid);

    // A late subscriber gets the final snapshot and the stream ends.
    let late: Vec<_> = c.order_events(&o.id).await.unwrap().collect().await;
    assert_eq!(late.len(), 1);
    assert!(
        matches!(&late[0], Ok(OrderEvent::Snapshot { order }) if order.status == OrderStatus::Paid)
    );

    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    srv.stop().await;
}

#[tokio::test]
async fn membership_grants_time_and_physical_goods_keep_the_address() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let m = order(&c, "plus-monthly").await.order;
    c.pay(&m.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    // While the month is active, there is nothing to buy.
    assert_code(
        c.create_order(&protocol::CreateOrder {
            item_id: protocol::ItemId::parse("plus-monthly").unwrap(),
            device_id: protocol::DeviceId::parse(DEVICE).unwrap(),
            device_name: "Living-room TV".into(),
        })
        .await,
        ErrorCode::AlreadyOwned,
    );
    let day = 86_400_000;
    let ends = |ents: protocol::Entitlements| -> Vec<i64> {
        ents.entitlements
            .iter()
            .filter_map(|e| e.valid_until_ms)
            .collect()
    };
    let device = protocol::DeviceId::parse(DEVICE).unwrap();
    assert_eq!(
        ends(c.entitlements(&device).await.unwrap()),
        vec![srv.clock_now() + 30 * day]
    );
    // Once it has run out, a new month starts from the day it is bought.
    srv.advance_clock(Duration::from_secs(31 * 86_400));
    let m2 = order(&c, "plus-monthly").await.order;
    c.pay(&m2.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    let all = ends(c.entitlements(&device).await.unwrap());
    assert_eq!(all.len(), 2);
    assert_eq!(all.iter().max().unwrap() - srv.clock_now(), 30 * day);

    let lamp = order(&c, "lamp-aurora").await.order;
    let mut req = pay_req("alice", pin("1234"));
    req.delivery_address = Some("1 Rue de la Paix, 75002 Paris".into());
    c.pay(&lamp.id, &key(), &req).await.unwrap();
    let addr = srv.delivery_address(&lamp.id).await;
    assert_eq!(addr.as_deref(), Some("1 Rue de la Paix, 75002 Paris"));
    srv.stop().await;
}

#[tokio::test]
async fn wallet_short_falls_back_to_the_linked_card() {
    let srv = TestServer::start().await;
    let c = srv.client();
    // bob: wallet 20.00, card 500.00; the lamp costs 59.00.
    let lamp = order(&c, "lamp-aurora").await.order;
    let mut req = pay_req("bob", pin("2468"));
    req.delivery_address = Some("2 Main St".into());
    let r = c.pay(&lamp.id, &key(), &req).await.unwrap();
    assert_eq!(r.funding, FundingSource::Card);
    let s = login(&c, "bob", "2468").await;
    let v = c.account(&s.account, &s.token).await.unwrap();
    assert_eq!(v.balance.minor, 20_00);
    assert_eq!(v.card_available.unwrap().minor, 500_00 - 59_00);
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn cancel_and_expiry_are_pushed_and_final() {
    let srv = TestServer::start().await;
    let c = srv.client();

    let created = order(&c, "film-night-train").await;
    let mut tv = Box::pin(c.order_events(&created.order.id).await.unwrap());
    tv.next().await.unwrap().unwrap();
    let cancelled = c
        .cancel(&created.order.id, &created.tv_token)
        .await
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    let ev = tokio::time::timeout(EVENT_WAIT, tv.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, OrderEvent::Cancelled { .. }));
    assert_code(
        c.pay(&created.order.id, &key(), &pay_req("alice", pin("1234")))
            .await,
        ErrorCode::OrderCancelled,
    );

    // Expiry with the manual clock: no sleeping for ten minutes.
    let o = order(&c, "film-night-train").await.order;
    let mut tv = Box::pin(c.order_events(&o.id).await.unwrap());
    tv.next().await.unwrap().unwrap();
    srv.advance_clock(Duration::from_secs(599));
    assert_eq!(c.order(&o.id).await.unwrap().status, OrderStatus::Pending);
    srv.advance_clock(Duration::from_secs(1));
    // Expired as soon as the clock passes expiry, even before the sweeper marks it.
    assert_eq!(c.order(&o.id).await.unwrap().status, OrderStatus::Expired);
    assert_code(
        c.pay(&o.id, &key(), &pay_req("alice", pin("1234"))).await,
        ErrorCode::OrderExpired,
    );
    srv.sweep_expired().await;
    let ev = tokio::time::timeout(EVENT_WAIT, tv.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, OrderEvent::Expired { ref order } if order.status == OrderStatus::Expired)
    );
    assert_code(
        c.order_by_code(&o.short_code).await,
        ErrorCode::UnknownOrder,
    );
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn idempotent_replay_returns_the_original_and_charges_once() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let s = login(&c, "alice", "1234").await;
    let before = c.account(&s.account, &s.token).await.unwrap().balance.minor;
    let o = order(&c, "film-night-train").await.order;
    let k = key();
    let req = pay_req("alice", PayerAuth::Session(s.token.clone()));
    let first = c.pay(&o.id, &k, &req).await.unwrap();
    let again = c.pay(&o.id, &k, &req).await.unwrap();
    assert_eq!(first, again);
    let after = c.account(&s.account, &s.token).await.unwrap().balance.minor;
    assert_eq!(before - after, 499, "charged exactly once");

    // Same key, different content: refused.
    let other = order(&c, "film-cloud-atlas-of-birds").await.order;
    assert_code(
        c.pay(&other.id, &k, &req).await,
        ErrorCode::IdempotencyConflict,
    );
    // A new key for the already-paid order: already paid, not a second charge.
    assert_code(c.pay(&o.id, &key(), &req).await, ErrorCode::AlreadyPaid);
    let after2 = c.account(&s.account, &s.token).await.unwrap().balance.minor;
    assert_eq!(after, after2);
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}
