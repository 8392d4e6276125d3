//! The reconciler's hands: read the three views into a snapshot, let `plan`
//! decide, and carry each action out. Every action is safe to repeat: the
//! store's compare-and-set makes a second attempt a no-op.
//!
//! GitHub is read place by place: an installation waiting out a rate limit
//! leaves only its own repositories' runners unknown, and its quiet jobs
//! are not asked about until the wait is over (the other installations'
//! are). That wait is said once, at INFO, when it begins; the passes
//! during it say nothing above DEBUG, and it is no error (the HTTP layer
//! counts the limit and the calls it held back).

use std::collections::{HashMap, HashSet};

use tracing::Instrument;

use super::plan::{
    Action, CHECK_RUNS_PER_PASS, CloudStatus, Limits, Rule, Snapshot, UnsentCheckRun, plan,
    quiet_jobs, unowned_runners,
};
use crate::engine::events::{JobEvent, JobInfo};
use crate::engine::isolate::{Loop, isolated};
use crate::engine::names;
use crate::engine::ports::{Cloud, Github, GithubError, RepoRef};
use crate::engine::state::{InstanceState, JobState};
use crate::engine::{Engine, EngineError};
use crate::store::{Dialect, InstancePatch, JobPatch, JobRow};

/// How much of a failed boot's log to keep in the event log.
const LOG_TAIL: usize = 4000;

/// What the reconciler carries from one pass to the next. Kept in memory: a
/// restart only delays what it guards (one more quiet period before asking
/// GitHub, one more grace before deleting a runner).
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// When GitHub was last asked about each quiet job.
    jobs_checked_at: HashMap<i64, i64>,
    /// Since when each runner registration has been seen with no row.
    unowned_runners_since: HashMap<i64, i64>,
    /// Since when each instance (row id) has been seen unreachable on
    /// Vast.ai. A restart starts its grace again.
    unreachable_since: HashMap<String, i64>,
    /// Passes so far.
    passes: u64,
    /// Installations seen waiting out a rate limit, and until when: the
    /// wait is logged when it begins, not every pass.
    rate_limited_until: HashMap<i64, i64>,
}

/// Every this-many passes, runners are also looked for where jobs ended in
/// the last hour (a registration a crash left behind), not only where jobs
/// are live: each place listed is a GitHub call, every pass.
const RECENT_REPOS_EVERY: u64 = 10;
const RECENT_REPOS_MS: i64 = 3_600_000;

impl<C: Cloud, G: Github> Engine<C, G> {
    pub fn limits(&self) -> Limits {
        let t = &self.settings.timeouts;
        Limits {
            create_timeout_ms: crate::millis::of(t.create),
            bootstrap_timeout_ms: crate::millis::of(t.bootstrap),
            idle_timeout_ms: crate::millis::of(t.idle),
            job_quiet_ms: crate::millis::of(t.job_quiet),
            unreachable_grace_ms: crate::millis::of(t.unreachable),
            destroy_retry_ms: crate::millis::of(t.destroy_retry),
            destroy_retry_max_ms: crate::millis::of(t.destroy_retry_max),
            ..Limits::default()
        }
    }

    /// Read the store, Vast.ai (instances with our label) and GitHub
    /// (runners with our names, and the jobs that have been quiet), then the
    /// instance rows again: see [`Snapshot::late_instances`].
    pub async fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let live_jobs: Vec<JobState> = JobState::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        let jobs = self.store.jobs_in(&live_jobs).await?;
        let instances = self.store.live_instances().await?;
        let controller = &self.settings.controller_id;
        let (cloud, cloud_known) = match self.cloud.list(&names::label_prefix(controller)).await {
            Ok(c) => (c, true),
            Err(e) => {
                self.cloud_error(&e);
                (Vec::new(), false)
            }
        };
        // Our runners are where our jobs are: a registration outlives its
        // job by a crash at most.
        let pass = {
            let mut memory = self.memory();
            memory.passes += 1;
            memory.passes
        };
        let since = if pass % RECENT_REPOS_EVERY == 1 {
            self.now() - RECENT_REPOS_MS
        } else {
            i64::MAX
        };
        let at: Vec<RepoRef> = self
            .store
            .active_repos(since)
            .await?
            .into_iter()
            .map(|(installation_id, repo)| RepoRef {
                installation_id,
                repo,
            })
            .collect();
        let listing = self
            .github
            .list_runners(&names::runner_prefix(controller), &at)
            .await;
        // Installations waiting out a rate limit this pass: nothing more is
        // asked of them (it would not go out).
        let mut limited: HashSet<i64> = HashSet::new();
        let mut runners_unknown = HashSet::new();
        for (repo, e) in listing.unknown {
            if self.github_unavailable(repo.installation_id, &e) {
                limited.insert(repo.installation_id);
            }
            runners_unknown.insert(repo);
        }
        let mut runners = listing.runners;
        runners.retain(|r| names::is_our_runner(controller, &r.name));
        let late_instances = self.store.live_instances().await?;
        let now = self.now();
        let checked_at = self.memory().jobs_checked_at.clone();
        let mut github_jobs = Vec::new();
        for id in quiet_jobs(&jobs, now, &self.limits(), &checked_at) {
            let Some(job) = jobs.iter().find(|j| j.job_id == id) else {
                continue;
            };
            if limited.contains(&job.installation_id) {
                continue;
            }
            match self.github.get_job(&repo_of(job), id).await {
                Ok(view) => {
                    github_jobs.push(view);
                    self.memory().jobs_checked_at.insert(id, now);
                }
                Err(e) => {
                    if self.github_unavailable(job.installation_id, &e) {
                        limited.insert(job.installation_id);
                    }
                }
            }
        }
        // An installation asked and not limited has its wait behind it.
        self.memory().rate_limited_until.retain(|i, until| {
            limited.contains(i) || (*until > now && !at.iter().any(|r| r.installation_id == *i))
        });
        // More than one pass sends, so that the due ones are among them.
        let unsent_check_runs = self
            .store
            .unsent_check_runs(2 * CHECK_RUNS_PER_PASS as i64)
            .await?
            .into_iter()
            .map(|(job_id, due_at)| UnsentCheckRun { job_id, due_at })
            .collect();
        let mut snapshot = Snapshot {
            jobs,
            instances,
            late_instances,
            cloud,
            cloud_known,
            runners,
            runners_unknown,
            github_jobs,
            unowned_runners_since: HashMap::new(),
            unsent_check_runs,
            unreachable_since: HashMap::new(),
        };
        let mut memory = self.memory();
        memory
            .jobs_checked_at
            .retain(|id, _| snapshot.jobs.iter().any(|j| j.job_id == *id));
        let unowned = unowned_runners(&snapshot);
        // A runner not listed this pass may be in a place that could not
        // be: it keeps its time until its place is read again.
        let listed: HashSet<i64> = snapshot.runners.iter().map(|r| r.id).collect();
        let some_unknown = !snapshot.runners_unknown.is_empty();
        let since = &mut memory.unowned_runners_since;
        since.retain(|id, _| unowned.contains(id) || (some_unknown && !listed.contains(id)));
        for id in unowned {
            since.entry(id).or_insert(now);
        }
        snapshot.unowned_runners_since = memory.unowned_runners_since.clone();
        if snapshot.cloud_known {
            track_unreachable(&mut memory.unreachable_since, &snapshot, now);
        }
        snapshot.unreachable_since = memory.unreachable_since.clone();
        Ok(snapshot)
    }

    /// A GitHub call of the snapshot failed. A rate limit is the
    /// installation's wait, said once when it begins (true: the
    /// installation is skipped for the rest of the pass); anything else
    /// is counted as an error.
    fn github_unavailable(&self, installation_id: i64, e: &GithubError) -> bool {
        let GithubError::RateLimited { retry_after_ms } = e else {
            self.github_error(e);
            return false;
        };
        let now = self.now();
        let until = now + retry_after_ms;
        let began = {
            let mut memory = self.memory();
            let known = memory.rate_limited_until.insert(installation_id, until);
            known.is_none_or(|was| was <= now)
        };
        if began {
            tracing::info!(
                installation_id,
                wait_s = (retry_after_ms + 999) / 1000,
                "GitHub rate-limits this installation: its runners and quiet jobs are looked at again when the wait is over; other installations go on"
            );
        } else {
            tracing::debug!(
                installation_id,
                wait_ms = retry_after_ms,
                "still rate-limited"
            );
        }
        true
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.reconcile_memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// One pass of the reconciler: what it decided, in the order it acted.
    pub async fn reconcile_once(&self) -> Result<Vec<(Rule, Action)>, EngineError> {
        let snapshot = self.snapshot().await?;
        let actions = plan(&snapshot, self.now(), &self.limits());
        for (rule, action) in &actions {
            self.metrics.inc(
                "rigger_reconciler_actions_total",
                &[("rule", rule.as_str())],
            );
            self.apply_isolated(*rule, action).await;
        }
        Ok(actions)
    }

    /// One action, isolated: its store error or panic is counted against
    /// its rule and logged, and the pass goes on with the next action (the
    /// next pass plans it again from what is then true).
    async fn apply_isolated(&self, rule: Rule, action: &Action) {
        let what = format!("reconcile rule {}", rule.as_str());
        let span = tracing::info_span!("reconcile_action", rule = rule.as_str());
        let applied = isolated(
            &self.metrics,
            Loop::Reconciler,
            &what,
            self.apply(rule, action).instrument(span),
        )
        .await;
        let failed = match applied {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(p) => p.to_string(),
        };
        self.metrics
            .inc("rigger_reconcile_errors_total", &[("rule", rule.as_str())]);
        tracing::error!(
            rule = rule.as_str(),
            "a reconcile action failed; the pass goes on: {failed}"
        );
    }

    async fn apply(&self, rule: Rule, action: &Action) -> Result<(), EngineError> {
        let now = self.now();
        match action {
            Action::DestroyOrphan { provider_id, label } => {
                let job = names::parse_label(&self.settings.controller_id, label).map(|(j, _)| j);
                match self.cloud.destroy(provider_id).await {
                    Ok(()) => {
                        self.note(job, None, "orphan_destroyed", &format!("destroyed Vast.ai instance {provider_id} ({label}): no live row owned it"))
                            .await
                    }
                    Err(e) => self.cloud_error(&e),
                }
            }
            Action::Adopt {
                instance_id,
                provider_id,
            } => {
                let Some(inst) = self.store.instance(instance_id).await? else {
                    return Ok(());
                };
                if inst.state == InstanceState::Requested {
                    self.store
                        .transition_instance(
                            instance_id,
                            InstanceState::Requested,
                            InstanceState::Creating,
                            now,
                            InstancePatch {
                                create_called_at: Some(inst.created_at),
                                ..Default::default()
                            },
                        )
                        .await?;
                }
                let adopted = self
                    .store
                    .transition_instance(
                        instance_id,
                        InstanceState::Creating,
                        InstanceState::Booting,
                        now,
                        InstancePatch::provider(provider_id),
                    )
                    .await?;
                if adopted {
                    self.note(Some(inst.job_id), Some(instance_id), "adopted", &format!("found Vast.ai instance {provider_id} by its label after the create call went unanswered"))
                        .await;
                    if let Some(job) = self.store.job(inst.job_id).await?
                        && job.state == JobState::Provisioning
                    {
                        self.store
                            .transition_job(
                                job.job_id,
                                JobState::Provisioning,
                                JobState::WaitingForRunner,
                                now,
                                JobPatch::default(),
                            )
                            .await?;
                    }
                }
            }
            Action::MarkFailed {
                instance_id,
                requeue_job,
            } => {
                if let Some(inst) = self.store.instance(instance_id).await?
                    && self
                        .store
                        .transition_instance(
                            instance_id,
                            inst.state,
                            InstanceState::Failed,
                            now,
                            InstancePatch {
                                reason: Some("the create call produced no instance".into()),
                                ..Default::default()
                            },
                        )
                        .await
                        .unwrap_or(false)
                {
                    self.note(
                        Some(inst.job_id),
                        Some(instance_id),
                        "create_failed",
                        "no Vast.ai instance carries its label: marked failed",
                    )
                    .await;
                    if let Err(e) = self.forget_unused_runner(&inst).await {
                        tracing::warn!(instance = %inst.id, error = %e, "could not check its runner");
                    }
                }
                if let Some(job_id) = requeue_job {
                    self.requeue(*job_id, "its machine was never created")
                        .await?;
                }
            }
            Action::Destroy {
                instance_id,
                keep_logs,
                deregister_runner,
                requeue_job,
                reason,
            } => {
                let Some(inst) = self.store.instance(instance_id).await? else {
                    return Ok(());
                };
                if *keep_logs && let Some(pid) = &inst.provider_id {
                    match self.cloud.logs(pid).await {
                        Ok(log) => {
                            let start = log.len().saturating_sub(LOG_TAIL);
                            let tail = log.get(start..).unwrap_or(&log);
                            self.note(Some(inst.job_id), Some(instance_id), "boot_log", tail)
                                .await;
                        }
                        Err(e) => self.cloud_error(&e),
                    }
                }
                if let Some(runner_id) = deregister_runner
                    && let Some(job) = self.store.job(inst.job_id).await?
                    && let Err(e) = self.github.delete_runner(&repo_of(&job), *runner_id).await
                {
                    self.github_error(&e);
                    // An idle runner is deregistered first so that GitHub
                    // cannot hand it a job while its machine dies. If that
                    // fails (GitHub refuses to delete a runner that just took
                    // a job, or cannot be reached), the machine may be busy:
                    // keep it (I4) and look again on the next pass. A machine
                    // already busy with the job that ended is not: its
                    // runner is ephemeral and has run its one job.
                    let may_have_just_taken_a_job = inst.state != InstanceState::Busy;
                    if may_have_just_taken_a_job
                        && matches!(rule, Rule::IdleTimeout | Rule::JobCompletedElsewhere)
                    {
                        self.note(
                            Some(inst.job_id),
                            Some(instance_id),
                            "idle_kept",
                            &format!("not destroyed: its runner could not be deregistered ({e})"),
                        )
                        .await;
                        return Ok(());
                    }
                }
                self.destroy_instance(&inst, &format!("{reason} ({})", rule.as_str()))
                    .await?;
                if let Some(job_id) = requeue_job {
                    self.requeue(*job_id, reason).await?;
                    // Vast.ai's words for the failed boot go on the check
                    // run, until the next machine's boot replaces them.
                    if rule == Rule::BootFailed
                        && let Some(job) = self.store.job(*job_id).await?
                        && job.state == JobState::Queued
                    {
                        self.report(&job, &crate::engine::report::boot_failed(reason))
                            .await;
                    }
                }
            }
            Action::CompleteJob {
                job_id,
                conclusion,
                runner_name,
            } => {
                if let Some(job) = self.store.job(*job_id).await? {
                    self.note(
                        Some(*job_id),
                        None,
                        "reconciled",
                        "GitHub says the job is over; its webhook never arrived",
                    )
                    .await;
                    self.handle(JobEvent::Completed {
                        job: info_of(&job),
                        conclusion: conclusion.clone().map(Into::into),
                        runner_name: runner_name.clone().map(Into::into),
                    })
                    .await?;
                }
            }
            Action::MarkRunning {
                job_id,
                runner_name,
            } => {
                if let Some(job) = self.store.job(*job_id).await? {
                    self.handle(JobEvent::InProgress {
                        job: info_of(&job),
                        runner_name: Some(runner_name.clone().into()),
                    })
                    .await?;
                }
            }
            Action::DeleteRunner {
                runner_id,
                name,
                installation_id,
                scope,
            } => {
                let repo = RepoRef {
                    installation_id: *installation_id,
                    repo: scope.clone(),
                };
                match self.github.delete_runner(&repo, *runner_id).await {
                    Ok(()) => {
                        self.note(
                            None,
                            None,
                            "runner_deleted",
                            &format!("deleted runner {name}: no machine of ours runs it"),
                        )
                        .await
                    }
                    Err(e) => self.github_error(&e),
                }
            }
            Action::RequeueJob { job_id, reason } => {
                self.requeue(*job_id, reason).await?;
            }
            Action::TakeOverJob { job_id, attempt } => self.take_over(*job_id, *attempt).await?,
            Action::SendCheckRun { job_id } => self.send_check_run(*job_id).await?,
            Action::ReleaseJob { job_id } => {
                if let Some(job) = self.store.job(*job_id).await? {
                    self.note(
                        Some(*job_id),
                        None,
                        "reconciled",
                        "GitHub says the job was approved and queued; its webhook never arrived",
                    )
                    .await;
                    self.handle(JobEvent::Queued(info_of(&job))).await?;
                }
            }
            Action::MarkOnline { instance_id } => {
                let patch = InstancePatch {
                    online_at: Some(now),
                    ..Default::default()
                };
                let moved = self
                    .store
                    .transition_instance(
                        instance_id,
                        InstanceState::Booting,
                        InstanceState::Online,
                        now,
                        patch,
                    )
                    .await?;
                if moved && let Some(inst) = self.store.instance(instance_id).await? {
                    self.note(
                        Some(inst.job_id),
                        Some(instance_id),
                        "online",
                        "its runner is online, waiting for a job",
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    /// Give a job back to the queue if it is still waiting for a machine.
    /// At start-up, the jobs a stopped rigger left in `provisioning` (a
    /// graceful stop finishes its passes, so only a crash leaves any). On
    /// SQLite rigger is the only replica, so each has lost its worker and
    /// goes back to the queue now rather than after the provisioning
    /// timeout; on PostgreSQL another replica may be working on it, and
    /// rule 9 decides. Returns how many were put back.
    pub async fn recover_at_start(&self) -> Result<usize, EngineError> {
        if self.store.dialect() != Dialect::Sqlite {
            return Ok(0);
        }
        let left = self.store.jobs_in(&[JobState::Provisioning]).await?;
        for job in &left {
            self.requeue(job.job_id, "rigger restarted while provisioning it")
                .await?;
        }
        Ok(left.len())
    }

    /// Rule 9's take-over of a job whose worker's lease ran out.
    async fn take_over(&self, job_id: i64, attempt: i64) -> Result<(), EngineError> {
        let reason = "its provisioning worker stopped renewing its lease";
        if self
            .store
            .take_over_job(job_id, attempt, self.now(), reason)
            .await?
        {
            self.note(Some(job_id), None, "requeued", reason).await;
            self.wake.notify_one();
        }
        Ok(())
    }

    async fn requeue(&self, job_id: i64, reason: &str) -> Result<(), EngineError> {
        let Some(job) = self.store.job(job_id).await? else {
            return Ok(());
        };
        if matches!(
            job.state,
            JobState::Provisioning | JobState::WaitingForRunner
        ) {
            let patch = JobPatch {
                reason: Some(Some(reason.to_string())),
                next_attempt_at: Some(Some(self.now())),
                ..Default::default()
            };
            if self
                .store
                .transition_job(job_id, job.state, JobState::Queued, self.now(), patch)
                .await?
            {
                self.note(Some(job_id), None, "requeued", reason).await;
                self.wake.notify_one();
            }
        }
        Ok(())
    }
}

/// Keep, for each live instance Vast.ai lists as unreachable, since when it
/// has been so; forget the ones that came back or are gone.
fn track_unreachable(since: &mut HashMap<String, i64>, s: &Snapshot, now: i64) {
    let unreachable: HashSet<&str> = s
        .instances
        .iter()
        .filter(|i| {
            s.cloud.iter().any(|c| {
                c.status == CloudStatus::Unreachable
                    && (Some(c.provider_id.as_str()) == i.provider_id.as_deref()
                        || c.label == i.label)
            })
        })
        .map(|i| i.id.as_str())
        .collect();
    since.retain(|id, _| unreachable.contains(id.as_str()));
    for id in unreachable {
        since.entry(id.to_string()).or_insert(now);
    }
}

fn repo_of(job: &JobRow) -> RepoRef {
    RepoRef {
        installation_id: job.installation_id,
        repo: job.repo.clone(),
    }
}

fn info_of(job: &JobRow) -> JobInfo {
    JobInfo {
        job_id: job.job_id.into(),
        run_id: job.run_id.into(),
        run_attempt: job.run_attempt.into(),
        repo: job.repo.clone().into(),
        installation_id: job.installation_id.into(),
        labels: job.labels.clone().into(),
        head_sha: job.head_sha.clone().into(),
        is_fork: job.is_fork.into(),
        actor: job.actor.clone(),
        // Known already: the job's row exists.
        name: None,
        html_url: None,
    }
}
