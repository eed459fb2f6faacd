//! The double-entry ledger.
//!
//! Guarantees:
//! - Every movement of money is one immutable row in `transfers` that debits one account
//!   and credits another by the same positive amount in one currency; balances change
//!   only together with such a row, inside the same transaction.
//! - The sum of all balances of a currency is always zero: top-ups debit that currency's
//!   `system` issuance account (the only kind allowed below zero).
//! - No other account goes below zero or below its held (frozen) amount: checked here
//!   and again by a `CHECK` constraint in the schema.
//! - A hold freezes part of a balance; it is later released or captured (released and
//!   transferred in the same transaction). `accounts.held` is the sum of active holds.

use std::collections::{BTreeMap, HashMap};

use crate::db::Value;
use crate::db::{Connection, OptionalExtension, params};
use protocol::{AccountId, AuditReport, Currency, CurrencyAudit, Money};

use crate::error::{ApiError, ApiResult};

/// Largest amount of one transfer (payment, top-up, hold): 1,000,000,000.00.
pub const MAX_AMOUNT_MINOR: u64 = 1_000_000_000_00;
/// Largest balance of any non-system account: 1,000,000,000,000.00.
pub const MAX_BALANCE_MINOR: i64 = 1_000_000_000_000_00;
/// Most money ever issued (topped up) in one currency: the issuance account never goes
/// below minus this. With it every sum of balances fits an `i64` many times over; the
/// audit still adds in `i128`, so it cannot overflow even on a damaged database.
pub const MAX_ISSUED_MINOR: i64 = 1_000_000_000_000_000_00;

/// Checks an amount against [`MAX_AMOUNT_MINOR`].
pub fn check_amount(amount: Money) -> ApiResult<i64> {
    if amount.minor == 0 {
        return Err(ApiError::InvalidRequest(
            "the amount must be positive".into(),
        ));
    }
    if amount.minor > MAX_AMOUNT_MINOR {
        return Err(ApiError::LimitExceeded(format!(
            "{amount} is more than the largest amount allowed, {}",
            Money::new(MAX_AMOUNT_MINOR, amount.currency)
        )));
    }
    // MAX_AMOUNT_MINOR is far below i64::MAX.
    Ok(amount.minor as i64)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountKind {
    /// A payer's wallet (may have a PIN).
    Wallet,
    /// A payer's linked bank card, used when the wallet is short (SPEC W4).
    Card,
    Merchant,
    /// Money in flight between parties (red packets).
    Escrow,
    /// Per-currency issuance account: top-ups come from here.
    System,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wallet => "wallet",
            Self::Card => "card",
            Self::Merchant => "merchant",
            Self::Escrow => "escrow",
            Self::System => "system",
        }
    }
}

/// One account row as the server sees it.
#[derive(Clone, Debug)]
pub struct Account {
    pub id: AccountId,
    pub kind: String,
    pub name: String,
    pub currency: Currency,
    pub balance: i64,
    pub held: i64,
    pub pin_hash: Option<String>,
    pub failed_pins: u32,
    pub locked_until_ms: i64,
}

impl Account {
    /// Money that can be spent now.
    pub fn available(&self) -> i64 {
        self.balance - self.held
    }
}

/// Merchant credits that the writer applies once per batch, just before it commits,
/// instead of once per payment.
///
/// Every payment credits its merchant, so that account's row is the hottest in the
/// database. Updated with each payment, it would stay locked from a batch's first payment
/// to its commit, and on PostgreSQL every other writer's batch (this node's or another
/// node's) would wait for it; applied at the end it is locked only for the commit. A
/// deferred credit is still part of its job: it is dropped with a job that fails, and
/// applied at once when anything in the batch reads or moves that account's money
/// ([`settle`]), so nobody sees a balance without it. The transfer row itself is written
/// with the payment, as always, so balances and transfers agree at every commit.
#[derive(Debug, Default)]
pub struct DeferredCredits {
    enabled: bool,
    /// Credits of the jobs of this batch that succeeded: (account, currency) → minor units.
    batch: BTreeMap<(String, String), i64>,
    /// Credits of the job running now.
    job: BTreeMap<(String, String), i64>,
    /// Batch credits the running job applied early; they go back if it fails.
    taken: Vec<((String, String), i64)>,
    /// A deferred credit was refused (an account missing or over its largest balance):
    /// the batch must run again without deferring, so that the job at fault fails alone.
    refused: bool,
}

impl DeferredCredits {
    /// Turns deferring on (the writer, per batch) or off; forgets all pending credits.
    pub fn reset(&mut self, enabled: bool) {
        *self = Self {
            enabled,
            ..Self::default()
        };
    }

    /// Whether credits are deferred in this batch.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A credit of a payment already made (one of a [`crate::payset`]): it joins the
    /// batch's at once.
    pub fn defer_credit(&mut self, account: &str, currency: &str, minor: i64) {
        *self
            .batch
            .entry((account.to_owned(), currency.to_owned()))
            .or_default() += minor;
    }

    /// Whether a credit was refused since the last [`reset`](Self::reset).
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// The running job succeeded: its credits join the batch's.
    pub fn job_succeeded(&mut self) {
        for (k, v) in std::mem::take(&mut self.job) {
            *self.batch.entry(k).or_default() += v;
        }
        self.taken.clear();
    }

    /// The running job failed (its savepoint was rolled back): its credits are dropped,
    /// and batch credits it applied early are pending again.
    pub fn job_failed(&mut self) {
        self.job.clear();
        for (k, v) in std::mem::take(&mut self.taken) {
            *self.batch.entry(k).or_default() += v;
        }
    }

    /// Whether `account` has credits waiting.
    fn pending_for(&self, account: &str) -> bool {
        self.batch
            .keys()
            .chain(self.job.keys())
            .any(|k| k.0 == account)
    }

    /// Takes the pending credits of `account` (all of them, when `None`).
    fn take(&mut self, account: Option<&str>) -> Vec<((String, String), i64)> {
        if self.batch.is_empty() && self.job.is_empty() {
            return Vec::new();
        }
        let mine = |k: &(String, String)| account.is_none_or(|a| k.0 == a);
        let mut due = Vec::new();
        let from_batch: Vec<_> = self.batch.keys().filter(|k| mine(k)).cloned().collect();
        for k in from_batch {
            if let Some(v) = self.batch.remove(&k) {
                self.taken.push((k.clone(), v));
                due.push((k, v));
            }
        }
        let from_job: Vec<_> = self.job.keys().filter(|k| mine(k)).cloned().collect();
        for k in from_job {
            if let Some(v) = self.job.remove(&k) {
                due.push((k, v));
            }
        }
        due
    }
}

/// Credits `minor` to `account` now, within [`MAX_BALANCE_MINOR`]; false when the
/// account is missing, holds another currency or would go over.
fn credit_now(conn: &Connection, account: &str, cur: &str, minor: i64) -> ApiResult<bool> {
    Ok(conn
        .prepare_cached(
            "UPDATE accounts SET balance = balance + ?2
             WHERE id = ?1 AND currency = ?3 AND (kind = 'system' OR balance <= CAST(?4 AS BIGINT) - CAST(?2 AS BIGINT))",
        )?
        .execute(params![account, minor, cur, MAX_BALANCE_MINOR])?
        == 1)
}

/// Applies the deferred credits of `account` now, before it is read or debited.
pub fn settle(conn: &Connection, account: &str) -> ApiResult<()> {
    let due = conn.deferred().borrow_mut().take(Some(account));
    apply(conn, due)
}

/// Applies every deferred credit of the batch (the writer, before it commits). A
/// refused credit is an [`ApiError::Conflict`]: the writer runs the batch again without
/// deferring.
pub fn apply_deferred(conn: &Connection) -> ApiResult<()> {
    let due = conn.deferred().borrow_mut().take(None);
    apply(conn, due)
}

fn apply(conn: &Connection, due: Vec<((String, String), i64)>) -> ApiResult<()> {
    for ((account, cur), minor) in due {
        if !credit_now(conn, &account, &cur, minor)? {
            conn.deferred().borrow_mut().refused = true;
            return Err(ApiError::Conflict(format!(
                "deferred credit to {account} refused"
            )));
        }
    }
    Ok(())
}

const ACCOUNT_COLUMNS: &str =
    "id, kind, name, currency, balance, held, pin_hash, failed_pins, locked_until_ms";

type AccountRow = (
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    u32,
    i64,
);

fn account_row(r: &crate::db::Row<'_>) -> crate::db::Result<AccountRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

fn to_account(row: AccountRow) -> ApiResult<Account> {
    let (id, kind, name, cur, balance, held, pin_hash, failed, locked) = row;
    Ok(Account {
        id: AccountId::parse(&id).map_err(ApiError::internal)?,
        kind,
        name,
        currency: Currency::parse(&cur).map_err(ApiError::internal)?,
        balance,
        held,
        pin_hash,
        failed_pins: failed,
        locked_until_ms: locked,
    })
}

pub fn get_account(conn: &Connection, id: &str) -> ApiResult<Option<Account>> {
    settle(conn, id)?;
    conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"
    ))?
    .query_row([id], account_row)
    .optional()?
    .map(to_account)
    .transpose()
}

/// A payer's wallet and the card linked to it, if any, in one read (a payment needs
/// both).
pub fn wallet_and_card(
    conn: &Connection,
    payer: &str,
) -> ApiResult<(Option<Account>, Option<Account>)> {
    settle(conn, payer)?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts
             WHERE id = ?1 OR (owner = ?1 AND kind = 'card')"
        ))?
        .query_map([payer], account_row)?
        .collect::<crate::db::Result<Vec<_>>>()?;
    let (mut wallet, mut card) = (None, None);
    for row in rows {
        let a = to_account(row)?;
        if a.id.as_str() == payer {
            wallet = Some(a);
        } else {
            card = Some(a);
        }
    }
    // Only merchants are credited late, but a card with pending credits is read again.
    if let Some(id) = card.as_ref().map(|c| c.id.to_string())
        && conn.deferred().borrow().pending_for(&id)
    {
        card = get_account(conn, &id)?;
    }
    Ok((wallet, card))
}

#[allow(
    clippy::too_many_arguments,
    reason = "one column each; called from two places"
)]
pub fn create_account(
    conn: &Connection,
    id: &str,
    kind: AccountKind,
    owner: Option<&str>,
    name: &str,
    currency: Currency,
    pin_hash: Option<&str>,
    now_ms: i64,
) -> ApiResult<()> {
    let inserted = conn
        .prepare_cached(
            "INSERT INTO accounts (id, kind, owner, name, currency, pin_hash, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(id) DO NOTHING",
        )?
        .execute(params![
            id,
            kind.as_str(),
            owner,
            name,
            currency.as_str(),
            pin_hash,
            now_ms
        ])?;
    if inserted == 0 {
        return Err(ApiError::InvalidRequest(format!(
            "account {id} already exists"
        )));
    }
    Ok(())
}

/// The issuance account of `currency`, created on first use.
pub fn issuance_account(conn: &Connection, currency: Currency, now_ms: i64) -> ApiResult<String> {
    house_account(
        conn,
        AccountKind::System,
        "issuance",
        "Issuance",
        currency,
        now_ms,
    )
}

/// The escrow account of `currency` (money in flight: red packets), created on first use.
pub fn escrow_account(conn: &Connection, currency: Currency, now_ms: i64) -> ApiResult<String> {
    house_account(
        conn,
        AccountKind::Escrow,
        "escrow",
        "Escrow",
        currency,
        now_ms,
    )
}

/// The server's own per-currency account `{prefix}-{currency}`, created on first use.
fn house_account(
    conn: &Connection,
    kind: AccountKind,
    prefix: &str,
    label: &str,
    currency: Currency,
    now_ms: i64,
) -> ApiResult<String> {
    let id = format!("{prefix}-{}", currency.as_str().to_ascii_lowercase());
    conn.prepare_cached(
        "INSERT INTO accounts (id, kind, name, currency, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO NOTHING",
    )?
    .execute(params![
        id,
        kind.as_str(),
        format!("{label} {currency}"),
        currency.as_str(),
        now_ms
    ])?;
    Ok(id)
}

/// The wallets `payers` and the cards linked to them, locked (`FOR UPDATE`, in id
/// order), each with its owner: for a set of payments ([`crate::payset`]), which runs
/// before any credit of its batch is deferred.
pub fn lock_payers(
    conn: &Connection,
    payers: &[String],
) -> crate::db::Result<Vec<(Account, Option<String>)>> {
    let mut found = Vec::new();
    conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLUMNS}, owner FROM accounts
         WHERE id = ANY(?1) OR (owner = ANY(?1) AND kind = 'card')
         ORDER BY id FOR UPDATE"
    ))?
    .for_each(crate::db::params![payers], |r| {
        let row = account_row(r)?;
        let owner = r.get::<_, Option<String>>(9)?;
        found.push((
            to_account(row).map_err(|_| crate::orders::bad_row("account"))?,
            owner,
        ));
        Ok(())
    })?;
    Ok(found)
}

/// Moves `amount` from `debit` to `credit` and records the transfer; returns its id.
///
/// Fails with `insufficient_funds` if `debit` (unless a system account) would go below
/// its held amount, and refuses mismatched currencies and self-transfers.
pub fn transfer(
    conn: &Connection,
    debit: &str,
    credit: &str,
    amount: Money,
    kind: &str,
    reference: Option<&str>,
    now_ms: i64,
) -> ApiResult<i64> {
    transfer_with(conn, debit, credit, amount, kind, reference, now_ms, false)
}

/// A payment to a merchant: [`transfer`], with the credit deferred to the end of the
/// writer's batch when the writer defers credits (see [`DeferredCredits`]).
pub fn pay_merchant(
    conn: &Connection,
    debit: &str,
    merchant: &str,
    amount: Money,
    reference: Option<&str>,
    now_ms: i64,
) -> ApiResult<i64> {
    transfer_with(
        conn, debit, merchant, amount, "payment", reference, now_ms, true,
    )
}

#[allow(
    clippy::too_many_arguments,
    reason = "transfer's arguments and whether the credit may wait"
)]
fn transfer_with(
    conn: &Connection,
    debit: &str,
    credit: &str,
    amount: Money,
    kind: &str,
    reference: Option<&str>,
    now_ms: i64,
    defer_credit: bool,
) -> ApiResult<i64> {
    if amount.minor == 0 || debit == credit {
        return Err(ApiError::internal("empty or self transfer"));
    }
    let minor = check_amount(amount)?;
    let cur = amount.currency.as_str();
    settle(conn, debit)?;
    // Debit only if the money is there; the WHERE clause makes check and update one step.
    let debited = conn
        .prepare_cached(
            "UPDATE accounts SET balance = balance - ?2
             WHERE id = ?1 AND currency = ?3
               AND ((kind = 'system' AND balance - ?2 >= ?4) OR balance - held >= ?2)",
        )?
        .execute(params![debit, minor, cur, -MAX_ISSUED_MINOR])?;
    if debited != 1 {
        return match get_account(conn, debit)? {
            None => Err(ApiError::UnknownAccount),
            Some(a) if a.currency != amount.currency => Err(ApiError::InsufficientFunds(format!(
                "account {debit} holds {}, not {cur}",
                a.currency
            ))),
            Some(a) if a.kind == "system" => Err(ApiError::LimitExceeded(format!(
                "more than {} would have been issued in {cur}",
                Money::new(MAX_ISSUED_MINOR as u64, a.currency)
            ))),
            Some(a) => Err(ApiError::InsufficientFunds(format!(
                "{} available, {} needed",
                Money::new(a.available().max(0) as u64, a.currency),
                amount
            ))),
        };
    }
    let deferred = defer_credit && {
        let mut d = conn.deferred().borrow_mut();
        if d.enabled {
            *d.job
                .entry((credit.to_owned(), cur.to_owned()))
                .or_default() += minor;
        }
        d.enabled
    };
    let credited = deferred || {
        settle(conn, credit)?;
        credit_now(conn, credit, cur, minor)?
    };
    if !credited {
        // Undo the debit, so that a refused transfer leaves nothing behind even when the
        // caller carries on with other work in the same transaction. (A savepoint per
        // transfer would do the same at the cost of three statements on every payment,
        // in the one writer thread.)
        conn.prepare_cached("UPDATE accounts SET balance = balance + ?2 WHERE id = ?1")?
            .execute(params![debit, minor])?;
        return Err(match get_account(conn, credit)? {
            Some(a) if a.currency == amount.currency => ApiError::LimitExceeded(format!(
                "account {credit} would hold more than the largest balance allowed, {}",
                Money::new(MAX_BALANCE_MINOR as u64, a.currency)
            )),
            _ => ApiError::UnknownAccount,
        });
    }
    Ok(conn.prepare_cached(
        "INSERT INTO transfers (debit, credit, amount, currency, kind, reference, created_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
    )?
    .query_row(params![debit, credit, minor, cur, kind, reference, now_ms], |r| {
        r.get(0)
    })?)
}

/// Credits `account` from the issuance account of the amount's currency.
pub fn top_up(conn: &Connection, account: &str, amount: Money, now_ms: i64) -> ApiResult<i64> {
    let issuer = issuance_account(conn, amount.currency, now_ms)?;
    transfer(conn, &issuer, account, amount, "topup", None, now_ms)
}

/// Freezes `amount` of `account`'s available money; returns the hold id.
pub fn hold(
    conn: &Connection,
    account: &str,
    amount: Money,
    reason: &str,
    now_ms: i64,
) -> ApiResult<i64> {
    let minor = check_amount(amount)?;
    settle(conn, account)?;
    let changed = conn
        .prepare_cached(
            "UPDATE accounts SET held = held + ?2
             WHERE id = ?1 AND currency = ?3 AND kind <> 'system' AND balance - held >= ?2",
        )?
        .execute(params![account, minor, amount.currency.as_str()])?;
    if changed != 1 {
        return Err(match get_account(conn, account)? {
            None => ApiError::UnknownAccount,
            Some(_) => ApiError::InsufficientFunds("not enough available to hold".into()),
        });
    }
    Ok(conn
        .prepare_cached(
            "INSERT INTO holds (account, amount, reason, state, created_at_ms)
         VALUES (?1, ?2, ?3, 'active', ?4) RETURNING id",
        )?
        .query_row(params![account, minor, reason, now_ms], |r| r.get(0))?)
}

/// Ends an active hold, unfreezing its money. `captured` records that the money was
/// then transferred by the caller in the same transaction.
pub fn release_hold(conn: &Connection, hold_id: i64, captured: bool) -> ApiResult<()> {
    let (account, minor): (String, i64) = conn
        .prepare_cached("SELECT account, amount FROM holds WHERE id = ?1 AND state = 'active'")?
        .query_row([hold_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .ok_or_else(|| ApiError::InvalidRequest("no such active hold".into()))?;
    let state = if captured { "captured" } else { "released" };
    conn.prepare_cached("UPDATE holds SET state = ?2 WHERE id = ?1")?
        .execute(params![hold_id, state])?;
    conn.prepare_cached("UPDATE accounts SET held = held - ?2 WHERE id = ?1")?
        .execute(params![account, minor])?;
    Ok(())
}

/// An integer column as `i128`, or a description of what is there instead (a balance
/// that once overflowed into a float, say): the audit reports it instead of failing.
fn int_of(v: Value) -> Result<i128, String> {
    match v {
        Value::Integer(i) => Ok(i128::from(i)),
        Value::Null => Ok(0),
        Value::Real(f) => Err(format!("the non-integer {f}")),
        Value::Text(t) => Err(format!("the text {t:?}")),
        Value::Blob(_) => Err("a blob".into()),
    }
}

/// Checks the ledger's invariants; never modifies anything.
///
/// All sums are taken in `i128` in Rust, not in SQL, so no balance or transfer total can
/// overflow the audit: it is the tool you reach for when something is wrong.
pub fn audit(conn: &Connection) -> ApiResult<AuditReport> {
    let mut problems = Vec::new();
    let accounts: u64 = conn.query_row("SELECT COUNT(*) FROM accounts", (), |r| r.get(0))?;
    let transfers: u64 = conn.query_row("SELECT COUNT(*) FROM transfers", (), |r| r.get(0))?;

    // Replay every transfer: per account the net of credits minus debits, per currency
    // the total topped up.
    let mut replay: HashMap<String, i128> = HashMap::new();
    let mut topups: BTreeMap<String, i128> = BTreeMap::new();
    conn.prepare("SELECT id, debit, credit, amount, currency, kind FROM transfers")?
        .for_each((), |r| {
            let id: i64 = r.get(0)?;
            let amount = match int_of(r.get(3)?) {
                Ok(a) if a > 0 => a,
                Ok(a) => {
                    problems.push(format!("transfer {id}: amount {a} is not positive"));
                    return Ok(());
                }
                Err(what) => {
                    problems.push(format!("transfer {id}: amount is {what}"));
                    return Ok(());
                }
            };
            *replay.entry(r.get(1)?).or_default() -= amount;
            *replay.entry(r.get(2)?).or_default() += amount;
            if r.get::<_, String>(5)? == "topup" {
                *topups.entry(r.get(4)?).or_default() += amount;
            }
            Ok(())
        })?;

    let mut active_holds: HashMap<String, i128> = HashMap::new();
    conn.prepare("SELECT account, amount FROM holds WHERE state = 'active'")?
        .for_each((), |r| {
            let account: String = r.get(0)?;
            match int_of(r.get(1)?) {
                Ok(a) => *active_holds.entry(account).or_default() += a,
                Err(what) => problems.push(format!("a hold of {account} is {what}")),
            }
            Ok(())
        })?;

    // Per currency: (sum of all balances, sum of non-system balances).
    let mut per: BTreeMap<String, (i128, i128)> = BTreeMap::new();
    conn.prepare("SELECT id, kind, currency, balance, held FROM accounts")?
        .for_each((), |r| {
            let id: String = r.get(0)?;
            let kind: String = r.get(1)?;
            let currency: String = r.get(2)?;
            let (balance, held) = match (int_of(r.get(3)?), int_of(r.get(4)?)) {
                (Ok(b), Ok(h)) => (b, h),
                (Err(what), _) => {
                    problems.push(format!("account {id}: balance is {what}"));
                    return Ok(());
                }
                (_, Err(what)) => {
                    problems.push(format!("account {id}: held is {what}"));
                    return Ok(());
                }
            };
            // 1. Each balance equals its replay from the transfers.
            let expected = replay.get(&id).copied().unwrap_or(0);
            if balance != expected {
                problems.push(format!(
                    "account {id}: balance {balance} but transfers add up to {expected}"
                ));
            }
            // 2. No non-system account below zero or below its holds; holds add up.
            if kind != "system" {
                if balance < 0 || held < 0 || held > balance {
                    problems.push(format!("account {id}: balance {balance}, held {held}"));
                }
                let holds = active_holds.get(&id).copied().unwrap_or(0);
                if held != holds {
                    problems.push(format!(
                        "account {id}: held {held} but active holds sum to {holds}"
                    ));
                }
            }
            let e = per.entry(currency).or_default();
            e.0 += balance;
            if kind != "system" {
                e.1 += balance;
            }
            Ok(())
        })?;

    // 3. Per currency: all balances sum to zero and user-side money equals the top-ups.
    let mut currencies = Vec::new();
    for (cur, (total, users)) in per {
        let topped = topups.get(&cur).copied().unwrap_or(0);
        if total != 0 {
            problems.push(format!("{cur}: balances sum to {total}, not 0"));
        }
        if users != topped {
            problems.push(format!(
                "{cur}: accounts hold {users} but top-ups total {topped}"
            ));
        }
        let clamp = |v: i128| u64::try_from(v.max(0)).unwrap_or(u64::MAX);
        currencies.push(CurrencyAudit {
            currency: cur,
            topped_up_minor: clamp(topped),
            balances_minor: clamp(users),
        });
    }

    // 4. Every paid order has exactly one payment transfer of its amount; no other order has one.
    let bad_orders: Vec<String> = conn
        .prepare(
            "SELECT o.id FROM orders o
             WHERE (o.status = 'paid') <> (
                 (SELECT COUNT(*) FROM transfers t
                  WHERE t.reference = o.id AND t.kind = 'payment' AND t.amount = o.amount) = 1)
                OR (SELECT COUNT(*) FROM transfers t WHERE t.reference = o.id AND t.kind = 'payment') > 1",
        )?
        .query_map((), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in bad_orders {
        problems.push(format!("order {id}: status and payment transfers disagree"));
    }

    // 5. An unused voucher is exactly its active hold; a closed one holds nothing; a
    //    redeemed one has one transfer of what was used, any other none.
    let bad_vouchers: Vec<String> = conn
        .prepare(
            "SELECT v.id FROM vouchers v JOIN holds h ON h.id = v.hold_id
             WHERE (v.state = 'unused') <> (h.state = 'active')
                OR h.amount <> v.face_value
                OR (v.state = 'redeemed') <> (
                    (SELECT COUNT(*) FROM transfers t
                     WHERE t.reference = v.id AND t.kind = 'voucher' AND t.amount = v.used) = 1)
                OR (SELECT COUNT(*) FROM transfers t WHERE t.reference = v.id AND t.kind = 'voucher') > 1",
        )?
        .query_map((), |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in bad_vouchers {
        let shown: String = id.chars().take(6).collect();
        problems.push(format!(
            "voucher {shown}…: state, hold and transfers disagree"
        ));
    }

    Ok(AuditReport {
        ok: problems.is_empty(),
        accounts,
        transfers,
        currencies,
        problems,
    })
}
