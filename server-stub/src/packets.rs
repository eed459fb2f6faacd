//! Red packets (SPEC R1–R5): a sender splits money into packets behind one claim link;
//! each recipient claims one packet; what nobody claims goes back at expiry.
//!
//! Money: creating a set moves its total from the sender's wallet to the currency's
//! escrow account in one transfer; a claim moves that packet's amount from escrow to the
//! recipient; the expiry refund moves the unclaimed rest back to the sender, in the same
//! transaction that closes the set. The audit checks that each escrow account holds
//! exactly the unclaimed packets of the open sets.
//!
//! The split is made once, at creation, and stored: `n − 1` distinct cut points drawn
//! uniformly from the `total − 1` gaps between minor units give a uniformly random
//! composition of the total into `n` parts of at least one unit. Its parts are
//! exchangeable, so every claim position has the same distribution: the same mean and the
//! same chance of being the largest. (The common "double mean" draw at claim time is fair
//! on average, but later claimers' spread is wider, so they are largest more often.) The
//! unit test `split_is_fair_for_every_claim_position` measures it.
//!
//! Races: every claim first updates its set's row (`claimed = claimed + 1 … WHERE state =
//! 'open' AND claimed < count AND not expired`), which both checks and locks; the expiry
//! refund closes the set with the same kind of conditional update and only then sums the
//! unclaimed packets. So on SQLite (one writer) and on PostgreSQL across nodes (the second
//! waits for the first's row lock, then re-checks) a packet is paid exactly once, to a
//! claimant or back to the sender. One packet per recipient is a unique index, not a read
//! before the write.

use protocol::ErrorBody;
use std::collections::BTreeSet;
use utoipa_axum::{router::OpenApiRouter, routes};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use protocol::{
    AccountEvent, AccountId, ClaimPacket, Claimed, CreatePackets, Money, PacketClaim, PacketLink,
    PacketQuote, PacketQuoteRequest, PacketSet, PacketSetId, PacketSetState, PacketSplit,
    PacketsEvent, Page, ServerUrl, ShortCode,
};
use serde::Deserialize;

use crate::db::{Connection, OptionalExtension, params};
use crate::error::{ApiError, ApiResult};
use crate::events::Event;
use crate::extract::{ApiJson, ClientIp};
use crate::paging::PageQuery;
use crate::sessions::Proof;
use crate::{AppState, ledger, sessions};

/// Tries at a short code not held by another open set before giving up.
const SHORT_CODE_ATTEMPTS: usize = 8;
/// Most packets in one set.
pub const MAX_PACKETS: u32 = 10_000;
/// Claims listed in a claim's answer and in the claim events (the newest); `GET` of a set
/// lists them all.
pub const LIVE_CLAIMS: usize = 20;
/// Largest total of one set: 5,000.00.
pub const MAX_SET_MINOR: u64 = 5_000_00;
/// An average packet above this (200.00) gets a warning in the quote (SPEC R4).
pub const WARN_AVERAGE_MINOR: u64 = 200_00;
/// Validity when the sender does not say: one day.
pub const DEFAULT_VALIDITY_S: u64 = 86_400;
/// Longest validity a sender may choose.
pub const MAX_VALIDITY_S: u64 = 7 * 86_400;
/// Most accounts a set may be restricted to.
pub const MAX_ALLOWED: usize = 100;
/// Sets refunded per sweep transaction.
const SWEEP_BATCH: i64 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(quote_handler))
        .routes(routes!(create))
        .routes(routes!(show))
        .routes(routes!(claim))
        .routes(routes!(list))
}

/// A uniform integer in `0..bound` (`bound > 0`), without modulo bias.
fn uniform(bound: u64) -> u64 {
    let zone = u64::MAX - u64::MAX % bound;
    loop {
        let x = u64::from_le_bytes(protocol::random_bytes::<8>());
        if x < zone {
            return x % bound;
        }
    }
}

/// Cuts `total` minor units into `n` random packets of at least one unit each, summing
/// exactly to `total` (see the module comment). Needs `2 <= n <= total`.
pub fn split_random(total: u64, n: u32) -> Vec<u64> {
    assert!(
        n >= 2 && u64::from(n) <= total,
        "split_random({total}, {n})"
    );
    let mut cuts = BTreeSet::new();
    while cuts.len() < n as usize - 1 {
        cuts.insert(1 + uniform(total - 1));
    }
    let mut parts = Vec::with_capacity(n as usize);
    let mut last = 0;
    for c in cuts {
        parts.push(c - last);
        last = c;
    }
    parts.push(total - last);
    parts
}

/// Checks a request and says what it would take: (total, average, warning).
pub fn quote(count: u32, split: PacketSplit) -> ApiResult<PacketQuote> {
    if !(2..=MAX_PACKETS).contains(&count) {
        return Err(ApiError::InvalidRequest(format!(
            "a set has 2 to {MAX_PACKETS} packets"
        )));
    }
    let total = match split {
        PacketSplit::Random { total } => {
            if total.minor < u64::from(count) {
                return Err(ApiError::InvalidRequest(format!(
                    "{total} cannot fill {count} packets: each needs at least one {}",
                    Money::new(1, total.currency)
                )));
            }
            total
        }
        PacketSplit::Fixed { each } => {
            if each.minor == 0 {
                return Err(ApiError::InvalidRequest(
                    "each packet must hold something".into(),
                ));
            }
            let minor = each.minor.checked_mul(u64::from(count)).ok_or_else(|| {
                ApiError::LimitExceeded("that is more than any set may hold".into())
            })?;
            Money::new(minor, each.currency)
        }
    };
    if total.minor > MAX_SET_MINOR {
        return Err(ApiError::LimitExceeded(format!(
            "a set may hold at most {}",
            Money::new(MAX_SET_MINOR, total.currency)
        )));
    }
    let average = Money::new(total.minor / u64::from(count), total.currency);
    let warning = (average.minor > WARN_AVERAGE_MINOR).then(|| {
        format!(
            "each packet holds {average} on average, more than the usual {}: check the amount",
            Money::new(WARN_AVERAGE_MINOR, total.currency)
        )
    });
    Ok(PacketQuote {
        total,
        average,
        warning,
    })
}

#[utoipa::path(
    post,
    path = "/v1/packets/quote",
    operation_id = "packets_quote_handler",
    tag = "packets",
    summary = "What a red-packet set would cost, before creating it",
    request_body = PacketQuoteRequest,
    responses(
        (status = 200, description = "OK", body = PacketQuote),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
    ),
)]
async fn quote_handler(ApiJson(req): ApiJson<PacketQuoteRequest>) -> ApiResult<Json<PacketQuote>> {
    Ok(Json(quote(req.count, req.split)?))
}

fn parse_set_id(s: &str) -> ApiResult<PacketSetId> {
    PacketSetId::parse(s).map_err(|_| ApiError::UnknownPackets)
}

/// The stored set, as [`PacketSet`].
pub(crate) fn load_set(
    conn: &Connection,
    server: &ServerUrl,
    id: &PacketSetId,
) -> ApiResult<Option<PacketSet>> {
    load_set_listing(conn, server, id, None)
}

/// The stored set, with every claim (`newest: None`) or only the newest ones: a claim's
/// answer and events list [`LIVE_CLAIMS`], so a claim costs the same in a set of ten
/// thousand packets as in one of ten.
pub(crate) fn load_set_listing(
    conn: &Connection,
    server: &ServerUrl,
    id: &PacketSetId,
    newest: Option<usize>,
) -> ApiResult<Option<PacketSet>> {
    type Head = (
        String,
        String,
        String,
        i64,
        i64,
        i64,
        String,
        String,
        i64,
        i64,
        i64,
        i64,
        (i64, i64, Option<String>),
    );
    let head: Option<Head> = conn
        .prepare_cached(
            "SELECT s.sender, a.name, s.currency, s.total, s.count, s.fixed, s.message, s.state,
                    s.restricted, s.refunded, s.created_at_ms, s.expires_at_ms, s.claimed,
                    s.largest, s.short_code
             FROM packet_sets s JOIN accounts a ON a.id = s.sender WHERE s.id = ?1",
        )?
        .query_row([id.as_str()], |r| {
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
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                (r.get(12)?, r.get(13)?, r.get(14)?),
            ))
        })
        .optional()?;
    let Some((
        sender,
        sender_name,
        cur,
        total,
        count,
        fixed,
        message,
        state,
        restricted,
        refunded,
        created,
        expires,
        (claimed, largest, code),
    )) = head
    else {
        return Ok(None);
    };
    let bad = |e: protocol::ParseError| ApiError::internal(e);
    let currency = protocol::Currency::parse(&cur).map_err(bad)?;
    let money = |m: i64| Money::new(m.max(0) as u64, currency);
    // Claims take the packets in position order, so the newest are the highest positions.
    let limit = newest.map_or(i64::MAX, |n| n as i64);
    let first = newest.map_or(0, |n| claimed - n as i64);
    let mut claims: Vec<PacketClaim> = conn
        .prepare_cached(
            "SELECT p.recipient, a.name, p.amount, p.claimed_at_ms
             FROM packets p JOIN accounts a ON a.id = p.recipient
             WHERE p.set_id = ?1 AND p.recipient IS NOT NULL AND p.position >= ?2
             ORDER BY p.position LIMIT ?3",
        )?
        .query_map(params![id.as_str(), first.max(0), limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(who, name, amount, at)| {
            Ok(PacketClaim {
                recipient: AccountId::parse(&who).map_err(bad)?,
                recipient_name: name,
                amount: money(amount),
                claimed_at_ms: at,
                largest: false,
            })
        })
        .collect::<ApiResult<_>>()?;
    for c in &mut claims {
        c.largest = c.amount.minor as i64 == largest;
    }
    let allowed = if restricted != 0 {
        Some(
            conn.prepare_cached(
                "SELECT account FROM packet_allowed WHERE set_id = ?1 ORDER BY account",
            )?
            .query_map([id.as_str()], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .map(|a| AccountId::parse(a).map_err(bad))
            .collect::<ApiResult<_>>()?,
        )
    } else {
        None
    };
    let count = u32::try_from(count).map_err(ApiError::internal)?;
    Ok(Some(PacketSet {
        id: id.clone(),
        link: PacketLink::new(server.clone(), id.clone()),
        short_code: code
            .map(|c| ShortCode::parse(&c))
            .transpose()
            .map_err(bad)?,
        sender: AccountId::parse(&sender).map_err(bad)?,
        sender_name,
        message,
        count,
        total: money(total),
        fixed: fixed != 0,
        state: match state.as_str() {
            "finished" => PacketSetState::Finished,
            "refunded" => PacketSetState::Refunded,
            _ => PacketSetState::Open,
        },
        remaining: count.saturating_sub(u32::try_from(claimed).map_err(ApiError::internal)?),
        claims,
        refunded: money(refunded),
        created_at_ms: created,
        expires_at_ms: expires,
        allowed,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/packets",
    operation_id = "packets_create",
    tag = "packets",
    summary = "Create a red-packet set: the total is held from the sender's wallet",
    request_body = CreatePackets,
    responses(
        (status = 200, description = "OK", body = PacketSet),
        (status = 401, description = "`wrong_pin`, `unauthorized`", body = ErrorBody),
        (status = 402, description = "`insufficient_funds`", body = ErrorBody),
        (status = 404, description = "`unknown_account`", body = ErrorBody),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn create(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<CreatePackets>,
) -> ApiResult<Json<PacketSet>> {
    let q = quote(req.count, req.split)?;
    let valid_s = req.valid_for_s.unwrap_or(DEFAULT_VALIDITY_S);
    if !(60..=MAX_VALIDITY_S).contains(&valid_s) {
        return Err(ApiError::InvalidRequest(format!(
            "a set is valid for 60 s to {} days",
            MAX_VALIDITY_S / 86_400
        )));
    }
    // The message is optional; one that is given is checked like any shown text.
    let message = if req.message.trim().is_empty() {
        String::new()
    } else {
        crate::orders::clean_text(&req.message, 200, "message")?
    };
    let allowed: Option<BTreeSet<AccountId>> = req.allowed.clone().map(|a| a.into_iter().collect());
    if allowed
        .as_ref()
        .is_some_and(|a| a.is_empty() || a.len() > MAX_ALLOWED)
    {
        return Err(ApiError::InvalidRequest(format!(
            "name 1 to {MAX_ALLOWED} accounts that may claim, or none for anyone"
        )));
    }
    let packets = match req.split {
        PacketSplit::Random { total } => split_random(total.minor, req.count),
        PacketSplit::Fixed { each } => vec![each.minor; req.count as usize],
    };
    let now = s.clock.now_ms();
    let proof = Proof::of(&s, &req.account, &req.auth, ip, now).await?;
    let server = s.public_url.clone();
    let set = s
        .store
        .write(move |conn, _| {
            proof.check(conn, &req.account, now)?;
            let sender = &req.account;
            let wallet = ledger::get_account(conn, sender.as_str())?
                .filter(|a| a.kind == "wallet")
                .ok_or(ApiError::UnknownAccount)?;
            if wallet.currency != q.total.currency {
                return Err(ApiError::CurrencyMismatch(format!(
                    "your wallet holds {}, not {}",
                    wallet.currency, q.total.currency
                )));
            }
            if let Some(list) = &allowed {
                for a in list {
                    let ok = a != sender
                        && ledger::get_account(conn, a.as_str())?
                            .is_some_and(|acc| acc.kind == "wallet");
                    if !ok {
                        return Err(ApiError::InvalidRequest(format!(
                            "{a} is not another wallet that could claim"
                        )));
                    }
                }
            }
            let id = PacketSetId::random();
            let escrow = ledger::escrow_account(conn, q.total.currency, now)?;
            let mut inserted = false;
            for _ in 0..SHORT_CODE_ATTEMPTS {
                inserted =
                    conn.prepare_cached(
                        "INSERT INTO packet_sets (id, sender, currency, total, count, fixed,
                             message, escrow, state, restricted, created_at_ms, expires_at_ms,
                             short_code)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9, ?10, ?11, ?12)
                         ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![
                        id.as_str(),
                        sender.as_str(),
                        q.total.currency.as_str(),
                        q.total.minor as i64,
                        i64::from(req.count),
                        i64::from(matches!(req.split, PacketSplit::Fixed { .. })),
                        message,
                        escrow,
                        i64::from(allowed.is_some()),
                        now,
                        now + valid_s as i64 * 1000,
                        ShortCode::random().as_str()
                    ])? == 1;
                if inserted {
                    break;
                }
            }
            if !inserted {
                return Err(ApiError::internal("no free short code for a packet set"));
            }
            ledger::transfer(
                conn,
                sender.as_str(),
                &escrow,
                q.total,
                "packets",
                Some(id.as_str()),
                now,
            )?;
            let mut insert = conn.prepare_cached(
                "INSERT INTO packets (set_id, position, amount) VALUES (?1, ?2, ?3)",
            )?;
            for (i, amount) in packets.iter().enumerate() {
                insert.execute(params![id.as_str(), i as i64, *amount as i64])?;
            }
            drop(insert);
            for a in allowed.iter().flatten() {
                conn.prepare_cached(
                    "INSERT INTO packet_allowed (set_id, account) VALUES (?1, ?2)",
                )?
                .execute(params![id.as_str(), a.as_str()])?;
            }
            load_set(conn, &server, &id)?.ok_or_else(|| ApiError::internal("set vanished"))
        })
        .await?;
    tracing::info!(
        set = set.id.log_prefix(), sender = %set.sender, total = %set.total,
        count = set.count, "red packets sent"
    );
    Ok(Json(set))
}

#[utoipa::path(
    get,
    path = "/v1/packets/{id}",
    operation_id = "packets_show",
    tag = "packets",
    summary = "A red-packet set and its claims",
    params(
        ("id" = String, Path, description = "The set id"),
    ),
    responses(
        (status = 200, description = "OK", body = PacketSet),
        (status = 404, description = "`unknown_packets`", body = ErrorBody),
    ),
)]
async fn show(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<PacketSet>> {
    let id = parse_set_id(&id)?;
    let server = s.public_url.clone();
    let set = s
        .store
        .read(move |conn| load_set(conn, &server, &id)?.ok_or(ApiError::UnknownPackets))
        .await?;
    Ok(Json(set))
}

#[utoipa::path(
    post,
    path = "/v1/packets/{id}/claim",
    operation_id = "packets_claim",
    tag = "packets",
    summary = "Claim one packet of a set into an account",
    params(
        ("id" = String, Path, description = "The set id"),
    ),
    request_body = ClaimPacket,
    responses(
        (status = 200, description = "OK", body = Claimed),
        (status = 401, description = "`wrong_pin`, `unauthorized`", body = ErrorBody),
        (status = 403, description = "`not_allowed`", body = ErrorBody),
        (status = 404, description = "`unknown_packets`, `unknown_account`", body = ErrorBody),
        (status = 409, description = "`already_claimed`, `sold_out`", body = ErrorBody),
        (status = 410, description = "`packets_expired`", body = ErrorBody),
        (status = 422, description = "`limit_exceeded`", body = ErrorBody),
        (status = 423, description = "`account_locked`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    ),
)]
async fn claim(
    State(s): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ClaimPacket>,
) -> ApiResult<Json<Claimed>> {
    let id = parse_set_id(&id)?;
    let now = s.clock.now_ms();
    let proof = Proof::of(&s, &req.account, &req.auth, ip, now).await?;
    let server = s.public_url.clone();
    let recipient = req.account.clone();
    let claimed = s
        .store
        .write(move |conn, events| {
            proof.check(conn, &req.account, now)?;
            claim_in_tx(conn, events, &server, &id, &req.account, now)
        })
        .await?;
    tracing::info!(
        set = claimed.set.id.log_prefix(), %recipient,
        amount = %claimed.amount, "red packet claimed"
    );
    Ok(Json(claimed))
}

/// Claims one packet of set `id` for `who`; see the module comment for the races.
pub(crate) fn claim_in_tx(
    conn: &Connection,
    events: &mut Vec<Event>,
    server: &ServerUrl,
    id: &PacketSetId,
    who: &AccountId,
    now: i64,
) -> ApiResult<Claimed> {
    let head: Option<(String, String, i64, String)> = conn
        .prepare_cached(
            "SELECT sender, currency, restricted, escrow FROM packet_sets WHERE id = ?1",
        )?
        .query_row([id.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let (sender, currency, restricted, escrow) = head.ok_or(ApiError::UnknownPackets)?;
    if sender == who.as_str() {
        return Err(ApiError::NotAllowed(
            "you sent these packets: they are for others".into(),
        ));
    }
    if restricted != 0 {
        let allowed = conn
            .prepare_cached("SELECT 1 FROM packet_allowed WHERE set_id = ?1 AND account = ?2")?
            .query_row(params![id.as_str(), who.as_str()], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some();
        if !allowed {
            return Err(ApiError::NotAllowed(
                "these packets are for other people".into(),
            ));
        }
    }
    let wallet = ledger::get_account(conn, who.as_str())?
        .filter(|a| a.kind == "wallet")
        .ok_or(ApiError::UnknownAccount)?;
    if wallet.currency.as_str() != currency {
        return Err(ApiError::CurrencyMismatch(format!(
            "your wallet holds {}, the packets are in {currency}",
            wallet.currency
        )));
    }
    // Check and lock the set in one step; the n-th claim takes the packet at position
    // n - 1 (the set's row lock orders claims, and a refused claim rolls both back).
    let taken: Option<i64> = conn
        .prepare_cached(
            "UPDATE packet_sets SET claimed = claimed + 1
             WHERE id = ?1 AND state = 'open' AND expires_at_ms > ?2 AND claimed < count
             RETURNING claimed",
        )?
        .query_row(params![id.as_str(), now], |r| r.get(0))
        .optional()?;
    let Some(claimed) = taken else {
        let mine = conn
            .prepare_cached("SELECT 1 FROM packets WHERE set_id = ?1 AND recipient = ?2")?
            .query_row(params![id.as_str(), who.as_str()], |r| r.get::<_, i64>(0))
            .optional()?
            .is_some();
        let (state, expires): (String, i64) = conn
            .prepare_cached("SELECT state, expires_at_ms FROM packet_sets WHERE id = ?1")?
            .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        return Err(if mine {
            ApiError::AlreadyClaimed
        } else if state == "refunded" || expires <= now {
            ApiError::PacketsExpired
        } else {
            ApiError::SoldOut
        });
    };
    let position = claimed - 1;
    let picked: Result<Option<i64>, _> = conn
        .prepare_cached(
            "UPDATE packets SET recipient = ?3, claimed_at_ms = ?4
             WHERE set_id = ?1 AND position = ?2 AND recipient IS NULL
             RETURNING amount",
        )?
        .query_row(params![id.as_str(), position, who.as_str(), now], |r| {
            r.get(0)
        })
        .optional();
    let amount = match picked {
        Ok(Some(amount)) => amount,
        Ok(None) => return Err(ApiError::internal("a counted set had no packet left")),
        Err(e) if e.is_unique_violation() => return Err(ApiError::AlreadyClaimed),
        Err(e) => return Err(e.into()),
    };
    conn.prepare_cached("UPDATE packet_sets SET largest = ?2 WHERE id = ?1 AND largest < ?2")?
        .execute(params![id.as_str(), amount])?;
    let currency = protocol::Currency::parse(&currency).map_err(ApiError::internal)?;
    let amount = Money::new(amount as u64, currency);
    let transfer = ledger::transfer(
        conn,
        &escrow,
        who.as_str(),
        amount,
        "packet",
        Some(id.as_str()),
        now,
    )?;
    conn.prepare_cached("UPDATE packets SET transfer_id = ?3 WHERE set_id = ?1 AND position = ?2")?
        .execute(params![id.as_str(), position, transfer])?;
    let finished = conn
        .prepare_cached(
            "UPDATE packet_sets SET state = 'finished', closed_at_ms = ?2
             WHERE id = ?1 AND claimed = count",
        )?
        .execute(params![id.as_str(), now])?
        == 1;
    let set = load_set_listing(conn, server, id, Some(LIVE_CLAIMS))?
        .ok_or_else(|| ApiError::internal("set vanished"))?;
    let sender = set.sender.clone();
    for to in [&sender, who] {
        events.push(Event::Account(
            to.clone(),
            AccountEvent::PacketClaimed {
                set: set.clone(),
                recipient: who.clone(),
                amount,
            },
        ));
    }
    events.push(Event::Packets(
        id.clone(),
        if finished {
            PacketsEvent::Finished { set: set.clone() }
        } else {
            PacketsEvent::Claimed { set: set.clone() }
        },
    ));
    if finished {
        push_to_all(conn, events, &set, |set| AccountEvent::PacketsFinished {
            set,
        })?;
    }
    Ok(Claimed { amount, set })
}

/// An event about `set` to its sender and every recipient so far (each gets the set as a
/// claim's answer lists it: the newest claims).
fn push_to_all(
    conn: &Connection,
    events: &mut Vec<Event>,
    set: &PacketSet,
    make: impl Fn(PacketSet) -> AccountEvent,
) -> ApiResult<()> {
    let recipients: Vec<String> = conn
        .prepare_cached(
            "SELECT recipient FROM packets WHERE set_id = ?1 AND recipient IS NOT NULL",
        )?
        .query_map([set.id.as_str()], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut to: BTreeSet<AccountId> = recipients
        .iter()
        .map(|a| AccountId::parse(a).map_err(ApiError::internal))
        .collect::<ApiResult<_>>()?;
    to.insert(set.sender.clone());
    for account in to {
        events.push(Event::Account(account, make(set.clone())));
    }
    Ok(())
}

/// Closes expired sets and pays their unclaimed rest back to the sender, once each.
pub async fn sweep_expired(s: &AppState) -> ApiResult<usize> {
    let now = s.clock.now_ms();
    let server = s.public_url.clone();
    s.store
        .write(move |conn, events| {
            let due: Vec<(String, String, String, String)> = conn
                .prepare_cached(
                    "SELECT id, sender, escrow, currency FROM packet_sets
                     WHERE state = 'open' AND expires_at_ms <= ?1 ORDER BY id LIMIT ?2",
                )?
                .query_map(params![now, SWEEP_BATCH], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<Result<_, _>>()?;
            let mut refunded = 0;
            for (id, sender, escrow, currency) in due {
                // Close first (this waits for, then sees, any claim that got in).
                let closed = conn
                    .prepare_cached(
                        "UPDATE packet_sets SET state = 'refunded', closed_at_ms = ?2
                         WHERE id = ?1 AND state = 'open' AND expires_at_ms <= ?2",
                    )?
                    .execute(params![id, now])?;
                if closed != 1 {
                    continue;
                }
                let rest: i64 = conn
                    .prepare_cached(
                        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM packets
                         WHERE set_id = ?1 AND recipient IS NULL",
                    )?
                    .query_row([id.as_str()], |r| r.get(0))?;
                if rest > 0 {
                    let currency =
                        protocol::Currency::parse(&currency).map_err(ApiError::internal)?;
                    ledger::transfer(
                        conn,
                        &escrow,
                        &sender,
                        Money::new(rest as u64, currency),
                        "packets_refund",
                        Some(&id),
                        now,
                    )?;
                    conn.prepare_cached("UPDATE packet_sets SET refunded = ?2 WHERE id = ?1")?
                        .execute(params![id, rest])?;
                }
                refunded += 1;
                let set_id = PacketSetId::parse(&id).map_err(ApiError::internal)?;
                if let Some(set) = load_set_listing(conn, &server, &set_id, Some(LIVE_CLAIMS))? {
                    events.push(Event::Packets(
                        set_id.clone(),
                        PacketsEvent::Refunded { set: set.clone() },
                    ));
                    push_to_all(conn, events, &set, |set| AccountEvent::PacketsRefunded {
                        set,
                    })?;
                }
            }
            Ok(refunded)
        })
        .await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// `sent` (default) or `received`.
    kind: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/accounts/{id}/packets`: sets the account sent (or claimed from), newest first.
#[utoipa::path(
    get,
    path = "/v1/accounts/{id}/packets",
    operation_id = "packets_list",
    tag = "packets",
    summary = "Sets the account sent (or claimed from), newest first",
    params(
        ("id" = String, Path, description = "The account id"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "OK", body = Page<PacketSet>),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ),
    security(("session" = [])),
)]
async fn list(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
    headers: HeaderMap,
) -> ApiResult<Json<Page<PacketSet>>> {
    let id = AccountId::parse(&id).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    let received = match q.kind.as_deref() {
        None | Some("sent") => false,
        Some("received") => true,
        Some(other) => {
            return Err(ApiError::InvalidRequest(format!(
                "kind is sent or received, not {other}"
            )));
        }
    };
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    }
    .parse()?;
    sessions::authorize(&s, &headers, &id).await?;
    let server = s.public_url.clone();
    let list = s
        .store
        .read(move |conn| {
            let (ms, after) = page.key();
            let whose = if received {
                "s.id IN (SELECT set_id FROM packets WHERE recipient = ?1)"
            } else {
                "s.sender = ?1"
            };
            let ids: Vec<String> = conn
                .prepare_cached(&format!(
                    "SELECT s.id FROM packet_sets s WHERE {whose}
                       AND (s.created_at_ms < ?2 OR (s.created_at_ms = ?2 AND s.id < ?3))
                     ORDER BY s.created_at_ms DESC, s.id DESC LIMIT ?4"
                ))?
                .query_map(params![id.as_str(), ms, after, page.fetch()], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut items = Vec::with_capacity(ids.len());
            for set in ids {
                let set = PacketSetId::parse(&set).map_err(ApiError::internal)?;
                items.extend(load_set(conn, &server, &set)?);
            }
            let next_cursor = page.finish(&mut items, |p: &PacketSet| {
                (p.created_at_ms, p.id.as_str().to_owned())
            });
            Ok(Page { items, next_cursor })
        })
        .await?;
    Ok(Json(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_splits_sum_exactly_with_every_packet_at_least_one_unit() {
        for (total, n) in [
            (2, 2),
            (3, 3),
            (10, 2),
            (100, 100),
            (101, 100),
            (5_000_00, 100),
            (7, 5),
        ] {
            for _ in 0..200 {
                let parts = split_random(total, n);
                assert_eq!(parts.len(), n as usize);
                assert_eq!(parts.iter().sum::<u64>(), total);
                assert!(parts.iter().all(|&p| p >= 1), "{parts:?}");
            }
        }
    }

    #[test]
    fn quotes_refuse_bad_sets_and_warn_on_large_packets() {
        let eur = protocol::Currency::parse("EUR").unwrap();
        let m = |minor| Money::new(minor, eur);
        assert!(quote(1, PacketSplit::Random { total: m(100) }).is_err());
        assert!(quote(MAX_PACKETS + 1, PacketSplit::Random { total: m(100_000) }).is_err());
        assert!(quote(10, PacketSplit::Random { total: m(9) }).is_err());
        assert!(quote(2, PacketSplit::Fixed { each: m(0) }).is_err());
        assert!(
            quote(
                2,
                PacketSplit::Fixed {
                    each: m(u64::MAX / 2 + 1)
                }
            )
            .is_err()
        );
        assert!(
            quote(
                2,
                PacketSplit::Random {
                    total: m(MAX_SET_MINOR + 1)
                }
            )
            .is_err()
        );
        let q = quote(10, PacketSplit::Fixed { each: m(5_00) }).unwrap();
        assert_eq!((q.total, q.average, q.warning), (m(50_00), m(5_00), None));
        let q = quote(2, PacketSplit::Random { total: m(1_000_00) }).unwrap();
        assert!(q.warning.is_some());
    }

    /// Over many splits, each claim position has the same mean and the same chance of
    /// getting the largest packet (within the stated tolerance); prints the table.
    #[test]
    fn split_is_fair_for_every_claim_position() {
        const N: u32 = 10;
        const TOTAL: u64 = 100_00;
        const SPLITS: usize = 20_000;
        let mut sums = [0u64; N as usize];
        let mut largest = [0u64; N as usize];
        for _ in 0..SPLITS {
            let parts = split_random(TOTAL, N);
            let top = *parts.iter().max().unwrap();
            for (i, &p) in parts.iter().enumerate() {
                sums[i] += p;
                if p == top {
                    largest[i] += 1;
                }
            }
        }
        let fair_mean = TOTAL as f64 / f64::from(N);
        println!(
            "position  mean (fair {fair_mean:.0})  largest % (fair {:.1})",
            100.0 / f64::from(N)
        );
        for i in 0..N as usize {
            let mean = sums[i] as f64 / SPLITS as f64;
            let share = largest[i] as f64 / SPLITS as f64 * 100.0;
            println!("{:>8}  {mean:>17.1}  {share:>10.2}", i + 1);
            // The mean of 20,000 draws is within ~3 % of fair (its standard error is
            // ~0.6 %); the chance of being largest within 1.5 points of 10 % (its
            // standard error is ~0.2 points).
            assert!(
                (mean - fair_mean).abs() < fair_mean * 0.03,
                "position {i}: mean {mean}"
            );
            assert!(
                (share - 10.0).abs() < 1.5,
                "position {i}: largest {share} %"
            );
        }
    }
}
