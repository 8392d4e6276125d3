//! workflow_job events, applied to the store. Each handler is idempotent:
//! GitHub redelivers, reorders and loses webhooks, and the reconciler may
//! have acted first.

use tracing::Instrument;

use super::busy;
use super::names;
use super::ports::{Cloud, Github, RepoRef};
use super::state::{InstanceState, JobState};
use super::{Engine, EngineError};
use crate::config::labels;
use crate::store::{Inserted, InstancePatch, InstanceRow, JobPatch, NewJob};

// ---- rigger's own words for what GitHub sends ----
//
// Newtypes, so a run id cannot be passed where a job id is meant, nor a
// runner name where a repository is. Each derefs to its plain value, so the
// code reading them stays as it was.

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl std::ops::Deref for $name {
            type Target = i64;
            fn deref(&self) -> &i64 {
                &self.0
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> $name {
                $name(v)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(v: String) -> $name {
                $name(v)
            }
        }

        impl From<&str> for $name {
            fn from(v: &str) -> $name {
                $name(v.to_string())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A GitHub Actions job id.
    JobId
);
id_type!(
    /// A workflow run id (one run holds many jobs).
    RunId
);
id_type!(
    /// Which attempt of the run (1, then 2… for re-runs).
    RunAttempt
);
id_type!(
    /// A GitHub App installation id.
    InstallationId
);
text_type!(
    /// A repository, `owner/name`.
    Repository
);
text_type!(
    /// The commit a job runs on.
    HeadSha
);
text_type!(
    /// The name of the runner that took (or ran) a job.
    RunnerName
);
text_type!(
    /// A deployment environment a job names (`environment:` in a workflow).
    Environment
);

impl Repository {
    /// The account that owns it.
    pub fn owner(&self) -> &str {
        self.0.split('/').next().unwrap_or_default()
    }
}

/// A job's `runs-on` labels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(pub Vec<String>);

impl Labels {
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl std::ops::Deref for Labels {
    type Target = [String];
    fn deref(&self) -> &[String] {
        &self.0
    }
}

impl From<Vec<String>> for Labels {
    fn from(v: Vec<String>) -> Labels {
        Labels(v)
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for Labels {
    fn eq(&self, other: &Vec<S>) -> bool {
        self.0.len() == other.len() && self.0.iter().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

/// Whether a job's head commit comes from a fork (a pull request from
/// another repository). `workflow_job` does not say: the engine asks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct FromFork(pub bool);

impl std::ops::Deref for FromFork {
    type Target = bool;
    fn deref(&self) -> &bool {
        &self.0
    }
}

impl From<bool> for FromFork {
    fn from(v: bool) -> FromFork {
        FromFork(v)
    }
}

/// How a job ended. GitHub's REST API knows more conclusions than its
/// webhooks, and adds new ones: those are kept as they were sent.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Conclusion {
    Success,
    Failure,
    Cancelled,
    Skipped,
    Neutral,
    TimedOut,
    ActionRequired,
    Other(String),
}

impl Conclusion {
    pub fn as_str(&self) -> &str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
            Conclusion::Neutral => "neutral",
            Conclusion::TimedOut => "timed_out",
            Conclusion::ActionRequired => "action_required",
            Conclusion::Other(s) => s,
        }
    }
}

impl From<&str> for Conclusion {
    fn from(v: &str) -> Conclusion {
        match v {
            "success" => Conclusion::Success,
            "failure" => Conclusion::Failure,
            "cancelled" => Conclusion::Cancelled,
            "skipped" => Conclusion::Skipped,
            "neutral" => Conclusion::Neutral,
            "timed_out" => Conclusion::TimedOut,
            "action_required" => Conclusion::ActionRequired,
            other => Conclusion::Other(other.to_string()),
        }
    }
}

impl From<String> for Conclusion {
    fn from(v: String) -> Conclusion {
        Conclusion::from(v.as_str())
    }
}

impl std::ops::Deref for Conclusion {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Conclusion {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Conclusion {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for Conclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a workflow_job payload says about the job, in rigger's words.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    pub job_id: JobId,
    pub run_id: RunId,
    pub run_attempt: RunAttempt,
    pub repo: Repository,
    pub installation_id: InstallationId,
    pub labels: Labels,
    pub head_sha: HeadSha,
    /// The head repository is a fork (a pull request from outside).
    pub is_fork: FromFork,
    /// Who triggered the run.
    pub actor: String,
    /// `workflow_job.name`: its check run is named after it.
    pub name: Option<String>,
    /// `workflow_job.html_url`: where its check run's details lead.
    pub html_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// GitHub wants a runner for it now.
    Queued(JobInfo),
    /// GitHub holds it until its deployment to an environment is approved
    /// (`queued` with status `waiting`, then `waiting`): nothing to rent yet.
    /// The environment is named by `queued`'s `deployment`, not always by
    /// `waiting`'s.
    Waiting {
        job: JobInfo,
        environment: Option<Environment>,
    },
    InProgress {
        job: JobInfo,
        runner_name: Option<RunnerName>,
    },
    Completed {
        job: JobInfo,
        conclusion: Option<Conclusion>,
        runner_name: Option<RunnerName>,
    },
}

impl JobEvent {
    pub fn job(&self) -> &JobInfo {
        match self {
            JobEvent::Queued(j) => j,
            JobEvent::Waiting { job, .. }
            | JobEvent::InProgress { job, .. }
            | JobEvent::Completed { job, .. } => job,
        }
    }
}

/// The span a job's event is handled in: its id and repository (ids only),
/// so that every line about it, down to the clients', can be found by them.
fn job_span(job: &JobInfo) -> tracing::Span {
    tracing::info_span!(
        "job",
        job_id = *job.job_id,
        repo = %crate::text::for_log(&job.repo),
    )
}

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Apply one event, in its job's span (a `queued` one opens its own in
    /// [`Engine::queued_together`], which also serves runs of them).
    pub async fn handle(&self, event: JobEvent) -> Result<(), EngineError> {
        let span = match &event {
            JobEvent::Queued(_) => tracing::Span::none(),
            other => job_span(other.job()),
        };
        self.handle_in_span(event).instrument(span).await
    }

    /// Apply one event. Jobs without a `cirun-` label are not rigger's and
    /// are ignored.
    async fn handle_in_span(&self, event: JobEvent) -> Result<(), EngineError> {
        if let JobEvent::Queued(job) = &event {
            return self.queued(job, None).await;
        }
        if !labels::is_rigger_job(event.job().labels.as_slice()) {
            return Ok(());
        }
        if let JobEvent::Waiting { job, environment } = &event {
            return self.waiting(job, environment.as_ref()).await;
        }
        // Whatever the event, make sure the job is known: a lost `queued`
        // must not strand a job whose `in_progress` or `completed` arrives.
        self.record(event.job()).await?;
        match event {
            JobEvent::Queued(_) | JobEvent::Waiting { .. } => Ok(()),
            JobEvent::InProgress { job, runner_name } => {
                self.started(&job, runner_name.as_deref()).await
            }
            JobEvent::Completed {
                job,
                conclusion,
                runner_name,
            } => {
                self.completed(&job, conclusion.as_ref(), runner_name.as_deref())
                    .await
            }
        }
    }

    /// `queued`: the job and its event recorded, and the inbox delivery it
    /// came in (if any) marked done, in one commit.
    async fn queued(&self, job: &JobInfo, delivery_id: Option<&str>) -> Result<(), EngineError> {
        self.queued_together(&[(delivery_id, job)]).await
    }

    /// Several `queued` events (with the inbox deliveries they came in, if
    /// any) in one commit: a burst of jobs is paced by commits, and a crash
    /// keeps all of them or none.
    pub(super) async fn queued_together(
        &self,
        jobs: &[(Option<&str>, &JobInfo)],
    ) -> Result<(), EngineError> {
        let now = self.now();
        let mut tx = self.store.begin().await?;
        let mut new = false;
        for &(delivery_id, job) in jobs {
            // Each in its delivery's span and its job's, as if alone (a
            // span's parent is the span it was made in).
            let delivery = match delivery_id {
                Some(guid) => super::run::delivery_span(guid, "workflow_job", None),
                None => tracing::Span::none(),
            };
            let span = delivery.in_scope(|| job_span(job));
            new |= self
                .queued_one(&mut tx, now, delivery_id, job)
                .instrument(span)
                .await?;
        }
        tx.commit().await?;
        if new {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// One of [`Engine::queued_together`]'s jobs, in its commit: whether it
    /// is new to the queue.
    async fn queued_one(
        &self,
        tx: &mut crate::store::StoreTx,
        now: i64,
        delivery_id: Option<&str>,
        job: &JobInfo,
    ) -> Result<bool, EngineError> {
        let mut new = false;
        let ours = labels::is_rigger_job(job.labels.as_slice());
        let inserted = match ours {
            true => Some(tx.insert_job(&self.new_job(job)).await?),
            false => None,
        };
        if inserted == Some(Inserted::New) {
            new = true;
            tx.name_check_run(*job.job_id, job.name.as_deref(), job.html_url.as_deref())
                .await?;
            let labels = job.labels.join(", ");
            let message = format!("queued with labels {}", crate::text::for_log(&labels));
            self.note_in(tx, Some(*job.job_id), None, "queued", &message)
                .await?;
        }
        // Known already: held for an approval that has now been given.
        // GitHub's queue limit starts again from here.
        if inserted == Some(Inserted::Duplicate) {
            let patch = JobPatch {
                reason: Some(Some("approved: looking for a GPU".to_string())),
                next_attempt_at: Some(None),
                queued_at: Some(now),
                ..Default::default()
            };
            let (from, to) = (JobState::WaitingForApproval, JobState::Queued);
            if tx.transition_job(*job.job_id, from, to, now, patch).await? {
                new = true;
                let message = "approved: GitHub queued it for a runner";
                self.note_in(tx, Some(*job.job_id), None, "queued", message)
                    .await?;
            }
        }
        if let Some(id) = delivery_id {
            tx.finish_delivery(id, &self.worker_id, now, None).await?;
        }
        Ok(new)
    }

    /// A job GitHub holds for a deployment's approval: recorded as waiting
    /// (never provisioned, never put back in the queue by the reconciler)
    /// and shown on its check run. A job rigger knows already stays as it
    /// is: a `waiting` that arrives after the approval's `queued` is stale.
    async fn waiting(
        &self,
        job: &JobInfo,
        environment: Option<&Environment>,
    ) -> Result<(), EngineError> {
        let reason = match environment {
            Some(env) => format!(
                "waiting for approval of environment `{}`",
                crate::text::for_log(env)
            ),
            None => "waiting for a deployment's approval".to_string(),
        };
        let mut tx = self.store.begin().await?;
        let inserted = tx.insert_waiting_job(&self.new_job(job), &reason).await?;
        if inserted == Inserted::New {
            self.note_in(
                &mut tx,
                Some(*job.job_id),
                None,
                "waiting_for_approval",
                &reason,
            )
            .await?;
        }
        tx.commit().await?;
        // GitHub promises no order: the `waiting` that names no environment
        // may come first, and the `queued` that names it second.
        let better = inserted == Inserted::Duplicate
            && environment.is_some()
            && self
                .store
                .set_reason_in(
                    *job.job_id,
                    JobState::WaitingForApproval,
                    &reason,
                    self.now(),
                )
                .await?;
        if (inserted == Inserted::New || better)
            && let Some(row) = self.store.job(*job.job_id).await?
            && row.state == JobState::WaitingForApproval
        {
            let run = super::report::waiting_for_approval(environment.map(|e| e.as_str()));
            self.report(&row, &run).await;
        }
        Ok(())
    }

    fn new_job(&self, j: &JobInfo) -> NewJob {
        NewJob {
            job_id: *j.job_id,
            run_id: *j.run_id,
            run_attempt: *j.run_attempt,
            repo: j.repo.to_string(),
            installation_id: *j.installation_id,
            labels: j.labels.to_vec(),
            head_sha: j.head_sha.to_string(),
            is_fork: *j.is_fork,
            actor: j.actor.clone(),
            queued_at: self.now(),
        }
    }

    async fn record(&self, j: &JobInfo) -> Result<Inserted, EngineError> {
        let inserted = self.store.insert_job(&self.new_job(j)).await?;
        if inserted == Inserted::New {
            self.store
                .name_check_run(*j.job_id, j.name.as_deref(), j.html_url.as_deref())
                .await?;
        }
        Ok(inserted)
    }

    /// `in_progress`: bind the job to the machine whose runner took it, by
    /// runner name — GitHub gives a job to any idle runner with its labels.
    async fn started(&self, job: &JobInfo, runner_name: Option<&str>) -> Result<(), EngineError> {
        let now = self.now();
        let ours = match runner_name {
            Some(name) if names::is_our_runner(&self.settings.controller_id, name) => {
                self.store.instance_by_runner_name(name).await?
            }
            _ => None,
        };
        if let Some(inst) = &ours {
            for from in [InstanceState::Booting, InstanceState::Online] {
                let patch = InstancePatch {
                    online_at: (from == InstanceState::Booting).then_some(now),
                    ..Default::default()
                };
                if self
                    .store
                    .transition_instance(&inst.id, from, InstanceState::Busy, now, patch)
                    .await?
                {
                    break;
                }
            }
        }
        if let Some(inst) = &ours
            && inst.job_id != *job.job_id
        {
            self.hand_over_spare_machine(job, inst.job_id).await?;
        }
        let patch = JobPatch {
            runner_name: runner_name.map(str::to_string),
            started_at: Some(now),
            gpu_name: ours.as_ref().and_then(|i| i.gpu_name.clone()),
            ..Default::default()
        };
        // One statement from whatever state the job is in: the provisioner
        // may be moving it at this very moment.
        if let Some(row) = self
            .store
            .advance_job(*job.job_id, JobState::taken, now, patch)
            .await?
        {
            if ours.is_some() {
                self.metrics.observe(
                    "rigger_time_to_runner_seconds",
                    &[],
                    (now - row.queued_at).max(0) as f64 / 1000.0,
                );
            }
            let by = runner_name.unwrap_or("an unnamed runner");
            let whose = if ours.is_some() {
                ""
            } else {
                " (not one of rigger's)"
            };
            self.note(
                Some(*job.job_id),
                ours.as_ref().map(|i| i.id.as_str()),
                "running",
                &format!("taken by {by}{whose}"),
            )
            .await;
        }
        Ok(())
    }

    /// `taker` took the machine rented for job `left`, which still waits.
    /// The machine rented for `taker`, if it is still on its way or idle and
    /// its runner can run `left`, is given to `left`: otherwise `left` would
    /// count on a machine now busy with another job, and that machine dies
    /// when that job ends. A compare-and-set, so a machine that just took a
    /// job or started dying stays as it is. When there is no such machine
    /// (never rented: `taker`'s `queued` was lost; dead; taken by a third
    /// sibling), the reconciler's rule 14 rents one for `left` once GitHub
    /// says it still waits.
    async fn hand_over_spare_machine(&self, taker: &JobInfo, left: i64) -> Result<(), EngineError> {
        let Some(left_row) = self.store.job(left).await? else {
            return Ok(());
        };
        if left_row.state != JobState::WaitingForRunner {
            return Ok(());
        }
        let left_machines = self.store.instances_for_job(left).await?;
        if left_machines.iter().any(|i| i.state.may_still_take_a_job()) {
            return Ok(());
        }
        // The spare's runner was registered with `taker`'s labels.
        if !labels::runner_for_covers(taker.labels.as_slice(), &left_row.labels) {
            return Ok(());
        }
        let now = self.now();
        for spare in self.store.instances_for_job(*taker.job_id).await? {
            if !spare.state.may_still_take_a_job() {
                continue;
            }
            if self
                .store
                .rebind_instance(&spare.id, *taker.job_id, left, now)
                .await?
            {
                let why = format!(
                    "given job {left}'s place: job {} took the machine rented for {left}",
                    taker.job_id
                );
                self.note(Some(left), Some(&spare.id), "machine_handed_over", &why)
                    .await;
                return Ok(());
            }
        }
        Ok(())
    }

    /// `completed`, whatever the conclusion: the job is over, so its machine
    /// is destroyed now and its cost recorded.
    async fn completed(
        &self,
        job: &JobInfo,
        conclusion: Option<&Conclusion>,
        runner_name: Option<&str>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        // One statement from whatever state the job is in: the provisioner
        // may be moving it (provisioning → queued on a retry) at this very
        // moment, and a read-then-write would lose the job's end.
        let named = runner_name.is_some();
        let patch = JobPatch {
            conclusion: conclusion.map(|c| c.as_str().to_string()),
            completed_at: Some(now),
            runner_name: runner_name.map(str::to_string),
            ..Default::default()
        };
        if let Some(row) = self
            .store
            .advance_job(*job.job_id, |s| s.ended(named), now, patch)
            .await?
        {
            self.note(
                Some(*job.job_id),
                None,
                row.state.as_str(),
                &format!(
                    "ended: {}",
                    conclusion.map_or("no conclusion", Conclusion::as_str)
                ),
            )
            .await;
        }
        // The machine that ran it, and every machine rented for it: each
        // goes unless I4 keeps it (`engine::busy`).
        let mut doomed = Vec::new();
        if let Some(name) = runner_name
            && let Some(inst) = self.store.instance_by_runner_name(name).await?
        {
            doomed.push(inst);
        }
        for inst in self.store.instances_for_job(*job.job_id).await? {
            if !doomed.iter().any(|d| d.id == inst.id) {
                doomed.push(inst);
            }
        }
        doomed.retain(|i| !i.state.is_terminal());
        // A destroy of one of the job's own machines closes its check run;
        // otherwise (never rented, already gone, or its machine runs another
        // job and lives on) it closes here, or when that machine dies.
        let mut closed_by_destroy = false;
        for inst in doomed {
            if self.may_destroy(&inst, runner_name, job).await? {
                closed_by_destroy |= inst.job_id == *job.job_id;
                self.destroy_instance(&inst, "its job ended").await?;
            }
        }
        if !closed_by_destroy {
            self.close_check_run(*job.job_id).await?;
        }
        Ok(())
    }

    /// Whether a machine wanted gone because a job ended may be destroyed
    /// now, as [`busy::verdict`] says: not while a live job is bound to its
    /// runner; and a runner rigger never saw take a job, which may have been
    /// given one a moment ago (its `in_progress` not here yet), is
    /// deregistered first, so that GitHub hands it no job while it dies. If
    /// GitHub refuses (it is busy) or cannot be reached, the machine is kept
    /// (I4): the reconciler's rule 5 looks again.
    async fn may_destroy(
        &self,
        inst: &InstanceRow,
        ran_it: Option<&str>,
        job: &JobInfo,
    ) -> Result<bool, EngineError> {
        let facts = busy::Facts {
            state: inst.state,
            serves_live_job: self.store.runner_serves_live_job(&inst.runner_name).await?,
            ran_ended_job: ran_it == Some(inst.runner_name.as_str()),
            listed: busy::Listed::Unknown,
            registered: inst.runner_id.is_some(),
            past_max_lifetime: self.now() >= inst.expires_at,
            why: busy::Why::Unwanted,
        };
        let runner_id = match (busy::verdict(&facts), inst.runner_id) {
            (busy::Verdict::Keep, _) => return Ok(false),
            (busy::Verdict::DeregisterFirst, Some(id)) => id,
            _ => return Ok(true),
        };
        let repo = RepoRef {
            installation_id: *job.installation_id,
            repo: job.repo.to_string(),
        };
        match self.github.delete_runner(&repo, runner_id).await {
            Ok(()) => Ok(true),
            Err(e) => {
                self.github_error(&e);
                let why = format!("kept for now: its runner could not be deregistered ({e})");
                self.note(Some(inst.job_id), Some(&inst.id), "idle_kept", &why)
                    .await;
                Ok(false)
            }
        }
    }
}
