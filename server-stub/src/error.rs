//! The server's one error type: every variant maps to an HTTP status and a stable
//! [`ErrorCode`]; internal details are logged, never sent to clients.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use protocol::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("the request body is too large")]
    PayloadTooLarge,
    #[error("no such order")]
    UnknownOrder,
    #[error("no such item in the catalog")]
    UnknownItem,
    #[error("no such account")]
    UnknownAccount,
    #[error("this order has expired; ask the TV for a new code")]
    OrderExpired,
    #[error("this order was cancelled on the TV")]
    OrderCancelled,
    #[error("this order is already paid")]
    AlreadyPaid,
    #[error(
        "wrong PIN ({remaining} tries left before this device is blocked from the account for a while)"
    )]
    WrongPin { remaining: u32 },
    #[error(
        "too many wrong PINs: this account cannot be used from here for now, try again in {retry_after_s} s"
    )]
    AccountLocked { retry_after_s: u64 },
    #[error("insufficient funds: {0}")]
    InsufficientFunds(String),
    #[error("not authorised: {0}")]
    Unauthorized(&'static str),
    #[error("this idempotency key was already used for a different payment")]
    IdempotencyConflict,
    #[error("too many requests, try again in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("a delivery address is required for physical goods")]
    DeliveryAddressRequired,
    #[error("wrong code ({remaining} tries left)")]
    WrongCode { remaining: u32 },
    #[error("{0}")]
    CodeExpired(&'static str),
    #[error("too many wrong codes: ask the TV for a new one")]
    TooManyAttempts,
    #[error("the server is busy or shutting down, try again")]
    Unavailable,
    /// A conflict with a concurrent transaction of another node (deadlock, serialization
    /// failure). The writer runs its batch again; a caller sees this only when the
    /// retries ran out.
    #[error("the server is busy, try again")]
    Conflict(String),
    #[error("internal error")]
    Internal(String),
    #[error("{0}")]
    NotFound(String),
    #[error("this endpoint does not support that method")]
    MethodNotAllowed,
    #[error("the request URI is longer than {0} bytes")]
    UriTooLong(usize),
    #[error("the request headers are larger than {0} bytes or more than {1} headers")]
    HeadersTooLarge(usize, usize),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("this device already has this item: nothing to buy")]
    AlreadyOwned,
    #[error("no payment with this idempotency key: nothing was charged with it")]
    UnknownPayment,
    #[error("the test clock is off: start the server with --test-clock to move its time")]
    TestClockDisabled,
    #[error("no such voucher")]
    UnknownVoucher,
    #[error("this voucher was redeemed already")]
    VoucherRedeemed,
    #[error("this voucher was voided by its payer")]
    VoucherVoided,
    #[error("this voucher has expired")]
    VoucherExpired,
    #[error("the voucher could not be redeemed ({0}); its money went back to the payer")]
    VoucherFailed(String),
    #[error("the PIN is needed: {0}")]
    PinRequired(&'static str),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("wrong currency: {0}")]
    CurrencyMismatch(String),
    #[error("no such red packets")]
    UnknownPackets,
    #[error("you already claimed a packet of this set")]
    AlreadyClaimed,
    #[error("every packet of this set has been claimed")]
    SoldOut,
    #[error("these red packets have expired; what nobody claimed went back to the sender")]
    PacketsExpired,
    #[error("no device with this id is registered")]
    UnknownDevice,
    #[error("this device has been refunded already")]
    AlreadyRefunded,
    #[error("the return window for this device has closed")]
    ReturnWindowClosed,
    #[error("this device was not bought through Couchpay, so it cannot be refunded here")]
    NotRefundable,
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Self::UnknownOrder => ErrorCode::UnknownOrder,
            Self::UnknownItem => ErrorCode::UnknownItem,
            Self::UnknownAccount => ErrorCode::UnknownAccount,
            Self::OrderExpired => ErrorCode::OrderExpired,
            Self::OrderCancelled => ErrorCode::OrderCancelled,
            Self::AlreadyPaid => ErrorCode::AlreadyPaid,
            Self::WrongPin { .. } => ErrorCode::WrongPin,
            Self::AccountLocked { .. } => ErrorCode::AccountLocked,
            Self::InsufficientFunds(_) => ErrorCode::InsufficientFunds,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::IdempotencyConflict => ErrorCode::IdempotencyConflict,
            Self::RateLimited { .. } => ErrorCode::RateLimited,
            Self::DeliveryAddressRequired => ErrorCode::DeliveryAddressRequired,
            Self::WrongCode { .. } => ErrorCode::WrongCode,
            Self::CodeExpired(_) => ErrorCode::CodeExpired,
            Self::TooManyAttempts => ErrorCode::TooManyAttempts,
            Self::Unavailable | Self::Conflict(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::UriTooLong(_) => ErrorCode::UriTooLong,
            Self::HeadersTooLarge(..) => ErrorCode::HeadersTooLarge,
            Self::LimitExceeded(_) => ErrorCode::LimitExceeded,
            Self::AlreadyOwned => ErrorCode::AlreadyOwned,
            Self::UnknownPayment => ErrorCode::UnknownPayment,
            Self::TestClockDisabled => ErrorCode::TestClockDisabled,
            Self::UnknownVoucher => ErrorCode::UnknownVoucher,
            Self::VoucherRedeemed => ErrorCode::VoucherRedeemed,
            Self::VoucherVoided => ErrorCode::VoucherVoided,
            Self::VoucherExpired => ErrorCode::VoucherExpired,
            Self::VoucherFailed(_) => ErrorCode::VoucherFailed,
            Self::PinRequired(_) => ErrorCode::PinRequired,
            Self::NotAllowed(_) => ErrorCode::NotAllowed,
            Self::CurrencyMismatch(_) => ErrorCode::CurrencyMismatch,
            Self::UnknownPackets => ErrorCode::UnknownPackets,
            Self::AlreadyClaimed => ErrorCode::AlreadyClaimed,
            Self::SoldOut => ErrorCode::SoldOut,
            Self::PacketsExpired => ErrorCode::PacketsExpired,
            Self::UnknownDevice => ErrorCode::UnknownDevice,
            Self::AlreadyRefunded => ErrorCode::AlreadyRefunded,
            Self::ReturnWindowClosed => ErrorCode::ReturnWindowClosed,
            Self::NotRefundable => ErrorCode::NotRefundable,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) | Self::DeliveryAddressRequired => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownOrder | Self::UnknownItem | Self::UnknownAccount => StatusCode::NOT_FOUND,
            Self::OrderExpired | Self::OrderCancelled => StatusCode::GONE,
            Self::AlreadyPaid => StatusCode::CONFLICT,
            Self::WrongPin { .. } | Self::Unauthorized(_) | Self::WrongCode { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::CodeExpired(_) => StatusCode::GONE,
            Self::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            Self::AccountLocked { .. } => StatusCode::LOCKED,
            Self::InsufficientFunds(_) => StatusCode::PAYMENT_REQUIRED,
            Self::IdempotencyConflict => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable | Self::Conflict(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound(_) | Self::UnknownPayment => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge(..) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::LimitExceeded(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::AlreadyOwned | Self::TestClockDisabled => StatusCode::CONFLICT,
            Self::UnknownVoucher => StatusCode::NOT_FOUND,
            Self::VoucherRedeemed | Self::VoucherFailed(_) => StatusCode::CONFLICT,
            Self::VoucherVoided | Self::VoucherExpired => StatusCode::GONE,
            Self::PinRequired(_) => StatusCode::UNAUTHORIZED,
            Self::NotAllowed(_) => StatusCode::FORBIDDEN,
            Self::CurrencyMismatch(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnknownPackets => StatusCode::NOT_FOUND,
            Self::AlreadyClaimed | Self::SoldOut => StatusCode::CONFLICT,
            Self::PacketsExpired => StatusCode::GONE,
            Self::UnknownDevice => StatusCode::NOT_FOUND,
            Self::AlreadyRefunded | Self::NotRefundable => StatusCode::CONFLICT,
            Self::ReturnWindowClosed => StatusCode::GONE,
        }
    }

    fn retry_after_s(&self) -> Option<u64> {
        match self {
            Self::AccountLocked { retry_after_s } | Self::RateLimited { retry_after_s } => {
                Some(*retry_after_s)
            }
            Self::Conflict(_) => Some(1),
            _ => None,
        }
    }

    /// The body sent to clients.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                retry_after_s: self.retry_after_s(),
            },
        }
    }
}

impl From<crate::db::Error> for ApiError {
    fn from(e: crate::db::Error) -> Self {
        if e.is_retryable() {
            Self::Conflict(e.to_string())
        } else {
            Self::Internal(format!("database: {e}"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            Self::Conflict(detail) => tracing::warn!(%detail, "write conflict, retries ran out"),
            _ => {}
        }
        let retry = self.retry_after_s();
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let Some(s) = retry.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, s);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
