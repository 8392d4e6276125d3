//! The durable store: deliveries (the inbox), jobs, instances, the cost
//! ledger, check runs GitHub has yet to take, and an event log of what
//! rigger did and why.
//!
//! SQLite by default (one file, WAL), PostgreSQL for more than one replica;
//! one code path over sqlx's `Any` driver, with the few differences (row
//! locking, auto-numbered keys) behind [`Dialect`]. Times are unix
//! milliseconds passed in by the caller, so tests run on an injected clock.

mod checkpoint;
mod checks;
mod inbox;
mod instances;
mod jobs;
mod ledger;
mod migrations;
mod scan;
mod tx;

use std::str::FromStr;
use std::sync::Once;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, AssertSqlSafe, Executor, Row};

pub use checks::CheckRunRow;
pub use inbox::{Delivery, NewDelivery, QuarantinedDelivery};
pub use instances::{InstancePatch, InstanceRow, LiveUsage, NewInstance};
pub use jobs::{InvalidTransition, JobPatch, JobRow, NewJob};
pub use ledger::{CostEntry, SpendRow};
pub use scan::DeliveryScan;
pub use tx::{ProvisioningTurn, StoreTx};

use crate::engine::state::UnknownState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// [`Store::open_existing`] found no SQLite file at this path.
    #[error("there is no database at {0}")]
    NoDatabase(String),
    #[error(transparent)]
    Corrupt(#[from] UnknownState),
    #[error("corrupt JSON in the database: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Transition(#[from] InvalidTransition),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateTable {
    Jobs,
    Instances,
}

/// Whether an insert created a row or found one already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

#[derive(Debug, Clone)]
pub struct Store {
    /// For reads (and, on PostgreSQL, everything).
    pool: AnyPool,
    /// For writes. On SQLite one connection: SQLite has one writer at a
    /// time however many connections ask, and writers that find the lock
    /// taken sleep in its busy handler (1, 2, 5, 10 ms …) however soon it
    /// is free. Queued for the one connection instead, each write starts
    /// the moment the one before it commits. WAL readers never wait.
    writer: AnyPool,
    dialect: Dialect,
}

/// How long a SQLite connection waits for another process's lock (the
/// operator commands write to the same file) before it gives up.
const BUSY_TIMEOUT_MS: u64 = 10_000;

static DRIVERS: Once = Once::new();

impl Store {
    /// Open (and for SQLite create) the database and bring its schema up to date.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_in_schema(url, None).await
    }

    /// As [`Store::connect`], but a SQLite file must be there already: one
    /// that is not is [`StoreError::NoDatabase`], never a new empty database.
    /// For the operator commands, which only read what `rigger serve` wrote.
    pub async fn open_existing(url: &str) -> Result<Store, StoreError> {
        Self::must_exist(url)?;
        Self::open(url, None, SqliteMode::Existing).await
    }

    /// [`StoreError::NoDatabase`] for a SQLite URL whose file is not there;
    /// nothing to check for PostgreSQL or an in-memory database.
    pub fn must_exist(url: &str) -> Result<(), StoreError> {
        // `mode=memory` names no file either.
        if url.starts_with("sqlite:") && !in_memory(url) && !url.contains("mode=memory") {
            let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
            let path = options.get_filename();
            if !path.is_file() {
                let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
                return Err(StoreError::NoDatabase(shown.display().to_string()));
            }
        }
        Ok(())
    }

    /// As [`Store::connect`], inside a PostgreSQL schema of its own (created
    /// if missing): how tests share one database without sharing tables.
    pub async fn connect_in_schema(url: &str, schema: Option<&str>) -> Result<Store, StoreError> {
        Self::open(url, schema, SqliteMode::Create).await
    }

    async fn open(url: &str, schema: Option<&str>, mode: SqliteMode) -> Result<Store, StoreError> {
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (dialect, url) = if url.starts_with("sqlite:") {
            (Dialect::Sqlite, sqlite_url(url, mode))
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            (Dialect::Postgres, url.to_string())
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        let options = AnyConnectOptions::from_str(&url)?;
        if let (Dialect::Postgres, Some(schema)) = (dialect, schema) {
            let pool = AnyPoolOptions::new()
                .max_connections(1)
                .connect_with(options.clone())
                .await?;
            let create = format!("CREATE SCHEMA IF NOT EXISTS {}", ident(schema));
            sqlx::query(AssertSqlSafe(create)).execute(&pool).await?;
            pool.close().await;
        }
        let schema = schema.map(ident);
        let pool_of = |connections: u32| {
            let schema = schema.clone();
            AnyPoolOptions::new()
                .max_connections(connections)
                .after_connect(move |conn, _| {
                    let schema = schema.clone();
                    Box::pin(async move {
                        match dialect {
                            Dialect::Sqlite => {
                                // WAL lets readers run beside the writer; FULL makes a
                                // commit survive power loss, which a 2xx promises (I5).
                                conn.execute("PRAGMA journal_mode = WAL").await?;
                                conn.execute("PRAGMA synchronous = FULL").await?;
                                let wait = format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}");
                                conn.execute(AssertSqlSafe(wait)).await?;
                                // Checkpoints run beside the writes (`checkpoint`),
                                // not inside whichever commit fills the WAL.
                                conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                                // A WAL that grew past its bound under load shrinks
                                // back to it when it starts again; below it the file
                                // is kept, and rewriting it costs less than growing it.
                                conn.execute("PRAGMA journal_size_limit = 67108864").await?;
                            }
                            Dialect::Postgres => {
                                if let Some(s) = schema {
                                    let set = format!("SET search_path TO {s}");
                                    conn.execute(sqlx::query(AssertSqlSafe(set))).await?;
                                }
                            }
                        }
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        // An in-memory SQLite database lives in its one connection.
        let (pool, writer) = match dialect {
            Dialect::Sqlite if in_memory(&url) => {
                let one = pool_of(1).await?;
                (one.clone(), one)
            }
            Dialect::Sqlite => {
                // The writer first: it creates the file and turns WAL on.
                let writer = pool_of(1).await?;
                let readers = pool_of(4).await?;
                tokio::spawn(checkpoint::every_second(readers.clone(), writer.clone()));
                (readers, writer)
            }
            Dialect::Postgres => {
                let pool = pool_of(10).await?;
                (pool.clone(), pool)
            }
        };
        migrations::run(&writer, dialect).await?;
        Ok(Store {
            pool,
            writer,
            dialect,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// Record something rigger did, and why, for `rigger jobs` and debugging.
    pub async fn log_event(
        &self,
        at: i64,
        job_id: Option<i64>,
        instance_id: Option<&str>,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        log_event(&self.writer, at, job_id, instance_id, kind, message).await
    }

    /// The events of a job, oldest first: `(at, kind, message)`.
    pub async fn job_events(&self, job_id: i64) -> Result<Vec<(i64, String, String)>, StoreError> {
        let rows =
            sqlx::query("SELECT at, kind, message FROM events WHERE job_id = $1 ORDER BY id")
                .bind(job_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("at")?, r.try_get("kind")?, r.try_get("message")?)))
            .collect()
    }

    /// Rows per state in `jobs` or `instances`, for the metrics gauges.
    pub async fn counts_by_state(
        &self,
        table: StateTable,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let sql = match table {
            StateTable::Jobs => "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state",
            StateTable::Instances => "SELECT state, COUNT(*) AS n FROM instances GROUP BY state",
        };
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("n")?)))
            .collect()
    }

    /// `FOR UPDATE SKIP LOCKED` where the database has it: two replicas
    /// claiming work at once each get different rows. SQLite serialises
    /// writers, so its single UPDATE statement is already exclusive.
    fn skip_locked(&self) -> &'static str {
        match self.dialect {
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        }
    }
}

async fn log_event<'e>(
    on: impl Executor<'e, Database = sqlx::Any>,
    at: i64,
    job_id: Option<i64>,
    instance_id: Option<&str>,
    kind: &str,
    message: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (at, job_id, instance_id, kind, message) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(at)
    .bind(job_id)
    .bind(instance_id)
    .bind(kind)
    .bind(message)
    .execute(on)
    .await?;
    Ok(())
}

/// Whether a SQLite file that is not there is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqliteMode {
    Create,
    Existing,
}

fn in_memory(url: &str) -> bool {
    url.contains(":memory:")
}

/// `sqlite://rigger.db` → created on first start (`mode=rwc`), or only
/// opened (`mode=rw`). A URL that names its own mode keeps it.
fn sqlite_url(url: &str, mode: SqliteMode) -> String {
    let mode = match mode {
        SqliteMode::Create => "mode=rwc",
        SqliteMode::Existing => "mode=rw",
    };
    if url.contains("mode=") || in_memory(url) {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&{mode}")
    } else {
        format!("{url}?{mode}")
    }
}

/// A database URL fit for an error message: no password.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// A schema name safe to splice into SQL.
fn ident(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            sqlite_url("sqlite://rigger.db", SqliteMode::Create),
            "sqlite://rigger.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url("sqlite://rigger.db?cache=private", SqliteMode::Existing),
            "sqlite://rigger.db?cache=private&mode=rw"
        );
        assert_eq!(
            sqlite_url("sqlite::memory:", SqliteMode::Create),
            "sqlite::memory:"
        );
        assert_eq!(
            redact_url("postgres://rigger:s3cret@db:5432/rigger"),
            "postgres://rigger:***@db:5432/rigger"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(ident("t_1; DROP"), "t_1DROP");
    }
}

/// A value for one column of a dynamic UPDATE.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val {
    Int(Option<i64>),
    Text(Option<String>),
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, <sqlx::Any as sqlx::Database>::Arguments>;

fn bind_val(q: AnyQuery<'_>, v: Val) -> AnyQuery<'_> {
    match v {
        Val::Int(x) => q.bind(x),
        Val::Text(x) => q.bind(x),
    }
}

/// Which states a compare-and-set moves a row from, and to which. State
/// names are rigger's own (`as_str()` of the state enums), never input, so
/// they are written into the SQL as literals.
pub(crate) enum Moves {
    /// From this state to that one.
    One(&'static str, &'static str),
    /// From whichever of these states the row is in, to its partner: one
    /// statement, so no other writer can move the row between a read and
    /// the write.
    Each(Vec<(&'static str, &'static str)>),
    /// Crash recovery only: to this state from any.
    Forced(&'static str),
}

/// A compare-and-set on a row's state:
/// `UPDATE table SET state = to, updated_at = now, version = version + 1, <sets>
/// WHERE key_column = key AND state = from`.
pub(crate) struct Cas {
    pub table: &'static str,
    pub key_column: &'static str,
    pub key: Val,
    pub moves: Moves,
    pub now: i64,
    pub sets: Vec<(&'static str, Val)>,
    /// A counter column to add one to (`attempts = attempts + 1`).
    pub bump: Option<&'static str>,
}

impl Cas {
    fn sql(&self, returning: Option<&str>) -> String {
        let state = match &self.moves {
            Moves::One(_, to) | Moves::Forced(to) => format!("'{to}'"),
            Moves::Each(pairs) => {
                let arms: String = pairs
                    .iter()
                    .map(|(from, to)| format!(" WHEN '{from}' THEN '{to}'"))
                    .collect();
                format!("CASE state{arms} END")
            }
        };
        let mut sql = format!(
            "UPDATE {} SET state = {state}, updated_at = $1, version = version + 1",
            self.table
        );
        if let Some(column) = self.bump {
            sql.push_str(&format!(", {column} = {column} + 1"));
        }
        let mut n = 1;
        for (column, _) in &self.sets {
            n += 1;
            sql.push_str(&format!(", {column} = ${n}"));
        }
        sql.push_str(&format!(" WHERE {} = ${}", self.key_column, n + 1));
        match &self.moves {
            Moves::One(from, _) => sql.push_str(&format!(" AND state = '{from}'")),
            Moves::Each(pairs) => {
                let froms: Vec<String> = pairs.iter().map(|(f, _)| format!("'{f}'")).collect();
                sql.push_str(&format!(" AND state IN ({})", froms.join(", ")));
            }
            Moves::Forced(_) => {}
        }
        if let Some(columns) = returning {
            sql.push_str(&format!(" RETURNING {columns}"));
        }
        sql
    }

    fn bind(self, q: AnyQuery<'_>) -> AnyQuery<'_> {
        let mut q = q.bind(self.now);
        for (_, v) in self.sets {
            q = bind_val(q, v);
        }
        bind_val(q, self.key)
    }

    /// Returns whether the row was in a `from` state (and so was changed).
    /// Runs on the pool or inside a [`StoreTx`].
    pub(crate) async fn run<'e>(
        self,
        on: impl Executor<'e, Database = sqlx::Any>,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(None);
        let q = self.bind(sqlx::query(AssertSqlSafe(sql)));
        Ok(q.execute(on).await?.rows_affected() == 1)
    }

    /// As [`Cas::run`], giving back the changed row's `columns`.
    pub(crate) async fn run_returning<'e>(
        self,
        on: impl Executor<'e, Database = sqlx::Any>,
        columns: &str,
    ) -> Result<Option<sqlx::any::AnyRow>, StoreError> {
        let sql = self.sql(Some(columns));
        let q = self.bind(sqlx::query(AssertSqlSafe(sql)));
        Ok(q.fetch_optional(on).await?)
    }
}
