//! Storage: a single writer thread that commits in groups, and a small pool of reader
//! connections, over SQLite (one file in WAL mode, the embedded default) or PostgreSQL.
//! The domain modules run their SQL through [`crate::db`] and do not know which.
//!
//! SQLite allows one writer at a time, and a durable commit costs an fsync. The writer
//! thread takes every write job that is waiting (up to `max_batch`), runs them in one
//! `BEGIN IMMEDIATE` transaction, commits once with `synchronous=FULL`, and only then
//! answers the callers and publishes their events. So an acknowledged write has reached
//! the disk, and one fsync is shared by many. `max_batch = 1` is the naive
//! one-transaction-per-request baseline.
//!
//! A job that fails must leave no trace, while the others in its batch commit. On
//! PostgreSQL each job runs in a savepoint of its own. On SQLite a savepoint costs a
//! copy of every page the job touches (a tenth of the writer's time, profiled), and
//! almost every failure happens before a job writes anything (an order already paid,
//! too little money): so the writer runs jobs bare and checks SQLite's count of changed
//! rows instead. A job that failed after changing rows has the batch rolled back and run
//! again with a savepoint per job ([`Isolation`]).
//!
//! PostgreSQL gets the same treatment, with several writer threads per server process
//! (`--pg-writers`), each with its own connection, taking turns at the queue: each runs
//! its batch in one transaction (`synchronous_commit = on`), so a commit's WAL flush is
//! shared by many requests, and while one waits for PostgreSQL's answers the others
//! work. (A PostgreSQL batch spends its time in statements, not in the flush: so the
//! payments of a batch run there as one set of statements, see [`crate::payset`], and so
//! do its new orders, [`crate::orderset`].) Their batches do not queue behind each
//! other's locks on the merchant, whose credits wait for the end of the batch
//! (`ledger::DeferredCredits`). Several
//! nodes may share the database as well: a batch that deadlocks with another writer's
//! is rolled back and run again whole (jobs are `FnMut` for that, and must touch nothing
//! outside the transaction), and the events of each batch also go to the
//! [`crate::outbox`], so that the other nodes publish them too.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::OpenFlags;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};

use crate::clock::Clock;

use crate::db::{Backend, Connection, Database, params};
use crate::error::{ApiError, ApiResult};
use crate::events::{Event, Hub};
use crate::orderset::{self, NewOrder};
use crate::outbox::Outbox;
use crate::payset::{self, PayInput};
use protocol::{Order, Receipt};

/// Write jobs that may wait for the writer before callers get `unavailable`.
pub const WRITE_QUEUE_LEN: usize = 8_192;
/// Default number of write jobs committed together.
pub const DEFAULT_MAX_BATCH: usize = 512;
/// Default number of reader connections.
pub const DEFAULT_READERS: usize = 4;
/// Default number of writer threads (and connections) per node on PostgreSQL. SQLite
/// has one writer.
pub const DEFAULT_PG_WRITERS: usize = 2;
/// Default WAL size, in MiB, past which SQLite's WAL is started again from its beginning
/// (about a second of payments at full speed; see [`spawn_checkpointer`]).
pub const DEFAULT_WAL_RESTART_MIB: u64 = 64;
/// Prepared statements kept per SQLite connection (every distinct statement the server
/// runs fits).
const STATEMENT_CACHE: usize = 256;
/// Page cache per SQLite connection, in KiB.
const CACHE_KIB: i64 = 64 * 1024;
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
    (
        include_str!("../migrations/sqlite/0004_outbox.sql"),
        include_str!("../migrations/postgres/0004_outbox.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0005_vouchers.sql"),
        include_str!("../migrations/postgres/0005_vouchers.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0006_packets.sql"),
        include_str!("../migrations/postgres/0006_packets.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0007_packet_largest.sql"),
        include_str!("../migrations/postgres/0007_packet_largest.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0008_packet_codes.sql"),
        include_str!("../migrations/postgres/0008_packet_codes.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0009_devices.sql"),
        include_str!("../migrations/postgres/0009_devices.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0010_webhooks.sql"),
        include_str!("../migrations/postgres/0010_webhooks.sql"),
    ),
    (
        include_str!("../migrations/sqlite/0011_console.sql"),
        include_str!("../migrations/postgres/0011_console.sql"),
    ),
];

/// Advisory lock that keeps nodes starting together from migrating at the same time.
const MIGRATION_LOCK: i64 = 0x636f_7563_6870_6179; // "couchpay"

/// How many times the writer runs a batch in all when it conflicts with another node's
/// transaction (a deadlock, say) before the jobs that still conflict are answered
/// `unavailable`.
const MAX_BATCH_ATTEMPTS: u32 = 5;

/// How the jobs of a batch are kept apart, so that a failed one leaves no trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isolation {
    /// Each job in a savepoint of its own, rolled back when it fails.
    Savepoints,
    /// SQLite only: no savepoints. A job that fails without having changed a row
    /// (SQLite's `total_changes`, which counts rows changed by triggers too, and not
    /// those of a failed statement, which SQLite undoes itself) left nothing to undo.
    Bare,
}

/// What became of a job in its batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobRun {
    /// Succeeded, or failed leaving nothing behind: the batch may go on.
    Done,
    /// Failed with a conflict with another transaction (PostgreSQL).
    Conflict,
    /// Failed after changing rows, with no savepoint to undo them ([`Isolation::Bare`]):
    /// the batch must be run again with savepoints.
    Unguarded,
}

/// A write job in the writer's batch. `run` may be called more than once: a batch that
/// conflicts with another node's transaction is rolled back and run again whole.
trait WriteJob: Send {
    /// Runs the job in the open transaction, kept apart from the others as `isolation`
    /// says; the events of a job that succeeded go to `events`.
    fn run(&mut self, conn: &Connection, events: &mut Vec<Event>, isolation: Isolation) -> JobRun;
    /// Answers the caller once the fate of the batch is known.
    fn finish(self: Box<Self>, batch: Result<(), BatchError>);
    /// What the writer may run in a set with the others of its kind in the batch.
    fn in_set(&self) -> Option<SetInput<'_>> {
        None
    }
    /// The set's answer to this job, its events already in the batch's, so that `run`
    /// does nothing; `None` (the set declined it, or the batch runs again): `run` runs it.
    fn preset(&mut self, _answer: Option<SetAnswer>) {}
}

/// A job the writer may run in a set (PostgreSQL): a payment ([`payset`]) or a new
/// order ([`orderset`]).
pub(crate) enum SetInput<'a> {
    Pay(&'a PayInput),
    Create(&'a NewOrder),
}

impl<'a> SetInput<'a> {
    fn pay(self) -> Option<&'a PayInput> {
        match self {
            Self::Pay(p) => Some(p),
            Self::Create(_) => None,
        }
    }

    fn create(self) -> Option<&'a NewOrder> {
        match self {
            Self::Create(o) => Some(o),
            Self::Pay(_) => None,
        }
    }
}

/// A set's answer to one of its jobs.
pub(crate) enum SetAnswer {
    Pay(ApiResult<Receipt>),
    Create(ApiResult<Order>),
}

/// The input of a job that may run in a set, and the answer it takes from one.
pub(crate) trait SetMember: Send + 'static {
    type Answer: Send + 'static;
    fn input(&self) -> SetInput<'_>;
    fn answer(answer: SetAnswer) -> Option<ApiResult<Self::Answer>>;
}

impl SetMember for PayInput {
    type Answer = Receipt;
    fn input(&self) -> SetInput<'_> {
        SetInput::Pay(self)
    }
    fn answer(answer: SetAnswer) -> Option<ApiResult<Receipt>> {
        match answer {
            SetAnswer::Pay(r) => Some(r),
            SetAnswer::Create(_) => None,
        }
    }
}

impl SetMember for NewOrder {
    type Answer = Order;
    fn input(&self) -> SetInput<'_> {
        SetInput::Create(self)
    }
    fn answer(answer: SetAnswer) -> Option<ApiResult<Order>> {
        match answer {
            SetAnswer::Create(r) => Some(r),
            SetAnswer::Pay(_) => None,
        }
    }
}

type Job = Box<dyn WriteJob>;

struct Pending<T, F> {
    f: F,
    result: Option<ApiResult<T>>,
    reply: oneshot::Sender<ApiResult<T>>,
}

impl<T, F> WriteJob for Pending<T, F>
where
    T: Send,
    F: FnMut(&Connection, &mut Vec<Event>) -> ApiResult<T> + Send,
{
    fn run(&mut self, conn: &Connection, events: &mut Vec<Event>, isolation: Isolation) -> JobRun {
        let mut mine = Vec::new();
        let result = match isolation {
            Isolation::Savepoints => run_in_savepoint(conn, |c| (self.f)(c, &mut mine)),
            Isolation::Bare => {
                let changes = || conn.as_sqlite().map(rusqlite::Connection::total_changes);
                let before = changes();
                let result = (self.f)(conn, &mut mine);
                if result.is_err() && changes() != before {
                    self.result = None;
                    return JobRun::Unguarded;
                }
                end_job(conn, result.is_ok());
                result
            }
        };
        let conflict = matches!(result, Err(ApiError::Conflict(_)));
        if result.is_ok() {
            events.append(&mut mine);
        }
        self.result = Some(result);
        if conflict {
            JobRun::Conflict
        } else {
            JobRun::Done
        }
    }

    fn finish(self: Box<Self>, batch: Result<(), BatchError>) {
        let answer = match batch {
            Ok(()) => self.result.unwrap_or(Err(ApiError::Unavailable)),
            // Nothing this job did is kept.
            Err(BatchError::NotBegun) => Err(ApiError::Unavailable),
            Err(BatchError::Conflict(e)) => Err(ApiError::Conflict(e)),
            Err(BatchError::Failed(e)) => Err(ApiError::Internal(format!("commit failed: {e}"))),
        };
        let _ = self.reply.send(answer);
    }
}

/// A write job that may also run in a set with others of its kind.
struct InSet<I: SetMember, F> {
    job: Pending<I::Answer, F>,
    input: I,
    preset: bool,
}

impl<I, F> WriteJob for InSet<I, F>
where
    I: SetMember,
    F: FnMut(&Connection, &mut Vec<Event>) -> ApiResult<I::Answer> + Send,
{
    fn run(&mut self, conn: &Connection, events: &mut Vec<Event>, isolation: Isolation) -> JobRun {
        if self.preset {
            return JobRun::Done;
        }
        self.job.run(conn, events, isolation)
    }

    fn finish(self: Box<Self>, batch: Result<(), BatchError>) {
        Box::new(self.job).finish(batch);
    }

    fn in_set(&self) -> Option<SetInput<'_>> {
        Some(self.input.input())
    }

    fn preset(&mut self, answer: Option<SetAnswer>) {
        let answer = answer.and_then(I::answer);
        self.preset = answer.is_some();
        self.job.result = answer;
    }
}

/// Runs the payments ([`payset`]) and the new orders ([`orderset`]) of `batch` in sets,
/// each kind when there are enough of it; the jobs a set answers are preset. A set that
/// fails is undone, and its jobs run alone; unless the failure is a conflict and the
/// batch is not on its `last` attempt: then the error is returned, to run it again.
fn run_sets(
    conn: &Connection,
    batch: &mut [Job],
    events: &mut Vec<Event>,
    last: bool,
) -> crate::db::Result<()> {
    let (mut pays, mut creates) = (Vec::new(), Vec::new());
    for (i, job) in batch.iter_mut().enumerate() {
        job.preset(None);
        match job.in_set() {
            Some(SetInput::Pay(_)) => pays.push(i),
            Some(SetInput::Create(_)) => creates.push(i),
            None => {}
        }
    }
    let undone = |e: crate::db::Error, set: &str| {
        tracing::debug!(error = %e, set, "a set was undone");
        if e.is_retryable() && !last {
            Err(e)
        } else {
            Ok(())
        }
    };
    // Payments credit merchants at the end of the batch, which the set relies on.
    if pays.len() >= payset::MIN_SET && conn.deferred().borrow().enabled() {
        run_set(batch, &pays, |inputs| {
            let inputs: Vec<&PayInput> = inputs.into_iter().filter_map(SetInput::pay).collect();
            let answers = payset::pay_set(conn, &inputs, events)?;
            Ok(answers.into_iter().map(|a| a.map(SetAnswer::Pay)).collect())
        })
        .or_else(|e| undone(e, "payments"))?;
    }
    if creates.len() >= payset::MIN_SET {
        run_set(batch, &creates, |inputs| {
            let inputs: Vec<&NewOrder> = inputs.into_iter().filter_map(SetInput::create).collect();
            let answers = orderset::create_set(conn, &inputs)?;
            Ok(answers
                .into_iter()
                .map(|a| a.map(SetAnswer::Create))
                .collect())
        })
        .or_else(|e| undone(e, "orders"))?;
    }
    Ok(())
}

/// Runs one set: `set` answers the inputs of the jobs `members` (indices into `batch`),
/// in their order, and each job is preset with its answer.
fn run_set(
    batch: &mut [Job],
    members: &[usize],
    set: impl FnOnce(Vec<SetInput<'_>>) -> crate::db::Result<Vec<Option<SetAnswer>>>,
) -> crate::db::Result<()> {
    let answers = set(members.iter().filter_map(|&i| batch[i].in_set()).collect())?;
    for (&i, answer) in members.iter().zip(answers) {
        batch[i].preset(answer);
    }
    Ok(())
}

/// Why a batch did not commit.
#[derive(Clone, Debug)]
enum BatchError {
    /// No transaction could be begun (the database is unreachable).
    NotBegun,
    /// Conflicts with other nodes' transactions outlasted the retries.
    Conflict(String),
    Failed(String),
}

/// How a [`Store`] runs (the server's flags of the same names).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Most write jobs committed together; 1 is one transaction per job.
    pub max_batch: usize,
    /// PostgreSQL: writer threads, each with its own connection.
    pub pg_writers: usize,
    /// Reader connections.
    pub readers: usize,
    /// SQLite: WAL size, in MiB, past which the WAL is started again from its beginning.
    pub wal_restart_mib: u64,
}

/// Handle to the database, cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    writer: mpsc::Sender<Job>,
    readers: Arc<ReaderPool>,
    database: Database,
    /// Woken after a commit that wrote webhook deliveries (see [`crate::webhooks`]).
    webhooks_due: Arc<Notify>,
    /// Owned by every handle: the outbox relay stops when the last one is gone.
    _alive: Arc<()>,
}

#[derive(Debug)]
struct ReaderPool {
    conns: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

fn open_sqlite(path: &Path, flags: OpenFlags) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))?;
    // rusqlite keeps 16 prepared statements by default; one payment alone uses about as
    // many, so the writer would parse its SQL again on every job.
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // WAL lets readers run beside the writer; FULL syncs the WAL on every commit, so an
    // acknowledged payment survives power loss, not only a process kill.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Each job's savepoint keeps a sub-journal of the pages it changes, to undo them if
    // the job fails; it only ever matters inside the open transaction, so it lives in
    // memory instead of a temporary file (a tenth of the writer's time, profiled).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // A page cache large enough for the hot indexes, instead of SQLite's 2 MiB: reading
    // pages back from the file was another tenth.
    conn.pragma_update(None, "cache_size", -CACHE_KIB)?;
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

/// Opens `database` (creating and migrating it if needed): the writer connections (one
/// for SQLite, `pg_writers` for PostgreSQL) and `readers` reader connections.
fn connect(
    database: &Database,
    pg_writers: usize,
    readers: usize,
) -> anyhow::Result<(Vec<Connection>, Vec<Connection>)> {
    let readers = readers.max(1);
    match database {
        Database::Sqlite(path) => {
            let mut writer = open_sqlite(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            )?;
            migrate_sqlite(&mut writer)?;
            // The checkpointer thread copies the WAL back into the file instead (see
            // `spawn_checkpointer`), so the writer does not stop for it.
            writer.pragma_update(None, "wal_autocheckpoint", 0)?;
            let conns = (0..readers)
                .map(|_| {
                    open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map(Connection::sqlite)
                })
                .collect::<rusqlite::Result<_>>()?;
            Ok((vec![Connection::sqlite(writer)], conns))
        }
        Database::Postgres(url) => {
            let writer = Connection::postgres(url).context("connecting to PostgreSQL")?;
            migrate_postgres(&writer).context("migrating the PostgreSQL schema")?;
            let mut writers = vec![writer];
            for _ in 1..pg_writers.max(1) {
                writers.push(Connection::postgres(url)?);
            }
            let conns = (0..readers)
                .map(|_| Connection::postgres(url))
                .collect::<crate::db::Result<_>>()?;
            Ok((writers, conns))
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
    /// Opens (creating and migrating if needed) `database` and starts the writer threads
    /// (one for SQLite, `pg_writers` for PostgreSQL), which publish committed events to
    /// `hub`. `clock` dates the webhook events the writers record.
    pub fn open(
        database: &Database,
        options: &StoreOptions,
        hub: Arc<Hub>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let (writers, conns) = connect(database, options.pg_writers, options.readers)?;
        let permits = conns.len();
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_LEN);
        let max_batch = options.max_batch.max(1);
        let alive = Arc::new(());
        // Several nodes share a PostgreSQL database: their events cross through the outbox.
        let (outbox, wal_restart_due) = match database {
            Database::Sqlite(path) => {
                let restart = options.wal_restart_mib.saturating_mul(1024 * 1024);
                let due = spawn_checkpointer(path, restart, Arc::downgrade(&alive))?;
                (None, Some(due))
            }
            Database::Postgres(url) => {
                let outbox = Outbox::new();
                outbox.spawn_relay(url.clone(), hub.clone(), Arc::downgrade(&alive))?;
                tracing::info!(node = outbox.node(), "node started on PostgreSQL");
                (Some(outbox), None)
            }
        };
        // The writers take turns at the queue: one waits for jobs, takes all that are
        // waiting (up to `max_batch`) and lets the next one wait while it runs them.
        let rx = Arc::new(Mutex::new(rx));
        let webhooks_due = Arc::new(Notify::new());
        for (i, writer) in writers.into_iter().enumerate() {
            let ctx = WriterCtx {
                rx: rx.clone(),
                max_batch,
                hub: hub.clone(),
                outbox: outbox.clone(),
                clock: clock.clone(),
                webhooks_due: webhooks_due.clone(),
                wal_restart_due: wal_restart_due.clone(),
            };
            std::thread::Builder::new()
                .name(format!("couchpay-writer-{i}"))
                .spawn(move || writer_loop(writer, ctx))?;
        }
        Ok(Self {
            writer: tx,
            readers: Arc::new(ReaderPool {
                conns: Mutex::new(conns),
                permits: Semaphore::new(permits),
            }),
            database: database.clone(),
            webhooks_due,
            _alive: alive,
        })
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// Notified after a commit that wrote webhook deliveries.
    pub fn webhooks_due(&self) -> Arc<Notify> {
        self.webhooks_due.clone()
    }

    /// Runs `f` in the writer's transaction. Its changes (and the events it pushes) are
    /// kept only if it returns `Ok`; the result arrives after the durable commit.
    pub async fn write<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Connection, &mut Vec<Event>) -> ApiResult<T> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel::<ApiResult<T>>();
        self.submit(Box::new(Pending {
            f,
            result: None,
            reply,
        }))?;
        rx.await.map_err(|_| ApiError::Unavailable)?
    }

    /// A payment: `f` makes it (as [`Store::write`] would run it), unless the writer runs
    /// it with the other payments of its batch as one set ([`payset`], PostgreSQL), by
    /// the same rules, from `input`.
    pub async fn pay<F>(&self, input: PayInput, f: F) -> ApiResult<Receipt>
    where
        F: FnMut(&Connection, &mut Vec<Event>) -> ApiResult<Receipt> + Send + 'static,
    {
        self.write_in_set(input, f).await
    }

    /// A new order: `f` makes it, unless the writer makes it with the other new orders
    /// of its batch as one set ([`orderset`], PostgreSQL), by the same rules.
    pub async fn create_order<F>(&self, input: NewOrder, f: F) -> ApiResult<Order>
    where
        F: FnMut(&Connection, &mut Vec<Event>) -> ApiResult<Order> + Send + 'static,
    {
        self.write_in_set(input, f).await
    }

    async fn write_in_set<I, F>(&self, input: I, f: F) -> ApiResult<I::Answer>
    where
        I: SetMember,
        F: FnMut(&Connection, &mut Vec<Event>) -> ApiResult<I::Answer> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        self.submit(Box::new(InSet {
            job: Pending {
                f,
                result: None,
                reply,
            },
            input,
            preset: false,
        }))?;
        rx.await.map_err(|_| ApiError::Unavailable)?
    }

    fn submit(&self, job: Job) -> ApiResult<()> {
        self.writer.try_send(job).map_err(|_| ApiError::Unavailable)
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

/// How often the checkpointer copies committed WAL frames into the SQLite file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(100);

/// Longest the writer waits for the checkpointer or for readers when it restarts the WAL.
const WAL_RESTART_WAIT: Duration = Duration::from_millis(20);

/// Checkpoints an SQLite database from a thread and connection of its own until the
/// store is gone. SQLite's automatic checkpoint would run inside the writer's commit
/// (an eighth of its time, profiled, with an fsync of the file) and hold up every job
/// behind it; a passive checkpoint here runs beside the writer and the readers.
///
/// A passive checkpoint never lets the WAL start again from its beginning while commits
/// keep coming: SQLite does that only when a write transaction begins with every frame
/// copied and no reader in the WAL, and under load a new commit always lands first. The
/// WAL then grew without end (2.3 GB after 60,000 payments), and every commit appended
/// to a growing file, which costs the file system block allocation and zeroing (a
/// sixth of the writer's time in one profile). So past `restart_bytes` of WAL the
/// checkpointer raises the flag it returns, and the writer,
/// between two batches, runs a `RESTART` checkpoint ([`restart_wal`]). (Run from this
/// thread, it would have to catch the writer lock in the instant between two batches.)
fn spawn_checkpointer(
    path: &Path,
    restart_bytes: u64,
    alive: std::sync::Weak<()>,
) -> anyhow::Result<Arc<AtomicBool>> {
    let conn = open_sqlite(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let page: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let restart_frames = restart_bytes.div_ceil(page.max(512));
    let due = Arc::new(AtomicBool::new(false));
    let restart_due = due.clone();
    std::thread::Builder::new()
        .name("couchpay-checkpoint".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(CHECKPOINT_INTERVAL);
                // (busy, frames in the WAL, frames copied into the file)
                let frames =
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, u64>(1));
                match frames {
                    Ok(frames) if frames > restart_frames => {
                        restart_due.store(true, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again"),
                }
            }
            // A last full copy, so a clean stop leaves the file whole and the WAL short.
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        })?;
    Ok(due)
}

/// Run by the SQLite writer between batches: copies the frames the passive checkpoints
/// left and waits (up to [`WAL_RESTART_WAIT`]) for the readers to leave the WAL, so that the
/// next commit writes the WAL from its beginning. Readers go on meanwhile; new writes
/// wait, which costs about as long as one passive checkpoint interval's tail.
fn restart_wal(conn: &Connection) {
    let Some(sqlite) = conn.as_sqlite() else {
        return;
    };
    let started = std::time::Instant::now();
    // A reader in a long transaction (an audit) must not hold the writer up: past this
    // wait the checkpoint gives up (busy), and the checkpointer asks again later.
    let _ = sqlite.busy_timeout(WAL_RESTART_WAIT);
    // (busy, frames in the WAL, frames copied into the file)
    let result = sqlite.query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
    });
    let _ = sqlite.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS));
    match result {
        Ok((busy, frames)) => tracing::debug!(
            busy,
            frames,
            ms = started.elapsed().as_millis() as u64,
            "WAL restart checkpoint"
        ),
        Err(e) => tracing::warn!(error = %e, "WAL restart checkpoint failed"),
    }
}

fn run_in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> ApiResult<T>,
) -> ApiResult<T> {
    // The previous job's savepoint is released in the same round trip as this one
    // starts (a round trip is what a PostgreSQL job costs); the last one by COMMIT.
    let begin = if conn.replace_open_savepoint(false) {
        "RELEASE job; SAVEPOINT job"
    } else {
        "SAVEPOINT job"
    };
    conn.execute_batch(begin)?;
    let result = f(conn);
    end_job(conn, result.is_ok());
    if result.is_ok() {
        conn.replace_open_savepoint(true);
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
    }
    result
}

/// Keeps (`succeeded`) or drops the merchant credits the job just run deferred.
fn end_job(conn: &Connection, succeeded: bool) {
    let mut deferred = conn.deferred().borrow_mut();
    if succeeded {
        deferred.job_succeeded();
    } else {
        deferred.job_failed();
    }
}

/// Takes the next batch: waits for one job, then takes those waiting behind it, up to
/// `max_batch`. Empty once every Store handle is gone (clean shutdown).
fn next_batch(rx: &Mutex<mpsc::Receiver<Job>>, max_batch: usize, batch: &mut Vec<Job>) {
    // A poisoned lock only means another writer panicked; the queue itself is intact.
    let mut rx = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
    }
}

/// What a writer thread works with, besides its connection.
struct WriterCtx {
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    max_batch: usize,
    hub: Arc<Hub>,
    outbox: Option<Outbox>,
    clock: Arc<dyn Clock>,
    webhooks_due: Arc<Notify>,
    /// SQLite: set by the checkpointer when the WAL should start again from its beginning.
    wal_restart_due: Option<Arc<AtomicBool>>,
}

fn writer_loop(conn: Connection, ctx: WriterCtx) {
    let WriterCtx {
        rx,
        max_batch,
        hub,
        outbox,
        clock,
        webhooks_due,
        wal_restart_due,
    } = ctx;
    let mut batch: Vec<Job> = Vec::with_capacity(max_batch);
    let mut events = Vec::new();
    let mut guarded = Guarded::default();
    loop {
        next_batch(&rx, max_batch, &mut batch);
        if batch.is_empty() {
            break;
        }
        let outcome = run_batch(
            &conn,
            &mut batch,
            &mut events,
            outbox.as_ref(),
            &*clock,
            &mut guarded,
        );
        if matches!(outcome, Ok(true)) {
            webhooks_due.notify_one();
        }
        let outcome = outcome.map(|_| ());
        if let Err(e) = &outcome {
            events.clear();
            tracing::error!(error = ?e, jobs = batch.len(), "group commit failed");
        }
        let notify = outbox.as_ref().filter(|_| !events.is_empty());
        // Events first: by the time a payer sees its receipt, the TV's event is on its way.
        for event in events.drain(..) {
            hub.publish(event);
        }
        for job in batch.drain(..) {
            job.finish(outcome.clone());
        }
        if let Some(outbox) = notify {
            outbox.notify(&conn);
        }
        if wal_restart_due
            .as_ref()
            .is_some_and(|due| due.swap(false, Ordering::Relaxed))
        {
            restart_wal(&conn);
        }
    }
    tracing::debug!("writer stopped");
}

/// The end of a batch, in its transaction: the deferred merchant credits, the webhook
/// deliveries of its events, the outbox row, then `COMMIT`. Returns whether webhook
/// deliveries were written.
fn commit_batch(
    conn: &Connection,
    events: &[Event],
    outbox: Option<&Outbox>,
    now_ms: i64,
) -> Result<bool, BatchError> {
    let api = |e: ApiError| match e {
        ApiError::Conflict(e) => BatchError::Conflict(e),
        e => BatchError::Failed(e.to_string()),
    };
    let db = |e: crate::db::Error| {
        if e.is_retryable() {
            BatchError::Conflict(e.to_string())
        } else {
            BatchError::Failed(e.to_string())
        }
    };
    crate::ledger::apply_deferred(conn).map_err(api)?;
    let hooks = crate::webhooks::record(conn, events, now_ms).map_err(api)?;
    if let Some(o) = outbox.filter(|_| !events.is_empty()) {
        o.write(conn, events).map_err(db)?;
    }
    conn.execute_batch("COMMIT").map_err(db)?;
    Ok(hooks)
}

/// Batches run with savepoints after one had to be run again for a job that failed
/// after writing: if such jobs keep coming (a client repeating one), running each batch
/// twice would cost more than the savepoints.
const GUARDED_BATCHES_AFTER_RERUN: u32 = 64;

/// When the writer uses [`Isolation::Bare`]: on SQLite, unless a recent batch had to be
/// run again.
#[derive(Debug, Default)]
struct Guarded {
    /// Batches still to run with savepoints.
    left: u32,
}

impl Guarded {
    fn isolation(&mut self, backend: Backend) -> Isolation {
        if backend == Backend::Postgres {
            return Isolation::Savepoints;
        }
        if self.left > 0 {
            self.left -= 1;
            return Isolation::Savepoints;
        }
        Isolation::Bare
    }
}

/// Runs `batch` in one transaction and commits it, running it again whole after a
/// conflict with another node (up to [`MAX_BATCH_ATTEMPTS`] in all), or with savepoints
/// after a job failed having written rows outside one. Returns whether webhook
/// deliveries were written.
fn run_batch(
    conn: &Connection,
    batch: &mut [Job],
    events: &mut Vec<Event>,
    outbox: Option<&Outbox>,
    clock: &dyn Clock,
    guarded: &mut Guarded,
) -> Result<bool, BatchError> {
    let begin = match conn.backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    };
    let mut attempt = 1;
    // Merchant credits wait for the end of the batch (see `ledger::DeferredCredits`),
    // unless one was refused: then the batch runs again crediting as it goes, so that
    // the job at fault fails alone.
    let mut defer = true;
    let mut isolation = guarded.isolation(conn.backend());
    loop {
        events.clear();
        conn.deferred().borrow_mut().reset(defer);
        conn.replace_open_savepoint(false);
        if let Err(e) = conn
            .reconnect_if_closed()
            .and_then(|()| conn.execute_batch(begin))
        {
            tracing::error!(error = %e, "cannot begin a write transaction");
            return Err(BatchError::NotBegun);
        }
        let last = attempt >= MAX_BATCH_ATTEMPTS;
        let mut conflict = false;
        let mut unguarded = false;
        if conn.backend() == Backend::Postgres && run_sets(conn, batch, events, last).is_err() {
            // A conflict: the batch runs again.
            conflict = true;
        }
        let set_conflict = conflict;
        for job in batch.iter_mut().filter(|_| !set_conflict) {
            match job.run(conn, events, isolation) {
                JobRun::Done => {}
                JobRun::Conflict => {
                    conflict = true;
                    // On the last attempt the conflicting jobs fail alone (their
                    // savepoints are undone) and the rest commit.
                    if !last {
                        break;
                    }
                }
                JobRun::Unguarded => {
                    unguarded = true;
                    break;
                }
            }
        }
        if unguarded {
            // A failed job's rows cannot be taken back alone: undo the batch and run it
            // again with savepoints. Not a conflict, so no attempt is used up.
            let _ = conn.execute_batch("ROLLBACK");
            isolation = Isolation::Savepoints;
            guarded.left = GUARDED_BATCHES_AFTER_RERUN;
            tracing::debug!(
                jobs = batch.len(),
                "a job failed after writing; savepoints on"
            );
            continue;
        }
        let committed = if conflict && !last {
            Err(BatchError::Conflict("a job conflicted".into()))
        } else {
            commit_batch(conn, events, outbox, clock.now_ms())
        };
        let refused = conn.deferred().borrow().refused();
        conn.deferred().borrow_mut().reset(false);
        match committed {
            Ok(hooks) => return Ok(hooks),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                if refused && defer {
                    defer = false;
                    tracing::debug!(jobs = batch.len(), "a deferred credit was refused");
                    continue;
                }
                if last || !matches!(e, BatchError::Conflict(_)) {
                    return Err(e);
                }
                tracing::debug!(
                    attempt,
                    jobs = batch.len(),
                    "write conflict, running the batch again"
                );
                // A short, growing, jittered pause lets the other transaction finish.
                let jitter = u64::from(protocol::random_bytes::<1>()[0] % 8);
                std::thread::sleep(Duration::from_millis(u64::from(attempt) * 2 + jitter));
                attempt += 1;
            }
        }
    }
}
