//! A real server on `127.0.0.1:0` with a fresh database and a manual clock, for tests
//! of this crate and of the TV and companion.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use protocol::ServerUrl;
use protocol::client::Client;

use crate::{Config, ManualClock, RunningServer, serve};

/// Admin token of test servers.
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token";

/// When set, to a `postgres://` URL of a database the tests may create schemas in, every
/// test server runs on PostgreSQL (a fresh schema each) instead of a fresh SQLite file.
/// Set but unreachable is a failure, not a skip.
pub const TEST_POSTGRES_ENV: &str = "COUCHPAY_TEST_POSTGRES";

/// The database of a new test server: a fresh SQLite file in `dir`, or, when
/// [`TEST_POSTGRES_ENV`] is set, a fresh schema on that PostgreSQL server.
pub async fn fresh_database(dir: &std::path::Path) -> crate::db::Database {
    match std::env::var(TEST_POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => {
            crate::db::Database::Postgres(fresh_postgres_schema(url).await)
        }
        _ => crate::db::Database::Sqlite(dir.join("couchpay.db")),
    }
}

/// Creates an empty schema on the PostgreSQL server at `url` and returns a URL whose
/// connections use it (through the `search_path` option).
pub async fn fresh_postgres_schema(url: String) -> String {
    // The PostgreSQL client blocks: not on the runtime's threads.
    tokio::task::spawn_blocking(move || create_postgres_schema(&url))
        .await
        .expect("create a test schema")
}

fn create_postgres_schema(url: &str) -> String {
    let schema: String = protocol::random_bytes::<8>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let schema = format!("t_{schema}");
    let conn = crate::db::Connection::postgres(url).unwrap_or_else(|e| {
        panic!("{TEST_POSTGRES_ENV} is set, but PostgreSQL cannot be reached there: {e}")
    });
    conn.execute_batch(&format!("CREATE SCHEMA {schema}"))
        .expect("create a test schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

/// The workspace's `assets/` folder.
pub fn assets_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../assets"))
}

#[derive(Debug)]
pub struct TestServer {
    pub url: ServerUrl,
    pub admin_token: String,
    pub clock: Arc<ManualClock>,
    pub server: RunningServer,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with demo data on a fresh database.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Like [`start`](Self::start), after `tweak` adjusts the configuration.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = fresh_database(dir.path()).await;
        Self::start_on(dir, database, tweak).await
    }

    /// `n` server nodes on one fresh PostgreSQL schema, as a cluster behind a load
    /// balancer would run: each has its own writer, readers, outbox relay, HTTP listener
    /// and clock. They start all at once, as a cluster's nodes do (one of them seeds the
    /// demo data).
    ///
    /// Needs [`TEST_POSTGRES_ENV`]: panics when it is not set.
    pub async fn start_nodes(n: usize) -> Vec<Self> {
        let url = match std::env::var(TEST_POSTGRES_ENV) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "several nodes need a shared PostgreSQL database: set {TEST_POSTGRES_ENV} \
                 (tools/pg-test-cluster.sh start DIR prints a URL)"
            ),
        };
        Self::start_nodes_on(url, n, |_| {}).await
    }

    /// Like [`start_nodes`](Self::start_nodes), on a fresh schema of the PostgreSQL
    /// server at `url`, after `tweak` adjusts each node's configuration.
    pub async fn start_nodes_on(url: String, n: usize, tweak: impl Fn(&mut Config)) -> Vec<Self> {
        let database = crate::db::Database::Postgres(fresh_postgres_schema(url).await);
        let starting = (0..n).map(|_| {
            let dir = tempfile::tempdir().expect("temp dir");
            Self::start_on(dir, database.clone(), &tweak)
        });
        futures_util::future::join_all(starting).await
    }

    async fn start_on(
        dir: tempfile::TempDir,
        database: crate::db::Database,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config {
            bind: "127.0.0.1:0".parse().expect("loopback address"),
            assets: assets_dir(),
            admin_token: Some(TEST_ADMIN_TOKEN.into()),
            ..Config::with_database(database)
        };
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new());
        let server = serve(config, clock.clone())
            .await
            .expect("test server starts");
        Self {
            url: server.url.clone(),
            admin_token: TEST_ADMIN_TOKEN.into(),
            clock,
            server,
            _dir: dir,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(self.url.clone())
    }

    /// Moves the server's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Expires due orders, vouchers and red packets now (instead of waiting for the sweeper) and
    /// pushes their events.
    pub async fn sweep_expired(&self) {
        crate::orders::sweep_expired(&self.server.state)
            .await
            .expect("sweep");
        crate::vouchers::sweep_expired(&self.server.state)
            .await
            .expect("voucher sweep");
        crate::packets::sweep_expired(&self.server.state)
            .await
            .expect("red packet sweep");
    }

    /// `n` EUR wallets `{prefix}-{i}` with `balance_minor` each, signed in: made in one
    /// write, without an argon2 hash per account or login, for races with many parties.
    pub async fn wallets(
        &self,
        prefix: &str,
        n: usize,
        balance_minor: u64,
    ) -> Vec<protocol::Session> {
        let now = self.clock_now();
        let prefix = prefix.to_owned();
        self.server
            .state
            .store
            .write(move |conn, _| {
                let eur = protocol::Currency::parse("EUR").expect("EUR");
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    let id = protocol::AccountId::parse(&format!("{prefix}-{i}"))
                        .map_err(crate::error::ApiError::internal)?;
                    crate::ledger::create_account(
                        conn,
                        id.as_str(),
                        crate::ledger::AccountKind::Wallet,
                        None,
                        &format!("Wallet {i}"),
                        eur,
                        None,
                        now,
                    )?;
                    if balance_minor > 0 {
                        crate::ledger::top_up(
                            conn,
                            id.as_str(),
                            protocol::Money::new(balance_minor, eur),
                            now,
                        )?;
                    }
                    let token = protocol::Token::random();
                    let expires = now + crate::config::SESSION_TTL_S as i64 * 1000;
                    crate::sessions::insert_session(
                        conn,
                        &crate::sessions::hash_token(&token),
                        &id,
                        expires,
                    )?;
                    out.push(protocol::Session {
                        account: id,
                        token,
                        expires_at_ms: expires,
                    });
                }
                Ok(out)
            })
            .await
            .expect("create wallets")
    }

    /// The server clock's current time in Unix milliseconds.
    pub fn clock_now(&self) -> i64 {
        crate::Clock::now_ms(&*self.clock)
    }

    /// The delivery address stored on an order (what the merchant receives).
    pub async fn delivery_address(&self, id: &protocol::OrderId) -> Option<String> {
        let id = id.clone();
        self.server
            .state
            .store
            .read(move |conn| {
                Ok(crate::orders::load_order(conn, &id)?.and_then(|o| o.delivery_address))
            })
            .await
            .expect("read order")
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("clean shutdown");
    }
}
