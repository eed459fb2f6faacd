//! The companion's side of vouchers (SPEC V): make one and show or save its QR code;
//! recognise a voucher link in a scan or a saved picture, check it on its (trusted)
//! server, and redeem all or part of it into the signed-in account.

use std::path::Path;

use image::GrayImage;
use protocol::ErrorCode;
use protocol::client::ClientError;
use protocol::{
    AccountId, CreateVoucher, IdempotencyKey, Money, Page, PayerAuth, RedeemVoucher, Redemption,
    ServerUrl, VoidVoucher, Voucher, VoucherFilter, VoucherId, VoucherLink, VoucherSettings,
};

use super::{Companion, CompanionError, Credentials, now_ms, share};

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
    pub(super) fn auth_for(
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

    pub(super) fn first_server(&self) -> Result<ServerUrl, CompanionError> {
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

    /// The signed-in account's voucher settings on `server` (SPEC V6).
    pub async fn voucher_settings(
        &self,
        server: &ServerUrl,
    ) -> Result<VoucherSettings, CompanionError> {
        let (client, s) = self.session_for(server)?;
        client
            .voucher_settings(&s.account, &s.token)
            .await
            .map_err(|e| voucher_error(server, e))
    }

    /// Changes the signed-in account's voucher settings on `server`.
    pub async fn set_voucher_settings(
        &self,
        server: &ServerUrl,
        settings: &VoucherSettings,
    ) -> Result<VoucherSettings, CompanionError> {
        let (client, s) = self.session_for(server)?;
        client
            .set_voucher_settings(&s.account, &s.token, settings)
            .await
            .map_err(|e| voucher_error(server, e))
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

/// The voucher's QR code as a grey picture (see [`share::qr_picture`]).
pub fn voucher_qr(link: &VoucherLink) -> GrayImage {
    share::qr_picture(&link.to_string())
}

/// Saves the voucher's QR code as a PNG at `path`.
pub fn save_voucher_png(link: &VoucherLink, path: &Path) -> Result<(), CompanionError> {
    share::save_qr_png(&link.to_string(), path)
}

/// The voucher link in a saved picture (photo, screenshot, file from a message).
pub fn voucher_in_picture(path: &Path) -> Result<VoucherLink, CompanionError> {
    share::link_in_picture(path, |t| VoucherLink::parse(t).ok())
        .ok_or(CompanionError::NoVoucherInPicture)
}
