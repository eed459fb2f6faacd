//! The red packets' claim link web page over plain HTTP, as a browser with JavaScript
//! off uses it.

use protocol::{CreatePackets, Currency, Money, PacketSet, PacketSplit};
use server_stub::testing::TestServer;

use crate::paypage::{Browser, hidden};
use crate::*;

/// Alice sends `count` packets of 2.00 EUR each, with a message.
pub(crate) async fn alices_packets(c: &protocol::client::Client, count: u32) -> PacketSet {
    let eur = Currency::parse("EUR").unwrap();
    c.create_packets(&CreatePackets {
        account: account("alice"),
        auth: pin("1234"),
        count,
        split: PacketSplit::Fixed {
            each: Money::new(2_00, eur),
        },
        message: "Happy new year <3".into(),
        allowed: None,
        valid_for_s: None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_packet_page_lets_a_friend_without_the_app_claim_once() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let set = alices_packets(&c, 2).await;
    let link = set.link.to_string();
    assert!(link.contains("/R/"), "{link}");
    let (b, html) = Browser::open(&link).await;
    assert!(html.contains("Red packets from Alice Martin"), "{html}");
    assert!(
        html.contains("Happy new year &lt;3"),
        "the message is escaped: {html}"
    );
    assert!(html.contains("2 of 2 packets left"), "{html}");
    assert!(!html.contains("<script"), "works without JavaScript");
    let action = format!("{}/R/{}", srv.url, set.id);
    let csrf = hidden(&html, "csrf");

    // Wrong PIN: the form again, with a human message; nothing claimed.
    let (status, page) = b
        .post(
            &action,
            &[("csrf", &csrf), ("account", "bob"), ("pin", "0000")],
        )
        .await;
    assert_eq!(status, 401);
    assert!(page.contains("Wrong PIN."), "{page}");
    assert!(!page.contains("0000"), "the PIN is not echoed");
    assert_eq!(c.packets(&set.id).await.unwrap().remaining, 2);
    // The sender cannot take their own packets.
    let (status, page) = b
        .post(
            &action,
            &[("csrf", &csrf), ("account", "alice"), ("pin", "1234")],
        )
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("You cannot open these packets"), "{page}");

    // Without the cookie (a forged cross-site form): refused.
    let forged = reqwest::Client::new()
        .post(&action)
        .header("origin", srv.url.as_str())
        .form(&[("csrf", csrf.as_str()), ("account", "bob"), ("pin", "2468")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);

    let form = [("csrf", csrf.as_str()), ("account", "Bob"), ("pin", "2468")];
    let (status, page) = b.post(&action, &form).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("You got 2.00 EUR from Alice Martin!"),
        "{page}"
    );
    assert!(page.contains("Bob Chen (you): 2.00 EUR"), "{page}");
    assert!(page.contains("1 of 2 packets left"), "{page}");
    // Submitted again (reload): no second packet; it says what the first one got.
    let (status, page) = b.post(&action, &form).await;
    assert_eq!(status, 409, "{page}");
    assert!(
        page.contains("You already opened a packet from this set: you got 2.00 EUR."),
        "{page}"
    );
    assert!(!page.contains("<form"), "{page}");
    let after = c.packets(&set.id).await.unwrap();
    assert_eq!((after.remaining, after.claims.len()), (1, 1));
    assert_eq!(after.claims[0].recipient.as_str(), "bob");
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    srv.stop().await;
}

#[tokio::test]
async fn the_packet_page_of_an_unknown_or_finished_set_offers_nothing() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let bad = reqwest::get(format!("{}/R/not-a-set", srv.url))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("No such red packets"));
    let set = alices_packets(&c, 2).await;
    for (who, p) in [("bob", "2468"), ("carol", "1357")] {
        c.claim_packet(
            &set.id,
            &protocol::ClaimPacket {
                account: account(who),
                auth: pin(p),
            },
        )
        .await
        .unwrap();
    }
    let html = reqwest::get(set.link.to_string())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("All packets were taken."), "{html}");
    assert!(html.contains("All 2 packets were opened"), "{html}");
    assert!(!html.contains("<form"), "{html}");
    srv.stop().await;
}
