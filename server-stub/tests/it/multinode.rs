//! Several server nodes on one PostgreSQL database behave as one server: events cross
//! nodes through the outbox, races between nodes have one winner, the expiry sweep runs
//! on every node and still expires each order once, and sessions, idempotency keys, TV
//! tokens and short codes work on any node.
//!
//! They need PostgreSQL, so they are ignored by default and `.ci/run` runs them with
//! `COUCHPAY_TEST_POSTGRES` set (`cargo test --test it multinode:: -- --ignored`); run
//! without it they fail.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use protocol::{AccountEvent, ErrorCode, OrderEvent, OrderStatus, PayerAuth};
use server_stub::testing::TestServer;

use crate::*;

const EVENT_WAIT: Duration = Duration::from_secs(5);

async fn next_event<S, T>(stream: &mut S) -> T
where
    S: futures_util::Stream<Item = Result<T, protocol::client::ClientError>> + Unpin,
{
    tokio::time::timeout(EVENT_WAIT, stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event")
}

#[tokio::test]
#[ignore = "needs PostgreSQL (COUCHPAY_TEST_POSTGRES): .ci/run runs it with --ignored"]
async fn an_order_paid_through_one_node_is_heard_on_the_other() {
    let nodes = TestServer::start_nodes(2).await;
    let (a, b) = (nodes[0].client(), nodes[1].client());

    // The TV talks to node A: it creates the order and follows it there.
    let created = order(&a, "film-night-train").await;
    let o = created.order;
    let mut tv = Box::pin(a.order_events(&o.id).await.unwrap());
    assert!(matches!(
        next_event(&mut tv).await,
        OrderEvent::Snapshot { .. }
    ));

    // The companion's session comes from node A, its account stream too; it finds the
    // order by short code and pays through node B.
    let session = login(&a, "alice", "1234").await;
    let mut phone = Box::pin(
        a.account_events(&session.account, &session.token)
            .await
            .unwrap(),
    );
    assert!(matches!(
        next_event(&mut phone).await,
        AccountEvent::Hello { .. }
    ));
    assert_eq!(b.order_by_code(&o.short_code).await.unwrap().id, o.id);
    let k = key();
    let receipt = b
        .pay(
            &o.id,
            &k,
            &pay_req("alice", PayerAuth::Session(session.token.clone())),
        )
        .await
        .unwrap();

    match next_event(&mut tv).await {
        OrderEvent::Paid { order } => assert_eq!(order.status, OrderStatus::Paid),
        other => panic!("the TV on node A got {other:?}"),
    }
    assert_eq!(
        next_event(&mut phone).await,
        AccountEvent::Receipt {
            receipt: receipt.clone()
        }
    );

    // The same payment retried through node A: the original receipt, charged once.
    let replay = a
        .pay(
            &o.id,
            &k,
            &pay_req("alice", PayerAuth::Session(session.token.clone())),
        )
        .await
        .unwrap();
    assert_eq!(replay, receipt);
    let before = 500_00;
    let account = b.account(&session.account, &session.token).await.unwrap();
    assert_eq!(account.balance.minor, before - o.amount.minor);

    // The TV's token works on the other node too.
    let other = order_on(&a, "film-night-train", "SN-TEST-0002").await;
    let cancelled = b.cancel(&other.order.id, &other.tv_token).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);

    for c in [&a, &b] {
        let audit = c.audit().await.unwrap();
        assert!(audit.ok, "{:?}", audit.problems);
    }
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (COUCHPAY_TEST_POSTGRES): .ci/run runs it with --ignored"]
async fn hundred_payments_of_one_order_over_two_nodes_exactly_one_wins() {
    let nodes = TestServer::start_nodes(2).await;
    let clients: Vec<_> = nodes.iter().map(|n| Arc::new(n.client())).collect();
    let session = login(&clients[0], "alice", "1234").await;
    let before = clients[0]
        .account(&session.account, &session.token)
        .await
        .unwrap()
        .balance
        .minor;
    let o = order(&clients[0], "film-night-train").await.order;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = clients[i % 2].clone();
        let id = o.id.clone();
        let token = session.token.clone();
        tasks.push(tokio::spawn(async move {
            c.pay(&id, &key(), &pay_req("alice", PayerAuth::Session(token)))
                .await
        }));
    }
    let mut won = 0;
    let mut refused: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => {
                *refused.entry(format!("{:?}", e.code())).or_default() += 1;
                assert_eq!(e.code(), Some(ErrorCode::AlreadyPaid), "{e}");
            }
        }
    }
    assert_eq!(won, 1, "refusals: {refused:?}");
    let after = clients[1]
        .account(&session.account, &session.token)
        .await
        .unwrap()
        .balance
        .minor;
    assert_eq!(before - after, o.amount.minor, "charged exactly once");
    let audit = clients[1].audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL (COUCHPAY_TEST_POSTGRES): .ci/run runs it with --ignored"]
async fn the_sweep_on_two_nodes_expires_each_order_once_with_one_event() {
    let nodes = TestServer::start_nodes(2).await;
    let (a, b) = (nodes[0].client(), nodes[1].client());
    let mut orders = Vec::new();
    for i in 0..20 {
        let c = if i % 2 == 0 { &a } else { &b };
        orders.push(order(c, "film-night-train").await.order);
    }
    // Each order is followed on both nodes.
    let mut streams = Vec::new();
    for o in &orders {
        for c in [&a, &b] {
            let mut s = Box::pin(c.order_events(&o.id).await.unwrap());
            assert!(matches!(
                next_event(&mut s).await,
                OrderEvent::Snapshot { .. }
            ));
            streams.push((o.id.clone(), s));
        }
    }
    for n in &nodes {
        n.advance_clock(Duration::from_secs(601));
    }
    // Both nodes sweep at the same time.
    tokio::join!(nodes[0].sweep_expired(), nodes[1].sweep_expired());
    for (id, mut s) in streams {
        match next_event(&mut s).await {
            OrderEvent::Expired { order } => assert_eq!(order.id, id),
            other => panic!("{id}: got {other:?}"),
        }
    }
    // Exactly one event per order was published by the two nodes together: every event
    // a node publishes is also in the outbox.
    let db = nodes[0].server.state.store.database().clone();
    let expired: Vec<String> = tokio::task::spawn_blocking(move || {
        let conn = server_stub::store::open_for_audit(&db).unwrap();
        let mut found = Vec::new();
        conn.prepare("SELECT events FROM event_outbox")
            .unwrap()
            .for_each((), |r| {
                let events: Vec<serde_json::Value> =
                    serde_json::from_str(&r.get::<_, String>(0)?).unwrap();
                for e in events {
                    if e["Order"]["type"] == "expired" {
                        found.push(e["Order"]["order"]["id"].as_str().unwrap().to_owned());
                    }
                }
                Ok(())
            })
            .unwrap();
        found
    })
    .await
    .unwrap();
    let mut expected: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
    let mut expired = expired;
    expected.sort();
    expired.sort();
    assert_eq!(expired, expected, "one expiry event per order");
    for o in &orders {
        assert_eq!(b.order(&o.id).await.unwrap().status, OrderStatus::Expired);
    }
    assert!(a.audit().await.unwrap().ok);
    for n in nodes {
        n.stop().await;
    }
}
