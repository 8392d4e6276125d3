//! Where the scan of GitHub's webhook-delivery log got to (one row, table
//! `delivery_scan`, migration 8), so that a restart neither rescans three
//! days of deliveries nor skips the ones it had not reached; and whether a
//! delivery reached the inbox (a delivery GitHub records as failed may have:
//! rigger answered after GitHub stopped waiting).

use sqlx::Row;

use super::{Store, StoreError};

/// A scan of the delivery log (newest first) is a *sweep* from the newest
/// delivery down to the `watermark`: every delivery at or below it was
/// looked at. A sweep too long for one pass remembers where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryScan {
    /// The newest delivery id known to be looked at (0: none yet).
    pub watermark: i64,
    /// The newest delivery id of the sweep under way, which becomes the
    /// watermark when the sweep reaches the old one.
    pub sweep_top: Option<i64>,
    /// Where the sweep under way goes on (GitHub's page cursor).
    pub cursor: Option<String>,
}

impl Store {
    pub async fn delivery_scan(&self) -> Result<DeliveryScan, StoreError> {
        let row =
            sqlx::query("SELECT watermark, sweep_top, cursor FROM delivery_scan WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let Some(r) = row else {
            return Ok(DeliveryScan::default());
        };
        Ok(DeliveryScan {
            watermark: r.try_get("watermark")?,
            sweep_top: r.try_get("sweep_top")?,
            cursor: r.try_get("cursor")?,
        })
    }

    pub async fn save_delivery_scan(&self, s: &DeliveryScan, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO delivery_scan (id, watermark, sweep_top, cursor, updated_at) \
             VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET \
             watermark = excluded.watermark, sweep_top = excluded.sweep_top, \
             cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(s.watermark)
        .bind(s.sweep_top)
        .bind(&s.cursor)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Take the turn to scan, if no replica scanned within `every_ms`:
    /// replicas sharing a database scan once between them, not once each.
    pub async fn claim_delivery_scan(&self, now: i64, every_ms: i64) -> Result<bool, StoreError> {
        sqlx::query(
            "INSERT INTO delivery_scan (id, watermark, updated_at) VALUES (1, 0, 0) \
             ON CONFLICT (id) DO NOTHING",
        )
        .execute(&self.writer)
        .await?;
        let done = sqlx::query(
            "UPDATE delivery_scan SET updated_at = $1 WHERE id = 1 AND updated_at <= $2",
        )
        .bind(now)
        .bind(now - every_ms)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a delivery with this id (GitHub's GUID) is in the inbox.
    pub async fn has_delivery(&self, delivery_id: &str) -> Result<bool, StoreError> {
        let found: Option<String> =
            sqlx::query_scalar("SELECT delivery_id FROM deliveries WHERE delivery_id = $1")
                .bind(delivery_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }
}
