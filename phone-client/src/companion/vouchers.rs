//! The companion's side of vouchers (SPEC V): make one and show or save its QR code;
//! recognise a voucher link in a scan or a saved picture, check it on its (trusted)
//! server, and redeem all or part of it into the signed-in account.

use std::path::Path;

use image::{GrayImage, Luma};
use protocol::ErrorCode;
use protocol::client::ClientError;
use protocol::{
    AccountId, CreateVoucher, IdempotencyKey, Money, Page, PayerAuth, RedeemVoucher, Redemption,
    ServerUrl, VoidVoucher, Voucher, VoucherFilter, VoucherId, VoucherLink,
};
use qrcode::{Color, EcLevel, QrCode};

use super::{Companion, CompanionError, Credentials, now_ms};
use crate::decode::{Decoder, picture_from_path};

/// Modules of white border around a saved voucher QR (ISO/IEC 18004 asks for 4).
const QUIET_ZONE: u32 = 4;
/// Pixels per module in a saved voucher picture: about 370 px across, sharp enough to be
/// read from another phone's screen or after a messenger recompresses it.
const MODULE_PX: u32 = 9;

/// A voucher request's failure: the server's own words for a refused limit (largest
/// voucher, too many live ones), else as any other request.
fn voucher_error(server: &ServerUrl, e: ClientError) -> CompanionError {
    match (&e, e.code()) {
        (ClientError::Api { error, .. }, Some(ErrorCode::LimitExceeded)) => {
            CompanionError::Voucher {
                message: error.message.clone(),
            }
        }
        _ => CompanionError::from_client(server, e),
    }
}

impl Companion {
    /// The account and proof for a request to `server`: the PIN given, or the session
    /// remembered for that server.
    fn auth_for(
        &self,
        server: &ServerUrl,
        credentials: &Credentials,
    ) -> Result<(AccountId, PayerAuth), CompanionError> {
        match credentials {
            Credentials::Pin { account, pin } => Ok((account.clone(), PayerAuth::Pin(pin.clone()))),
            Credentials::Session => {
                let s = self
                    .state
                    .get()
                    .session(server, now_ms())
                    .cloned()
                    .ok_or(CompanionError::NotLoggedIn)?;
                Ok((s.account, PayerAuth::Session(s.token)))
            }
        }
    }

    fn first_server(&self) -> Result<ServerUrl, CompanionError> {
        Ok(self
            .servers
            .first()
            .ok_or(CompanionError::NoServer)?
            .server()
            .clone())
    }

    /// Makes a voucher of `amount` on the first trusted server, valid for `valid_for_s`
    /// (the server's default, a day, when `None`), optionally only for `restrict_to`.
    pub async fn create_voucher(
        &self,
        credentials: &Credentials,
        amount: Money,
        valid_for_s: Option<u64>,
        restrict_to: Option<AccountId>,
    ) -> Result<Voucher, CompanionError> {
        let server = self.first_server()?;
        let (account, auth) = self.auth_for(&server, credentials)?;
        self.client(&server)?
            .create_voucher(&CreateVoucher {
                account,
                auth,
                amount,
                valid_for_s,
                restrict_to,
            })
            .await
            .map_err(|e| voucher_error(&server, e))
    }

    /// The voucher behind `link`, as its server has it (what the payee checks before
    /// redeeming). Links to servers this companion does not trust are refused unasked.
    pub async fn open_voucher(&self, link: &VoucherLink) -> Result<Voucher, CompanionError> {
        let client = self.client(&link.server)?;
        let v = client
            .voucher(&link.voucher)
            .await
            .map_err(|e| voucher_error(&link.server, e))?;
        if v.id != link.voucher {
            return Err(CompanionError::RecordMismatch("voucher id"));
        }
        Ok(v)
    }

    /// Redeems `amount` (all of it when `None`) of the voucher at `link` into the account
    /// of `credentials`. A lost answer is retried once with the same idempotency key,
    /// which can never move the money twice.
    pub async fn redeem_voucher(
        &self,
        link: &VoucherLink,
        credentials: &Credentials,
        amount: Option<Money>,
    ) -> Result<Redemption, CompanionError> {
        let client = self.client(&link.server)?;
        let (account, auth) = self.auth_for(&link.server, credentials)?;
        let req = RedeemVoucher {
            account,
            auth,
            amount,
        };
        let key = IdempotencyKey::random();
        let mut answer = client.redeem_voucher(&link.voucher, &key, &req).await;
        if answer.as_ref().is_err_and(|e| e.is_transient()) {
            answer = client.redeem_voucher(&link.voucher, &key, &req).await;
        }
        answer.map_err(|e| voucher_error(&link.server, e))
    }

    /// Voids an unused voucher of the signed-in payer on the first trusted server.
    pub async fn void_voucher(
        &self,
        id: &VoucherId,
        credentials: &Credentials,
    ) -> Result<Voucher, CompanionError> {
        let server = self.first_server()?;
        let (account, auth) = self.auth_for(&server, credentials)?;
        self.client(&server)?
            .void_voucher(id, &VoidVoucher { account, auth })
            .await
            .map_err(|e| voucher_error(&server, e))
    }

    /// One page of the signed-in account's vouchers on the first trusted server.
    pub async fn vouchers(&self, filter: &VoucherFilter) -> Result<Page<Voucher>, CompanionError> {
        let server = self.first_server()?;
        let (client, s) = self.session_for(&server)?;
        client
            .vouchers(&s.account, &s.token, filter)
            .await
            .map_err(|e| voucher_error(&server, e))
    }
}

/// The voucher's QR code as a grey picture, quiet zone included, [`MODULE_PX`] pixels
/// per module, at error-correction level M (like the TV's).
pub fn voucher_qr(link: &VoucherLink) -> GrayImage {
    // A voucher link is at most MAX_URL_LEN QR-alphanumeric characters: it always fits.
    let code = QrCode::with_error_correction_level(link.to_string().as_bytes(), EcLevel::M)
        .expect("a voucher link fits in a QR code");
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

/// Saves the voucher's QR code as a PNG at `path`.
pub fn save_voucher_png(link: &VoucherLink, path: &Path) -> Result<(), CompanionError> {
    voucher_qr(link)
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| {
            tracing::warn!(path = %path.display(), error = %e, "cannot save the voucher picture");
            CompanionError::CannotSave(path.display().to_string())
        })
}

/// The voucher link in a saved picture (photo, screenshot, file from a message).
pub fn voucher_in_picture(path: &Path) -> Result<VoucherLink, CompanionError> {
    let frame = picture_from_path(path).map_err(|e| {
        tracing::warn!(path = %path.display(), error = %e, "cannot read the picture");
        CompanionError::NoVoucherInPicture
    })?;
    let report = Decoder::default().decode(&frame, &|t| VoucherLink::parse(t).is_ok());
    report
        .text
        .as_deref()
        .and_then(|t| VoucherLink::parse(t).ok())
        .ok_or(CompanionError::NoVoucherInPicture)
}
