//! Sharing by QR code: the picture a phone shows or saves for a link (voucher, red
//! packets), reading a link back out of a saved picture, and what a scanned Couchpay QR
//! code can hold.

use std::path::Path;
use std::sync::Arc;

use image::{GrayImage, Luma};
use protocol::{PacketLink, PayLink, VoucherLink};
use qrcode::{Color, EcLevel, QrCode};

use super::CompanionError;
use crate::decode::{Decoder, picture_from_path};

/// Modules of white border around a saved QR code (ISO/IEC 18004 asks for 4).
const QUIET_ZONE: u32 = 4;
/// Pixels per module in a saved picture: about 370 px across, sharp enough to be read
/// from another phone's screen or after a messenger recompresses it.
const MODULE_PX: u32 = 9;

/// What a Couchpay QR code can hold: an order to pay, a voucher to redeem, red packets
/// to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scanned {
    Pay(PayLink),
    Voucher(VoucherLink),
    Packets(PacketLink),
}

impl Scanned {
    /// The link in a decoded QR text, if it is a Couchpay one.
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(l) = PayLink::parse(text) {
            return Some(Self::Pay(l));
        }
        if let Ok(l) = VoucherLink::parse(text) {
            return Some(Self::Voucher(l));
        }
        PacketLink::parse(text).ok().map(Self::Packets)
    }
}

/// A predicate for the decoder: any Couchpay link counts as a good decode.
pub fn accept_couchpay_link() -> Arc<dyn Fn(&str) -> bool + Send + Sync> {
    Arc::new(|text: &str| Scanned::parse(text).is_some())
}

/// `text` as a QR code in a grey picture, quiet zone included, [`MODULE_PX`] pixels per
/// module, at error-correction level M (like the TV's).
pub fn qr_picture(text: &str) -> GrayImage {
    // Couchpay links are at most MAX_URL_LEN QR-alphanumeric characters: they always fit.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .expect("a Couchpay link fits in a QR code");
    let modules = code.width() as u32;
    let colors = code.to_colors();
    let size = (modules + 2 * QUIET_ZONE) * MODULE_PX;
    GrayImage::from_fn(size, size, |x, y| {
        let (mx, my) = (x / MODULE_PX, y / MODULE_PX);
        let dark = (QUIET_ZONE..QUIET_ZONE + modules).contains(&mx)
            && (QUIET_ZONE..QUIET_ZONE + modules).contains(&my)
            && colors[((my - QUIET_ZONE) * modules + (mx - QUIET_ZONE)) as usize] == Color::Dark;
        Luma([if dark { 0 } else { 255 }])
    })
}

/// Saves `text` as a QR code PNG at `path`.
pub fn save_qr_png(text: &str, path: &Path) -> Result<(), CompanionError> {
    qr_picture(text)
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the QR picture");
            CompanionError::CannotSave(path.display().to_string())
        })
}

/// The first link `parse` accepts in the picture at `path` (photo, screenshot, file
/// from a message); `None` when the picture cannot be read or holds no such link.
pub fn link_in_picture<T>(path: &Path, parse: impl Fn(&str) -> Option<T> + Sync) -> Option<T> {
    let frame = picture_from_path(path)
        .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "cannot read the picture"))
        .ok()?;
    let report = Decoder::default().decode(&frame, &|t| parse(t).is_some());
    report.text.as_deref().and_then(parse)
}
