//! The window's red-packet screens (SPEC R): send (quote first, then confirm), one set
//! full-screen with its claim QR code (save it as a picture) and who got how much, and
//! the history of sets sent and received. A scanned claim link is opened at once for the
//! signed-in account: opening a packet only ever moves money to the person scanning, as
//! a red-packet app does when a packet is tapped; the wallet then shows what came in.

use std::path::PathBuf;
use std::rc::Rc;

use protocol::{AccountId, Money, PacketLink, PacketSet, PacketSetState, PacketSplit};
use slint::{ComponentHandle, ModelRc, VecModel};

use super::ui::{ClaimRow, PacketQuoteView, PacketRow, PacketSetView, Packets, Phone};
use super::vouchers::{TAB_GIFTS, qr_image, typed_credentials};
use super::{Ctx, TAB_WALLET, lock, say};
use crate::companion::packets::PacketsToSend;
use crate::companion::{CompanionError, Credentials, share};
use crate::wallet;

/// Sets listed at once in the history (newest first).
const HISTORY_LIMIT: u32 = 50;

impl Ctx {
    /// A claim link came from a scan or a picture on `tab`: claim one packet for the
    /// signed-in account.
    pub(super) fn claim_scanned_packets(&self, tab: i32, link: PacketLink) {
        let ctx = self.clone_ctx();
        self.status(tab, true, "Opening the red packet…", "");
        self.io.spawn(async move {
            let companion = ctx.companion.lock().await;
            if companion.signed_in(&link.server).is_none() {
                drop(companion);
                return ctx.fail(
                    tab,
                    "Sign in on the Wallet tab first: the packet goes into your wallet.",
                );
            }
            let claimed = companion.claim_packet(&link, &Credentials::Session).await;
            drop(companion);
            match claimed {
                Ok(c) => {
                    let done = format!("You got {} from {}!", c.amount, c.set.sender_name);
                    ctx.status(TAB_WALLET, true, done.clone(), "");
                    let _ = ctx.window.upgrade_in_event_loop(|w| {
                        let p = w.global::<Phone>();
                        p.set_wallet_view(0);
                        p.set_tab(TAB_WALLET);
                    });
                    ctx.load_wallet(Some(done));
                }
                Err(e) => ctx.fail(tab, say(&e)),
            }
        });
    }
}

/// What the red-packet screens hold besides what they show.
#[derive(Default)]
pub(super) struct PacketScreen {
    /// The account whose history is listed.
    me: Option<AccountId>,
    /// The history on screen, in its order.
    list: Vec<PacketSet>,
    /// The set being sent, between its quote and the sender's confirmation.
    pending: Option<PacketsToSend>,
    /// The set shown full-screen.
    shown: Option<PacketSet>,
}

fn state_word(s: &PacketSet, now_ms: i64) -> &'static str {
    match s.state {
        PacketSetState::Open if s.expires_at_ms <= now_ms => "Expired",
        PacketSetState::Open => "Open",
        PacketSetState::Finished => "All opened",
        PacketSetState::Refunded => "Expired",
    }
}

fn left_words(s: &PacketSet) -> String {
    match s.state {
        PacketSetState::Open => format!("{} of {} packets left", s.remaining, s.count),
        PacketSetState::Finished => format!("All {} packets were opened", s.count),
        PacketSetState::Refunded if s.refunded.minor > 0 => {
            format!("Expired: {} went back to {}", s.refunded, s.sender_name)
        }
        PacketSetState::Refunded => "Expired".to_owned(),
    }
}

fn row(s: &PacketSet, me: Option<&AccountId>, now_ms: i64) -> PacketRow {
    let when = wallet::when(s.created_at_ms);
    let opened = s.count - s.remaining;
    let mine = me.and_then(|m| s.claims.iter().find(|c| &c.recipient == m));
    let detail = match mine {
        Some(c) => format!("{when} · you got {} from {}", c.amount, s.sender_name),
        None => format!("{when} · {opened} of {} opened", s.count),
    };
    PacketRow {
        total: s.total.to_string().into(),
        state: state_word(s, now_ms).into(),
        detail: detail.into(),
    }
}

fn view(s: &PacketSet, me: Option<&AccountId>, now_ms: i64) -> PacketSetView {
    let open = s.state == PacketSetState::Open && s.expires_at_ms > now_ms;
    PacketSetView {
        title: format!("Red packets from {}", s.sender_name).into(),
        message: s.message.clone().into(),
        total: s.total.to_string().into(),
        left: left_words(s).into(),
        valid: if open {
            format!("Can be opened until {}", wallet::when(s.expires_at_ms))
        } else {
            format!("Sent {}", wallet::when(s.created_at_ms))
        }
        .into(),
        code: s
            .short_code
            .as_ref()
            .map(|c| c.display())
            .unwrap_or_default()
            .into(),
        shareable: open && me == Some(&s.sender),
    }
}

fn claim_rows(s: &PacketSet) -> Vec<ClaimRow> {
    s.claims
        .iter()
        .map(|c| ClaimRow {
            who: c.recipient_name.clone().into(),
            amount: c.amount.to_string().into(),
            // Equal packets have no largest.
            largest: c.largest && !s.fixed,
        })
        .collect()
}

/// "Anyone with the code" or the accounts named, split at commas and spaces.
fn allowed_accounts(text: &str) -> Result<Option<Vec<AccountId>>, String> {
    let names: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .map(|n| {
            AccountId::parse(&n.to_lowercase())
                .map_err(|_| format!("{n} is not an account name. Nothing was sent."))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

impl Ctx {
    /// Shows `set` full-screen (with its claim code while its sender can share it).
    fn show_packets(&self, set: PacketSet, me: Option<AccountId>) {
        let now = crate::companion::now_ms();
        let shown = view(&set, me.as_ref(), now);
        let claims = claim_rows(&set);
        let qr = shown
            .shareable
            .then(|| share::qr_picture(&set.link.to_string()));
        lock(&self.packets).shown = Some(set);
        let _ = self.window.upgrade_in_event_loop(move |w| {
            let p = w.global::<Packets>();
            p.set_shown(shown);
            p.set_claims(ModelRc::new(VecModel::from(claims)));
            p.set_qr(qr.as_ref().map(qr_image).unwrap_or_default());
            p.set_saved_to("".into());
            p.set_showing(true);
        });
    }

    /// Reloads the history of sets sent (or received) by the signed-in account.
    pub(super) fn load_packets(&self) {
        let Some(server) = self.server.clone() else {
            return;
        };
        let received = self
            .window
            .upgrade()
            .is_some_and(|w| w.global::<Packets>().get_received());
        let ctx = self.clone_ctx();
        self.io.spawn(async move {
            let companion = ctx.companion.lock().await;
            let me = companion.signed_in(&server);
            if me.is_none() {
                return;
            }
            let page = companion
                .packet_history(received, Some(HISTORY_LIMIT))
                .await;
            drop(companion);
            match page {
                Ok(page) => {
                    let now = crate::companion::now_ms();
                    let rows: Vec<PacketRow> = page
                        .items
                        .iter()
                        .map(|s| row(s, me.as_ref(), now))
                        .collect();
                    {
                        let mut screen = lock(&ctx.packets);
                        screen.list = page.items;
                        screen.me = me;
                    }
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        w.global::<Packets>()
                            .set_list(ModelRc::new(VecModel::from(rows)));
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
}

/// Wires the `Packets` global's callbacks. `pictures` is where saved QR pictures go.
pub(super) fn wire(ctx: &Rc<Ctx>, packets: &Packets<'_>, pictures: PathBuf) {
    let c = ctx.clone();
    packets.on_refresh(move || c.load_packets());

    let c = ctx.clone();
    packets.on_ask_quote(move |count, amount, message, only| {
        let Some(server) = c.server.clone() else {
            return;
        };
        let Ok(count) = count.trim().parse::<u32>() else {
            return c.fail(TAB_GIFTS, "Type how many packets, like 5.");
        };
        let amount = amount.trim().to_owned();
        if amount.is_empty() {
            return c.fail(TAB_GIFTS, "Type the amount, like 20.00.");
        }
        let allowed = match allowed_accounts(&only) {
            Ok(a) => a,
            Err(words) => return c.fail(TAB_GIFTS, words),
        };
        let random = c
            .window
            .upgrade()
            .is_none_or(|w| w.global::<Packets>().get_random());
        let message = message.trim().to_owned();
        let ctx = c.clone_ctx();
        ctx.status(TAB_GIFTS, true, "Working out what it takes…", "");
        c.io.spawn(async move {
            let mut companion = ctx.companion.lock().await;
            let quoted = async {
                let currency = companion.account_view(&server).await?.balance.currency;
                let Ok(amount) = Money::parse_decimal(&amount, currency) else {
                    return Ok(None);
                };
                let send = PacketsToSend {
                    count,
                    split: if random {
                        PacketSplit::Random { total: amount }
                    } else {
                        PacketSplit::Fixed { each: amount }
                    },
                    message,
                    allowed,
                    valid_for_s: None,
                };
                let quote = companion.quote_packets(&send).await?;
                Ok(Some((send, quote)))
            }
            .await;
            drop(companion);
            match quoted {
                Ok(Some((send, quote))) => {
                    let view = PacketQuoteView {
                        total: quote.total.to_string().into(),
                        each: if random {
                            format!(
                                "{count} packets of random amounts, about {} each.",
                                quote.average
                            )
                        } else {
                            format!("{count} packets of {} each.", quote.average)
                        }
                        .into(),
                        warning: quote.warning.clone().unwrap_or_default().into(),
                    };
                    lock(&ctx.packets).pending = Some(send);
                    ctx.status(TAB_GIFTS, false, "Check the amount, then send.", "");
                    let _ = ctx.window.upgrade_in_event_loop(move |w| {
                        let p = w.global::<Packets>();
                        p.set_quote(view);
                        p.set_quoting(true);
                    });
                }
                Ok(None) => ctx.fail(
                    TAB_GIFTS,
                    format!("{amount} is not an amount like 20.00. Nothing was sent."),
                ),
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    packets.on_cancel_quote(move || {
        lock(&c.packets).pending = None;
        if let Some(w) = c.window.upgrade() {
            w.global::<Packets>().set_quoting(false);
        }
        c.status(TAB_GIFTS, false, "Not sent.", "");
    });

    let c = ctx.clone();
    packets.on_send(move |pin| {
        let Some(server) = c.server.clone() else {
            return;
        };
        let Some(send) = lock(&c.packets).pending.clone() else {
            return;
        };
        let ctx = c.clone_ctx();
        ctx.status(TAB_GIFTS, true, "Sending the red packets…", "");
        c.io.spawn(async move {
            let companion = ctx.companion.lock().await;
            let me = companion.signed_in(&server);
            let credentials = match typed_credentials(me.clone(), &pin, "Nothing was sent.") {
                Ok(c) => c,
                Err(words) => return ctx.fail(TAB_GIFTS, words),
            };
            let sent = companion.send_packets(&credentials, &send).await;
            drop(companion);
            match sent {
                Ok(set) => {
                    let words = format!(
                        "Sent {} as {} red packets: show this code to your friends or send \
                         them the picture.",
                        set.total, set.count
                    );
                    lock(&ctx.packets).pending = None;
                    let _ = ctx.window.upgrade_in_event_loop(|w| {
                        w.global::<Packets>().set_quoting(false);
                    });
                    ctx.show_packets(set, me);
                    ctx.status(TAB_GIFTS, false, words, "");
                    ctx.load_packets();
                }
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    packets.on_open(move |i| {
        let (set, me) = {
            let screen = lock(&c.packets);
            (screen.list.get(i as usize).cloned(), screen.me.clone())
        };
        if let Some(set) = set {
            c.show_packets(set, me);
        }
    });

    let c = ctx.clone();
    packets.on_save(move || {
        let Some(set) = lock(&c.packets).shown.clone() else {
            return;
        };
        c.save_qr_picture(
            pictures.join(format!("couchpay-packets-{}.png", set.id.log_prefix())),
            set.link.to_string(),
            "Picture saved: send it to your friends.",
            |w, path| w.global::<Packets>().set_saved_to(path),
        );
    });

    let c = ctx.clone();
    packets.on_show_on_tv(move |i| {
        let Some(set) = lock(&c.packets).shown.clone() else {
            return;
        };
        let Some(tv) = lock(&c.nearby_tvs).get(i as usize).cloned() else {
            return;
        };
        let ctx = c.clone_ctx();
        ctx.status(
            TAB_GIFTS,
            true,
            format!("Asking {} to show them…", tv.tv_name),
            "",
        );
        c.io.spawn(async move {
            let offered = ctx
                .companion
                .lock()
                .await
                .offer_packets(&set.link, &Credentials::Session, &tv.tv_id)
                .await;
            match offered {
                Ok(_) => ctx.status(
                    TAB_GIFTS,
                    false,
                    format!(
                        "{} asks the room first: press OK on its remote to show them.",
                        tv.tv_name
                    ),
                    "",
                ),
                Err(e) => ctx.fail(TAB_GIFTS, say(&e)),
            }
        });
    });

    let c = ctx.clone();
    packets.on_close(move || {
        lock(&c.packets).shown = None;
        if let Some(w) = c.window.upgrade() {
            let p = w.global::<Packets>();
            p.set_showing(false);
            p.set_saved_to("".into());
        }
        c.status(TAB_GIFTS, false, "", "");
    });
}
