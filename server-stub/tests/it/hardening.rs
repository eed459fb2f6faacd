//! Regression tests for the defects a black-box test found (issue "Hardening"), each
//! named after what broke, over a real loopback socket. Client addresses other than
//! 127.0.0.1 are made by binding the client socket to another loopback address.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::client::Client;
use protocol::{
    AccountEvent, CreateAccount, CreateCard, CreateMerchantKey, Currency, DeviceId, ErrorBody,
    ErrorCode, IdempotencyKey, Money, PayerAuth, Pin, Token, TopUp,
};
use server_stub::testing::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::*;

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

/// A typed client whose connections come from the loopback address `from`.
fn client_from(srv: &TestServer, from: &str) -> Client {
    let ip: IpAddr = from.parse().unwrap();
    let http = reqwest::Client::builder()
        .local_address(ip)
        .build()
        .unwrap();
    Client::with_http(srv.url.clone(), http)
}

async fn error_body(resp: reqwest::Response) -> (u16, ErrorBody) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    assert!(ct.starts_with("application/json"), "{status} {ct}: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

async fn new_wallet(srv: &TestServer, id: &str, pin: &str, minor: u64) {
    let c = srv.client();
    c.create_account(
        &srv.admin_token,
        &CreateAccount {
            id: account(id),
            name: format!("Test {id}"),
            pin: Pin::parse(pin).unwrap(),
            currency: eur(),
        },
    )
    .await
    .unwrap();
    if minor > 0 {
        c.top_up(
            &srv.admin_token,
            &TopUp {
                account: account(id),
                amount: Money::new(minor, eur()),
            },
        )
        .await
        .unwrap();
    }
}

/// Defect 1: 50 concurrent pays with the same key and the right PIN got 45 × 423
/// `account_locked`, because in-flight checks counted as failures for each other.
#[tokio::test]
async fn right_pin_is_never_refused_as_locked_under_concurrency() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await.order;
    let k = key();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (c, id, k) = (c.clone(), o.id.clone(), k.clone());
            tokio::spawn(async move { c.pay(&id, &k, &pay_req("alice", pin("1234"))).await })
        })
        .collect();
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.push(t.await.unwrap().expect("a right PIN pays or replays"));
    }
    assert!(
        receipts.windows(2).all(|w| w[0] == w[1]),
        "identical receipts"
    );
    assert!(c.audit().await.unwrap().ok);
}

/// Defect 2: top-ups of 2^61−1 were accepted until a balance overflowed into a float
/// (500 "Invalid column type Real") and the audit failed with "integer overflow".
#[tokio::test]
async fn money_overflow_is_refused_and_the_audit_cannot_overflow() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let huge = TopUp {
        account: account("alice"),
        amount: Money::new((1 << 61) - 1, eur()),
    };
    for _ in 0..5 {
        assert_code(
            c.top_up(&srv.admin_token, &huge).await,
            ErrorCode::LimitExceeded,
        );
    }
    // Fill one wallet to the balance limit with the largest allowed top-ups: the next
    // credit is refused with a clear code, the ledger stays exact.
    let max = server_stub::ledger::MAX_AMOUNT_MINOR;
    let steps = (server_stub::ledger::MAX_BALANCE_MINOR as u64) / max;
    let r = srv
        .server
        .state
        .store
        .write(move |conn, _| {
            let balance: i64 =
                conn.query_row("SELECT balance FROM accounts WHERE id = 'bob'", (), |r| {
                    r.get(0)
                })?;
            let room = server_stub::ledger::MAX_BALANCE_MINOR - balance;
            for _ in 0..(room as u64 / max).min(steps) {
                server_stub::ledger::top_up(conn, "bob", Money::new(max, eur()), 0)?;
            }
            // The refused transfer undoes itself, though this job goes on and commits.
            Ok(server_stub::ledger::top_up(conn, "bob", Money::new(max, eur()), 0).map(|_| ()))
        })
        .await
        .unwrap();
    assert_eq!(r.unwrap_err().code(), ErrorCode::LimitExceeded);
    let report = c.audit().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);

    // A damaged database (on SQLite a balance stored as a float, as the old code could
    // leave it; PostgreSQL's typed column cannot hold one, so a balance off by one) gets
    // a report naming the problem, not an error.
    srv.server
        .state
        .store
        .write(|conn, _| {
            let damage = match conn.backend() {
                server_stub::db::Backend::Sqlite => {
                    "UPDATE accounts SET balance = 1e19 WHERE id = 'carol'"
                }
                server_stub::db::Backend::Postgres => {
                    "UPDATE accounts SET balance = balance + 1 WHERE id = 'carol'"
                }
            };
            conn.execute(damage, ())?;
            Ok(())
        })
        .await
        .unwrap();
    let report = c.audit().await.unwrap();
    assert!(!report.ok);
    assert!(
        report.problems.iter().any(|p| p.contains("carol")),
        "{:?}",
        report.problems
    );
}

/// Defect 3: `%FF%FE` gave 400 text/plain, DELETE gave 405 with no body, unknown
/// endpoints 400, and 414/431 had empty bodies.
#[tokio::test]
async fn every_v1_error_has_a_json_body_with_the_right_status() {
    let srv = TestServer::start().await;
    let http = reqwest::Client::new();
    let base = srv.url.to_string();
    let o = order(&srv.client(), "film-night-train").await.order;

    let (status, body) = error_body(
        http.get(format!("{base}/v1/orders/%FF%FE"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.error.code), (400, ErrorCode::InvalidRequest));

    let resp = http
        .delete(format!("{base}/v1/orders/{}", o.id))
        .send()
        .await
        .unwrap();
    let allow = resp.headers().get("allow").cloned();
    let (status, body) = error_body(resp).await;
    assert_eq!(
        (status, body.error.code),
        (405, ErrorCode::MethodNotAllowed)
    );
    assert!(allow.is_some_and(|a| a.to_str().unwrap().contains("GET")));

    let (status, body) =
        error_body(http.get(format!("{base}/v1/nope")).send().await.unwrap()).await;
    assert_eq!((status, body.error.code), (404, ErrorCode::NotFound));

    let long = "a".repeat(16 * 1024);
    let (status, body) = error_body(
        http.get(format!("{base}/v1/orders/{long}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.error.code), (414, ErrorCode::UriTooLong));

    let mut req = http.get(format!("{base}/v1/catalog"));
    // More than MAX_HEADERS (100), fewer than hyper is allowed to parse (128).
    for i in 0..120 {
        req = req.header(format!("x-filler-{i}"), "1");
    }
    let (status, body) = error_body(req.send().await.unwrap()).await;
    assert_eq!((status, body.error.code), (431, ErrorCode::HeadersTooLarge));
    let (status, body) = error_body(
        http.get(format!("{base}/v1/catalog"))
            .header("x-big", "b".repeat(40 * 1024))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.error.code), (431, ErrorCode::HeadersTooLarge));

    // Query rejections are JSON too.
    let (status, body) = error_body(
        http.get(format!(
            "{base}/v1/devices/{DEVICE}/entitlements?limit=zero"
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, body.error.code), (400, ErrorCode::InvalidRequest));
}

/// Defect 4: the README's `couchpay-server audit --database FILE` exited 2
/// ("unexpected argument"): global flags must work after the subcommand.
#[tokio::test]
async fn readme_audit_command_works_with_flags_after_the_subcommand() {
    // A database of this test's own, so that it outlives the server.
    let dir = tempfile::tempdir().unwrap();
    let database = server_stub::testing::fresh_database(dir.path()).await;
    let db = database.as_arg();
    let db = db.to_str().unwrap();
    let srv = TestServer::start_with(move |c| c.database = database).await;
    let o = order(&srv.client(), "film-night-train").await.order;
    srv.client()
        .pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    srv.stop().await;
    for args in [
        vec!["audit", "--database", db],
        vec!["--database", db, "audit"],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_couchpay-server"))
            .args(&args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{args:?}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: protocol::AuditReport = serde_json::from_str(&stdout).unwrap();
        assert!(report.ok && report.transfers > 0, "{report:?}");
    }
}

/// Reads from `s` until EOF or error, for at most `limit`. True if the server closed it.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Defect 5: 200 sockets sending an endless header line stayed open for ever.
#[tokio::test]
async fn slow_header_senders_are_cut_off_and_connections_are_capped_per_address() {
    let srv = TestServer::start_with(|c| {
        c.header_read_timeout_ms = 500;
        c.max_connections_per_address = 60;
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(srv.server.addr).await.unwrap();
        s.write_all(b"GET /v1/catalog HTTP/1.1\r\nX-Endless: aaaa")
            .await
            .unwrap();
        slow.push(s);
    }
    // Keep trickling bytes: a slow sender is still cut off at the deadline.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for s in &mut slow {
            let _ = s.write_all(b"a").await;
        }
    }
    for s in &mut slow {
        assert!(
            closed_within(s, Duration::from_secs(3)).await,
            "slow sender still open"
        );
    }
    drop(slow);

    // Past the per-address cap, new connections are closed at once; the slots come
    // back when the connections end.
    let mut held = Vec::new();
    for _ in 0..60 {
        held.push(TcpStream::connect(srv.server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(srv.server.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(1)).await);
    // Another address is not affected.
    let other = client_from(&srv, "127.0.0.2");
    other.catalog().await.expect("another address is served");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.client().catalog().await.expect("slots are given back");
}

#[tokio::test]
async fn event_streams_are_capped_per_address() {
    let srv = TestServer::start_with(|c| c.max_streams_per_address = 3).await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await.order;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = Box::pin(c.order_events(&o.id).await.unwrap());
        s.next().await.unwrap().unwrap();
        streams.push(s);
    }
    let refused = c.order_events(&o.id).await.map(|_| ());
    assert_code(refused, ErrorCode::RateLimited);
    let other = client_from(&srv, "127.0.0.2");
    assert!(other.order_events(&o.id).await.is_ok());
    drop(streams);
}

/// Defect 6: 40 wrong PINs spread over 10 accounts from one address were never limited.
#[tokio::test]
async fn wrong_pins_are_limited_per_address_across_accounts() {
    let srv = TestServer::start().await;
    for i in 0..10 {
        new_wallet(&srv, &format!("stuff-{i}"), "4321", 0).await;
    }
    let attacker = client_from(&srv, "127.0.0.9");
    let mut codes = Vec::new();
    for round in 0..4 {
        for i in 0..10 {
            let r = attacker
                .login(&protocol::LoginRequest {
                    account: account(&format!("stuff-{i}")),
                    pin: Pin::parse(&format!("000{round}")).unwrap(),
                })
                .await;
            codes.push(r.unwrap_err().code().unwrap());
        }
    }
    let wrong = codes.iter().filter(|c| **c == ErrorCode::WrongPin).count();
    assert_eq!(wrong, server_stub::pin::MAX_FAILED_PINS_PER_SOURCE as usize);
    assert!(codes[10..].iter().all(|c| *c == ErrorCode::RateLimited));
    // The accounts themselves still work for their owners elsewhere.
    let owner = client_from(&srv, "127.0.0.10");
    owner
        .login(&protocol::LoginRequest {
            account: account("stuff-3"),
            pin: Pin::parse("4321").unwrap(),
        })
        .await
        .expect("the owner is not locked out");
}

/// Defect 10: five wrong PINs from a stranger locked the account everywhere.
#[tokio::test]
async fn a_stranger_cannot_lock_the_owner_out() {
    let srv = TestServer::start().await;
    let owner = client_from(&srv, "127.0.0.3");
    // The owner has used this device before.
    let session = owner
        .login(&protocol::LoginRequest {
            account: account("alice"),
            pin: Pin::parse("1234").unwrap(),
        })
        .await
        .unwrap();
    let mut alerts = Box::pin(
        owner
            .account_events(&session.account, &session.token)
            .await
            .unwrap(),
    );
    assert!(matches!(
        alerts.next().await.unwrap().unwrap(),
        AccountEvent::Hello { .. }
    ));

    let o = order(&srv.client(), "film-night-train").await.order;
    // Strangers on four addresses: each gets 5 tries, then that address is locked.
    for n in 4..8 {
        let stranger = client_from(&srv, &format!("127.0.0.{n}"));
        for i in 0..5 {
            let r = stranger
                .pay(&o.id, &key(), &pay_req("alice", pin(&format!("99{n}{i}"))))
                .await;
            // The fifth wrong PIN locks this address out of the account.
            let expected = if i < 4 {
                ErrorCode::WrongPin
            } else {
                ErrorCode::AccountLocked
            };
            assert_code(r, expected);
        }
        assert_code(
            stranger
                .pay(&o.id, &key(), &pay_req("alice", pin("1234")))
                .await,
            ErrorCode::AccountLocked,
        );
    }
    // The owner was told.
    let ev = tokio::time::timeout(Duration::from_secs(5), alerts.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, AccountEvent::SecurityAlert { .. }), "{ev:?}");
    // 20 wrong PINs from unknown sources today: a new device is refused for now...
    let newcomer = client_from(&srv, "127.0.0.20");
    assert_code(
        newcomer
            .pay(&o.id, &key(), &pay_req("alice", pin("1234")))
            .await,
        ErrorCode::AccountLocked,
    );
    // ...but the owner's device pays with the PIN, and sessions work anyway.
    owner
        .pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .expect("the owner's own device keeps working");
    let o2 = order(&srv.client(), "film-cloud-atlas-of-birds")
        .await
        .order;
    owner
        .pay(
            &o2.id,
            &key(),
            &pay_req("alice", PayerAuth::Session(session.token.clone())),
        )
        .await
        .expect("a session keeps working");
    assert!(srv.client().audit().await.unwrap().ok);
}

/// Defect 7: a cookie/token pair the server never issued was accepted and paid.
#[tokio::test]
async fn forged_csrf_pairs_and_posts_without_origin_or_referer_are_refused() {
    let srv = TestServer::start().await;
    let o = order(&srv.client(), "film-night-train").await.order;
    let action = format!("{}/P/{}", srv.url, o.id);
    let origin = srv.url.to_string();
    let http = reqwest::Client::new();
    let forged = "b".repeat(43);
    let form = |csrf: &str| {
        vec![
            ("csrf", csrf.to_owned()),
            ("key", IdempotencyKey::random().to_string()),
            ("account", "alice".to_owned()),
            ("pin", "1234".to_owned()),
        ]
    };
    let resp = http
        .post(&action)
        .header("cookie", format!("couchpay_csrf={forged}"))
        .form(&form(&forged))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "forged pair without Origin");
    let resp = http
        .post(&action)
        .header("cookie", format!("couchpay_csrf={forged}"))
        .header("origin", &origin)
        .form(&form(&forged))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "forged pair with our Origin");

    // A real cookie, but neither Origin nor Referer: refused; with our Referer: pays.
    let page = http.get(&action).send().await.unwrap();
    let cookie = page
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let html = page.text().await.unwrap();
    let csrf = crate::paypage::hidden(&html, "csrf");
    let resp = http
        .post(&action)
        .header("cookie", &cookie)
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "no Origin, no Referer");
    let resp = http
        .post(&action)
        .header("cookie", &cookie)
        .header("referer", "http://evil.example/P/x")
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403, "foreign Referer");
    assert_eq!(
        srv.client().order(&o.id).await.unwrap().status,
        protocol::OrderStatus::Pending
    );
    let resp = http
        .post(&action)
        .header("cookie", &cookie)
        .header("referer", &action)
        .form(&form(&csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert_eq!(
        srv.client().order(&o.id).await.unwrap().status,
        protocol::OrderStatus::Paid
    );
}

/// Defect 8: a pay body with `"amount":{"minor":1}` succeeded and charged the full price.
#[tokio::test]
async fn unknown_request_fields_are_refused_by_name() {
    let srv = TestServer::start().await;
    let o = order(&srv.client(), "film-night-train").await.order;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/orders/{}/pay", srv.url, o.id))
        .header("idempotency-key", key().to_string())
        .json(&serde_json::json!({
            "account": "alice", "auth": {"pin": "1234"}, "amount": {"minor": 1}
        }))
        .send()
        .await
        .unwrap();
    let (status, body) = error_body(resp).await;
    assert_eq!((status, body.error.code), (400, ErrorCode::InvalidRequest));
    assert!(
        body.error.message.contains("amount"),
        "{}",
        body.error.message
    );
    assert_eq!(
        srv.client().order(&o.id).await.unwrap().status,
        protocol::OrderStatus::Pending
    );
}

/// Defect 9: `device_name` accepted U+202E and zero-width characters.
#[tokio::test]
async fn invisible_and_bidi_characters_are_refused_in_names() {
    let srv = TestServer::start().await;
    let c = srv.client();
    for name in [
        "Den\u{202E}VT",
        "Den\u{200B}TV",
        "\u{2066}Den",
        "Den\u{FEFF}",
    ] {
        let r = c
            .create_order(&protocol::CreateOrder {
                item_id: protocol::ItemId::parse("film-night-train").unwrap(),
                device_id: DeviceId::parse(DEVICE).unwrap(),
                device_name: name.into(),
            })
            .await;
        assert_code(r, ErrorCode::InvalidRequest);
    }
    let r = c
        .create_account(
            &srv.admin_token,
            &CreateAccount {
                id: account("mallory"),
                name: "Alice\u{202E}".into(),
                pin: Pin::parse("1111").unwrap(),
                currency: eur(),
            },
        )
        .await;
    assert_code(r, ErrorCode::InvalidRequest);
}

/// A client whose pay request timed out asks for its payment by key instead of paying
/// again, and learns for certain whether money moved.
#[tokio::test]
async fn an_in_doubt_payment_is_resolved_by_its_key() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let s = login(&c, "alice", "1234").await;
    let k = key();
    assert_code(
        c.payment(&s.account, &s.token, &k).await,
        ErrorCode::UnknownPayment,
    );
    let o = order(&c, "film-night-train").await.order;
    let paid = c
        .pay(&o.id, &k, &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    assert_eq!(c.payment(&s.account, &s.token, &k).await.unwrap(), paid);
    // Another account's session cannot read it.
    let bob = login(&c, "bob", "2468").await;
    assert_code(
        c.payment(&s.account, &bob.token, &k).await,
        ErrorCode::Unauthorized,
    );
}

#[tokio::test]
async fn receipts_page_with_cursors_newest_first_without_gaps_or_repeats() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let s = login(&c, "alice", "1234").await;
    let n = 120;
    for i in 0..n {
        srv.advance_clock(Duration::from_millis(if i % 3 == 0 { 0 } else { 7 }));
        let o = c
            .create_order(&protocol::CreateOrder {
                item_id: protocol::ItemId::parse("film-night-train").unwrap(),
                device_id: DeviceId::parse(&format!("SN-PAGE-{i:04}")).unwrap(),
                device_name: "TV".into(),
            })
            .await
            .unwrap()
            .order;
        c.pay(
            &o.id,
            &key(),
            &pay_req("alice", PayerAuth::Session(s.token.clone())),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = c
            .receipts_page(&s.account, &s.token, cursor.as_deref(), Some(50))
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), n);
    let mut ids: Vec<_> = seen.iter().map(|r| r.order_id.clone()).collect();
    ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    ids.dedup();
    assert_eq!(ids.len(), n, "no receipt twice");
    assert!(seen.windows(2).all(|w| w[0].paid_at_ms >= w[1].paid_at_ms));
}

#[tokio::test]
async fn merchants_read_their_own_balance_and_payments_with_api_keys() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let northwind = account("northwind-films");
    let before = {
        let k = c
            .create_merchant_key(
                &srv.admin_token,
                &northwind,
                &CreateMerchantKey {
                    label: "back office".into(),
                },
            )
            .await
            .unwrap();
        (
            k.key.clone(),
            c.merchant(&northwind, &k.key).await.unwrap().balance,
        )
    };
    let (mkey, balance0) = before;
    let o = order(&c, "film-night-train").await.order;
    c.pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    let view = c.merchant(&northwind, &mkey).await.unwrap();
    assert_eq!(view.balance.minor, balance0.minor + o.amount.minor);
    let payments = c.merchant_payments(&northwind, &mkey, None).await.unwrap();
    assert_eq!(payments.items[0].receipt.order_id, o.id);
    let orders = c.merchant_orders(&northwind, &mkey, None).await.unwrap();
    assert!(orders.items.iter().any(|x| x.id == o.id));
    // A key is for its own merchant only; a made-up key is nothing.
    assert_code(
        c.merchant(&account("aurora-home"), &mkey).await,
        ErrorCode::Unauthorized,
    );
    assert_code(
        c.merchant(&northwind, &Token::random()).await,
        ErrorCode::Unauthorized,
    );
    // Keys are stored hashed.
    let stored: Vec<String> = srv
        .server
        .state
        .store
        .read(|conn| {
            Ok(conn
                .prepare("SELECT key_hash FROM merchant_keys")?
                .query_map((), |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
        .unwrap();
    assert!(stored.iter().all(|h| h != mkey.expose()));
}

#[tokio::test]
async fn admin_creates_merchants_and_linked_cards() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let m = c
        .create_merchant(
            &srv.admin_token,
            &protocol::CreateMerchant {
                id: account("test-shop"),
                name: "Test Shop".into(),
                currency: eur(),
            },
        )
        .await
        .unwrap();
    assert_eq!(m.balance.minor, 0);
    new_wallet(&srv, "dave", "2580", 1_00).await;
    let view = c
        .create_card(
            &srv.admin_token,
            &CreateCard {
                owner: account("dave"),
                id: account("dave-card"),
            },
        )
        .await
        .unwrap();
    assert_eq!(view.card_available.unwrap().minor, 0);
    c.top_up(
        &srv.admin_token,
        &TopUp {
            account: account("dave-card"),
            amount: Money::new(100_00, eur()),
        },
    )
    .await
    .unwrap();
    // The wallet (1.00) is short: the card pays.
    let o = order(&c, "film-night-train").await.order;
    let r = c
        .pay(&o.id, &key(), &pay_req("dave", pin("2580")))
        .await
        .unwrap();
    assert_eq!(r.funding, protocol::FundingSource::Card);
    // One card per wallet.
    assert_code(
        c.create_card(
            &srv.admin_token,
            &CreateCard {
                owner: account("dave"),
                id: account("dave-card-2"),
            },
        )
        .await,
        ErrorCode::InvalidRequest,
    );
    assert!(c.audit().await.unwrap().ok);
}

/// Issue "product": buying a film the device already owns charged twice.
#[tokio::test]
async fn a_device_cannot_buy_what_it_already_owns() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let first = order(&c, "film-night-train").await.order;
    // A second order made before the first is paid...
    let second = order(&c, "film-night-train").await.order;
    c.pay(&first.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    // ...cannot be paid, and no new order is made for an owned film.
    assert_code(
        c.pay(&second.id, &key(), &pay_req("alice", pin("1234")))
            .await,
        ErrorCode::AlreadyOwned,
    );
    assert_code(
        c.create_order(&protocol::CreateOrder {
            item_id: protocol::ItemId::parse("film-night-train").unwrap(),
            device_id: DeviceId::parse(DEVICE).unwrap(),
            device_name: "Living-room TV".into(),
        })
        .await,
        ErrorCode::AlreadyOwned,
    );
    // Goods can be bought again.
    for _ in 0..2 {
        let o = order(&c, "lamp-aurora").await.order;
        c.pay(
            &o.id,
            &key(),
            &protocol::PayRequest {
                account: account("alice"),
                auth: pin("1234"),
                delivery_address: Some("1 Main St".into()),
            },
        )
        .await
        .unwrap();
    }
    let ents = c
        .entitlements(&DeviceId::parse(DEVICE).unwrap())
        .await
        .unwrap();
    let films = ents
        .entitlements
        .iter()
        .filter(|e| e.item.id.as_str() == "film-night-train")
        .count();
    assert_eq!(films, 1);
    assert!(c.audit().await.unwrap().ok);
}

/// Review of the several-writers change: two orders for one film on one TV, paid at the
/// same moment, each through its own writer (PostgreSQL runs several per node), both
/// passed the ownership check before either committed and the payer was charged twice.
#[tokio::test]
async fn one_film_paid_twice_at_once_on_one_tv_is_charged_once() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let session = login(&c, "alice", "1234").await;
    for round in 0..10 {
        let tv = format!("SN-TWICE-{round:04}");
        let orders = [
            order_on(&c, "film-night-train", &tv).await.order,
            order_on(&c, "film-night-train", &tv).await.order,
        ];
        let tasks: Vec<_> = orders
            .iter()
            .map(|o| {
                let (c, id, token) = (c.clone(), o.id.clone(), session.token.clone());
                tokio::spawn(async move {
                    c.pay(&id, &key(), &pay_req("alice", PayerAuth::Session(token)))
                        .await
                })
            })
            .collect();
        let mut paid = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => paid += 1,
                Err(e) => assert_eq!(e.code(), Some(ErrorCode::AlreadyOwned), "{e}"),
            }
        }
        assert_eq!(paid, 1, "round {round}: exactly one of the two is paid");
    }
    assert!(c.audit().await.unwrap().ok);
}
