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

/// SQLite only (the WAL is SQLite's): under writes that never pause, with readers always
/// in the database, the write-ahead log is started again from its beginning instead of
/// growing without end. (Passive checkpoints alone let it reach 2.3 GB in 60,000
/// payments.) The WAL header's checkpoint sequence number counts the restarts.
#[tokio::test]
async fn the_sqlite_wal_stays_bounded_under_sustained_writes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let srv = server_stub::testing::TestServer::start_with(|c| {
        c.database = server_stub::db::Database::Sqlite(path.clone());
        c.wal_restart_mib = 1;
    })
    .await;
    let wal = dir.path().join("wal.db-wal");
    let restarts = || {
        let header = std::fs::read(&wal).unwrap_or_default();
        header
            .get(12..16)
            .map_or(0, |b| u32::from_be_bytes(b.try_into().unwrap()))
    };
    let first = restarts();
    let store = srv.server.state.store.clone();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    store
                        .read(|conn| server_stub::ledger::get_account(conn, "alice"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut largest = 0;
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..150 {
                    let account = if w % 2 == 0 { "alice" } else { "bob" };
                    store
                        .write(move |conn, _| {
                            let amount =
                                protocol::Money::new(1, protocol::Currency::parse("EUR").unwrap());
                            server_stub::ledger::top_up(conn, account, amount, 0)
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        while !w.is_finished() {
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let restarted = restarts().wrapping_sub(first);
    assert!(restarted >= 2, "the WAL was restarted {restarted} times");
    // The WAL's limit is 1 MiB; between two checks it may grow past it for a while.
    assert!(largest < 8 << 20, "the WAL reached {largest} bytes");
    let report = srv.client().audit().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}
