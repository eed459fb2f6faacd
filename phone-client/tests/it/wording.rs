//! What the companion says when things go wrong, against a real server: the server's
//! own message (a wrong PIN's tries left), what happened to the money ("Nothing was
//! charged" only where true), and an unanswered payment resolved by looking it up by
//! its idempotency key instead of "unknown". Also the `couchpay` CLI's wording.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use phone_client::companion::CompanionError;
use phone_client::{Companion, Credentials, OrderRef, SmsCode, StateStore};
use protocol::client::Client;
use protocol::{
    AccountId, CreateOrder, DeviceId, ItemId, LoginRequest, Order, Pin, ServerUrl, ShortCode,
};
use server_stub::testing::TestServer;

fn companion(server: &ServerUrl, dir: &tempfile::TempDir) -> Companion {
    let store = StateStore::open(&dir.path().join("state.json")).unwrap();
    Companion::new(vec![server.clone()], store).unwrap()
}

fn pin(account: &str, pin: &str) -> Credentials {
    Credentials::Pin {
        account: AccountId::parse(account).unwrap(),
        pin: Pin::parse(pin).unwrap(),
    }
}

async fn tv_order(tv: &Client) -> Order {
    tv.create_order(&CreateOrder {
        item_id: ItemId::parse("film-night-train").unwrap(),
        device_id: DeviceId::parse("SN-WORDING-1").unwrap(),
        device_name: "Living-room TV".into(),
    })
    .await
    .unwrap()
    .order
}

async fn alice_balance(tv: &Client) -> String {
    let alice = AccountId::parse("alice").unwrap();
    let s = tv
        .login(&LoginRequest {
            account: alice.clone(),
            pin: Pin::parse("1234").unwrap(),
        })
        .await
        .unwrap();
    tv.account(&alice, &s.token)
        .await
        .unwrap()
        .balance
        .to_string()
}

/// A loopback address where nothing listens.
fn closed_server() -> ServerUrl {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = ServerUrl::parse(&format!("http://{}", l.local_addr().unwrap())).unwrap();
    drop(l);
    url
}

/// What the proxy does to `POST …/pay` requests.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lose {
    /// Forward the payment, then cut the connection before the answer.
    Answer,
    /// Cut the connection as soon as the payment arrives, never forwarding it.
    Request,
}

/// A TCP proxy to `upstream` that loses payments as `lose` says; everything else passes.
fn lossy_proxy(upstream: &ServerUrl, lose: Lose) -> ServerUrl {
    let target = upstream
        .as_str()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = ServerUrl::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            let drop_answer = Arc::new(AtomicBool::new(false));
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let flag = drop_answer.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = c_in.read(&mut buf) {
                    let chunk = &buf[..n];
                    let is_pay = chunk.starts_with(b"POST ")
                        && chunk.windows(13).any(|w| w == b"/pay HTTP/1.1");
                    if is_pay && lose == Lose::Request {
                        let _ = c_in.shutdown(Shutdown::Both);
                        let _ = s_out.shutdown(Shutdown::Both);
                        return;
                    }
                    if is_pay {
                        flag.store(true, Ordering::SeqCst);
                    }
                    if s_out.write_all(chunk).is_err() {
                        return;
                    }
                }
                let _ = s_out.shutdown(Shutdown::Write);
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n @ 1..) = s_in.read(&mut buf) {
                    if drop_answer.load(Ordering::SeqCst) {
                        let _ = c_out.shutdown(Shutdown::Both);
                        let _ = s_in.shutdown(Shutdown::Both);
                        return;
                    }
                    if c_out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                let _ = c_out.shutdown(Shutdown::Write);
            });
        }
    });
    url
}

#[tokio::test]
async fn wrong_pin_shows_the_servers_tries_left_and_nothing_charged() {
    let server = TestServer::start().await;
    let tv = server.client();
    let order = tv_order(&tv).await;
    let dir = tempfile::tempdir().unwrap();
    let mut phone = companion(&server.url, &dir);
    let c = phone
        .fetch(&OrderRef::Link(order.pay_link.clone()))
        .await
        .unwrap();
    let err = phone
        .pay(&c, &pin("alice", "9999"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, CompanionError::WrongPin { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("Wrong PIN ("), "{msg}");
    assert!(msg.contains("tries left"), "{msg}");
    assert!(msg.ends_with("Nothing was charged."), "{msg}");
    assert!(err.nothing_charged());
    assert_eq!(
        alice_balance(&tv).await,
        "500.00 EUR",
        "really nothing charged"
    );
    assert!(phone.state().get().pending.is_empty());

    // Signing in with a wrong PIN says the same, without talking of charges.
    let err = phone
        .login(
            None,
            AccountId::parse("alice").unwrap(),
            Pin::parse("9999").unwrap(),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tries left") && !msg.contains("charged"),
        "{msg}"
    );
    server.stop().await;
}

#[tokio::test]
async fn codes_say_what_is_wrong_with_them() {
    let server = TestServer::start().await;
    let tv = server.client();
    let dir = tempfile::tempdir().unwrap();
    let mut phone = companion(&server.url, &dir);

    // A typed code with letters no code has.
    let err = OrderRef::parse_input("ABCD-EFGH").unwrap_err();
    assert!(matches!(err, CompanionError::NotACode(_)), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("ABCD-EFGH is not a Couchpay code"), "{msg}");
    assert!(!msg.contains("pay link"), "{msg}");

    // A well-formed code no order has.
    let code = ShortCode::random();
    let err = phone
        .fetch(&OrderRef::Code(code.clone()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&code.display()), "{msg}");
    assert!(msg.contains("Check the code on the TV"), "{msg}");
    assert!(msg.ends_with("Nothing was charged."), "{msg}");

    // A code just paid from this device.
    let order = tv_order(&tv).await;
    let c = phone
        .fetch(&OrderRef::Code(order.short_code.clone()))
        .await
        .unwrap();
    phone.pay(&c, &pin("alice", "1234"), None).await.unwrap();
    let err = phone
        .fetch(&OrderRef::Code(order.short_code.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(err, CompanionError::AlreadyPaidHere { .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "You already paid this order from this device; nothing more was charged."
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_not_an_unknown_payment() {
    let dir = tempfile::tempdir().unwrap();
    let gone = closed_server();
    let phone = companion(&gone, &dir);
    let err = phone
        .fetch(&OrderRef::Code(ShortCode::random()))
        .await
        .unwrap_err();
    assert!(matches!(err, CompanionError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("Cannot reach the Couchpay server at 127.0.0.1:"),
        "{msg}"
    );
    assert!(!msg.contains("unknown") && !msg.contains("://"), "{msg}");
}

#[tokio::test]
async fn an_unanswered_payment_is_looked_up_by_its_key() {
    let server = TestServer::start().await;
    let tv = server.client();
    let order = tv_order(&tv).await;
    let proxy = lossy_proxy(&server.url, Lose::Answer);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = companion(&proxy, &dir);
    let link = OrderRef::Link(protocol::PayLink::new(proxy.clone(), order.id.clone()));
    let c = phone.fetch(&link).await.unwrap();
    // Every answer to the payment is lost; the companion asks the server what happened.
    let receipt = phone.pay(&c, &pin("alice", "1234"), None).await.unwrap();
    assert_eq!(receipt.order_id, order.id);
    assert!(phone.state().get().pending.is_empty());
    assert!(phone.is_paid_here(&proxy, &order.id));
    // The lookup needed a session: opened with the PIN just given (never stored).
    assert!(
        phone.signed_in(&proxy).is_some(),
        "the receipt came from the lookup"
    );
    assert_eq!(
        alice_balance(&tv).await,
        "495.01 EUR",
        "charged exactly once"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_lost_payment_request_charged_nothing_and_keeps_its_key() {
    let server = TestServer::start().await;
    let tv = server.client();
    let order = tv_order(&tv).await;
    let proxy = lossy_proxy(&server.url, Lose::Request);
    let dir = tempfile::tempdir().unwrap();
    let mut phone = companion(&proxy, &dir);
    let link = OrderRef::Link(protocol::PayLink::new(proxy.clone(), order.id.clone()));
    let c = phone.fetch(&link).await.unwrap();
    let err = phone
        .pay(&c, &pin("alice", "1234"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, CompanionError::NotChargedYet), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("nothing was charged"), "{msg}");
    assert!(msg.contains("can never charge twice"), "{msg}");
    assert_eq!(alice_balance(&tv).await, "500.00 EUR");
    // The key stays for the retry, which reuses it.
    assert_eq!(phone.state().get().pending.len(), 1);
    server.stop().await;
}

#[test]
fn sms_codes_are_read_from_the_servers_text() {
    let body = "Couchpay: pay Night Train (4.99 EUR) on Living-room TV? Your code is 042917. \
                It works for 5 minutes. Never share it with anyone who calls you.";
    let sms = SmsCode::parse(body).unwrap();
    assert_eq!(sms.code, "042917");
    assert_eq!(sms.item, "Night Train");
    assert_eq!(sms.amount, "4.99 EUR");
    assert_eq!(sms.tv, "Living-room TV");
    assert_eq!(sms.short_code, None, "an SMS without the TV code");
    // Today's text names the order by the TV's short code, so no TV nearby is needed.
    let body = "Couchpay: pay Night Train (4.99 EUR) on Living-room TV? Your code is 042917. \
                TV code BCDF-GHJK. It works for 5 minutes. Never share it with anyone who calls you.";
    let sms = SmsCode::parse(body).unwrap();
    assert_eq!(sms.code, "042917");
    assert_eq!(sms.short_code.unwrap().display(), "BCDF-GHJK");
    assert!(SmsCode::parse("Couchpay: Night Train (4.99 EUR). Pay here: x").is_none());
}

fn couchpay(server: &ServerUrl, dir: &tempfile::TempDir, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_couchpay"))
        .arg("--server")
        .arg(server.as_str())
        .arg("--state")
        .arg(dir.path().join("cli.json"))
        .args(args)
        .env("COUCHPAY_NO_BLE", "1")
        .env_remove("COUCHPAY_ACCOUNT")
        .env_remove("COUCHPAY_PIN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_shows_the_servers_message_and_what_happened_to_money() {
    let server = TestServer::start().await;
    let order = tv_order(&server.client()).await;
    let dir = tempfile::tempdir().unwrap();
    let code = order.short_code.display();
    let url = server.url.clone();
    let d = &dir;
    let (ok, err) = tokio::task::block_in_place(|| {
        couchpay(
            &url,
            d,
            &["pay", &code, "--account", "alice", "--pin", "9999", "--yes"],
        )
    });
    assert!(!ok);
    assert!(err.contains("error: Wrong PIN ("), "{err}");
    assert!(
        err.contains("tries left") && err.contains("Nothing was charged."),
        "{err}"
    );
    assert!(!err.contains("outcome"), "{err}");

    // Only the lookup failed, nothing was sent: no talk of an unknown outcome.
    let gone = closed_server();
    let (ok, err) = tokio::task::block_in_place(|| couchpay(&gone, d, &["code", "BCDF-GHJK"]));
    assert!(!ok);
    assert!(
        err.contains("error: Cannot reach the Couchpay server"),
        "{err}"
    );
    assert!(!err.contains("outcome"), "{err}");
    server.stop().await;
}
