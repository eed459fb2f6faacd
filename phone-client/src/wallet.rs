//! How the wallet shows money, receipts and messages: shared by the window and the CLI.

use chrono::{Local, TimeZone};
use protocol::{AccountView, FundingSource, Receipt};

/// Receipts fetched per page in the wallet.
pub const RECEIPTS_PAGE: u32 = 10;

/// A server time (Unix ms) in the device's time zone, e.g. `3 Mar 2026, 14:05`.
pub fn when(ms: i64) -> String {
    match Local.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%-d %b %Y, %H:%M").to_string(),
        None => "unknown time".to_owned(),
    }
}

/// "Wallet 495.01 EUR" and the spendable part when some money is held.
pub fn wallet_line(a: &AccountView) -> String {
    if a.held.minor > 0 {
        format!("{} ({} held for vouchers)", a.balance, a.held)
    } else {
        a.balance.to_string()
    }
}

/// The linked card's available credit, or that there is none.
pub fn card_line(a: &AccountView) -> String {
    match &a.card_available {
        Some(m) => format!("Card: {m} available"),
        None => "No card linked".to_owned(),
    }
}

/// The second line of a receipt: when, and to whom.
pub fn receipt_detail(r: &Receipt) -> String {
    format!("{} · {}", when(r.paid_at_ms), r.merchant.name)
}

/// The third line of a receipt: on which TV, from which source.
pub fn receipt_source(r: &Receipt) -> String {
    let from = match r.funding {
        FundingSource::Wallet => "wallet",
        FundingSource::Card => "card",
    };
    format!("{} · from {from}", r.device.name)
}

/// A message body as shown on screen: links are named, not printed.
pub fn screen_body(body: &str) -> String {
    body.split(' ')
        .map(|w| if w.contains("://") { "(pay link)" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}
