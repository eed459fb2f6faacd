//! The developer console's data (both backends): every section's query runs, a payment
//! shows up in orders, payments and transfers, the admin event stream carries it, and
//! neither answers without the admin token. (The page itself is tried in Chromium in
//! `browser.rs`.)

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use server_stub::testing::TestServer;

use crate::*;

#[tokio::test]
async fn console_shows_every_section_and_follows_events() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", srv.url));

    // Without the token: a JSON 401, for the data and for the stream.
    for path in ["/v1/admin/console", "/v1/admin/events"] {
        let r = get(path).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{path}");
    }
    // The page is static and carries a strict policy.
    let page = get("/console").send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/console/console.js"));

    let mut events = get("/v1/admin/events")
        .bearer_auth(&srv.admin_token)
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let first = String::from_utf8(events.next().await.unwrap().unwrap().to_vec()).unwrap();
    assert!(first.contains("event: hello"), "{first}");

    let o = order(&c, "film-night-train").await.order;
    c.pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains("\"paid\"") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("the payment on the admin stream")
            .unwrap()
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains(o.id.as_str()), "{seen}");

    let snap: Value = get("/v1/admin/console")
        .bearer_auth(&srv.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let titles: Vec<&str> = snap["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Orders",
            "Payments",
            "Ledger transfers",
            "Balances",
            "SMS outbox",
            "Webhook deliveries",
            "Vouchers",
            "Red packets",
            "Devices"
        ]
    );
    let section = |id: &str| {
        snap["sections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap()
            .clone()
    };
    // The test clock stands still, so the demo's order has the same time: find the row.
    let row_with = |id: &str, col: usize, value: &str| {
        section(id)["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r[col] == value)
            .unwrap_or_else(|| panic!("{value} in {id}: {}", section(id)))
            .clone()
    };
    let row = row_with("orders", 1, o.id.as_str());
    assert_eq!(row[3], "4.99 EUR");
    assert_eq!(row[6], "paid");
    assert_eq!(row[9], "alice");
    assert_eq!(row_with("payments", 2, o.id.as_str())[1], "alice");
    // Transfers by id: the payment is the newest.
    assert_eq!(section("transfers")["rows"][0][6], o.id.as_str());
    // The demo devices are listed; the issuance account shows as negative.
    assert!(!section("devices")["rows"].as_array().unwrap().is_empty());
    let balances = section("balances")["rows"].to_string();
    assert!(balances.contains("−"), "{balances}");
}
