//! The pay page in a real browser: headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`; `.ci/run` installs them). Enabled by the
//! `browser-tests` feature: `cargo test -p server-stub --features browser-tests`.
//! Screenshots at phone size are kept in `target/test-artifacts/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;
use protocol::OrderEvent;
use serde_json::{Value, json};
use server_stub::testing::TestServer;

use crate::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// A common phone viewport, in CSS pixels.
const PHONE_W: u32 = 390;
const PHONE_H: u32 = 844;

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artifacts"
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A minimal WebDriver client: enough to open a page, type, click, read and screenshot.
struct Driver {
    child: Child,
    http: reqwest::Client,
    session: String,
    _profile: tempfile::TempDir,
}

impl Driver {
    /// A browser with a phone's viewport.
    async fn start() -> Self {
        Self::start_sized(PHONE_W, PHONE_H).await
    }

    /// A browser whose window is `w` × `h` CSS pixels.
    async fn start_sized(w: u32, h: u32) -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: install Debian's chromium and chromium-driver (see .ci/run)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                    format!("--window-size={w},{h}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        Self {
            child,
            http,
            session: format!("{base}/session/{session}"),
            _profile: profile,
        }
    }

    async fn try_cmd(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.session));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"]["error"].is_null() {
            Ok(v["value"].clone())
        } else {
            Err(v)
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_cmd(method, path, body)
            .await
            .unwrap_or_else(|v| panic!("WebDriver {path}: {v}"))
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Runs `script` (a function body) in the page and returns its result.
    async fn eval(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// The page's visible text; `None` while a navigation replaces the document.
    async fn text(&self) -> Option<String> {
        let found = self
            .try_cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": "body"})),
            )
            .await
            .ok()?;
        let body = found[ELEMENT].as_str()?.to_owned();
        let t = self
            .try_cmd(reqwest::Method::GET, &format!("/element/{body}/text"), None)
            .await
            .ok()?;
        t.as_str().map(str::to_owned)
    }

    /// Waits until the page's text contains `needle` (pages load after a click).
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let t = self.text().await.unwrap_or_default();
            if t.contains(needle) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "page never showed {needle:?}; it shows:\n{t}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let path = artifacts().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn quit(mut self) {
        let _ = self.http.delete(&self.session).send().await;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn chromium_pays_on_the_pay_page_and_the_tv_sees_paid() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await.order;
    let mut tv = Box::pin(c.order_events(&o.id).await.unwrap());
    tv.next().await.unwrap().unwrap();

    let d = Driver::start().await;
    // The QR content itself, upper case, as a phone camera app would open it.
    d.goto(&o.pay_link.to_string()).await;
    let t = d.wait_for("Night Train").await;
    assert!(
        t.contains("4.99 EUR") && t.contains(&o.short_code.display()),
        "{t}"
    );
    d.screenshot("paypage-form.png").await;

    d.type_into("#account", "alice").await;
    d.type_into("#pin", "1234").await;
    d.click("button[type=submit]").await;
    let t = d.wait_for("Paid 4.99 EUR").await;
    assert!(t.contains("unlocked"), "{t}");
    d.screenshot("paypage-paid.png").await;

    let ev = tokio::time::timeout(Duration::from_secs(5), tv.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, OrderEvent::Paid { ref order } if order.id == o.id));

    // Error pages, the same way: wrong PIN, then an expired order.
    let o2 = order(&c, "film-cloud-atlas-of-birds").await.order;
    d.goto(&o2.pay_link.to_string()).await;
    d.wait_for("Atlas").await;
    d.type_into("#account", "bob").await;
    d.type_into("#pin", "0000").await;
    d.click("button[type=submit]").await;
    d.wait_for("Wrong PIN").await;
    d.screenshot("paypage-wrong-pin.png").await;

    srv.advance_clock(Duration::from_secs(601));
    d.type_into("#pin", "2468").await;
    d.click("button[type=submit]").await;
    d.wait_for("This code has expired").await;
    d.screenshot("paypage-expired.png").await;
    assert_eq!(
        c.order(&o2.id).await.unwrap().status,
        protocol::OrderStatus::Expired
    );

    d.quit().await;
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

/// Issue "product", pay page: an expired link opened fresh was styled as a success, and
/// the delivery address typed before a refused submit was cleared.
#[tokio::test]
async fn chromium_shows_expired_links_as_errors_and_keeps_the_typed_address() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let d = Driver::start().await;

    // carol has 5.00: the 59.00 lamp is refused, and what she typed stays.
    let lamp = order(&c, "lamp-aurora").await.order;
    d.goto(&lamp.pay_link.to_string()).await;
    d.wait_for("Aurora").await;
    d.type_into("#account", "carol").await;
    d.type_into("#pin", "1357").await;
    d.type_into("#address", "7 Elm Row, Edinburgh").await;
    d.click("button[type=submit]").await;
    d.wait_for("Not enough money").await;
    let kept = d
        .eval("return document.querySelector('#address').value")
        .await;
    assert_eq!(kept, json!("7 Elm Row, Edinburgh"));
    d.screenshot("paypage-insufficient.png").await;

    // An expired link opened fresh: styled as an error, not as a success.
    let o = order(&c, "film-night-train").await.order;
    srv.advance_clock(Duration::from_secs(601));
    d.goto(&o.pay_link.to_string()).await;
    d.wait_for("expired").await;
    let class = d
        .eval("return document.querySelector('[role=status]').className")
        .await;
    assert_eq!(class, json!("error"));
    let colour = d
        .eval("return getComputedStyle(document.querySelector('[role=status]')).color")
        .await;
    assert_eq!(colour, json!("rgb(138, 17, 17)"), "the error red");
    d.screenshot("paypage-expired-on-open.png").await;

    d.quit().await;
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

/// Issue 12: the voucher link opened in a phone browser: see it, log in, redeem part.
#[tokio::test]
async fn chromium_redeems_part_of_a_voucher_on_its_page() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let eur = protocol::Currency::parse("EUR").unwrap();
    let v = c
        .create_voucher(&protocol::CreateVoucher {
            account: account("alice"),
            auth: pin("1234"),
            amount: protocol::Money::new(25_00, eur),
            valid_for_s: Some(7_200),
            restrict_to: None,
        })
        .await
        .unwrap();
    let d = Driver::start().await;
    d.goto(&v.link.to_string()).await;
    let t = d.wait_for("Voucher from Alice Martin").await;
    assert!(
        t.contains("25.00 EUR") && t.contains("Valid for 2 hours more"),
        "{t}"
    );
    d.screenshot("voucherpage-form.png").await;

    d.type_into("#account", "bob").await;
    d.type_into("#pin", "2468").await;
    d.type_into("#amount", "10.00").await;
    d.click("button[type=submit]").await;
    let t = d.wait_for("Redeemed 10.00 EUR").await;
    assert!(t.contains("15.00 EUR went back to Alice Martin"), "{t}");
    d.screenshot("voucherpage-redeemed.png").await;
    let after = c.voucher(&v.id).await.unwrap();
    assert_eq!(after.state, protocol::VoucherState::Redeemed);
    assert_eq!(after.used, protocol::Money::new(10_00, eur));

    // Opened again: it says so, and offers nothing to redeem.
    d.goto(&v.link.to_string()).await;
    d.wait_for("redeemed already").await;
    d.quit().await;
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

/// Issue 13: the red packets' claim link opened in a phone browser: log in, claim, see
/// what you got and the list.
#[tokio::test]
async fn chromium_claims_a_red_packet_on_its_page() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let set = crate::packetpage::alices_packets(&c, 3).await;
    let d = Driver::start().await;
    d.goto(&set.link.to_string()).await;
    let t = d.wait_for("Red packets from Alice Martin").await;
    assert!(
        t.contains("Happy new year <3") && t.contains("3 of 3 packets left"),
        "{t}"
    );
    d.screenshot("packetpage-form.png").await;

    d.type_into("#account", "bob").await;
    d.type_into("#pin", "2468").await;
    d.click("button[type=submit]").await;
    let t = d.wait_for("You got 2.00 EUR from Alice Martin!").await;
    assert!(t.contains("Bob Chen (you): 2.00 EUR"), "{t}");
    assert!(t.contains("2 of 3 packets left"), "{t}");
    d.screenshot("packetpage-claimed.png").await;
    let after = c.packets(&set.id).await.unwrap();
    assert_eq!(after.claims.len(), 1);
    assert_eq!(after.claims[0].recipient.as_str(), "bob");
    d.quit().await;
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

/// The developer console (issue 16): a wrong token is refused in a sentence; with the
/// admin token it shows the sandbox, and a payment made through the API appears without
/// reloading (followed over the admin event stream); the test clock moves from it.
#[tokio::test]
async fn chromium_console_follows_a_payment_live() {
    let srv = TestServer::start_with(|c| c.test_clock = true).await;
    let c = srv.client();
    let d = Driver::start_sized(1440, 1000).await;
    d.goto(&format!("{}/console", srv.url)).await;
    d.wait_for("developer console").await;
    d.type_into("#token", "not-the-token").await;
    d.click("button[type=submit]").await;
    d.wait_for("That token was not accepted").await;
    d.screenshot("console-login-refused.png").await;

    d.eval("document.getElementById('token').value = ''").await;
    d.type_into("#token", &srv.admin_token).await;
    d.click("button[type=submit]").await;
    d.wait_for("Ledger transfers").await;
    d.wait_for("live").await;
    let before = d.text().await.unwrap();

    // Paid through the API while the page stays open.
    let o = order(&c, "film-night-train").await.order;
    assert!(!before.contains(o.id.as_str()));
    c.pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    let t = d.wait_for(o.id.as_str()).await;
    assert!(t.contains("paid"), "{t}");
    assert!(t.contains("4.99 EUR"), "{t}");
    let reloaded = d
        .eval("return performance.getEntriesByType('navigation').length")
        .await;
    assert_eq!(reloaded, json!(1), "the page was not reloaded");
    d.screenshot("console-payment.png").await;

    // The test clock, from the console: an hour later the other order has expired.
    let o2 = order_on(&c, "film-night-train", "SN-CONSOLE-02")
        .await
        .order;
    d.wait_for(o2.id.as_str()).await;
    d.click("#clock button[data-ms='3600000']").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.order(&o2.id).await.unwrap().status != protocol::OrderStatus::Expired {
        assert!(
            Instant::now() < deadline,
            "the console's +1 h did not expire the order"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    d.wait_for("expired").await;
    d.screenshot("console-expired.png").await;
    d.quit().await;
    srv.stop().await;
}
