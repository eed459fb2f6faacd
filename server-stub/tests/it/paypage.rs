//! The pay link's web page over plain HTTP, as a browser with JavaScript off uses it:
//! GET the form, POST it back with the cookie. (The Chromium test lives in `browser`.)

use std::time::Duration;

use futures_util::StreamExt;
use protocol::OrderEvent;
use server_stub::testing::TestServer;

use crate::*;

/// The value of the hidden input `name` in `html`.
pub(crate) fn hidden(html: &str, name: &str) -> String {
    let at = html.find(&format!("name={name} value='")).expect(name) + name.len() + 13;
    html[at..].split('\'').next().unwrap().to_owned()
}

pub(crate) struct Browser {
    http: reqwest::Client,
    cookie: String,
}

impl Browser {
    pub(crate) async fn open(url: &str) -> (Self, String) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http.get(url).send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let set = resp
            .headers()
            .get("set-cookie")
            .expect("CSRF cookie")
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
        let cookie = set.split(';').next().unwrap().to_owned();
        (Self { http, cookie }, resp.text().await.unwrap())
    }

    /// Posts the form as a browser does: with the cookie and this page's `Origin`.
    pub(crate) async fn post(&self, url: &str, form: &[(&str, &str)]) -> (u16, String) {
        // scheme://host:port
        let origin = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
        let resp = self
            .http
            .post(url)
            .header("cookie", &self.cookie)
            .header("origin", &origin)
            .form(form)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

#[tokio::test]
async fn pay_page_form_pays_and_the_tv_sees_it() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await.order;
    let mut tv = Box::pin(c.order_events(&o.id).await.unwrap());
    tv.next().await.unwrap().unwrap();

    let link = o.pay_link.to_string();
    let (b, html) = Browser::open(&link).await;
    assert!(html.contains("Night Train") && html.contains("4.99 EUR"));
    assert!(html.contains(&o.short_code.display()));
    assert!(!html.contains("<script"), "works without JavaScript");
    let action = format!("{}/P/{}", srv.url, o.id);
    let csrf = hidden(&html, "csrf");
    let key = hidden(&html, "key");

    // Wrong PIN: the form comes back with a human message, nothing paid.
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "alice"),
                ("pin", "9999"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    assert!(page.contains("Wrong PIN. 4 more wrong tries"), "{page}");
    // The page carries random tokens (CSRF, idempotency key, the short code) that may
    // contain "9999" by chance: look for the PIN in what is left without them.
    let shown = [
        hidden(&page, "csrf"),
        hidden(&page, "key"),
        o.short_code.display(),
    ]
    .iter()
    .fold(page.clone(), |p, token| p.replace(token.as_str(), ""));
    assert!(!shown.contains("9999"), "the PIN is never echoed");

    // Right PIN (typed with a capital letter, as phones do).
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "Alice"),
                ("pin", "1234"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Paid 4.99 EUR"), "{page}");
    // A double submit of the same form replays the receipt: one charge.
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "alice"),
                ("pin", "1234"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let ev = tokio::time::timeout(Duration::from_secs(5), tv.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, OrderEvent::Paid { .. }));
    let s = login(&c, "alice", "1234").await;
    assert_eq!(c.receipts(&s.account, &s.token).await.unwrap().len(), 1);

    // The link now shows the order as paid.
    let (_, html) = Browser::open_existing(&b, &link).await;
    assert!(html.contains("This order is paid"), "{html}");
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

impl Browser {
    async fn open_existing(b: &Self, url: &str) -> (u16, String) {
        let resp = b
            .http
            .get(url)
            .header("cookie", &b.cookie)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }
}

#[tokio::test]
async fn pay_page_refuses_forged_and_stale_posts_and_explains_errors() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "lamp-aurora").await.order;
    let link = o.pay_link.to_string();
    let action = format!("{}/P/{}", srv.url, o.id);
    let (b, html) = Browser::open(&link).await;
    assert!(html.contains("Delivery address"));
    let csrf = hidden(&html, "csrf");
    let key = hidden(&html, "key");

    // No cookie (a cross-site form): refused.
    let resp = reqwest::Client::new()
        .post(&action)
        .form(&[
            ("csrf", csrf.as_str()),
            ("key", key.as_str()),
            ("account", "alice"),
            ("pin", "1234"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Foreign Origin, even with the cookie: refused.
    let resp = b
        .http
        .post(&action)
        .header("cookie", &b.cookie)
        .header("origin", "http://evil.example")
        .form(&[
            ("csrf", csrf.as_str()),
            ("key", key.as_str()),
            ("account", "alice"),
            ("pin", "1234"),
            ("address", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "carol"),
                ("pin", "1357"),
                ("address", "3 High St"),
            ],
        )
        .await;
    assert_eq!(status, 402);
    assert!(page.contains("Not enough money"), "{page}");
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "alice"),
                ("pin", "1234"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("Please enter a delivery address"), "{page}");
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "nobody"),
                ("pin", "1234"),
            ],
        )
        .await;
    assert_eq!(status, 404);
    assert!(page.contains("no account with that name"), "{page}");

    // Expired order: a clear page.
    srv.advance_clock(Duration::from_secs(601));
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "alice"),
                ("pin", "1234"),
                ("address", "x"),
            ],
        )
        .await;
    assert_eq!(status, 410);
    assert!(page.contains("expired"), "{page}");
    assert_eq!(
        c.order(&o.id).await.unwrap().status,
        protocol::OrderStatus::Expired
    );
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}
