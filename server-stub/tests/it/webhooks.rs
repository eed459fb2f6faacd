//! Merchant webhooks: a receiver on loopback gets signed events; failures are retried
//! with backoff and the same event; a delivery survives SIGKILL of the server between
//! the commit and the delivery; the delivery log and resend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use protocol::AccountId;
use protocol::client::Client;
use protocol::webhook::{
    CreateWebhook, DeliveryState, EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookEvent, WebhookPayload,
    verify,
};
use server_stub::testing::TestServer;
use tokio::sync::mpsc;

use crate::*;

/// What the receiver does with its `n`th request (0-based).
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Never answers (the server's attempt stays in flight).
    Hang,
}

/// One request as the receiver saw it.
#[derive(Debug)]
struct Received {
    signature: String,
    event_id: String,
    body: Bytes,
}

/// An HTTP receiver on 127.0.0.1; every request is reported on the channel.
struct Receiver {
    url: String,
    port: u16,
    got: mpsc::UnboundedReceiver<Received>,
}

async fn receiver(answer: impl Fn(usize) -> Answer + Send + Sync + 'static) -> Receiver {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, got) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    let answer = Arc::new(answer);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (tx, count, answer) = (tx.clone(), count.clone(), answer.clone());
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let _ = tx.send(Received {
                    signature: header(SIGNATURE_HEADER),
                    event_id: header(EVENT_ID_HEADER),
                    body,
                });
                match answer(count.fetch_add(1, Ordering::SeqCst)) {
                    Answer::Status(s) => StatusCode::from_u16(s).unwrap(),
                    Answer::Hang => std::future::pending().await,
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://127.0.0.1:{port}/hook"),
        port,
        got,
    }
}

impl Receiver {
    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(20), self.got.recv())
            .await
            .expect("a webhook delivery within 20 s")
            .unwrap()
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The merchant of the catalog's films.
async fn film_merchant(c: &Client) -> AccountId {
    order_on(c, "film-night-train", "SN-HOOK-0000")
        .await
        .order
        .merchant
        .id
}

/// Registers `rx` as the endpoint of the films' merchant.
async fn hook_films(
    srv: &TestServer,
    c: &Client,
    rx: &Receiver,
) -> protocol::webhook::WebhookEndpoint {
    c.create_webhook(
        &srv.admin_token,
        &CreateWebhook {
            merchant: film_merchant(c).await,
            url: rx.url.clone(),
        },
    )
    .await
    .unwrap()
}

/// Alice pays a fresh order for a film on the test TV.
async fn pay_a_film(c: &Client) -> protocol::Order {
    let o = order(c, "film-night-train").await.order;
    c.pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    o
}

#[tokio::test]
async fn a_payment_reaches_the_merchants_endpoint_signed() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let mut rx = receiver(|_| Answer::Status(200)).await;
    let merchant = film_merchant(&c).await;
    let endpoint = c
        .create_webhook(
            &srv.admin_token,
            &CreateWebhook {
                merchant: merchant.clone(),
                url: rx.url.clone(),
            },
        )
        .await
        .unwrap();
    assert!(endpoint.secret.starts_with("whsec_"));

    let o = order(&c, "film-night-train").await.order;
    c.pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    let got = rx.next().await;
    assert_eq!(
        verify(&endpoint.secret, &got.signature, &got.body, now_s(), 300),
        Ok(()),
        "the signature verifies"
    );
    let mut tampered = got.body.to_vec();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    assert!(
        verify(&endpoint.secret, &got.signature, &tampered, now_s(), 300).is_err(),
        "a tampered body does not"
    );
    let event: WebhookEvent = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(event.id, got.event_id);
    assert!(event.id.starts_with("evt_"));
    match event.payload {
        WebhookPayload::OrderPaid { order } => {
            assert_eq!(order.id, o.id);
            assert_eq!(order.status, protocol::OrderStatus::Paid);
        }
        other => panic!("expected order.paid, got {other:?}"),
    }

    // The delivery log has it, delivered on the first attempt.
    let deadline = Instant::now() + Duration::from_secs(10);
    let log = loop {
        let log = c
            .webhook_deliveries(&srv.admin_token, &endpoint.id)
            .await
            .unwrap();
        if log
            .first()
            .is_some_and(|d| d.state == DeliveryState::Delivered)
        {
            break log;
        }
        assert!(Instant::now() < deadline, "delivery recorded: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].kind, "order.paid");
    assert_eq!(log[0].event_id, event.id);
    assert_eq!(log[0].attempts.len(), 1);
    assert_eq!(log[0].attempts[0].status, Some(200));

    // Resend: the same event again.
    c.resend_webhook(&srv.admin_token, log[0].id).await.unwrap();
    let again = rx.next().await;
    assert_eq!(again.event_id, event.id);
    assert_eq!(again.body, got.body);

    // A cancelled order is told too; another merchant's events are not.
    let o2 = order_on(&c, "film-night-train", "SN-HOOK-0002").await;
    c.cancel(&o2.order.id, &o2.tv_token).await.unwrap();
    let cancelled: WebhookEvent = serde_json::from_slice(&rx.next().await.body).unwrap();
    assert_eq!(cancelled.payload.kind(), "order.cancelled");

    // Unknown ids are a JSON 404.
    assert_code(
        c.webhook_deliveries(&srv.admin_token, "we_nothing").await,
        protocol::ErrorCode::NotFound,
    );
}

/// Waits for the next request while moving the server's (test) clock forward in steps;
/// returns it and how far the clock moved first.
async fn next_moving_the_clock(c: &Client, admin: &str, rx: &mut Receiver) -> (Received, u64) {
    const STEP_MS: u64 = 100;
    let mut moved = 0;
    loop {
        if let Ok(Some(r)) = tokio::time::timeout(Duration::from_millis(150), rx.got.recv()).await {
            return (r, moved);
        }
        assert!(moved < 60_000, "no retry within a minute of server time");
        c.advance_clock(admin, Duration::from_millis(STEP_MS))
            .await
            .unwrap();
        moved += STEP_MS;
    }
}

#[tokio::test]
async fn a_failing_endpoint_gets_the_same_event_again_with_backoff() {
    // The default schedule, on the test clock (which moving also wakes the deliveries).
    let srv = TestServer::start_with(|c| c.test_clock = true).await;
    let base_ms = server_stub::webhooks::DEFAULT_RETRY_BASE_MS;
    let c = srv.client();
    // Three failures, then success.
    let mut rx = receiver(|n| Answer::Status(if n < 3 { 500 } else { 204 })).await;
    let endpoint = hook_films(&srv, &c, &rx).await;
    pay_a_film(&c).await;
    let mut tries = vec![rx.next().await];
    let mut waits = Vec::new();
    for _ in 0..3 {
        let (r, moved) = next_moving_the_clock(&c, &srv.admin_token, &mut rx).await;
        tries.push(r);
        waits.push(moved);
    }
    for t in &tries[1..] {
        assert_eq!(t.body, tries[0].body, "the event exactly as it was");
        assert_eq!(t.event_id, tries[0].event_id);
        assert_eq!(
            verify(&endpoint.secret, &t.signature, &t.body, now_s(), 300),
            Ok(())
        );
    }
    // Each wait is base × 2^(n−1), ± 20 % jitter (and one clock step).
    for (n, moved) in waits.iter().enumerate() {
        let plain = base_ms << n;
        assert!(
            *moved + 100 >= plain * 8 / 10 && *moved <= plain * 12 / 10 + 100,
            "retry {}: after {moved} ms, expected about {plain} ms ({waits:?})",
            n + 1
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = c
            .webhook_deliveries(&srv.admin_token, &endpoint.id)
            .await
            .unwrap();
        if log[0].state == DeliveryState::Delivered {
            let statuses: Vec<_> = log[0].attempts.iter().map(|a| a.status).collect();
            // Newest first.
            assert_eq!(statuses, [Some(204), Some(500), Some(500), Some(500)]);
            assert!(log[0].attempts[1].error.is_some());
            break;
        }
        assert!(Instant::now() < deadline, "delivered in the log: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Delivered once it succeeded: it never comes again, however far the clock moves.
    // (The order `film_merchant` left pending expires meanwhile, and that is told.)
    c.advance_clock(&srv.admin_token, Duration::from_secs(3_600))
        .await
        .unwrap();
    let expired: WebhookEvent = serde_json::from_slice(&rx.next().await.body).unwrap();
    assert_eq!(expired.payload.kind(), "order.expired");
    tokio::time::sleep(Duration::from_millis(700)).await;
    while let Ok(r) = rx.got.try_recv() {
        assert_ne!(r.event_id, tries[0].event_id, "no delivery after success");
    }
}

/// Starts the real binary on `db` with the webhooks file `hooks`; returns the child and
/// a client once it answers.
async fn start_binary(
    db: &server_stub::db::Database,
    port: u16,
    hooks: &std::path::Path,
) -> (std::process::Child, Client) {
    let child = server_command(db, port)
        .arg("--webhooks")
        .arg(hooks)
        .args(["--webhook-timeout-ms", "500", "--admin-token", "test-admin"])
        .spawn()
        .expect("start couchpay-server");
    (child, client_when_up(port).await)
}

#[tokio::test]
async fn a_delivery_survives_sigkill_between_commit_and_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let db = server_stub::testing::fresh_database(dir.path()).await;
    // The first request hangs (the server is killed while it is in flight); the rest
    // are answered.
    let mut rx = receiver(|n| {
        if n == 0 {
            Answer::Hang
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let secret = "whsec_configured_in_the_file_0001";
    let hooks = dir.path().join("webhooks.json");
    std::fs::write(
        &hooks,
        format!(
            r#"[{{"merchant": "northwind-films", "url": "{}", "secret": "{secret}"}}]"#,
            rx.url
        ),
    )
    .unwrap();
    let port = free_port();
    assert_ne!(port, rx.port);

    let (mut child, c) = start_binary(&db, port, &hooks).await;
    let o = order(&c, "film-night-train").await.order;
    assert_eq!(
        o.merchant.id.as_str(),
        "northwind-films",
        "the file names the films' merchant"
    );
    c.pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    let first = rx.next().await;
    // The delivery is committed and in flight: SIGKILL, no shutdown code runs.
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, c) = start_binary(&db, port, &hooks).await;
    let again = rx.next().await;
    assert_eq!(again.event_id, first.event_id);
    assert_eq!(again.body, first.body);
    assert_eq!(
        verify(secret, &again.signature, &again.body, now_s(), 300),
        Ok(())
    );
    let event: WebhookEvent = serde_json::from_slice(&again.body).unwrap();
    assert!(matches!(event.payload, WebhookPayload::OrderPaid { ref order } if order.id == o.id));
    // The file's endpoint was registered once, though the server started twice.
    let endpoints: Vec<protocol::webhook::WebhookEndpoint> = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/v1/admin/webhooks"))
        .bearer_auth("test-admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0].secret, secret);
    drop(c);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Review: a try overtaken by a resend (or by another node after its lease ran out)
/// must not overwrite what happened since: here the resend is delivered, and the old
/// try, timing out later, leaves it delivered and schedules nothing.
#[tokio::test]
async fn a_late_outcome_of_an_overtaken_try_changes_nothing() {
    let srv = TestServer::start_with(|c| {
        c.test_clock = true;
        c.webhook_timeout_ms = 1_000;
    })
    .await;
    let c = srv.client();
    let mut rx = receiver(|n| {
        if n == 0 {
            Answer::Hang
        } else {
            Answer::Status(200)
        }
    })
    .await;
    let endpoint = hook_films(&srv, &c, &rx).await;
    pay_a_film(&c).await;
    let first = rx.next().await; // in flight, never answered
    let log = c
        .webhook_deliveries(&srv.admin_token, &endpoint.id)
        .await
        .unwrap();
    c.resend_webhook(&srv.admin_token, log[0].id).await.unwrap();
    let second = rx.next().await;
    assert_eq!(second.event_id, first.event_id);
    // The first try times out after a second; give it time to report.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let log = c
        .webhook_deliveries(&srv.admin_token, &endpoint.id)
        .await
        .unwrap();
    assert_eq!(log[0].state, DeliveryState::Delivered, "{log:?}");
    assert!(log[0].delivered_at_ms.is_some());
    // Both tries are in the log: the answered one and the timed-out one.
    let mut statuses: Vec<_> = log[0].attempts.iter().map(|a| a.status).collect();
    statuses.sort();
    assert_eq!(statuses, [None, Some(200)], "{log:?}");
    // Nothing was scheduled by the late failure: moving the clock sends nothing more.
    c.advance_clock(&srv.admin_token, Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    while let Ok(r) = rx.got.try_recv() {
        assert_ne!(
            r.event_id, first.event_id,
            "sent again after it was delivered"
        );
    }
}
