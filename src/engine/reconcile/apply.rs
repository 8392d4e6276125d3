//! The reconciler's hands: read the three views into a snapshot, let `plan`
//! decide, and carry each action out, one small function per action. None
//! decides anew what `plan` decided: whether a refused deregistration keeps
//! a machine (I4) comes in the action ([`Deregister`]). Every action is
//! safe to repeat: the store's compare-and-set makes a second attempt a
//! no-op; one that fails is counted against its rule and the pass goes on.
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
    Action, CHECK_RUNS_PER_PASS, CloudStatus, Deregister, GithubJobView, Limits, PlannedJob, Rule,
    Snapshot, UnsentCheckRun, plan, quiet_jobs, to_confirm, unowned_runners,
};
use crate::engine::events::{JobEvent, JobInfo};
use crate::engine::isolate::{Loop, isolated};
use crate::engine::names;
use crate::engine::ports::{Cloud, Github, GithubError, RepoRef};
use crate::engine::state::{InstanceState, JobFailure, JobState};
use crate::engine::{Engine, EngineError};
use crate::store::{Dialect, InstancePatch, InstanceRow, JobPatch, JobRow};

/// How much of a failed boot's log to keep in the event log.
const LOG_TAIL: usize = 4000;

/// A `Destroy` action's decisions, as `apply` carries them out.
struct PlannedDestroy<'a> {
    rule: Rule,
    /// The state I4 was decided for.
    from: InstanceState,
    keep_logs: bool,
    deregister: Option<Deregister>,
    requeue_job: Option<PlannedJob>,
    reason: &'a str,
}

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
    /// instance rows again (see [`Snapshot::late_instances`]); then ask
    /// GitHub about the jobs `plan` may rent for again ([`to_confirm`]).
    pub async fn snapshot(&self) -> Result<Snapshot, EngineError> {
        let (mut snapshot, mut limited) = self.read_views().await?;
        self.confirm_with_github(&mut snapshot, &mut limited).await;
        Ok(snapshot)
    }

    /// The three views, and the installations found waiting out a rate
    /// limit while they were read.
    async fn read_views(&self) -> Result<(Snapshot, HashSet<i64>), EngineError> {
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
        // Counted by `reconcile_once`, which names the pass in its span.
        let pass = self.memory().passes;
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
        let quiet = quiet_jobs(&jobs, now, &self.limits(), &checked_at);
        let github_jobs = self.ask_github(&jobs, &quiet, &mut limited, now).await;
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
            access_lost_runners: self
                .store
                .live_runners_of_jobs_failed_for(JobFailure::AccessLost.as_str())
                .await?
                .into_iter()
                .collect(),
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
        Ok((snapshot, limited))
    }

    /// Before renting again for a job whose machine is gone or going, or
    /// that no machine can run, GitHub is asked whether it still waits: it
    /// may be running elsewhere or over.
    async fn confirm_with_github(&self, snapshot: &mut Snapshot, limited: &mut HashSet<i64>) {
        let now = self.now();
        let confirm = to_confirm(snapshot, now, &self.limits());
        let answers = self
            .ask_github(&snapshot.jobs, &confirm, limited, now)
            .await;
        snapshot.github_jobs.extend(answers);
    }

    /// GitHub's view of these jobs, where their installation is not
    /// waiting out a rate limit (one that begins here is added to
    /// `limited`, and its other jobs are not asked this pass).
    async fn ask_github(
        &self,
        jobs: &[JobRow],
        ids: &[i64],
        limited: &mut HashSet<i64>,
        now: i64,
    ) -> Vec<GithubJobView> {
        let mut views = Vec::new();
        for &id in ids {
            let Some(job) = jobs.iter().find(|j| j.job_id == id) else {
                continue;
            };
            if limited.contains(&job.installation_id) {
                continue;
            }
            match self.github.get_job(&repo_of(job), id).await {
                Ok(view) => {
                    views.push(view);
                    self.memory().jobs_checked_at.insert(id, now);
                }
                Err(e) => {
                    if self.github_unavailable(job.installation_id, &e) {
                        limited.insert(job.installation_id);
                    }
                }
            }
        }
        views
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
    /// Its span names the pass; its duration is `rigger_reconcile_pass_seconds`.
    /// A snapshot that cannot be read ends the pass (nothing can be planned
    /// from half a view), counted as a `snapshot` error; an action that
    /// fails does not (see [`Self::apply_isolated`]).
    pub async fn reconcile_once(&self) -> Result<Vec<(Rule, Action)>, EngineError> {
        let pass = {
            let mut memory = self.memory();
            memory.passes += 1;
            memory.passes
        };
        let span = tracing::info_span!("reconcile_pass", pass);
        let started = self.now();
        let result = self.plan_and_apply().instrument(span).await;
        let seconds = crate::millis::since(self.now(), started) as f64 / 1000.0;
        self.metrics
            .observe("rigger_reconcile_pass_seconds", &[], seconds);
        result
    }

    async fn plan_and_apply(&self) -> Result<Vec<(Rule, Action)>, EngineError> {
        let snapshot = match self.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                self.metrics
                    .inc("rigger_reconcile_errors_total", &[("rule", "snapshot")]);
                return Err(e);
            }
        };
        self.reconcile_from(&snapshot).await
    }

    /// Plan from `snapshot` and carry the plan out. The snapshot may be
    /// older than what the store holds now (another replica's pass came in
    /// between): every action checks what it was planned from.
    pub async fn reconcile_from(
        &self,
        snapshot: &Snapshot,
    ) -> Result<Vec<(Rule, Action)>, EngineError> {
        let actions = plan(snapshot, self.now(), &self.limits());
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
    /// next pass plans it again from what is then true). Its span names the
    /// rule and what it acts on, so one job's story can be read from the log.
    async fn apply_isolated(&self, rule: Rule, action: &Action) {
        let what = format!("reconcile rule {}", rule.as_str());
        let span = tracing::info_span!(
            "reconcile_action",
            rule = rule.as_str(),
            job_id = tracing::field::Empty,
            instance_id = tracing::field::Empty,
        );
        if let Some(job_id) = action.job_id() {
            span.record("job_id", job_id);
        }
        if let Some(instance_id) = action.instance_id() {
            span.record("instance_id", instance_id);
        }
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

    /// Carry one action out, as `plan` decided it: one function per action.
    async fn apply(&self, rule: Rule, action: &Action) -> Result<(), EngineError> {
        match action {
            Action::DestroyOrphan { provider_id, label } => {
                self.destroy_orphan(provider_id, label).await;
                Ok(())
            }
            Action::Adopt {
                instance_id,
                provider_id,
            } => self.adopt(instance_id, provider_id).await,
            Action::MarkFailed {
                instance_id,
                from,
                requeue_job,
            } => self.mark_failed(instance_id, *from, *requeue_job).await,
            Action::Destroy {
                instance_id,
                from,
                keep_logs,
                deregister_runner,
                requeue_job,
                reason,
            } => {
                let planned = PlannedDestroy {
                    rule,
                    from: *from,
                    keep_logs: *keep_logs,
                    deregister: *deregister_runner,
                    requeue_job: *requeue_job,
                    reason,
                };
                self.destroy_planned(instance_id, planned).await
            }
            Action::CompleteJob {
                job_id,
                conclusion,
                runner_name,
            } => {
                self.complete_job(*job_id, conclusion.as_deref(), runner_name.as_deref())
                    .await
            }
            Action::MarkRunning {
                job_id,
                runner_name,
            } => self.mark_running(*job_id, runner_name).await,
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
                self.delete_stale_runner(&repo, *runner_id, name).await;
                Ok(())
            }
            Action::RequeueJob { job, reason } => self.requeue(job, reason).await,
            Action::TakeOverJob { job_id, attempt } => self.take_over(*job_id, *attempt).await,
            Action::SendCheckRun { job_id } => self.send_check_run(*job_id).await,
            Action::ReleaseJob { job_id } => self.release_job(*job_id).await,
            Action::MarkOnline { instance_id } => self.mark_online(instance_id).await,
        }
    }

    /// Rule 1.
    async fn destroy_orphan(&self, provider_id: &str, label: &str) {
        let job = names::parse_label(&self.settings.controller_id, label).map(|(j, _)| j);
        match self.cloud.destroy(provider_id).await {
            Ok(()) => {
                let why = format!(
                    "destroyed Vast.ai instance {provider_id} ({label}): no live row owned it"
                );
                self.note(job, None, "orphan_destroyed", &why).await
            }
            Err(e) => self.cloud_error(&e),
        }
    }

    /// Rule 2: the machine the create call made, found by its label.
    async fn adopt(&self, instance_id: &str, provider_id: &str) -> Result<(), EngineError> {
        let now = self.now();
        let Some(inst) = self.store.instance(instance_id).await? else {
            return Ok(());
        };
        if inst.state == InstanceState::Requested {
            let patch = InstancePatch {
                create_called_at: Some(inst.created_at),
                ..Default::default()
            };
            let (from, to) = (InstanceState::Requested, InstanceState::Creating);
            self.store
                .transition_instance(instance_id, from, to, now, patch)
                .await?;
        }
        let (from, to) = (InstanceState::Creating, InstanceState::Booting);
        let patch = InstancePatch::provider(provider_id);
        if !self
            .store
            .transition_instance(instance_id, from, to, now, patch)
            .await?
        {
            return Ok(());
        }
        let why = format!(
            "found Vast.ai instance {provider_id} by its label after the create call went unanswered"
        );
        self.note(Some(inst.job_id), Some(instance_id), "adopted", &why)
            .await;
        if let Some(job) = self.store.job(inst.job_id).await?
            && job.state == JobState::Provisioning
        {
            let (from, to) = (JobState::Provisioning, JobState::WaitingForRunner);
            self.store
                .transition_job(job.job_id, from, to, now, JobPatch::default())
                .await?;
        }
        Ok(())
    }

    /// Rule 2: the create call made nothing. Only from the state it was
    /// planned from: a row that moved since (its create answered, another
    /// replica adopted or failed it) is no longer what was planned for, and
    /// neither is its job, which then stays as it is. A store error is the
    /// action's failure (counted, and planned again next pass).
    async fn mark_failed(
        &self,
        instance_id: &str,
        from: InstanceState,
        requeue_job: Option<PlannedJob>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        let Some(inst) = self.store.instance(instance_id).await? else {
            return Ok(());
        };
        let patch = InstancePatch {
            reason: Some("the create call produced no instance".into()),
            ..Default::default()
        };
        let moved = self
            .store
            .transition_instance(instance_id, from, InstanceState::Failed, now, patch)
            .await?;
        if !moved {
            tracing::debug!(
                instance = instance_id,
                "not marked failed: the machine moved since this pass read it"
            );
            return Ok(());
        }
        let why = "no Vast.ai instance carries its label: marked failed";
        self.note(Some(inst.job_id), Some(instance_id), "create_failed", why)
            .await;
        if let Err(e) = self.forget_unused_runner(&inst).await {
            tracing::warn!(instance = %inst.id, error = %e, "could not check its runner");
        }
        if let Some(job) = &requeue_job {
            self.requeue(job, "its machine was never created").await?;
        }
        Ok(())
    }

    /// Rules 3, 4, 5, 6, 8, 9, 12, 13: destroy a machine as planned. Whether
    /// a refused deregistration keeps it was decided by `plan` (I4, in
    /// `engine::busy`); this only carries it out.
    async fn destroy_planned(
        &self,
        instance_id: &str,
        p: PlannedDestroy<'_>,
    ) -> Result<(), EngineError> {
        let Some(inst) = self.store.instance(instance_id).await? else {
            return Ok(());
        };
        if inst.state != p.from {
            tracing::debug!(
                instance = instance_id,
                "not destroyed: the machine moved since this pass read it"
            );
            return Ok(());
        }
        if p.keep_logs {
            self.keep_boot_log(&inst).await;
        }
        if let Some(d) = p.deregister
            && let Some(job) = self.store.job(inst.job_id).await?
            && let Err(e) = self
                .github
                .delete_runner(&repo_of(&job), d.runner_id())
                .await
        {
            self.github_error(&e);
            if let Deregister::KeepIfRefused(_) = d {
                let why = format!("not destroyed: its runner could not be deregistered ({e})");
                self.note(Some(inst.job_id), Some(instance_id), "idle_kept", &why)
                    .await;
                return Ok(());
            }
        }
        let reason = format!("{} ({})", p.reason, p.rule.as_str());
        // The compare-and-set on what was planned: a runner that took a job
        // between the read above and now made the machine busy, and it
        // stays (I4).
        if p.from != InstanceState::Destroying {
            let patch = InstancePatch {
                destroy_called_at: Some(self.now()),
                reason: Some(reason.clone()),
                ..Default::default()
            };
            let (from, to) = (p.from, InstanceState::Destroying);
            if !self
                .store
                .transition_instance(instance_id, from, to, self.now(), patch)
                .await?
            {
                return Ok(());
            }
        }
        self.destroy_instance(&inst, &reason).await?;
        let Some(planned) = p.requeue_job else {
            return Ok(());
        };
        self.requeue(&planned, p.reason).await?;
        // Vast.ai's words for the failed boot go on the check run, until
        // the next machine's boot replaces them.
        if p.rule == Rule::BootFailed
            && let Some(job) = self.store.job(planned.job_id).await?
            && job.state == JobState::Queued
        {
            self.report(&job, &crate::engine::report::boot_failed(p.reason))
                .await;
        }
        Ok(())
    }

    /// The tail of a machine's boot log, kept in the event log before the
    /// machine (and Vast.ai's log of it) is gone.
    async fn keep_boot_log(&self, inst: &InstanceRow) {
        let Some(pid) = &inst.provider_id else {
            return;
        };
        match self.cloud.logs(pid).await {
            Ok(log) => {
                let start = log.len().saturating_sub(LOG_TAIL);
                let tail = log.get(start..).unwrap_or(&log);
                self.note(Some(inst.job_id), Some(&inst.id), "boot_log", tail)
                    .await;
            }
            Err(e) => self.cloud_error(&e),
        }
    }

    /// Rule 5: GitHub says the job is over.
    async fn complete_job(
        &self,
        job_id: i64,
        conclusion: Option<&str>,
        runner_name: Option<&str>,
    ) -> Result<(), EngineError> {
        let Some(job) = self.store.job(job_id).await? else {
            return Ok(());
        };
        let why = "GitHub says the job is over; its webhook never arrived";
        self.note(Some(job_id), None, "reconciled", why).await;
        self.handle(JobEvent::Completed {
            job: info_of(&job),
            conclusion: conclusion.map(Into::into),
            runner_name: runner_name.map(Into::into),
        })
        .await
    }

    /// Rule 5: GitHub says a runner took the job.
    async fn mark_running(&self, job_id: i64, runner_name: &str) -> Result<(), EngineError> {
        let Some(job) = self.store.job(job_id).await? else {
            return Ok(());
        };
        self.handle(JobEvent::InProgress {
            job: info_of(&job),
            runner_name: Some(runner_name.into()),
        })
        .await
    }

    /// Rule 7.
    async fn delete_stale_runner(&self, repo: &RepoRef, runner_id: i64, name: &str) {
        match self.github.delete_runner(repo, runner_id).await {
            Ok(()) => {
                let why = format!("deleted runner {name}: no machine of ours runs it");
                self.note(None, None, "runner_deleted", &why).await
            }
            Err(e) => self.github_error(&e),
        }
    }

    /// Rule 11: GitHub queued a job held for an approval.
    async fn release_job(&self, job_id: i64) -> Result<(), EngineError> {
        let Some(job) = self.store.job(job_id).await? else {
            return Ok(());
        };
        let why = "GitHub says the job was approved and queued; its webhook never arrived";
        self.note(Some(job_id), None, "reconciled", why).await;
        self.handle(JobEvent::Queued(info_of(&job))).await
    }

    /// Rule 4's first half: GitHub lists its runner online and idle.
    async fn mark_online(&self, instance_id: &str) -> Result<(), EngineError> {
        let now = self.now();
        let patch = InstancePatch {
            online_at: Some(now),
            ..Default::default()
        };
        let (from, to) = (InstanceState::Booting, InstanceState::Online);
        let moved = self
            .store
            .transition_instance(instance_id, from, to, now, patch)
            .await?;
        if moved && let Some(inst) = self.store.instance(instance_id).await? {
            let why = "its runner is online, waiting for a job";
            self.note(Some(inst.job_id), Some(instance_id), "online", why)
                .await;
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
            self.requeue(
                &PlannedJob::of(job),
                "rigger restarted while provisioning it",
            )
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

    /// Give a job back to the queue, only if it is still as it was planned
    /// from (state and attempt): another replica may have re-provisioned
    /// it since, and a second rental would be a machine too many.
    async fn requeue(&self, job: &PlannedJob, reason: &str) -> Result<(), EngineError> {
        let waiting = matches!(
            job.state,
            JobState::Provisioning | JobState::WaitingForRunner
        );
        if !waiting {
            return Ok(());
        }
        let moved = self
            .store
            .requeue_job_as_planned(job.job_id, job.state, job.attempts, self.now(), reason)
            .await?;
        if moved {
            self.note(Some(job.job_id), None, "requeued", reason).await;
            self.wake.notify_one();
        } else {
            tracing::debug!(
                job_id = job.job_id,
                "not re-queued: the job moved since this pass read it"
            );
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
