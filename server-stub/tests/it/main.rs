//! Integration tests of the server: in-process and over real loopback sockets with the
//! typed client, a fresh database per test.

#[cfg(feature = "browser-tests")]
mod browser;
mod concurrency;
mod console;
mod devices;
mod durability;
mod errors;
mod flow;
mod hardening;
mod inprocess;
mod ledger;
mod multinode;
mod offers;
mod openapi;
mod packetpage;
mod packets;
mod paypage;
mod pg_crash;
mod phone;
mod testclock;
mod voucherpage;
mod vouchers;
mod webhooks;

use protocol::client::{Client, ClientError};
use protocol::{
    AccountId, CreateOrder, CreatedOrder, DeviceId, ErrorCode, IdempotencyKey, ItemId,
    LoginRequest, PayRequest, PayerAuth, Pin, Session,
};

pub(crate) const DEVICE: &str = "SN-TEST-0001";

pub(crate) fn account(id: &str) -> AccountId {
    AccountId::parse(id).unwrap()
}

pub(crate) fn pin(p: &str) -> PayerAuth {
    PayerAuth::Pin(Pin::parse(p).unwrap())
}

pub(crate) async fn order(client: &Client, item: &str) -> CreatedOrder {
    order_on(client, item, DEVICE).await
}

/// An order for `item` made by the TV with serial `device`.
pub(crate) async fn order_on(client: &Client, item: &str, device: &str) -> CreatedOrder {
    client
        .create_order(&CreateOrder {
            item_id: ItemId::parse(item).unwrap(),
            device_id: DeviceId::parse(device).unwrap(),
            device_name: "Living-room TV".into(),
        })
        .await
        .unwrap()
}

pub(crate) async fn login(client: &Client, id: &str, p: &str) -> Session {
    client
        .login(&LoginRequest {
            account: account(id),
            pin: Pin::parse(p).unwrap(),
        })
        .await
        .unwrap()
}

pub(crate) fn pay_req(id: &str, auth: PayerAuth) -> PayRequest {
    PayRequest {
        account: account(id),
        auth,
        delivery_address: None,
    }
}

pub(crate) fn key() -> IdempotencyKey {
    IdempotencyKey::random()
}

/// Asserts that `r` failed with the API error `code`.
#[track_caller]
pub(crate) fn assert_code<T: std::fmt::Debug>(r: Result<T, ClientError>, code: ErrorCode) {
    match r {
        Err(e) => assert_eq!(e.code(), Some(code), "error was: {e}"),
        Ok(v) => panic!("expected {code}, got success: {v:?}"),
    }
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server binary on `db`, listening on 127.0.0.1:`port`, with the repository's
/// assets and quiet logs; add arguments, then spawn.
pub(crate) fn server_command(db: &server_stub::db::Database, port: u16) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_couchpay-server"));
    cmd.args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--database")
        .arg(db.as_arg())
        .arg("--assets")
        .arg(server_stub::testing::assets_dir())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// A client for the server on 127.0.0.1:`port`, once it answers (within 30 s).
pub(crate) async fn client_when_up(port: u16) -> Client {
    let c = Client::new(protocol::ServerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while c.catalog().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    c
}
