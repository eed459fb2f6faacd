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
        let mut config = Config {
            bind: "127.0.0.1:0".parse().expect("loopback address"),
            assets: assets_dir(),
            admin_token: Some(TEST_ADMIN_TOKEN.into()),
            ..Config::with_database(dir.path().join("couchpay.db"))
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

    /// Expires due orders now (instead of waiting for the sweeper) and pushes their events.
    pub async fn sweep_expired(&self) {
        crate::orders::sweep_expired(&self.server.state)
            .await
            .expect("sweep");
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
