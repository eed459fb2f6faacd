//! The voucher link's web page over plain HTTP, as a browser with JavaScript off uses it.

use protocol::{CreateVoucher, Currency, Money, VoucherState};
use server_stub::testing::TestServer;

use crate::paypage::{Browser, hidden};
use crate::*;

#[tokio::test]
async fn the_voucher_page_redeems_part_for_a_payee_without_the_app() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let eur = Currency::parse("EUR").unwrap();
    let v = c
        .create_voucher(&CreateVoucher {
            account: account("alice"),
            auth: pin("1234"),
            amount: Money::new(15_00, eur),
            valid_for_s: None,
            restrict_to: None,
        })
        .await
        .unwrap();
    let link = v.link.to_string();
    let (b, html) = Browser::open(&link).await;
    assert!(html.contains("Voucher from Alice Martin"), "{html}");
    assert!(html.contains("15.00 EUR"));
    assert!(html.contains("Valid for 24 hours more"), "{html}");
    assert!(!html.contains("<script"), "works without JavaScript");
    let action = format!("{}/V/{}", srv.url, v.id);
    let csrf = hidden(&html, "csrf");
    let key = hidden(&html, "key");

    // Wrong PIN: the form again, with a human message; nothing moved.
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "bob"),
                ("pin", "0000"),
                ("amount", ""),
            ],
        )
        .await;
    assert_eq!(status, 401);
    assert!(page.contains("Wrong PIN."), "{page}");
    assert!(!page.contains("0000"), "the PIN is not echoed");
    // More than the voucher holds.
    let (status, page) = b
        .post(
            &action,
            &[
                ("csrf", &csrf),
                ("key", &key),
                ("account", "Bob"),
                ("pin", "2468"),
                ("amount", "20"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("Please check the form"), "{page}");
    assert_eq!(c.voucher(&v.id).await.unwrap().state, VoucherState::Unused);

    // Without the cookie (a forged cross-site form): refused.
    let forged = reqwest::Client::new()
        .post(&action)
        .header("origin", srv.url.as_str())
        .form(&[
            ("csrf", csrf.as_str()),
            ("key", key.as_str()),
            ("account", "bob"),
            ("pin", "2468"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let form = [
        ("csrf", csrf.as_str()),
        ("key", key.as_str()),
        ("account", "bob"),
        ("pin", "2468"),
        ("amount", "6.00"),
    ];
    let (status, page) = b.post(&action, &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Redeemed 6.00 EUR into your wallet. 9.00 EUR went back to Alice Martin."),
        "{page}"
    );
    // Submitted again (reload): the same redemption, not a second one.
    let (status, page) = b.post(&action, &form).await;
    assert_eq!(status, 200, "{page}");
    let after = c.voucher(&v.id).await.unwrap();
    assert_eq!(after.state, VoucherState::Redeemed);
    assert_eq!(after.used, Money::new(6_00, eur));
    // Opened later: says it is used, offers no form.
    let (_, html) = (b, reqwest::get(&link).await.unwrap().text().await.unwrap());
    assert!(
        html.contains("redeemed already") && !html.contains("<form"),
        "{html}"
    );
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    srv.stop().await;
}
