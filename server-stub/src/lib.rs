//! Couchpay's stub payment server: orders, a double-entry ledger on SQLite, sessions,
//! and server-sent events for TVs and companions.
//!
//! The binary only parses [`Config`] and calls [`serve`]; tests call [`testing::TestServer`]
//! or build the router with [`app`] and drive it in-process.

pub mod accounts;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod conn;
pub mod console;
pub mod db;
pub mod devices;
pub mod error;
pub mod events;
pub mod extract;
pub mod ledger;
pub mod limits;
pub mod merchants;
pub mod middleware;
pub mod offers;
pub mod openapi;
pub mod orders;
pub mod orderset;
pub mod outbox;
pub mod packetpage;
pub mod packets;
pub mod paging;
pub mod paypage;
pub mod payset;
pub mod phone;
pub mod pin;
pub mod ratelimit;
pub mod seed;
pub mod sessions;
pub mod sms;
pub mod sse;
pub mod store;
pub mod testclock;
pub mod testing;
pub mod voucherpage;
pub mod vouchers;
pub mod web;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use protocol::ServerUrl;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use clock::{Clock, ManualClock, SystemClock, TestClock};
pub use config::Config;
use events::Hub;
use ratelimit::RateLimiter;
use store::{Store, StoreOptions};

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub store: Store,
    pub hub: Arc<Hub>,
    pub catalog: catalog::Store,
    /// Device update packages (SPEC D4).
    pub updates: devices::Updates,
    pub config: Config,
    pub public_url: ServerUrl,
    pub clock: Arc<dyn Clock>,
    pub code_limiter: RateLimiter,
    /// Serialises PIN checks per account (see `pin`).
    pub pin_locks: pin::PinLocks,
    /// Signs the pay page's CSRF cookies; shared by every node through the database.
    pub csrf_key: cookie::Key,
    /// Open event streams per client address.
    pub stream_slots: Arc<limits::PerAddress>,
    /// The SMS gateway (the stub's outbox).
    pub sms: Arc<dyn sms::SmsSender>,
    /// Flips to `true` on shutdown; event streams end on it.
    pub shutdown: watch::Receiver<bool>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Opens the database, loads the catalog and seeds first-start data.
    pub async fn open(
        config: Config,
        public_url: ServerUrl,
        clock: Arc<dyn Clock>,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Self> {
        let catalog = catalog::Store::load(&config.assets.join("catalog.json"))?;
        let updates = devices::Updates::load(&config.updates_dir())?;
        let hub = Arc::new(Hub::new());
        let store = {
            let (database, hub, clock) = (config.database.clone(), hub.clone(), clock.clone());
            let options = StoreOptions {
                max_batch: config.max_batch,
                pg_writers: config.pg_writers,
                readers: config.pool_size,
                wal_restart_mib: config.wal_restart_mib,
            };
            // Connecting and migrating block (the PostgreSQL client is synchronous).
            tokio::task::spawn_blocking(move || Store::open(&database, &options, hub, clock))
                .await?
                .with_context(|| format!("opening database {}", config.database))?
        };
        seed::run(&store, &catalog, !config.no_demo, clock.now_ms()).await?;
        let csrf_key = cookie::Key::from(&store.secret("csrf").await?);
        let stream_slots =
            limits::PerAddress::new(config.max_streams_per_address, events::MAX_SUBSCRIBERS);
        let state = Self(Arc::new(Inner {
            hub,
            catalog,
            updates,
            config,
            public_url,
            clock,
            pin_locks: pin::PinLocks::default(),
            csrf_key,
            code_limiter: RateLimiter::new(
                ratelimit::CODE_LOOKUP_BURST,
                ratelimit::CODE_LOOKUPS_PER_MIN,
            ),
            stream_slots,
            sms: Arc::new(sms::OutboxSms {
                store: store.clone(),
            }),
            store,
            shutdown,
        }));
        if !state.config.no_demo {
            devices::seed_demo(&state, state.clock.now_ms()).await?;
        }
        if let Some(path) = state.config.webhooks.clone() {
            webhooks::load_config(&state, &path).await?;
        }
        Ok(state)
    }
}

/// The whole HTTP API.
pub fn app(state: AppState) -> Router {
    let (router, _document) = openapi::api().split_for_parts();
    router
        .fallback(web::not_found)
        .layer(axum::middleware::from_fn(middleware::edge))
        .layer(DefaultBodyLimit::max(config::MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` completes, then drains: event streams
/// end, in-flight requests finish, the writer commits what it has and stops.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    stop_streams: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let sweeper = tokio::spawn(sweep_loop(state.clone()));
    let webhooks = tokio::spawn(webhooks::delivery_loop(state.clone()));
    let limits = conn::ConnLimits {
        header_read_timeout: Duration::from_millis(state.config.header_read_timeout_ms),
        max_connections: state.config.max_connections,
        max_connections_per_address: state.config.max_connections_per_address,
    };
    let router = app(state);
    let signal = async move {
        shutdown.await;
        let _ = stop_streams.send(true);
    };
    conn::serve(listener, router, limits, signal).await;
    sweeper.abort();
    webhooks.abort();
    Ok(())
}

/// Expires orders, vouchers and red packets on time (pushing their events) and prunes idle event
/// channels.
async fn sweep_loop(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_millis(config::SWEEP_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = orders::sweep_expired(&state).await {
            tracing::warn!(error = %e, "expiry sweep failed");
        }
        if let Err(e) = vouchers::sweep_expired(&state).await {
            tracing::warn!(error = %e, "voucher expiry sweep failed");
        }
        if let Err(e) = packets::sweep_expired(&state).await {
            tracing::warn!(error = %e, "red packet expiry sweep failed");
        }
        state.hub.prune();
    }
}

/// A server started by [`serve`].
#[derive(Debug)]
pub struct RunningServer {
    pub addr: SocketAddr,
    pub url: ServerUrl,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Shuts down gracefully and waits for the server task.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        (&mut self.task).await?
    }
}

/// Binds `config.bind`, opens everything and serves in a background task.
pub async fn serve(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<RunningServer> {
    let listener = match TcpListener::bind(config.bind).await {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => anyhow::bail!(
            "{} is already in use: is another Couchpay server running? Stop it, or pass --bind \
             with another port",
            config.bind
        ),
        Err(e) => return Err(e).with_context(|| format!("binding {}", config.bind)),
    };
    let addr = listener.local_addr()?;
    let url = config.public_url(addr)?;
    let (streams_tx, streams_rx) = watch::channel(false);
    let state = AppState::open(config, url.clone(), clock, streams_rx).await?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run(
        listener,
        state.clone(),
        async move {
            let _ = stop_rx.await;
        },
        streams_tx,
    ));
    Ok(RunningServer {
        addr,
        url,
        state,
        stop: Some(stop_tx),
        task,
    })
}
