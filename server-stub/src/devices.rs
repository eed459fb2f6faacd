//! Device services by unique id (SPEC D1–D4): the register of sold devices, refunds
//! within the return window, and software updates.
//!
//! **The register** (`devices`): one row per device, keyed by its canonical
//! [`HardwareId`] (IMEI, MEID, ESN or vendor serial, parsed and checked at the boundary),
//! with its product, current OS version (NULL until the device reports one: the product's
//! factory version) and, for a device sold through the catalog, the order of its sale.
//! A catalog item with a `device_product` registers a device with a fresh serial when its
//! order is paid ([`register_sale`]); the vendor registers other devices (display units)
//! through the admin API.
//!
//! **Credentials.** A serial is printed on the box and sent over BLE, so it never
//! authorises anything. Every device request carries `Authorization: Bearer <credential>`,
//! a 256-bit per-device secret the factory flashes (here: issued by
//! `POST /v1/admin/devices/{id}/credential`, shown once, stored as its SHA-256 only, as
//! Mender and hawkBit keep device tokens). A device without one is "not provisioned".
//!
//! **Refunds** (D3): once per sale, within [`RETURN_WINDOW_DAYS`] of payment. The
//! register row leaves "not refunded" by a conditional update, so of concurrent requests
//! exactly one moves money: one ledger transfer from the merchant back to the account the
//! sale was paid from; the entitlement of that sale ends and the payer hears of it.
//!
//! **Updates** (D4): packages are files in the updates directory, listed in its
//! `index.json` with their SHA-256 and the vendor's Ed25519 signature (made offline with
//! `couchpay-server sign-update`). The server checks each file's checksum at start; the
//! TV checks size, checksum and signature with the key it ships with before installing.
//! Downloads are public (the signature, not the channel, makes a package trustworthy) and
//! answer range requests, so an interrupted download resumes.

use protocol::ErrorBody;
use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use utoipa_axum::{router::OpenApiRouter, routes};

use anyhow::Context;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use protocol::{
    AccountEvent, AccountId, AdminDevice, AdminDevices, DeviceCredential, DeviceInfo, DeviceRefund,
    DeviceSale, HardwareId, Merchant, Money, OrderId, OsVersion, RegisterDevice, ReportVersion,
    ServerUrl, Token, UpdateCheck, UpdatePackage,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::db::{Connection, OptionalExtension, Row, params};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::extract::ApiJson;
use crate::orders::bad_row as bad;
use crate::{AppState, accounts, catalog, ledger, sessions};

/// How long after payment a device sold here can be refunded.
pub const RETURN_WINDOW_DAYS: i64 = 30;
const RETURN_WINDOW_MS: i64 = RETURN_WINDOW_DAYS * 86_400_000;
/// Draws of a fresh serial before giving up (a clash of 64 random bits is all but impossible).
const SERIAL_ATTEMPTS: usize = 8;
/// Most register entries one admin listing returns.
const ADMIN_LIST_LIMIT: i64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(refund))
        .routes(routes!(check_update))
        .routes(routes!(report_version))
        .routes(routes!(download))
        .routes(routes!(admin_list, admin_register))
        .routes(routes!(admin_credential))
}

fn parse_id(s: &str) -> ApiResult<HardwareId> {
    HardwareId::parse(s).map_err(|e| ApiError::InvalidRequest(format!("device id: {e}")))
}

/// Enters a device sold by order `order` into the register, with a fresh serial; called in
/// the payment's transaction. Not yet provisioned: the credential is issued to the device
/// (see the module notes).
pub fn register_sale(conn: &Connection, product: &str, order: &OrderId, now: i64) -> ApiResult<()> {
    for _ in 0..SERIAL_ATTEMPTS {
        let id = HardwareId::random_serial();
        let inserted = conn
            .prepare_cached(
                "INSERT INTO devices (id, id_kind, product, order_id, registered_at_ms)
                 VALUES (?1, 'serial', ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![id.as_str(), product, order.as_str(), now])?;
        if inserted == 1 {
            tracing::info!(device = %id, order = %order, product, "device registered");
            return Ok(());
        }
    }
    Err(ApiError::Unavailable)
}

/// One register entry with its sale, as stored.
#[derive(Clone, Debug)]
struct DeviceRow {
    id: HardwareId,
    product: String,
    os_version: Option<OsVersion>,
    credential_hash: Option<String>,
    refunded_at_ms: Option<i64>,
    sale: Option<Sale>,
}

/// A paid sale of a device through Couchpay.
#[derive(Clone, Debug)]
struct Sale {
    order: OrderId,
    amount: Money,
    merchant: Merchant,
    paid_at_ms: i64,
    payer: AccountId,
}

const SELECT: &str = "SELECT d.id, d.product, d.os_version, d.credential_hash, d.refunded_at_ms,
        o.id, o.amount, o.currency, o.merchant_id, o.merchant_name, o.paid_at_ms, o.payer
     FROM devices d LEFT JOIN orders o ON o.id = d.order_id AND o.status = 'paid'";

fn row_of(r: &Row<'_>) -> crate::db::Result<DeviceRow> {
    let id: String = r.get(0)?;
    let os: Option<String> = r.get(2)?;
    let sale = match r.get::<_, Option<String>>(5)? {
        None => None,
        Some(order) => {
            let currency: String = r.get(7)?;
            let merchant: String = r.get(8)?;
            let payer: Option<String> = r.get(11)?;
            Some(Sale {
                order: OrderId::parse(&order).map_err(|_| bad("order"))?,
                amount: Money::new(
                    r.get::<_, i64>(6)? as u64,
                    currency.parse().map_err(|_| bad("currency"))?,
                ),
                merchant: Merchant {
                    id: AccountId::parse(&merchant).map_err(|_| bad("merchant"))?,
                    name: r.get(9)?,
                },
                paid_at_ms: r
                    .get::<_, Option<i64>>(10)?
                    .ok_or_else(|| bad("sale time"))?,
                payer: AccountId::parse(payer.as_deref().unwrap_or(""))
                    .map_err(|_| bad("payer"))?,
            })
        }
    };
    Ok(DeviceRow {
        id: HardwareId::parse(&id).map_err(|_| bad("id"))?,
        product: r.get(1)?,
        os_version: os
            .map(|v| OsVersion::parse(&v))
            .transpose()
            .map_err(|_| bad("os version"))?,
        credential_hash: r.get(3)?,
        refunded_at_ms: r.get(4)?,
        sale,
    })
}

fn load(conn: &Connection, id: &HardwareId) -> ApiResult<Option<DeviceRow>> {
    Ok(conn
        .prepare_cached(&format!("{SELECT} WHERE d.id = ?1"))?
        .query_row([id.as_str()], row_of)
        .optional()?)
}

impl DeviceRow {
    /// Checks the device's credential (its SHA-256 `hash`, from the request).
    fn authenticate(&self, hash: &str) -> ApiResult<()> {
        let stored = self
            .credential_hash
            .as_deref()
            .ok_or(ApiError::Unauthorized(
                "this device has not been provisioned with a credential",
            ))?;
        if sessions::constant_time_eq(stored.as_bytes(), hash.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized("wrong device credential"))
        }
    }

    fn os_version(&self, catalog: &catalog::Store) -> ApiResult<OsVersion> {
        match &self.os_version {
            Some(v) => Ok(v.clone()),
            None => catalog
                .product(&self.product)
                .map(|p| p.factory_version.clone())
                .ok_or_else(|| ApiError::internal(format!("unknown product {}", self.product))),
        }
    }

    fn info(&self, catalog: &catalog::Store) -> ApiResult<DeviceInfo> {
        Ok(DeviceInfo {
            id: self.id.clone(),
            id_kind: self.id.kind(),
            product: self.product.clone(),
            product_name: catalog
                .product(&self.product)
                .map_or_else(|| self.product.clone(), |p| p.name.clone()),
            os_version: self.os_version(catalog)?,
            sale: self.sale.as_ref().map(|s| DeviceSale {
                order: s.order.clone(),
                amount: s.amount,
                merchant: s.merchant.clone(),
                sold_at_ms: s.paid_at_ms,
                refundable_until_ms: s.paid_at_ms + RETURN_WINDOW_MS,
                refunded_at_ms: self.refunded_at_ms,
            }),
        })
    }
}

/// The SHA-256 of the request's device credential (a bearer token, like a session's).
fn credential_hash(headers: &HeaderMap) -> ApiResult<String> {
    sessions::bearer(headers)
        .map(|t| sessions::hash_token(&t))
        .map_err(|_| ApiError::Unauthorized("a device credential is required"))
}

/// Reads device `id` after checking the request comes from it.
async fn authenticated(s: &AppState, headers: &HeaderMap, id: &str) -> ApiResult<DeviceRow> {
    let id = parse_id(id)?;
    let hash = credential_hash(headers)?;
    let row = s
        .store
        .read(move |conn| load(conn, &id)?.ok_or(ApiError::UnknownDevice))
        .await?;
    row.authenticate(&hash)?;
    Ok(row)
}

/// `GET /v1/devices/{id}` — the device's register entry.
#[utoipa::path(
    get,
    path = "/v1/devices/{id}",
    operation_id = "devices_show",
    tag = "devices",
    summary = "The device's register entry",
    params(
        ("id" = String, Path, description = "The device id"),
    ),
    responses(
        (status = 200, description = "OK", body = DeviceInfo),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_device`", body = ErrorBody),
    ),
    security(("device" = [])),
)]
async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<DeviceInfo>> {
    let row = authenticated(&s, &headers, &id).await?;
    Ok(Json(row.info(&s.catalog)?))
}

/// `POST /v1/devices/{id}/refund` — refunds the device's sale, once (SPEC D3).
#[utoipa::path(
    post,
    path = "/v1/devices/{id}/refund",
    operation_id = "devices_refund",
    tag = "devices",
    summary = "Refund the device's sale, once",
    params(
        ("id" = String, Path, description = "The device id"),
    ),
    responses(
        (status = 200, description = "OK", body = DeviceRefund),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_device`", body = ErrorBody),
        (status = 409, description = "`already_refunded`, `not_refundable`", body = ErrorBody),
        (status = 410, description = "`return_window_closed`", body = ErrorBody),
    ),
    security(("device" = [])),
)]
async fn refund(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<DeviceRefund>> {
    let id = parse_id(&id)?;
    let hash = credential_hash(&headers)?;
    let now = s.clock.now_ms();
    let refund = s
        .store
        .write(move |conn, events| refund_in_tx(conn, events, &id, &hash, now))
        .await?;
    tracing::info!(device = %refund.device, order = %refund.order, amount = %refund.amount, "device refunded");
    Ok(Json(refund))
}

fn refund_in_tx(
    conn: &Connection,
    events: &mut Vec<Event>,
    id: &HardwareId,
    hash: &str,
    now: i64,
) -> ApiResult<DeviceRefund> {
    let row = load(conn, id)?.ok_or(ApiError::UnknownDevice)?;
    row.authenticate(hash)?;
    let sale = row.sale.as_ref().ok_or(ApiError::NotRefundable)?;
    if row.refunded_at_ms.is_some() {
        return Err(ApiError::AlreadyRefunded);
    }
    if now > sale.paid_at_ms + RETURN_WINDOW_MS {
        return Err(ApiError::ReturnWindowClosed);
    }
    // The claim: of concurrent refunds (on any node) exactly one changes the row.
    let claimed = conn
        .prepare_cached(
            "UPDATE devices SET refunded_at_ms = ?2 WHERE id = ?1 AND refunded_at_ms IS NULL",
        )?
        .execute(params![id.as_str(), now])?;
    if claimed != 1 {
        return Err(ApiError::AlreadyRefunded);
    }
    // The money goes back where it came from: the wallet or card the sale debited.
    let source: String = conn
        .prepare_cached(
            "SELECT t.debit FROM payments p JOIN transfers t ON t.id = p.transfer_id
             WHERE p.order_id = ?1",
        )?
        .query_row([sale.order.as_str()], |r| r.get(0))
        .optional()?
        .ok_or_else(|| ApiError::internal("a paid device sale without its payment"))?;
    let transfer = ledger::transfer(
        conn,
        sale.merchant.id.as_str(),
        &source,
        sale.amount,
        "refund",
        Some(sale.order.as_str()),
        now,
    )?;
    conn.prepare_cached("UPDATE devices SET refund_transfer = ?2 WHERE id = ?1")?
        .execute(params![id.as_str(), transfer])?;
    // What the sale granted ends now.
    conn.prepare_cached(
        "UPDATE entitlements SET valid_until_ms = ?2
         WHERE order_id = ?1 AND (valid_until_ms IS NULL OR valid_until_ms > ?2)",
    )?
    .execute(params![sale.order.as_str(), now])?;
    let refund = DeviceRefund {
        device: id.clone(),
        order: sale.order.clone(),
        amount: sale.amount,
        account: sale.payer.clone(),
        refunded_at_ms: now,
    };
    events.push(Event::Account(
        sale.payer.clone(),
        AccountEvent::DeviceRefunded {
            refund: refund.clone(),
        },
    ));
    Ok(refund)
}

/// `GET /v1/devices/{id}/update` — the newest package for the device, or up to date (D4).
#[utoipa::path(
    get,
    path = "/v1/devices/{id}/update",
    operation_id = "devices_check_update",
    tag = "devices",
    summary = "The newest update package for the device, or up to date",
    params(
        ("id" = String, Path, description = "The device id"),
    ),
    responses(
        (status = 200, description = "OK", body = UpdateCheck),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_device`", body = ErrorBody),
    ),
    security(("device" = [])),
)]
async fn check_update(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<UpdateCheck>> {
    let row = authenticated(&s, &headers, &id).await?;
    let current = row.os_version(&s.catalog)?;
    Ok(Json(
        match s.updates.newest(&row.product, &current, &s.public_url) {
            Some(package) => UpdateCheck::Available { package },
            None => UpdateCheck::UpToDate { version: current },
        },
    ))
}

/// `POST /v1/devices/{id}/os-version` — the device installed a package.
#[utoipa::path(
    post,
    path = "/v1/devices/{id}/os-version",
    operation_id = "devices_report_version",
    tag = "devices",
    summary = "The device installed a package: report its version",
    params(
        ("id" = String, Path, description = "The device id"),
    ),
    request_body = ReportVersion,
    responses(
        (status = 200, description = "OK", body = DeviceInfo),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_device`", body = ErrorBody),
    ),
    security(("device" = [])),
)]
async fn report_version(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ReportVersion>,
) -> ApiResult<Json<DeviceInfo>> {
    let row = authenticated(&s, &headers, &id).await?;
    let known = row.os_version(&s.catalog)? == req.version
        || s.updates.get(&row.product, &req.version).is_some();
    if !known {
        return Err(ApiError::InvalidRequest(format!(
            "no package {} of {} exists",
            req.version, row.product
        )));
    }
    let hash = credential_hash(&headers)?;
    let device = row.id.clone();
    let version = req.version.to_string();
    let row = s
        .store
        .write(move |conn, _| {
            let row = load(conn, &device)?.ok_or(ApiError::UnknownDevice)?;
            row.authenticate(&hash)?;
            conn.prepare_cached("UPDATE devices SET os_version = ?2 WHERE id = ?1")?
                .execute(params![device.as_str(), version])?;
            load(conn, &device)?.ok_or(ApiError::UnknownDevice)
        })
        .await?;
    tracing::info!(device = %row.id, version = %req.version, "device updated");
    Ok(Json(row.info(&s.catalog)?))
}

/// `GET /v1/updates/{file}` — a package's bytes; answers range requests.
#[utoipa::path(
    get,
    path = "/v1/updates/{file}",
    operation_id = "devices_download",
    tag = "devices",
    summary = "An update package's bytes (answers range requests)",
    params(
        ("file" = String, Path, description = "The package file name from the update check"),
    ),
    responses(
        (status = 200, description = "The package bytes", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ),
)]
async fn download(
    State(s): State<AppState>,
    Path(file): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let path = s
        .updates
        .file(&file)
        .ok_or(ApiError::NotFound("no such update package".into()))?;
    let response = tower_http::services::ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?;
    Ok(response.map(Body::new).into_response())
}

/// `POST /v1/admin/devices` — registers a device not sold through Couchpay.
#[utoipa::path(
    post,
    path = "/v1/admin/devices",
    operation_id = "devices_admin_register",
    tag = "admin",
    summary = "Register a device not sold through Couchpay",
    request_body = RegisterDevice,
    responses(
        (status = 200, description = "OK", body = AdminDevice),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn admin_register(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterDevice>,
) -> ApiResult<Json<AdminDevice>> {
    accounts::admin(&s, &headers)?;
    if s.catalog.product(&req.product).is_none() {
        return Err(ApiError::InvalidRequest(format!(
            "unknown product {}",
            req.product
        )));
    }
    let now = s.clock.now_ms();
    let row = s
        .store
        .write(move |conn, _| {
            let inserted = conn
                .prepare_cached(
                    "INSERT INTO devices (id, id_kind, product, os_version, registered_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO NOTHING",
                )?
                .execute(params![
                    req.id.as_str(),
                    req.id.kind().as_str(),
                    req.product,
                    req.os_version.to_string(),
                    now
                ])?;
            if inserted != 1 {
                return Err(ApiError::InvalidRequest(format!(
                    "device {} is registered already",
                    req.id
                )));
            }
            load(conn, &req.id)?.ok_or(ApiError::UnknownDevice)
        })
        .await?;
    admin_view(&s, &row).map(Json)
}

/// `POST /v1/admin/devices/{id}/credential` — a fresh credential, shown once.
#[utoipa::path(
    post,
    path = "/v1/admin/devices/{id}/credential",
    operation_id = "devices_admin_credential",
    tag = "admin",
    summary = "Issue a fresh device credential (shown once)",
    params(
        ("id" = String, Path, description = "The device id"),
    ),
    responses(
        (status = 200, description = "OK", body = DeviceCredential),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_device`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn admin_credential(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<DeviceCredential>> {
    accounts::admin(&s, &headers)?;
    let id = parse_id(&id)?;
    let credential = Token::random();
    let hash = sessions::hash_token(&credential);
    let device = id.clone();
    s.store
        .write(move |conn, _| {
            let changed = conn
                .prepare_cached("UPDATE devices SET credential_hash = ?2 WHERE id = ?1")?
                .execute(params![device.as_str(), hash])?;
            if changed == 1 {
                Ok(())
            } else {
                Err(ApiError::UnknownDevice)
            }
        })
        .await?;
    tracing::info!(device = %id, "device credential issued");
    Ok(Json(DeviceCredential { id, credential }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// An order id: the devices that order sold.
    order: Option<String>,
}

/// `GET /v1/admin/devices[?order=ID]` — register entries (of one sale, or the newest).
#[utoipa::path(
    get,
    path = "/v1/admin/devices",
    operation_id = "devices_admin_list",
    tag = "admin",
    summary = "Register entries: of one sale, or the newest",
    params(
        ListQuery,
    ),
    responses(
        (status = 200, description = "OK", body = AdminDevices),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`unknown_order`", body = ErrorBody),
    ),
    security(("admin" = [])),
)]
async fn admin_list(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<AdminDevices>> {
    accounts::admin(&s, &headers)?;
    let order = q
        .order
        .as_deref()
        .map(crate::orders::parse_order_id)
        .transpose()?;
    let rows = s
        .store
        .read(move |conn| {
            let rows = match &order {
                Some(o) => conn
                    .prepare_cached(&format!("{SELECT} WHERE d.order_id = ?1"))?
                    .query_map([o.as_str()], row_of)?,
                None => conn
                    .prepare_cached(&format!(
                        "{SELECT} ORDER BY d.registered_at_ms DESC, d.id LIMIT ?1"
                    ))?
                    .query_map([ADMIN_LIST_LIMIT], row_of)?,
            };
            Ok(rows.collect::<crate::db::Result<Vec<_>>>()?)
        })
        .await?;
    let devices = rows
        .iter()
        .map(|r| admin_view(&s, r))
        .collect::<ApiResult<_>>()?;
    Ok(Json(AdminDevices { devices }))
}

fn admin_view(s: &AppState, row: &DeviceRow) -> ApiResult<AdminDevice> {
    Ok(AdminDevice {
        info: row.info(&s.catalog)?,
        payer: row.sale.as_ref().map(|s| s.payer.clone()),
        provisioned: row.credential_hash.is_some(),
    })
}

/// One entry of the updates directory's `index.json`, as `sign-update` prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexEntry {
    pub product: String,
    pub version: OsVersion,
    /// The file's name in the updates directory (no path).
    pub file: String,
    pub sha256: String,
    pub signature: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub packages: Vec<IndexEntry>,
}

/// A package the server offers: its index entry, size and path.
#[derive(Clone, Debug)]
struct Offered {
    entry: IndexEntry,
    size: u64,
    path: PathBuf,
}

/// The update packages, loaded once at start.
#[derive(Clone, Debug, Default)]
pub struct Updates {
    packages: Arc<Vec<Offered>>,
    by_file: Arc<HashMap<String, usize>>,
}

/// SHA-256 and size of a file, read in pieces.
pub fn hash_file(path: &FsPath) -> std::io::Result<([u8; 32], u64)> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hasher.finalize().into(), size))
}

fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Updates {
    /// Loads `dir/index.json` (no index: no packages) and checks each file's SHA-256.
    pub fn load(dir: &FsPath) -> anyhow::Result<Self> {
        let index_path = dir.join("index.json");
        let index: Index = match std::fs::read_to_string(&index_path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("reading {}", index_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Index::default(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", index_path.display())),
        };
        let mut packages = Vec::new();
        let mut by_file = HashMap::new();
        for entry in index.packages {
            anyhow::ensure!(
                plain_file_name(&entry.file),
                "update index: {:?} is not a plain file name",
                entry.file
            );
            let path = dir.join(&entry.file);
            let (sha, size) =
                hash_file(&path).with_context(|| format!("reading {}", path.display()))?;
            anyhow::ensure!(
                protocol::hex(&sha) == entry.sha256,
                "update index: {} does not match its SHA-256",
                entry.file
            );
            anyhow::ensure!(
                by_file.insert(entry.file.clone(), packages.len()).is_none(),
                "update index: {} is listed twice",
                entry.file
            );
            packages.push(Offered { entry, size, path });
        }
        tracing::info!(packages = packages.len(), dir = %dir.display(), "update packages loaded");
        Ok(Self {
            packages: Arc::new(packages),
            by_file: Arc::new(by_file),
        })
    }

    fn package(o: &Offered, server: &ServerUrl) -> UpdatePackage {
        UpdatePackage {
            product: o.entry.product.clone(),
            version: o.entry.version.clone(),
            size: o.size,
            url: server.join(&format!("/v1/updates/{}", o.entry.file)),
            sha256: o.entry.sha256.clone(),
            signature: o.entry.signature.clone(),
        }
    }

    /// The newest package of `product` above `current`.
    pub fn newest(
        &self,
        product: &str,
        current: &OsVersion,
        server: &ServerUrl,
    ) -> Option<UpdatePackage> {
        self.packages
            .iter()
            .filter(|o| o.entry.product == product && &o.entry.version > current)
            .max_by(|a, b| a.entry.version.cmp(&b.entry.version))
            .map(|o| Self::package(o, server))
    }

    fn get(&self, product: &str, version: &OsVersion) -> Option<&Offered> {
        self.packages
            .iter()
            .find(|o| o.entry.product == product && &o.entry.version == version)
    }

    fn file(&self, name: &str) -> Option<PathBuf> {
        self.by_file
            .get(name)
            .map(|&i| self.packages[i].path.clone())
    }
}

/// The index entry for `file`, signed with the vendor key (the `sign-update` command).
pub fn sign(
    key: &protocol::VendorKey,
    product: &str,
    version: &OsVersion,
    file: &FsPath,
) -> anyhow::Result<IndexEntry> {
    let (sha, size) = hash_file(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| plain_file_name(n))
        .context("the package's file name must be plain (letters, digits, . _ -)")?;
    Ok(IndexEntry {
        product: product.to_owned(),
        version: version.clone(),
        file: name.to_owned(),
        sha256: protocol::hex(&sha),
        signature: key.sign(product, version, size, &sha),
    })
}

/// Demo devices (listed in the README): Dana's Couchpay Box, bought through the catalog,
/// and a display unit with no sale. Their credentials are public on purpose, like the
/// demo PINs.
pub const DEMO_SOLD: (&str, &str) = (
    "CPB-DEMO-0001",
    "6429c267fab7d91deefa07ed93aeea55285b99e915223ec95220e0edec76afb5",
);
pub const DEMO_DISPLAY: (&str, &str) = (
    "CPB-DEMO-0002",
    "540ed5e409b9a843b01d388b9f6c2b7a4248c66270a0e987cd203a52645de883",
);
/// The demo buyer: id, name, PIN.
pub const DEMO_BUYER: (&str, &str, &str) = ("dana", "Dana Fox", "8642");
const DEMO_ADDRESS: &str = "9 Elm Court, Bristol";
const DEMO_ITEM: &str = "box-couchpay";

/// Seeds the demo devices unless they exist: Dana's wallet is topped up with the box's
/// price and the box bought through the catalog (a real order and payment, so the ledger
/// holds the sale a refund returns), then the register entry is given its demo serial and
/// credential.
/// Whether the demo devices are in the register already.
fn demo_seeded(conn: &crate::db::Connection) -> ApiResult<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM devices WHERE id = ?1")?
        .query_row([DEMO_SOLD.0], |_| Ok(()))
        .optional()?
        .is_some())
}

pub async fn seed_demo(s: &crate::Inner, now: i64) -> anyhow::Result<()> {
    let Some(item) = s
        .catalog
        .item(&protocol::ItemId::parse(DEMO_ITEM)?)
        .cloned()
    else {
        return Ok(());
    };
    let Some(product) = item.device_product.clone() else {
        return Ok(());
    };
    let exists = s
        .store
        .read(demo_seeded)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if exists {
        return Ok(());
    }
    let pin = protocol::Pin::parse(DEMO_BUYER.2)?;
    let pin_hash = tokio::task::spawn_blocking(move || crate::pin::hash_pin(&pin)).await??;
    let server = s.public_url.clone();
    let currency = s.catalog.currency;
    let created = s
        .store
        .write(move |conn, events| {
            // Another node starting beside this one may have seeded since the check above.
            conn.lock_key(crate::seed::SEED_LOCK)?;
            if demo_seeded(conn)? {
                return Ok(false);
            }
            let buyer = AccountId::parse(DEMO_BUYER.0).map_err(ApiError::internal)?;
            if ledger::get_account(conn, buyer.as_str())?.is_none() {
                ledger::create_account(
                    conn,
                    buyer.as_str(),
                    ledger::AccountKind::Wallet,
                    None,
                    DEMO_BUYER.1,
                    currency,
                    Some(&pin_hash),
                    now,
                )?;
            }
            ledger::top_up(conn, buyer.as_str(), item.price, now)?;
            let tv = protocol::DeviceId::parse(DEMO_SOLD.0).map_err(ApiError::internal)?;
            let token = sessions::hash_token(&Token::random());
            let order = crate::orders::insert_order(
                conn,
                &item,
                &tv,
                "Living room",
                &token,
                now,
                now + 60_000,
            )?;
            let key = protocol::IdempotencyKey::random();
            crate::orders::pay_in_tx(
                conn,
                events,
                &server,
                &order.id,
                &buyer,
                &key,
                Some(DEMO_ADDRESS.to_owned()),
                now,
            )?;
            conn.prepare_cached(
                "UPDATE devices SET id = ?2, credential_hash = ?3 WHERE order_id = ?1",
            )?
            .execute(params![
                order.id.as_str(),
                DEMO_SOLD.0,
                demo_hash(DEMO_SOLD.1)?
            ])?;
            conn.prepare_cached(
                "INSERT INTO devices (id, id_kind, product, credential_hash, registered_at_ms)
                 VALUES (?1, 'serial', ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                DEMO_DISPLAY.0,
                product,
                demo_hash(DEMO_DISPLAY.1)?,
                now
            ])?;
            Ok(true)
        })
        .await
        .map_err(|e| anyhow::anyhow!("seeding demo devices: {e:?}"))?;
    if !created {
        return Ok(());
    }
    tracing::info!(
        sold = DEMO_SOLD.0,
        display = DEMO_DISPLAY.0,
        "created demo devices (see README)"
    );
    Ok(())
}

fn demo_hash(credential: &str) -> ApiResult<String> {
    Ok(sessions::hash_token(
        &Token::parse(credential).map_err(ApiError::internal)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_file_names_are_plain() {
        for ok in ["couchpay-box-1.1.0.bin", "a", "x_y.z"] {
            assert!(plain_file_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "ä.bin", "a b"] {
            assert!(!plain_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn demo_credentials_are_tokens() {
        use protocol::HardwareIdKind;
        for c in [DEMO_SOLD.1, DEMO_DISPLAY.1] {
            assert!(demo_hash(c).is_ok());
        }
        for id in [DEMO_SOLD.0, DEMO_DISPLAY.0] {
            assert_eq!(
                HardwareId::parse(id).unwrap().kind(),
                HardwareIdKind::Serial
            );
        }
    }
}
