//! Several writes committed together: one transaction, one commit (on
//! SQLite, one fsync). For the steps that write more than one row at once —
//! a queued delivery (its job, an event, the delivery done) and a rented
//! machine (its instance, its job, the events) — so that a burst of jobs is
//! not paced by the disk's flushes, and a crash keeps all of a step or none.
//!
//! Every statement here writes: on SQLite a transaction that began with a
//! read could not take the write lock once another writer committed.

use sqlx::{Any, Transaction};

use super::jobs::{JobPatch, NewJob};
use super::{Inserted, InstancePatch, Store, StoreError};
use crate::engine::state::{InstanceState, JobState};

pub struct StoreTx {
    tx: Transaction<'static, Any>,
}

impl Store {
    /// Start writes that commit together (or, if dropped, not at all).
    pub async fn begin(&self) -> Result<StoreTx, StoreError> {
        Ok(StoreTx {
            tx: self.writer.begin().await?,
        })
    }
}

impl StoreTx {
    /// As [`Store::insert_job`].
    pub async fn insert_job(&mut self, j: &NewJob) -> Result<Inserted, StoreError> {
        super::jobs::insert_job(&mut *self.tx, j, None).await
    }

    /// A new job that GitHub holds for a deployment's approval: recorded in
    /// `waiting_for_approval`, with why. Seeing it again is a no-op.
    pub async fn insert_waiting_job(
        &mut self,
        j: &NewJob,
        reason: &str,
    ) -> Result<Inserted, StoreError> {
        super::jobs::insert_job(&mut *self.tx, j, Some(reason)).await
    }

    /// As [`Store::transition_job`].
    pub async fn transition_job(
        &mut self,
        job_id: i64,
        from: JobState,
        to: JobState,
        now: i64,
        patch: JobPatch,
    ) -> Result<bool, StoreError> {
        super::jobs::job_cas(job_id, from, to, now, patch)?
            .run(&mut *self.tx)
            .await
    }

    /// As [`Store::transition_instance`].
    pub async fn transition_instance(
        &mut self,
        id: &str,
        from: InstanceState,
        to: InstanceState,
        now: i64,
        patch: InstancePatch,
    ) -> Result<bool, StoreError> {
        super::instances::instance_cas(id, from, to, now, patch)?
            .run(&mut *self.tx)
            .await
    }

    /// What a job's check run is called, and where its details are (see
    /// `checks.rs`); the first word stays.
    pub async fn name_check_run(
        &mut self,
        job_id: i64,
        job_name: Option<&str>,
        details_url: Option<&str>,
    ) -> Result<(), StoreError> {
        super::checks::name_check_run(&mut *self.tx, job_id, job_name, details_url).await
    }

    /// As [`Store::log_event`].
    pub async fn log_event(
        &mut self,
        at: i64,
        job_id: Option<i64>,
        instance_id: Option<&str>,
        kind: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        super::log_event(&mut *self.tx, at, job_id, instance_id, kind, message).await
    }

    /// As [`Store::finish_delivery`].
    pub async fn finish_delivery(
        &mut self,
        delivery_id: &str,
        owner: &str,
        now: i64,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        super::inbox::finish_delivery(&mut *self.tx, delivery_id, owner, now, error).await
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// One replica's turn to provision: while it is held, no other replica on
/// the same database (and schema) starts a provisioning pass. The limits
/// are counted when a pass begins and handed out in memory, so passes on
/// two replicas at once could each give away the same last place.
///
/// On PostgreSQL a transaction-scoped advisory lock, keyed by the schema
/// (tests and deployments sharing a server keep apart): released at the
/// end of the turn, and by the server if the replica dies. SQLite has one
/// writer process, so its turn is always free.
pub struct ProvisioningTurn {
    held: Option<Transaction<'static, Any>>,
}

/// First key of the advisory lock ("rigg"); the second is the schema's hash.
const TURN_LOCK: i32 = 0x7269_6767;

impl Store {
    /// Wait for this replica's turn to provision.
    pub async fn provisioning_turn(&self) -> Result<ProvisioningTurn, StoreError> {
        if self.dialect == super::Dialect::Sqlite {
            return Ok(ProvisioningTurn { held: None });
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))::text AS locked")
            .bind(TURN_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(ProvisioningTurn { held: Some(tx) })
    }
}

impl ProvisioningTurn {
    /// Let the next replica have its turn. (Dropping the turn does too, a
    /// moment later: the pool flushes the rollback when it takes the
    /// connection back.)
    pub async fn end(self) -> Result<(), StoreError> {
        if let Some(tx) = self.held {
            tx.rollback().await?;
        }
        Ok(())
    }
}
