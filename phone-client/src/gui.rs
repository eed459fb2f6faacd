//! The companion's Slint window (feature `gui`): Scan, Nearby, Enter code and Wallet
//! tabs over the same core as the CLI. I/O runs on a tokio runtime and a discovery
//! thread; results are posted back to the UI thread with `upgrade_in_event_loop`.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{AccountId, DiscoveryRecord, PayLink, Pin, Receipt, ServerUrl};
use slint::{ComponentHandle, ModelRc, SharedString, VecModel, Weak};

use crate::companion::{Companion, CompanionError, Confirmation, Credentials, OrderRef};
use crate::decode::{Decoder, picture_from_path};
use crate::discovery::{Browser, IgnoreFn, Interfaces, NearbyEvent};
use crate::frames::{self, FolderSource, FrameSource, ScanOptions};
use crate::state::StateStore;

/// The UI compiled from `ui/companion.slint` by `build.rs`. Public so that headless
/// tests can drive the window the way a person would: through its callbacks, reading
/// what it shows.
#[path = "gui_ui.rs"]
pub mod ui;
use ui::{CompanionWindow, ConfirmView, NearbyRow, Phone, ReceiptRow};

/// How long a scan from the window runs before giving up, in seconds.
pub const GUI_SCAN_TIMEOUT_S: u64 = 60;
/// How often the discovery thread checks for shutdown, in milliseconds.
const DISCOVERY_POLL_MS: u64 = 500;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuiError {
    #[error("cannot open the window: {0}")]
    Window(#[from] slint::PlatformError),
    #[error(transparent)]
    Companion(#[from] CompanionError),
    #[error("cannot start the I/O runtime: {0}")]
    Runtime(#[from] std::io::Error),
}

/// What the window needs to start.
#[derive(Debug, Clone)]
pub struct GuiOptions {
    pub servers: Vec<ServerUrl>,
    pub state: PathBuf,
    pub interfaces: Interfaces,
    /// A folder offered as the virtual camera (pre-filled in the Scan tab).
    pub frames: Option<PathBuf>,
}

/// Shared between the UI callbacks and the background tasks.
struct Ctx {
    window: Weak<CompanionWindow>,
    companion: Arc<tokio::sync::Mutex<Companion>>,
    nearby: Arc<Mutex<Vec<DiscoveryRecord>>>,
    pending: Arc<Mutex<Option<Confirmation>>>,
    io: tokio::runtime::Handle,
}

impl Ctx {
    fn clone_ctx(&self) -> Self {
        Self {
            window: self.window.clone(),
            companion: self.companion.clone(),
            nearby: self.nearby.clone(),
            pending: self.pending.clone(),
            io: self.io.clone(),
        }
    }

    /// Sets the status line (and clears or sets the error) from any thread.
    fn status(&self, busy: bool, status: impl Into<String>, error: impl Into<String>) {
        let (status, error) = (status.into(), error.into());
        let _ = self.window.upgrade_in_event_loop(move |w| {
            let p = w.global::<Phone>();
            p.set_busy(busy);
            p.set_status(status.into());
            p.set_error(error.into());
        });
    }

    fn fail(&self, e: impl std::fmt::Display) {
        self.status(false, "", e.to_string());
    }

    /// Fetches the order behind `r` and shows the confirmation sheet.
    fn confirm(&self, r: OrderRef) {
        let ctx = self.clone_ctx();
        self.status(true, "Fetching the order from the server…", "");
        self.io.spawn(async move {
            let fetched = ctx.companion.lock().await.fetch(&r).await;
            match fetched {
                Ok(c) => {
                    let view = ConfirmView {
                        item: c.order.item.title.clone().into(),
                        amount: c.order.amount.to_string().into(),
                        merchant: c.order.merchant.name.clone().into(),
                        tv: c.order.device.name.clone().into(),
                        code: c.order.short_code.display().into(),
                        server: c.server.to_string().into(),
                        needs_address: c.needs_address(),
                    };
                    *ctx.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
                    ctx.status(false, "Check the order matches the TV, then pay.", "");
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Phone>();
                        p.set_confirm(view);
                        p.set_confirming(true);
                    });
                }
                Err(e) => ctx.fail(e),
            }
        });
    }
}

fn receipt_row(r: &Receipt) -> ReceiptRow {
    ReceiptRow {
        title: r.item.title.clone().into(),
        amount: r.amount.to_string().into(),
        detail: format!(
            "{} · TV {} · {}",
            r.merchant.name, r.device.name, r.payment_id
        )
        .into(),
    }
}

/// Opens the companion window and runs until it is closed.
pub fn run(options: GuiOptions) -> Result<(), GuiError> {
    open(options)?.run()
}

/// The companion window with its I/O runtime and discovery thread, not yet running.
pub struct Gui {
    /// The window; its `Phone` global holds what the screen shows.
    pub window: CompanionWindow,
    io: tokio::runtime::Runtime,
    quit: Arc<AtomicBool>,
    discovery: std::thread::JoinHandle<()>,
}

impl std::fmt::Debug for Gui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gui").finish_non_exhaustive()
    }
}

impl Gui {
    /// Shows the window and runs the event loop until the window is closed.
    pub fn run(self) -> Result<(), GuiError> {
        self.window.run()?;
        self.shutdown();
        Ok(())
    }

    /// Stops discovery and the I/O runtime (the window is left to the caller's loop).
    pub fn shutdown(self) {
        self.quit.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.discovery.join();
        self.io.shutdown_background();
    }
}

/// Builds the window and wires its callbacks to the companion core; starts discovery.
pub fn open(options: GuiOptions) -> Result<Gui, GuiError> {
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let store = StateStore::open(&options.state).map_err(CompanionError::from)?;
    let account = store.get().account.clone();
    let logged_in = options.servers.first().is_some_and(|s| {
        store
            .get()
            .session(s, crate::companion::session_deadline())
            .is_some()
    });
    let companion = Companion::new(options.servers.clone(), store)?;
    let paid: Vec<_> = companion.state().get().paid.iter().cloned().collect();

    let window = CompanionWindow::new()?;
    let phone = window.global::<Phone>();
    phone.set_camera_available(cfg!(feature = "camera"));
    phone.set_account(account.map(|a| a.to_string()).unwrap_or_default().into());
    phone.set_logged_in(logged_in);
    if let Some(f) = &options.frames {
        phone.set_frames_folder(f.display().to_string().into());
    }
    phone.set_status("Scan the TV's QR code, pick a TV nearby, or type its code.".into());
    phone.set_nearby(ModelRc::new(VecModel::<NearbyRow>::default()));
    phone.set_receipts(ModelRc::new(VecModel::<ReceiptRow>::default()));

    let ctx = Rc::new(Ctx {
        window: window.as_weak(),
        companion: Arc::new(tokio::sync::Mutex::new(companion)),
        nearby: Arc::new(Mutex::new(Vec::new())),
        pending: Arc::new(Mutex::new(None)),
        io: io.handle().clone(),
    });

    // Nearby: a discovery thread feeds the list for as long as the window is open.
    let quit = Arc::new(AtomicBool::new(false));
    let discovery = {
        let ctx = ctx.clone_ctx();
        let quit = quit.clone();
        let trusted = options.servers.clone();
        let interfaces = options.interfaces.clone();
        std::thread::spawn(move || {
            let ignore: IgnoreFn = Box::new(move |r| {
                paid.iter()
                    .any(|p| p.server == r.server && p.order == r.order)
            });
            let mut browser = match Browser::start(&interfaces, trusted, ignore) {
                Ok(b) => b,
                Err(e) => return ctx.fail(e),
            };
            // BLE joins the same Nearby list; without a radio it logs one line and mDNS goes on.
            if std::env::var_os("COUCHPAY_NO_BLE").is_none() {
                let adapter = std::env::var("COUCHPAY_BLE_ADAPTER").ok();
                browser = browser.with_ble(crate::ble::BleScanner::start(&ctx.io, async move {
                    crate::ble::BtleplugCentral::open(adapter.as_deref()).await
                }));
            }
            while !quit.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(ev) = browser.next_event(Duration::from_millis(DISCOVERY_POLL_MS)) else {
                    continue;
                };
                if let NearbyEvent::Refused { fullname, reason } = &ev {
                    tracing::info!("ignoring {fullname}: {reason}");
                    continue;
                }
                let records: Vec<DiscoveryRecord> =
                    browser.nearby().map(|n| n.record.clone()).collect();
                *ctx.nearby.lock().unwrap_or_else(|p| p.into_inner()) = records.clone();
                let _ = ctx.window.upgrade_in_event_loop(move |w| {
                    let rows: Vec<NearbyRow> = records
                        .iter()
                        .map(|r| NearbyRow {
                            tv: r.tv_name.clone().into(),
                            item: r.item.clone().into(),
                            amount: r.amount.to_string().into(),
                            code: r.short_code.display().into(),
                        })
                        .collect();
                    w.global::<Phone>()
                        .set_nearby(ModelRc::new(VecModel::from(rows)));
                });
            }
            browser.stop();
        })
    };

    let c = ctx.clone();
    phone.on_pick_nearby(move |i| {
        let record = c
            .nearby
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(i as usize)
            .cloned();
        if let Some(r) = record {
            c.confirm(OrderRef::Discovered(r));
        }
    });

    let c = ctx.clone();
    phone.on_lookup_code(move |text| match OrderRef::parse_input(text.as_str()) {
        Ok(r) => c.confirm(r),
        Err(e) => c.fail(e),
    });

    let c = ctx.clone();
    phone.on_decode_picture(move |path| {
        let ctx = c.clone_ctx();
        ctx.status(true, "Decoding the picture…", "");
        let path = PathBuf::from(path.as_str());
        c.io.spawn_blocking(move || {
            let frame = match picture_from_path(&path) {
                Ok(f) => f,
                Err(e) => return ctx.fail(e),
            };
            let report = Decoder::default().decode(&frame, &|t| PayLink::parse(t).is_ok());
            match report.text.as_deref().map(PayLink::parse) {
                Some(Ok(link)) => ctx.confirm(OrderRef::Link(link)),
                _ => ctx.fail("No Couchpay QR code found in that picture."),
            }
        });
    });

    let start_scan = {
        let c = ctx.clone();
        move |source: Result<Box<dyn FrameSource>, frames::FrameError>| {
            let ctx = c.clone_ctx();
            let source = match source {
                Ok(s) => s,
                Err(e) => return ctx.fail(e),
            };
            ctx.status(true, format!("Scanning {}…", source.describe()), "");
            c.io.spawn_blocking(move || {
                let options = ScanOptions {
                    timeout: Duration::from_secs(GUI_SCAN_TIMEOUT_S),
                    ..ScanOptions::default()
                };
                let hit = frames::scan(
                    source,
                    &Decoder::default(),
                    crate::companion::accept_pay_link(),
                    &options,
                    &AtomicBool::new(false),
                    |p| {
                        ctx.status(
                            true,
                            format!(
                                "Scanning… {} frames, {} decoded, {:.1} s",
                                p.frames_captured,
                                p.frames_decoded,
                                p.elapsed.as_secs_f32()
                            ),
                            "",
                        )
                    },
                );
                match hit.map(|h| PayLink::parse(&h.text)) {
                    Ok(Ok(link)) => ctx.confirm(OrderRef::Link(link)),
                    Ok(Err(e)) => ctx.fail(e),
                    Err(e) => ctx.fail(e),
                }
            });
        }
    };
    let scan = start_scan.clone();
    phone.on_scan_camera(move || scan(frames::open_camera(0)));
    phone.on_scan_folder(move |dir| {
        start_scan(
            FolderSource::open(std::path::Path::new(dir.as_str()))
                .map(|s| Box::new(s) as Box<dyn FrameSource>),
        )
    });

    let c = ctx.clone();
    phone.on_cancel_confirm(move || {
        *c.pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if let Some(w) = c.window.upgrade() {
            w.global::<Phone>().set_confirming(false);
        }
        c.status(false, "Not paid.", "");
    });

    let c = ctx.clone();
    phone.on_pay(move |account, pin, address| {
        let Some(confirmation) = c.pending.lock().unwrap_or_else(|p| p.into_inner()).clone() else {
            return;
        };
        let credentials = if pin.is_empty() {
            Credentials::Session
        } else {
            match (AccountId::parse(account.trim()), Pin::parse(pin.as_str())) {
                (Ok(account), Ok(pin)) => Credentials::Pin { account, pin },
                (Err(e), _) | (_, Err(e)) => return c.fail(e),
            }
        };
        let address = Some(address.to_string()).filter(|a| !a.trim().is_empty());
        let ctx = c.clone_ctx();
        ctx.status(true, "Paying…", "");
        c.io.spawn(async move {
            let paid = ctx
                .companion
                .lock()
                .await
                .pay(&confirmation, &credentials, address)
                .await;
            match paid {
                Ok(r) => {
                    ctx.status(
                        false,
                        format!("Paid {} for {}.", r.amount, r.item.title),
                        "",
                    );
                    let row = receipt_row(&r);
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Phone>();
                        p.set_confirming(false);
                        p.set_tab(3);
                        let mut rows: Vec<ReceiptRow> = vec![row];
                        rows.extend(slint::Model::iter(&p.get_receipts()));
                        p.set_receipts(ModelRc::new(VecModel::from(rows)));
                    });
                }
                Err(e) => ctx.fail(e),
            }
        });
    });

    let c = ctx.clone();
    let first = options.servers.first().cloned();
    phone.on_login(move |account, pin| {
        let (account, pin) = match (AccountId::parse(account.trim()), Pin::parse(pin.as_str())) {
            (Ok(a), Ok(p)) => (a, p),
            (Err(e), _) | (_, Err(e)) => return c.fail(e),
        };
        let ctx = c.clone_ctx();
        let server = first.clone();
        ctx.status(true, "Logging in…", "");
        c.io.spawn(async move {
            let mut companion = ctx.companion.lock().await;
            match companion.login(server.as_ref(), account.clone(), pin).await {
                Ok(s) => {
                    let receipts = companion.receipts(&s.server).await.unwrap_or_default();
                    drop(companion);
                    ctx.status(false, format!("Logged in as {account}."), "");
                    let rows: Vec<ReceiptRow> = receipts.iter().map(receipt_row).collect();
                    let name: SharedString = account.to_string().into();
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Phone>();
                        p.set_logged_in(true);
                        p.set_account(name);
                        p.set_receipts(ModelRc::new(VecModel::from(rows)));
                    });
                }
                Err(e) => ctx.fail(e),
            }
        });
    });

    let c = ctx.clone();
    let first = options.servers.first().cloned();
    phone.on_refresh_receipts(move || {
        let ctx = c.clone_ctx();
        let Some(server) = first.clone() else { return };
        ctx.status(true, "Loading receipts…", "");
        c.io.spawn(async move {
            let list = ctx.companion.lock().await.receipts(&server).await;
            match list {
                Ok(list) => {
                    ctx.status(false, format!("{} receipts.", list.len()), "");
                    let rows: Vec<ReceiptRow> = list.iter().map(receipt_row).collect();
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        w.global::<Phone>()
                            .set_receipts(ModelRc::new(VecModel::from(rows)));
                    });
                }
                Err(e) => ctx.fail(e),
            }
        });
    });

    Ok(Gui {
        window,
        io,
        quit,
        discovery,
    })
}
