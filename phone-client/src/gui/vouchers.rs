//! The window's voucher screens (SPEC V) over the companion core: the Vouchers view of
//! the Gifts tab (make one; list yours by state), one voucher full-screen with its QR code (save it as
//! a picture, void it), a scanned voucher checked with its server before the payee takes
//! it (or taken at once, when the payee's settings say "redeem on scan"), and the
//! voucher settings.

use std::path::PathBuf;
use std::rc::Rc;

use image::GrayImage;
use protocol::{
    AccountId, Money, Pin, RedeemMode, Redemption, Voucher, VoucherFilter, VoucherLink,
    VoucherSettings, VoucherState,
};
use slint::{ComponentHandle, ModelRc, SharedPixelBuffer, SharedString, VecModel};

use super::ui::{CompanionWindow, Phone, VoucherRow, VoucherView, Vouchers};
use super::{Ctx, TAB_WALLET, lock, say, sign_in_after};
use crate::companion::vouchers::voucher_qr;
use crate::companion::{CompanionError, Credentials, share};
use crate::wallet;

/// The Gifts tab (vouchers and red packets), as `Phone.tab` numbers it.
pub(super) const TAB_GIFTS: i32 = 4;
/// Vouchers listed at once (newest first).
const LIST_LIMIT: u32 = 50;
/// The validity choices of the Vouchers tab (`Vouchers.validity`), in seconds.
const VALIDITY_S: [u64; 3] = [3_600, 86_400, 7 * 86_400];

/// What the voucher screens hold besides what they show.
#[derive(Default)]
pub(super) struct VoucherScreen {
    /// The account whose vouchers are listed.
    me: Option<AccountId>,
    /// The list on screen, in its order.
    list: Vec<Voucher>,
    /// The voucher shown full-screen.
    shown: Option<Voucher>,
    /// The scanned voucher waiting for the payee, and the tab it was scanned from.
    scanned: Option<(VoucherLink, Voucher, i32)>,
}

fn state_word(s: VoucherState) -> &'static str {
    match s {
        VoucherState::Unused => "Unused",
        VoucherState::Redeemed => "Redeemed",
        VoucherState::Failed => "Failed",
        VoucherState::Voided => "Voided",
        VoucherState::Expired => "Expired",
    }
}

/// The list filter chips (`Vouchers.filter`) as states.
fn filter_state(chip: i32) -> Option<VoucherState> {
    match chip {
        1 => Some(VoucherState::Unused),
        2 => Some(VoucherState::Redeemed),
        3 => Some(VoucherState::Voided),
        4 => Some(VoucherState::Expired),
        _ => None,
    }
}

fn view(v: &Voucher, me: Option<&AccountId>) -> VoucherView {
    let unused = v.state == VoucherState::Unused;
    let valid = match v.closed_at_ms {
        Some(t) if !unused => format!("since {}", wallet::when(t)),
        _ => format!("Valid until {}", wallet::when(v.expires_at_ms)),
    };
    let used = match (v.state, &v.payee) {
        (VoucherState::Redeemed, Some(p)) => format!("{} redeemed by {p}", v.used),
        (VoucherState::Redeemed, None) => format!("{} redeemed", v.used),
        _ => String::new(),
    };
    VoucherView {
        amount: v.face_value.to_string().into(),
        payer: format!("{} ({})", v.payer_name, v.payer).into(),
        state: state_word(v.state).into(),
        valid: valid.into(),
        used: used.into(),
        restricted: v
            .restricted_to
            .as_ref()
            .map(|a| format!("Only for {a}"))
            .unwrap_or_default()
            .into(),
        unused,
        mine: me == Some(&v.payer),
    }
}

fn row(v: &Voucher) -> VoucherRow {
    let made = format!("Made {}", wallet::when(v.created_at_ms));
    let detail = match (v.state, &v.payee) {
        (VoucherState::Unused, _) => {
            format!("{made} · valid until {}", wallet::when(v.expires_at_ms))
        }
        (VoucherState::Redeemed, Some(p)) => format!("{made} · {} to {p}", v.used),
        _ => made,
    };
    VoucherRow {
        amount: v.face_value.to_string().into(),
        state: state_word(v.state).into(),
        detail: detail.into(),
    }
}

/// The QR picture as a Slint image (UI thread only).
pub(super) fn qr_image(qr: &GrayImage) -> slint::Image {
    let rgb: Vec<u8> = qr.pixels().flat_map(|p| [p.0[0]; 3]).collect();
    let buffer =
        SharedPixelBuffer::<slint::Rgb8Pixel>::clone_from_slice(&rgb, qr.width(), qr.height());
    slint::Image::from_rgb8(buffer)
}

/// "Redeemed 4.00 EUR from Alice; 6.00 EUR went back to them."
fn redeemed_words(r: &Redemption) -> String {
    let mut s = format!(
        "Redeemed {} from {} into your wallet",
        r.amount, r.voucher.payer_name
    );
    if r.released.minor > 0 {
        s.push_str(&format!("; {} went back to them", r.released));
    }
    s.push('.');
    s
}

impl Ctx {
    /// Saves the QR code of `link` as the PNG `path` (its folder made if missing) off the
    /// UI thread; then says `words` and gives the path to `shown` to put on screen.
    pub(super) fn save_qr_picture(
        &self,
        path: PathBuf,
        link: String,
        words: &'static str,
        shown: impl FnOnce(&CompanionWindow, SharedString) + Send + 'static,
    ) {
        let ctx = self.clone_ctx();
        self.io.spawn_blocking(move || {
            if let Some(folder) = path.parent()
                && let Err(e) = std::fs::create_dir_all(folder)
            {
                tracing::warn!(path = %folder.display(), error = %e, "pictures folder");
            }
            match share::save_qr_png(&link, &path) {
                Ok(()) => {
                    ctx.status(TAB_GIFTS, false, words, "");
                    let text: SharedString = path.display().to_string().into();
                    let _ = ctx.window.upgrade_in_event_loop(move |w| shown(&w, text));
                }
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    }

    /// Shows `v` full-screen (with its QR code while it can be redeemed).
    fn show_voucher(&self, v: Voucher, me: Option<AccountId>) {
        let shown = view(&v, me.as_ref());
        let qr = (v.state == VoucherState::Unused).then(|| voucher_qr(&v.link));
        lock(&self.vouchers).shown = Some(v);
        let _ = self.window.upgrade_in_event_loop(move |w| {
            let s = w.global::<Vouchers>();
            s.set_shown(shown);
            s.set_qr(qr.as_ref().map(qr_image).unwrap_or_default());
            s.set_saved_to("".into());
            s.set_showing(true);
        });
    }

    /// Reloads the list of the signed-in account's vouchers (with the filter on screen)
    /// and its voucher settings.
    pub(super) fn load_vouchers(&self) {
        let Some(server) = self.server.clone() else {
            return;
        };
        let chip = self
            .window
            .upgrade()
            .map_or(0, |w| w.global::<Vouchers>().get_filter());
        let ctx = self.clone_ctx();
        self.io.spawn(async move {
            let companion = ctx.companion.lock().await;
            let me = companion.signed_in(&server);
            if me.is_none() {
                return;
            }
            let filter = VoucherFilter {
                state: filter_state(chip),
                limit: Some(LIST_LIMIT),
                ..VoucherFilter::default()
            };
            let loaded = async {
                let page = companion.vouchers(&filter).await?;
                let settings = companion.voucher_settings(&server).await?;
                Ok::<_, CompanionError>((page, settings))
            }
            .await;
            drop(companion);
            match loaded {
                Ok((page, settings)) => {
                    let rows: Vec<VoucherRow> = page.items.iter().map(row).collect();
                    let more = page.next_cursor.is_some();
                    {
                        let mut screen = lock(&ctx.vouchers);
                        screen.list = page.items;
                        screen.me = me;
                    }
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let s = w.global::<Vouchers>();
                        s.set_list(ModelRc::new(VecModel::from(rows)));
                        s.set_more(more);
                        s.set_pin_every_voucher(settings.pin_every_voucher);
                        s.set_redeem_on_scan(settings.redeem_mode == RedeemMode::RedeemOnScan);
                    });
                }
                Err(CompanionError::NotLoggedIn) => {
                    ctx.show_signed_out();
                    ctx.fail(TAB_GIFTS, say(&CompanionError::NotLoggedIn));
                }
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    }

    /// A voucher link came from a scan or a picture on `tab`: check it with its server,
    /// then show it to the payee, or take it at once when their settings say so.
    pub(super) fn open_scanned_voucher(&self, tab: i32, link: VoucherLink) {
        let ctx = self.clone_ctx();
        self.status(tab, true, "Checking the voucher with its server…", "");
        self.io.spawn(async move {
            let companion = ctx.companion.lock().await;
            let v = match companion.open_voucher(&link).await {
                Ok(v) => v,
                Err(e) => return ctx.fail(tab, say(&e)),
            };
            let me = companion.signed_in(&link.server);
            let on_scan = match &me {
                Some(_) => companion
                    .voucher_settings(&link.server)
                    .await
                    .is_ok_and(|s| s.redeem_mode == RedeemMode::RedeemOnScan),
                None => false,
            };
            let for_me = |a: &AccountId| v.restricted_to.as_ref().is_none_or(|r| r == a);
            if on_scan
                && v.state == VoucherState::Unused
                && me.as_ref().is_some_and(|a| a != &v.payer && for_me(a))
            {
                let redeemed = companion
                    .redeem_voucher(&link, &Credentials::Session, None)
                    .await;
                drop(companion);
                return ctx.after_redeem(tab, redeemed);
            }
            drop(companion);
            let shown = view(&v, me.as_ref());
            let words = if v.state == VoucherState::Unused {
                "Check the voucher, then redeem it.".to_owned()
            } else {
                format!(
                    "This voucher is {} and cannot be redeemed.",
                    state_word(v.state).to_lowercase()
                )
            };
            lock(&ctx.vouchers).scanned = Some((link, v, tab));
            ctx.status(tab, false, words, "");
            let _ = ctx.window.upgrade_in_event_loop(move |w| {
                let s = w.global::<Vouchers>();
                s.set_scanned(shown);
                s.set_redeeming(true);
            });
        });
    }

    /// Shows a redemption's outcome: the wallet with the money in it, or why not.
    fn after_redeem(&self, tab: i32, redeemed: Result<Redemption, CompanionError>) {
        match redeemed {
            Ok(r) => {
                lock(&self.vouchers).scanned = None;
                let done = redeemed_words(&r);
                self.status(TAB_WALLET, true, done.clone(), "");
                let _ = self.window.upgrade_in_event_loop(|w| {
                    w.global::<Vouchers>().set_redeeming(false);
                    let p = w.global::<Phone>();
                    p.set_wallet_view(0);
                    p.set_tab(TAB_WALLET);
                });
                self.load_wallet(Some(done));
            }
            Err(e) => self.fail(tab, say(&e)),
        }
    }
}

/// The account and proof typed on a voucher screen: the PIN when one was typed, else
/// the session. `nothing` ends the refusal ("No voucher was made.").
pub(super) fn typed_credentials(
    account: Option<AccountId>,
    pin: &str,
    nothing: &str,
) -> Result<Credentials, String> {
    if pin.is_empty() {
        return Ok(Credentials::Session);
    }
    let Some(account) = account else {
        return Err("Type the account name (letters, digits, dots, dashes).".to_owned());
    };
    match Pin::parse(pin) {
        Ok(pin) => Ok(Credentials::Pin { account, pin }),
        Err(e) => {
            tracing::info!(error = %e, "PIN");
            Err(format!("The PIN is 4 to 8 digits. {nothing}"))
        }
    }
}

/// Wires the `Vouchers` global's callbacks. `pictures` is where saved QR pictures go.
pub(super) fn wire(ctx: &Rc<Ctx>, vouchers: &Vouchers<'_>, pictures: PathBuf) {
    let c = ctx.clone();
    vouchers.on_refresh(move || c.load_vouchers());

    let c = ctx.clone();
    vouchers.on_create(move |amount, pin| {
        let Some(server) = c.server.clone() else {
            return;
        };
        let Some(w) = c.window.upgrade() else { return };
        let settings = w.global::<Vouchers>();
        let amount = amount.trim().to_owned();
        if amount.is_empty() {
            return c.fail(TAB_GIFTS, "Type the voucher's amount, like 10.00.");
        }
        if pin.is_empty() && settings.get_pin_every_voucher() {
            return c.fail(TAB_GIFTS, "Type your PIN to make a voucher.");
        }
        let valid_for_s = VALIDITY_S
            .get(settings.get_validity() as usize)
            .copied()
            .unwrap_or(VALIDITY_S[1]);
        let ctx = c.clone_ctx();
        ctx.status(TAB_GIFTS, true, "Making the voucher…", "");
        c.io.spawn(async move {
            let mut companion = ctx.companion.lock().await;
            let me = companion.signed_in(&server);
            let credentials = match typed_credentials(me.clone(), &pin, "No voucher was made.") {
                Ok(c) => c,
                Err(words) => return ctx.fail(TAB_GIFTS, words),
            };
            let made = async {
                let currency = companion.account_view(&server).await?.balance.currency;
                let Ok(amount) = Money::parse_decimal(&amount, currency) else {
                    return Ok(None);
                };
                companion
                    .create_voucher(&credentials, amount, Some(valid_for_s), None)
                    .await
                    .map(Some)
            }
            .await;
            drop(companion);
            match made {
                Ok(Some(v)) => {
                    let words = format!(
                        "Voucher of {} made: the money stays frozen in your wallet until the \
                         voucher is redeemed, voided or expires.",
                        v.face_value
                    );
                    ctx.show_voucher(v, me);
                    ctx.status(TAB_GIFTS, false, words, "");
                    ctx.load_vouchers();
                }
                Ok(None) => ctx.fail(
                    TAB_GIFTS,
                    format!("{amount} is not an amount like 10.00. No voucher was made."),
                ),
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    vouchers.on_open(move |i| {
        let (v, me) = {
            let screen = lock(&c.vouchers);
            (screen.list.get(i as usize).cloned(), screen.me.clone())
        };
        if let Some(v) = v {
            c.show_voucher(v, me);
        }
    });

    let c = ctx.clone();
    vouchers.on_save(move || {
        let Some(v) = lock(&c.vouchers).shown.clone() else {
            return;
        };
        c.save_qr_picture(
            pictures.join(format!("couchpay-voucher-{}.png", v.id.log_prefix())),
            v.link.to_string(),
            "Picture saved: send it only to the payee.",
            |w, path| w.global::<Vouchers>().set_saved_to(path),
        );
    });

    let c = ctx.clone();
    vouchers.on_void(move || {
        let Some(v) = lock(&c.vouchers).shown.clone() else {
            return;
        };
        let ctx = c.clone_ctx();
        ctx.status(TAB_GIFTS, true, "Voiding the voucher…", "");
        c.io.spawn(async move {
            let companion = ctx.companion.lock().await;
            let voided = companion.void_voucher(&v.id, &Credentials::Session).await;
            let me = ctx.server.as_ref().and_then(|s| companion.signed_in(s));
            drop(companion);
            match voided {
                Ok(v) => {
                    let words = format!(
                        "Voucher voided: its {} is free to spend again.",
                        v.face_value
                    );
                    ctx.show_voucher(v, me);
                    ctx.status(TAB_GIFTS, false, words, "");
                    ctx.load_vouchers();
                }
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    vouchers.on_close(move || {
        lock(&c.vouchers).shown = None;
        if let Some(w) = c.window.upgrade() {
            let s = w.global::<Vouchers>();
            s.set_showing(false);
            s.set_saved_to("".into());
        }
        c.status(TAB_GIFTS, false, "", "");
    });

    let c = ctx.clone();
    vouchers.on_redeem(move |account, amount, pin| {
        let Some((link, v, tab)) = lock(&c.vouchers).scanned.clone() else {
            return;
        };
        let amount = amount.trim();
        let amount = if amount.is_empty() {
            None
        } else {
            match Money::parse_decimal(amount, v.face_value.currency) {
                Ok(m) => Some(m),
                Err(_) => {
                    return c.fail(
                        tab,
                        format!("{amount} is not an amount like 4.00. Nothing was redeemed."),
                    );
                }
            }
        };
        let account = AccountId::parse(account.trim()).ok();
        let credentials = match typed_credentials(account, &pin, "Nothing was redeemed.") {
            Ok(c) => c,
            Err(words) => return c.fail(tab, words),
        };
        let ctx = c.clone_ctx();
        ctx.status(tab, true, "Redeeming the voucher…", "");
        c.io.spawn(async move {
            let mut companion = ctx.companion.lock().await;
            let redeemed = companion.redeem_voucher(&link, &credentials, amount).await;
            if redeemed.is_ok() {
                sign_in_after(&mut companion, &credentials, Some(&link.server)).await;
            }
            drop(companion);
            ctx.after_redeem(tab, redeemed);
        });
    });

    let c = ctx.clone();
    vouchers.on_cancel_redeem(move || {
        let scanned = lock(&c.vouchers).scanned.take();
        if let Some(w) = c.window.upgrade() {
            w.global::<Vouchers>().set_redeeming(false);
        }
        if let Some((_, v, tab)) = scanned {
            let words = if v.state == VoucherState::Unused {
                "Not redeemed."
            } else {
                ""
            };
            c.status(tab, false, words, "");
        }
    });

    let c = ctx.clone();
    vouchers.on_open_settings(move || {
        let Some(server) = c.server.clone() else {
            return;
        };
        let ctx = c.clone_ctx();
        ctx.status(TAB_GIFTS, true, "Loading the voucher settings…", "");
        c.io.spawn(async move {
            let got = ctx.companion.lock().await.voucher_settings(&server).await;
            match got {
                Ok(s) => {
                    ctx.status(TAB_GIFTS, false, "", "");
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let v = w.global::<Vouchers>();
                        v.set_pin_every_voucher(s.pin_every_voucher);
                        v.set_redeem_on_scan(s.redeem_mode == RedeemMode::RedeemOnScan);
                        v.set_settings_open(true);
                    });
                }
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    vouchers.on_save_settings(move |every, on_scan| {
        let Some(server) = c.server.clone() else {
            return;
        };
        let settings = VoucherSettings {
            pin_every_voucher: every,
            redeem_mode: if on_scan {
                RedeemMode::RedeemOnScan
            } else {
                RedeemMode::ScanThenConfirm
            },
        };
        let ctx = c.clone_ctx();
        ctx.status(TAB_GIFTS, true, "Saving the voucher settings…", "");
        c.io.spawn(async move {
            let saved = ctx
                .companion
                .lock()
                .await
                .set_voucher_settings(&server, &settings)
                .await;
            match saved {
                Ok(s) => {
                    ctx.status(TAB_GIFTS, false, "Voucher settings saved.", "");
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let v = w.global::<Vouchers>();
                        v.set_pin_every_voucher(s.pin_every_voucher);
                        v.set_redeem_on_scan(s.redeem_mode == RedeemMode::RedeemOnScan);
                        v.set_settings_open(false);
                    });
                }
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    vouchers.on_close_settings(move || {
        if let Some(w) = c.window.upgrade() {
            w.global::<Vouchers>().set_settings_open(false);
        }
    });
}
