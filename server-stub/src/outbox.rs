//! Events across nodes (PostgreSQL only): the transactional outbox and its relay.
//!
//! Every node publishes the events of its own commits to its own [`Hub`] at once. So that a
//! TV following an order on node A also hears of a payment made through node B, each
//! writer batch that produced events also inserts one `event_outbox` row holding them (in
//! the batch's own transaction, so a row exists exactly when its writes committed), and
//! after the commit sends a `NOTIFY` outside any transaction. A relay thread on every node
//! `LISTEN`s, reads the rows it has not seen and publishes those written by other nodes.
//!
//! `NOTIFY` is not sent inside the transaction on purpose: a notifying transaction takes a
//! global lock at commit, which would serialise the commits of every node. The
//! notification is only a wake-up hint: the relay also polls every [`POLL_INTERVAL`], so a
//! lost notification (or an engine without `LISTEN`) delays events, never loses them.
//!
//! Row ids come from a sequence, which hands them out at insert and not at commit: a row
//! with a smaller id can become visible after a larger one. The relay therefore remembers
//! the ids it skipped and looks for them again for [`GAP_WAIT`] (a rolled-back batch leaves
//! a gap that never fills). Rows are kept for [`RETENTION`], then pruned by every node.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::db::{Connection, params};
use crate::events::{Event, Hub};

/// The channel the writers notify and the relays listen on.
const CHANNEL: &str = "couchpay_outbox";
/// How long the relay waits for a notification before it looks anyway.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long a skipped id is looked for again before the relay gives up on it.
const GAP_WAIT: Duration = Duration::from_secs(10);
/// Most skipped ids remembered at once.
const MAX_GAPS: usize = 10_000;
/// Rows read per query.
const FETCH_LIMIT: i64 = 500;
/// How long rows are kept, and how often each node prunes older ones.
const RETENTION: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(10);

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A server process's side of the outbox: its node id, which marks the rows it wrote.
#[derive(Clone, Debug)]
pub struct Outbox {
    node: Arc<str>,
}

impl Outbox {
    /// A new node id: random, so that a restarted process is a new node.
    pub fn new() -> Self {
        let id: String = protocol::random_bytes::<8>()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self { node: id.into() }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Records `events` in the open transaction.
    pub fn write(&self, conn: &Connection, events: &[Event]) -> crate::db::Result<()> {
        let json = serde_json::to_string(events)
            .map_err(|e| crate::db::Error::Parameter(format!("outbox events: {e}")))?;
        conn.prepare_cached("INSERT INTO event_outbox (node, at_ms, events) VALUES (?1, ?2, ?3)")?
            .execute(params![&*self.node, wall_ms(), json])?;
        Ok(())
    }

    /// Wakes the relays of every node; called after the commit, outside a transaction.
    pub fn notify(&self, conn: &Connection) {
        if let Err(e) = conn.execute_batch(&format!("NOTIFY {CHANNEL}")) {
            // The relays poll as well: the events are only later.
            tracing::debug!(error = %e, "outbox notify failed");
        }
    }

    /// Starts this node's relay thread; it stops soon after `alive` has no owner left.
    pub fn spawn_relay(&self, url: String, hub: Arc<Hub>, alive: Weak<()>) -> std::io::Result<()> {
        let node = self.node.clone();
        std::thread::Builder::new()
            .name("couchpay-outbox-relay".into())
            .spawn(move || relay_loop(&url, &node, &hub, &alive))
            .map(drop)
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

/// What the relay has read: every id up to `max_seen`, except the `gaps` it still waits for.
#[derive(Debug, Default)]
struct Cursor {
    max_seen: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl Cursor {
    /// Takes `rows` (any order, possibly seen before) and returns those not seen yet, by id.
    fn admit(&mut self, mut rows: Vec<Row>, now: Instant) -> Vec<Row> {
        rows.sort_by_key(|r| r.id);
        rows.dedup_by_key(|r| r.id);
        let mut fresh = Vec::with_capacity(rows.len());
        for row in rows {
            if row.id > self.max_seen {
                for gap in (self.max_seen + 1)..row.id {
                    if self.gaps.len() >= MAX_GAPS {
                        break;
                    }
                    self.gaps.insert(gap, now);
                }
                self.max_seen = row.id;
            } else if self.gaps.remove(&row.id).is_none() {
                continue;
            }
            fresh.push(row);
        }
        self.gaps
            .retain(|_, since| now.duration_since(*since) < GAP_WAIT);
        fresh
    }
}

#[derive(Debug)]
struct Row {
    id: i64,
    node: String,
    events: String,
}

fn relay_loop(url: &str, node: &str, hub: &Hub, alive: &Weak<()>) {
    let mut conn: Option<Connection> = None;
    let mut cursor: Option<Cursor> = None;
    let mut pruned = Instant::now();
    while alive.strong_count() > 0 {
        let c = match conn.as_ref() {
            Some(c) => c,
            None => match listen(url) {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay cannot connect; retrying");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let step = (|| -> crate::db::Result<()> {
            if cursor.is_none() {
                // Events committed before this node started are history, not news.
                let max_seen =
                    c.query_row("SELECT COALESCE(MAX(id), 0) FROM event_outbox", (), |r| {
                        r.get(0)
                    })?;
                cursor = Some(Cursor {
                    max_seen,
                    ..Cursor::default()
                });
            }
            let cursor = cursor.as_mut().expect("set above");
            c.wait_for_notifications(POLL_INTERVAL)?;
            relay_new(c, cursor, node, hub)?;
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                c.prepare_cached("DELETE FROM event_outbox WHERE at_ms < ?1")?
                    .execute([wall_ms() - RETENTION.as_millis() as i64])?;
            }
            Ok(())
        })();
        if let Err(e) = step {
            // The database restarted, say: connect again and carry on from the cursor.
            tracing::warn!(error = %e, "outbox relay lost its connection; reconnecting");
            conn = None;
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    tracing::debug!("outbox relay stopped");
}

fn listen(url: &str) -> crate::db::Result<Connection> {
    let conn = Connection::postgres(url)?;
    conn.execute_batch(&format!("LISTEN {CHANNEL}"))?;
    Ok(conn)
}

/// Reads every row not seen yet and publishes the events other nodes wrote.
fn relay_new(
    conn: &Connection,
    cursor: &mut Cursor,
    node: &str,
    hub: &Hub,
) -> crate::db::Result<()> {
    loop {
        let mut rows = Vec::new();
        let read = |r: &crate::db::Row<'_>| -> crate::db::Result<Row> {
            Ok(Row {
                id: r.get(0)?,
                node: r.get(1)?,
                events: r.get(2)?,
            })
        };
        conn.prepare_cached(
            "SELECT id, node, events FROM event_outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?
        .for_each(params![cursor.max_seen, FETCH_LIMIT], |r| {
            rows.push(read(r)?);
            Ok(())
        })?;
        let full = rows.len() as i64 == FETCH_LIMIT;
        if !cursor.gaps.is_empty() {
            // Integers only: safe to inline, and one statement whatever their number.
            let ids: Vec<String> = cursor.gaps.keys().map(i64::to_string).collect();
            conn.prepare(&format!(
                "SELECT id, node, events FROM event_outbox WHERE id IN ({})",
                ids.join(",")
            ))?
            .for_each((), |r| {
                rows.push(read(r)?);
                Ok(())
            })?;
        }
        for row in cursor.admit(rows, Instant::now()) {
            if row.node == node {
                continue; // published by this node's writer already
            }
            match serde_json::from_str::<Vec<Event>>(&row.events) {
                Ok(events) => events.into_iter().for_each(|e| hub.publish(e)),
                Err(e) => tracing::error!(id = row.id, error = %e, "unreadable outbox row"),
            }
        }
        if !full {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64) -> Row {
        Row {
            id,
            node: "n".into(),
            events: "[]".into(),
        }
    }

    fn ids(rows: &[Row]) -> Vec<i64> {
        rows.iter().map(|r| r.id).collect()
    }

    #[test]
    fn a_row_committed_late_is_delivered_once_and_duplicates_never() {
        let t = Instant::now();
        let mut c = Cursor {
            max_seen: 10,
            ..Cursor::default()
        };
        // 11 is still uncommitted when 12 and 13 are read.
        assert_eq!(ids(&c.admit(vec![row(13), row(12)], t)), [12, 13]);
        assert_eq!(c.gaps.keys().copied().collect::<Vec<_>>(), [11]);
        // Seen again (the gap query returns nothing new, the main one nothing): nothing.
        assert!(c.admit(vec![row(12)], t).is_empty());
        // 11 commits.
        assert_eq!(ids(&c.admit(vec![row(11), row(14)], t)), [11, 14]);
        assert!(c.gaps.is_empty());
        assert!(c.admit(vec![row(11)], t).is_empty());
    }

    #[test]
    fn a_gap_that_never_fills_is_given_up_after_the_wait() {
        let t = Instant::now();
        let mut c = Cursor {
            max_seen: 0,
            ..Cursor::default()
        };
        c.admit(vec![row(3)], t);
        assert_eq!(c.gaps.len(), 2);
        c.admit(vec![], t + GAP_WAIT);
        assert!(c.gaps.is_empty());
        // A row for a given-up id that turns up after all is not delivered twice over
        // anything; it is simply not delivered (it was older than GAP_WAIT).
        assert!(c.admit(vec![row(1)], t + GAP_WAIT).is_empty());
    }
}
