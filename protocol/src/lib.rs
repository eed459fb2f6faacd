//! Couchpay's wire protocol, shared by the TV, the companion and the server.
//!
//! Everything that crosses a process boundary is defined here: checked value types
//! ([`Money`], [`OrderId`], [`ShortCode`], …), the pay link carried by the QR code
//! ([`PayLink`]), the `/v1` request/response/event types ([`api`]), the mDNS discovery
//! record ([`discovery`]), the BLE advert payload and GATT ids ([`ble`]) and, behind the `client` feature, a typed async HTTP client.
//!
//! Only the `client` module does I/O.

pub mod api;
pub mod ble;
#[cfg(feature = "client")]
pub mod client;
pub mod device;
pub mod discovery;
mod ids;
mod money;
mod paylink;
#[cfg(feature = "openapi")]
mod schema;
pub mod text;
pub mod webhook;

pub use api::*;
pub use device::{HardwareId, HardwareIdKind, OsVersion, UpdateKey, VendorKey};
pub use discovery::{Announcement, DiscoveryRecord, PacketsRecord, SERVICE_TYPE, TvPresence};
pub use ids::{
    AccountId, DeviceId, IdempotencyKey, ItemId, OrderId, PacketSetId, PhoneNumber, Pin,
    SHORT_CODE_ALPHABET, ShortCode, Token, VoucherId, hex, random_bytes,
};
pub use money::{Currency, Money};
pub use paylink::{
    MAX_SERVER_URL_LEN, MAX_URL_LEN, PacketLink, PayLink, ServerUrl, VoucherLink,
    is_qr_alphanumeric,
};

/// Why a value from outside (wire, QR, user input) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("not an ISO 4217 currency code")]
    Currency,
    #[error("not a valid amount")]
    Amount,
    #[error("not a valid order id")]
    OrderId,
    #[error("not a valid short code (8 letters from {})", std::str::from_utf8(SHORT_CODE_ALPHABET).unwrap_or(""))]
    ShortCode,
    #[error("not a valid idempotency key (8-64 characters of A-Z a-z 0-9 _ -)")]
    IdempotencyKey,
    #[error("not a valid account id")]
    AccountId,
    #[error("not a valid item id")]
    ItemId,
    #[error("not a valid device id")]
    DeviceId,
    #[error("not a valid token")]
    Token,
    #[error("a PIN is 4 to 12 digits")]
    Pin,
    #[error("not a phone number (country code and 8 to 15 digits in all)")]
    PhoneNumber,
    #[error("not a valid server URL (http(s)://host[:port])")]
    ServerUrl,
    #[error("not a Couchpay pay link")]
    PayLink,
    #[error("not a valid voucher id")]
    VoucherId,
    #[error("not a Couchpay voucher link")]
    VoucherLink,
    #[error("not a valid red-packet id")]
    PacketSetId,
    #[error("not a Couchpay red-packet link")]
    PacketLink,
    #[error("discovery record lacks the `{0}` key")]
    MissingTxtKey(&'static str),
    #[error("unsupported discovery record version")]
    RecordVersion,
    #[error("unknown kind of discovery record")]
    RecordKind,
    #[error("not a version (1 to 4 dot-separated numbers, e.g. 1.4.2)")]
    OsVersion,
}
