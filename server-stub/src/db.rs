//! The one SQL interface the domain modules are written against, with two backends:
//! SQLite (rusqlite, the embedded default) and PostgreSQL (the synchronous `postgres`
//! client).
//!
//! The interface is a small, rusqlite-shaped subset: `prepare_cached`, `execute`,
//! `query_row`, `query_map`, `for_each`, `params!`, `Row::get` and `optional()`. SQL is
//! written once in the dialect both engines share, with numbered `?N` parameters
//! (rewritten to `$N` for PostgreSQL). What the two do not share is kept out of the
//! domain SQL: `INSERT OR REPLACE` (use `ON CONFLICT … DO UPDATE`), `last_insert_rowid`
//! (use `RETURNING`), aggregates PostgreSQL widens to `numeric` (cast them to `BIGINT`),
//! and SQLite's two-argument `MAX`/`MIN` (use `CASE`).
//!
//! Values cross as [`ValueRef`]: an integer parameter is written as whatever integer
//! width PostgreSQL expects there, and a column of any integer width reads as `i64`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, Kind, ToSql as PgToSql, Type, to_sql_checked};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the data lives: a SQLite file, or a PostgreSQL database.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    /// A `postgres://` (or `postgresql://`) URL, as libpq takes it.
    Postgres(String),
}

impl Database {
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// The text `--database` takes for this database (a URL keeps its password).
    pub fn as_arg(&self) -> std::ffi::OsString {
        match self {
            Self::Sqlite(p) => p.clone().into_os_string(),
            Self::Postgres(url) => url.into(),
        }
    }
}

impl FromStr for Database {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(
            if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                Self::Postgres(s.to_owned())
            } else {
                Self::Sqlite(PathBuf::from(s))
            },
        )
    }
}

impl From<PathBuf> for Database {
    fn from(p: PathBuf) -> Self {
        Self::Sqlite(p)
    }
}

/// Shows a PostgreSQL URL without its password (it goes to logs).
impl fmt::Display for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(url) => f.write_str(&redact(url)),
        }
    }
}

impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Database({self})")
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(parts) => parts,
        None => return url.to_owned(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the query returned no rows")]
    QueryReturnedNoRows,
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {}", pg_detail(.0))]
    Postgres(#[from] postgres::Error),
    #[error("column {column}: expected {expected}, found {found}")]
    Conversion {
        column: usize,
        expected: &'static str,
        found: String,
    },
    #[error("parameter {0}")]
    Parameter(String),
}

/// The server's own words for a database error (`db error` alone says nothing).
fn pg_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} ({}): {}",
            db.message(),
            db.code().code(),
            db.detail().unwrap_or("")
        ),
        None => e.to_string(),
    }
}

impl Error {
    /// A unique index refused the row (a duplicate key).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            Self::Postgres(e) => e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION),
            _ => false,
        }
    }

    /// A conflict with a concurrent transaction (deadlock, serialization failure):
    /// retrying the whole transaction is the remedy.
    pub fn is_retryable(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            Self::Postgres(e) => matches!(
                e.code(),
                Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
            ),
            _ => false,
        }
    }
}

/// A borrowed SQL value: a parameter on its way in, a column on its way out.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ValueRef<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
    /// PostgreSQL only: a `text[]` parameter, for set-based statements (`unnest`).
    Texts(&'a [String]),
    /// PostgreSQL only: a `bigint[]` parameter.
    Integers(&'a [i64]),
}

/// An owned SQL value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl ValueRef<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Null => "NULL".into(),
            Self::Integer(i) => format!("the integer {i}"),
            Self::Real(f) => format!("the real {f}"),
            Self::Text(_) => "text".into(),
            Self::Blob(_) => "a blob".into(),
            Self::Texts(_) | Self::Integers(_) => "an array".into(),
        }
    }
}

/// A Rust value usable as a statement parameter.
pub trait ToSql {
    fn to_sql(&self) -> Result<ValueRef<'_>>;
}

impl<T: ToSql + ?Sized> ToSql for &T {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        (**self).to_sql()
    }
}

impl<T: ToSql> ToSql for Option<T> {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        match self {
            Some(v) => v.to_sql(),
            None => Ok(ValueRef::Null),
        }
    }
}

macro_rules! int_to_sql {
    ($($t:ty),*) => {$(
        impl ToSql for $t {
            fn to_sql(&self) -> Result<ValueRef<'_>> {
                i64::try_from(*self)
                    .map(ValueRef::Integer)
                    .map_err(|_| Error::Parameter(format!("{self} does not fit a 64-bit integer")))
            }
        }
    )*};
}
int_to_sql!(i8, i16, i32, i64, u8, u16, u32, u64, usize);

impl ToSql for bool {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Integer(i64::from(*self)))
    }
}

impl ToSql for f64 {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Real(*self))
    }
}

impl ToSql for str {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Text(self))
    }
}

impl ToSql for String {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Text(self))
    }
}

impl ToSql for [u8] {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Blob(self))
    }
}

impl ToSql for Vec<u8> {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Blob(self))
    }
}

impl ToSql for [String] {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Texts(self))
    }
}

impl ToSql for Vec<String> {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Texts(self))
    }
}

impl ToSql for [i64] {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Integers(self))
    }
}

impl ToSql for Vec<i64> {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(ValueRef::Integers(self))
    }
}

impl ToSql for Value {
    fn to_sql(&self) -> Result<ValueRef<'_>> {
        Ok(match self {
            Self::Null => ValueRef::Null,
            Self::Integer(i) => ValueRef::Integer(*i),
            Self::Real(f) => ValueRef::Real(*f),
            Self::Text(t) => ValueRef::Text(t),
            Self::Blob(b) => ValueRef::Blob(b),
        })
    }
}

/// A Rust value a column can be read as. The error describes what was found instead.
pub trait FromSql: Sized {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String>;
}

impl<T: FromSql> FromSql for Option<T> {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_sql(v).map(Some),
        }
    }
}

macro_rules! int_from_sql {
    ($($t:ty),*) => {$(
        impl FromSql for $t {
            fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
                match v {
                    ValueRef::Integer(i) => <$t>::try_from(i).map_err(|_| format!("{i}, out of range")),
                    other => Err(other.describe()),
                }
            }
        }
    )*};
}
int_from_sql!(i32, i64, u8, u16, u32, u64, usize);

impl FromSql for bool {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Integer(i) => Ok(i != 0),
            other => Err(other.describe()),
        }
    }
}

impl FromSql for f64 {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Real(f) => Ok(f),
            ValueRef::Integer(i) => Ok(i as f64),
            other => Err(other.describe()),
        }
    }
}

impl FromSql for String {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Text(t) => Ok(t.to_owned()),
            other => Err(other.describe()),
        }
    }
}

impl FromSql for Vec<u8> {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            other => Err(other.describe()),
        }
    }
}

impl FromSql for Value {
    fn from_sql(v: ValueRef<'_>) -> std::result::Result<Self, String> {
        Ok(match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Real(f) => Value::Real(f),
            ValueRef::Text(t) => Value::Text(t.to_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            other @ (ValueRef::Texts(_) | ValueRef::Integers(_)) => return Err(other.describe()),
        })
    }
}

/// The parameters of one statement.
pub trait Params {
    fn values(&self) -> Result<Vec<ValueRef<'_>>>;
}

impl Params for () {
    fn values(&self) -> Result<Vec<ValueRef<'_>>> {
        Ok(Vec::new())
    }
}

impl Params for &[&dyn ToSql] {
    fn values(&self) -> Result<Vec<ValueRef<'_>>> {
        self.iter().map(|p| p.to_sql()).collect()
    }
}

impl<T: ToSql, const N: usize> Params for [T; N] {
    fn values(&self) -> Result<Vec<ValueRef<'_>>> {
        self.iter().map(ToSql::to_sql).collect()
    }
}

/// `params![a, b, c]`: statement parameters of mixed types.
#[macro_export]
macro_rules! params {
    () => { &[] as &[&dyn $crate::db::ToSql] };
    ($($p:expr),+ $(,)?) => { &[$(&$p as &dyn $crate::db::ToSql),+] as &[&dyn $crate::db::ToSql] };
}
pub use crate::params;

/// `query_row(…).optional()`: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(Error::QueryReturnedNoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// A column index (`r.get(0)`).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

impl RowIndex for i32 {
    fn index(self) -> usize {
        usize::try_from(self).unwrap_or(usize::MAX)
    }
}

/// One result row.
pub struct Row<'a>(RowInner<'a>);

enum RowInner<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a postgres::Row),
}

impl fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Row")
    }
}

impl Row<'_> {
    pub fn get<I: RowIndex, T: FromSql>(&self, idx: I) -> Result<T> {
        let column = idx.index();
        let found = |found: String| Error::Conversion {
            column,
            expected: std::any::type_name::<T>(),
            found,
        };
        match &self.0 {
            RowInner::Sqlite(r) => {
                let v = match r.get_ref(column)? {
                    rusqlite::types::ValueRef::Null => ValueRef::Null,
                    rusqlite::types::ValueRef::Integer(i) => ValueRef::Integer(i),
                    rusqlite::types::ValueRef::Real(f) => ValueRef::Real(f),
                    rusqlite::types::ValueRef::Text(t) => ValueRef::Text(
                        std::str::from_utf8(t)
                            .map_err(|_| found("text that is not UTF-8".into()))?,
                    ),
                    rusqlite::types::ValueRef::Blob(b) => ValueRef::Blob(b),
                };
                T::from_sql(v).map_err(found)
            }
            RowInner::Postgres(r) => {
                let ty = r
                    .columns()
                    .get(column)
                    .ok_or_else(|| found("no such column".into()))?
                    .type_()
                    .clone();
                let v = match ty {
                    Type::INT2 => r.try_get::<_, Option<i16>>(column)?.map(i64::from),
                    Type::INT4 => r.try_get::<_, Option<i32>>(column)?.map(i64::from),
                    Type::INT8 => r.try_get::<_, Option<i64>>(column)?,
                    Type::BOOL => r.try_get::<_, Option<bool>>(column)?.map(i64::from),
                    Type::FLOAT4 | Type::FLOAT8 => {
                        let f = if ty == Type::FLOAT4 {
                            r.try_get::<_, Option<f32>>(column)?.map(f64::from)
                        } else {
                            r.try_get::<_, Option<f64>>(column)?
                        };
                        return T::from_sql(f.map_or(ValueRef::Null, ValueRef::Real))
                            .map_err(found);
                    }
                    Type::BYTEA => {
                        let b = r.try_get::<_, Option<&[u8]>>(column)?;
                        return T::from_sql(b.map_or(ValueRef::Null, ValueRef::Blob))
                            .map_err(found);
                    }
                    Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                        let t = r.try_get::<_, Option<&str>>(column)?;
                        return T::from_sql(t.map_or(ValueRef::Null, ValueRef::Text))
                            .map_err(found);
                    }
                    other => return Err(found(format!("the PostgreSQL type {other}"))),
                };
                T::from_sql(v.map_or(ValueRef::Null, ValueRef::Integer)).map_err(found)
            }
        }
    }
}

/// A connection of either backend. Not shared between threads: each is owned by the
/// writer thread or by one reader at a time.
pub struct Connection(
    ConnInner,
    RefCell<crate::ledger::DeferredCredits>,
    /// The writer's last job savepoint is still open (it is released together with the
    /// next one's start, or by the commit).
    std::cell::Cell<bool>,
);

enum ConnInner {
    Sqlite(rusqlite::Connection),
    Postgres(Box<PgConn>),
}

struct PgConn {
    config: postgres::Config,
    /// Always `Some` until dropped.
    client: RefCell<Option<postgres::Client>>,
    statements: RefCell<HashMap<String, postgres::Statement>>,
}

impl PgConn {
    fn client(&self) -> std::cell::RefMut<'_, postgres::Client> {
        std::cell::RefMut::map(self.client.borrow_mut(), |c| {
            c.as_mut()
                .expect("a PostgreSQL connection is open until dropped")
        })
    }
}

/// The synchronous client blocks on its own runtime when it closes, which a thread of
/// an async runtime must not do: there it is closed on a thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if let Some(client) = self.client.get_mut().take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new()
                .name("couchpay-pg-close".into())
                .spawn(move || drop(client));
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ConnInner::Sqlite(_) => f.write_str("Connection(sqlite)"),
            ConnInner::Postgres(_) => f.write_str("Connection(postgres)"),
        }
    }
}

/// Which engine a connection talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Rewrites `?N` parameters to PostgreSQL's `$N`.
fn to_postgres_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_string = !in_string;
        }
        if c == '?' && !in_string && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn pg_connect(config: &postgres::Config) -> Result<postgres::Client> {
    let mut client = config.connect(postgres::NoTls)?;
    // Every acknowledged write must be durable, whatever the server's default.
    client.batch_execute("SET synchronous_commit = on")?;
    Ok(client)
}

impl Connection {
    pub fn sqlite(conn: rusqlite::Connection) -> Self {
        Self(
            ConnInner::Sqlite(conn),
            RefCell::default(),
            Default::default(),
        )
    }

    /// Connects to PostgreSQL at `url`.
    pub fn postgres(url: &str) -> Result<Self> {
        let config: postgres::Config = url.parse()?;
        let client = pg_connect(&config)?;
        Ok(Self(
            ConnInner::Postgres(Box::new(PgConn {
                config,
                client: RefCell::new(Some(client)),
                statements: RefCell::new(HashMap::new()),
            })),
            RefCell::default(),
            Default::default(),
        ))
    }

    pub fn backend(&self) -> Backend {
        match self.0 {
            ConnInner::Sqlite(_) => Backend::Sqlite,
            ConnInner::Postgres(_) => Backend::Postgres,
        }
    }

    /// Reconnects a PostgreSQL connection the server closed (a restart, say). Prepared
    /// statements are prepared again on next use.
    pub fn reconnect_if_closed(&self) -> Result<()> {
        let ConnInner::Postgres(pg) = &self.0 else {
            return Ok(());
        };
        let closed = pg.client().is_closed();
        if closed {
            let client = pg_connect(&pg.config)?;
            *pg.client() = client;
            pg.statements.borrow_mut().clear();
        }
        Ok(())
    }

    /// PostgreSQL: waits up to `timeout` for notifications on the channels this
    /// connection `LISTEN`s on and returns how many arrived (0 after the timeout).
    /// SQLite has none: it sleeps for `timeout`.
    pub fn wait_for_notifications(&self, timeout: std::time::Duration) -> Result<usize> {
        use fallible_iterator::FallibleIterator;
        let ConnInner::Postgres(pg) = &self.0 else {
            std::thread::sleep(timeout);
            return Ok(0);
        };
        let mut client = pg.client();
        let mut notifications = client.notifications();
        let mut count = usize::from(notifications.timeout_iter(timeout).next()?.is_some());
        // Take the rest that arrived together without waiting again.
        count += notifications.iter().count()?;
        Ok(count)
    }

    /// The statement for `sql`, prepared once per connection.
    pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
        Ok(Statement(match &self.0 {
            ConnInner::Sqlite(c) => StmtInner::Sqlite(c.prepare_cached(sql)?),
            ConnInner::Postgres(pg) => {
                let cached = pg.statements.borrow().get(sql).cloned();
                let stmt = match cached {
                    Some(s) => s,
                    None => {
                        let s = pg.client().prepare(&to_postgres_sql(sql))?;
                        pg.statements.borrow_mut().insert(sql.to_owned(), s.clone());
                        s
                    }
                };
                StmtInner::Postgres(pg, stmt)
            }
        }))
    }

    /// Same as [`prepare_cached`](Self::prepare_cached).
    pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
        self.prepare_cached(sql)
    }

    /// Runs statements without parameters (transaction control, schema).
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.0 {
            ConnInner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            ConnInner::Postgres(pg) => Ok(pg.client().batch_execute(sql)?),
        }
    }

    /// PostgreSQL: runs `f` in savepoint `name`, undone (and the error returned) when it
    /// fails, with the planner held to index lookups.
    ///
    /// A set's statements take arrays of keys, and the planner, left to itself, plans
    /// them from table statistics that on a new or fast-growing database say the tables
    /// are nearly empty: it hashes whole tables, or scans the index of pending orders,
    /// and the plan it caches keeps doing so as the tables grow (measured: 300 ms a
    /// statement after a few thousand orders). Planning each run afresh costs about a
    /// tenth of the database's time. A lookup by up to a batch of keys is always best
    /// done key by key through an index, so here the planner may not scan tables, hash
    /// or merge, and plans each statement once for the connection.
    pub fn in_set_savepoint<T>(&self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        const HOLD: &str = "SET LOCAL plan_cache_mode = force_generic_plan;
            SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off;
            SET LOCAL enable_mergejoin = off";
        const FREE: &str = "SET LOCAL plan_cache_mode = DEFAULT;
            SET LOCAL enable_seqscan = DEFAULT; SET LOCAL enable_hashjoin = DEFAULT;
            SET LOCAL enable_mergejoin = DEFAULT";
        self.execute_batch(&format!("SAVEPOINT {name}; {HOLD}"))?;
        match f() {
            Ok(t) => {
                self.execute_batch(&format!("{FREE}; RELEASE {name}"))?;
                Ok(t)
            }
            Err(e) => {
                // Undoing the savepoint undoes its settings too.
                self.execute_batch(&format!("ROLLBACK TO {name}; RELEASE {name}"))?;
                Err(e)
            }
        }
    }

    pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    pub fn query_row<P: Params, T>(
        &self,
        sql: &str,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }

    /// The merchant credits the writer applies at the end of its batch (see
    /// [`crate::ledger::DeferredCredits`]); off on every other connection.
    pub fn deferred(&self) -> &RefCell<crate::ledger::DeferredCredits> {
        &self.1
    }

    /// Serialises the transactions that take the lock `key` until they end: on
    /// PostgreSQL, where several writers (and nodes) run at once, a transaction-level
    /// advisory lock on the key's hash; on SQLite, where one writer runs everything,
    /// nothing. For checks that no row can guard ("does this TV own this film yet?").
    pub fn lock_key(&self, key: &str) -> Result<()> {
        if let ConnInner::Postgres(_) = &self.0 {
            self.query_row(
                "SELECT pg_advisory_xact_lock(hashtextextended(?1, 0))",
                [key],
                |_| Ok(()),
            )?;
        }
        Ok(())
    }

    /// Whether a job savepoint of the writer is left open; sets the new state.
    pub fn replace_open_savepoint(&self, open: bool) -> bool {
        self.2.replace(open)
    }

    /// The SQLite connection underneath, for what only SQLite has (pragmas).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match &self.0 {
            ConnInner::Sqlite(c) => Some(c),
            ConnInner::Postgres(_) => None,
        }
    }
}

/// A prepared statement.
pub struct Statement<'c>(StmtInner<'c>);

enum StmtInner<'c> {
    Sqlite(rusqlite::CachedStatement<'c>),
    Postgres(&'c PgConn, postgres::Statement),
}

impl fmt::Debug for Statement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Statement")
    }
}

impl Statement<'_> {
    /// Runs the statement; the number of rows it changed.
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        let values = params.values()?;
        match &mut self.0 {
            StmtInner::Sqlite(s) => Ok(s.execute(rusqlite::params_from_iter(values.iter()))?),
            StmtInner::Postgres(pg, s) => {
                let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                    values.iter().map(|v| v as _).collect();
                let n = pg.client().execute(&*s, &refs)?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Calls `f` on every row, in order.
    pub fn for_each<P: Params>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row<'_>) -> Result<()>,
    ) -> Result<()> {
        let values = params.values()?;
        match &mut self.0 {
            StmtInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(values.iter()))?;
                while let Some(r) = rows.next()? {
                    f(&Row(RowInner::Sqlite(r)))?;
                }
                Ok(())
            }
            StmtInner::Postgres(pg, s) => {
                // Fetched first, so that `f` may use the connection itself.
                let rows: Vec<postgres::Row> =
                    pg.client().query_raw(&*s, values.iter())?.collect()?;
                for r in &rows {
                    f(&Row(RowInner::Postgres(r)))?;
                }
                Ok(())
            }
        }
    }

    /// The first row through `f`, or [`Error::QueryReturnedNoRows`].
    pub fn query_row<P: Params, T>(
        &mut self,
        params: P,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let values = params.values()?;
        match &mut self.0 {
            StmtInner::Sqlite(s) => {
                let mut rows = s.query(rusqlite::params_from_iter(values.iter()))?;
                match rows.next()? {
                    Some(r) => f(&Row(RowInner::Sqlite(r))),
                    None => Err(Error::QueryReturnedNoRows),
                }
            }
            StmtInner::Postgres(pg, s) => {
                let first = {
                    let mut client = pg.client();
                    let mut rows = client.query_raw(&*s, values.iter())?;
                    let first = rows.next()?;
                    // Drain the rest so that the connection is ready for the next query
                    // (a finished iterator must not be asked again).
                    if first.is_some() {
                        while rows.next()?.is_some() {}
                    }
                    first
                };
                match first {
                    Some(r) => f(&Row(RowInner::Postgres(&r))),
                    None => Err(Error::QueryReturnedNoRows),
                }
            }
        }
    }

    /// Every row through `f`.
    pub fn query_map<P: Params, T>(
        &mut self,
        params: P,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let mut out = Vec::new();
        self.for_each(params, |r| {
            out.push(f(r));
            Ok(())
        })?;
        Ok(out.into_iter())
    }
}

impl rusqlite::ToSql for ValueRef<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef as V};
        Ok(ToSqlOutput::Borrowed(match *self {
            Self::Null => V::Null,
            Self::Integer(i) => V::Integer(i),
            Self::Real(f) => V::Real(f),
            Self::Text(t) => V::Text(t.as_bytes()),
            Self::Blob(b) => V::Blob(b),
            Self::Texts(_) | Self::Integers(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "array parameters are PostgreSQL only".into(),
                ));
            }
        }))
    }
}

/// Writes a value as the type PostgreSQL inferred for the parameter.
impl postgres::types::ToSql for ValueRef<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let ty = match ty.kind() {
            Kind::Domain(inner) => inner,
            _ => ty,
        };
        match *self {
            Self::Null => Ok(IsNull::Yes),
            Self::Integer(i) => match *ty {
                Type::INT8 => PgToSql::to_sql(&i, ty, out),
                Type::INT4 => PgToSql::to_sql(&i32::try_from(i)?, ty, out),
                Type::INT2 => PgToSql::to_sql(&i16::try_from(i)?, ty, out),
                Type::BOOL => PgToSql::to_sql(&(i != 0), ty, out),
                Type::FLOAT8 => PgToSql::to_sql(&(i as f64), ty, out),
                Type::TEXT | Type::VARCHAR => PgToSql::to_sql(&i.to_string(), ty, out),
                _ => Err(format!("an integer cannot be written as {ty}").into()),
            },
            Self::Real(f) => match *ty {
                Type::FLOAT8 => PgToSql::to_sql(&f, ty, out),
                Type::FLOAT4 => PgToSql::to_sql(&(f as f32), ty, out),
                _ => Err(format!("a real cannot be written as {ty}").into()),
            },
            Self::Text(t) => PgToSql::to_sql(&t, ty, out),
            Self::Blob(b) => PgToSql::to_sql(&b, ty, out),
            Self::Texts(t) => PgToSql::to_sql(&t, ty, out),
            Self::Integers(i) => PgToSql::to_sql(&i, ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_renumbered_for_postgres_outside_strings() {
        assert_eq!(
            to_postgres_sql("SELECT ?1, '?2' FROM t WHERE a = ?10 AND b = ?"),
            "SELECT $1, '?2' FROM t WHERE a = $10 AND b = ?"
        );
    }

    #[test]
    fn urls_are_told_apart_from_paths_and_passwords_hidden() {
        let db: Database = "postgres://app:hunter2@127.0.0.1:5432/couchpay"
            .parse()
            .unwrap();
        assert!(db.is_postgres());
        assert_eq!(db.to_string(), "postgres://app:***@127.0.0.1:5432/couchpay");
        let db: Database = "data/couchpay.db".parse().unwrap();
        assert_eq!(db, Database::Sqlite("data/couchpay.db".into()));
    }

    #[test]
    fn sqlite_round_trip_through_the_interface() {
        let conn = Connection::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)")
            .unwrap();
        conn.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3)",
            params![7_i64, "seven", vec![7_u8]],
        )
        .unwrap();
        let (a, b, c): (u32, String, Vec<u8>) = conn
            .query_row("SELECT a, b, c FROM t", (), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!((a, b.as_str(), c), (7, "seven", vec![7]));
        let none = conn
            .query_row("SELECT a FROM t WHERE a = ?1", [8_i64], |r| {
                r.get::<_, i64>(0)
            })
            .optional()
            .unwrap();
        assert_eq!(none, None);
        let wrong = conn.query_row("SELECT b FROM t", (), |r| r.get::<_, i64>(0));
        assert!(matches!(wrong, Err(Error::Conversion { column: 0, .. })));
    }
}
