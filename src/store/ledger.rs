//! The cost ledger: what each machine cost, from the create call to the
//! confirmed destroy, written once per instance.

use sqlx::Row;

use super::{Inserted, Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct CostEntry {
    pub instance_id: String,
    pub job_id: i64,
    pub repo: String,
    pub runner_def: String,
    pub gpu_name: String,
    /// $/hour of the instance.
    pub dph: f64,
    /// Seconds from the create call to the confirmed destroy.
    pub seconds: i64,
    pub closed_at: i64,
}

impl CostEntry {
    pub fn cost_usd(&self) -> f64 {
        self.dph * self.seconds as f64 / 3600.0
    }
}

/// Spend grouped by repository and runner definition.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendRow {
    pub repo: String,
    pub runner_def: String,
    pub instances: i64,
    pub seconds: i64,
    pub cost_usd: f64,
}

impl Store {
    /// Close an instance's account. Recording it twice is a no-op.
    pub async fn record_cost(&self, e: &CostEntry) -> Result<Inserted, StoreError> {
        let done = sqlx::query(
            "INSERT INTO ledger (instance_id, job_id, repo, runner_def, gpu_name, dph, seconds, cost_usd, closed_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (instance_id) DO NOTHING",
        )
        .bind(&e.instance_id)
        .bind(e.job_id)
        .bind(&e.repo)
        .bind(&e.runner_def)
        .bind(&e.gpu_name)
        .bind(e.dph)
        .bind(e.seconds)
        .bind(e.cost_usd())
        .bind(e.closed_at)
        .execute(&self.writer)
        .await?;
        Ok(if done.rows_affected() == 1 {
            Inserted::New
        } else {
            Inserted::Duplicate
        })
    }

    /// Dollars recorded since `since` (unix ms).
    pub async fn spend_since(&self, since: i64) -> Result<f64, StoreError> {
        let total: Option<f64> =
            sqlx::query_scalar("SELECT SUM(cost_usd) FROM ledger WHERE closed_at >= $1")
                .bind(since)
                .fetch_one(&self.pool)
                .await?;
        Ok(total.unwrap_or(0.0))
    }

    /// Every closed account of one job's machines (a job may have had more
    /// than one: a boot that failed, then another rent), oldest first.
    pub async fn costs_for_job(&self, job_id: i64) -> Result<Vec<CostEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance_id, job_id, repo, runner_def, gpu_name, dph, seconds, closed_at \
             FROM ledger WHERE job_id = $1 ORDER BY closed_at, instance_id",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(CostEntry {
                    instance_id: r.try_get("instance_id")?,
                    job_id: r.try_get("job_id")?,
                    repo: r.try_get("repo")?,
                    runner_def: r.try_get("runner_def")?,
                    gpu_name: r.try_get("gpu_name")?,
                    dph: r.try_get("dph")?,
                    seconds: r.try_get("seconds")?,
                    closed_at: r.try_get("closed_at")?,
                })
            })
            .collect()
    }

    /// Spend since `since` by repository and runner definition, largest first.
    pub async fn spend_by_repo(&self, since: i64) -> Result<Vec<SpendRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT repo, runner_def, COUNT(*) AS instances, CAST(SUM(seconds) AS BIGINT) AS seconds, SUM(cost_usd) AS cost \
             FROM ledger WHERE closed_at >= $1 GROUP BY repo, runner_def ORDER BY cost DESC, repo, runner_def",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SpendRow {
                    repo: r.try_get("repo")?,
                    runner_def: r.try_get("runner_def")?,
                    instances: r.try_get("instances")?,
                    seconds: r.try_get("seconds")?,
                    cost_usd: r.try_get("cost")?,
                })
            })
            .collect()
    }
}
