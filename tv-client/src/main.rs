//! `couchpay-tv`: the Couchpay TV app. Parses the configuration, then hands over to the
//! library's state machine, runtime and Slint window.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use protocol::{DeviceId, ServerUrl};
use slint::ComponentHandle;
use tv_client::announce::{Announcer, Interfaces};
use tv_client::ble::BleAnnouncer;
use tv_client::runtime::{HttpBackend, Runtime, Sink};
use tv_client::slint_ui::AppWindow;
use tv_client::state::{App, Input};
use tv_client::ui::Shell;

/// How often the clock ticks into the state machine (countdowns, retries, polling).
const TICK_INTERVAL_MS: u64 = 250;
/// How often the wall clock is read into the state machine (memberships end by date).
const WALL_CLOCK_EVERY_MS: u64 = 60_000;
/// Worker threads for network I/O; the UI has its own thread.
const IO_THREADS: usize = 2;

#[derive(Debug, Parser)]
#[command(
    name = "couchpay-tv",
    version,
    about = "Couchpay TV app: pay on the TV with your phone"
)]
struct Args {
    /// The Couchpay server.
    #[arg(long, env = "COUCHPAY_SERVER", default_value = "http://127.0.0.1:8080")]
    server: ServerUrl,
    /// This TV's device id (serial number); by default the one in the config file.
    #[arg(long, env = "COUCHPAY_DEVICE_ID")]
    device_id: Option<DeviceId>,
    /// This TV's friendly name, shown on the phone; by default the one in the config file.
    #[arg(long, env = "COUCHPAY_TV_NAME")]
    tv_name: Option<String>,
    /// Config file holding the device id and name, created on first run
    /// [default: $XDG_CONFIG_HOME/couchpay/tv.json].
    #[arg(long, env = "COUCHPAY_TV_CONFIG")]
    config: Option<PathBuf>,
    /// Announce orders over mDNS only on these interfaces (repeat or comma-separate);
    /// all interfaces when absent or `all`. `--mdns-interface lo` keeps it on this machine.
    #[arg(
        long = "mdns-interface",
        env = "COUCHPAY_MDNS_INTERFACES",
        value_delimiter = ','
    )]
    mdns_interfaces: Vec<String>,
    /// Do not announce orders on the local network at all.
    #[arg(long, env = "COUCHPAY_NO_MDNS")]
    no_mdns: bool,
    /// Do not offer orders over Bluetooth LE.
    #[arg(long, env = "COUCHPAY_NO_BLE")]
    no_ble: bool,
    /// Advertise on this Bluetooth adapter (e.g. `hci0`); the first one when absent.
    #[arg(long, env = "COUCHPAY_BLE_ADAPTER")]
    ble_adapter: Option<String>,
    /// The country calling code prefilled on the phone-number pad, e.g. `44`
    /// [default: from --country, else the locale's region, else 1].
    #[arg(long, env = "COUCHPAY_PHONE_COUNTRY_CODE")]
    phone_country_code: Option<String>,
    /// The TV's country (ISO 3166, e.g. `GB`): sets the pad's country code.
    #[arg(long, env = "COUCHPAY_COUNTRY")]
    country: Option<String>,
    /// This box's device credential (64 hex digits, flashed at the factory): device
    /// services (the Device menu) need it. Without it the menu says they are not set up.
    #[arg(long, env = "COUCHPAY_DEVICE_CREDENTIAL", hide_env_values = true)]
    device_credential: Option<String>,
    /// The vendor's Ed25519 public key (64 hex digits) update packages must be signed
    /// with [default: the demo vendor's key].
    #[arg(long, env = "COUCHPAY_UPDATE_KEY")]
    update_key: Option<String>,
    /// Start full screen, as on a real TV.
    #[arg(long)]
    fullscreen: bool,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,mdns_sd=warn".into()),
        )
        .init();
    let args = Args::parse();

    let config_path = args.config.clone().or_else(tv_client::config::default_path);
    let identity = tv_client::config::resolve(
        config_path.as_deref(),
        args.device_id.clone(),
        args.tv_name.as_deref(),
    )
    .context("setting up the TV's identity")?;
    tracing::info!(device = %identity.device_id, name = %identity.tv_name, server = %args.server, "starting");

    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(IO_THREADS)
        .enable_all()
        .build()
        .context("starting the network runtime")?;

    let announcer = if args.no_mdns {
        Err("turned off".to_owned())
    } else {
        let interfaces = Interfaces::from_names(&args.mdns_interfaces);
        tracing::info!(?interfaces, "announcing orders over mDNS");
        Announcer::new(&interfaces).map_err(|e| {
            tracing::warn!(error = %e, "orders will not be announced on the network");
            e.to_string()
        })
    };

    let window = AppWindow::new().context("opening the TV window")?;
    if args.fullscreen {
        window.window().set_fullscreen(true);
    }

    // Answers from the network threads are handed to the UI thread's event loop.
    thread_local! {
        static SHELL: RefCell<Option<Rc<RefCell<Shell<HttpBackend>>>>> = const { RefCell::new(None) };
    }
    let sink: Sink = Arc::new(|input: Input| {
        let queued = slint::invoke_from_event_loop(move || {
            SHELL.with(|s| {
                if let Some(shell) = s.borrow().as_ref() {
                    shell.borrow_mut().dispatch(input);
                }
            });
        });
        if let Err(e) = queued {
            tracing::debug!(error = %e, "UI already closed");
        }
    });

    let start = Instant::now();
    let (mut app, initial) = App::init(identity, 0);
    let country_code = tv_client::config::phone_country_code(
        args.phone_country_code.as_deref(),
        args.country.as_deref(),
        |var| std::env::var(var).ok(),
    );
    app.set_phone_country_code(&country_code)
        .map_err(anyhow::Error::msg)
        .context("--phone-country-code")?;
    app.handle(Input::WallClock {
        unix_ms: unix_now_ms(),
    });
    let credential = args
        .device_credential
        .as_deref()
        .map(|c| protocol::Token::parse(c.trim()))
        .transpose()
        .map_err(|_| anyhow::anyhow!("--device-credential: not 64 hex digits"))?;
    app.set_device_credential(credential);
    let update_key = match args.update_key.as_deref() {
        Some(k) => protocol::UpdateKey::parse(k.trim())
            .map_err(|e| anyhow::anyhow!("--update-key: {e}"))?,
        None => protocol::UpdateKey::demo(),
    };
    let presence = protocol::TvPresence::new(
        args.server.clone(),
        &app.identity.tv_name,
        app.identity.device_id.clone(),
    );
    let runtime = Runtime::new(
        HttpBackend::new(args.server),
        io.handle().clone(),
        sink,
        announcer,
    )
    .with_presence(presence)
    .with_update_key(update_key);
    let runtime = if args.no_ble {
        runtime
    } else {
        let adapter = args.ble_adapter.clone();
        runtime.with_ble(BleAnnouncer::start_opening(io.handle(), async move {
            tv_client::ble::open_default(adapter.as_deref()).await
        }))
    };
    let shell = Shell::start(window.clone_strong(), app, initial, runtime);
    SHELL.with(|s| *s.borrow_mut() = Some(shell.clone()));

    let timer = slint::Timer::default();
    let ticking = Rc::downgrade(&shell);
    timer.start(
        slint::TimerMode::Repeated,
        Duration::from_millis(TICK_INTERVAL_MS),
        move || {
            if let Some(shell) = ticking.upgrade() {
                let now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                let mut shell = shell.borrow_mut();
                shell.dispatch(Input::Tick { now_ms });
                if now_ms % WALL_CLOCK_EVERY_MS < TICK_INTERVAL_MS {
                    shell.dispatch(Input::WallClock {
                        unix_ms: unix_now_ms(),
                    });
                }
            }
        },
    );

    // SIGINT/SIGTERM end the event loop like closing the window does, so the mDNS
    // goodbye for an order on screen still goes out before the process exits.
    io.spawn(async {
        shutdown_signal().await;
        if let Err(e) = slint::quit_event_loop() {
            tracing::debug!(error = %e, "event loop already gone");
        }
    });

    window.run().context("running the TV window")?;
    // Withdraw any announcement before the I/O threads go away.
    SHELL.with(|s| s.borrow_mut().take());
    drop(shell);
    io.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// The system clock in Unix milliseconds (0 if it is before 1970).
fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    // Without a signal handler, Ctrl-C alone (or closing the window) ends the app.
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::warn!(error = %e, "cannot listen for Ctrl-C");
        std::future::pending::<()>().await;
    }
}
