//! Sending SMS. The stub has no gateway: [`OutboxSms`] stores every message in a
//! per-number outbox that developers and the companion can read. A real gateway
//! implements [`SmsSender`] and replaces it.

use std::future::Future;
use std::pin::Pin;

use protocol::{PhoneNumber, SmsMessage};
use rusqlite::params;

use crate::error::{ApiError, ApiResult};
use crate::store::Store;

/// Messages returned by one outbox listing (newest first).
pub const MAX_OUTBOX_LIST: i64 = 50;

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = ApiResult<()>> + Send + 'a>>;

/// Something that delivers text messages.
pub trait SmsSender: Send + Sync + std::fmt::Debug {
    fn send<'a>(&'a self, to: &'a PhoneNumber, body: &'a str, now_ms: i64) -> SendFuture<'a>;
}

/// The stub gateway: an outbox table in the server's database.
#[derive(Debug, Clone)]
pub struct OutboxSms {
    pub store: Store,
}

impl SmsSender for OutboxSms {
    fn send<'a>(&'a self, to: &'a PhoneNumber, body: &'a str, now_ms: i64) -> SendFuture<'a> {
        let to = to.clone();
        let body = body.to_owned();
        Box::pin(async move {
            self.store
                .write(move |conn, _| {
                    conn.prepare_cached(
                        "INSERT INTO sms_outbox (phone, body, sent_at_ms) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![to.as_str(), body, now_ms])?;
                    Ok(())
                })
                .await
        })
    }
}

/// The outbox of the given numbers, newest first.
pub fn outbox(conn: &rusqlite::Connection, phones: &[PhoneNumber]) -> ApiResult<Vec<SmsMessage>> {
    let mut out = Vec::new();
    for phone in phones {
        let rows = conn
            .prepare_cached(
                "SELECT body, sent_at_ms FROM sms_outbox WHERE phone = ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![phone.as_str(), MAX_OUTBOX_LIST], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        out.extend(rows.into_iter().map(|(body, sent_at_ms)| SmsMessage {
            to: phone.clone(),
            body,
            sent_at_ms,
        }));
    }
    out.sort_by_key(|m| std::cmp::Reverse(m.sent_at_ms));
    Ok(out)
}

pub fn parse_phone(s: &str) -> ApiResult<PhoneNumber> {
    PhoneNumber::parse(s).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}
