//! Server configuration: flags and environment variables (see `couchpay-server --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use protocol::ServerUrl;

use crate::db::Database;
use crate::store::{
    DEFAULT_MAX_BATCH, DEFAULT_PG_WRITERS, DEFAULT_READERS, DEFAULT_WAL_RESTART_MIB,
};
use crate::{limits, webhooks};

/// Default lifetime of an order before it expires.
pub const DEFAULT_ORDER_TTL_S: u64 = 10 * 60;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Lifetime of a session token.
pub const SESSION_TTL_S: u64 = 15 * 60;
/// How often expired orders are swept (and their events pushed).
pub const SWEEP_INTERVAL_MS: u64 = 500;

#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Address to listen on. Use 0.0.0.0:8080 (with --public-url) to serve phones on the LAN.
    #[arg(
        long,
        global = true,
        env = "COUCHPAY_BIND",
        default_value = "127.0.0.1:8080"
    )]
    pub bind: SocketAddr,
    /// Where the data lives: a SQLite file (created on first start), or a PostgreSQL
    /// database as a postgres://user:password@host:port/dbname URL. Migrated on start.
    #[arg(
        long,
        global = true,
        env = "COUCHPAY_DATABASE",
        default_value = "couchpay.db",
        hide_env_values = true
    )]
    pub database: Database,
    /// Folder holding catalog.json and posters/.
    #[arg(long, global = true, env = "COUCHPAY_ASSETS", default_value = "assets")]
    pub assets: PathBuf,
    /// The URL phones use to reach this server (goes into pay links and QR codes).
    /// Defaults to http://<bind address>.
    #[arg(long, global = true, env = "COUCHPAY_PUBLIC_URL")]
    pub public_url: Option<ServerUrl>,
    /// Seconds an order can be paid before it expires.
    #[arg(long, global = true, env = "COUCHPAY_ORDER_TTL_S", default_value_t = DEFAULT_ORDER_TTL_S)]
    pub order_ttl_s: u64,
    /// Bearer token enabling the developer endpoints (/v1/admin/*); disabled when unset.
    #[arg(
        long,
        global = true,
        env = "COUCHPAY_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Most writes committed together (group commit). 1 = one transaction per request.
    #[arg(long, global = true, env = "COUCHPAY_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// PostgreSQL: writer threads (each with its own connection) running batches side by
    /// side. SQLite always has one writer.
    #[arg(long, global = true, env = "COUCHPAY_PG_WRITERS", default_value_t = DEFAULT_PG_WRITERS)]
    pub pg_writers: usize,
    /// Database connections for reads (besides the writer connections).
    #[arg(long, global = true, env = "COUCHPAY_POOL_SIZE", default_value_t = DEFAULT_READERS)]
    pub pool_size: usize,
    /// SQLite: MiB of write-ahead log past which the log is started again from its
    /// beginning (the writer pauses a few milliseconds for it).
    #[arg(long, global = true, env = "COUCHPAY_WAL_RESTART_MIB",
          default_value_t = DEFAULT_WAL_RESTART_MIB)]
    pub wal_restart_mib: u64,
    /// Do not create the demo accounts on first start.
    #[arg(long, global = true, env = "COUCHPAY_NO_DEMO")]
    pub no_demo: bool,
    /// Milliseconds a client has to send a request's headers before its connection is closed.
    #[arg(long, global = true, env = "COUCHPAY_HEADER_READ_TIMEOUT_MS",
          default_value_t = limits::DEFAULT_HEADER_READ_TIMEOUT_MS)]
    pub header_read_timeout_ms: u64,
    /// Most open connections in total; further ones are closed at once.
    #[arg(long, global = true, env = "COUCHPAY_MAX_CONNECTIONS",
          default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Most open connections from one client address (IPv6: one /64).
    #[arg(long, global = true, env = "COUCHPAY_MAX_CONNECTIONS_PER_ADDRESS",
          default_value_t = limits::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS)]
    pub max_connections_per_address: usize,
    /// Most open event streams from one client address.
    #[arg(long, global = true, env = "COUCHPAY_MAX_STREAMS_PER_ADDRESS",
          default_value_t = limits::DEFAULT_MAX_STREAMS_PER_ADDRESS)]
    pub max_streams_per_address: usize,
    /// Let the admin API move this server's clock forward (`POST /v1/admin/clock`), so
    /// expiry can be tried without waiting. For development only; off by default.
    #[arg(long, global = true, env = "COUCHPAY_TEST_CLOCK")]
    pub test_clock: bool,
    /// Directory of device update packages and their signed index (`index.json`);
    /// default `<assets>/updates`.
    #[arg(long, global = true, env = "COUCHPAY_UPDATES")]
    pub updates: Option<PathBuf>,
    /// Merchant webhook endpoints to register on start: a JSON array of
    /// {"merchant", "url", "secret"?} (the admin API registers more).
    #[arg(long, global = true, env = "COUCHPAY_WEBHOOKS")]
    pub webhooks: Option<PathBuf>,
    /// Milliseconds a webhook endpoint has to answer one delivery.
    #[arg(long, global = true, env = "COUCHPAY_WEBHOOK_TIMEOUT_MS",
          default_value_t = webhooks::DEFAULT_TIMEOUT_MS)]
    pub webhook_timeout_ms: u64,
    /// Milliseconds before a failed webhook delivery is first tried again; the wait
    /// doubles with each attempt (at most an hour), for a day.
    #[arg(long, global = true, env = "COUCHPAY_WEBHOOK_RETRY_BASE_MS",
          default_value_t = webhooks::DEFAULT_RETRY_BASE_MS)]
    pub webhook_retry_base_ms: u64,
}

impl Config {
    /// The defaults, for a database at `database` (tests and tools).
    pub fn with_database(database: impl Into<Database>) -> Self {
        Self {
            bind: "127.0.0.1:8080".parse().expect("a literal address"),
            database: database.into(),
            assets: PathBuf::from("assets"),
            public_url: None,
            order_ttl_s: DEFAULT_ORDER_TTL_S,
            admin_token: None,
            max_batch: DEFAULT_MAX_BATCH,
            pg_writers: DEFAULT_PG_WRITERS,
            pool_size: DEFAULT_READERS,
            wal_restart_mib: DEFAULT_WAL_RESTART_MIB,
            no_demo: false,
            header_read_timeout_ms: limits::DEFAULT_HEADER_READ_TIMEOUT_MS,
            max_connections: limits::DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: limits::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_streams_per_address: limits::DEFAULT_MAX_STREAMS_PER_ADDRESS,
            test_clock: false,
            updates: None,
            webhooks: None,
            webhook_timeout_ms: webhooks::DEFAULT_TIMEOUT_MS,
            webhook_retry_base_ms: webhooks::DEFAULT_RETRY_BASE_MS,
        }
    }
}

impl Config {
    /// Where the update packages are.
    pub fn updates_dir(&self) -> PathBuf {
        self.updates
            .clone()
            .unwrap_or_else(|| self.assets.join("updates"))
    }

    /// The public URL, or an error if it cannot be derived from the bind address.
    pub fn public_url(&self, bound: SocketAddr) -> anyhow::Result<ServerUrl> {
        if let Some(u) = &self.public_url {
            return Ok(u.clone());
        }
        anyhow::ensure!(
            !bound.ip().is_unspecified(),
            "listening on {bound}: pass --public-url http://<this machine's LAN address>:{} \
             so pay links point somewhere phones can reach",
            bound.port()
        );
        Ok(ServerUrl::parse(&format!("http://{bound}"))?)
    }
}
