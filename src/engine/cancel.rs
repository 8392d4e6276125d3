//! When rigger gives up on a job (a config error, no definition for its
//! labels, `.access.yml` denies it, no GPU within the queue limit…), GitHub
//! keeps the job queued for 24 h waiting for a runner that will never come.
//! With `github.cancel_runs_on_give_up`, rigger cancels the job's workflow
//! run instead (`POST …/actions/runs/{id}/cancel`, Actions: write). A
//! failed cancel changes nothing else: the job is failed and its check run
//! says why either way. A missing permission (403) is logged once, saying
//! what to do; other failures are counted and logged each time.

use std::sync::atomic::Ordering;

use super::Engine;
use super::ports::{Cloud, Github, RepoRef, RunCancel};
use super::state::JobFailure;
use crate::store::JobRow;

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Cancel the workflow run of a job rigger gave up on, if the setting
    /// asks for it. Never fails: what went wrong is logged and counted.
    pub(crate) async fn cancel_given_up_run(&self, job: &JobRow, kind: JobFailure) {
        if !self.settings.github.cancel_runs_on_give_up {
            return;
        }
        let repo = RepoRef {
            installation_id: job.installation_id,
            repo: job.repo.clone(),
        };
        let result = match self.github.cancel_run(&repo, job.run_id).await {
            Ok(RunCancel::Cancelled) => {
                self.note(
                    Some(job.job_id),
                    None,
                    "run_cancelled",
                    &format!(
                        "its workflow run {} was cancelled, as rigger gave up on the job ({})",
                        job.run_id,
                        kind.as_str()
                    ),
                )
                .await;
                "cancelled"
            }
            Ok(RunCancel::AlreadyOver) => "already_over",
            Ok(RunCancel::NotPermitted) => {
                if !self.cancel_denied_logged.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        repo = %crate::text::for_log(&job.repo),
                        "GitHub refused to cancel a workflow run (403): the rigger GitHub App needs \
                         the repository permission Actions: write. Grant it in the App's settings \
                         (and accept it on each installation), or set \
                         github.cancel_runs_on_give_up = false. Jobs rigger gives up on stay \
                         queued on GitHub until then; nothing else is affected."
                    );
                }
                "not_permitted"
            }
            Err(e) => {
                self.github_error(&e);
                tracing::warn!(
                    job_id = job.job_id,
                    error = %e,
                    "could not cancel the workflow run of a job rigger gave up on"
                );
                "error"
            }
        };
        self.metrics
            .inc("rigger_runs_cancelled_total", &[("result", result)]);
    }
}
