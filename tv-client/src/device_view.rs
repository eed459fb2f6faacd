//! What the Device menu shows, in words: one [`DeviceView`] per phase, rendered by
//! [`crate::ui`] on the message page (icon, title, detail, status line, progress bar and
//! up to two buttons).

use protocol::DeviceInfo;

use crate::state::{DevicePhase, DeviceScreen};
use crate::ui::{date, price};

/// The Device menu as text.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceView {
    pub icon: &'static str,
    /// 0 accent, 1 good, 2 warning, 3 bad.
    pub tint: i32,
    pub title: String,
    pub detail: String,
    pub status: String,
    pub primary: String,
    /// Empty: one button only.
    pub secondary: String,
    pub hint: &'static str,
    /// 0.0–1.0 while downloading; negative for no bar.
    pub progress: f32,
}

const HINT_ONE: &str = "OK  confirm      BACK  go back";
const HINT_TWO: &str = "◀ ▶  choose      OK  confirm      BACK  go back";
const HINT_WAIT: &str = "BACK  go back";

/// "123 KB" / "4.5 MB": sizes for people.
pub fn size_text(bytes: u64) -> String {
    if bytes < 1_000_000 {
        format!("{} KB", bytes.div_ceil(1000))
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

fn summary(info: &DeviceInfo) -> (String, String) {
    let detail = format!("Serial {} · Software {}", info.id, info.os_version);
    let status = match &info.sale {
        None => "Not bought through Couchpay".to_owned(),
        Some(s) => match s.refunded_at_ms {
            Some(_) => format!("Bought for {}; refunded", price(&s.amount)),
            None => format!(
                "Bought {} for {} · returnable until {}",
                date(s.sold_at_ms),
                price(&s.amount),
                date(s.refundable_until_ms)
            ),
        },
    };
    (detail, status)
}

/// The view of the Device menu in `d`'s phase.
pub fn device_view(d: &DeviceScreen) -> DeviceView {
    let plain = |icon, tint, title: String, detail: String, primary: &str| DeviceView {
        icon,
        tint,
        title,
        detail,
        status: String::new(),
        primary: primary.to_owned(),
        secondary: String::new(),
        hint: HINT_ONE,
        progress: -1.0,
    };
    let product = d
        .info
        .as_ref()
        .map_or("This TV", |i| i.product_name.as_str())
        .to_owned();
    match &d.phase {
        DevicePhase::NotSetUp => plain(
            "i",
            2,
            "Device services aren't set up on this TV".into(),
            "Updates and refunds need this TV's device credential. Ask the shop or the \
             maker to set it up."
                .into(),
            "Back",
        ),
        DevicePhase::Loading => DeviceView {
            hint: HINT_WAIT,
            ..plain(
                "…",
                0,
                "Looking up this TV".into(),
                String::new(),
                "Please wait",
            )
        },
        DevicePhase::Info => {
            let info = d.info.as_ref();
            let (detail, status) = info.map(summary).unwrap_or_default();
            let refundable = d.refundable();
            DeviceView {
                status,
                secondary: if refundable {
                    "Request refund".into()
                } else {
                    String::new()
                },
                hint: if refundable { HINT_TWO } else { HINT_ONE },
                ..plain("⚙", 0, product, detail, "Check for updates")
            }
        }
        DevicePhase::Checking => DeviceView {
            hint: HINT_WAIT,
            ..plain(
                "…",
                0,
                "Checking for updates".into(),
                String::new(),
                "Please wait",
            )
        },
        DevicePhase::UpToDate(v) => plain(
            "✓",
            1,
            "This TV is up to date".into(),
            format!("Software {v} is the newest."),
            "OK",
        ),
        DevicePhase::Available(p) => DeviceView {
            secondary: "Not now".into(),
            hint: HINT_TWO,
            ..plain(
                "↓",
                0,
                format!("Software {} is available", p.version),
                format!(
                    "Download size {}. This TV runs {}.",
                    size_text(p.size),
                    d.info
                        .as_ref()
                        .map_or_else(|| "an older version".into(), |i| i.os_version.to_string())
                ),
                "Install update",
            )
        },
        DevicePhase::Downloading { package, received } => {
            let frac = if package.size == 0 {
                1.0
            } else {
                *received as f64 / package.size as f64
            };
            DeviceView {
                status: format!(
                    "{}% · {} of {}",
                    (frac * 100.0).floor() as u32,
                    size_text(*received),
                    size_text(package.size)
                ),
                hint: HINT_WAIT,
                progress: frac as f32,
                ..plain(
                    "↓",
                    0,
                    format!("Downloading software {}", package.version),
                    "The TV checks the download before it installs it.".into(),
                    "Please wait",
                )
            }
        }
        DevicePhase::Installing(p) => DeviceView {
            hint: HINT_WAIT,
            progress: 1.0,
            ..plain(
                "…",
                0,
                format!("Installing software {}", p.version),
                "The download passed its checks.".into(),
                "Please wait",
            )
        },
        DevicePhase::Installed(v) => plain(
            "✓",
            1,
            format!("Software {v} is installed"),
            "This TV is up to date.".into(),
            "OK",
        ),
        DevicePhase::UpdateFailed { title, detail } | DevicePhase::Failed { title, detail } => {
            plain("!", 3, title.clone(), detail.clone(), "OK")
        }
        DevicePhase::ConfirmRefund => {
            let amount = d
                .info
                .as_ref()
                .and_then(|i| i.sale.as_ref())
                .map_or_else(String::new, |s| price(&s.amount));
            DeviceView {
                secondary: "Keep it".into(),
                hint: HINT_TWO,
                ..plain(
                    "↩",
                    2,
                    format!("Refund this {product}?"),
                    format!(
                        "{amount} goes back to the account that paid for it, and what came \
                         with the box stops working. Send the box back to the shop."
                    ),
                    "Refund",
                )
            }
        }
        DevicePhase::Refunding => DeviceView {
            hint: HINT_WAIT,
            ..plain(
                "…",
                0,
                "Asking for the refund".into(),
                String::new(),
                "Please wait",
            )
        },
        DevicePhase::Refunded(r) => plain(
            "✓",
            1,
            "Refunded".into(),
            format!(
                "{} is back in the account that paid for this {product}.",
                price(&r.amount)
            ),
            "OK",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(524_288), "525 KB");
        assert_eq!(size_text(999), "1 KB");
        assert_eq!(size_text(104_857_600), "104.9 MB");
    }
}
