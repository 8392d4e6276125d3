//! Jobs: one row per GitHub job id, moved through `JobState` by
//! compare-and-set so that concurrent workers and late webhooks cannot race.

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row};

use super::{Cas, Inserted, Moves, Store, StoreError, Val};
use crate::engine::estimate::PastRun;
use crate::engine::state::{InstanceState, JobState};

#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub job_id: i64,
    pub run_id: i64,
    pub run_attempt: i64,
    pub repo: String,
    pub installation_id: i64,
    pub labels: Vec<String>,
    pub head_sha: String,
    pub is_fork: bool,
    /// Who triggered the run (`.access.yml` is checked against them).
    pub actor: String,
    pub queued_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub job_id: i64,
    pub run_id: i64,
    pub run_attempt: i64,
    pub repo: String,
    pub installation_id: i64,
    pub labels: Vec<String>,
    pub head_sha: String,
    pub is_fork: bool,
    pub actor: String,
    pub state: JobState,
    /// Why it is in this state (a failure reason, a no-capacity diagnosis).
    pub reason: Option<String>,
    /// The runner definition chosen for it.
    pub runner_def: Option<String>,
    /// The runner GitHub gave it to.
    pub runner_name: Option<String>,
    pub conclusion: Option<String>,
    pub check_run_id: Option<i64>,
    /// Provisioning attempts so far.
    pub attempts: i64,
    /// Not before this time (backoff after no capacity).
    pub next_attempt_at: Option<i64>,
    pub queued_at: i64,
    /// When a runner took it.
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// The GPU it ran on (for expected-duration history).
    pub gpu_name: Option<String>,
    /// Why a failed job failed (`JobFailure::as_str`).
    pub failure: Option<String>,
    pub updated_at: i64,
    /// Until when its provisioning worker is trusted with it: renewed while
    /// the worker works, so a job whose worker died is taken over soon
    /// after (rule 9) and one whose worker lives never is.
    pub lease_until: Option<i64>,
}

/// Columns to set together with a state change; `None` leaves a column alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobPatch {
    pub reason: Option<Option<String>>,
    pub runner_def: Option<String>,
    pub runner_name: Option<String>,
    pub conclusion: Option<String>,
    pub check_run_id: Option<i64>,
    pub next_attempt_at: Option<Option<i64>>,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub gpu_name: Option<String>,
    /// For a failed job: `JobFailure::as_str`.
    pub failure: Option<&'static str>,
    /// Count one more provisioning attempt.
    pub count_attempt: bool,
    /// Queued anew from now (an approved deployment: GitHub's queue limit
    /// starts when it lets the job through, not when it was created).
    pub queued_at: Option<i64>,
}

impl JobPatch {
    fn into_sets(self) -> Vec<(&'static str, Val)> {
        let mut sets = Vec::new();
        if let Some(r) = self.reason {
            sets.push(("reason", Val::Text(r)));
        }
        if let Some(d) = self.runner_def {
            sets.push(("runner_def", Val::Text(Some(d))));
        }
        if let Some(n) = self.runner_name {
            sets.push(("runner_name", Val::Text(Some(n))));
        }
        if let Some(f) = self.failure {
            sets.push(("failure", Val::Text(Some(f.to_string()))));
        }
        if let Some(c) = self.conclusion {
            sets.push(("conclusion", Val::Text(Some(c))));
        }
        if let Some(c) = self.check_run_id {
            sets.push(("check_run_id", Val::Int(Some(c))));
        }
        if let Some(t) = self.next_attempt_at {
            sets.push(("next_attempt_at", Val::Int(t)));
        }
        if let Some(t) = self.started_at {
            sets.push(("started_at", Val::Int(Some(t))));
        }
        if let Some(t) = self.completed_at {
            sets.push(("completed_at", Val::Int(Some(t))));
        }
        if let Some(g) = self.gpu_name {
            sets.push(("gpu_name", Val::Text(Some(g))));
        }
        if let Some(t) = self.queued_at {
            sets.push(("queued_at", Val::Int(Some(t))));
        }
        sets
    }
}

const COLUMNS: &str = "job_id, run_id, run_attempt, repo, installation_id, labels, head_sha, is_fork, actor, \
     state, reason, runner_def, runner_name, conclusion, check_run_id, attempts, next_attempt_at, \
     queued_at, started_at, completed_at, gpu_name, failure, updated_at, lease_until";

impl JobRow {
    fn from_row(r: &AnyRow) -> Result<JobRow, StoreError> {
        let labels: String = r.try_get("labels")?;
        let state: String = r.try_get("state")?;
        Ok(JobRow {
            job_id: r.try_get("job_id")?,
            run_id: r.try_get("run_id")?,
            run_attempt: r.try_get("run_attempt")?,
            repo: r.try_get("repo")?,
            installation_id: r.try_get("installation_id")?,
            labels: serde_json::from_str(&labels)?,
            head_sha: r.try_get("head_sha")?,
            is_fork: r.try_get::<i64, _>("is_fork")? != 0,
            actor: r.try_get("actor")?,
            state: state.parse()?,
            reason: r.try_get("reason")?,
            runner_def: r.try_get("runner_def")?,
            runner_name: r.try_get("runner_name")?,
            conclusion: r.try_get("conclusion")?,
            check_run_id: r.try_get("check_run_id")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            queued_at: r.try_get("queued_at")?,
            started_at: r.try_get("started_at")?,
            completed_at: r.try_get("completed_at")?,
            gpu_name: r.try_get("gpu_name")?,
            failure: r.try_get("failure")?,
            updated_at: r.try_get("updated_at")?,
            lease_until: r.try_get("lease_until")?,
        })
    }
}

/// A change of state the table does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} cannot go from {from} to {to}")]
pub struct InvalidTransition {
    pub kind: &'static str,
    pub from: String,
    pub to: String,
}

/// Record a new job, on the pool or in a transaction: `queued`, or
/// `waiting_for_approval` with the reason it waits.
pub(super) async fn insert_job<'e>(
    on: impl Executor<'e, Database = Any>,
    j: &NewJob,
    waiting: Option<&str>,
) -> Result<Inserted, StoreError> {
    let state = match waiting {
        Some(_) => JobState::WaitingForApproval,
        None => JobState::Queued,
    };
    let done = sqlx::query(
        "INSERT INTO jobs (job_id, run_id, run_attempt, repo, installation_id, labels, head_sha, \
         is_fork, actor, state, queued_at, updated_at, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12) ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(j.job_id)
    .bind(j.run_id)
    .bind(j.run_attempt)
    .bind(&j.repo)
    .bind(j.installation_id)
    .bind(serde_json::to_string(&j.labels)?)
    .bind(&j.head_sha)
    .bind(i64::from(j.is_fork))
    .bind(&j.actor)
    .bind(state.as_str())
    .bind(j.queued_at)
    .bind(waiting)
    .execute(on)
    .await?;
    Ok(if done.rows_affected() == 1 {
        Inserted::New
    } else {
        Inserted::Duplicate
    })
}

/// The compare-and-set that moves a job from `from` to `to`, refused here
/// when the table does not allow it.
pub(super) fn job_cas(
    job_id: i64,
    from: JobState,
    to: JobState,
    now: i64,
    patch: JobPatch,
) -> Result<Cas, StoreError> {
    if !from.can_become(to) {
        return Err(StoreError::Transition(InvalidTransition {
            kind: "job",
            from: from.to_string(),
            to: to.to_string(),
        }));
    }
    Ok(moves_cas(
        job_id,
        Moves::One(from.as_str(), to.as_str()),
        now,
        patch,
    ))
}

fn moves_cas(job_id: i64, moves: Moves, now: i64, patch: JobPatch) -> Cas {
    let bump = patch.count_attempt.then_some("attempts");
    Cas {
        table: "jobs",
        key_column: "job_id",
        key: Val::Int(Some(job_id)),
        moves,
        now,
        sets: patch.into_sets(),
        bump,
    }
}

impl Store {
    /// Record a queued job. Seeing the same job again is a no-op.
    pub async fn insert_job(&self, j: &NewJob) -> Result<Inserted, StoreError> {
        insert_job(&self.writer, j, None).await
    }

    pub async fn job(&self, job_id: i64) -> Result<Option<JobRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE job_id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(JobRow::from_row).transpose()
    }

    /// `(installation, owner/name)` of every repository with a live job or
    /// a job that changed since `since` (`i64::MAX`: live jobs only): where
    /// rigger's runners can be.
    pub async fn active_repos(&self, since: i64) -> Result<Vec<(i64, String)>, StoreError> {
        let ended: Vec<String> = JobState::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let sql = format!(
            "SELECT DISTINCT installation_id, repo FROM jobs \
             WHERE updated_at >= $1 OR state NOT IN ({}) ORDER BY repo",
            ended.join(", ")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("installation_id")?, r.try_get("repo")?)))
            .collect()
    }

    /// Whether a runner of this name ever took a job (its `in_progress`
    /// bound the job to it).
    pub async fn runner_took_a_job(&self, runner_name: &str) -> Result<bool, StoreError> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT job_id FROM jobs WHERE runner_name = $1 LIMIT 1")
                .bind(runner_name)
                .fetch_optional(&self.pool)
                .await?;
        Ok(found.is_some())
    }

    /// Whether a job not yet over is bound to a runner of this name: the
    /// machine running it is busy (I4).
    pub async fn runner_serves_live_job(&self, runner_name: &str) -> Result<bool, StoreError> {
        let over: Vec<String> = JobState::ALL
            .iter()
            .filter(|s| s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        let sql = format!(
            "SELECT job_id FROM jobs WHERE runner_name = $1 AND state NOT IN ({}) LIMIT 1",
            over.join(", ")
        );
        let found: Option<i64> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(runner_name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.is_some())
    }

    /// The runners of live machines whose job was failed for `failure`
    /// while they ran it (the job bound to their name): for
    /// `access_lost`, jobs that go on on GitHub, which rigger can no longer
    /// follow.
    pub async fn live_runners_of_jobs_failed_for(
        &self,
        failure: &str,
    ) -> Result<Vec<String>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT j.runner_name FROM jobs j \
             JOIN instances i ON i.runner_name = j.runner_name \
             WHERE j.state = $1 AND j.failure = $2 AND i.state NOT IN ($3, $4)",
        )
        .bind(JobState::Failed.as_str())
        .bind(failure)
        .bind(InstanceState::Destroyed.as_str())
        .bind(InstanceState::Failed.as_str())
        .fetch_all(&self.pool)
        .await?;
        Ok(names)
    }

    /// Jobs in any of these states, oldest first.
    pub async fn jobs_in(&self, states: &[JobState]) -> Result<Vec<JobRow>, StoreError> {
        let list: Vec<String> = states.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "SELECT {COLUMNS} FROM jobs WHERE state IN ({}) ORDER BY queued_at, job_id",
            list.join(", ")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(JobRow::from_row).collect()
    }

    /// Move a job from `from` to `to` if it is still in `from`. Returns false
    /// when another worker or a webhook moved it first.
    pub async fn transition_job(
        &self,
        job_id: i64,
        from: JobState,
        to: JobState,
        now: i64,
        patch: JobPatch,
    ) -> Result<bool, StoreError> {
        job_cas(job_id, from, to, now, patch)?
            .run(&self.writer)
            .await
    }

    /// Put a job back in the queue if it is still as it was planned from:
    /// in `from`, with `attempts` provisioning attempts. Another replica
    /// may have re-queued and re-provisioned it since (a new attempt): then
    /// it is left alone, and not rented for twice. Whether it moved.
    pub async fn requeue_job_as_planned(
        &self,
        job_id: i64,
        from: JobState,
        attempts: i64,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        if !from.can_become(JobState::Queued) {
            return Err(StoreError::Transition(InvalidTransition {
                kind: "job",
                from: from.to_string(),
                to: JobState::Queued.to_string(),
            }));
        }
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', reason = $1, next_attempt_at = $2, \
                 updated_at = $2, version = version + 1 \
             WHERE job_id = $3 AND state = $4 AND attempts = $5",
        )
        .bind(reason)
        .bind(now)
        .bind(job_id)
        .bind(from.as_str())
        .bind(attempts)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Move a job from whatever state it is in to `to(state)`, for every
    /// state where `to` gives a move the table allows, in one statement: a
    /// webhook's change cannot be lost to a worker that moves the job
    /// between a read and a write. Returns the job as it is now if it moved.
    pub async fn advance_job(
        &self,
        job_id: i64,
        to: impl Fn(JobState) -> Option<JobState>,
        now: i64,
        patch: JobPatch,
    ) -> Result<Option<JobRow>, StoreError> {
        let moves: Vec<(&'static str, &'static str)> = JobState::ALL
            .into_iter()
            .filter_map(|from| {
                let next = to(from).filter(|next| from.can_become(*next))?;
                Some((from.as_str(), next.as_str()))
            })
            .collect();
        if moves.is_empty() {
            return Ok(None);
        }
        let row = moves_cas(job_id, Moves::Each(moves), now, patch)
            .run_returning(&self.writer, COLUMNS)
            .await?;
        row.as_ref().map(JobRow::from_row).transpose()
    }

    /// Crash recovery only: put a job in a state whatever state it is in.
    pub async fn force_job_state(
        &self,
        job_id: i64,
        to: JobState,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        Cas {
            table: "jobs",
            key_column: "job_id",
            key: Val::Int(Some(job_id)),
            moves: Moves::Forced(to.as_str()),
            now,
            sets: vec![("reason", Val::Text(Some(reason.to_string())))],
            bump: None,
        }
        .run(&self.writer)
        .await
    }

    /// Take queued jobs whose backoff has passed into `provisioning` for
    /// `owner`, oldest first, counting an attempt: the claim is the move
    /// itself, one statement (on PostgreSQL with `FOR UPDATE SKIP LOCKED`),
    /// so two replicas never take the same job. `lease_until` says how long
    /// the owner is trusted with them; a job whose worker died is put back
    /// by the reconciler (rule 9). Returns the jobs as they are now.
    pub async fn claim_due_jobs(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<JobRow>, StoreError> {
        debug_assert!(JobState::Queued.can_become(JobState::Provisioning));
        let sql = format!(
            "UPDATE jobs SET lease_owner = $1, lease_until = $2, state = 'provisioning', \
                 attempts = attempts + 1, updated_at = $3, version = version + 1 \
             WHERE job_id IN (SELECT job_id FROM jobs WHERE state = 'queued' \
                 AND (next_attempt_at IS NULL OR next_attempt_at <= $3) \
                 ORDER BY queued_at, job_id LIMIT $4{}) AND state = 'queued' \
             RETURNING {COLUMNS}",
            self.skip_locked()
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.writer)
            .await?;
        let mut jobs: Vec<JobRow> = rows
            .iter()
            .map(JobRow::from_row)
            .collect::<Result<_, _>>()?;
        jobs.sort_by_key(|j| (j.queued_at, j.job_id));
        Ok(jobs)
    }

    /// A worker's heartbeat: the jobs it is provisioning are its for
    /// another `lease_ms`. Only while they are still its (a job taken over,
    /// or claimed again by another worker, is not renewed). How many.
    pub async fn renew_job_leases(
        &self,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE lease_owner = $2 AND state = 'provisioning'",
        )
        .bind(now + lease_ms)
        .bind(owner)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    /// Rule 9: put back in the queue a job whose provisioning worker's
    /// lease ran out — a compare-and-set on what the plan saw (still
    /// provisioning, the same attempt) and on the lease still being out,
    /// so that a worker that renewed it meanwhile keeps it. Whether it moved.
    pub async fn take_over_job(
        &self,
        job_id: i64,
        attempts: i64,
        now: i64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        debug_assert!(JobState::Provisioning.can_become(JobState::Queued));
        let done = sqlx::query(
            "UPDATE jobs SET state = 'queued', reason = $1, next_attempt_at = $2, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $2, version = version + 1 \
             WHERE job_id = $3 AND state = 'provisioning' AND attempts = $4 \
                 AND (lease_until IS NULL OR lease_until <= $2)",
        )
        .bind(reason)
        .bind(now)
        .bind(job_id)
        .bind(attempts)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// How long the last `limit` completed jobs of a repository's runner
    /// definition ran, and on which GPU: `(seconds, gpu_name)`, newest first.
    pub async fn recent_durations(
        &self,
        repo: &str,
        runner_def: &str,
        limit: i64,
    ) -> Result<Vec<PastRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT started_at, completed_at, gpu_name, conclusion FROM jobs \
             WHERE repo = $1 AND runner_def = $2 AND state = 'completed' \
             AND started_at IS NOT NULL AND completed_at IS NOT NULL AND gpu_name IS NOT NULL \
             ORDER BY completed_at DESC LIMIT $3",
        )
        .bind(repo)
        .bind(runner_def)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let start: i64 = r.try_get("started_at")?;
                let end: i64 = r.try_get("completed_at")?;
                let conclusion: Option<String> = r.try_get("conclusion")?;
                Ok(PastRun {
                    seconds: (end - start) / 1000,
                    gpu_name: r.try_get("gpu_name")?,
                    succeeded: conclusion.as_deref() == Some("success"),
                })
            })
            .collect()
    }

    /// Remember the check run rigger reports on for this job.
    pub async fn set_check_run(&self, job_id: i64, check_run_id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET check_run_id = $1 WHERE job_id = $2")
            .bind(check_run_id)
            .bind(job_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Say better why a job waits, while it is still in `state` (no change
    /// of state: a later delivery named what an earlier one did not).
    /// Whether it was still there.
    pub async fn set_reason_in(
        &self,
        job_id: i64,
        state: JobState,
        reason: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET reason = $1, updated_at = $2 WHERE job_id = $3 AND state = $4",
        )
        .bind(reason)
        .bind(now)
        .bind(job_id)
        .bind(state.as_str())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
