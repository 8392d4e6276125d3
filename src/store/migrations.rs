//! The schema, as numbered migrations applied once each, in order.
//!
//! One SQL text serves SQLite and PostgreSQL: times are unix milliseconds in
//! BIGINT, flags are BIGINT 0/1 and lists are JSON text, so both databases
//! store and return the same values. `{serial}` is the one spelling that
//! differs (an auto-numbered key).

use sqlx::{AnyPool, AssertSqlSafe};

use super::{Dialect, StoreError};

const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "deliveries, jobs, instances, ledger, events",
        r#"
CREATE TABLE deliveries (
    delivery_id  TEXT PRIMARY KEY,
    event        TEXT NOT NULL,
    action       TEXT,
    body         TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT,
    attempts     BIGINT NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  BIGINT,
    error        TEXT
);
CREATE INDEX deliveries_pending ON deliveries (processed_at, received_at);

CREATE TABLE jobs (
    job_id          BIGINT PRIMARY KEY,
    run_id          BIGINT NOT NULL,
    run_attempt     BIGINT NOT NULL,
    repo            TEXT NOT NULL,
    installation_id BIGINT NOT NULL,
    labels          TEXT NOT NULL,
    head_sha        TEXT NOT NULL,
    is_fork         BIGINT NOT NULL,
    actor           TEXT NOT NULL,
    state           TEXT NOT NULL,
    reason          TEXT,
    runner_def      TEXT,
    runner_name     TEXT,
    conclusion      TEXT,
    check_run_id    BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    queued_at       BIGINT NOT NULL,
    started_at      BIGINT,
    completed_at    BIGINT,
    gpu_name        TEXT,
    updated_at      BIGINT NOT NULL,
    version         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX jobs_state ON jobs (state, next_attempt_at);
CREATE INDEX jobs_history ON jobs (repo, runner_def, completed_at);

CREATE TABLE instances (
    id                TEXT PRIMARY KEY,
    job_id            BIGINT NOT NULL,
    label             TEXT NOT NULL UNIQUE,
    runner_name       TEXT NOT NULL UNIQUE,
    runner_id         BIGINT,
    provider_id       TEXT,
    offer_id          BIGINT,
    gpu_name          TEXT,
    num_gpus          BIGINT,
    dph               DOUBLE PRECISION,
    location          TEXT,
    state             TEXT NOT NULL,
    reason            TEXT,
    created_at        BIGINT NOT NULL,
    create_called_at  BIGINT,
    online_at         BIGINT,
    destroy_called_at BIGINT,
    destroyed_at      BIGINT,
    expires_at        BIGINT NOT NULL,
    callback_hash     TEXT,
    updated_at        BIGINT NOT NULL,
    version           BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX instances_state ON instances (state);
CREATE INDEX instances_job ON instances (job_id);

CREATE TABLE ledger (
    instance_id TEXT PRIMARY KEY,
    job_id      BIGINT NOT NULL,
    repo        TEXT NOT NULL,
    runner_def  TEXT NOT NULL,
    gpu_name    TEXT NOT NULL,
    dph         DOUBLE PRECISION NOT NULL,
    seconds     BIGINT NOT NULL,
    cost_usd    DOUBLE PRECISION NOT NULL,
    closed_at   BIGINT NOT NULL
);
CREATE INDEX ledger_closed ON ledger (closed_at);

CREATE TABLE events (
    id          {serial},
    at          BIGINT NOT NULL,
    job_id      BIGINT,
    instance_id TEXT,
    kind        TEXT NOT NULL,
    message     TEXT NOT NULL
);
CREATE INDEX events_job ON events (job_id);
"#,
    ),
    (
        2,
        "ledger by job, for the cost on a finished job's check run",
        "CREATE INDEX ledger_job ON ledger (job_id);",
    ),
    (
        3,
        "jobs by runner, to tell whether a machine's runner ever took a job",
        "CREATE INDEX jobs_runner ON jobs (runner_name);",
    ),
    (
        4,
        "why a failed job failed, as a kind",
        "ALTER TABLE jobs ADD COLUMN failure TEXT;",
    ),
    (
        5,
        "deliveries set aside after failing too often (quarantine)",
        "ALTER TABLE deliveries ADD COLUMN quarantined_at BIGINT;",
    ),
    (
        6,
        "check runs: each job's name and details, and the content GitHub has not taken yet",
        r#"
CREATE TABLE check_runs (
    job_id          BIGINT PRIMARY KEY,
    job_name        TEXT,
    details_url     TEXT,
    title           TEXT,
    summary         TEXT,
    conclusion      TEXT,
    wanted          BIGINT NOT NULL DEFAULT 0,
    sent            BIGINT NOT NULL DEFAULT 0,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    wanted_at       BIGINT
);
CREATE INDEX check_runs_unsent ON check_runs (next_attempt_at);
"#,
    ),
    (
        8,
        "where the scan of GitHub's webhook-delivery log got to (recovering lost deliveries)",
        "CREATE TABLE delivery_scan (
    id         BIGINT PRIMARY KEY,
    watermark  BIGINT NOT NULL,
    sweep_top  BIGINT,
    cursor     TEXT,
    updated_at BIGINT NOT NULL
);",
    ),
    (
        9,
        "a refused destroy's tries and when the next is due (its backoff survives a restart)",
        "ALTER TABLE instances ADD COLUMN destroy_attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE instances ADD COLUMN destroy_due_at BIGINT;",
    ),
    (
        10,
        "each machine's estimate made when it was rented (hours, dollars), as columns",
        "ALTER TABLE instances ADD COLUMN estimated_hours DOUBLE PRECISION;
ALTER TABLE instances ADD COLUMN estimated_cost DOUBLE PRECISION;",
    ),
];

/// Apply the migrations this database has not seen yet.
pub async fn run(pool: &AnyPool, dialect: Dialect) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL)",
    )
    .execute(pool)
    .await?;
    // Two replicas starting at once: on PostgreSQL a transaction-scoped advisory
    // lock makes the second wait and then find the work done.
    let mut tx = pool.begin().await?;
    if dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock(7012926)")
            .execute(&mut *tx)
            .await?;
    }
    for (version, description, sql) in MIGRATIONS {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await?;
        if applied.is_some() {
            continue;
        }
        let serial = match dialect {
            Dialect::Sqlite => "INTEGER PRIMARY KEY",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        let sql = sql.replace("{serial}", serial);
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(AssertSqlSafe(statement.to_string()))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)")
            .bind(*version)
            .bind(*description)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
