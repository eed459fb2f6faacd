//! Payments in sets, on PostgreSQL.
//!
//! A payment through [`orders::pay_in_tx`] costs about a dozen statements, and on
//! PostgreSQL each one is a round trip with an executor start of its own (about 30 µs of
//! the database's CPU, measured). So the writer hands the plain payments of its batch
//! (a film or membership, paid by a session or a PIN already checked) to [`pay_set`].
//! It takes every lock and reads every row they need in seven statements, decides the
//! payments one by one in batch order in memory, by the rules of `pay_in_tx`, and writes
//! those that succeed in five more. Whatever else is in the batch, and each payment the
//! set declines (goods, devices, anything it does not handle), runs job by job as before,
//! after the set, seeing its writes.
//!
//! Locks are taken in the order every writer takes them: the ownership keys
//! (`owns:<device>:<item>`, sorted), then the order rows, then the payers' accounts;
//! merchants are credited at the end of the batch ([`ledger::DeferredCredits`]).
//!
//! The set runs in a savepoint at the start of the batch. A database error that is not a
//! conflict (another node's payment with the same idempotency key, say) undoes it, and
//! its payments run job by job, which answers each of them as it always has. A conflict
//! (a deadlock) is the batch's: it is run again whole.

use std::collections::{BTreeSet, HashMap};

use protocol::{
    AccountId, FundingSource, IdempotencyKey, ItemKind, OrderId, OrderStatus, Receipt, ServerUrl,
};

use crate::db::{Connection, params};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::orders::{self, ORDER_COLUMNS, OrderRow};
use crate::{ledger, sessions};

/// Fewest payments worth a set: one payment costs fewer statements alone.
pub const MIN_SET: usize = 2;

/// A payment as the request asked for it, for [`pay_set`].
#[derive(Clone, Debug)]
pub struct PayInput {
    pub order: OrderId,
    pub payer: AccountId,
    pub key: IdempotencyKey,
    pub address: Option<String>,
    /// The token hash of the payer's session, checked in the write; `None` when a PIN
    /// was checked before it.
    pub session: Option<String>,
    pub now: i64,
    pub server: ServerUrl,
}

/// A payment the set decided to make, written once all are decided.
struct Paid {
    order: String,
    payer: String,
    key: String,
    source: String,
    merchant: String,
    funding: FundingSource,
    minor: i64,
    currency: String,
    device: String,
    item: String,
    valid_until: Option<i64>,
    now: i64,
}

/// Runs `inputs` as one set in the open transaction. Returns, for each input, its answer,
/// or `None` when it must run alone; the events of those that succeeded go to `events`.
/// An error leaves nothing behind (the savepoint is undone).
pub fn pay_set(
    conn: &Connection,
    inputs: &[&PayInput],
    events: &mut Vec<Event>,
) -> crate::db::Result<Vec<Option<ApiResult<Receipt>>>> {
    let mut mine = Vec::new();
    let results = conn.in_set_savepoint("payset", || decide_and_write(conn, inputs, &mut mine))?;
    events.append(&mut mine);
    Ok(results)
}

/// The per-payment rules of [`orders::pay_in_tx`], on rows read for the whole set.
fn decide_and_write(
    conn: &Connection,
    inputs: &[&PayInput],
    events: &mut Vec<Event>,
) -> crate::db::Result<Vec<Option<ApiResult<Receipt>>>> {
    let ids: Vec<String> = inputs.iter().map(|p| p.order.to_string()).collect();
    // The ownership keys first, as `pay_in_tx` takes them before the order row.
    let unlocked = read_orders(conn, &ids, false)?;
    let owns: BTreeSet<String> = unlocked
        .values()
        .filter(|r| r.item.kind != ItemKind::Physical)
        .map(orders::ownership_key)
        .collect();
    let owns: Vec<String> = owns.into_iter().collect();
    conn.query_row(
        "SELECT COUNT(pg_advisory_xact_lock(hashtextextended(k, 0)))
         FROM (SELECT k FROM unnest(?1::text[]) AS k ORDER BY k) AS s",
        params![owns],
        |_| Ok(()),
    )?;
    let mut rows = read_orders(conn, &ids, true)?;

    let hashes: Vec<String> = inputs.iter().filter_map(|p| p.session.clone()).collect();
    let mut live: HashMap<String, (String, i64)> = HashMap::new();
    conn.prepare_cached(
        "SELECT token_hash, account, expires_at_ms FROM sessions WHERE token_hash = ANY(?1)",
    )?
    .for_each(params![hashes], |r| {
        live.insert(r.get(0)?, (r.get(1)?, r.get(2)?));
        Ok(())
    })?;

    let payers: Vec<String> = inputs.iter().map(|p| p.payer.to_string()).collect();
    let keys: Vec<String> = inputs.iter().map(|p| p.key.to_string()).collect();
    let mut paid_keys: HashMap<(String, String), (String, FundingSource)> = HashMap::new();
    conn.prepare_cached(
        "SELECT p.payer, p.idem_key, p.order_id, p.funding FROM payments p
         JOIN unnest(?1::text[], ?2::text[]) AS k(payer, idem_key)
           ON p.payer = k.payer AND p.idem_key = k.idem_key",
    )?
    .for_each(params![payers, keys], |r| {
        let funding: String = r.get(3)?;
        paid_keys.insert(
            (r.get(0)?, r.get(1)?),
            (r.get(2)?, orders::funding_from_str(&funding)),
        );
        Ok(())
    })?;

    let now_of: HashMap<&OrderId, i64> = inputs.iter().map(|p| (&p.order, p.now)).collect();
    let (mut devices, mut items, mut nows) = (Vec::new(), Vec::new(), Vec::new());
    for r in rows.values() {
        devices.push(r.device.id.to_string());
        items.push(r.item.id.to_string());
        nows.push(now_of.get(&r.id).copied().unwrap_or_default());
    }
    // Owned until (`None`: for good; the database's rows are filtered by time already).
    let mut owned: HashMap<(String, String), Option<i64>> =
        orders::owned_among(conn, &devices, &items, &nows)?
            .into_iter()
            .map(|k| (k, None))
            .collect();

    let mut accounts: HashMap<String, (ledger::Account, Option<String>)> = HashMap::new();
    for (account, owner) in ledger::lock_payers(conn, &payers)? {
        accounts.insert(account.id.to_string(), (account, owner));
    }

    let mut spent: HashMap<String, i64> = HashMap::new();
    let mut results = Vec::with_capacity(inputs.len());
    let mut paid = Vec::new();
    for p in inputs {
        let decided = decide(
            p, &mut rows, &live, &paid_keys, &owned, &accounts, &spent, events,
        );
        if let Some(Ok((_, Some(made)))) = &decided {
            *spent.entry(made.source.clone()).or_default() += made.minor;
            paid_keys.insert(
                (made.payer.clone(), made.key.clone()),
                (made.order.clone(), made.funding),
            );
            owned.insert((made.device.clone(), made.item.clone()), made.valid_until);
        }
        results.push(decided.map(|r| {
            r.map(|(receipt, made)| {
                paid.extend(made);
                receipt
            })
        }));
    }
    write(conn, &paid)?;
    let mut deferred = conn.deferred().borrow_mut();
    for made in &paid {
        deferred.defer_credit(&made.merchant, &made.currency, made.minor);
    }
    Ok(results)
}

fn read_orders(
    conn: &Connection,
    ids: &[String],
    lock: bool,
) -> crate::db::Result<HashMap<String, OrderRow>> {
    let sql = if lock {
        format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY(?1) ORDER BY id FOR UPDATE")
    } else {
        format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ANY(?1)")
    };
    let mut rows = HashMap::new();
    conn.prepare_cached(&sql)?.for_each(params![ids], |r| {
        let row = orders::order_from_row(r)?;
        rows.insert(row.id.to_string(), row);
        Ok(())
    })?;
    Ok(rows)
}

/// One payment of the set: `None` to run it alone, else its answer and, when it pays,
/// what to write. A payment it makes marks its order paid in `rows`.
#[allow(
    clippy::too_many_arguments,
    reason = "the rows read for the set, each a map of its own"
)]
fn decide(
    p: &PayInput,
    rows: &mut HashMap<String, OrderRow>,
    live: &HashMap<String, (String, i64)>,
    paid_keys: &HashMap<(String, String), (String, FundingSource)>,
    owned: &HashMap<(String, String), Option<i64>>,
    accounts: &HashMap<String, (ledger::Account, Option<String>)>,
    spent: &HashMap<String, i64>,
    events: &mut Vec<Event>,
) -> Option<ApiResult<(Receipt, Option<Paid>)>> {
    if let Some(hash) = &p.session {
        let found = live.get(hash).map(|(a, exp)| (a.as_str(), *exp));
        if let Err(e) = sessions::verdict(found, &p.payer, p.now) {
            return Some(Err(e));
        }
    }
    let order = p.order.to_string();
    let row = rows.get(&order);
    if let Some((paid_order, funding)) = paid_keys.get(&(p.payer.to_string(), p.key.to_string())) {
        return Some(match row {
            Some(row)
                if *paid_order == order
                    && row.delivery_address == orders::kept_address(row, &p.address) =>
            {
                Ok((orders::receipt_of(row, &p.key, &p.payer, *funding), None))
            }
            _ => Err(ApiError::IdempotencyConflict),
        });
    }
    let Some(row) = row else {
        return Some(Err(ApiError::UnknownOrder));
    };
    if row.item.kind == ItemKind::Physical || row.device_product.is_some() {
        return None;
    }
    match row.effective_status(p.now) {
        OrderStatus::Pending => {}
        OrderStatus::Paid => return Some(Err(ApiError::AlreadyPaid)),
        OrderStatus::Expired => return Some(Err(ApiError::OrderExpired)),
        OrderStatus::Cancelled => return Some(Err(ApiError::OrderCancelled)),
    }
    let ownership = (row.device.id.to_string(), row.item.id.to_string());
    if owned
        .get(&ownership)
        .is_some_and(|until| until.is_none_or(|u| u > p.now))
    {
        return Some(Err(ApiError::AlreadyOwned));
    }

    let payer = p.payer.as_str();
    let Some((wallet, _)) = accounts.get(payer).filter(|(a, _)| a.kind == "wallet") else {
        return Some(Err(ApiError::UnknownAccount));
    };
    let card = accounts
        .values()
        .find(|(a, owner)| a.kind == "card" && owner.as_deref() == Some(payer))
        .map(|(a, _)| a);
    let need = row.amount.minor as i64;
    if need == 0 || ledger::check_amount(row.amount).is_err() {
        return None;
    }
    // What the payer spent earlier in the set is gone.
    let available = |a: &ledger::Account| a.available() - spent.get(a.id.as_str()).unwrap_or(&0);
    let (source, funding) = match orders::choose_funding(row.amount, wallet, card, available) {
        Ok(chosen) => chosen,
        Err(e) => return Some(Err(e)),
    };

    let valid_until = orders::valid_until(row, p.now);
    let made = Paid {
        order: order.clone(),
        payer: payer.to_owned(),
        key: p.key.to_string(),
        source: source.id.to_string(),
        merchant: row.merchant.id.to_string(),
        funding,
        minor: need,
        currency: row.amount.currency.as_str().to_owned(),
        device: row.device.id.to_string(),
        item: row.item.id.to_string(),
        valid_until,
        now: p.now,
    };
    let row = rows.get_mut(&order)?;
    row.status = OrderStatus::Paid;
    row.paid_at_ms = Some(p.now);
    row.payer = Some(payer.to_owned());
    let receipt = orders::receipt_of(row, &p.key, &p.payer, funding);
    orders::push_paid_events(events, row, &receipt, &p.server);
    Some(Ok((receipt, Some(made))))
}

/// Writes the payments the set made: orders, debits, transfers, payments, entitlements.
/// Every row is checked: anything short is an error, which undoes the set.
fn write(conn: &Connection, paid: &[Paid]) -> crate::db::Result<()> {
    if paid.is_empty() {
        return Ok(());
    }
    let col = |f: &dyn Fn(&Paid) -> String| paid.iter().map(f).collect::<Vec<String>>();
    let num = |f: &dyn Fn(&Paid) -> i64| paid.iter().map(f).collect::<Vec<i64>>();
    let orders = col(&|m| m.order.clone());
    let payers = col(&|m| m.payer.clone());
    let nows = num(&|m| m.now);
    let short = |what: &str| crate::db::Error::Parameter(format!("the set's {what} fell short"));

    let updated = conn
        .prepare_cached(
            // `status = u.was`, not `= 'pending'`: a constant would let the planner
            // take the index of pending orders, which holds every order paid since the
            // last vacuum, rather than each order's primary key.
            "UPDATE orders SET status = 'paid', paid_at_ms = u.at, payer = u.payer,
                delivery_address = NULL
             FROM unnest(?1::text[], ?2::bigint[], ?3::text[], ?4::text[])
               AS u(id, at, payer, was)
             WHERE orders.id = u.id AND orders.status = u.was",
        )?
        .execute(params![
            orders,
            nows,
            payers,
            col(&|_| "pending".to_owned())
        ])?;
    if updated != paid.len() {
        return Err(short("order updates"));
    }

    let mut debits: HashMap<&str, i64> = HashMap::new();
    for m in paid {
        *debits.entry(&m.source).or_default() += m.minor;
    }
    let (debit_ids, debit_minor): (Vec<String>, Vec<i64>) =
        debits.iter().map(|(k, v)| ((*k).to_owned(), *v)).unzip();
    let debited = conn
        .prepare_cached(
            "UPDATE accounts SET balance = balance - u.minor
             FROM unnest(?1::text[], ?2::bigint[]) AS u(id, minor)
             WHERE accounts.id = u.id AND accounts.balance - accounts.held >= u.minor",
        )?
        .execute(params![debit_ids, debit_minor])?;
    if debited != debits.len() {
        return Err(short("debits"));
    }

    let mut transfer_of: HashMap<String, i64> = HashMap::new();
    conn.prepare_cached(
        "INSERT INTO transfers (debit, credit, amount, currency, kind, reference, created_at_ms)
         SELECT d, c, a, cur, 'payment', r, t
         FROM unnest(?1::text[], ?2::text[], ?3::bigint[], ?4::text[], ?5::text[], ?6::bigint[])
           AS u(d, c, a, cur, r, t)
         RETURNING id, reference",
    )?
    .for_each(
        params![
            col(&|m| m.source.clone()),
            col(&|m| m.merchant.clone()),
            num(&|m| m.minor),
            col(&|m| m.currency.clone()),
            orders,
            nows
        ],
        |r| {
            transfer_of.insert(r.get(1)?, r.get(0)?);
            Ok(())
        },
    )?;
    let transfers: Vec<i64> = paid
        .iter()
        .map(|m| transfer_of.get(&m.order).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| short("transfers"))?;

    let inserted = conn
        .prepare_cached(
            "INSERT INTO payments (payer, idem_key, order_id, funding, transfer_id, paid_at_ms)
             SELECT * FROM unnest(?1::text[], ?2::text[], ?3::text[], ?4::text[], ?5::bigint[],
                ?6::bigint[])",
        )?
        .execute(params![
            payers,
            col(&|m| m.key.clone()),
            orders,
            col(&|m| orders::funding_str(m.funding).to_owned()),
            transfers,
            nows
        ])?;
    if inserted != paid.len() {
        return Err(short("payments"));
    }

    // No entitlement runs out at 0 ms: it stands for "never" (NULL) in the array.
    let granted = conn
        .prepare_cached(
            "INSERT INTO entitlements (order_id, device_id, granted_at_ms, valid_until_ms)
             SELECT o, d, t, NULLIF(v, 0)
             FROM unnest(?1::text[], ?2::text[], ?3::bigint[], ?4::bigint[]) AS u(o, d, t, v)",
        )?
        .execute(params![
            orders,
            col(&|m| m.device.clone()),
            nows,
            num(&|m| m.valid_until.unwrap_or(0))
        ])?;
    if granted != paid.len() {
        return Err(short("entitlements"));
    }
    Ok(())
}
