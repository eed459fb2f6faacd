//! New orders in sets, on PostgreSQL.
//!
//! An order made alone costs three round trips (its savepoint, the ownership check, the
//! insert); a TV's order comes before every payment, so on PostgreSQL the writer hands
//! the new orders of its batch to [`create_set`], which checks what the devices own in
//! one statement and inserts every order in one more, as [`orders::create_in_tx`] would
//! one by one. An order whose short code another live order holds is not inserted (the
//! insert does nothing for it) and runs alone, drawing codes again. Nothing is locked:
//! the ownership check at creation only spares a TV a pointless order; the payment
//! checks it again under its lock.

use std::collections::HashMap;

use protocol::{CatalogItem, DeviceId, ItemKind, Order, OrderId, ServerUrl, ShortCode};

use crate::db::{Connection, params};
use crate::error::{ApiError, ApiResult};
use crate::orders::{self, ORDER_COLUMNS, OrderRow};

/// An order as the TV asked for it, for [`create_set`].
#[derive(Clone, Debug)]
pub struct NewOrder {
    pub item: CatalogItem,
    pub device: DeviceId,
    /// Checked already.
    pub device_name: String,
    pub token_hash: String,
    pub now: i64,
    pub expires: i64,
    pub server: ServerUrl,
}

/// Creates `inputs` as one set in the open transaction. Returns, for each input, its
/// answer, or `None` when it must run alone. An error leaves nothing behind.
pub fn create_set(
    conn: &Connection,
    inputs: &[&NewOrder],
) -> crate::db::Result<Vec<Option<ApiResult<Order>>>> {
    conn.in_set_savepoint("orderset", || check_and_insert(conn, inputs))
}

fn check_and_insert(
    conn: &Connection,
    inputs: &[&NewOrder],
) -> crate::db::Result<Vec<Option<ApiResult<Order>>>> {
    let (mut devices, mut items, mut nows) = (Vec::new(), Vec::new(), Vec::new());
    for o in inputs.iter().filter(|o| o.item.kind != ItemKind::Physical) {
        devices.push(o.device.to_string());
        items.push(o.item.id.to_string());
        nows.push(o.now);
    }
    let owned = orders::owned_among(conn, &devices, &items, &nows)?;

    // `None` in the arrays is 0 for a period and "" for a product; neither is a real one.
    let in_set = |o: &NewOrder| {
        o.item.period_days != Some(0) && o.item.device_product.as_deref() != Some("")
    };
    let plans: Vec<Plan> = inputs
        .iter()
        .map(|o| {
            let ownership = (o.device.to_string(), o.item.id.to_string());
            if o.item.kind != ItemKind::Physical && owned.contains(&ownership) {
                Plan::Owned
            } else if in_set(o) {
                Plan::Insert(OrderId::random().to_string())
            } else {
                Plan::Alone
            }
        })
        .collect();
    let new: Vec<(&str, &NewOrder)> = plans
        .iter()
        .zip(inputs)
        .filter_map(|(plan, o)| match plan {
            Plan::Insert(id) => Some((id.as_str(), *o)),
            _ => None,
        })
        .collect();
    let mut made = insert(conn, &new)?;
    Ok(plans
        .iter()
        .zip(inputs)
        .map(|(plan, o)| match plan {
            Plan::Owned => Some(Err(ApiError::AlreadyOwned)),
            Plan::Alone => None,
            // An order not inserted (its short code was taken) runs alone.
            Plan::Insert(id) => made.remove(id).map(|row| Ok(row.to_order(&o.server))),
        })
        .collect())
}

/// What the set does with one new order.
enum Plan {
    /// Refused: the device owns the item.
    Owned,
    /// Left to run alone.
    Alone,
    /// Inserted with this id.
    Insert(String),
}

/// Inserts `new` (id, input) in one statement, each with a fresh short code, and
/// returns the rows inserted by id.
fn insert(
    conn: &Connection,
    new: &[(&str, &NewOrder)],
) -> crate::db::Result<HashMap<String, OrderRow>> {
    let mut made = HashMap::new();
    if new.is_empty() {
        return Ok(made);
    }
    let text = |f: &dyn Fn(&NewOrder) -> String| -> Vec<String> {
        new.iter().map(|(_, o)| f(o)).collect()
    };
    let num =
        |f: &dyn Fn(&NewOrder) -> i64| -> Vec<i64> { new.iter().map(|(_, o)| f(o)).collect() };
    let ids: Vec<String> = new.iter().map(|(id, _)| (*id).to_owned()).collect();
    let codes = text(&|_| ShortCode::random().as_str().to_owned());
    conn.prepare_cached(&format!(
        "INSERT INTO orders (id, short_code, item_id, item_title, item_kind, period_days,
            amount, currency, merchant_id, merchant_name, device_id, device_name,
            tv_token_hash, status, created_at_ms, expires_at_ms, device_product)
         SELECT id, code, item, title, kind, NULLIF(period, 0), amount, currency, merchant,
            merchant_name, device, device_name, token_hash, 'pending', created, expires,
            NULLIF(product, '')
         FROM unnest(?1::text[], ?2::text[], ?3::text[], ?4::text[], ?5::text[],
            ?6::bigint[], ?7::bigint[], ?8::text[], ?9::text[], ?10::text[], ?11::text[],
            ?12::text[], ?13::text[], ?14::bigint[], ?15::bigint[], ?16::text[])
           AS n(id, code, item, title, kind, period, amount, currency, merchant,
            merchant_name, device, device_name, token_hash, created, expires, product)
         ON CONFLICT DO NOTHING
         RETURNING {ORDER_COLUMNS}"
    ))?
    .for_each(
        params![
            ids,
            codes,
            text(&|o| o.item.id.to_string()),
            text(&|o| o.item.title.clone()),
            text(&|o| orders::kind_str(o.item.kind).to_owned()),
            num(&|o| o.item.period_days.map_or(0, i64::from)),
            num(&|o| o.item.price.minor as i64),
            text(&|o| o.item.price.currency.as_str().to_owned()),
            text(&|o| o.item.merchant.id.to_string()),
            text(&|o| o.item.merchant.name.clone()),
            text(&|o| o.device.to_string()),
            text(&|o| o.device_name.clone()),
            text(&|o| o.token_hash.clone()),
            num(&|o| o.now),
            num(&|o| o.expires),
            text(&|o| o.item.device_product.clone().unwrap_or_default())
        ],
        |r| {
            let row = orders::order_from_row(r)?;
            made.insert(row.id.to_string(), row);
            Ok(())
        },
    )?;
    Ok(made)
}
