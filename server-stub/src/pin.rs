//! PIN hashing (argon2id) and the wrong-PIN lockout.
//!
//! PINs are short, so the hash alone does not protect them: the lockout does. Each
//! attempt is *reserved* in the database before the (slow) hash check, and counted as
//! failed unless it succeeds. So even concurrent guesses get at most
//! [`MAX_FAILED_PINS`] tries per lock period.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use protocol::{AccountId, Pin};
use rusqlite::params;

use crate::error::{ApiError, ApiResult};
use crate::ledger;
use crate::store::Store;

/// Wrong PINs in a row that lock an account.
pub const MAX_FAILED_PINS: u32 = 5;
/// How long a locked account stays locked.
pub const LOCK_DURATION_S: u64 = 15 * 60;

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

/// Checks `pin` for `account`: `Ok` if right, `wrong_pin` or `account_locked` if not.
pub async fn check(store: &Store, account: &AccountId, pin: &Pin, now_ms: i64) -> ApiResult<()> {
    let id = account.clone();
    let hash = store
        .write(move |conn, _| {
            let acc = ledger::get_account(conn, id.as_str())?.ok_or(ApiError::UnknownAccount)?;
            let hash = acc
                .pin_hash
                .ok_or(ApiError::Unauthorized("this account has no PIN"))?;
            if acc.locked_until_ms > now_ms {
                return Err(locked(acc.locked_until_ms, now_ms));
            }
            if acc.failed_pins >= MAX_FAILED_PINS {
                // Earlier attempts are still being checked: they use up the allowance.
                return Err(locked(now_ms + LOCK_DURATION_S as i64 * 1000, now_ms));
            }
            conn.prepare_cached("UPDATE accounts SET failed_pins = failed_pins + 1 WHERE id = ?1")?
                .execute([id.as_str()])?;
            Ok(hash)
        })
        .await?;
    let pin2 = pin.clone();
    let ok = tokio::task::spawn_blocking(move || verify(&pin2, &hash))
        .await
        .map_err(ApiError::internal)?;
    let id = account.clone();
    if ok {
        return store
            .write(move |conn, _| {
                conn.prepare_cached("UPDATE accounts SET failed_pins = 0 WHERE id = ?1")?
                    .execute([id.as_str()])?;
                Ok(())
            })
            .await;
    }
    store
        .write(move |conn, _| {
            let failed: u32 = conn
                .prepare_cached("SELECT failed_pins FROM accounts WHERE id = ?1")?
                .query_row([id.as_str()], |r| r.get(0))?;
            if failed >= MAX_FAILED_PINS {
                let until = now_ms + LOCK_DURATION_S as i64 * 1000;
                conn.prepare_cached(
                    "UPDATE accounts SET failed_pins = 0, locked_until_ms = ?2 WHERE id = ?1",
                )?
                .execute(params![id.as_str(), until])?;
                tracing::warn!(account = %id, "account locked after too many wrong PINs");
                return Ok(Err(locked(until, now_ms)));
            }
            Ok(Err(ApiError::WrongPin {
                remaining: MAX_FAILED_PINS - failed,
            }))
        })
        .await?
}

fn locked(until_ms: i64, now_ms: i64) -> ApiError {
    ApiError::AccountLocked {
        retry_after_s: ((until_ms - now_ms).max(0) as u64).div_ceil(1000),
    }
}
