//! SQLite checkpoints: copying the WAL back into the database file.
//!
//! They run beside the writes, not inside whichever commit fills the WAL, so
//! a commit (which a webhook's 2xx waits for) does not also pay for one. A
//! PASSIVE checkpoint from a reader connection waits for no one and blocks
//! no one, but under writes that never pause it never catches up, so the WAL
//! never starts again from its first frame and grows for as long as the
//! writes go on. Past a bound, the checkpoint therefore takes the writer's
//! turn once (FULL): the writes wait while it copies what the passive pass
//! left, and the next commit starts the WAL again from the beginning.

use std::time::Duration;

use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Row};

use super::{BUSY_TIMEOUT_MS, StoreError};

/// WAL frames (pages) past which the checkpoint takes the writer's turn:
/// 64 MB at SQLite's 4 KB pages, or under two seconds of the ingest
/// benchmark (about 40 MB of WAL a second), and far more than any pause-free
/// stretch of real webhook traffic.
pub(super) const WAL_BOUND_FRAMES: i64 = 16_384;

/// How long the forced pass waits for readers on an old snapshot before it
/// gives up until the next pass: the writes wait behind it meanwhile.
const FORCED_WAIT_MS: u64 = 250;

/// What one checkpoint pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Every frame in the WAL is in the database file.
    CaughtUp { frames: i64 },
    /// Readers or concurrent commits kept `left` frames in the WAL only;
    /// the next pass copies them.
    Behind { frames: i64, left: i64 },
    /// The WAL was over the bound, so the pass took the writer's turn.
    /// `finished` is false when a reader on an old snapshot outlasted
    /// [`FORCED_WAIT_MS`]: the pass gave up rather than hold the writes.
    Forced { frames: i64, finished: bool },
}

/// One pass: PASSIVE from a reader, then FULL on the writer connection if
/// the WAL holds more than `bound` frames.
pub(super) async fn checkpoint_once(
    readers: &AnyPool,
    writer: &AnyPool,
    bound: i64,
) -> Result<Checkpoint, StoreError> {
    let (_, frames, copied) = run(readers, "PRAGMA wal_checkpoint(PASSIVE)").await?;
    if frames <= bound {
        return Ok(if copied >= frames {
            Checkpoint::CaughtUp { frames }
        } else {
            Checkpoint::Behind {
                frames,
                left: frames - copied,
            }
        });
    }
    // On the one writer connection: it queues behind the commit in flight
    // instead of waiting in SQLite's busy handler for a gap between commits.
    // Only readers can hold it up, and not for long.
    let mut conn = writer.acquire().await?;
    conn.execute(AssertSqlSafe(format!(
        "PRAGMA busy_timeout = {FORCED_WAIT_MS}"
    )))
    .await?;
    let full = run(&mut *conn, "PRAGMA wal_checkpoint(FULL)").await;
    let restore = format!("PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}");
    if conn.execute(AssertSqlSafe(restore)).await.is_err() {
        // Never hand a writer with the short wait back to the pool.
        conn.close_on_drop();
    }
    let (busy, frames, _) = full?;
    Ok(Checkpoint::Forced {
        frames,
        finished: busy == 0,
    })
}

/// A `PRAGMA wal_checkpoint(…)`: (blocked, frames in the WAL, frames copied back).
async fn run<'e>(
    on: impl Executor<'e, Database = Any>,
    sql: &'static str,
) -> Result<(i64, i64, i64), StoreError> {
    let row = sqlx::query(sql).fetch_one(on).await?;
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// A pass every second until the store is closed.
pub(super) async fn every_second(readers: AnyPool, writer: AnyPool) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !readers.is_closed() {
        every.tick().await;
        match checkpoint_once(&readers, &writer, WAL_BOUND_FRAMES).await {
            Ok(Checkpoint::Forced { frames, finished }) => {
                tracing::debug!(
                    frames,
                    finished,
                    "SQLite WAL over its bound: checkpointed in full"
                );
            }
            Ok(_) => {}
            Err(_) if readers.is_closed() || writer.is_closed() => break,
            Err(e) => tracing::warn!(error = %e, "SQLite checkpoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewDelivery, Store};

    async fn store(name: &str) -> Store {
        let dir = std::env::temp_dir().join(format!("rigger-ckpt-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
            .await
            .unwrap()
    }

    async fn write(s: &Store, from: usize, n: usize) {
        let ds: Vec<NewDelivery> = (from..from + n)
            .map(|i| NewDelivery {
                delivery_id: format!("d-{i}"),
                event: "workflow_job".into(),
                action: Some("queued".into()),
                body: "x".repeat(1500),
                received_at: i as i64,
            })
            .collect();
        s.insert_deliveries(&ds).await.unwrap();
    }

    /// 50 rows, a reader's snapshot, 50 more rows the reader cannot see:
    /// frames no checkpoint may copy while the reader lasts.
    async fn frames_past_a_reader(s: &Store) -> sqlx::Transaction<'static, Any> {
        write(s, 0, 50).await;
        let mut reader = s.pool.begin().await.unwrap();
        sqlx::query("SELECT COUNT(*) FROM deliveries")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        write(s, 50, 50).await;
        reader
    }

    #[tokio::test]
    async fn a_reader_on_an_old_snapshot_keeps_frames_in_the_wal_until_it_ends() {
        let s = store("behind").await;
        let reader = frames_past_a_reader(&s).await;
        let pass = checkpoint_once(&s.pool, &s.writer, WAL_BOUND_FRAMES)
            .await
            .unwrap();
        assert!(
            matches!(pass, Checkpoint::Behind { left, .. } if left > 0),
            "{pass:?}"
        );
        reader.rollback().await.unwrap();
        let pass = checkpoint_once(&s.pool, &s.writer, WAL_BOUND_FRAMES)
            .await
            .unwrap();
        assert!(matches!(pass, Checkpoint::CaughtUp { .. }), "{pass:?}");
    }

    #[tokio::test]
    async fn over_the_bound_a_pass_takes_the_writers_turn_and_the_wal_starts_again() {
        let s = store("forced").await;
        write(&s, 0, 200).await;
        let Checkpoint::Forced {
            frames,
            finished: true,
        } = checkpoint_once(&s.pool, &s.writer, 0).await.unwrap()
        else {
            panic!("a WAL over the bound is checkpointed in full on the writer");
        };
        assert!(frames > 20, "{frames} frames");
        // The next commit writes from the WAL's first frame again.
        write(&s, 200, 1).await;
        let pass = checkpoint_once(&s.pool, &s.writer, frames).await.unwrap();
        assert!(
            matches!(pass, Checkpoint::CaughtUp { frames: f } if f < frames / 4),
            "{pass:?} after {frames} frames"
        );
    }

    #[tokio::test]
    async fn a_forced_pass_gives_way_to_a_reader_on_an_old_snapshot_and_writes_go_on() {
        let s = store("gives-way").await;
        let reader = frames_past_a_reader(&s).await;
        let pass = checkpoint_once(&s.pool, &s.writer, 0).await.unwrap();
        assert!(
            matches!(
                pass,
                Checkpoint::Forced {
                    finished: false,
                    ..
                }
            ),
            "{pass:?}"
        );
        // The writer got its usual patience back, and writes go on.
        let wait: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&s.writer)
            .await
            .unwrap();
        assert_eq!(wait, BUSY_TIMEOUT_MS as i64);
        write(&s, 100, 1).await;
        reader.rollback().await.unwrap();
        let pass = checkpoint_once(&s.pool, &s.writer, 0).await.unwrap();
        assert!(
            matches!(pass, Checkpoint::Forced { finished: true, .. }),
            "{pass:?}"
        );
    }
}
