//! Crash test on PostgreSQL: payments run through two server processes on one database
//! while the nodes are killed with SIGKILL and restarted again and again, and PostgreSQL
//! itself is stopped with `pg_ctl stop -m immediate` (a crash: no checkpoint, recovery
//! from the WAL on start) and restarted once. Afterwards every acknowledged payment is
//! in the database, exactly once, and the ledger audit is clean.
//!
//! It restarts the PostgreSQL cluster the other tests use, so it runs alone:
//! `.ci/run` sets `COUCHPAY_TEST_PG_CLUSTER` to the cluster's data directory and runs
//! `cargo test --test it pg_crash:: -- --ignored`. Selected without it, it fails.

use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use protocol::client::Client;
use protocol::{IdempotencyKey, OrderId, PayerAuth, Receipt, ServerUrl};
use server_stub::db::Database;
use server_stub::db::params;
use server_stub::testing::{TEST_POSTGRES_ENV, fresh_postgres_schema};
use tokio::sync::Mutex;

use crate::{free_port, key, login, pay_req, server_command};

/// The data directory of the test cluster (started by `tools/pg-test-cluster.sh`).
const CLUSTER_ENV: &str = "COUCHPAY_TEST_PG_CLUSTER";
const NODE_KILLS: usize = 6;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const ADMIN: &str = "crash-test-admin";

struct Node {
    port: u16,
    database: Database,
    child: Option<Child>,
}

impl Node {
    fn url(&self) -> ServerUrl {
        ServerUrl::parse(&format!("http://127.0.0.1:{}", self.port)).unwrap()
    }

    /// Starts the server binary and waits until it answers (starting it again while the
    /// database is still coming back).
    async fn start(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let c = Client::new(self.url());
        loop {
            if self
                .child
                .as_mut()
                .is_none_or(|c| c.try_wait().unwrap().is_some())
            {
                self.child = Some(
                    server_command(&self.database, self.port)
                        .env("COUCHPAY_ADMIN_TOKEN", ADMIN)
                        .spawn()
                        .expect("start couchpay-server"),
                );
            }
            if c.catalog().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node on {} did not start",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

fn cluster_script(cmd: &str, dir: &str, port: &str) {
    let status = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tools/pg-test-cluster.sh"
    ))
    .args([cmd, dir, port])
    .status()
    .expect("run tools/pg-test-cluster.sh");
    assert!(status.success(), "pg-test-cluster.sh {cmd} failed");
}

/// One payment attempt: an order made through one node, paid through the other.
async fn pay_once(
    order_node: &Client,
    pay_node: &Client,
    token: &protocol::Token,
    device: &str,
) -> Option<(OrderId, IdempotencyKey, Receipt)> {
    let created = tokio::time::timeout(REQUEST_TIMEOUT, async {
        order_node
            .create_order(&protocol::CreateOrder {
                item_id: protocol::ItemId::parse("film-night-train").unwrap(),
                // A TV of its own each time: a TV that owns the film is not sold it again.
                device_id: protocol::DeviceId::parse(device).unwrap(),
                device_name: "Living-room TV".into(),
            })
            .await
    })
    .await
    .ok()?
    .ok()?;
    let id = created.order.id;
    let k = key();
    let paid = tokio::time::timeout(
        REQUEST_TIMEOUT,
        pay_node.pay(
            &id,
            &k,
            &pay_req("alice", PayerAuth::Session(token.clone())),
        ),
    )
    .await
    .ok()?
    .ok()?;
    Some((id, k, paid))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts PostgreSQL (COUCHPAY_TEST_PG_CLUSTER): .ci/run runs it alone with --ignored"]
async fn acknowledged_payments_survive_node_kills_and_a_postgres_crash() {
    let base = std::env::var(TEST_POSTGRES_ENV)
        .unwrap_or_else(|_| panic!("set {TEST_POSTGRES_ENV} to the test cluster's URL"));
    let cluster = std::env::var(CLUSTER_ENV)
        .unwrap_or_else(|_| panic!("set {CLUSTER_ENV} to the test cluster's data directory"));
    let pg_port = base
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("a port in the URL")
        .to_owned();
    let database = Database::Postgres(fresh_postgres_schema(base).await);
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut n = Node {
            port: free_port(),
            database: database.clone(),
            child: None,
        };
        n.start().await;
        nodes.push(n);
    }
    let clients: Vec<Client> = nodes.iter().map(|n| Client::new(n.url())).collect();
    let session = login(&clients[0], "alice", "1234").await;
    // Enough for every attempt: a refusal for want of money would prove nothing.
    clients[0]
        .top_up(
            ADMIN,
            &protocol::TopUp {
                account: session.account.clone(),
                amount: protocol::Money::new(
                    1_000_000_00,
                    protocol::Currency::parse("EUR").unwrap(),
                ),
            },
        )
        .await
        .unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let crashed_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    for w in 0..8 {
        let clients = clients.clone();
        let token = session.token.clone();
        let (acked, stop, attempts) = (acked.clone(), stop.clone(), attempts.clone());
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                attempts.fetch_add(1, Ordering::Relaxed);
                let device = format!("SN-CRASH-{w}-{i:06}");
                match pay_once(&clients[i % 2], &clients[(i + 1) % 2], &token, &device).await {
                    Some(done) => acked.lock().await.push((Instant::now(), done)),
                    None => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                i += 1;
            }
        }));
    }

    // Chaos: kill a node, let the other carry on, start it again; halfway, crash the
    // database itself.
    for round in 0..NODE_KILLS {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let victim = &mut nodes[round % 2];
        victim.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        if round == NODE_KILLS / 2 {
            cluster_script("crash", &cluster, &pg_port);
            *crashed_at.lock().unwrap() = Some(Instant::now());
        }
        victim.start().await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    for n in &mut nodes {
        n.kill();
    }

    let acked = std::mem::take(&mut *acked.lock().await);
    let attempts = attempts.load(Ordering::Relaxed);
    let crashed_at = crashed_at
        .lock()
        .unwrap()
        .expect("the database was crashed");
    let after_crash = acked.iter().filter(|(at, _)| *at > crashed_at).count();
    assert!(
        after_crash > 0,
        "no payment went through after the database came back"
    );
    let acked: Vec<_> = acked.into_iter().map(|(_, done)| done).collect();
    assert!(
        acked.len() >= 20,
        "too few payments went through to prove anything: {} of {attempts}",
        acked.len()
    );
    let acked_count = acked.len();
    let (missing, audit) = tokio::task::spawn_blocking(move || {
        let conn = server_stub::store::open_for_audit(&database).unwrap();
        let mut missing = Vec::new();
        for (id, k, receipt) in &acked {
            let found: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM payments p JOIN orders o ON o.id = p.order_id
                     WHERE p.order_id = ?1 AND p.idem_key = ?2 AND p.payer = ?3
                       AND o.status = 'paid'",
                    params![id.as_str(), k.as_str(), receipt.payer.as_str()],
                    |r| r.get(0),
                )
                .unwrap();
            if found != 1 {
                missing.push(id.to_string());
            }
        }
        (missing, server_stub::ledger::audit(&conn).unwrap())
    })
    .await
    .unwrap();
    eprintln!(
        "{acked_count} acknowledged payments of {attempts} attempts ({after_crash} after \
         the database crash), {NODE_KILLS} node kills, 1 PostgreSQL crash"
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(audit.ok, "{:?}", audit.problems);
}
