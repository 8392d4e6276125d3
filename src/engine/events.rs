//! workflow_job events, applied to the store. Each handler is idempotent:
//! GitHub redelivers, reorders and loses webhooks, and the reconciler may
//! have acted first.

use super::names;
use super::ports::{Cloud, Github};
use super::state::{InstanceState, JobState};
use super::{Engine, EngineError};
use crate::config::labels;
use crate::store::{Inserted, InstancePatch, JobPatch, NewJob};

/// What a workflow_job payload says about the job, in rigger's words.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInfo {
    pub job_id: i64,
    pub run_id: i64,
    pub run_attempt: i64,
    /// `owner/name`.
    pub repo: String,
    pub installation_id: i64,
    pub labels: Vec<String>,
    pub head_sha: String,
    /// The head repository is a fork (a pull request from outside).
    pub is_fork: bool,
    /// Who triggered the run.
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    Queued(JobInfo),
    InProgress {
        job: JobInfo,
        runner_name: Option<String>,
    },
    Completed {
        job: JobInfo,
        conclusion: Option<String>,
        runner_name: Option<String>,
    },
}

impl JobEvent {
    pub fn job(&self) -> &JobInfo {
        match self {
            JobEvent::Queued(j) => j,
            JobEvent::InProgress { job, .. } | JobEvent::Completed { job, .. } => job,
        }
    }
}

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Apply one event. Jobs without a `cirun-` label are not rigger's and
    /// are ignored.
    pub async fn handle(&self, event: JobEvent) -> Result<(), EngineError> {
        if !labels::is_rigger_job(&event.job().labels) {
            return Ok(());
        }
        // Whatever the event, make sure the job is known: a lost `queued`
        // must not strand a job whose `in_progress` or `completed` arrives.
        let inserted = self.record(event.job()).await?;
        match event {
            JobEvent::Queued(job) => {
                if inserted == Inserted::New {
                    self.note(
                        Some(job.job_id),
                        None,
                        "queued",
                        &format!("queued with labels {}", job.labels.join(", ")),
                    )
                    .await;
                    self.wake.notify_one();
                }
                Ok(())
            }
            JobEvent::InProgress { job, runner_name } => {
                self.started(&job, runner_name.as_deref()).await
            }
            JobEvent::Completed {
                job,
                conclusion,
                runner_name,
            } => {
                self.completed(&job, conclusion.as_deref(), runner_name.as_deref())
                    .await
            }
        }
    }

    async fn record(&self, j: &JobInfo) -> Result<Inserted, EngineError> {
        Ok(self
            .store
            .insert_job(&NewJob {
                job_id: j.job_id,
                run_id: j.run_id,
                run_attempt: j.run_attempt,
                repo: j.repo.clone(),
                installation_id: j.installation_id,
                labels: j.labels.clone(),
                head_sha: j.head_sha.clone(),
                is_fork: j.is_fork,
                actor: j.actor.clone(),
                queued_at: self.now(),
            })
            .await?)
    }

    /// `in_progress`: bind the job to the machine whose runner took it, by
    /// runner name — GitHub gives a job to any idle runner with its labels.
    async fn started(&self, job: &JobInfo, runner_name: Option<&str>) -> Result<(), EngineError> {
        let now = self.now();
        let ours = match runner_name {
            Some(name) if name.starts_with(&names::runner_prefix(&self.settings.controller_id)) => {
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
        let Some(row) = self.store.job(job.job_id).await? else {
            return Ok(());
        };
        if row.state.can_become(JobState::Running) {
            let patch = JobPatch {
                runner_name: runner_name.map(str::to_string),
                started_at: Some(now),
                gpu_name: ours.as_ref().and_then(|i| i.gpu_name.clone()),
                ..Default::default()
            };
            if self
                .store
                .transition_job(job.job_id, row.state, JobState::Running, now, patch)
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
                    Some(job.job_id),
                    ours.as_ref().map(|i| i.id.as_str()),
                    "running",
                    &format!("taken by {by}{whose}"),
                )
                .await;
            }
        }
        Ok(())
    }

    /// `completed`, whatever the conclusion: the job is over, so its machine
    /// is destroyed now and its cost recorded.
    async fn completed(
        &self,
        job: &JobInfo,
        conclusion: Option<&str>,
        runner_name: Option<&str>,
    ) -> Result<(), EngineError> {
        let now = self.now();
        if let Some(row) = self.store.job(job.job_id).await? {
            // A job no runner took ended before it ran: cancelled (or skipped).
            let to = if row.state == JobState::Running || runner_name.is_some() {
                JobState::Completed
            } else {
                JobState::Cancelled
            };
            if row.state.can_become(to) {
                let patch = JobPatch {
                    conclusion: conclusion.map(str::to_string),
                    completed_at: Some(now),
                    runner_name: runner_name.map(str::to_string),
                    ..Default::default()
                };
                if self
                    .store
                    .transition_job(job.job_id, row.state, to, now, patch)
                    .await?
                {
                    self.note(
                        Some(job.job_id),
                        None,
                        to.as_str(),
                        &format!("ended: {}", conclusion.unwrap_or("no conclusion")),
                    )
                    .await;
                }
            }
        }
        // The machine that ran it, and any machine rented for it that is not
        // busy with another job.
        let mut doomed = Vec::new();
        if let Some(name) = runner_name
            && let Some(inst) = self.store.instance_by_runner_name(name).await?
        {
            doomed.push(inst);
        }
        for inst in self.store.instances_for_job(job.job_id).await? {
            let busy_elsewhere =
                inst.state == InstanceState::Busy && Some(inst.runner_name.as_str()) != runner_name;
            if !busy_elsewhere && !doomed.iter().any(|d| d.id == inst.id) {
                doomed.push(inst);
            }
        }
        let doomed: Vec<_> = doomed
            .into_iter()
            .filter(|i| !i.state.is_terminal())
            .collect();
        // A destroy of one of the job's own machines closes its check run;
        // otherwise (never rented, already gone, or its machine ran another
        // job and lives on) it closes here, or when that machine dies.
        let closed_by_destroy = doomed.iter().any(|i| i.job_id == job.job_id);
        for inst in doomed {
            self.destroy_instance(&inst, "its job ended").await?;
        }
        if !closed_by_destroy {
            self.close_check_run(job.job_id).await?;
        }
        Ok(())
    }
}
