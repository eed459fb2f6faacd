//! Storage: a single writer thread that commits in groups, and a small pool of reader
//! connections, over SQLite (one file in WAL mode, the embedded default) or PostgreSQL.
//! The domain modules run their SQL through [`crate::db`] and do not know which.
//!
//! SQLite allows one writer at a time, and a durable commit costs an fsync. The writer
//! thread takes every write job that is waiting (up to `max_batch`), runs each inside its
//! own savepoint of one `BEGIN IMMEDIATE` transaction, commits once with
//! `synchronous=FULL`, and only then answers the callers and publishes their events.
//! So an acknowledged write has reached the disk, and one fsync is shared by many.
//! `max_batch = 1` is the naive one-transaction-per-request baseline.
//!
//! PostgreSQL gets the same treatment: one writer connection per server process runs
//! the batch in one transaction (`synchronous_commit = on`), so a commit's WAL flush is
//! shared by many requests, which is where PostgreSQL's throughput comes from.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::OpenFlags;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::db::{Backend, Connection, Database, params};
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, Hub};

/// Write jobs that may wait for the writer before callers get `unavailable`.
pub const WRITE_QUEUE_LEN: usize = 8_192;
/// Default number of write jobs committed together.
pub const DEFAULT_MAX_BATCH: usize = 512;
/// Default number of reader connections.
pub const DEFAULT_READERS: usize = 4;
/// How long a connection waits for a lock held by another process before failing.
const BUSY_TIMEOUT_MS: u64 = 5_000;

/// The schema's versions, the same numbering for both engines: `(sqlite, postgres)`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        include_str!("../migrations/sqlite/0001_init.sql"),
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0002_phone.sql"),
        include_str!("../migrations/postgres/0002_phone.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0003_hardening.sql"),
        include_str!("../migrations/postgres/0003_hardening.sql"),
    ),
];

/// Advisory lock that keeps nodes starting together from migrating at the same time.
const MIGRATION_LOCK: i64 = 0x636f_7563_6870_6179; // "couchpay"

/// A write job: runs against the open transaction, pushes events to publish after the
/// commit, and returns a completion that answers the caller once the commit is known.
type Job = Box<dyn FnOnce(&Connection, &mut Vec<Event>) -> Completion + Send>;
type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Handle to the database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    writer: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    database: Database,
}

#[derive(Debug)]
struct ReaderPool {
    conns: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

fn open_sqlite(path: &Path, flags: OpenFlags) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    // WAL lets readers run beside the writer; FULL syncs the WAL on every commit, so an
    // acknowledged payment survives power loss, not only a process kill.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// Applies the migrations not yet applied (tracked in `PRAGMA user_version`).
fn migrate_sqlite(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, (sql, _)) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Applies the migrations not yet applied (tracked in `couchpay_schema`), all in one
/// transaction under an advisory lock, so that nodes starting together migrate once.
fn migrate_postgres(conn: &Connection) -> crate::db::Result<()> {
    conn.execute_batch("BEGIN")?;
    let applied = (|| {
        conn.query_row("SELECT pg_advisory_xact_lock(?1)", [MIGRATION_LOCK], |_| {
            Ok(())
        })?;
        conn.execute_batch("CREATE TABLE IF NOT EXISTS couchpay_schema (version BIGINT NOT NULL)")?;
        let version: usize = conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM couchpay_schema",
            (),
            |r| r.get(0),
        )?;
        for (i, (_, sql)) in MIGRATIONS.iter().enumerate().skip(version) {
            conn.execute_batch(sql)?;
            conn.execute("INSERT INTO couchpay_schema (version) VALUES (?1)", [i + 1])?;
        }
        Ok(())
    })();
    match applied {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Opens `database` (creating and migrating it if needed): the writer connection and
/// `readers` reader connections.
fn connect(database: &Database, readers: usize) -> anyhow::Result<(Connection, Vec<Connection>)> {
    let readers = readers.max(1);
    match database {
        Database::Sqlite(path) => {
            let mut writer = open_sqlite(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )?;
            migrate_sqlite(&mut writer)?;
            let conns = (0..readers)
                .map(|_| {
                    open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map(Connection::sqlite)
                })
                .collect::<rusqlite::Result<_>>()?;
            Ok((Connection::sqlite(writer), conns))
        }
        Database::Postgres(url) => {
            let writer = Connection::postgres(url).context("connecting to PostgreSQL")?;
            migrate_postgres(&writer).context("migrating the PostgreSQL schema")?;
            let conns = (0..readers)
                .map(|_| Connection::postgres(url))
                .collect::<crate::db::Result<_>>()?;
            Ok((writer, conns))
        }
    }
}

/// A connection for a one-off job (the `audit` command): read-only for SQLite.
pub fn open_for_audit(database: &Database) -> anyhow::Result<Connection> {
    Ok(match database {
        Database::Sqlite(path) => {
            Connection::sqlite(open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?)
        }
        Database::Postgres(url) => Connection::postgres(url)?,
    })
}

impl Store {
    /// Opens (creating and migrating if needed) `database` with `readers` reader
    /// connections and starts the writer thread, which publishes committed events to `hub`.
    pub fn open(
        database: &Database,
        max_batch: usize,
        readers: usize,
        hub: Arc<Hub>,
    ) -> anyhow::Result<Self> {
        let (writer, conns) = connect(database, readers)?;
        let permits = conns.len();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_LEN);
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name("couchpay-writer".into())
            .spawn(move || writer_loop(writer, rx, max_batch, hub))?;
        Ok(Self {
            writer: tx,
            readers: Arc::new(ReaderPool {
                conns: Mutex::new(conns),
                permits: Semaphore::new(permits),
            }),
            database: database.clone(),
        })
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Runs `f` in the writer's transaction. Its changes (and the events it pushes) are
    /// kept only if it returns `Ok`; the result arrives after the durable commit.
    pub async fn write<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut Vec<Event>) -> ApiResult<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<ApiResult<T>>();
        let job: Job = Box::new(move |conn, events| {
            let mut mine = Vec::new();
            let result = run_in_savepoint(conn, |c| f(c, &mut mine));
            if result.is_ok() {
                events.append(&mut mine);
            }
            Box::new(move |commit: Result<(), String>| {
                let answer = match commit {
                    Ok(()) => result,
                    // The batch did not commit: nothing this job did is kept.
                    Err(e) => Err(ApiError::Internal(format!("commit failed: {e}"))),
                };
                let _ = tx.send(answer);
            })
        });
        self.writer
            .try_send(job)
            .map_err(|_| ApiError::Unavailable)?;
        rx.await.map_err(|_| ApiError::Unavailable)?
    }

    /// The 64-byte random server secret `name`, created on first use. It lives in the
    /// database so that restarts (and every node of a cluster) share it.
    pub async fn secret(&self, name: &'static str) -> anyhow::Result<[u8; 64]> {
        let fresh = protocol::random_bytes::<64>().to_vec();
        let value = self
            .write(move |conn, _| {
                conn.prepare_cached(
                    "INSERT INTO server_secrets (name, value) VALUES (?1, ?2)
                     ON CONFLICT (name) DO NOTHING",
                )?
                .execute(params![name, fresh])?;
                Ok(conn
                    .prepare_cached("SELECT value FROM server_secrets WHERE name = ?1")?
                    .query_row([name], |r| r.get::<_, Vec<u8>>(0))?)
            })
            .await
            .map_err(|e| anyhow::anyhow!("reading server secret {name}: {e}"))?;
        value
            .try_into()
            .map_err(|_| anyhow::anyhow!("server secret {name} has the wrong length"))
    }

    /// Runs `f` on a reader connection on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> ApiResult<T> + Send + 'static,
    {
        let _permit = self
            .readers
            .permits
            .acquire()
            .await
            .map_err(|_| ApiError::Unavailable)?;
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool
                .conns
                .lock()
                .map_err(ApiError::internal)?
                .pop()
                .ok_or_else(|| ApiError::internal("reader pool empty"))?;
            let result = conn
                .reconnect_if_closed()
                .map_err(ApiError::from)
                .and_then(|()| f(&conn));
            pool.conns.lock().map_err(ApiError::internal)?.push(conn);
            result
        })
        .await
        .map_err(ApiError::internal)?
    }
}

fn run_in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> ApiResult<T>,
) -> ApiResult<T> {
    conn.execute_batch("SAVEPOINT job")?;
    let result = f(conn);
    let end = if result.is_ok() {
        "RELEASE job"
    } else {
        "ROLLBACK TO job; RELEASE job"
    };
    conn.execute_batch(end)?;
    result
}

fn writer_loop(conn: Connection, mut rx: mpsc::Receiver<Job>, max_batch: usize, hub: Arc<Hub>) {
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    let mut events = Vec::new();
    // `blocking_recv` returns None once every Store handle is gone: clean shutdown.
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let begin = match conn.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        let begun = conn
            .reconnect_if_closed()
            .and_then(|()| conn.execute_batch(begin));
        if let Err(e) = begun {
            // Dropping a job drops its reply channel: its caller sees `unavailable`.
            tracing::error!(error = %e, "cannot begin a write transaction");
            batch.clear();
            continue;
        }
        for job in batch.drain(..) {
            completions.push(job(&conn, &mut events));
        }
        let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
            events.clear();
            tracing::error!(error = ?commit, "group commit failed");
        }
        // Events first: by the time a payer sees its receipt, the TV's event is on its way.
        for event in events.drain(..) {
            hub.publish(event);
        }
        for done in completions.drain(..) {
            done(commit.clone());
        }
    }
    tracing::debug!("writer stopped");
}
