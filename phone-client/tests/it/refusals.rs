//! Refusals that must happen on the device, before any request: a pay link or record
//! naming a foreign server, and an order already paid from this device. A counting TCP
//! listener stands in for the trusted server and proves no connection was made.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use phone_client::companion::CompanionError;
use phone_client::discovery::IgnoreFn;
use phone_client::{Companion, OrderRef, StateStore};
use protocol::{
    Currency, DeviceId, DiscoveryRecord, Money, OrderId, PayLink, ServerUrl, ShortCode,
};

/// A listener that counts connection attempts and never answers.
struct Counting {
    url: ServerUrl,
    hits: Arc<AtomicUsize>,
}

fn counting_server() -> Counting {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = ServerUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(conn);
        }
    });
    Counting { url, hits }
}

fn companion(server: &ServerUrl, dir: &tempfile::TempDir) -> Companion {
    let store = StateStore::open(&dir.path().join("state.json")).unwrap();
    Companion::new(vec![server.clone()], store).unwrap()
}

fn record(server: &ServerUrl) -> DiscoveryRecord {
    DiscoveryRecord::new(
        OrderId::random(),
        ShortCode::random(),
        Money::new(499, Currency::parse("EUR").unwrap()),
        server.clone(),
        "Living-room TV",
        DeviceId::parse("SN-TEST-1").unwrap(),
        "Night Train",
    )
}

#[tokio::test]
async fn foreign_server_link_is_refused_without_a_request() {
    let trusted = counting_server();
    let foreign = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let c = companion(&trusted.url, &dir);
    let link = PayLink::new(foreign.url.clone(), OrderId::random());
    // The QR text as the TV encodes it (upper case) goes through the same parsing.
    let r = OrderRef::parse_input(&link.to_string()).unwrap();
    let err = c.fetch(&r).await.unwrap_err();
    assert!(
        matches!(err, CompanionError::UntrustedServer { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&phone_client::companion::host(&foreign.url))
            && msg.contains("not a server this companion trusts")
            && !msg.contains("://"),
        "{msg}"
    );
    assert_eq!(foreign.hits.load(Ordering::SeqCst), 0);
    assert_eq!(trusted.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn foreign_discovery_record_is_refused_without_a_request() {
    let trusted = counting_server();
    let foreign = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let c = companion(&trusted.url, &dir);
    let err = c
        .fetch(&OrderRef::Discovered(record(&foreign.url)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CompanionError::UntrustedServer { .. }),
        "{err}"
    );
    assert_eq!(
        foreign.hits.load(Ordering::SeqCst) + trusted.hits.load(Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn order_paid_here_is_ignored_without_a_request() {
    let trusted = counting_server();
    let dir = tempfile::tempdir().unwrap();
    let order = OrderId::random();
    let mut store = StateStore::open(&dir.path().join("state.json")).unwrap();
    store.update(|s| s.mark_paid(&trusted.url, &order)).unwrap();
    let c = Companion::new(vec![trusted.url.clone()], store).unwrap();

    let link = OrderRef::Link(PayLink::new(trusted.url.clone(), order.clone()));
    let err = c.fetch(&link).await.unwrap_err();
    assert!(
        matches!(err, CompanionError::AlreadyPaidHere { .. }),
        "{err}"
    );

    let mut rec = record(&trusted.url);
    rec.order = order.clone();
    let err = c.fetch(&OrderRef::Discovered(rec)).await.unwrap_err();
    assert!(
        matches!(err, CompanionError::AlreadyPaidHere { .. }),
        "{err}"
    );
    assert_eq!(
        trusted.hits.load(Ordering::SeqCst),
        0,
        "no request for a paid order"
    );

    // The same memory survives a restart of the companion.
    let again = companion(&trusted.url, &dir);
    assert!(again.is_paid_here(&trusted.url, &order));
}

#[test]
fn garbage_input_is_not_a_pay_link() {
    for s in [
        "",
        "hello",
        "http://127.0.0.1:8080/P/short",
        "AEIO-UAEI",
        "javascript:alert(1)",
    ] {
        assert!(OrderRef::parse_input(s).is_err(), "{s:?}");
    }
}

#[test]
fn a_companion_needs_a_trusted_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::open(&dir.path().join("s.json")).unwrap();
    assert!(matches!(
        Companion::new(vec![], store),
        Err(CompanionError::NoServer)
    ));
    let _unused: Option<IgnoreFn> = None;
}
