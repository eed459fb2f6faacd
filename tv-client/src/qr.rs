//! Renders the pay link as a QR code into an RGBA buffer for the order screen.
//!
//! The buffer has one pixel per module (plus the quiet zone); the UI scales it by a whole
//! number of screen pixels per module with pixelated sampling, so edges stay sharp.
//!
//! Size for scanning from a sofa: a pay link is 48–60 QR-alphanumeric characters, which
//! at error-correction level M is version 3 or 4 (29 or 33 modules). With the 4-module
//! quiet zone that is 37–41 modules across, drawn at 16 screen pixels per module at
//! 1080p (10–11 px at 720p). On a 55" 1080p TV (0.63 mm pixels) a module is about
//! 10 mm and the code about 30 cm wide: the usual "scan distance ≤ 10 × code width"
//! rule puts it comfortably inside 3 m.

use protocol::PayLink;
use qrcode::{Color, EcLevel, QrCode};

/// Modules of white border on every side (ISO/IEC 18004 asks for at least 4).
pub const QUIET_ZONE_MODULES: usize = 4;
/// Screen pixels per module at 1080p; the UI scales it with the window height.
pub const MODULE_PX_AT_1080P: u32 = 16;

/// Why a QR code could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    #[error("the pay link does not fit in a QR code: {0}")]
    TooLong(#[from] qrcode::types::QrError),
}

/// A rendered QR code: RGBA8 pixels, one pixel per module, quiet zone included.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrImage {
    /// Width and height in pixels (= modules including the quiet zone).
    pub size: u32,
    /// Modules of the code itself, without the quiet zone.
    pub modules: u32,
    pub rgba: Vec<u8>,
}

/// Encodes `link` (already upper case, so QR alphanumeric mode applies) at error
/// correction level M: 15 % of the code may be smudged or glared and it still scans.
pub fn render(link: &PayLink) -> Result<QrImage, QrError> {
    render_text(&link.to_string())
}

/// Encodes any Couchpay link (pay link, red-packet claim link) the same way.
pub fn render_text(text: &str) -> Result<QrImage, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)?;
    let modules = code.width();
    let size = modules + 2 * QUIET_ZONE_MODULES;
    let mut rgba = vec![0xFF; size * size * 4];
    for (i, color) in code.to_colors().into_iter().enumerate() {
        if color == Color::Dark {
            let (x, y) = (
                i % modules + QUIET_ZONE_MODULES,
                i / modules + QUIET_ZONE_MODULES,
            );
            let p = (y * size + x) * 4;
            rgba[p..p + 3].fill(0);
        }
    }
    Ok(QrImage {
        size: u32::try_from(size).unwrap_or(u32::MAX),
        modules: u32::try_from(modules).unwrap_or(u32::MAX),
        rgba,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{OrderId, ServerUrl};

    #[test]
    fn pay_link_fits_version_3_or_4_with_quiet_zone() {
        for server in ["http://127.0.0.1:8080", "http://192.168.100.200:65535"] {
            let link = PayLink::new(ServerUrl::parse(server).unwrap(), OrderId::random());
            let qr = render(&link).unwrap();
            assert!(
                matches!(qr.modules, 29 | 33),
                "{server}: {} modules",
                qr.modules
            );
            assert_eq!(qr.size, qr.modules + 2 * QUIET_ZONE_MODULES as u32);
            assert_eq!(qr.rgba.len(), (qr.size * qr.size * 4) as usize);
            // The quiet zone is white all round: first row and first column.
            assert!(qr.rgba[..(qr.size * 4) as usize].iter().all(|&b| b == 0xFF));
            // The top-left finder pattern starts right after the quiet zone.
            let q = QUIET_ZONE_MODULES;
            let p = (q * qr.size as usize + q) * 4;
            assert_eq!(&qr.rgba[p..p + 4], &[0, 0, 0, 0xFF]);
        }
    }
}
