//! The durable inbox: every verified webhook delivery is committed here
//! before `/webhook` answers 2xx (I5), then claimed by a worker under a lease.

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use super::{Inserted, Store, StoreError};

/// A delivery as received: GitHub's delivery id, event name, and raw body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    /// The verified JSON body. Webhook bodies carry no credentials.
    pub body: String,
    pub received_at: i64,
}

/// A delivery claimed by a worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub body: String,
    pub received_at: i64,
    pub attempts: i64,
    /// Why the last attempt failed, when one did and said so.
    pub error: Option<String>,
}

impl Delivery {
    /// Why earlier attempts did not finish: the recorded error, or — when
    /// none was recorded — that rigger stopped while handling it.
    pub fn error_or_crash(&self) -> &str {
        self.error
            .as_deref()
            .unwrap_or("rigger stopped while handling it (a crash or a kill)")
    }

    fn from_row(r: &AnyRow) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            delivery_id: r.try_get("delivery_id")?,
            event: r.try_get("event")?,
            action: r.try_get("action")?,
            body: r.try_get("body")?,
            received_at: r.try_get("received_at")?,
            attempts: r.try_get("attempts")?,
            error: r.try_get("error")?,
        })
    }
}

const INSERT: &str = "INSERT INTO deliveries (delivery_id, event, action, body, received_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id) DO NOTHING";

impl Store {
    /// When the newest delivery was received (ms), if any: how fresh the
    /// inbox is, for operators and the decision-latency benchmark.
    pub async fn latest_delivery_at(&self) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT MAX(received_at) AS at FROM deliveries")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("at")?)
    }

    /// Commit one delivery. A redelivery (same id) is a no-op: `Duplicate`.
    pub async fn insert_delivery(&self, d: &NewDelivery) -> Result<Inserted, StoreError> {
        let done = sqlx::query(INSERT)
            .bind(&d.delivery_id)
            .bind(&d.event)
            .bind(&d.action)
            .bind(&d.body)
            .bind(d.received_at)
            .execute(&self.writer)
            .await?;
        Ok(inserted(done.rows_affected()))
    }

    /// Commit several deliveries in one transaction (one fsync), for callers
    /// that batch concurrent requests; each answer waits for this commit.
    pub async fn insert_deliveries(&self, ds: &[NewDelivery]) -> Result<Vec<Inserted>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut out = Vec::with_capacity(ds.len());
        for d in ds {
            let done = sqlx::query(INSERT)
                .bind(&d.delivery_id)
                .bind(&d.event)
                .bind(&d.action)
                .bind(&d.body)
                .bind(d.received_at)
                .execute(&mut *tx)
                .await?;
            out.push(inserted(done.rows_affected()));
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Lease up to `limit` unprocessed deliveries to `owner` until
    /// `now + lease_ms`, oldest first. A lease that ran out (its worker died)
    /// can be claimed again.
    pub async fn claim_deliveries(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<Delivery>, StoreError> {
        let sql = format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE delivery_id IN (SELECT delivery_id FROM deliveries \
                 WHERE processed_at IS NULL AND quarantined_at IS NULL \
                 AND (lease_until IS NULL OR lease_until <= $3) \
                 ORDER BY received_at, delivery_id LIMIT $4{}) \
             RETURNING delivery_id, event, action, body, received_at, attempts, error",
            self.skip_locked()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?;
        let mut out: Vec<Delivery> = rows
            .iter()
            .map(Delivery::from_row)
            .collect::<Result<_, _>>()?;
        out.sort_by(|a, b| (a.received_at, &a.delivery_id).cmp(&(b.received_at, &b.delivery_id)));
        Ok(out)
    }

    /// Mark a claimed delivery done (with the error, if handling it failed
    /// for good). Only the lease holder can; returns whether it did.
    pub async fn finish_delivery(
        &self,
        delivery_id: &str,
        owner: &str,
        now: i64,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        finish_delivery(&self.writer, delivery_id, owner, now, error).await
    }

    /// Lease the oldest *suspect* to `owner` alone: a delivery claimed
    /// before whose handling never finished (it failed, or the process died
    /// with it). Handled on its own, a poison delivery takes no batch down
    /// with it, and its attempts count only its own failures.
    pub async fn claim_suspect_delivery(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<Option<Delivery>, StoreError> {
        let sql = format!(
            "UPDATE deliveries SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 \
             WHERE delivery_id IN (SELECT delivery_id FROM deliveries \
                 WHERE processed_at IS NULL AND quarantined_at IS NULL AND attempts > 0 \
                 AND (lease_until IS NULL OR lease_until <= $3) \
                 ORDER BY received_at, delivery_id LIMIT 1{}) \
             RETURNING delivery_id, event, action, body, received_at, attempts, error",
            self.skip_locked()
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(Delivery::from_row).transpose()
    }

    /// Handling a claimed delivery failed, but may succeed later: keep why,
    /// and give it back to be claimed again from `retry_at`. Only the lease
    /// holder can; returns whether it did.
    pub async fn retry_delivery(
        &self,
        delivery_id: &str,
        owner: &str,
        error: &str,
        retry_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET error = $1, lease_owner = NULL, lease_until = $2 \
             WHERE delivery_id = $3 AND lease_owner = $4 AND processed_at IS NULL",
        )
        .bind(error)
        .bind(retry_at)
        .bind(delivery_id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Set a claimed delivery aside for good, with why: it is never claimed
    /// again until an operator releases it (`rigger inbox retry`).
    pub async fn quarantine_delivery(
        &self,
        delivery_id: &str,
        owner: &str,
        now: i64,
        why: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deliveries SET quarantined_at = $1, error = $2, lease_owner = NULL, lease_until = NULL \
             WHERE delivery_id = $3 AND lease_owner = $4 AND processed_at IS NULL",
        )
        .bind(now)
        .bind(why)
        .bind(delivery_id)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The deliveries set aside, oldest first (without their bodies).
    pub async fn quarantined_deliveries(&self) -> Result<Vec<QuarantinedDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT delivery_id, event, action, received_at, attempts, quarantined_at, error \
             FROM deliveries WHERE quarantined_at IS NOT NULL AND processed_at IS NULL \
             ORDER BY received_at, delivery_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantinedDelivery {
                    delivery_id: r.try_get("delivery_id")?,
                    event: r.try_get("event")?,
                    action: r.try_get("action")?,
                    received_at: r.try_get("received_at")?,
                    attempts: r.try_get("attempts")?,
                    quarantined_at: r.try_get("quarantined_at")?,
                    error: r.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Put quarantined deliveries back in the queue with a fresh count of
    /// attempts: the one named, or all of them. Returns how many.
    pub async fn release_quarantined(&self, delivery_id: Option<&str>) -> Result<u64, StoreError> {
        const RELEASE: &str = "UPDATE deliveries SET quarantined_at = NULL, attempts = 0, \
             error = NULL, lease_owner = NULL, lease_until = NULL \
             WHERE quarantined_at IS NOT NULL AND processed_at IS NULL";
        let done = match delivery_id {
            Some(id) => {
                sqlx::query(AssertSqlSafe(format!("{RELEASE} AND delivery_id = $1")))
                    .bind(id)
                    .execute(&self.writer)
                    .await?
            }
            None => sqlx::query(RELEASE).execute(&self.writer).await?,
        };
        Ok(done.rows_affected())
    }

    /// Deliveries committed and waiting to be handled (not those set aside).
    pub async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE processed_at IS NULL AND quarantined_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }

    /// Deliveries set aside, for `/metrics`.
    pub async fn quarantined_count(&self) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE processed_at IS NULL AND quarantined_at IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
    }
}

/// A delivery set aside after failing too often, as `rigger inbox` lists it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct QuarantinedDelivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub received_at: i64,
    pub attempts: i64,
    pub quarantined_at: i64,
    /// Why: the last failure, or why the payload cannot be read.
    pub error: String,
}

pub(super) async fn finish_delivery<'e>(
    on: impl Executor<'e, Database = Any>,
    delivery_id: &str,
    owner: &str,
    now: i64,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE deliveries SET processed_at = $1, error = $2, lease_owner = NULL, lease_until = NULL \
         WHERE delivery_id = $3 AND lease_owner = $4 AND processed_at IS NULL",
    )
    .bind(now)
    .bind(error)
    .bind(delivery_id)
    .bind(owner)
    .execute(on)
    .await?;
    Ok(done.rows_affected() == 1)
}

fn inserted(rows: u64) -> Inserted {
    if rows == 1 {
        Inserted::New
    } else {
        Inserted::Duplicate
    }
}
