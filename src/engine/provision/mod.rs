//! Provisioning: turning queued jobs into rented machines.
//!
//! A pass claims the jobs whose backoff has passed and works on them side
//! by side (`attempt`: config → access policy → matching definition →
//! ranked offers → limits); renting one offer (`rent`) registers the JIT
//! runner, writes the instance row (I2) and makes the create call with our
//! label. `config` reads and caches the repository's files, `admission`
//! keeps the limits among the jobs of one pass, and `claim` holds what one
//! job's rent takes (offer, place, create slot) until it gives it back.

mod admission;
mod attempt;
mod claim;
mod config;
mod rent;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tracing::Instrument;

use super::isolate::{Loop, isolated};
use super::ports::{CheckRun, Cloud, CloudError, Github, GithubError};
use super::state::{JobFailure, JobState};
use super::{Engine, EngineError, report};
use crate::config::model::RunnerDef;
use crate::store::{JobPatch, JobRow};
use admission::Admission;

pub use config::{LoadedConfig, parse_config_files};
pub use rent::{RunnerReleases, runner_arch, token_hash};

/// What became of one provisioning attempt.
enum Outcome {
    Rented,
    /// Try again later; say why on the check run.
    Retry {
        reason: String,
        after_ms: Option<i64>,
        check: Option<(String, CheckRun)>,
    },
    Fail {
        kind: JobFailure,
        reason: String,
        check: CheckRun,
    },
    /// A definition for another cloud: Cirun's business, not rigger's.
    NotOurs(String),
    /// The job ended (cancelled, or run elsewhere) while it was being
    /// provisioned: its end is recorded already, and nothing is rented.
    Ended,
}

/// How long a worker is trusted with a job it claimed without renewing
/// it: the reconciler (rule 9) takes over the jobs of a worker that died
/// this long after its last heartbeat.
pub const LEASE_MS: i64 = 60_000;
/// How often a pass renews its jobs' leases: well inside the lease, so
/// that a slow answer or a busy database does not lose a live worker's job.
const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);
/// How many due jobs a pass provisions side by side.
const BATCH: i64 = 16;
/// How many jobs one pass takes on before it counts the live machines
/// again (its limits start from that count).
const PASS: usize = 256;

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Provision the queued jobs whose backoff has passed, up to [`PASS`]
    /// of them, [`BATCH`] side by side: each worker claims its next job when
    /// it is done with one, so a slow job holds up no other. Returns how
    /// many were attempted.
    pub async fn provision_due(&self) -> Result<usize, EngineError> {
        // Replicas take turns: each pass counts the limits once, at its start.
        let turn = self.store.provisioning_turn().await?;
        let pass = self.provision_pass();
        tokio::pin!(pass);
        let attempted = loop {
            tokio::select! {
                attempted = &mut pass => break attempted,
                _ = tokio::time::sleep(HEARTBEAT) => self.renew_leases().await,
            }
        };
        turn.end().await?;
        attempted
    }

    /// The heartbeat of this worker's provisioning: the jobs it works on
    /// stay its for another [`LEASE_MS`]. A failure is logged; the next
    /// beat tries again, well inside the lease.
    pub async fn renew_leases(&self) {
        if let Err(e) = self
            .store
            .renew_job_leases(&self.worker_id, self.now(), LEASE_MS)
            .await
        {
            tracing::warn!(error = %e, "cannot renew the provisioning leases");
        }
    }

    async fn provision_pass(&self) -> Result<usize, EngineError> {
        let mut first = self.claim(BATCH).await?;
        if first.is_empty() {
            return Ok(0);
        }
        // Workers pop from the end: oldest first.
        first.reverse();
        let admission = self.admission().await?;
        let pass = Pass {
            more: AtomicBool::new(first.len() == BATCH as usize),
            attempted: AtomicUsize::new(first.len()),
            claimed: Mutex::new(first),
            claiming: tokio::sync::Mutex::new(()),
        };
        // Side by side: most of a job's time is spent waiting for GitHub
        // and Vast.ai, and what jobs share (the limits, one search per
        // definition, the runner's checksum) is guarded where it is used.
        // Each worker claims inside its own future: a claim awaited outside
        // them could wait for a database connection that only a worker,
        // not being polled meanwhile, would give back.
        let worker = || async {
            while let Some(job) = self.next_job(&pass).await? {
                let result = self.provision_isolated(job, &admission).await;
                if result.is_err() {
                    pass.more.store(false, Ordering::Relaxed);
                }
                result?;
            }
            Ok::<(), EngineError>(())
        };
        let results = futures_util::future::join_all((0..BATCH).map(|_| worker())).await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(pass.attempted.load(Ordering::Relaxed))
    }

    /// A worker's next job: one claimed already, else a new claim. One
    /// worker claims for all, up to [`BATCH`] jobs in one statement (one
    /// commit, not one per job); the others wait for it and take theirs.
    async fn next_job(&self, pass: &Pass) -> Result<Option<JobRow>, EngineError> {
        if let Some(job) = pass.take() {
            return Ok(Some(job));
        }
        let _claiming = pass.claiming.lock().await;
        if let Some(job) = pass.take() {
            return Ok(Some(job));
        }
        let attempted = pass.attempted.load(Ordering::Relaxed);
        if !pass.more.load(Ordering::Relaxed) || attempted >= PASS {
            return Ok(None);
        }
        let room = (PASS - attempted).min(BATCH as usize);
        let mut jobs = self.claim(room as i64).await?;
        if jobs.is_empty() {
            pass.more.store(false, Ordering::Relaxed);
            return Ok(None);
        }
        pass.attempted.fetch_add(jobs.len(), Ordering::Relaxed);
        let mine = jobs.remove(0);
        jobs.reverse();
        pass.claimed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(jobs);
        Ok(Some(mine))
    }

    async fn claim(&self, n: i64) -> Result<Vec<JobRow>, EngineError> {
        Ok(self
            .store
            .claim_due_jobs(&self.worker_id, self.now(), LEASE_MS, n)
            .await?)
    }

    /// One job's attempt, isolated: a panic in it (a bug that its config
    /// or an answer from GitHub or Vast.ai set off) fails that job, says so
    /// on its check run, and the pass goes on with the others. The attempt
    /// would panic again on every retry, so it is not retried.
    async fn provision_isolated(
        &self,
        job: JobRow,
        admission: &Admission,
    ) -> Result<(), EngineError> {
        let what = format!("provisioning job {}", job.job_id);
        let span = tracing::info_span!(
            "job",
            job_id = job.job_id,
            attempt = job.attempts,
            repo = %crate::text::for_log(&job.repo),
        );
        let attempt = self.provision(job.clone(), admission).instrument(span);
        match isolated(&self.metrics, Loop::Provisioner, &what, attempt).await {
            Ok(result) => result,
            Err(p) => {
                let why = p.to_string();
                let check = report::failed("rigger hit an internal error", &why);
                self.fail_job(&job, JobFailure::InternalError, &why, check)
                    .await
            }
        }
    }

    async fn provision(&self, job: JobRow, admission: &Admission) -> Result<(), EngineError> {
        let now = self.now();
        let queue_limit = crate::millis::of(self.settings.timeouts.queue);
        if crate::millis::since(now, job.queued_at) > queue_limit {
            let why = format!(
                "no machine could be rented within {} h, GitHub's own queue limit; last reason: {}",
                queue_limit / 3_600_000,
                job.reason.as_deref().unwrap_or("none")
            );
            return self
                .fail_job(
                    &job,
                    JobFailure::NoCapacityTimeout,
                    &why,
                    report::failed("No GPU found in time", &why),
                )
                .await;
        }
        let outcome = self.try_provision(&job, admission).await?;
        let now = self.now();
        match outcome {
            Outcome::Rented => {}
            Outcome::Retry {
                reason,
                after_ms,
                check,
            } => {
                let after = after_ms.unwrap_or_else(|| self.retry_after_ms(&job, now));
                let patch = JobPatch {
                    reason: Some(Some(reason.clone())),
                    next_attempt_at: Some(Some(now + after)),
                    ..Default::default()
                };
                self.store
                    .transition_job(
                        job.job_id,
                        JobState::Provisioning,
                        JobState::Queued,
                        now,
                        patch,
                    )
                    .await?;
                self.note(
                    Some(job.job_id),
                    None,
                    "waiting",
                    &format!("{reason}; again in {} s", after / 1000),
                )
                .await;
                if let Some((_, run)) = check {
                    self.report(&job, &run).await;
                }
            }
            Outcome::Fail {
                kind,
                reason,
                check,
            } => self.fail_job(&job, kind, &reason, check).await?,
            Outcome::NotOurs(reason) => {
                self.end_job(
                    &job,
                    JobState::Provisioning,
                    JobState::Cancelled,
                    &reason,
                    None,
                )
                .await?;
            }
            Outcome::Ended => {}
        }
        Ok(())
    }

    async fn end_job(
        &self,
        job: &JobRow,
        from: JobState,
        to: JobState,
        reason: &str,
        check: Option<CheckRun>,
    ) -> Result<(), EngineError> {
        let patch = JobPatch {
            reason: Some(Some(reason.to_string())),
            ..Default::default()
        };
        self.finish(job, from, to, patch, reason, check).await?;
        Ok(())
    }

    /// rigger gives up on a job it was provisioning, saying why in full on
    /// the check run and, as a kind, in the job's row and the metrics.
    async fn fail_job(
        &self,
        job: &JobRow,
        kind: JobFailure,
        reason: &str,
        check: CheckRun,
    ) -> Result<(), EngineError> {
        let patch = JobPatch {
            reason: Some(Some(reason.to_string())),
            failure: Some(kind.as_str()),
            ..Default::default()
        };
        let (from, to) = (JobState::Provisioning, JobState::Failed);
        if self
            .finish(job, from, to, patch, reason, Some(check))
            .await?
        {
            self.metrics
                .inc("rigger_jobs_failed_total", &[("kind", kind.as_str())]);
            self.cancel_given_up_run(job, kind).await;
        }
        Ok(())
    }

    /// Move a job to its end, note why and update its check run; whether
    /// this call moved it.
    async fn finish(
        &self,
        job: &JobRow,
        from: JobState,
        to: JobState,
        patch: JobPatch,
        reason: &str,
        check: Option<CheckRun>,
    ) -> Result<bool, EngineError> {
        let moved = self
            .store
            .transition_job(job.job_id, from, to, self.now(), patch)
            .await?;
        if moved {
            self.note(Some(job.job_id), None, to.as_str(), reason).await;
            if let Some(run) = check {
                self.report(job, &run).await;
            }
        }
        Ok(moved)
    }

    /// GitHub failed a call the attempt needs: count it, and try again when
    /// GitHub says (a rate limit), else with the backoff.
    fn github_retry(&self, e: &GithubError, why: String) -> Outcome {
        self.github_error(e);
        retry(why, rate_limit_ms_github(e))
    }
}

/// One provisioning pass: the jobs claimed and not yet taken by a worker,
/// whether more may be due, and how many were taken on.
struct Pass {
    /// Oldest last: workers pop from the end.
    claimed: Mutex<Vec<JobRow>>,
    /// Held by the worker claiming for the others.
    claiming: tokio::sync::Mutex<()>,
    more: AtomicBool,
    attempted: AtomicUsize,
}

impl Pass {
    fn take(&self) -> Option<JobRow> {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }
}

impl<C: Cloud, G: Github> Engine<C, G> {
    /// How long a job that found no machine waits before its next try:
    /// see [`retry_after_ms`], with the operator's `timeouts`.
    fn retry_after_ms(&self, job: &JobRow, now: i64) -> i64 {
        let t = &self.settings.timeouts;
        retry_after_ms(
            now - job.queued_at,
            crate::millis::of(t.provision_retry),
            crate::millis::of(t.provision_retry_max),
        )
    }

    /// Nothing on the market fits: wait with the backoff, and say when
    /// rigger looks again.
    fn no_capacity(&self, def: &RunnerDef, diagnosis: &str, job: &JobRow) -> Outcome {
        let after = self.retry_after_ms(job, self.now());
        Outcome::Retry {
            reason: diagnosis.to_string(),
            after_ms: Some(after),
            check: Some((
                def.name.clone(),
                report::waiting_for_capacity(&def.name, diagnosis, after / 1000),
            )),
        }
    }
}

/// The wait before a job's next try: half of how long it has waited
/// (since GitHub queued it), at least `first_ms` and at most `max_ms` —
/// 15 s for its first half minute, 30 s after one minute, a minute after
/// two, 5 minutes after ten with the defaults. It grows with time, not with tries: a try
/// that only waited for a rate limit's slot does not lengthen the next
/// wait.
pub fn retry_after_ms(waited_ms: i64, first_ms: i64, max_ms: i64) -> i64 {
    (waited_ms.max(0) / 2).clamp(first_ms, max_ms.max(first_ms))
}

fn retry(reason: String, after_ms: Option<i64>) -> Outcome {
    Outcome::Retry {
        reason,
        after_ms,
        check: None,
    }
}

fn fail(kind: JobFailure, why: &str, title: &str) -> Outcome {
    Outcome::Fail {
        kind,
        reason: why.to_string(),
        check: report::failed(title, why),
    }
}

fn rate_limit_ms(e: &CloudError) -> Option<i64> {
    match e {
        CloudError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
        _ => None,
    }
}

fn rate_limit_ms_github(e: &GithubError) -> Option<i64> {
    match e {
        GithubError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
        _ => None,
    }
}

/// 15 s, 30 s, 60 s … capped at 5 minutes.
pub fn backoff_ms(attempt: i64) -> i64 {
    let exp = attempt.clamp(1, 6) - 1;
    (15_000 * (1_i64 << exp)).min(300_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jobs_wait_grows_with_how_long_it_has_waited_not_with_its_tries() {
        let (first, max) = (15_000, 300_000);
        assert_eq!(retry_after_ms(0, first, max), 15_000);
        assert_eq!(retry_after_ms(30_000, first, max), 15_000);
        assert_eq!(retry_after_ms(60_000, first, max), 30_000);
        assert_eq!(retry_after_ms(120_000, first, max), 60_000);
        assert_eq!(retry_after_ms(10 * 60_000, first, max), 300_000);
        assert_eq!(retry_after_ms(24 * 3_600_000, first, max), 300_000);
        assert_eq!(retry_after_ms(-5, first, max), 15_000, "a clock behind");
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff_ms(1), 15_000);
        assert_eq!(backoff_ms(2), 30_000);
        assert_eq!(backoff_ms(5), 240_000);
        assert_eq!(backoff_ms(50), 300_000);
    }
}
