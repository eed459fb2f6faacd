//! mDNS discovery on `lo` only: a TV's announcement is listed with its name, item and
//! amount, withdrawn when the TV withdraws it; foreign and paid orders are not listed.

use std::time::Duration;

use phone_client::discovery::IgnoreFn;
use phone_client::{Announcer, Browser, Interfaces, NearbyEvent};
use protocol::{Currency, DeviceId, DiscoveryRecord, Money, OrderId, ServerUrl, ShortCode};

/// Longest wait for one discovery event on `lo`, in seconds (probing takes ~1 s).
const EVENT_TIMEOUT_S: u64 = 10;

fn record(server: &str, tv: &str, id: &str) -> DiscoveryRecord {
    DiscoveryRecord::new(
        OrderId::random(),
        ShortCode::random(),
        Money::new(1299, Currency::parse("EUR").unwrap()),
        ServerUrl::parse(server).unwrap(),
        tv,
        DeviceId::parse(id).unwrap(),
        "Lamp Aurora",
    )
}

/// Waits for an event matching `pred`, keeping every event seen in `log`.
fn wait_for(
    browser: &mut Browser,
    log: &mut Vec<NearbyEvent>,
    what: &str,
    pred: impl Fn(&NearbyEvent) -> bool,
) -> NearbyEvent {
    // Events arrive in any order across TVs: one seen while waiting for another counts.
    if let Some(ev) = log.iter().find(|e| pred(e)) {
        return ev.clone();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(EVENT_TIMEOUT_S);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        if let Some(ev) = browser.next_event(left) {
            log.push(ev.clone());
            if pred(&ev) {
                return ev;
            }
        }
    }
}

#[test]
fn discovery_lists_updates_withdraws_and_refuses_on_lo() {
    let trusted = "http://127.0.0.1:18080";
    let paid_here = record(trusted, "Bedroom TV", "SN-DISC-PAID");
    let paid_order = paid_here.order.clone();
    let ignore: IgnoreFn = Box::new(move |r| r.order == paid_order);
    let mut browser = Browser::start(
        &Interfaces::loopback(),
        vec![ServerUrl::parse(trusted).unwrap()],
        ignore,
    )
    .unwrap();

    let mut log = Vec::new();
    let mut tv = Announcer::start(&Interfaces::loopback()).unwrap();
    let first = record(trusted, "Living-room TV", "SN-DISC-1");
    tv.announce(&first).unwrap();
    let mut spoof = Announcer::start(&Interfaces::loopback()).unwrap();
    spoof
        .announce(&record(
            "http://127.0.0.1:9",
            "Totally your TV",
            "SN-DISC-EVIL",
        ))
        .unwrap();
    let mut paid_tv = Announcer::start(&Interfaces::loopback()).unwrap();
    paid_tv.announce(&paid_here).unwrap();

    let listed = wait_for(&mut browser, &mut log, "the TV's order", |e| {
        matches!(e, NearbyEvent::Listed(_))
    });
    let NearbyEvent::Listed(n) = listed else {
        unreachable!()
    };
    assert_eq!(n.record, first);
    assert_eq!(n.record.tv_name, "Living-room TV");
    assert_eq!(n.record.amount.to_string(), "12.99 EUR");
    assert!(!n.addresses.is_empty());

    wait_for(
        &mut browser,
        &mut log,
        "the spoof to be refused",
        |e| matches!(e, NearbyEvent::Refused { reason, .. } if reason.contains("not a trusted server")),
    );

    // The TV switches to a new order under the same instance name.
    let second = DiscoveryRecord {
        order: OrderId::random(),
        ..first.clone()
    };
    tv.announce(&second).unwrap();
    let updated = wait_for(
        &mut browser,
        &mut log,
        "the new order",
        |e| matches!(e, NearbyEvent::Updated(n) if n.record.order == second.order),
    );
    assert!(matches!(updated, NearbyEvent::Updated(_)));

    tv.withdraw().unwrap();
    wait_for(
        &mut browser,
        &mut log,
        "the withdrawal",
        |e| matches!(e, NearbyEvent::Withdrawn(n) if n.record.order == second.order),
    );

    // Only trusted, unpaid orders were ever listed.
    assert_eq!(browser.nearby().count(), 0);
    for ev in &log {
        if let NearbyEvent::Listed(n) | NearbyEvent::Updated(n) = ev {
            assert_eq!(n.record.server.as_str(), trusted, "{ev:?}");
            assert_ne!(
                n.record.order, paid_here.order,
                "an order paid here was listed"
            );
        }
    }
    tv.stop();
    spoof.stop();
    paid_tv.stop();
    browser.stop();
}
