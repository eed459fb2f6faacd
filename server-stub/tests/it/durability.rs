//! An acknowledged payment survives `kill -9` of the server process: the real binary is
//! started on a fresh database, paid through, killed with SIGKILL, and the database is
//! then checked directly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{OrderStatus, ServerUrl};
use rusqlite::Connection;

use crate::*;

#[tokio::test]
async fn acknowledged_payment_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("couchpay.db");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_couchpay-server"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--database")
        .arg(&db)
        .arg("--assets")
        .arg(server_stub::testing::assets_dir())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start couchpay-server");
    let c = Client::new(ServerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while c.catalog().await.is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let o = order(&c, "film-night-train").await.order;
    let receipt = c
        .pay(&o.id, &key(), &pay_req("alice", pin("1234")))
        .await
        .unwrap();
    // SIGKILL right after the acknowledgement: no shutdown code runs.
    child.kill().unwrap();
    child.wait().unwrap();

    let conn = Connection::open(&db).unwrap();
    let payer: String = conn
        .query_row(
            "SELECT payer FROM payments WHERE order_id = ?1",
            [o.id.as_str()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(payer, receipt.payer.as_str());
    let audit = server_stub::ledger::audit(&conn).unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    let row = server_stub::orders::load_order(&conn, &o.id)
        .unwrap()
        .unwrap();
    assert_eq!(row.status, OrderStatus::Paid);
}
