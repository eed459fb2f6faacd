//! Sending SMS. The stub has no gateway: [`OutboxSms`] stores every message in a
//! per-number outbox that developers and the companion can read. A real gateway
//! implements [`SmsSender`] and replaces it.

use std::future::Future;
use std::pin::Pin;

use crate::db::params;
use protocol::{Page, PhoneNumber, SmsMessage};

use crate::error::{ApiError, ApiResult};
use crate::paging::PageParams;
use crate::store::Store;

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

/// Whose outbox to list.
#[derive(Debug, Clone)]
pub enum Outbox {
    /// Every number bound to this account.
    Account(protocol::AccountId),
    /// One number.
    Phone(PhoneNumber),
}

/// One page of an outbox, newest first.
pub fn outbox(
    conn: &crate::db::Connection,
    whose: &Outbox,
    page: &PageParams,
) -> ApiResult<Page<SmsMessage>> {
    let (after, _) = page.key();
    let (sql, key) = match whose {
        Outbox::Account(a) => (
            "SELECT id, phone, body, sent_at_ms FROM sms_outbox
             WHERE phone IN (SELECT phone FROM phone_bindings WHERE account = ?1) AND id < ?2
             ORDER BY id DESC LIMIT ?3",
            a.as_str().to_owned(),
        ),
        Outbox::Phone(p) => (
            "SELECT id, phone, body, sent_at_ms FROM sms_outbox
             WHERE phone = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
            p.as_str().to_owned(),
        ),
    };
    let mut rows = conn
        .prepare_cached(sql)?
        .query_map(params![key, after, page.fetch()], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let next_cursor = page.finish(&mut rows, |r| (r.0, String::new()));
    let items = rows
        .into_iter()
        .filter_map(|(_, phone, body, sent_at_ms)| {
            Some(SmsMessage {
                to: PhoneNumber::parse(&phone).ok()?,
                body,
                sent_at_ms,
            })
        })
        .collect();
    Ok(Page { items, next_cursor })
}

pub fn parse_phone(s: &str) -> ApiResult<PhoneNumber> {
    PhoneNumber::parse(s).map_err(|e| ApiError::InvalidRequest(e.to_string()))
}
