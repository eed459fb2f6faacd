//! LAN mode (`COUCHPAY_MDNS_INTERFACES=all`): the TV announces its order on every
//! interface, not only `lo`, and a companion listening on every interface finds it
//! through the LAN interface's address.
//!
//! It needs a network namespace of its own, so that "every interface" is a test network
//! and nothing reaches a real LAN: `.ci/run` makes one with `unshare --net` and a veth
//! pair `cp0`/`cp1` (10.123.0.1/24, 10.123.0.2/24) and sets `COUCHPAY_NETNS_TEST=1`.
//! Without that variable the test is reported as ignored; with it, a missing namespace
//! interface fails loudly.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use couchpay_e2e::{tv_order, tv_record};
use phone_client::discovery::IgnoreFn;
use phone_client::{Browser, Interfaces, NearbyEvent};
use server_stub::testing::TestServer;
use tv_client::announce::{Announcer, Interfaces as TvInterfaces};

/// The namespace's LAN address of the TV side (see `.ci/run`).
const LAN_ADDR: &str = "10.123.0.1";
/// Longest wait for the order to be listed.
const DISCOVERY_TIMEOUT_S: u64 = 15;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a network namespace with a veth pair: run by .ci/run with COUCHPAY_NETNS_TEST=1"]
async fn tv_in_lan_mode_announces_on_the_lan_interface_and_the_companion_finds_it() {
    assert_eq!(
        std::env::var("COUCHPAY_NETNS_TEST").as_deref(),
        Ok("1"),
        "run inside the test namespace (.ci/run) with COUCHPAY_NETNS_TEST=1"
    );
    let lan: IpAddr = LAN_ADDR.parse().unwrap();
    assert!(
        std::net::UdpSocket::bind((lan, 0)).is_ok(),
        "{LAN_ADDR} is not an address here: this is not the test namespace"
    );

    let server = TestServer::start().await;
    let order = tv_order(&server.client(), "film-night-train").await.order;
    let record = tv_record(&server, &order);
    // What the TV does with `--mdns-interface all` / COUCHPAY_MDNS_INTERFACES=all.
    let interfaces = TvInterfaces::from_names(&["all"]);
    assert_eq!(interfaces, TvInterfaces::All);
    let mut announcer = Announcer::new(&interfaces).unwrap();
    announcer
        .announce(&protocol::Announcement::Order(record.clone()))
        .unwrap()
        .confirmed()
        .await
        .expect("the announcement went out on an interface");

    let trusted = vec![server.url.clone()];
    let (found, addrs) = tokio::task::spawn_blocking(move || {
        let ignore: IgnoreFn = Box::new(|_| false);
        let mut browser = Browser::start(&Interfaces::All, trusted, ignore).unwrap();
        let deadline = Instant::now() + Duration::from_secs(DISCOVERY_TIMEOUT_S);
        // The first answer may carry one address only: wait until the LAN one shows.
        let mut found: Option<phone_client::discovery::NearbyOrder> = None;
        while !found.as_ref().is_some_and(|n| n.addresses.contains(&lan)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if let Some(NearbyEvent::Listed(n) | NearbyEvent::Updated(n)) = browser.next_event(left)
            {
                found = Some(n);
            }
        }
        let found = found.expect("the order was not listed in time");
        let addrs = found.addresses.clone();
        browser.stop();
        (found, addrs)
    })
    .await
    .unwrap();
    assert_eq!(found.record.order, order.id);
    assert!(
        addrs.contains(&lan),
        "announced only on {addrs:?}, not on the LAN interface {LAN_ADDR}"
    );
    let _ = announcer.withdraw();
    server.stop().await;
}
