//! Red packets on the family TV, end to end: the sender's companion sends a set, picks the
//! TV from Nearby (its mDNS presence, on `lo`) and puts the set on it (the TV's core and
//! runtime against the real server, headless); the TV asks and, on OK, shows it and
//! announces it like an order; one companion finds it under Nearby, another types the
//! code the TV shows, and each opens a packet; the TV's live list shows both; at expiry
//! the rest goes back to the sender and the TV withdraws the code and its announcement.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use couchpay_e2e::companion;
use phone_client::companion::packets::PacketsToSend;
use phone_client::discovery::find_tv;
use phone_client::{Browser, Credentials, Interfaces, NearbyEvent};
use protocol::{
    AccountId, Currency, DeviceId, Money, PacketLink, PacketSetState, PacketSplit, Pin, TvPresence,
};
use server_stub::testing::TestServer;
use tv_client::announce::Announcer;
use tv_client::runtime::{HttpBackend, Runtime, Sink};
use tv_client::state::{App, Identity, Input, Key, Screen};

/// Longest wait for the TV to reach a state.
const TV_TIMEOUT: Duration = Duration::from_secs(10);

struct Tv {
    app: App,
    runtime: Runtime<HttpBackend>,
    inputs: mpsc::Receiver<Input>,
}

impl Tv {
    fn handle(&mut self, input: Input) {
        let fx = self.app.handle(input);
        self.runtime.execute_all(fx);
    }

    /// Feeds the server's answers to the TV until `done`; false after `timeout`.
    fn reached(&mut self, timeout: Duration, done: impl Fn(&App) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.app) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.inputs.recv_timeout(left) {
                Ok(input) => self.handle(input),
                Err(_) => return done(&self.app),
            }
        }
        true
    }

    fn wait(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        assert!(
            self.reached(TV_TIMEOUT, done),
            "the TV did not reach {what}: {:?}",
            self.app.screen
        );
    }
}

fn pin(who: &str, pin: &str) -> Credentials {
    Credentials::Pin {
        account: AccountId::parse(who).unwrap(),
        pin: Pin::parse(pin).unwrap(),
    }
}

/// Waits for a Nearby change about this TV's red packets.
fn packets_event(browser: &mut Browser, device: &DeviceId, listed: bool) -> NearbyEvent {
    let deadline = Instant::now() + TV_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match browser.next_event(left) {
            Some(ev) => {
                let mine = match &ev {
                    NearbyEvent::PacketsListed(n) => listed && n.record.tv_id == *device,
                    NearbyEvent::PacketsWithdrawn(n) => !listed && n.record.tv_id == *device,
                    _ => false,
                };
                if mine {
                    return ev;
                }
            }
            None => panic!(
                "no red packets {} on Nearby",
                if listed { "listed" } else { "withdrawn" }
            ),
        }
    }
}

#[test]
fn a_set_put_on_the_tv_from_nearby_is_opened_and_refunded_at_expiry() {
    let io = tokio::runtime::Runtime::new().unwrap();
    let server = io.block_on(TestServer::start());
    let (tx, inputs) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let sink: Sink = std::sync::Arc::new(move |input| {
        let _ = tx.lock().unwrap().send(input);
    });
    let device = DeviceId::random();
    // A name of its own: other tests' TVs may be on `lo` too.
    let tv_name = format!("Family TV {}", &device.as_str()[..6]);
    let (app, initial) = App::init(
        Identity {
            device_id: device.clone(),
            tv_name: tv_name.clone(),
        },
        0,
    );
    let announcer = Announcer::new(&tv_client::announce::Interfaces::Only(vec!["lo".into()]))
        .map_err(|e| e.to_string());
    let mut runtime = Runtime::new(
        HttpBackend::new(server.url.clone()),
        io.handle().clone(),
        sink,
        announcer,
    )
    .with_presence(TvPresence::new(
        server.url.clone(),
        &tv_name,
        device.clone(),
    ));
    runtime.execute_all(initial);
    let mut tv = Tv {
        app,
        runtime,
        inputs,
    };
    tv.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });

    // Alice sends 3 packets of 1.50 and puts them on the TV.
    let (alice, _a) = companion(&server);
    let eur = Currency::parse("EUR").unwrap();
    let set = io
        .block_on(alice.send_packets(
            &pin("alice", "1234"),
            &PacketsToSend {
                count: 3,
                split: PacketSplit::Fixed {
                    each: Money::new(1_50, eur),
                },
                message: "For the kids".into(),
                allowed: None,
                valid_for_s: None,
            },
        ))
        .unwrap();
    // Alice picks the TV by name from Nearby: its presence record.
    let picked = find_tv(
        &Interfaces::loopback(),
        vec![server.url.clone()],
        &tv_name,
        TV_TIMEOUT,
    )
    .unwrap()
    .expect("the TV is listed under Nearby");
    assert_eq!(picked.tv_id, device);
    // The TV connects its device stream in the background: offer until it asks.
    let deadline = Instant::now() + TV_TIMEOUT;
    loop {
        io.block_on(alice.offer_packets(&set.link, &pin("alice", "1234"), &picked.tv_id))
            .unwrap();
        if tv.reached(Duration::from_millis(500), |a| {
            matches!(a.screen, Screen::PacketsPrompt { .. })
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "the TV never asked");
    }
    let mut nearby = Browser::start(
        &Interfaces::loopback(),
        vec![server.url.clone()],
        Box::new(|_| false),
    )
    .unwrap();
    tv.handle(Input::Key(Key::Ok));
    tv.wait(
        "the set on screen, live and announced",
        |a| matches!(&a.screen, Screen::Packets(p) if p.live && p.set.id == set.id && p.announce == tv_client::state::AnnounceState::Live),
    );
    let code = match &tv.app.screen {
        Screen::Packets(p) => p.set.short_code.clone().expect("a code on screen"),
        _ => unreachable!(),
    };

    // Bob's and Carol's phones each find the packets under Nearby (Carol's also checks
    // the code the TV shows names the same set).
    let NearbyEvent::PacketsListed(found) = packets_event(&mut nearby, &device, true) else {
        unreachable!()
    };
    assert_eq!(found.record.set, set.id);
    assert_eq!(found.record.short_code, code);
    assert_eq!(found.record.sender_name, "Alice Martin");
    assert_eq!(found.record.message, "For the kids");
    for (who, p) in [("bob", "2468"), ("carol", "1357")] {
        let (phone, _dir) = companion(&server);
        let record = if who == "bob" {
            found.record.clone()
        } else {
            let seen = phone_client::discovery::first_packets(
                &Interfaces::loopback(),
                vec![server.url.clone()],
                TV_TIMEOUT,
            )
            .unwrap()
            .expect("Carol's phone finds the packets nearby");
            let by_code = io.block_on(phone.packets_by_code(&code)).unwrap();
            assert_eq!(by_code.set, seen.set);
            seen
        };
        let link = PacketLink {
            server: record.server,
            set: record.set,
        };
        assert_eq!(link, set.link);
        let got = io
            .block_on(phone.claim_packet(&link, &pin(who, p)))
            .unwrap();
        assert_eq!(got.amount, Money::new(1_50, eur));
    }
    tv.wait(
        "both claims on the TV",
        |a| matches!(&a.screen, Screen::Packets(p) if p.set.claims.len() == 2),
    );
    if let Screen::Packets(p) = &tv.app.screen {
        let names: Vec<_> = p
            .set
            .claims
            .iter()
            .map(|c| c.recipient_name.as_str())
            .collect();
        assert_eq!(names, ["Bob Chen", "Carol Diaz"]);
        assert_eq!(p.set.remaining, 1);
    }

    // A day later the sweep refunds the last packet; the TV withdraws the code.
    server.advance_clock(Duration::from_secs(86_400 + 1));
    io.block_on(server.sweep_expired());
    tv.wait(
        "the refunded set",
        |a| matches!(&a.screen, Screen::Packets(p) if p.set.state == PacketSetState::Refunded),
    );
    if let Screen::Packets(p) = &tv.app.screen {
        assert!(!p.is_open());
        assert_eq!(p.set.refunded, Money::new(1_50, eur));
    }
    // Its announcement goes with the code; the TV itself stays listed.
    packets_event(&mut nearby, &device, false);
    assert!(nearby.tvs().iter().any(|t| t.tv_id == device));
    nearby.stop();
    let after = io.block_on(server.client().packets(&set.id)).unwrap();
    assert_eq!(after.refunded, Money::new(1_50, eur));
    let audit = io.block_on(server.client().audit()).unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    drop(tv);
    io.block_on(server.stop());
}
