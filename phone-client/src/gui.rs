//! The companion's Slint window (feature `gui`): Scan, Nearby, Enter code, Wallet and
//! Gifts (vouchers, red packets) tabs over the same core as the CLI. I/O runs on a tokio runtime and a discovery
//! thread; results are posted back to the UI thread with `upgrade_in_event_loop`.

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::{
    AccountId, DiscoveryRecord, PacketLink, PacketsRecord, Pin, Receipt, ServerUrl, SmsMessage,
    TvPresence,
};
use slint::{ComponentHandle, Model, ModelRc, SharedString, VecModel, Weak};

use crate::companion::share::{Scanned, accept_couchpay_link};
use crate::companion::{
    Companion, CompanionError, Confirmation, Credentials, OrderRef, SmsCode, host,
};
use crate::decode::{Decoder, PictureError, picture_from_path};
use crate::discovery::{Browser, IgnoreFn, Interfaces, NearbyEvent};
use crate::frames::{self, FolderSource, FrameError, FrameSource, ScanOptions};
use crate::state::StateStore;
use crate::wallet;

mod packets;
/// The UI compiled from `ui/companion.slint` by `build.rs`. Public so that headless
/// tests can drive the window the way a person would: through its callbacks, reading
/// what it shows.
#[path = "gui_ui.rs"]
pub mod ui;
mod vouchers;
use packets::PacketScreen;
use ui::{
    BalanceView, CompanionWindow, ConfirmView, NearbyRow, Packets, Phone, ReceiptRow, SmsRow,
    Vouchers,
};
use vouchers::{TAB_GIFTS, VoucherScreen};

/// How long a scan from the window runs before giving up, in seconds.
pub const GUI_SCAN_TIMEOUT_S: u64 = 60;
/// How often the discovery thread checks for shutdown, in milliseconds.
const DISCOVERY_POLL_MS: u64 = 500;

/// The window's tabs, as `Phone.tab` numbers them.
const TAB_SCAN: i32 = 0;
const TAB_NEARBY: i32 = 1;
const TAB_WALLET: i32 = 3;

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
    /// Where saved voucher pictures go.
    pub pictures: PathBuf,
}

impl GuiOptions {
    /// The pictures folder of this user (XDG), else the home folder, else here.
    pub fn default_pictures() -> PathBuf {
        dirs::picture_dir()
            .or_else(dirs::home_dir)
            .unwrap_or_else(|| PathBuf::from("."))
    }
}

/// One SMS of the wallet's inbox with what the companion read from it.
#[derive(Clone, Debug)]
struct Message {
    sms: SmsMessage,
    code: Option<SmsCode>,
}

/// Shared between the UI callbacks and the background tasks.
struct Ctx {
    window: Weak<CompanionWindow>,
    companion: Arc<tokio::sync::Mutex<Companion>>,
    nearby: Arc<Mutex<Vec<DiscoveryRecord>>>,
    /// Red packets shown on TVs nearby, listed after the orders.
    nearby_packets: Arc<Mutex<Vec<PacketsRecord>>>,
    /// The TVs nearby, to show red packets on.
    nearby_tvs: Arc<Mutex<Vec<TvPresence>>>,
    pending: Arc<Mutex<Option<Confirmation>>>,
    /// The tab the confirmation sheet was opened from (its banner goes there).
    pending_tab: Arc<Mutex<i32>>,
    /// The wallet's next page of receipts, if there is one.
    next_receipts: Arc<Mutex<Option<String>>>,
    messages: Arc<Mutex<Vec<Message>>>,
    /// Codes (phone, code) that paid in this window: their messages say "paid".
    sms_paid: Arc<Mutex<Vec<(String, String)>>>,
    vouchers: Arc<Mutex<VoucherScreen>>,
    packets: Arc<Mutex<PacketScreen>>,
    server: Option<ServerUrl>,
    io: tokio::runtime::Handle,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ctx {
    fn clone_ctx(&self) -> Self {
        Self {
            window: self.window.clone(),
            companion: self.companion.clone(),
            nearby: self.nearby.clone(),
            nearby_packets: self.nearby_packets.clone(),
            nearby_tvs: self.nearby_tvs.clone(),
            pending: self.pending.clone(),
            pending_tab: self.pending_tab.clone(),
            next_receipts: self.next_receipts.clone(),
            messages: self.messages.clone(),
            sms_paid: self.sms_paid.clone(),
            vouchers: self.vouchers.clone(),
            packets: self.packets.clone(),
            server: self.server.clone(),
            io: self.io.clone(),
        }
    }

    /// Sets the banner of `tab` (status line, and clears or sets the error) from any thread.
    fn status(&self, tab: i32, busy: bool, status: impl Into<String>, error: impl Into<String>) {
        let (status, error) = (status.into(), error.into());
        let _ = self.window.upgrade_in_event_loop(move |w| {
            let p = w.global::<Phone>();
            p.set_banner_tab(tab);
            p.set_busy(busy);
            p.set_status(status.into());
            p.set_error(error.into());
        });
    }

    /// Shows `message` as the error of `tab`.
    fn fail(&self, tab: i32, message: impl Into<String>) {
        self.status(tab, false, "", message);
    }

    /// Fetches the order behind `r` and shows the confirmation sheet.
    fn confirm(&self, tab: i32, r: OrderRef) {
        let ctx = self.clone_ctx();
        self.status(tab, true, "Fetching the order from the server…", "");
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
                        server: host(&c.server).into(),
                        needs_address: c.needs_address(),
                    };
                    *lock(&ctx.pending) = Some(c);
                    *lock(&ctx.pending_tab) = tab;
                    ctx.status(tab, false, "Check the order matches the TV, then pay.", "");
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Phone>();
                        p.set_confirm(view);
                        p.set_confirming(true);
                    });
                }
                // A typed code may be the one a TV shows for red packets.
                Err(CompanionError::UnknownOrder { code: Some(code) }) => {
                    let found = ctx.companion.lock().await.packets_by_code(&code).await;
                    match found {
                        Ok(link) => ctx.claim_scanned_packets(tab, link),
                        Err(e) => {
                            tracing::info!(error = %e, "the code is no red-packet code either");
                            ctx.fail(tab, say(&CompanionError::UnknownOrder { code: Some(code) }))
                        }
                    }
                }
                Err(e) => ctx.fail(tab, say(&e)),
            }
        });
    }

    /// Reloads the wallet of the signed-in account: balance, first page of receipts,
    /// SMS inbox. `done` is the banner to show when it worked.
    fn load_wallet(&self, done: Option<String>) {
        let Some(server) = self.server.clone() else {
            return;
        };
        let ctx = self.clone_ctx();
        if done.is_none() {
            self.status(TAB_WALLET, true, "Loading the wallet…", "");
        }
        self.io.spawn(async move {
            let mut companion = ctx.companion.lock().await;
            let Some(account) = companion.signed_in(&server) else {
                drop(companion);
                ctx.show_signed_out();
                return;
            };
            let loaded = async {
                let view = companion.account_view(&server).await?;
                let page = companion
                    .receipts_page(&server, None, Some(wallet::RECEIPTS_PAGE))
                    .await?;
                let sms = companion.sms_inbox(&server).await?;
                Ok::<_, CompanionError>((view, page, sms))
            }
            .await;
            drop(companion);
            match loaded {
                Ok((view, page, sms)) => {
                    *lock(&ctx.next_receipts) = page.next_cursor.clone();
                    let messages: Vec<Message> = sms
                        .into_iter()
                        .map(|sms| Message {
                            code: SmsCode::parse(&sms.body),
                            sms,
                        })
                        .collect();
                    *lock(&ctx.messages) = messages.clone();
                    let paid = lock(&ctx.sms_paid).clone();
                    let rows: Vec<ReceiptRow> = page.items.iter().map(receipt_row).collect();
                    let sms_rows: Vec<SmsRow> =
                        messages.iter().map(|m| sms_row(m, &paid)).collect();
                    let balance = BalanceView {
                        wallet: wallet::wallet_line(&view).into(),
                        card: wallet::card_line(&view).into(),
                    };
                    let more = page.next_cursor.is_some();
                    let name: SharedString = account.to_string().into();
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Phone>();
                        p.set_logged_in(true);
                        p.set_account(name);
                        p.set_balance(balance);
                        p.set_receipts(ModelRc::new(VecModel::from(rows)));
                        p.set_receipts_more(more);
                        p.set_sms(ModelRc::new(VecModel::from(sms_rows)));
                    });
                    let banner = done.unwrap_or_else(|| "The wallet is up to date.".to_owned());
                    ctx.status(TAB_WALLET, false, banner, "");
                }
                Err(CompanionError::NotLoggedIn) => {
                    ctx.show_signed_out();
                    ctx.fail(TAB_WALLET, say(&CompanionError::NotLoggedIn));
                }
                Err(e) => ctx.fail(TAB_WALLET, say(&e)),
            }
        });
    }

    /// Empties the wallet and shows the sign-in form.
    fn show_signed_out(&self) {
        *lock(&self.next_receipts) = None;
        lock(&self.messages).clear();
        let _ = self.window.upgrade_in_event_loop(|w| {
            let p = w.global::<Phone>();
            p.set_logged_in(false);
            p.set_balance(BalanceView::default());
            p.set_receipts(ModelRc::new(VecModel::<ReceiptRow>::default()));
            p.set_receipts_more(false);
            p.set_sms(ModelRc::new(VecModel::<SmsRow>::default()));
            let v = w.global::<Vouchers>();
            v.set_list(ModelRc::new(VecModel::<ui::VoucherRow>::default()));
            v.set_showing(false);
            v.set_settings_open(false);
            let r = w.global::<Packets>();
            r.set_list(ModelRc::new(VecModel::<ui::PacketRow>::default()));
            r.set_showing(false);
            r.set_quoting(false);
        });
        *lock(&self.vouchers) = VoucherScreen::default();
        *lock(&self.packets) = PacketScreen::default();
    }

    /// The tab on screen now (UI thread only).
    fn tab(&self) -> i32 {
        self.window
            .upgrade()
            .map_or(TAB_SCAN, |w| w.global::<Phone>().get_tab())
    }
}

fn receipt_row(r: &Receipt) -> ReceiptRow {
    ReceiptRow {
        title: r.item.title.clone().into(),
        amount: r.amount.to_string().into(),
        detail: wallet::receipt_detail(r).into(),
        source: wallet::receipt_source(r).into(),
        id: r.payment_id.to_string().into(),
    }
}

fn sms_row(m: &Message, paid: &[(String, String)]) -> SmsRow {
    let to = m.sms.to.to_string();
    let (code, amount) = m
        .code
        .as_ref()
        .map(|c| (c.code.clone(), c.amount.clone()))
        .unwrap_or_default();
    let is_paid = !code.is_empty() && paid.iter().any(|(p, c)| p == &to && c == &code);
    SmsRow {
        when: wallet::when(m.sms.sent_at_ms).into(),
        to: m.sms.to.masked().into(),
        body: wallet::screen_body(&m.sms.body).into(),
        code: code.into(),
        amount: amount.into(),
        paid: is_paid,
    }
}

/// One plain sentence for the screen; the technical details go to the log.
fn say(e: &CompanionError) -> String {
    match e {
        CompanionError::State(inner) => {
            tracing::warn!(error = %inner, "companion state");
            "This device could not save its data (details are in the log), so nothing was sent \
             and nothing was charged."
                .to_owned()
        }
        other => {
            tracing::info!(error = ?other, "shown: {other}");
            other.to_string()
        }
    }
}

fn say_frames(e: &FrameError) -> String {
    tracing::warn!(error = %e, "scan");
    match e {
        FrameError::NoCamera(_) => "No camera found.".into(),
        FrameError::CameraNotBuilt => "This version has no camera support.".into(),
        FrameError::Camera(_) => "The camera stopped working; try again.".into(),
        FrameError::Picture(p) => say_picture(p),
        FrameError::Folder { .. } => "That folder cannot be opened.".into(),
        FrameError::EmptyFolder(_) => "That folder holds no PNG, JPEG or WebP pictures.".into(),
    }
}

fn say_scan(e: &frames::ScanError) -> String {
    match e {
        frames::ScanError::Source(f) => say_frames(f),
        frames::ScanError::NotFound { frames } => {
            format!("No Couchpay QR code found in {frames} frames.")
        }
        frames::ScanError::TimedOut(d) => format!(
            "No Couchpay QR code found in {} seconds; try again closer to the TV.",
            d.as_secs()
        ),
        frames::ScanError::Cancelled => "Scan stopped.".into(),
    }
}

fn say_picture(e: &PictureError) -> String {
    tracing::warn!(error = %e, "picture");
    match e {
        PictureError::Io { .. } => "That picture cannot be opened.".into(),
        _ => {
            "That file is not a picture that can be read (PNG, JPEG or WebP, not too large).".into()
        }
    }
}

/// After a payment or redemption with a typed PIN, opens the wallet signed in as that
/// account (the PIN is used once, never stored), unless it is already signed in.
async fn sign_in_after(
    companion: &mut Companion,
    credentials: &Credentials,
    server: Option<&ServerUrl>,
) {
    if let (Credentials::Pin { account, pin }, Some(server)) = (credentials, server)
        && companion.signed_in(server).as_ref() != Some(account)
        && let Err(e) = companion
            .login(Some(server), account.clone(), pin.clone())
            .await
    {
        tracing::warn!(error = %e, "done, but cannot sign in to the wallet");
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
    if !cfg!(feature = "camera") {
        tracing::info!("built without the live camera (cargo feature `camera`)");
    }
    phone.set_camera_available(cfg!(feature = "camera"));
    phone.set_account(account.map(|a| a.to_string()).unwrap_or_default().into());
    phone.set_logged_in(logged_in);
    if let Some(f) = &options.frames {
        phone.set_frames_folder(f.display().to_string().into());
    }
    phone.set_nearby(ModelRc::new(VecModel::<NearbyRow>::default()));
    phone.set_receipts(ModelRc::new(VecModel::<ReceiptRow>::default()));
    phone.set_sms(ModelRc::new(VecModel::<SmsRow>::default()));

    let ctx = Rc::new(Ctx {
        window: window.as_weak(),
        companion: Arc::new(tokio::sync::Mutex::new(companion)),
        nearby: Arc::new(Mutex::new(Vec::new())),
        nearby_packets: Arc::new(Mutex::new(Vec::new())),
        nearby_tvs: Arc::new(Mutex::new(Vec::new())),
        pending: Arc::new(Mutex::new(None)),
        pending_tab: Arc::new(Mutex::new(TAB_SCAN)),
        next_receipts: Arc::new(Mutex::new(None)),
        messages: Arc::new(Mutex::new(Vec::new())),
        sms_paid: Arc::new(Mutex::new(Vec::new())),
        vouchers: Arc::new(Mutex::new(VoucherScreen::default())),
        packets: Arc::new(Mutex::new(PacketScreen::default())),
        server: options.servers.first().cloned(),
        io: io.handle().clone(),
    });
    if logged_in {
        ctx.load_wallet(None);
    }

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
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start discovery");
                    return ctx.fail(TAB_NEARBY, "TVs nearby cannot be listed on this network.");
                }
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
                let packets: Vec<PacketsRecord> =
                    browser.packets().map(|n| n.record.clone()).collect();
                let tvs = browser.tvs();
                *lock(&ctx.nearby) = records.clone();
                *lock(&ctx.nearby_packets) = packets.clone();
                *lock(&ctx.nearby_tvs) = tvs.clone();
                let _ = ctx.window.upgrade_in_event_loop(move |w| {
                    // Orders first, then red packets: the row index says which.
                    let rows: Vec<NearbyRow> = records
                        .iter()
                        .map(|r| NearbyRow {
                            tv: r.tv_name.clone().into(),
                            item: r.item.clone().into(),
                            amount: r.amount.to_string().into(),
                            code: r.short_code.display().into(),
                        })
                        .chain(packets.iter().map(|p| NearbyRow {
                            tv: p.tv_name.clone().into(),
                            item: format!("Red packets from {}", p.sender_name).into(),
                            amount: "Open one".into(),
                            code: p.short_code.display().into(),
                        }))
                        .collect();
                    w.global::<Phone>()
                        .set_nearby(ModelRc::new(VecModel::from(rows)));
                    let names: Vec<SharedString> =
                        tvs.iter().map(|t| t.tv_name.clone().into()).collect();
                    w.global::<Packets>()
                        .set_tvs(ModelRc::new(VecModel::from(names)));
                });
            }
            browser.stop();
        })
    };

    let c = ctx.clone();
    phone.on_pick_nearby(move |i| {
        let i = i as usize;
        let orders = lock(&c.nearby).len();
        let record = lock(&c.nearby).get(i).cloned();
        if let Some(r) = record {
            c.confirm(TAB_NEARBY, OrderRef::Discovered(r));
        } else if let Some(p) = lock(&c.nearby_packets).get(i - orders).cloned() {
            c.claim_scanned_packets(
                TAB_NEARBY,
                PacketLink {
                    server: p.server,
                    set: p.set,
                },
            );
        }
    });

    let c = ctx.clone();
    phone.on_lookup_code(move |text| {
        let tab = c.tab();
        if text.trim().is_empty() {
            return c.fail(tab, "Type the code shown on the TV.");
        }
        // A red-packet claim link pasted here opens a packet, as a scan of it would.
        if let Ok(link) = PacketLink::parse(text.trim()) {
            return c.claim_scanned_packets(tab, link);
        }
        match OrderRef::parse_input(text.as_str()) {
            Ok(r) => c.confirm(tab, r),
            Err(e) => c.fail(tab, say(&e)),
        }
    });

    let c = ctx.clone();
    phone.on_decode_picture(move |path| {
        let ctx = c.clone_ctx();
        if path.trim().is_empty() {
            return ctx.fail(TAB_SCAN, "Type the name of the picture file to open.");
        }
        ctx.status(TAB_SCAN, true, "Decoding the picture…", "");
        let path = PathBuf::from(path.trim());
        c.io.spawn_blocking(move || {
            let frame = match picture_from_path(&path) {
                Ok(f) => f,
                Err(e) => return ctx.fail(TAB_SCAN, say_picture(&e)),
            };
            let report = Decoder::default().decode(&frame, &|t| Scanned::parse(t).is_some());
            match report.text.as_deref().and_then(Scanned::parse) {
                Some(Scanned::Pay(link)) => ctx.confirm(TAB_SCAN, OrderRef::Link(link)),
                Some(Scanned::Voucher(link)) => ctx.open_scanned_voucher(TAB_SCAN, link),
                Some(Scanned::Packets(link)) => ctx.claim_scanned_packets(TAB_SCAN, link),
                None if !report.seen.is_empty() => ctx.fail(
                    TAB_SCAN,
                    "That picture holds a QR code, but not a Couchpay one.",
                ),
                _ => ctx.fail(TAB_SCAN, "No Couchpay QR code found in that picture."),
            }
        });
    });

    let start_scan = {
        let c = ctx.clone();
        move |source: Result<Box<dyn FrameSource>, FrameError>| {
            let ctx = c.clone_ctx();
            let source = match source {
                Ok(s) => s,
                Err(e) => return ctx.fail(TAB_SCAN, say_frames(&e)),
            };
            ctx.status(TAB_SCAN, true, "Scanning…", "");
            c.io.spawn_blocking(move || {
                let options = ScanOptions {
                    timeout: Duration::from_secs(GUI_SCAN_TIMEOUT_S),
                    ..ScanOptions::default()
                };
                let hit = frames::scan(
                    source,
                    &Decoder::for_camera(),
                    accept_couchpay_link(),
                    &options,
                    &AtomicBool::new(false),
                    |p| {
                        ctx.status(
                            TAB_SCAN,
                            true,
                            format!(
                                "Scanning… {} frames, {} read, {:.1} s",
                                p.frames_captured,
                                p.frames_decoded,
                                p.elapsed.as_secs_f32()
                            ),
                            "",
                        )
                    },
                );
                match hit.map(|h| Scanned::parse(&h.text)) {
                    Ok(Some(Scanned::Pay(link))) => ctx.confirm(TAB_SCAN, OrderRef::Link(link)),
                    Ok(Some(Scanned::Voucher(link))) => ctx.open_scanned_voucher(TAB_SCAN, link),
                    Ok(Some(Scanned::Packets(link))) => ctx.claim_scanned_packets(TAB_SCAN, link),
                    Ok(None) => ctx.fail(TAB_SCAN, "That QR code is not a Couchpay one."),
                    Err(e) => ctx.fail(TAB_SCAN, say_scan(&e)),
                }
            });
        }
    };
    let scan = start_scan.clone();
    phone.on_scan_camera(move || scan(frames::open_camera(0)));
    let c = ctx.clone();
    phone.on_scan_folder(move |dir| {
        if dir.trim().is_empty() {
            return c.fail(TAB_SCAN, "Type the folder of frames to scan.");
        }
        start_scan(
            FolderSource::open(std::path::Path::new(dir.trim()))
                .map(|s| Box::new(s) as Box<dyn FrameSource>),
        )
    });

    let c = ctx.clone();
    phone.on_cancel_confirm(move || {
        *lock(&c.pending) = None;
        if let Some(w) = c.window.upgrade() {
            w.global::<Phone>().set_confirming(false);
        }
        c.status(*lock(&c.pending_tab), false, "Not paid.", "");
    });

    let c = ctx.clone();
    phone.on_pay(move |account, pin, address| {
        let Some(confirmation) = lock(&c.pending).clone() else {
            return;
        };
        let tab = *lock(&c.pending_tab);
        let credentials = if pin.is_empty() {
            Credentials::Session
        } else {
            match (AccountId::parse(account.trim()), Pin::parse(pin.as_str())) {
                (Ok(account), Ok(pin)) => Credentials::Pin { account, pin },
                (Err(e), _) => {
                    tracing::info!(error = %e, "account name");
                    return c.fail(
                        tab,
                        "Type the account name (letters, digits, dots, dashes).",
                    );
                }
                (_, Err(e)) => {
                    tracing::info!(error = %e, "PIN");
                    return c.fail(tab, "The PIN is 4 to 8 digits. Nothing was charged.");
                }
            }
        };
        let address = Some(address.to_string()).filter(|a| !a.trim().is_empty());
        let ctx = c.clone_ctx();
        ctx.status(tab, true, "Paying…", "");
        c.io.spawn(async move {
            let mut companion = ctx.companion.lock().await;
            let paid = companion.pay(&confirmation, &credentials, address).await;
            match paid {
                Ok(r) => {
                    sign_in_after(&mut companion, &credentials, ctx.server.as_ref()).await;
                    drop(companion);
                    let done = format!("Paid {} for {}.", r.amount, r.item.title);
                    ctx.status(TAB_WALLET, true, done.clone(), "");
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Phone>();
                        p.set_confirming(false);
                        p.set_wallet_view(0);
                        p.set_tab(TAB_WALLET);
                    });
                    ctx.load_wallet(Some(done));
                }
                Err(e) => {
                    drop(companion);
                    ctx.fail(tab, say(&e));
                }
            }
        });
    });

    let c = ctx.clone();
    phone.on_login(move |account, pin| {
        let (account, pin) = match (AccountId::parse(account.trim()), Pin::parse(pin.as_str())) {
            (Ok(a), Ok(p)) => (a, p),
            (Err(e), _) => {
                tracing::info!(error = %e, "account name");
                return c.fail(
                    c.tab(),
                    "Type the account name (letters, digits, dots, dashes).",
                );
            }
            (_, Err(e)) => {
                tracing::info!(error = %e, "PIN");
                return c.fail(c.tab(), "The PIN is 4 to 8 digits.");
            }
        };
        let tab = c.tab();
        let ctx = c.clone_ctx();
        ctx.status(tab, true, "Signing in…", "");
        c.io.spawn(async move {
            let server = ctx.server.clone();
            let signed = ctx
                .companion
                .lock()
                .await
                .login(server.as_ref(), account.clone(), pin)
                .await;
            match signed {
                Ok(_) => {
                    ctx.load_wallet(None);
                    if tab == TAB_GIFTS {
                        ctx.load_vouchers();
                        ctx.load_packets();
                        ctx.status(tab, false, "Signed in.", "");
                    }
                }
                Err(e) => ctx.fail(tab, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    phone.on_logout(move || {
        let ctx = c.clone_ctx();
        c.io.spawn(async move {
            if let Some(server) = &ctx.server
                && let Err(e) = ctx.companion.lock().await.logout(server)
            {
                return ctx.fail(TAB_WALLET, say(&e));
            }
            ctx.show_signed_out();
            ctx.status(TAB_WALLET, false, "Signed out on this device.", "");
        });
    });

    let c = ctx.clone();
    phone.on_refresh_receipts(move || c.load_wallet(None));

    let c = ctx.clone();
    phone.on_more_receipts(move || {
        let Some(server) = c.server.clone() else {
            return;
        };
        let Some(cursor) = lock(&c.next_receipts).clone() else {
            return;
        };
        let ctx = c.clone_ctx();
        ctx.status(TAB_WALLET, true, "Loading more receipts…", "");
        c.io.spawn(async move {
            let page = ctx
                .companion
                .lock()
                .await
                .receipts_page(&server, Some(&cursor), Some(wallet::RECEIPTS_PAGE))
                .await;
            match page {
                Ok(page) => {
                    *lock(&ctx.next_receipts) = page.next_cursor.clone();
                    let more = page.next_cursor.is_some();
                    let rows: Vec<ReceiptRow> = page.items.iter().map(receipt_row).collect();
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Phone>();
                        let mut all: Vec<ReceiptRow> = p.get_receipts().iter().collect();
                        all.extend(rows);
                        p.set_receipts(ModelRc::new(VecModel::from(all)));
                        p.set_receipts_more(more);
                    });
                    ctx.status(TAB_WALLET, false, "", "");
                }
                Err(CompanionError::NotLoggedIn) => {
                    ctx.show_signed_out();
                    ctx.fail(TAB_WALLET, say(&CompanionError::NotLoggedIn));
                }
                Err(e) => ctx.fail(TAB_WALLET, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    phone.on_pay_sms(move |i| {
        let Some(message) = lock(&c.messages).get(i as usize).cloned() else {
            return;
        };
        let Some(sms) = message.code.clone() else {
            return c.fail(TAB_WALLET, "This message holds no payment code.");
        };
        // The SMS names the order by the TV's short code (and by item, amount and TV,
        // which the order fetched from the server must match); an SMS without the short
        // code is matched against the TVs nearby.
        let order_ref = match &sms.short_code {
            Some(code) => Some(OrderRef::Code(code.clone())),
            None => lock(&c.nearby)
                .iter()
                .find(|r| sms.matches_record(r))
                .cloned()
                .map(OrderRef::Discovered),
        };
        let Some(order_ref) = order_ref else {
            return c.fail(
                TAB_WALLET,
                format!(
                    "Cannot find the order for {} on {} among the TVs nearby: keep the TV \
                     showing it on this network, then try again. Nothing was charged.",
                    sms.item, sms.tv
                ),
            );
        };
        let ctx = c.clone_ctx();
        ctx.status(
            TAB_WALLET,
            true,
            format!("Paying {} with the SMS code…", sms.amount),
            "",
        );
        c.io.spawn(async move {
            let paid = ctx
                .companion
                .lock()
                .await
                .confirm_sms_code(&order_ref, &sms, &message.sms.to)
                .await;
            match paid {
                Ok(r) => {
                    lock(&ctx.sms_paid).push((message.sms.to.to_string(), sms.code.clone()));
                    let done = format!("Paid {} for {} with the SMS code.", r.amount, r.item.title);
                    ctx.load_wallet(Some(done));
                }
                Err(e) => ctx.fail(TAB_WALLET, say(&e)),
            }
        });
    });

    vouchers::wire(&ctx, &window.global::<Vouchers>(), options.pictures.clone());
    packets::wire(&ctx, &window.global::<Packets>(), options.pictures.clone());

    Ok(Gui {
        window,
        io,
        quit,
        discovery,
    })
}
