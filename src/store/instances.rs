//! Instances: one row per machine rigger rents, written before the create
//! call (I2), moved through `InstanceState` by compare-and-set.

use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::jobs::InvalidTransition;
use super::{Cas, Moves, Store, StoreError, Val};
use crate::engine::state::InstanceState;

#[derive(Debug, Clone, PartialEq)]
pub struct NewInstance {
    /// rigger's id for the machine; also the unique part of its Vast.ai label.
    pub id: String,
    pub job_id: i64,
    /// The Vast.ai label: controller id + job id, how rigger finds it again.
    pub label: String,
    pub runner_name: String,
    pub offer_id: Option<i64>,
    pub gpu_name: Option<String>,
    pub num_gpus: Option<i64>,
    pub dph: Option<f64>,
    pub location: Option<String>,
    /// When it is destroyed whatever it is doing (max lifetime, I3/I4).
    pub expires_at: i64,
    /// SHA-256 (hex) of the token its bootstrap presents to rigger's callback;
    /// the token itself is never stored (I6).
    pub callback_hash: Option<String>,
    /// The estimate its offer was ranked by: hours on its GPU (boot
    /// included) and dollars in total.
    pub estimated_hours: Option<f64>,
    pub estimated_cost: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub id: String,
    pub job_id: i64,
    pub label: String,
    pub runner_name: String,
    pub runner_id: Option<i64>,
    /// Vast.ai's instance id, once the create call answered.
    pub provider_id: Option<String>,
    pub offer_id: Option<i64>,
    pub gpu_name: Option<String>,
    pub num_gpus: Option<i64>,
    pub dph: Option<f64>,
    pub location: Option<String>,
    pub state: InstanceState,
    pub reason: Option<String>,
    pub created_at: i64,
    pub create_called_at: Option<i64>,
    pub online_at: Option<i64>,
    pub destroy_called_at: Option<i64>,
    pub destroyed_at: Option<i64>,
    pub expires_at: i64,
    pub callback_hash: Option<String>,
    pub updated_at: i64,
    /// Destroy calls Vast.ai refused (or rigger could not make) so far.
    pub destroy_attempts: i64,
    /// When the next destroy call is due, after a refused one.
    pub destroy_due_at: Option<i64>,
    /// The estimate made when it was rented (see [`NewInstance`]); none on
    /// a row written before rigger kept it.
    pub estimated_hours: Option<f64>,
    pub estimated_cost: Option<f64>,
}

/// Columns to set together with a state change; `None` leaves a column alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstancePatch {
    pub provider_id: Option<String>,
    pub runner_id: Option<i64>,
    pub reason: Option<String>,
    pub create_called_at: Option<i64>,
    pub online_at: Option<i64>,
    pub destroy_called_at: Option<i64>,
    pub destroyed_at: Option<i64>,
}

impl InstancePatch {
    /// The machine Vast.ai made for the row: its id there.
    pub fn provider(provider_id: &str) -> InstancePatch {
        InstancePatch {
            provider_id: Some(provider_id.to_string()),
            ..Default::default()
        }
    }

    fn into_sets(self) -> Vec<(&'static str, Val)> {
        let mut sets = Vec::new();
        let mut int = |c, v: Option<i64>| {
            if v.is_some() {
                sets.push((c, Val::Int(v)));
            }
        };
        int("runner_id", self.runner_id);
        int("create_called_at", self.create_called_at);
        int("online_at", self.online_at);
        int("destroy_called_at", self.destroy_called_at);
        int("destroyed_at", self.destroyed_at);
        if let Some(p) = self.provider_id {
            sets.push(("provider_id", Val::Text(Some(p))));
        }
        if let Some(r) = self.reason {
            sets.push(("reason", Val::Text(Some(r))));
        }
        sets
    }
}

/// The live instances, summed up (`Store::live_usage`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveUsage {
    pub live: u32,
    /// Live instances per repository.
    pub by_repo: std::collections::BTreeMap<String, u32>,
    /// What they have cost in the window asked for, in dollars.
    pub dollars_since: f64,
}

/// Every state but destroyed and failed.
fn live_states() -> Vec<InstanceState> {
    InstanceState::ALL
        .into_iter()
        .filter(|s| !s.is_terminal())
        .collect()
}

/// States as an SQL list: `'booting', 'online'` (our own names, never input).
fn state_list(states: &[InstanceState]) -> String {
    let quoted: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
    quoted.join(", ")
}

const COLUMNS: &str = "id, job_id, label, runner_name, runner_id, provider_id, offer_id, gpu_name, \
     num_gpus, dph, location, state, reason, created_at, create_called_at, online_at, \
     destroy_called_at, destroyed_at, expires_at, callback_hash, updated_at, destroy_attempts, \
     destroy_due_at, estimated_hours, estimated_cost";

impl InstanceRow {
    fn from_row(r: &AnyRow) -> Result<InstanceRow, StoreError> {
        let state: String = r.try_get("state")?;
        Ok(InstanceRow {
            id: r.try_get("id")?,
            job_id: r.try_get("job_id")?,
            label: r.try_get("label")?,
            runner_name: r.try_get("runner_name")?,
            runner_id: r.try_get("runner_id")?,
            provider_id: r.try_get("provider_id")?,
            offer_id: r.try_get("offer_id")?,
            gpu_name: r.try_get("gpu_name")?,
            num_gpus: r.try_get("num_gpus")?,
            dph: r.try_get("dph")?,
            location: r.try_get("location")?,
            state: state.parse()?,
            reason: r.try_get("reason")?,
            created_at: r.try_get("created_at")?,
            create_called_at: r.try_get("create_called_at")?,
            online_at: r.try_get("online_at")?,
            destroy_called_at: r.try_get("destroy_called_at")?,
            destroyed_at: r.try_get("destroyed_at")?,
            expires_at: r.try_get("expires_at")?,
            callback_hash: r.try_get("callback_hash")?,
            updated_at: r.try_get("updated_at")?,
            destroy_attempts: r.try_get("destroy_attempts")?,
            destroy_due_at: r.try_get("destroy_due_at")?,
            estimated_hours: r.try_get("estimated_hours")?,
            estimated_cost: r.try_get("estimated_cost")?,
        })
    }
}

/// The compare-and-set that moves an instance from `from` to `to`,
/// refused here when the table does not allow it.
pub(super) fn instance_cas(
    id: &str,
    from: InstanceState,
    to: InstanceState,
    now: i64,
    patch: InstancePatch,
) -> Result<Cas, StoreError> {
    if !from.can_become(to) {
        return Err(StoreError::Transition(InvalidTransition {
            kind: "instance",
            from: from.to_string(),
            to: to.to_string(),
        }));
    }
    Ok(Cas {
        table: "instances",
        key_column: "id",
        key: Val::Text(Some(id.to_string())),
        moves: Moves::One(from.as_str(), to.as_str()),
        now,
        sets: patch.into_sets(),
        bump: None,
    })
}

/// The INSERT of a new instance row, on a pool or in a transaction.
async fn insert_row<'e, E>(
    exec: E,
    i: &NewInstance,
    state: InstanceState,
    runner_id: Option<i64>,
    now: i64,
) -> Result<(), StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let create_called_at = (state == InstanceState::Creating).then_some(now);
    sqlx::query(
        "INSERT INTO instances (id, job_id, label, runner_name, offer_id, gpu_name, num_gpus, dph, \
         location, state, expires_at, callback_hash, runner_id, create_called_at, estimated_hours, \
         estimated_cost, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)",
    )
    .bind(&i.id)
    .bind(i.job_id)
    .bind(&i.label)
    .bind(&i.runner_name)
    .bind(i.offer_id)
    .bind(&i.gpu_name)
    .bind(i.num_gpus)
    .bind(i.dph)
    .bind(&i.location)
    .bind(state.as_str())
    .bind(i.expires_at)
    .bind(&i.callback_hash)
    .bind(runner_id)
    .bind(create_called_at)
    .bind(i.estimated_hours)
    .bind(i.estimated_cost)
    .bind(now)
    .execute(exec)
    .await?;
    Ok(())
}

impl Store {
    /// Write the row for a machine about to be rented, in `requested`.
    pub async fn insert_instance(&self, i: &NewInstance, now: i64) -> Result<(), StoreError> {
        self.insert_instance_in(i, InstanceState::Requested, None, now)
            .await
    }

    /// Write the row for a machine whose create call is made next (I2), in
    /// `creating`, with the runner registered for it: one commit where a
    /// `requested` row and its move to `creating` would take two.
    pub async fn insert_creating_instance(
        &self,
        i: &NewInstance,
        runner_id: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        self.insert_instance_in(i, InstanceState::Creating, Some(runner_id), now)
            .await
    }

    async fn insert_instance_in(
        &self,
        i: &NewInstance,
        state: InstanceState,
        runner_id: Option<i64>,
        now: i64,
    ) -> Result<(), StoreError> {
        insert_row(&self.writer, i, state, runner_id, now).await
    }

    /// As [`Store::insert_creating_instance`], only while its job is still
    /// `provisioning` at this attempt — in one commit with that check, so a
    /// job that ended (or was handed to another worker) while the runner
    /// was being registered gets no machine. On PostgreSQL the check locks
    /// the job's row until the commit: a `completed` handled meanwhile
    /// waits, then finds the row and destroys what it tracks. Whether the
    /// row was written.
    pub async fn insert_creating_instance_for(
        &self,
        i: &NewInstance,
        runner_id: i64,
        job_attempts: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let still = sqlx::query(
            "UPDATE jobs SET attempts = attempts WHERE job_id = $1 AND state = $2 AND attempts = $3",
        )
        .bind(i.job_id)
        .bind(crate::engine::state::JobState::Provisioning.as_str())
        .bind(job_attempts)
        .execute(&mut *tx)
        .await?;
        if still.rows_affected() != 1 {
            return Ok(false);
        }
        insert_row(&mut *tx, i, InstanceState::Creating, Some(runner_id), now).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn instance_where(
        &self,
        column: &str,
        value: Val,
    ) -> Result<Option<InstanceRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM instances WHERE {column} = $1");
        let q = super::bind_val(sqlx::query(AssertSqlSafe(sql)), value);
        let row = q.fetch_optional(&self.pool).await?;
        row.as_ref().map(InstanceRow::from_row).transpose()
    }

    pub async fn instance(&self, id: &str) -> Result<Option<InstanceRow>, StoreError> {
        self.instance_where("id", Val::Text(Some(id.to_string())))
            .await
    }

    /// The machine a runner runs on: how `in_progress` binds a job to a machine.
    pub async fn instance_by_runner_name(
        &self,
        name: &str,
    ) -> Result<Option<InstanceRow>, StoreError> {
        self.instance_where("runner_name", Val::Text(Some(name.to_string())))
            .await
    }

    /// Record the Vast.ai id of a machine whose row has moved on without
    /// it (a create answered after its job ended); an id once known is kept.
    pub async fn set_provider_id(&self, id: &str, provider_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE instances SET provider_id = $1 WHERE id = $2 AND provider_id IS NULL")
            .bind(provider_id)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn instance_by_label(&self, label: &str) -> Result<Option<InstanceRow>, StoreError> {
        self.instance_where("label", Val::Text(Some(label.to_string())))
            .await
    }

    /// Instances in any of these states, oldest first.
    pub async fn instances_in(
        &self,
        states: &[InstanceState],
    ) -> Result<Vec<InstanceRow>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM instances WHERE state IN ({}) ORDER BY created_at, id",
            state_list(states)
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(InstanceRow::from_row).collect()
    }

    /// Every instance that is not destroyed or failed.
    pub async fn live_instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        self.instances_in(&live_states()).await
    }

    /// What the live instances add up to, in one query whatever their
    /// number: how many per repository, and what they have cost since
    /// `since` up to `now` (each from its create call or `since`, whichever
    /// is later).
    pub async fn live_usage(&self, since: i64, now: i64) -> Result<LiveUsage, StoreError> {
        // CASE rather than MAX/GREATEST, which SQLite and PostgreSQL spell
        // differently; CAST because PostgreSQL counts in BIGINT but the
        // `Any` driver wants it said.
        let sql = format!(
            "SELECT COALESCE(j.repo, '') AS repo, CAST(COUNT(*) AS BIGINT) AS live, \
                 SUM(CASE WHEN i.dph IS NULL OR i.create_called_at IS NULL \
                               OR i.create_called_at >= $2 THEN 0.0 \
                          WHEN i.create_called_at > $1 THEN i.dph * ($2 - i.create_called_at) \
                          ELSE i.dph * ($2 - $1) END) AS running_ms \
             FROM instances i LEFT JOIN jobs j ON j.job_id = i.job_id \
             WHERE i.state IN ({}) GROUP BY COALESCE(j.repo, '')",
            state_list(&live_states())
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since)
            .bind(now)
            .fetch_all(&self.pool)
            .await?;
        let mut usage = LiveUsage::default();
        for row in rows {
            let repo: String = row.try_get("repo")?;
            let live: i64 = row.try_get("live")?;
            let running_ms: Option<f64> = row.try_get("running_ms")?;
            usage.live += live as u32;
            usage.by_repo.insert(repo, live as u32);
            usage.dollars_since += running_ms.unwrap_or(0.0) / 3_600_000.0;
        }
        Ok(usage)
    }

    pub async fn instances_for_job(&self, job_id: i64) -> Result<Vec<InstanceRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM instances WHERE job_id = $1 ORDER BY created_at, id");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(job_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(InstanceRow::from_row).collect()
    }

    /// Give a machine rented for job `from_job` to job `to_job`, if it is
    /// still `from_job`'s and may still take a job (one statement, so a
    /// machine that just became busy or started dying is left as it is).
    /// Its label and runner name keep the job it was rented for: they are
    /// how Vast.ai and GitHub know it. Whether it moved.
    pub async fn rebind_instance(
        &self,
        id: &str,
        from_job: i64,
        to_job: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let idle: Vec<InstanceState> = InstanceState::ALL
            .into_iter()
            .filter(|s| s.may_still_take_a_job())
            .collect();
        let sql = format!(
            "UPDATE instances SET job_id = $1, updated_at = $2 \
             WHERE id = $3 AND job_id = $4 AND state IN ({})",
            state_list(&idle)
        );
        let done = sqlx::query(AssertSqlSafe(sql))
            .bind(to_job)
            .bind(now)
            .bind(id)
            .bind(from_job)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Move an instance from `from` to `to` if it is still in `from`.
    pub async fn transition_instance(
        &self,
        id: &str,
        from: InstanceState,
        to: InstanceState,
        now: i64,
        patch: InstancePatch,
    ) -> Result<bool, StoreError> {
        instance_cas(id, from, to, now, patch)?
            .run(&self.writer)
            .await
    }

    /// A destroy call that did not go through: count it, and say when the
    /// next is due, while the row is still `destroying` (a row already
    /// destroyed by someone else is left alone). In the row, so that a
    /// restart keeps the backoff.
    pub async fn destroy_refused(
        &self,
        id: &str,
        attempts: i64,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE instances SET destroy_attempts = $1, destroy_due_at = $2 \
             WHERE id = $3 AND state = $4",
        )
        .bind(attempts)
        .bind(due_at)
        .bind(id)
        .bind(InstanceState::Destroying.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Crash recovery only: put an instance in a state whatever state it is in.
    pub async fn force_instance_state(
        &self,
        id: &str,
        to: InstanceState,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        Cas {
            table: "instances",
            key_column: "id",
            key: Val::Text(Some(id.to_string())),
            moves: Moves::Forced(to.as_str()),
            now,
            sets: vec![("reason", Val::Text(Some(reason.to_string())))],
            bump: None,
        }
        .run(&self.writer)
        .await
    }
}
