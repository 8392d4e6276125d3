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
}

impl Delivery {
    fn from_row(r: &AnyRow) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            delivery_id: r.try_get("delivery_id")?,
            event: r.try_get("event")?,
            action: r.try_get("action")?,
            body: r.try_get("body")?,
            received_at: r.try_get("received_at")?,
            attempts: r.try_get("attempts")?,
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
                 WHERE processed_at IS NULL AND (lease_until IS NULL OR lease_until <= $3) \
                 ORDER BY received_at, delivery_id LIMIT $4{}) \
             RETURNING delivery_id, event, action, body, received_at, attempts",
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

    /// Deliveries committed but not processed yet.
    pub async fn pending_deliveries(&self) -> Result<i64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM deliveries WHERE processed_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        Ok(n)
    }
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
