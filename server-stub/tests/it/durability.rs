//! An acknowledged payment survives `kill -9` of the server process: the real binary is
//! started on a fresh database (SQLite, or PostgreSQL when the tests run on it), paid
//! through, killed with SIGKILL, and the database is then checked directly.

use protocol::OrderStatus;
use server_stub::db::{OptionalExtension, params};

use crate::*;

#[tokio::test]
async fn acknowledged_payment_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = server_stub::testing::fresh_database(dir.path()).await;
    let port = free_port();
    let mut child = server_command(&db, port)
        .spawn()
        .expect("start couchpay-server");
    let c = client_when_up(port).await;
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
