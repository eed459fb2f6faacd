//! (2) The TV announces its order over mDNS on `lo` → the companion lists it (TV name,
//! item, amount) → fetches it from the server → pays → the TV withdraws the record and
//! the list drops it.

use std::time::{Duration, Instant};

use couchpay_e2e::{TV_ID, TV_NAME, companion, tv_order, tv_sees_paid};
use phone_client::discovery::IgnoreFn;
use phone_client::{Announcer, Browser, Credentials, Interfaces, NearbyEvent, OrderRef};
use protocol::{AccountId, DeviceId, DiscoveryRecord, Pin};
use server_stub::testing::TestServer;

/// Longest wait for one discovery event on `lo`, in seconds.
const DISCOVERY_TIMEOUT_S: u64 = 10;

fn next_matching(browser: &mut Browser, pred: impl Fn(&NearbyEvent) -> bool) -> NearbyEvent {
    let deadline = Instant::now() + Duration::from_secs(DISCOVERY_TIMEOUT_S);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no matching discovery event in time");
        if let Some(ev) = browser.next_event(left)
            && pred(&ev)
        {
            return ev;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_order_is_paid_and_withdrawn() {
    let server = TestServer::start().await;
    let tv = server.client();
    let order = tv_order(&tv, "film-night-train").await.order;
    // What the TV announces while it shows the order.
    let record = couchpay_e2e::tv_record(&server, &order);
    let mut announcer = Announcer::start(&Interfaces::loopback()).unwrap();
    announcer.announce(&record).unwrap();

    let (mut phone, _dir) = companion(&server);
    let trusted = vec![server.url.clone()];
    let (record_seen, mut browser) = tokio::task::spawn_blocking(move || {
        let ignore: IgnoreFn = Box::new(|_| false);
        let mut browser = Browser::start(&Interfaces::loopback(), trusted, ignore).unwrap();
        let ev = next_matching(&mut browser, |e| matches!(e, NearbyEvent::Listed(_)));
        let NearbyEvent::Listed(n) = ev else {
            unreachable!()
        };
        (n.record, browser)
    })
    .await
    .unwrap();
    assert_eq!(record_seen.tv_name, TV_NAME);
    assert_eq!(record_seen.item, "Night Train");
    assert_eq!(record_seen.amount.to_string(), "4.99 EUR");

    let c = phone
        .fetch(&OrderRef::Discovered(record_seen))
        .await
        .unwrap();
    assert_eq!(c.order.id, order.id);
    let creds = Credentials::Pin {
        account: AccountId::parse("alice").unwrap(),
        pin: Pin::parse("1234").unwrap(),
    };
    phone.pay(&c, &creds, None).await.unwrap();
    assert!(tv_sees_paid(&tv, &order.id).await);

    // The TV withdraws its announcement once paid; the companion's list follows.
    announcer.withdraw().unwrap();
    let withdrawn = tokio::task::spawn_blocking(move || {
        let ev = next_matching(&mut browser, |e| matches!(e, NearbyEvent::Withdrawn(_)));
        let left = browser.nearby().count();
        browser.stop();
        (ev, left)
    })
    .await
    .unwrap();
    assert!(matches!(withdrawn.0, NearbyEvent::Withdrawn(ref n) if n.record.order == order.id));
    assert_eq!(withdrawn.1, 0);
    announcer.stop();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_record_with_wrong_amount_is_refused() {
    // A record naming the trusted server and a real order, but lying about the amount,
    // is refused after the server's copy is fetched.
    let server = TestServer::start().await;
    let order = tv_order(&server.client(), "film-night-train").await.order;
    let (phone, _dir) = companion(&server);
    let mut amount = order.amount;
    amount.minor = 1;
    let lie = DiscoveryRecord::new(
        order.id.clone(),
        order.short_code.clone(),
        amount,
        server.url.clone(),
        TV_NAME,
        DeviceId::parse(TV_ID).unwrap(),
        "Night Train",
    );
    let err = phone.fetch(&OrderRef::Discovered(lie)).await.unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    server.stop().await;
}
