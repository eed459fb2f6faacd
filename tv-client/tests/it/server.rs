//! Flows against the real stub server on loopback: the TV's state machine and runtime
//! (no window), a phone paying with the typed client, mDNS on `lo`, and a TCP proxy
//! that can take the server "down" or cut live connections.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protocol::{
    AccountId, IdempotencyKey, OrderStatus, PayRequest, PayerAuth, PhoneConfirm, PhoneNumber,
    PhonePayKind, Pin, ServerUrl,
};
use server_stub::testing::TestServer;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tv_client::announce::Announcer;
use tv_client::ble::{BleAnnouncer, BleStatus};
use tv_client::runtime::{HttpBackend, Runtime};
use tv_client::state::{App, Effect, Input, Key, PhonePhase, Screen, StreamPhase};

use crate::mdns::{BROWSER_SLACK, Browser, GONE_WITHIN, RFC6762_GOODBYE_GRACE, loopback_announcer};
use crate::support::*;

/// Longest wait for anything the server does in these tests.
const TIMEOUT: Duration = Duration::from_secs(15);
/// How often the harness ticks the clock while waiting.
const TICK: Duration = Duration::from_millis(50);

/// The TV without a window: state machine + real runtime, inputs pumped by the test,
/// the clock ticking in real time.
struct Tv {
    app: App,
    runtime: Runtime<HttpBackend>,
    rx: mpsc::Receiver<Input>,
    start: Instant,
    /// Every effect the app asked for, for assertions.
    effects: Vec<Effect>,
}

impl Tv {
    fn start(
        io: &tokio::runtime::Runtime,
        server: &ServerUrl,
        announcer: Result<Announcer, String>,
    ) -> Self {
        let (sink, rx) = channel_sink();
        let (app, initial) = App::init(fresh_identity(), 0);
        let mut runtime = Runtime::new(
            HttpBackend::new(server.clone()),
            io.handle().clone(),
            sink,
            announcer,
        );
        runtime.execute_all(initial.clone());
        Self {
            app,
            runtime,
            rx,
            start: Instant::now(),
            effects: initial,
        }
    }

    /// Like [`Tv::start`], also offering orders over BLE through `ble`.
    fn start_with_ble(
        io: &tokio::runtime::Runtime,
        server: &ServerUrl,
        announcer: Result<Announcer, String>,
        ble: BleAnnouncer,
    ) -> Self {
        let (sink, rx) = channel_sink();
        let (app, initial) = App::init(fresh_identity(), 0);
        let mut runtime = Runtime::new(
            HttpBackend::new(server.clone()),
            io.handle().clone(),
            sink,
            announcer,
        )
        .with_ble(ble);
        runtime.execute_all(initial.clone());
        Self {
            app,
            runtime,
            rx,
            start: Instant::now(),
            effects: initial,
        }
    }

    fn dispatch(&mut self, input: Input) {
        let fx = self.app.handle(input);
        self.effects.extend(fx.iter().cloned());
        self.runtime.execute_all(fx);
    }

    fn key(&mut self, key: Key) {
        self.dispatch(Input::Key(key));
    }

    fn wait(&mut self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + TIMEOUT;
        while !done(&self.app) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen: {:?}",
                self.app.screen
            );
            match self.rx.recv_timeout(TICK) {
                Ok(input) => self.dispatch(input),
                Err(_) => {
                    let now_ms = self.start.elapsed().as_millis() as u64;
                    self.dispatch(Input::Tick { now_ms });
                }
            }
        }
    }

    /// From launch: catalog, OK on the first item, OK on Buy, order on screen, stream live.
    fn buy_first_item(&mut self) -> protocol::Order {
        self.wait("the catalog", |a| {
            matches!(a.screen, Screen::Catalog { .. })
        });
        self.key(Key::Ok);
        self.key(Key::Ok);
        self.wait("the live order screen", |a| {
            a.order_screen()
                .is_some_and(|o| o.stream.phase == StreamPhase::Live)
        });
        self.app.order_screen().unwrap().order.clone()
    }
}

fn pay(io: &tokio::runtime::Runtime, server: &TestServer, order: &protocol::Order) {
    let receipt = io
        .block_on(server.client().pay(
            &order.id,
            &IdempotencyKey::random(),
            &PayRequest {
                account: AccountId::parse("alice").unwrap(),
                auth: PayerAuth::Pin(Pin::parse("1234").unwrap()),
                delivery_address: None,
            },
        ))
        .expect("alice pays");
    assert_eq!(receipt.order_id, order.id);
}

#[test]
fn phone_payment_unlocks_and_mdns_record_is_gone_within_1s() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let browser = Browser::on_loopback();
    let mut tv = Tv::start(&io, &server.url, Ok(loopback_announcer()));
    let order = tv.buy_first_item();
    let me = tv.app.identity.clone();
    assert_eq!(
        order.device.id, me.device_id,
        "the device id went with the order"
    );
    assert_eq!(order.device.name, me.tv_name);

    let instance = format!("couchpay-{}", me.device_id);
    let found = browser.resolve(&instance);
    assert_eq!(found.order, order.id);
    assert_eq!(found.short_code, order.short_code);
    assert_eq!(found.server, order.pay_link.server);
    tv.wait("the announcement", |a| {
        a.order_screen()
            .is_some_and(|o| o.announce == tv_client::state::AnnounceState::Live)
    });

    pay(&io, &server, &order);
    let paid_at = Instant::now();
    tv.wait("the paid screen", |a| {
        matches!(a.screen, Screen::Paid { .. })
    });
    // The TV withdraws (sends the goodbye) as it shows the paid screen.
    let withdrawn = paid_at.elapsed();
    assert!(!tv.runtime.is_announcing());
    assert!(
        withdrawn <= GONE_WITHIN,
        "withdrawn only {withdrawn:?} after payment"
    );
    let took = browser.removed(&instance, paid_at);
    eprintln!("payment → withdrawn {withdrawn:?}; → gone from the browser {took:?}");
    assert!(
        took <= GONE_WITHIN + RFC6762_GOODBYE_GRACE + BROWSER_SLACK,
        "record still visible {took:?} after payment"
    );

    // The purchase is now one of the device's entitlements.
    tv.key(Key::Right);
    tv.key(Key::Ok);
    tv.wait("the purchases", |a| {
        matches!(a.screen, Screen::Purchases { list: Some(_), .. })
    });
    let Screen::Purchases {
        list: Some(list), ..
    } = &tv.app.screen
    else {
        unreachable!()
    };
    assert!(list.iter().any(|e| e.order_id == order.id), "{list:?}");
    drop(tv);
    io.block_on(server.stop());
}

/// What a radio has on the air: the advert payload and the GATT record (JSON).
type OnAir = Option<(Vec<u8>, Vec<u8>)>;

/// A BLE radio that records what the TV asks of it (no bus needed).
#[derive(Clone, Default)]
struct RecordingRadio {
    on_air: Arc<Mutex<OnAir>>,
}

impl tv_client::ble::Peripheral for RecordingRadio {
    async fn start(
        &mut self,
        advert: [u8; protocol::ble::Advert::LEN],
        record_json: Arc<Vec<u8>>,
    ) -> Result<(), tv_client::ble::BleError> {
        *self.on_air.lock().unwrap() = Some((advert.to_vec(), record_json.to_vec()));
        Ok(())
    }
    async fn stop(&mut self) {
        *self.on_air.lock().unwrap() = None;
    }
}

fn wait_ble(
    io: &tokio::runtime::Runtime,
    ble: &mut tokio::sync::watch::Receiver<BleStatus>,
    what: &str,
    want: impl Fn(&BleStatus) -> bool,
) {
    io.block_on(async { tokio::time::timeout(TIMEOUT, ble.wait_for(|s| want(s))).await })
        .unwrap_or_else(|_| panic!("timed out waiting for BLE: {what}"))
        .expect("BLE task alive");
}

#[test]
fn order_is_offered_over_ble_and_withdrawn_once_paid() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let radio = RecordingRadio::default();
    let ble = BleAnnouncer::start(io.handle(), radio.clone());
    let mut status = ble.watch();
    let mut tv = Tv::start_with_ble(&io, &server.url, Err("mDNS off in this test".into()), ble);
    let order = tv.buy_first_item();
    wait_ble(
        &io,
        &mut status,
        "advertising the order",
        |s| matches!(s, BleStatus::Advertising(protocol::Announcement::Order(r)) if r.order == order.id),
    );

    let (advert, json) = radio.on_air.lock().unwrap().clone().expect("on the air");
    let advert = protocol::ble::Advert::decode(&advert).expect("valid advert");
    let me = tv.app.identity.clone();
    assert_eq!(advert.order(), Some(order.id.clone()));
    assert_eq!(advert.tv, protocol::ble::TvHash::of(&me.device_id));
    let record: protocol::DiscoveryRecord = serde_json::from_slice(&json).unwrap();
    assert_eq!(record.order, order.id);
    assert_eq!(record.short_code, order.short_code);
    assert_eq!(record.amount, order.amount);
    assert_eq!(record.server, order.pay_link.server);
    assert_eq!(record.tv_id, me.device_id);
    assert_eq!(record.tv_name, me.tv_name);

    pay(&io, &server, &order);
    tv.wait("the paid screen", |a| {
        matches!(a.screen, Screen::Paid { .. })
    });
    wait_ble(&io, &mut status, "withdrawn after payment", |s| {
        *s == BleStatus::Idle
    });
    assert!(
        radio.on_air.lock().unwrap().is_none(),
        "advert and GATT still up"
    );
    drop(tv);
    io.block_on(server.stop());
}

#[test]
fn server_expiry_shows_expired_and_ok_gets_a_fresh_code() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let browser = Browser::on_loopback();
    let mut tv = Tv::start(&io, &server.url, Ok(loopback_announcer()));
    let order = tv.buy_first_item();
    let instance = format!("couchpay-{}", tv.app.identity.device_id);
    assert_eq!(browser.resolve(&instance).order, order.id);

    let ttl = Duration::from_millis((order.expires_at_ms - order.created_at_ms) as u64);
    server.advance_clock(ttl + Duration::from_secs(1));
    io.block_on(server.sweep_expired());
    let expired_at = Instant::now();
    tv.wait("the expired screen", |a| {
        matches!(
            a.screen,
            Screen::Expired {
                confirmed: true,
                ..
            }
        )
    });
    assert!(!tv.runtime.is_announcing());
    assert!(expired_at.elapsed() <= GONE_WITHIN);
    let took = browser.removed(&instance, expired_at);
    assert!(
        took <= GONE_WITHIN + RFC6762_GOODBYE_GRACE + BROWSER_SLACK,
        "{took:?}"
    );
    let status = io
        .block_on(server.client().order(&order.id))
        .unwrap()
        .status;
    assert_eq!(status, OrderStatus::Expired);

    tv.key(Key::Ok);
    tv.wait("a fresh order", |a| {
        a.order_screen().is_some_and(|o| o.order.id != order.id)
    });
    let fresh = tv.app.order_screen().unwrap().order.clone();
    assert_ne!(fresh.short_code, order.short_code);
    assert_eq!(fresh.status, OrderStatus::Pending);
    drop(tv);
    io.block_on(server.stop());
}

#[test]
fn back_on_the_order_screen_cancels_it_on_the_server() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let mut tv = Tv::start(&io, &server.url, Err("off".into()));
    let order = tv.buy_first_item();
    tv.key(Key::Back);
    assert!(matches!(tv.app.screen, Screen::Item { .. }));
    let client = server.client();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        // Keep pumping so the cancel's answer is handled too.
        while let Ok(input) = tv.rx.try_recv() {
            tv.dispatch(input);
        }
        let status = io.block_on(client.order(&order.id)).unwrap().status;
        if status == OrderStatus::Cancelled {
            break;
        }
        assert!(Instant::now() < deadline, "order still {status:?}");
        std::thread::sleep(TICK);
    }
    // A cancelled order can no longer be paid (SPEC P8).
    let refused = io.block_on(server.client().pay(
        &order.id,
        &IdempotencyKey::random(),
        &PayRequest {
            account: AccountId::parse("alice").unwrap(),
            auth: PayerAuth::Pin(Pin::parse("1234").unwrap()),
            delivery_address: None,
        },
    ));
    assert_eq!(
        refused.err().and_then(|e| e.code()),
        Some(protocol::ErrorCode::OrderCancelled)
    );
    drop(tv);
    io.block_on(server.stop());
}

/// A loopback TCP proxy in front of the server that can refuse connections ("down")
/// and cut every open connection (a dropped event stream).
struct Proxy {
    port: u16,
    upstream: SocketAddr,
    handle: tokio::runtime::Handle,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy that is down: its port is reserved by number but nothing listens.
    fn down(io: &tokio::runtime::Runtime, server: &ServerUrl) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let upstream = server
            .as_str()
            .trim_start_matches("http://")
            .parse()
            .expect("test server on an IP:port");
        Self {
            port,
            upstream,
            handle: io.handle().clone(),
            accept: None,
            conns: Arc::default(),
        }
    }

    fn url(&self) -> ServerUrl {
        ServerUrl::parse(&format!("http://127.0.0.1:{}", self.port)).unwrap()
    }

    fn up(&mut self) {
        let listener = self
            .handle
            .block_on(TcpListener::bind(("127.0.0.1", self.port)))
            .expect("proxy port still free");
        let (upstream, conns) = (self.upstream, self.conns.clone());
        self.accept = Some(self.handle.spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        tokio::join!(pump(cr, sw), pump(sr, cw));
                    }
                });
                conns.lock().unwrap().push(task);
            }
        }));
    }

    /// Drops every open connection; new ones are still accepted.
    fn cut(&self) {
        for task in self.conns.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// Copies bytes one way until either side closes (tokio's `io-util` copy helpers are
/// not enabled in this workspace, so this uses the readiness API directly).
async fn pump(from: OwnedReadHalf, to: OwnedWriteHalf) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let n = match from.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        let mut sent = 0;
        while sent < n {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(&buf[sent..n]) {
                Ok(k) => sent += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        self.cut();
    }
}

#[test]
fn server_down_at_start_then_back_recovers_by_itself() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let mut proxy = Proxy::down(&io, &server.url);
    let mut tv = Tv::start(&io, &proxy.url(), Err("off".into()));
    tv.wait("the problem screen", |a| {
        matches!(a.screen, Screen::Problem(_))
    });
    // Let it fail at least twice, so the backoff path is exercised.
    tv.wait(
        "a second failed attempt",
        |a| matches!(&a.screen, Screen::Problem(p) if p.attempts >= 2),
    );
    proxy.up();
    tv.wait("the catalog after the server came back", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    let loads = tv
        .effects
        .iter()
        .filter(|e| **e == Effect::LoadCatalog)
        .count();
    assert!(loads >= 3, "retried automatically ({loads} loads)");
    drop(tv);
    drop(proxy);
    io.block_on(server.stop());
}

#[test]
fn dropped_event_stream_is_resumed_and_payment_still_arrives() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let mut proxy = Proxy::down(&io, &server.url);
    proxy.up();
    let mut tv = Tv::start(&io, &proxy.url(), Err("off".into()));
    let order = tv.buy_first_item();
    let before = tv.app.order_screen().unwrap().stream.generation;

    proxy.cut();
    tv.wait("the stream to be noticed down", |a| {
        a.order_screen()
            .is_some_and(|o| matches!(o.stream.phase, StreamPhase::Down { .. }))
    });
    tv.wait("the stream to be live again", |a| {
        a.order_screen()
            .is_some_and(|o| o.stream.phase == StreamPhase::Live)
    });
    assert!(
        tv.app.order_screen().unwrap().stream.generation > before,
        "a new connection"
    );
    assert!(
        tv.effects.contains(&Effect::PollOrder(order.id.clone())),
        "polled while the stream was down"
    );
    pay(&io, &server, &order);
    tv.wait("the paid screen", |a| {
        matches!(a.screen, Screen::Paid { .. })
    });
    drop(tv);
    drop(proxy);
    io.block_on(server.stop());
}

/// The 6-digit code in the newest SMS to `phone` ("… Your code is 123456. …").
fn sms_code(io: &tokio::runtime::Runtime, server: &TestServer, phone: &PhoneNumber) -> String {
    let outbox = io
        .block_on(server.client().sms_outbox(&server.admin_token, phone))
        .expect("the outbox of the number");
    let newest = outbox.first().expect("an SMS was sent");
    let (_, after) = newest
        .body
        .split_once("code is ")
        .unwrap_or_else(|| panic!("no code in {:?}", newest.body));
    let code: String = after.chars().take_while(char::is_ascii_digit).collect();
    assert_eq!(code.len(), 6, "{:?}", newest.body);
    code
}

#[test]
fn phone_number_typed_on_the_pad_gets_a_code_whose_reply_unlocks_the_tv() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let mut tv = Tv::start(&io, &server.url, Err("off in this test".into()));
    let order = tv.buy_first_item();

    // OK on "Pay with phone number" (focused first); +1 is prefilled, so alice's number
    // is the rest with the remote's digit keys; complete, the focus is on ✓: OK.
    tv.key(Key::Ok);
    for d in "5550100001".bytes() {
        tv.key(Key::Digit(d - b'0'));
    }
    tv.key(Key::Ok);
    tv.wait("the waiting screen", |a| {
        a.order_screen()
            .and_then(|o| o.phone.as_ref())
            .is_some_and(|p| matches!(p.phase, PhonePhase::Sent { .. }))
    });
    let phase = tv.app.order_screen().unwrap().phone.clone().unwrap().phase;
    assert!(
        matches!(&phase, PhonePhase::Sent { kind: PhonePayKind::CodeSent, phone_masked, .. } if phone_masked.ends_with("001")),
        "{phase:?}"
    );

    // The payer replies with the code from the SMS; the TV, still following the order,
    // shows it paid.
    let phone = PhoneNumber::parse("+15550100001").unwrap();
    let code = sms_code(&io, &server, &phone);
    let receipt = io
        .block_on(
            server
                .client()
                .confirm_phone_code(&order.id, &PhoneConfirm { phone, code }),
        )
        .expect("the code pays");
    assert_eq!(receipt.order_id, order.id);
    tv.wait(
        "the paid screen",
        |a| matches!(&a.screen, Screen::Paid { order: o, .. } if o.id == order.id),
    );
    drop(tv);
    io.block_on(server.stop());
}

#[test]
fn unbound_number_gets_the_link_and_the_fourth_number_is_refused_on_the_pad() {
    let io = io_runtime();
    let server = io.block_on(TestServer::start());
    let mut tv = Tv::start(&io, &server.url, Err("off in this test".into()));
    let order = tv.buy_first_item();
    tv.key(Key::Ok);
    // The pad opens on 5 with +1 prefilled: ▼▼◀ to ⌫ and OK deletes it; then a German
    // number (numbers there have several lengths, so the focus stays on the last digit,
    // 8) and ▼▶ to ✓.
    for k in [Key::Down, Key::Down, Key::Left, Key::Ok] {
        tv.key(k);
    }
    for d in "4915112345678".bytes() {
        tv.key(Key::Digit(d - b'0'));
    }
    for k in [Key::Down, Key::Right] {
        tv.key(k);
    }
    let sent = |a: &App| {
        a.order_screen()
            .and_then(|o| o.phone.as_ref())
            .is_some_and(|p| matches!(p.phase, PhonePhase::Sent { .. }))
    };
    // Three sends are allowed per order ("Edit number" returns to the pad on ✓).
    for _ in 0..3 {
        tv.key(Key::Ok);
        tv.wait("the waiting screen", sent);
        let phase = tv.app.order_screen().unwrap().phone.clone().unwrap().phase;
        assert!(
            matches!(
                phase,
                PhonePhase::Sent {
                    kind: PhonePayKind::LinkSent,
                    ..
                }
            ),
            "{phase:?}"
        );
        tv.key(Key::Right);
        tv.key(Key::Ok);
    }
    let outbox = io
        .block_on(server.client().sms_outbox(
            &server.admin_token,
            &PhoneNumber::parse("+4915112345678").unwrap(),
        ))
        .unwrap();
    assert_eq!(outbox.len(), 3);
    assert!(
        outbox[0].body.contains(&order.pay_link.to_string()),
        "{:?}",
        outbox[0].body
    );
    // The fourth is refused, in words, on the pad.
    tv.key(Key::Ok);
    tv.wait("the refusal", |a| {
        a.order_screen()
            .and_then(|o| o.phone.as_ref())
            .is_some_and(|p| matches!(p.phase, PhonePhase::Typing { message: Some(_) }))
    });
    let phase = tv.app.order_screen().unwrap().phone.clone().unwrap().phase;
    assert!(
        matches!(&phase, PhonePhase::Typing { message: Some(m) } if m.contains("3 times")),
        "{phase:?}"
    );
    // The order itself is still payable by QR.
    pay(&io, &server, &order);
    tv.wait("the paid screen", |a| {
        matches!(a.screen, Screen::Paid { .. })
    });
    drop(tv);
    io.block_on(server.stop());
}
