//! When the App loses access: an installation deleted (the App uninstalled)
//! or suspended, or repositories taken out of an installation's selection.
//! From then on GitHub refuses the installation's tokens and sends none of
//! its events, so rigger can neither see a job's end nor deregister a
//! runner there. Each of its live jobs is failed with the reason
//! ([`JobFailure::AccessLost`]), and the installation's cached token is
//! dropped. Each machine rented for them goes as [`busy::verdict`] says
//! ([`Why::AccessLost`]): one whose runner took no job is destroyed at
//! once through the usual teardown (cost recorded, row closed); one whose
//! runner runs a job is kept (I4): its job goes on on GitHub, and the
//! machine ends with it (the bootstrap destroys it) or at its max lifetime.
//!
//! Also here: [`InboxEvent`], what a stored delivery becomes for the inbox
//! worker (a job event, or one of these).

use std::collections::HashSet;

use super::busy::{self, Facts, Listed, Verdict, Why};
use super::events::{InstallationId, JobEvent, Repository};
use super::ports::{Cloud, Github};
use super::state::{JobFailure, JobState};
use super::{Engine, EngineError};
use crate::store::JobPatch;

/// Why the App lost an installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLoss {
    /// `installation.deleted`.
    Uninstalled,
    /// `installation.suspend`.
    Suspended,
}

impl AccessLoss {
    fn says(self) -> &'static str {
        match self {
            AccessLoss::Uninstalled => "the rigger GitHub App was uninstalled from this account",
            AccessLoss::Suspended => "the rigger GitHub App was suspended on this account",
        }
    }
}

/// What an `installation` or `installation_repositories` event changes.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessEvent {
    Lost {
        installation: InstallationId,
        why: AccessLoss,
    },
    ReposRemoved {
        installation: InstallationId,
        repos: Vec<Repository>,
    },
}

/// A stored delivery, read: what the inbox worker acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum InboxEvent {
    Job(JobEvent),
    Access(AccessEvent),
}

impl From<JobEvent> for InboxEvent {
    fn from(e: JobEvent) -> InboxEvent {
        InboxEvent::Job(e)
    }
}

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Apply a stored delivery's event.
    pub async fn handle_inbox(&self, event: InboxEvent) -> Result<(), EngineError> {
        match event {
            InboxEvent::Job(e) => self.handle(e).await,
            InboxEvent::Access(a) => self.access_changed(&a).await,
        }
    }

    /// The App lost access to an installation or to some of its
    /// repositories: end what rigger ran there. Idempotent (a redelivery
    /// finds nothing left to end).
    pub async fn access_changed(&self, event: &AccessEvent) -> Result<(), EngineError> {
        let (installation, repos, reason) = match event {
            AccessEvent::Lost { installation, why } => {
                // Its token is refused from now on; a new one is minted
                // should the installation come back (`unsuspend`).
                self.github.forget_installation(**installation);
                (*installation, None, why.says().to_string())
            }
            AccessEvent::ReposRemoved {
                installation,
                repos,
            } => (
                *installation,
                Some(repos.as_slice()),
                "this repository was removed from the rigger GitHub App's installation".to_string(),
            ),
        };
        let reason = format!(
            "{reason}: rigger can no longer manage its jobs, so this job was ended here; a machine that was running it is left to finish it, any other is destroyed"
        );
        let live: Vec<JobState> = JobState::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect();
        let jobs = self.store.jobs_in(&live).await?;
        // Read before any is failed: the runners running a job now.
        let running: HashSet<String> = jobs.iter().filter_map(|j| j.runner_name.clone()).collect();
        let ours = jobs.into_iter().filter(|j| {
            j.installation_id == *installation
                && repos.is_none_or(|r| r.iter().any(|x| x.as_str() == j.repo))
        });
        let mut ended = 0usize;
        for job in ours {
            let patch = JobPatch {
                reason: Some(Some(reason.clone())),
                failure: Some(JobFailure::AccessLost.as_str()),
                completed_at: Some(self.now()),
                ..Default::default()
            };
            // One statement from whatever live state it is in: the
            // provisioner may be moving it at this moment.
            if self
                .store
                .advance_job(
                    job.job_id,
                    |s| (!s.is_terminal()).then_some(JobState::Failed),
                    self.now(),
                    patch,
                )
                .await?
                .is_some()
            {
                ended += 1;
                self.metrics.inc(
                    "rigger_jobs_failed_total",
                    &[("kind", JobFailure::AccessLost.as_str())],
                );
                self.note(Some(job.job_id), None, "failed", &reason).await;
            }
            for inst in self.store.instances_for_job(job.job_id).await? {
                if inst.state.is_terminal() {
                    continue;
                }
                let facts = Facts {
                    state: inst.state,
                    serves_live_job: running.contains(&inst.runner_name),
                    ran_ended_job: false,
                    listed: Listed::Unknown,
                    registered: inst.runner_id.is_some(),
                    past_max_lifetime: self.now() >= inst.expires_at,
                    why: Why::AccessLost,
                };
                match busy::verdict(&facts) {
                    Verdict::Keep => {
                        let why = "the App lost access to its repository; kept while its runner runs a job, which ends it (or its max lifetime)";
                        self.note(Some(inst.job_id), Some(&inst.id), "access_lost_kept", why)
                            .await;
                    }
                    Verdict::Destroy | Verdict::DeregisterFirst => {
                        self.destroy_instance(&inst, "the App lost access to its repository")
                            .await?;
                    }
                }
            }
        }
        tracing::info!(
            installation = *installation,
            jobs = ended,
            "{}",
            match event {
                AccessEvent::Lost { why, .. } => why.says(),
                AccessEvent::ReposRemoved { .. } => "repositories removed from the installation",
            }
        );
        Ok(())
    }
}
