//! PIN hashing (argon2id) and the wrong-PIN policy.
//!
//! PINs are short, so the hash alone does not protect them: the attempt limits do. They
//! are built so that brute force is hopeless *and* a stranger cannot use them to lock
//! the owner out ("lockout as a weapon"):
//!
//! - **Per account and source** (a source is the client address; IPv6 per /64):
//!   [`MAX_FAILED_PINS`] wrong PINs in a row lock *that source* out of *that account* for
//!   [`LOCK_DURATION_S`]. Other sources, the owner's among them, are not affected.
//! - **Per source, over all accounts**: at most [`MAX_FAILED_PINS_PER_SOURCE`] wrong PINs
//!   per [`SOURCE_WINDOW_S`]; past that the source gets `rate_limited`, so rotating
//!   through accounts (credential stuffing) gains nothing.
//! - **Per account, over all unknown sources**: at most [`MAX_UNKNOWN_FAILURES_PER_DAY`]
//!   wrong PINs per [`DAY_WINDOW_S`] from sources that never entered this account's PIN
//!   correctly; past that, *unknown* sources are refused (`account_locked`) until the
//!   window ends, while sources the owner already used (a correct PIN before) and
//!   session tokens keep working.
//! - The owner is told on their account event stream whenever a source is locked out or
//!   unknown sources are shut out.
//!
//! **Guessing bound.** However many addresses an attacker has, an account sees at most
//! [`MAX_UNKNOWN_FAILURES_PER_DAY`] (20) wrong PINs a day from sources it does not know,
//! and its owner hears of it. For a 4-digit PIN (10,000 values) that is at most a 0.2 %
//! chance a day; for a 6-digit PIN 0.002 % a day (0.73 % over a whole year of daily
//! attempts the owner was told of and ignored). One address alone gets at most 10 wrong
//! PINs per 15 minutes over all accounts.
//!
//! Checks for one account are serialised in this process by a per-account lock, and
//! at most [`PIN_CHECKS_PER_SOURCE`] checks of one source run at once: the limits are
//! read before the slow hash check and updated after it, so concurrent attempts can
//! overshoot a source's allowance by at most that many per server process, and a correct
//! PIN never counts as a failure for another attempt in flight. An attempt cut off by a
//! crash is not counted, but its caller never learns whether the PIN was right.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use crate::db::{Connection, OptionalExtension, params};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use protocol::{AccountEvent, AccountId, Pin};

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::ledger;
use crate::limits::client_key;

/// Wrong PINs in a row from one source that lock that source out of the account.
pub const MAX_FAILED_PINS: u32 = 5;
/// How long a source stays locked out of an account.
pub const LOCK_DURATION_S: u64 = 15 * 60;
/// Wrong PINs one source may enter, over all accounts, per [`SOURCE_WINDOW_S`].
pub const MAX_FAILED_PINS_PER_SOURCE: u32 = 10;
/// The window of [`MAX_FAILED_PINS_PER_SOURCE`].
pub const SOURCE_WINDOW_S: u64 = 15 * 60;
/// Wrong PINs an account accepts per [`DAY_WINDOW_S`] from sources it does not know.
pub const MAX_UNKNOWN_FAILURES_PER_DAY: u32 = 20;
/// The window of [`MAX_UNKNOWN_FAILURES_PER_DAY`].
pub const DAY_WINDOW_S: u64 = 24 * 60 * 60;
/// PIN checks of one source that run at once in this process; more wait their turn.
pub const PIN_CHECKS_PER_SOURCE: usize = 4;

pub fn hash_pin(pin: &Pin) -> anyhow::Result<String> {
    let salt = SaltString::encode_b64(&protocol::random_bytes::<16>())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(pin.expose().as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string())
}

fn verify(pin: &Pin, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(pin.expose().as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Per-account locks that serialise PIN checks in this process, and per-source
/// semaphores that bound how many run at once for one source.
#[derive(Debug, Default)]
pub struct PinLocks {
    locks: Mutex<HashMap<AccountId, Arc<tokio::sync::Mutex<()>>>>,
    sources: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
}

impl PinLocks {
    fn source_of(&self, src: &str) -> Arc<tokio::sync::Semaphore> {
        let mut map = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(src.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(PIN_CHECKS_PER_SOURCE)))
            .clone()
    }

    fn release_source(&self, src: &str, sem: Arc<tokio::sync::Semaphore>) {
        let mut map = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&sem) <= 2 {
            map.remove(src);
        }
    }

    fn lock_of(&self, account: &AccountId) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(account.clone()).or_default().clone()
    }

    /// Forgets the lock of `account` when nobody else holds or waits for it.
    fn release(&self, account: &AccountId, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Two references: ours and the map's.
        if Arc::strong_count(&lock) <= 2 {
            map.remove(account);
        }
    }
}

/// What the pre-check found.
struct Checked {
    hash: String,
    known_source: bool,
}

fn ms(s: u64) -> i64 {
    s as i64 * 1000
}

fn retry_s(until_ms: i64, now_ms: i64) -> u64 {
    ((until_ms - now_ms).max(0) as u64).div_ceil(1000).max(1)
}

/// Checks `pin` for `account` entered from `source`: `Ok` if right; otherwise
/// `wrong_pin`, `account_locked` or `rate_limited` as the policy above says.
pub async fn check(
    s: &AppState,
    account: &AccountId,
    pin: &Pin,
    source: IpAddr,
    now_ms: i64,
) -> ApiResult<()> {
    let src = client_key(source).to_string();
    let sem = s.pin_locks.source_of(&src);
    let lock = s.pin_locks.lock_of(account);
    let result = match sem.clone().acquire_owned().await {
        Ok(_permit) => {
            let _held = lock.lock().await;
            check_locked(s, account, pin, &src, now_ms).await
        }
        Err(_) => Err(ApiError::Unavailable),
    };
    s.pin_locks.release(account, lock);
    s.pin_locks.release_source(&src, sem);
    result
}

async fn check_locked(
    s: &AppState,
    account: &AccountId,
    pin: &Pin,
    src: &str,
    now_ms: i64,
) -> ApiResult<()> {
    let (id, src2) = (account.clone(), src.to_owned());
    let checked = s
        .store
        .read(move |conn| precheck(conn, &id, &src2, now_ms))
        .await?;
    let pin2 = pin.clone();
    let hash = checked.hash.clone();
    let ok = tokio::task::spawn_blocking(move || verify(&pin2, &hash))
        .await
        .map_err(ApiError::internal)?;
    if ok && checked.known_source {
        // The common case: nothing to record beyond what is there (failures are reset
        // below only if there were some).
        let (id, src2) = (account.clone(), src.to_owned());
        let clean = s
            .store
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT failures FROM pin_failures WHERE account = ?1 AND source = ?2",
                    )?
                    .query_row(params![id.as_str(), src2], |r| r.get::<_, u32>(0))
                    .optional()?
                    == Some(0))
            })
            .await?;
        if clean {
            return Ok(());
        }
    }
    let id = account.clone();
    let src = src.to_owned();
    let known = checked.known_source;
    s.store
        .write(move |conn, events| settle(conn, events, &id, &src, known, ok, now_ms))
        .await?
}

/// Refuses if a limit is reached; otherwise returns the PIN hash to check.
fn precheck(conn: &Connection, id: &AccountId, src: &str, now_ms: i64) -> ApiResult<Checked> {
    let acc = ledger::get_account(conn, id.as_str())?.ok_or(ApiError::UnknownAccount)?;
    let hash = acc
        .pin_hash
        .ok_or(ApiError::Unauthorized("this account has no PIN"))?;
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT locked_until_ms, last_success_ms FROM pin_failures
             WHERE account = ?1 AND source = ?2",
        )?
        .query_row(params![id.as_str(), src], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (locked_until, last_success) = row.unwrap_or((0, None));
    let known_source = last_success.is_some();
    if locked_until > now_ms {
        return Err(ApiError::AccountLocked {
            retry_after_s: retry_s(locked_until, now_ms),
        });
    }
    let (source_failures, last): (u32, Option<i64>) = conn
        .prepare_cached(
            "SELECT CAST(COALESCE(SUM(window_failures), 0) AS BIGINT), MAX(last_failure_ms)
             FROM pin_failures
             WHERE source = ?1 AND last_failure_ms > ?2",
        )?
        .query_row(params![src, now_ms - ms(SOURCE_WINDOW_S)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if source_failures >= MAX_FAILED_PINS_PER_SOURCE {
        return Err(ApiError::RateLimited {
            retry_after_s: retry_s(last.unwrap_or(now_ms) + ms(SOURCE_WINDOW_S), now_ms),
        });
    }
    if !known_source {
        let (window_start, window_failures) = unknown_window(conn, id, now_ms)?;
        if window_failures >= MAX_UNKNOWN_FAILURES_PER_DAY {
            return Err(ApiError::AccountLocked {
                retry_after_s: retry_s(window_start + ms(DAY_WINDOW_S), now_ms),
            });
        }
    }
    Ok(Checked { hash, known_source })
}

/// The account's current unknown-source window: (start, wrong PINs in it).
fn unknown_window(conn: &Connection, id: &AccountId, now_ms: i64) -> ApiResult<(i64, u32)> {
    let (start, count): (i64, u32) = conn
        .prepare_cached("SELECT pin_window_start_ms, failed_pins FROM accounts WHERE id = ?1")?
        .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
    if start + ms(DAY_WINDOW_S) <= now_ms {
        Ok((now_ms, 0))
    } else {
        Ok((start, count))
    }
}

/// Records the outcome of an attempt and answers the caller.
#[allow(
    clippy::too_many_arguments,
    reason = "one checked input each, called from one place"
)]
fn settle(
    conn: &Connection,
    events: &mut Vec<Event>,
    id: &AccountId,
    src: &str,
    known_source: bool,
    ok: bool,
    now_ms: i64,
) -> ApiResult<ApiResult<()>> {
    if ok {
        conn.prepare_cached(
            "INSERT INTO pin_failures (account, source, failures, last_success_ms)
             VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (account, source) DO UPDATE
             SET failures = 0, last_success_ms = excluded.last_success_ms",
        )?
        .execute(params![id.as_str(), src, now_ms])?;
        return Ok(Ok(()));
    }
    // `failures` counts wrong PINs in a row (a lock that ran out starts afresh);
    // `window_failures` counts this source's wrong PINs in its current source window.
    conn.prepare_cached(
        "INSERT INTO pin_failures (account, source, failures, window_failures, last_failure_ms)
         VALUES (?1, ?2, 1, 1, ?3)
         ON CONFLICT (account, source) DO UPDATE
         SET failures = CASE WHEN pin_failures.failures >= ?4 THEN 1
                            ELSE pin_failures.failures + 1 END,
             window_failures = CASE WHEN pin_failures.last_failure_ms > ?5
                            THEN pin_failures.window_failures + 1 ELSE 1 END,
             last_failure_ms = excluded.last_failure_ms",
    )?
    .execute(params![
        id.as_str(),
        src,
        now_ms,
        MAX_FAILED_PINS,
        now_ms - ms(SOURCE_WINDOW_S)
    ])?;
    let failures: u32 = conn
        .prepare_cached("SELECT failures FROM pin_failures WHERE account = ?1 AND source = ?2")?
        .query_row(params![id.as_str(), src], |r| r.get(0))?;
    let mut window_failures = 0;
    if !known_source {
        let (start, count) = unknown_window(conn, id, now_ms)?;
        window_failures = count + 1;
        conn.prepare_cached(
            "UPDATE accounts SET pin_window_start_ms = ?2, failed_pins = ?3 WHERE id = ?1",
        )?
        .execute(params![id.as_str(), start, window_failures])?;
    }
    if failures >= MAX_FAILED_PINS {
        let until = now_ms + ms(LOCK_DURATION_S);
        conn.prepare_cached(
            "UPDATE pin_failures SET locked_until_ms = ?3 WHERE account = ?1 AND source = ?2",
        )?
        .execute(params![id.as_str(), src, until])?;
        // The source address is not logged with the account: it is personal data, and
        // the count is what an operator needs.
        tracing::warn!(account = %id, "a source was locked out after too many wrong PINs");
        events.push(alert(
            id,
            format!(
                "Someone entered a wrong PIN for your account {MAX_FAILED_PINS} times in a row \
                 on one device. That device is blocked from your account for {} minutes; \
                 your own devices keep working.",
                LOCK_DURATION_S / 60
            ),
            now_ms,
        ));
        return Ok(Err(ApiError::AccountLocked {
            retry_after_s: LOCK_DURATION_S,
        }));
    }
    if window_failures == MAX_UNKNOWN_FAILURES_PER_DAY {
        tracing::warn!(account = %id, "unknown sources shut out after too many wrong PINs");
        events.push(alert(
            id,
            format!(
                "There were {MAX_UNKNOWN_FAILURES_PER_DAY} wrong PINs for your account today \
                 from devices you have not used. New devices cannot use your PIN until \
                 tomorrow; the devices you use keep working."
            ),
            now_ms,
        ));
    }
    Ok(Err(ApiError::WrongPin {
        remaining: MAX_FAILED_PINS - failures,
    }))
}

fn alert(id: &AccountId, message: String, now_ms: i64) -> Event {
    Event::Account(
        id.clone(),
        AccountEvent::SecurityAlert {
            message,
            at_ms: now_ms,
        },
    )
}
