//! Check runs: for each job, what its check run is called (the job's name
//! from `workflow_job`, and where its details are), and the content rigger
//! last wanted it to show, until GitHub has it.
//!
//! A check-run update GitHub refused for a while (a rate limit, a bad
//! moment) is not lost: the newest wanted content stays here, versioned,
//! and the reconciler sends it when its backoff has passed. Only the newest
//! content matters, and a final one (with a conclusion) is never replaced
//! by an in-progress one: a late "Booting" must not reopen a finished run.

use sqlx::any::AnyRow;
use sqlx::{Executor, Row};

use super::{Store, StoreError};

/// What rigger wants a job's check run to show, and how far GitHub is.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRunRow {
    pub job_id: i64,
    /// `workflow_job.name`, when a webhook said it.
    pub job_name: Option<String>,
    /// `workflow_job.html_url`: the job's page on GitHub.
    pub details_url: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub conclusion: Option<String>,
    /// Version of the wanted content (0: none yet).
    pub wanted: i64,
    /// The newest version GitHub took.
    pub sent: i64,
    /// Failed sends of the wanted content.
    pub attempts: i64,
    /// When the wanted content is to be sent (again); `None`: nothing to send.
    pub next_attempt_at: Option<i64>,
    /// When the wanted content was written.
    pub wanted_at: Option<i64>,
}

impl CheckRunRow {
    fn from_row(r: &AnyRow) -> Result<CheckRunRow, StoreError> {
        Ok(CheckRunRow {
            job_id: r.try_get("job_id")?,
            job_name: r.try_get("job_name")?,
            details_url: r.try_get("details_url")?,
            title: r.try_get("title")?,
            summary: r.try_get("summary")?,
            conclusion: r.try_get("conclusion")?,
            wanted: r.try_get("wanted")?,
            sent: r.try_get("sent")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            wanted_at: r.try_get("wanted_at")?,
        })
    }

    /// Content GitHub does not have yet.
    pub fn unsent(&self) -> bool {
        self.wanted > self.sent
    }
}

const COLUMNS: &str = "job_id, job_name, details_url, title, summary, conclusion, wanted, sent, \
     attempts, next_attempt_at, wanted_at";

/// Remember what a job's check run is called; the first word stays (a
/// check run keeps its name).
pub(super) async fn name_check_run<'e>(
    on: impl Executor<'e, Database = sqlx::Any>,
    job_id: i64,
    job_name: Option<&str>,
    details_url: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO check_runs (job_id, job_name, details_url) VALUES ($1, $2, $3) \
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(job_id)
    .bind(job_name)
    .bind(details_url)
    .execute(on)
    .await?;
    Ok(())
}

impl Store {
    /// As [`StoreTx::name_check_run`](super::StoreTx::name_check_run).
    pub async fn name_check_run(
        &self,
        job_id: i64,
        job_name: Option<&str>,
        details_url: Option<&str>,
    ) -> Result<(), StoreError> {
        name_check_run(&self.writer, job_id, job_name, details_url).await
    }

    /// The job's check-run row, if rigger named or wanted anything for it.
    pub async fn check_run(&self, job_id: i64) -> Result<Option<CheckRunRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM check_runs WHERE job_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(job_id)
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(CheckRunRow::from_row).transpose()
    }

    /// Want the job's check run to show this, sent at `send_at` at the
    /// latest (the caller sends it at once; `send_at` is for when that
    /// fails or rigger stops first). Returns the new version, or `None`
    /// when the run is final already and this is not: the final stays.
    pub async fn want_check_run(
        &self,
        job_id: i64,
        title: &str,
        summary: &str,
        conclusion: Option<&str>,
        now: i64,
        send_at: i64,
    ) -> Result<Option<i64>, StoreError> {
        let version: Option<i64> = sqlx::query_scalar(
            "INSERT INTO check_runs (job_id, title, summary, conclusion, wanted, sent, attempts, next_attempt_at, wanted_at) \
             VALUES ($1, $2, $3, $4, 1, 0, 0, $5, $6) \
             ON CONFLICT (job_id) DO UPDATE SET title = excluded.title, summary = excluded.summary, \
               conclusion = excluded.conclusion, wanted = check_runs.wanted + 1, attempts = 0, \
               next_attempt_at = excluded.next_attempt_at, wanted_at = excluded.wanted_at \
             WHERE check_runs.conclusion IS NULL OR excluded.conclusion IS NOT NULL \
             RETURNING wanted",
        )
        .bind(job_id)
        .bind(title)
        .bind(summary)
        .bind(conclusion)
        .bind(send_at)
        .bind(now)
        .fetch_optional(&self.writer)
        .await?;
        Ok(version)
    }

    /// GitHub took `version`: nothing is left to send unless a newer one
    /// was wanted meanwhile.
    pub async fn check_run_sent(&self, job_id: i64, version: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE check_runs SET sent = $1, attempts = 0, \
               next_attempt_at = CASE WHEN wanted > $1 THEN next_attempt_at ELSE NULL END \
             WHERE job_id = $2 AND sent < $1",
        )
        .bind(version)
        .bind(job_id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Sending `version` failed: try again at `retry_at` (`None`: never),
    /// unless a newer version was wanted meanwhile (it has its own time).
    pub async fn check_run_failed(
        &self,
        job_id: i64,
        version: i64,
        retry_at: Option<i64>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE check_runs SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE job_id = $2 AND wanted = $3",
        )
        .bind(retry_at)
        .bind(job_id)
        .bind(version)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Check runs with content GitHub does not have yet, soonest first: at
    /// most `limit` of them, `(job_id, next_attempt_at)`.
    pub async fn unsent_check_runs(&self, limit: i64) -> Result<Vec<(i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT job_id, next_attempt_at FROM check_runs \
             WHERE next_attempt_at IS NOT NULL AND wanted > sent \
             ORDER BY next_attempt_at, job_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("job_id")?, r.try_get("next_attempt_at")?)))
            .collect()
    }
}
