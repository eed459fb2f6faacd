//! First-start data: merchant accounts for the catalog, and demo payers (listed in the
//! README) unless `--no-demo`.

use protocol::{Currency, Money, Pin};

use crate::catalog;
use crate::error::ApiError;
use crate::ledger::{self, AccountKind};
use crate::pin::hash_pin;
use crate::store::Store;

/// A demo payer: id, name, PIN, wallet and card balances (minor units; no card if 0).
pub const DEMO_PAYERS: &[(&str, &str, &str, u64, u64)] = &[
    ("alice", "Alice Martin", "1234", 500_00, 2_000_00),
    ("bob", "Bob Chen", "2468", 20_00, 500_00),
    ("carol", "Carol Diaz", "1357", 5_00, 0),
];

/// Demo phone numbers bound to payers (SPEC W3), with their delivery addresses.
/// Any other number is unbound and gets the pay link by SMS (W5).
pub const DEMO_PHONES: &[(&str, &str, &str)] = &[
    ("+15550100001", "alice", "12 Rose Lane, Springfield"),
    ("+15550100002", "bob", "7 Harbour Road, Portsmouth"),
    ("+15550100003", "carol", "3 High Street, Oxford"),
];

/// The advisory lock the seeding takes on PostgreSQL (SQLite has one writer).
pub(crate) const SEED_LOCK: &str = "couchpay:seed";

pub async fn run(
    store: &Store,
    catalog: &catalog::Store,
    demo: bool,
    now_ms: i64,
) -> anyhow::Result<()> {
    let merchants = catalog.merchants.clone();
    let currency = catalog.currency;
    store
        .write(move |conn, _| {
            // Nodes starting together on one PostgreSQL database take turns here, and
            // each sees what the one before it created (the check below runs after the
            // lock is held): the first creates the accounts, the others find them.
            conn.lock_key(SEED_LOCK)?;
            for m in &merchants {
                if ledger::get_account(conn, m.id.as_str())?.is_none() {
                    ledger::create_account(
                        conn,
                        m.id.as_str(),
                        AccountKind::Merchant,
                        None,
                        &m.name,
                        currency,
                        None,
                        now_ms,
                    )?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| anyhow::anyhow!("creating merchant accounts: {e:?}"))?;
    if !demo {
        return Ok(());
    }
    let first = DEMO_PAYERS[0].0;
    let seeded = store
        .read(move |conn| Ok(ledger::get_account(conn, first)?.is_some()))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if seeded {
        return Ok(());
    }
    let mut hashed = Vec::new();
    for &(id, name, pin, wallet, card) in DEMO_PAYERS {
        let pin = Pin::parse(pin)?;
        let hash = tokio::task::spawn_blocking(move || hash_pin(&pin)).await??;
        hashed.push((id, name, hash, wallet, card));
    }
    let created = store
        .write(move |conn, _| {
            conn.lock_key(SEED_LOCK)?;
            // Another node may have seeded since the check above.
            if ledger::get_account(conn, first)?.is_some() {
                return Ok(false);
            }
            seed_payers(conn, currency, &hashed, now_ms).map(|()| true)
        })
        .await
        .map_err(|e| anyhow::anyhow!("seeding demo accounts: {e:?}"))?;
    if created {
        tracing::info!("created demo accounts alice, bob, carol (see README)");
    }
    Ok(())
}

fn seed_payers(
    conn: &crate::db::Connection,
    currency: Currency,
    payers: &[(&str, &str, String, u64, u64)],
    now_ms: i64,
) -> Result<(), ApiError> {
    for (id, name, hash, wallet, card) in payers {
        ledger::create_account(
            conn,
            id,
            AccountKind::Wallet,
            None,
            name,
            currency,
            Some(hash),
            now_ms,
        )?;
        if *wallet > 0 {
            ledger::top_up(conn, id, Money::new(*wallet, currency), now_ms)?;
        }
        if *card > 0 {
            let card_id = format!("{id}.card");
            ledger::create_account(
                conn,
                &card_id,
                AccountKind::Card,
                Some(id),
                &format!("{name}'s card"),
                currency,
                None,
                now_ms,
            )?;
            ledger::top_up(conn, &card_id, Money::new(*card, currency), now_ms)?;
        }
    }
    for (phone, account, address) in DEMO_PHONES {
        conn.prepare_cached(
            "INSERT INTO phone_bindings (phone, account, delivery_address) VALUES (?1, ?2, ?3)",
        )?
        .execute(crate::db::params![phone, account, address])?;
    }
    Ok(())
}
