//! The reconciler's hands: read the three views into a snapshot, let `plan`
//! decide, and carry each action out. Every action is safe to repeat: the
//! store's compare-and-set makes a second attempt a no-op.

use super::plan::{Action, Limits, Rule, Snapshot, plan, quiet_jobs};
use crate::engine::events::{JobEvent, JobInfo};
use crate::engine::names;
use crate::engine::ports::{Cloud, Github, RepoRef};
use crate::engine::state::{InstanceState, JobState};
use crate::engine::{Engine, EngineError};
use crate::store::{InstancePatch, JobPatch, JobRow};

/// How much of a failed boot's log to keep in the event log.
const LOG_TAIL: usize = 4000;

impl<C: Cloud, G: Github> Engine<C, G> {
    pub fn limits(&self) -> Limits {
        let t = &self.settings.timeouts;
        Limits {
            create_timeout_ms: t.create.as_millis() as i64,
            bootstrap_timeout_ms: t.bootstrap.as_millis() as i64,
            idle_timeout_ms: t.idle.as_millis() as i64,
            job_quiet_ms: t.job_quiet.as_millis() as i64,
            ..Limits::default()
        }
    }

    /// Read the store, Vast.ai (instances with our label) and GitHub
    /// (runners with our prefix, and the jobs that have been quiet).
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
        let (runners, runners_known) = match self
            .github
            .list_runners(&names::runner_prefix(controller))
            .await
        {
            Ok(r) => (r, true),
            Err(e) => {
                self.github_error(&e);
                (Vec::new(), false)
            }
        };
        let mut github_jobs = Vec::new();
        for id in quiet_jobs(&jobs, self.now(), &self.limits()) {
            let Some(job) = jobs.iter().find(|j| j.job_id == id) else {
                continue;
            };
            match self.github.get_job(&repo_of(job), id).await {
                Ok(view) => github_jobs.push(view),
                Err(e) => self.github_error(&e),
            }
        }
        Ok(Snapshot {
            jobs,
            instances,
            cloud,
            cloud_known,
            runners,
            runners_known,
            github_jobs,
        })
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
            self.apply(*rule, action).await?;
        }
        Ok(actions)
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
                        InstancePatch {
                            provider_id: Some(provider_id.clone()),
                            ..Default::default()
                        },
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
                    // keep it (I4) and look again on the next pass.
                    if rule == Rule::IdleTimeout {
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
        }
        Ok(())
    }

    /// Give a job back to the queue if it is still waiting for a machine.
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
    }
}
