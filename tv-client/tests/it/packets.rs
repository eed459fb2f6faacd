//! Red packets on the TV, headless, against the real stub server and driven only by remote
//! keys: the sender's offer arrives on the device stream → the TV asks (Back refuses, OK
//! shows) → the claim QR on screen decodes to the set's claim link and the short code is
//! the set's → each claim appears in the live list, newest first → when the last packet
//! is taken the code is withdrawn and the final list stays until OK.

use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{
    AccountId, ClaimPacket, CreatePackets, Currency, DeviceId, Money, OfferPackets, PacketLink,
    PacketSet, PacketSplit, PayerAuth, Pin,
};
use slint::platform::Key as SlintKey;
use tv_client::runtime::HttpBackend;
use tv_client::slint_ui::Page;
use tv_client::state::Screen;

use crate::support::*;
use crate::ui::{Ui, decode_qr, save};

fn auth(who: &str, pin: &str) -> (AccountId, PayerAuth) {
    (
        AccountId::parse(who).unwrap(),
        PayerAuth::Pin(Pin::parse(pin).unwrap()),
    )
}

/// Offers `set` to the TV until its prompt is up: an offer reaches only a TV that is
/// listening, and the TV connects its device stream in the background.
fn offer_until_asked(
    ui: &Ui<HttpBackend>,
    io: &tokio::runtime::Runtime,
    c: &Client,
    set: &PacketSet,
    tv: &DeviceId,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (account, auth) = auth("alice", "1234");
        io.block_on(c.offer_packets(
            &set.id,
            &OfferPackets {
                account,
                auth,
                device_id: tv.clone(),
            },
        ))
        .unwrap();
        let asked = ui.reached(
            Duration::from_millis(500),
            |a| matches!(&a.screen, Screen::PacketsPrompt { set: s, .. } if s.id == set.id),
        );
        if asked {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the TV never asked about the offer"
        );
    }
}

fn claim(io: &tokio::runtime::Runtime, c: &Client, set: &PacketSet, who: &str, pin: &str) {
    let (account, auth) = auth(who, pin);
    io.block_on(c.claim_packet(&set.id, &ClaimPacket { account, auth }))
        .unwrap();
}

#[test]
fn red_packets_offered_to_the_tv_are_asked_about_shown_live_and_withdrawn() {
    let io = io_runtime();
    let server = io.block_on(server_stub::testing::TestServer::start());
    let c = server.client();
    let ui = Ui::start(
        HttpBackend::new(server.url.clone()),
        1920,
        1080,
        Err("mDNS is off in this test".into()),
    );
    ui.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    let tv = ui.shell.borrow().app.identity.device_id.clone();
    let eur = Currency::parse("EUR").unwrap();
    let send = |count| {
        let (account, auth) = auth("alice", "1234");
        io.block_on(c.create_packets(&CreatePackets {
            account,
            auth,
            count,
            split: PacketSplit::Fixed {
                each: Money::new(2_00, eur),
            },
            message: "Happy new year".into(),
            allowed: None,
            valid_for_s: None,
        }))
        .unwrap()
    };

    // Refused: Back says no, and nothing is shown or followed.
    let first = send(2);
    offer_until_asked(&ui, &io, &c, &first, &tv);
    assert_eq!(ui.page(), Page::PacketsPrompt);
    assert_eq!(
        ui.tv().get_packets_title(),
        "Alice Martin would like to show red packets here"
    );
    ui.press(SlintKey::Escape);
    assert!(matches!(
        ui.shell.borrow().app.screen,
        Screen::Catalog { .. }
    ));

    // Accepted: OK on "Show them".
    let set = send(2);
    offer_until_asked(&ui, &io, &c, &set, &tv);
    save(&ui.snapshot(), "packets-prompt-1920x1080.png");
    assert_eq!(ui.focus(), 0, "\"Show them\" is focused first");
    ui.press(SlintKey::RightArrow);
    assert_eq!(ui.focus(), 1);
    ui.press(SlintKey::LeftArrow);
    ui.press(SlintKey::Return);
    ui.wait(
        "the live red-packet screen",
        |a| matches!(&a.screen, Screen::Packets(p) if p.live),
    );
    assert_eq!(ui.page(), Page::Packets);
    let shot = ui.snapshot();
    save(&shot, "packets-1920x1080.png");
    let decoded = decode_qr(&shot);
    assert_eq!(decoded.len(), 1, "{decoded:?}");
    assert_eq!(PacketLink::parse(&decoded[0]).unwrap(), set.link);
    assert_eq!(
        ui.tv().get_code(),
        set.short_code.as_ref().unwrap().display()
    );
    assert_eq!(
        ui.tv().get_packets_left().replace('\u{a0}', " "),
        "2 of 2 packets left · €4.00 in all"
    );

    // Claims appear as they happen, newest first.
    claim(&io, &c, &set, "bob", "2468");
    ui.wait(
        "Bob's claim on screen",
        |a| matches!(&a.screen, Screen::Packets(p) if p.set.remaining == 1),
    );
    let rows: Vec<_> = slint::Model::iter(&ui.tv().get_rows()).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].title, "Bob Chen");
    claim(&io, &c, &set, "carol", "1357");
    ui.wait(
        "the finished set",
        |a| matches!(&a.screen, Screen::Packets(p) if !p.is_open()),
    );
    assert!(!ui.tv().get_packets_open());
    assert_eq!(
        ui.tv().get_packets_left().replace('\u{a0}', " "),
        "All 2 packets were opened"
    );
    let rows: Vec<_> = slint::Model::iter(&ui.tv().get_rows()).collect();
    assert_eq!(
        rows.iter().map(|r| r.title.to_string()).collect::<Vec<_>>(),
        ["Carol Diaz", "Bob Chen"]
    );
    let shot = ui.snapshot();
    save(&shot, "packets-finished-1920x1080.png");
    assert!(decode_qr(&shot).is_empty(), "the code is withdrawn");
    ui.press(SlintKey::Return);
    assert!(matches!(
        ui.shell.borrow().app.screen,
        Screen::Catalog { .. }
    ));
    io.block_on(server.stop());
}
