//! Two server nodes on one PostgreSQL database, end to end: the real TV app follows its
//! order on node A while the companion, which knows only node B, pays it by the typed
//! short code; the TV shows "paid" and withdraws its mDNS record.
//!
//! Needs PostgreSQL, so ignored by default; `.ci/run` runs it with
//! `COUCHPAY_TEST_POSTGRES` set (`cargo test --test it multinode:: -- --ignored`).

use std::time::{Duration, Instant};

use phone_client::discovery::IgnoreFn;
use phone_client::{Browser, Interfaces, NearbyEvent, OrderRef};
use server_stub::testing::TestServer;
use tv_client::state::Screen;

use crate::tv_screen::{TvUnderTest, alice, io_runtime};

const WAIT: Duration = Duration::from_secs(15);

#[test]
#[ignore = "needs PostgreSQL (COUCHPAY_TEST_POSTGRES): .ci/run runs it with --ignored"]
fn tv_on_node_a_sees_the_payment_made_through_node_b() {
    let io = io_runtime();
    let nodes = io.block_on(TestServer::start_nodes(2));
    let (a, b) = (&nodes[0], &nodes[1]);
    let tv = TvUnderTest::start(a, &io, 1280, 720);
    let link = tv.buy_second_item();
    assert_eq!(link.server, a.url);

    let ignore: IgnoreFn = Box::new(|_| false);
    let mut browser = Browser::start(&Interfaces::loopback(), vec![a.url.clone()], ignore).unwrap();
    let deadline = Instant::now() + WAIT;
    let listed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the TV's mDNS record was not listed");
        if let Some(NearbyEvent::Listed(n)) = browser.next_event(left) {
            break n;
        }
    };
    assert_eq!(listed.record.order, link.order);

    // The companion trusts node B only and types the code the TV shows.
    let (mut phone, _dir) = couchpay_e2e::companion(b);
    let c = io
        .block_on(phone.fetch(&OrderRef::Code(listed.record.short_code.clone())))
        .unwrap();
    assert_eq!(c.order.id, link.order);
    let receipt = io.block_on(phone.pay(&c, &alice(), None)).unwrap();
    assert_eq!(receipt.order_id, link.order);

    tv.wait("the paid screen", |app| {
        matches!(app.screen, Screen::Paid { .. })
    });
    assert!(!tv.is_announcing());
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "the record was not withdrawn");
        if let Some(NearbyEvent::Withdrawn(n)) = browser.next_event(left) {
            assert_eq!(n.record.order, link.order);
            break;
        }
    }
    browser.stop();
    for n in &nodes {
        let audit = io.block_on(n.client().audit()).unwrap();
        assert!(audit.ok, "{:?}", audit.problems);
    }
    for n in nodes {
        io.block_on(n.stop());
    }
}
