//! Red packets scanned in the window (SPEC R3): opening a packet moves money only to
//! the person scanning, so the signed-in account claims it at once, as a red-packet app
//! does when a packet is tapped; the wallet then shows what came in.

use protocol::PacketLink;
use slint::ComponentHandle;

use super::ui::Phone;
use super::{Ctx, TAB_WALLET, say};
use crate::companion::Credentials;

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
