//! mDNS tests on the loopback interface only: a browser finds the TV's record with the
//! right order, and the record disappears within a second of being withdrawn.

use std::time::{Duration, Instant};

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent};
use protocol::{DiscoveryRecord, SERVICE_TYPE, ServerUrl};
use tv_client::announce::{Announcer, Interfaces};

use crate::support::*;

/// How long a browser may take to resolve a fresh record (RFC 6762 probing takes ~1 s).
pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// SPEC P6: the TV must send its goodbye this soon after the order stops being payable.
pub(crate) const GONE_WITHIN: Duration = Duration::from_secs(1);
/// RFC 6762 §10.1: a browser keeps a record for one second after its goodbye (TTL 0)
/// before deleting it, so "gone from the browser" is the goodbye plus this grace.
pub(crate) const RFC6762_GOODBYE_GRACE: Duration = Duration::from_secs(1);
/// Timer slack of the browsing daemon when it expires the record.
pub(crate) const BROWSER_SLACK: Duration = Duration::from_millis(300);

/// Announcer restricted to `lo`, as every test must be.
pub(crate) fn loopback_announcer() -> Announcer {
    Announcer::new(&Interfaces::Only(vec!["lo".into()])).expect("mDNS daemon on lo")
}

/// A DNS-SD browser for Couchpay TVs on `lo`.
pub(crate) struct Browser {
    daemon: ServiceDaemon,
    events: mdns_sd::Receiver<ServiceEvent>,
}

impl Browser {
    pub(crate) fn on_loopback() -> Self {
        let daemon = ServiceDaemon::new().expect("mDNS daemon");
        daemon.disable_interface(IfKind::All).unwrap();
        daemon.enable_interface("lo").unwrap();
        let events = daemon.browse(SERVICE_TYPE).unwrap();
        Self { daemon, events }
    }

    /// Waits for the order announced under `instance` and parses it.
    pub(crate) fn resolve(&self, instance: &str) -> DiscoveryRecord {
        match self.resolve_any(instance) {
            protocol::Announcement::Order(r) => r,
            other => panic!("expected an order under {instance}, got {other:?}"),
        }
    }

    /// Waits for any record announced under `instance` and parses it.
    pub(crate) fn resolve_any(&self, instance: &str) -> protocol::Announcement {
        let deadline = Instant::now() + RESOLVE_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ServiceEvent::ServiceResolved(s)) if s.fullname.starts_with(instance) => {
                    let props = s.txt_properties.clone().into_property_map_str();
                    return protocol::Announcement::from_txt(&props)
                        .expect("a valid Couchpay record");
                }
                Ok(_) => {}
                Err(e) => panic!("no mDNS record for {instance} within {RESOLVE_TIMEOUT:?}: {e}"),
            }
        }
    }

    /// Waits for `instance` to be removed; returns how long that took from `since`.
    pub(crate) fn removed(&self, instance: &str, since: Instant) -> Duration {
        loop {
            let left = (since + RESOLVE_TIMEOUT).saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ServiceEvent::ServiceRemoved(_, fullname)) if fullname.starts_with(instance) => {
                    return since.elapsed();
                }
                Ok(_) => {}
                Err(e) => panic!("{instance} still announced after {RESOLVE_TIMEOUT:?}: {e}"),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.daemon.shutdown();
    }
}

#[test]
fn announced_record_is_found_on_lo_and_withdrawn_within_1s() {
    let browser = Browser::on_loopback();
    let mut announcer = loopback_announcer();
    let server = ServerUrl::parse("http://127.0.0.1:8080").unwrap();
    let item = &catalog().items[0];
    let order = order_for(item, &server, 1);
    let record = DiscoveryRecord::new(
        order.id.clone(),
        order.short_code.clone(),
        order.amount,
        server,
        &identity().tv_name,
        identity().device_id,
        &item.title,
    );
    let announcement = announcer
        .announce(&protocol::Announcement::Order(record.clone()))
        .unwrap();
    assert!(announcer.is_announcing());
    // The daemon reports the record went out on `lo`.
    let io = io_runtime();
    io.block_on(announcement.confirmed())
        .expect("announced on lo");
    let found = browser.resolve(&record.instance_name());
    assert_eq!(found, record);

    let t0 = Instant::now();
    let goodbye = announcer.withdraw().expect("a record was announced");
    assert!(!announcer.is_announcing());
    let status = goodbye.recv_timeout(GONE_WITHIN);
    assert!(
        matches!(status, Ok(mdns_sd::UnregisterStatus::OK)),
        "{status:?}"
    );
    let sent = t0.elapsed();
    assert!(sent <= GONE_WITHIN, "goodbye sent only after {sent:?}");
    let took = browser.removed(&record.instance_name(), t0);
    eprintln!("mDNS: goodbye sent after {sent:?}, browser dropped the record after {took:?}");
    assert!(
        took <= GONE_WITHIN + RFC6762_GOODBYE_GRACE + BROWSER_SLACK,
        "record still visible {took:?} after withdrawal"
    );
}

/// The TV's presence has its own name: it stays announced while offers come and go, so
/// a phone can always pick the TV from Nearby.
#[test]
fn presence_stays_announced_while_the_offer_is_withdrawn() {
    let browser = Browser::on_loopback();
    let mut announcer = loopback_announcer();
    let server = ServerUrl::parse("http://127.0.0.1:8080").unwrap();
    let device = protocol::DeviceId::random();
    let presence = protocol::TvPresence::new(server.clone(), "Den TV", device.clone());
    let io = io_runtime();
    io.block_on(announcer.present(&presence).unwrap().confirmed())
        .expect("presence announced on lo");
    assert_eq!(
        browser.resolve_any(&presence.instance_name()),
        protocol::Announcement::Tv(presence.clone())
    );
    let item = &catalog().items[0];
    let order = order_for(item, &server, 1);
    let record = DiscoveryRecord::new(
        order.id.clone(),
        order.short_code.clone(),
        order.amount,
        server,
        "Den TV",
        device,
        &item.title,
    );
    io.block_on(
        announcer
            .announce(&protocol::Announcement::Order(record.clone()))
            .unwrap()
            .confirmed(),
    )
    .expect("order announced");
    assert_eq!(browser.resolve(&record.instance_name()), record);
    let t0 = Instant::now();
    let _ = announcer.withdraw();
    browser.removed(&record.instance_name(), t0);
    // Only the order went: the presence answers a fresh browse.
    let fresh = Browser::on_loopback();
    assert_eq!(
        fresh.resolve_any(&presence.instance_name()),
        protocol::Announcement::Tv(presence)
    );
}

/// `COUCHPAY_MDNS_INTERFACES=all` once reached the TV as an interface called "all": the
/// record was registered, nothing went out, and the TV said it was announced. Now the
/// announcement is only confirmed when the daemon really sent it on an interface.
#[test]
fn a_record_on_no_real_interface_is_not_claimed_as_announced() {
    let mut announcer =
        Announcer::new(&Interfaces::Only(vec!["no-such-interface0".into()])).expect("mDNS daemon");
    let server = ServerUrl::parse("http://127.0.0.1:8080").unwrap();
    let item = &catalog().items[0];
    let order = order_for(item, &server, 1);
    let record = DiscoveryRecord::new(
        order.id.clone(),
        order.short_code.clone(),
        order.amount,
        server,
        &identity().tv_name,
        identity().device_id,
        &item.title,
    );
    let announcement = announcer
        .announce(&protocol::Announcement::Order(record.clone()))
        .expect("registered");
    let io = io_runtime();
    let result = io.block_on(announcement.confirmed());
    assert!(
        matches!(result, Err(tv_client::announce::AnnounceError::NotSent)),
        "{result:?}"
    );
    // And "all" means every interface, not an interface named "all".
    assert_eq!(Interfaces::from_names(&["all"]), Interfaces::All);
}
