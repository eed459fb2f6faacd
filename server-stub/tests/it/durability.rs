//! An acknowledged payment survives `kill -9` of the server process: the real binary is
//! started on a fresh database (SQLite, or PostgreSQL when the tests run on it), paid
//! through, killed with SIGKILL, and the database is then checked directly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{OrderStatus, ServerUrl};
use server_stub::db::{OptionalExtension, params};

use crate::*;

#[tokio::test]
async fn acknowledged_payment_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = server_stub::testing::fresh_database(dir.path()).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_couchpay-server"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .arg("--database")
        .arg(db.as_arg())
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

    let order_id = o.id.clone();
    let (payer, audit, row) = tokio::task::spawn_blocking(move || {
        let conn = server_stub::store::open_for_audit(&db).unwrap();
        let payer: Option<String> = conn
            .query_row(
                "SELECT payer FROM payments WHERE order_id = ?1",
                params![order_id.as_str()],
                |r| r.get(0),
            )
            .optional()
            .unwrap();
        let audit = server_stub::ledger::audit(&conn).unwrap();
        let row = server_stub::orders::load_order(&conn, &order_id).unwrap();
        (payer, audit, row)
    })
    .await
    .unwrap();
    assert_eq!(payer.as_deref(), Some(receipt.payer.as_str()));
    assert!(audit.ok, "{:?}", audit.problems);
    assert_eq!(row.unwrap().status, OrderStatus::Paid);
}
