//! Merchant webhooks: what the server POSTs to a merchant's endpoint when one of its
//! orders is paid, cancelled or expires, or a device it sold is refunded, and how the
//! receiver checks that the server sent it.
//!
//! Every delivery carries the header [`SIGNATURE_HEADER`]:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. The receiver
//! recomputes the HMAC over the raw body bytes with the endpoint's secret, compares in
//! constant time and refuses timestamps far from its clock (replays). [`verify`] does
//! all of it. Deliveries are at least once: de-duplicate on [`WebhookEvent::id`].

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{AccountId, DeviceRefund, Order};

/// The header holding the signature.
pub const SIGNATURE_HEADER: &str = "Couchpay-Signature";
/// The header holding the event id (also in the body), for de-duplication.
pub const EVENT_ID_HEADER: &str = "Couchpay-Event-Id";
/// How far a signature's timestamp may be from the receiver's clock in [`verify`].
pub const DEFAULT_TOLERANCE_S: i64 = 5 * 60;

/// One event, as POSTed (JSON) to a merchant's endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEvent {
    /// `evt_` and 26 base32 characters; the same on every retry of this event.
    pub id: String,
    /// Server time of the event (the test clock's, when it runs).
    pub created_at_ms: i64,
    #[serde(flatten)]
    pub payload: WebhookPayload,
}

/// The event's `type` and its object, in `data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", content = "data")]
pub enum WebhookPayload {
    #[serde(rename = "order.paid")]
    OrderPaid { order: Order },
    #[serde(rename = "order.cancelled")]
    OrderCancelled { order: Order },
    #[serde(rename = "order.expired")]
    OrderExpired { order: Order },
    #[serde(rename = "device.refunded")]
    DeviceRefunded { refund: DeviceRefund },
}

impl WebhookPayload {
    /// The `type` string (`order.paid`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OrderPaid { .. } => "order.paid",
            Self::OrderCancelled { .. } => "order.cancelled",
            Self::OrderExpired { .. } => "order.expired",
            Self::DeviceRefunded { .. } => "device.refunded",
        }
    }
}

/// `POST /v1/admin/webhooks`: registers an endpoint for a merchant's events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub merchant: AccountId,
    /// `http://` or `https://`.
    pub url: String,
}

/// A registered endpoint, with the secret its deliveries are signed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEndpoint {
    /// `we_` and 26 base32 characters.
    pub id: String,
    pub merchant: AccountId,
    pub url: String,
    /// `whsec_` and 64 hex digits: the HMAC key. Keep it on the merchant's back end.
    pub secret: String,
    pub created_at_ms: i64,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet accepted by the endpoint; `next_attempt_ms` says when it is tried again.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Retried for a day without success; a resend tries again.
    Failed,
}

/// One event's delivery to one endpoint, with its attempts (the delivery log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookDelivery {
    pub id: i64,
    pub endpoint: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub state: DeliveryState,
    pub created_at_ms: i64,
    pub next_attempt_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at_ms: Option<i64>,
    /// Newest first.
    pub attempts: Vec<WebhookAttempt>,
}

/// One try at a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookAttempt {
    pub at_ms: i64,
    /// The endpoint's HTTP status, if it answered at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, when it did (timeout, connection refused, status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Why a delivery was not accepted by [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the signature's timestamp is too far from now")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(secret: &str, timestamp_s: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The [`SIGNATURE_HEADER`] value for `body` sent at `timestamp_s` (what the server sends).
pub fn sign(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let tag = mac(secret, timestamp_s, body).finalize().into_bytes();
    format!("t={timestamp_s},v1={}", crate::hex(&tag))
}

/// Checks a delivery: `header` is the [`SIGNATURE_HEADER`] value, `body` the raw bytes
/// received, `now_s` the receiver's Unix time. Constant-time comparison.
pub fn verify(
    secret: &str,
    header: &str,
    body: &[u8],
    now_s: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let mut t = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let t = t.ok_or(VerifyError::Malformed)?;
    if signatures.is_empty() {
        return Err(VerifyError::Malformed);
    }
    if now_s.abs_diff(t) > tolerance_s.unsigned_abs() {
        return Err(VerifyError::Stale);
    }
    for sig in signatures {
        let Some(bytes) = crate::ids::unhex::<32>(sig) else {
            continue;
        };
        if mac(secret, t, body).verify_slice(&bytes).is_ok() {
            return Ok(());
        }
    }
    Err(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_body_or_secret_or_time_does_not() {
        let body = br#"{"id":"evt_x","type":"order.paid"}"#;
        let header = sign("whsec_k", 1_700_000_000, body);
        assert_eq!(verify("whsec_k", &header, body, 1_700_000_010, 300), Ok(()));
        let tampered = br#"{"id":"evt_x","type":"order.paix"}"#;
        assert_eq!(
            verify("whsec_k", &header, tampered, 1_700_000_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, body, 1_700_000_010, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("whsec_k", &header, body, 1_700_000_400, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify("whsec_k", "v1=00", body, 1_700_000_000, 300),
            Err(VerifyError::Malformed)
        );
        // A timestamp at the edge of i64 is stale, not an overflow.
        let far = format!("t={},v1={}", i64::MIN, "0".repeat(64));
        assert_eq!(
            verify("whsec_k", &far, body, 1_700_000_000, 300),
            Err(VerifyError::Stale)
        );
    }
}
