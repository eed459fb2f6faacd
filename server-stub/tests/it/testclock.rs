//! The developer's test clock: moving it expires orders at once, with their events;
//! with `--test-clock` off the endpoint is refused.

use std::time::Duration;

use futures_util::StreamExt;
use protocol::{ErrorCode, OrderEvent, OrderStatus};
use server_stub::testing::TestServer;

use crate::*;

#[tokio::test]
async fn advancing_the_test_clock_past_expiry_pushes_expired_to_the_tv() {
    let srv = TestServer::start_with(|c| c.test_clock = true).await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await.order;
    let mut tv = Box::pin(c.order_events(&o.id).await.unwrap());
    tv.next().await.unwrap().unwrap();
    let before = c.clock(&srv.admin_token).await.unwrap();
    assert!(before.test_clock);
    let after = c
        .advance_clock(&srv.admin_token, Duration::from_secs(601))
        .await
        .unwrap();
    assert_eq!(after.now_ms - before.now_ms, 601_000);
    let ev = tokio::time::timeout(Duration::from_secs(2), tv.next())
        .await
        .expect("the expired event comes at once, not at the next sweep")
        .unwrap()
        .unwrap();
    assert!(
        matches!(ev, OrderEvent::Expired { ref order } if order.status == OrderStatus::Expired),
        "{ev:?}"
    );
    assert_code(
        c.pay(&o.id, &key(), &pay_req("alice", pin("1234"))).await,
        ErrorCode::OrderExpired,
    );
    // Bad steps are refused.
    assert_code(
        c.advance_clock(&srv.admin_token, Duration::ZERO).await,
        ErrorCode::InvalidRequest,
    );
}

#[tokio::test]
async fn the_test_clock_is_refused_when_not_enabled() {
    let srv = TestServer::start().await;
    let c = srv.client();
    assert!(!c.clock(&srv.admin_token).await.unwrap().test_clock);
    assert_code(
        c.advance_clock(&srv.admin_token, Duration::from_secs(60))
            .await,
        ErrorCode::TestClockDisabled,
    );
    assert_code(
        c.advance_clock("wrong-token", Duration::from_secs(60))
            .await,
        ErrorCode::Unauthorized,
    );
}
