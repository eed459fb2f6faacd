//! Request, response and event types of the `/v1` HTTP API.
//!
//! Times are Unix milliseconds (`*_ms`). Every error response has the body
//! [`ErrorBody`] with a stable machine-readable [`ErrorCode`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::device::{HardwareId, HardwareIdKind, OsVersion};
use crate::{
    AccountId, DeviceId, IdempotencyKey, ItemId, Money, OrderId, PacketLink, PacketSetId, PayLink,
    PhoneNumber, Pin, ShortCode, Token, VoucherId, VoucherLink,
};

/// The API version prefix every endpoint lives under.
pub const API_PREFIX: &str = "/v1";

/// Header carrying the client-generated idempotency key of a payment.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// What kind of thing an item is, which decides what "unlocked" means (SPEC P7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A film or episode: the device may play it.
    Video,
    /// A subscription: the device's membership is active for `period_days`.
    Membership,
    /// Physical goods: the merchant receives the payer's delivery address.
    Physical,
}

/// A merchant as shown to payers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Merchant {
    pub id: AccountId,
    pub name: String,
}

/// One thing the TV can sell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CatalogItem {
    pub id: ItemId,
    pub title: String,
    pub kind: ItemKind,
    pub description: String,
    pub price: Money,
    pub merchant: Merchant,
    /// Path of the poster image on the server, e.g. `/assets/posters/night-train.svg`.
    pub poster: String,
    /// For memberships: how long one purchase lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_days: Option<u32>,
    /// For devices sold through the catalog (physical goods): the product whose register
    /// entry a paid order creates (SPEC D1), e.g. `couchpay-box`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_product: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Catalog {
    pub items: Vec<CatalogItem>,
}

/// The device (TV) an order was created on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Device {
    pub id: DeviceId,
    pub name: String,
}

/// `POST /v1/orders` — the TV asks for an order for one item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub item_id: ItemId,
    pub device_id: DeviceId,
    /// Friendly TV name shown on the companion, e.g. "Living-room TV" (at most 64 characters).
    pub device_name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Paid,
    Expired,
    Cancelled,
}

impl OrderStatus {
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending)
    }
}

/// The short summary of an item carried on an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderItem {
    pub id: ItemId,
    pub title: String,
    pub kind: ItemKind,
}

/// An order as every party sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Order {
    pub id: OrderId,
    pub short_code: ShortCode,
    pub pay_link: PayLink,
    pub item: OrderItem,
    pub amount: Money,
    pub merchant: Merchant,
    pub device: Device,
    pub status: OrderStatus,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at_ms: Option<i64>,
}

/// Answer to `POST /v1/orders`: the order plus the TV's secret for cancelling it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedOrder {
    pub order: Order,
    /// Only the TV that created the order holds this; it authorises `cancel`.
    pub tv_token: Token,
}

/// `POST /v1/orders/{id}/cancel`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    pub tv_token: Token,
}

/// How the payer proves who they are when paying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PayerAuth {
    /// The account's PIN, checked with argon2 on the server.
    Pin(Pin),
    /// A session token from `POST /v1/sessions` for this account.
    Session(Token),
}

/// `POST /v1/orders/{id}/pay`, with the `Idempotency-Key` header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PayRequest {
    pub account: AccountId,
    pub auth: PayerAuth,
    /// Required for physical goods; passed to the merchant (SPEC P7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_address: Option<String>,
}

/// Which of the payer's sources paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum FundingSource {
    Wallet,
    Card,
}

/// Proof of a completed payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Receipt {
    pub payment_id: IdempotencyKey,
    pub order_id: OrderId,
    pub item: OrderItem,
    pub amount: Money,
    pub merchant: Merchant,
    pub device: Device,
    pub payer: AccountId,
    pub funding: FundingSource,
    pub paid_at_ms: i64,
}

/// `POST /v1/sessions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub account: AccountId,
    pub pin: Pin,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Session {
    pub account: AccountId,
    pub token: Token,
    pub expires_at_ms: i64,
}

/// `GET /v1/accounts/{id}` (bearer session).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountView {
    pub id: AccountId,
    pub name: String,
    /// The wallet's balance including held (frozen) money.
    pub balance: Money,
    /// Money frozen by holds (vouchers); `balance - held` can be spent.
    pub held: Money,
    /// The linked card's available credit, if a card is linked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_available: Option<Money>,
}

/// One page of a list, newest first. When `next_cursor` is present, pass it back as
/// `?cursor=` (with the same `?limit=`) to get the next page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    pub items: Vec<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A purchase unlocked on a device (SPEC P7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entitlement {
    pub order_id: OrderId,
    pub item: OrderItem,
    pub granted_at_ms: i64,
    /// Memberships end; films and goods do not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entitlements {
    pub device_id: DeviceId,
    /// Newest first; one page (see [`Page`]).
    pub entitlements: Vec<Entitlement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Events on `GET /v1/orders/{id}/events` (server-sent events, for the TV).
///
/// The first event of every stream is a `snapshot` with the order's current state, so
/// a subscriber that connects late (or reconnects) never misses a final state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OrderEvent {
    Snapshot { order: Order },
    Paid { order: Order },
    Expired { order: Order },
    Cancelled { order: Order },
}

impl OrderEvent {
    pub fn order(&self) -> &Order {
        match self {
            Self::Snapshot { order }
            | Self::Paid { order }
            | Self::Expired { order }
            | Self::Cancelled { order } => order,
        }
    }

    /// The SSE `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Snapshot { .. } => "snapshot",
            Self::Paid { .. } => "paid",
            Self::Expired { .. } => "expired",
            Self::Cancelled { .. } => "cancelled",
        }
    }
}

/// Events on `GET /v1/accounts/{id}/events` (server-sent events, for the companion).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "events are built once and moved, boxing buys nothing"
)]
pub enum AccountEvent {
    /// Sent first on every stream so the client knows it is live.
    Hello {
        account: AccountId,
    },
    Receipt {
        receipt: Receipt,
    },
    /// Something the owner should know about their account's safety, in plain words
    /// (e.g. a device was blocked after wrong PINs).
    SecurityAlert {
        message: String,
        at_ms: i64,
    },
    /// One of the account's vouchers was redeemed (fully or in part).
    VoucherRedeemed {
        voucher: Voucher,
    },
    /// One of the account's vouchers expired unused: its money is free again.
    VoucherExpired {
        voucher: Voucher,
    },
    /// A redemption of one of the account's vouchers could not move the money: the
    /// voucher is `failed` and its money is free again.
    VoucherFailed {
        voucher: Voucher,
    },
    /// A device this account paid for was refunded: the price is back in the account.
    DeviceRefunded {
        refund: DeviceRefund,
    },
    /// Someone claimed a packet of a set this account sent.
    PacketClaimed {
        set: PacketSet,
        recipient: AccountId,
        amount: Money,
    },
    /// Every packet of a set this account sent was claimed.
    PacketsFinished {
        set: PacketSet,
    },
    /// A set this account sent expired: what nobody claimed came back.
    PacketsRefunded {
        set: PacketSet,
    },
    /// An event this client does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

impl AccountEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::Receipt { .. } => "receipt",
            Self::SecurityAlert { .. } => "security_alert",
            Self::VoucherRedeemed { .. } => "voucher_redeemed",
            Self::VoucherExpired { .. } => "voucher_expired",
            Self::VoucherFailed { .. } => "voucher_failed",
            Self::DeviceRefunded { .. } => "device_refunded",
            Self::PacketClaimed { .. } => "packet_claimed",
            Self::PacketsFinished { .. } => "packets_finished",
            Self::PacketsRefunded { .. } => "packets_refunded",
            Self::Other => "other",
        }
    }
}

/// Result of the ledger audit (`GET /v1/audit`, `couchpay-server audit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditReport {
    pub ok: bool,
    pub accounts: u64,
    pub transfers: u64,
    /// Per currency: total top-ups recorded and the sum over all non-system balances.
    pub currencies: Vec<CurrencyAudit>,
    /// Human-readable descriptions of every inconsistency found (empty when `ok`).
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrencyAudit {
    pub currency: String,
    pub topped_up_minor: u64,
    pub balances_minor: u64,
}

/// `POST /v1/orders/{id}/phone` — the TV asks to pay by phone number (SPEC W2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PhonePayRequest {
    pub tv_token: Token,
    pub phone: PhoneNumber,
}

/// What the server sent to the phone number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PhonePayKind {
    /// The number is bound to an account: an SMS with a 6-digit code was sent (W3).
    CodeSent,
    /// The number is not bound: an SMS with the pay link was sent (W5).
    LinkSent,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PhonePayStarted {
    pub kind: PhonePayKind,
    /// The number as the TV may show it, e.g. `+•••••••001`.
    pub phone_masked: String,
    /// When the code stops working (only for `code_sent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_expires_at_ms: Option<i64>,
}

/// `POST /v1/orders/{id}/phone/confirm` — the reply with the SMS code completes the payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PhoneConfirm {
    pub phone: PhoneNumber,
    pub code: String,
}

/// One SMS in the stub's outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SmsMessage {
    pub to: PhoneNumber,
    pub body: String,
    pub sent_at_ms: i64,
}

/// Stable machine-readable error codes. Clients match on these, never on messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request body, path or a header is malformed (bad id, bad JSON, bad link).
    InvalidRequest,
    /// The request body is larger than the server accepts.
    PayloadTooLarge,
    UnknownOrder,
    UnknownItem,
    UnknownAccount,
    OrderExpired,
    OrderCancelled,
    AlreadyPaid,
    WrongPin,
    /// Too many wrong PINs: the account is locked for a while.
    AccountLocked,
    InsufficientFunds,
    /// Missing, expired or foreign session token or TV token.
    Unauthorized,
    /// The same idempotency key was used with a different request.
    IdempotencyConflict,
    /// Too many requests (e.g. short-code guessing); retry later.
    RateLimited,
    /// A physical item needs a delivery address.
    DeliveryAddressRequired,
    /// The SMS code is wrong; `message` says how many tries are left.
    WrongCode,
    /// The SMS code has expired, was used up, or none was sent to this number.
    CodeExpired,
    /// Too many wrong SMS codes: ask the TV for a new one.
    TooManyAttempts,
    /// The server is shutting down or overloaded; retry.
    Unavailable,
    Internal,
    /// No such endpoint (or resource) on this server.
    NotFound,
    /// The endpoint exists but not with this method; the `Allow` header lists the ones it has.
    MethodNotAllowed,
    /// The request's URI is longer than the server accepts.
    UriTooLong,
    /// The request's headers are larger than the server accepts.
    HeadersTooLarge,
    /// An amount or a balance would exceed one of the server's named limits.
    LimitExceeded,
    /// The device already owns this item (a film, an active membership): nothing to buy.
    AlreadyOwned,
    /// No payment with this idempotency key for this payer.
    UnknownPayment,
    /// The test clock is off: start the server with `--test-clock`.
    TestClockDisabled,
    UnknownVoucher,
    /// The voucher was redeemed already (at most once, SPEC V3).
    VoucherRedeemed,
    /// The voucher was voided by its payer.
    VoucherVoided,
    /// The voucher's validity ran out.
    VoucherExpired,
    /// An earlier redemption failed; the voucher's money went back to its payer.
    VoucherFailed,
    /// This needs the account's PIN, not only a session (the voucher settings say so).
    PinRequired,
    /// The caller may not do this (redeem a voucher meant for someone else, say).
    NotAllowed,
    /// The amount or account is in another currency than the voucher.
    CurrencyMismatch,
    UnknownPackets,
    /// This account already claimed a packet of this set.
    AlreadyClaimed,
    /// Every packet of the set is taken.
    SoldOut,
    /// The set expired; what nobody claimed went back to the sender.
    PacketsExpired,
    /// No device with this id in the register of sold devices.
    UnknownDevice,
    /// This device's sale was refunded already (at most once, SPEC D3).
    AlreadyRefunded,
    /// The device's return window has closed: it can no longer be refunded.
    ReturnWindowClosed,
    /// The device has no paid sale through Couchpay, so there is nothing to refund.
    NotRefundable,
    /// A code this client does not know (sent by a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnknownOrder => "unknown_order",
            Self::UnknownItem => "unknown_item",
            Self::UnknownAccount => "unknown_account",
            Self::OrderExpired => "order_expired",
            Self::OrderCancelled => "order_cancelled",
            Self::AlreadyPaid => "already_paid",
            Self::WrongPin => "wrong_pin",
            Self::AccountLocked => "account_locked",
            Self::InsufficientFunds => "insufficient_funds",
            Self::Unauthorized => "unauthorized",
            Self::IdempotencyConflict => "idempotency_conflict",
            Self::RateLimited => "rate_limited",
            Self::DeliveryAddressRequired => "delivery_address_required",
            Self::WrongCode => "wrong_code",
            Self::CodeExpired => "code_expired",
            Self::TooManyAttempts => "too_many_attempts",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::UriTooLong => "uri_too_long",
            Self::HeadersTooLarge => "headers_too_large",
            Self::LimitExceeded => "limit_exceeded",
            Self::AlreadyOwned => "already_owned",
            Self::UnknownPayment => "unknown_payment",
            Self::TestClockDisabled => "test_clock_disabled",
            Self::UnknownVoucher => "unknown_voucher",
            Self::VoucherRedeemed => "voucher_redeemed",
            Self::VoucherVoided => "voucher_voided",
            Self::VoucherExpired => "voucher_expired",
            Self::VoucherFailed => "voucher_failed",
            Self::PinRequired => "pin_required",
            Self::NotAllowed => "not_allowed",
            Self::CurrencyMismatch => "currency_mismatch",
            Self::UnknownPackets => "unknown_packets",
            Self::AlreadyClaimed => "already_claimed",
            Self::SoldOut => "sold_out",
            Self::PacketsExpired => "packets_expired",
            Self::UnknownDevice => "unknown_device",
            Self::AlreadyRefunded => "already_refunded",
            Self::ReturnWindowClosed => "return_window_closed",
            Self::NotRefundable => "not_refundable",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state of a voucher (SPEC V3): `unused` until it is redeemed (at most once), voided
/// by its payer, expired, or `failed` (a redemption could not move the money). Every
/// state but `unused` is final, and in every final state but `redeemed` the whole face
/// value is back with the payer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VoucherState {
    Unused,
    Redeemed,
    Failed,
    Voided,
    Expired,
}

impl VoucherState {
    pub const ALL: [Self; 5] = [
        Self::Unused,
        Self::Redeemed,
        Self::Failed,
        Self::Voided,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unused => "unused",
            Self::Redeemed => "redeemed",
            Self::Failed => "failed",
            Self::Voided => "voided",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for VoucherState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A voucher (SPEC V1–V5), as its payer sees it and as anyone holding its link sees it
/// before redeeming (`GET /v1/vouchers/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Voucher {
    pub id: VoucherId,
    /// The QR content. Whoever has it can redeem the voucher.
    pub link: VoucherLink,
    pub payer: AccountId,
    pub payer_name: String,
    pub face_value: Money,
    /// How much was redeemed (zero unless `redeemed`).
    pub used: Money,
    pub state: VoucherState,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// When it left `unused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at_ms: Option<i64>,
    /// Who redeemed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payee: Option<AccountId>,
    /// Only this account may redeem it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted_to: Option<AccountId>,
}

/// `POST /v1/vouchers`: the payer freezes `amount` of their wallet as a voucher.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateVoucher {
    pub account: AccountId,
    /// The PIN, or a session when the payer's settings allow it (SPEC V6).
    pub auth: PayerAuth,
    pub amount: Money,
    /// How long it can be redeemed, in seconds (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for_s: Option<u64>,
    /// Only this account may redeem it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restrict_to: Option<AccountId>,
}

/// `POST /v1/vouchers/{id}/redeem`, with the `Idempotency-Key` header: the payee, proving
/// who they are, takes `amount` (default: the whole face value) into `account`; the rest
/// goes back to the payer at once (SPEC V4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RedeemVoucher {
    pub account: AccountId,
    pub auth: PayerAuth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// The answer to a redemption (a replay with the same key gets the same one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Redemption {
    pub voucher: Voucher,
    /// What the payee received.
    pub amount: Money,
    /// What went back to the payer.
    pub released: Money,
}

/// `POST /v1/vouchers/{id}/void`: the payer takes an unused voucher back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VoidVoucher {
    pub account: AccountId,
    pub auth: PayerAuth,
}

/// What a scanned voucher does on the payee's companion (SPEC V6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RedeemMode {
    /// Show the voucher; the payee chooses the amount and confirms.
    #[default]
    ScanThenConfirm,
    /// Redeem the whole amount to the payee's own wallet as soon as it is scanned.
    RedeemOnScan,
}

/// `GET`/`PUT /v1/accounts/{id}/voucher-settings` (session): the account's voucher
/// settings (SPEC V6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VoucherSettings {
    /// Ask for the PIN on every voucher made (the default), or only on the first one
    /// (later ones then need only a session).
    pub pin_every_voucher: bool,
    pub redeem_mode: RedeemMode,
}

impl Default for VoucherSettings {
    fn default() -> Self {
        Self {
            pin_every_voucher: true,
            redeem_mode: RedeemMode::ScanThenConfirm,
        }
    }
}

/// Which of an account's vouchers a list shows: those it made or those it redeemed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VoucherKind {
    #[default]
    Issued,
    Redeemed,
}

/// How a red-packet set's total is made (SPEC R1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PacketSplit {
    /// `total` cut at random into the packets (each at least one minor unit).
    Random { total: Money },
    /// `each` in every packet.
    Fixed { each: Money },
}

/// `POST /v1/packets/quote`: what a set would take, before the sender confirms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PacketQuoteRequest {
    pub count: u32,
    pub split: PacketSplit,
}

/// The answer to a quote (SPEC R1, R4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PacketQuote {
    /// What leaves the sender's wallet.
    pub total: Money,
    /// The average packet.
    pub average: Money,
    /// Said when the average packet is unusually large, so a slip of the finger is caught.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// `POST /v1/packets`: the sender confirms; the total moves to escrow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreatePackets {
    pub account: AccountId,
    pub auth: PayerAuth,
    pub count: u32,
    pub split: PacketSplit,
    #[serde(default)]
    pub message: String,
    /// Only these accounts may claim (default: anyone with the link).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<AccountId>>,
    /// How long packets can be claimed, in seconds (default one day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for_s: Option<u64>,
}

/// A red-packet set's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum PacketSetState {
    /// Packets can be claimed.
    Open,
    /// Every packet was claimed.
    Finished,
    /// It expired; what nobody claimed went back to the sender.
    Refunded,
}

/// One claimed packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PacketClaim {
    pub recipient: AccountId,
    pub recipient_name: String,
    pub amount: Money,
    pub claimed_at_ms: i64,
    /// The largest packet claimed so far (SPEC R5); ties all marked.
    pub largest: bool,
}

/// A red-packet set as its sender and its recipients see it (`GET /v1/packets/{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PacketSet {
    pub id: PacketSetId,
    /// The claim link (QR content).
    pub link: PacketLink,
    /// The code to type on a phone instead of scanning (sets made before codes had none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_code: Option<ShortCode>,
    pub sender: AccountId,
    pub sender_name: String,
    pub message: String,
    pub count: u32,
    pub total: Money,
    /// `fixed` sets have equal packets; `random` ones were cut at random.
    pub fixed: bool,
    pub state: PacketSetState,
    /// Who got how much, in claim order: every claim from `GET /v1/packets/{id}`; the
    /// newest 20 in a claim's answer and in events (a set may hold 10,000 packets).
    pub claims: Vec<PacketClaim>,
    /// Packets not claimed yet.
    pub remaining: u32,
    /// What went back to the sender at expiry.
    pub refunded: Money,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// Who may claim, when restricted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<AccountId>>,
}

/// `POST /v1/packets/{id}/claim`: the recipient, proving who they are, takes one packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimPacket {
    pub account: AccountId,
    pub auth: PayerAuth,
}

/// The answer to a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claimed {
    pub amount: Money,
    pub set: PacketSet,
}

/// `POST /v1/packets/{id}/offer`: the sender asks a TV (named by its device id, as found
/// nearby) to show the set. The TV asks the room before it shows anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OfferPackets {
    pub account: AccountId,
    pub auth: PayerAuth,
    pub device_id: DeviceId,
}

/// Events on `GET /v1/devices/{id}/events` (server-sent events, for a TV): what others
/// ask this TV to show. The first event is `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(
    clippy::large_enum_variant,
    reason = "events are built once and moved, boxing buys nothing"
)]
pub enum DeviceEvent {
    /// Sent first on every stream so the TV knows it is live.
    Hello { device: DeviceId },
    /// The set's sender asks this TV to show their red packets (claim link and code).
    PacketsOffered { set: PacketSet },
    /// An event this client does not know (sent by a newer server).
    #[serde(other)]
    Other,
}

impl DeviceEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Hello { .. } => "hello",
            Self::PacketsOffered { .. } => "packets_offered",
            Self::Other => "other",
        }
    }
}

/// Events on `GET /v1/packets/{id}/events` (server-sent events, for the screen showing a
/// set): a `snapshot` first, then each claim, until the set is finished or refunded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PacketsEvent {
    Snapshot { set: PacketSet },
    Claimed { set: PacketSet },
    Finished { set: PacketSet },
    Refunded { set: PacketSet },
}

impl PacketsEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Snapshot { .. } => "snapshot",
            Self::Claimed { .. } => "claimed",
            Self::Finished { .. } => "finished",
            Self::Refunded { .. } => "refunded",
        }
    }

    pub fn set(&self) -> &PacketSet {
        match self {
            Self::Snapshot { set }
            | Self::Claimed { set }
            | Self::Finished { set }
            | Self::Refunded { set } => set,
        }
    }

    /// After this event the set takes no more claims (its stream ends).
    pub fn is_final(&self) -> bool {
        self.set().state != PacketSetState::Open
    }
}

/// The query of `GET /v1/accounts/{id}/vouchers`: all fields optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema, utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
#[serde(deny_unknown_fields)]
pub struct VoucherFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<VoucherKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<VoucherState>,
    /// Created at or after (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// Created before (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// For `account_locked` and `rate_limited`: seconds until a retry can succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
}

/// Developer endpoints of the stub (admin token required): create accounts, top up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub id: AccountId,
    pub name: String,
    pub pin: Pin,
    pub currency: crate::Currency,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TopUp {
    pub account: AccountId,
    pub amount: Money,
}

/// `POST /v1/admin/merchants` (admin token): a merchant account that items can be sold by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateMerchant {
    pub id: AccountId,
    pub name: String,
    pub currency: crate::Currency,
}

/// `POST /v1/admin/cards` (admin token): a bank card linked to a payer's wallet, used
/// when the wallet is short (SPEC W4). Its currency is the wallet's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateCard {
    /// The wallet the card is linked to (one card per wallet).
    pub owner: AccountId,
    /// The card account's own id.
    pub id: AccountId,
}

/// `POST /v1/admin/merchants/{id}/keys` (admin token): a new merchant API key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateMerchantKey {
    /// What the key is for, e.g. "back office".
    pub label: String,
}

/// A merchant API key, shown once: only its hash is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerchantKey {
    pub merchant: AccountId,
    pub label: String,
    /// Send as `Authorization: Bearer <key>` to the `/v1/merchants/{id}` endpoints.
    pub key: Token,
}

/// `GET /v1/merchants/{id}` (merchant key): the merchant's account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerchantView {
    pub id: AccountId,
    pub name: String,
    pub balance: Money,
}

/// One payment to a merchant (`GET /v1/merchants/{id}/payments`, merchant key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MerchantPayment {
    pub receipt: Receipt,
    /// For physical goods: where to deliver them (SPEC P7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_address: Option<String>,
}

/// `GET /v1/admin/clock` (admin token): the server's time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockView {
    pub now_ms: i64,
    /// Whether the test clock is on (`--test-clock`), so `POST /v1/admin/clock` works.
    pub test_clock: bool,
}

/// `POST /v1/admin/clock` (admin token, `--test-clock`): move the server's time forward.
/// Orders, sessions, locks and codes that fall due expire at once, with their events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// Milliseconds to move forward (at most one year per call).
    pub advance_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_wire_names_are_stable() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::PayloadTooLarge,
            ErrorCode::UnknownOrder,
            ErrorCode::UnknownItem,
            ErrorCode::UnknownAccount,
            ErrorCode::OrderExpired,
            ErrorCode::OrderCancelled,
            ErrorCode::AlreadyPaid,
            ErrorCode::WrongPin,
            ErrorCode::AccountLocked,
            ErrorCode::InsufficientFunds,
            ErrorCode::Unauthorized,
            ErrorCode::IdempotencyConflict,
            ErrorCode::RateLimited,
            ErrorCode::DeliveryAddressRequired,
            ErrorCode::WrongCode,
            ErrorCode::CodeExpired,
            ErrorCode::TooManyAttempts,
            ErrorCode::Unavailable,
            ErrorCode::Internal,
            ErrorCode::NotFound,
            ErrorCode::MethodNotAllowed,
            ErrorCode::UriTooLong,
            ErrorCode::HeadersTooLarge,
            ErrorCode::LimitExceeded,
            ErrorCode::AlreadyOwned,
            ErrorCode::UnknownPayment,
            ErrorCode::TestClockDisabled,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn unknown_error_codes_from_a_newer_server_still_parse() {
        let code: ErrorCode = serde_json::from_str(r#""brand_new_code""#).unwrap();
        assert_eq!(code, ErrorCode::Unknown);
    }

    #[test]
    fn payer_auth_json_shape() {
        let auth = PayerAuth::Pin(Pin::parse("1234").unwrap());
        assert_eq!(serde_json::to_string(&auth).unwrap(), r#"{"pin":"1234"}"#);
        assert!(serde_json::from_str::<PayerAuth>(r#"{"pin":"12"}"#).is_err());
    }
}

/// A device's sale through Couchpay, as its register entry records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceSale {
    pub order: OrderId,
    /// The price paid, which a refund returns.
    pub amount: Money,
    pub merchant: Merchant,
    pub sold_at_ms: i64,
    /// The end of the return window: a refund is accepted until then.
    pub refundable_until_ms: i64,
    /// Set once the sale has been refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_at_ms: Option<i64>,
}

/// `GET /v1/devices/{id}` — a device's register entry, as the device itself may see it
/// (SPEC D1). The paying account is not shown: the device is not the payer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    pub id: HardwareId,
    pub id_kind: HardwareIdKind,
    pub product: String,
    /// The product's name for people, e.g. "Couchpay Box".
    pub product_name: String,
    pub os_version: OsVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sale: Option<DeviceSale>,
}

/// `POST /v1/devices/{id}/refund` — the answer: what went back to whom (SPEC D3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceRefund {
    pub device: HardwareId,
    pub order: OrderId,
    pub amount: Money,
    /// The account the price went back to (the one that paid).
    pub account: AccountId,
    pub refunded_at_ms: i64,
}

/// An update package for one product (SPEC D4): the manifest is signed by the vendor's
/// key (see [`crate::device`]), and the TV checks the download against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdatePackage {
    pub product: String,
    pub version: OsVersion,
    /// Bytes.
    pub size: u64,
    /// Where to download it (absolute; supports HTTP range requests, so a download resumes).
    pub url: String,
    /// SHA-256 of the package, 64 hex digits.
    pub sha256: String,
    /// Ed25519 signature of the manifest by the vendor's key, 128 hex digits.
    pub signature: String,
}

/// `GET /v1/devices/{id}/update` — the newest package for the device, or "up to date".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum UpdateCheck {
    UpToDate { version: OsVersion },
    Available { package: UpdatePackage },
}

/// `POST /v1/devices/{id}/os-version` — the device installed a package and runs this
/// version now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportVersion {
    pub version: OsVersion,
}

/// `POST /v1/admin/devices` — the vendor registers a device it made (not sold through
/// Couchpay), e.g. a display unit (developer endpoint, admin token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterDevice {
    pub id: HardwareId,
    pub product: String,
    pub os_version: OsVersion,
}

/// `POST /v1/admin/devices/{id}/credential` — a fresh credential for the device, as the
/// factory flashes it (shown once; any earlier credential stops working).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCredential {
    pub id: HardwareId,
    pub credential: Token,
}

/// `GET /v1/admin/devices?order=…` — register entries, for the vendor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminDevice {
    #[serde(flatten)]
    pub info: DeviceInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<AccountId>,
    /// Whether a credential has been provisioned.
    pub provisioned: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminDevices {
    pub devices: Vec<AdminDevice>,
}
