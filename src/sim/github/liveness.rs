//! Whether GitHub still hears from a runner. A runner that has taken a job
//! renews the job's lock every 60 s (actions/runner,
//! `src/Runner.Listener/JobDispatcher.cs`, `RenewJobRequestAsync`), and an
//! idle one long-polls for messages; the service holds the lock for a while
//! past the last renewal. A runner whose machine dies stops both: GitHub
//! shows it offline, and when the lock runs out fails its job with "The
//! self-hosted runner: <name> lost communication with the server" (the
//! annotation GitHub shows on such jobs). GitHub documents neither figure;
//! the defaults here are what such failures show in practice (the job fails
//! some ten minutes after its runner went silent). The simulator applies the
//! rule on its own ticker when served ([`super::SimGithub::serve`]), or when
//! a test calls [`super::SimGithub::lose_silent_runners`].

use serde::Serialize;

use super::world::{JobStatus, RunnerStatus, World};

/// How long a silent runner is still believed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Liveness {
    /// Shown offline after this long without a word from it.
    pub offline_after_ms: i64,
    /// Its job fails after this long without a word from it.
    pub lost_after_ms: i64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            offline_after_ms: 5 * 60_000,
            lost_after_ms: 10 * 60_000,
        }
    }
}

/// The annotation GitHub puts on a job whose runner went silent.
pub fn lost_runner_message(runner: &str) -> String {
    format!(
        "The self-hosted runner: {runner} lost communication with the server. Verify the \
         machine is running and has a healthy network connection. Anything in your workflow \
         that terminates the runner process, starves it for CPU/Memory, or blocks its network \
         access can cause this error."
    )
}

impl World {
    /// The runner spoke (connected, polled, renewed its job, reported its end).
    pub fn heard_from(&mut self, runner_id: i64, now_ms: i64) {
        if let Some(r) = self.runners.get_mut(&runner_id) {
            self.runner_heard_ms.insert(runner_id, now_ms);
            if r.redeemed {
                r.status = RunnerStatus::Online;
            }
        }
    }

    /// Silent runners go offline, and the jobs of runners silent past
    /// `lost_after_ms` fail. Returns the jobs failed.
    pub fn lose_silent_runners(&mut self, now_ms: i64) -> Vec<i64> {
        let l = self.liveness;
        let heard = self.runner_heard_ms.clone();
        let silent_for = |id: i64| heard.get(&id).map(|t| now_ms - t);
        for r in self.runners.values_mut() {
            if r.status == RunnerStatus::Online
                && silent_for(r.id).is_some_and(|s| s > l.offline_after_ms)
            {
                r.status = RunnerStatus::Offline;
            }
        }
        let lost: Vec<(i64, String)> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::InProgress)
            .filter_map(|j| {
                let runner = j.runner_id?;
                let gone = silent_for(runner).is_none_or(|s| s > l.lost_after_ms);
                gone.then(|| (j.id, j.runner_name.clone().unwrap_or_default()))
            })
            .collect();
        for (job, runner) in &lost {
            self.complete(*job, "failure", now_ms);
            if let Some(j) = self.jobs.get_mut(job) {
                j.failure_message = Some(lost_runner_message(runner));
            }
        }
        self.runner_heard_ms
            .retain(|id, _| self.runners.contains_key(id));
        lost.into_iter().map(|(j, _)| j).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::world::Runner;
    use super::super::{NewJob, SimGithub, SimGithubConfig};
    use super::*;
    use crate::engine::ports::{Clock, ManualClock};
    use std::sync::Arc;

    /// A runner registered, connected and running a job.
    fn running() -> (SimGithub, ManualClock, i64, i64) {
        let clock = ManualClock::new(1_763_800_000_000);
        let gh = SimGithub::new(SimGithubConfig::default(), Arc::new(clock.clone())).unwrap();
        gh.add_repo("acme/ml", &[]);
        let job = gh.queue_job(NewJob::on("acme/ml", "gpu"));
        let runner = 77;
        gh.world().runners.insert(
            runner,
            Runner {
                id: runner,
                name: "r-1".into(),
                repo: "acme/ml".into(),
                labels: vec!["gpu".into()],
                status: RunnerStatus::Offline,
                busy: false,
                jit_config: "jit".into(),
                redeemed: false,
                job: None,
                group_id: 1,
                registered_ms: clock.now_ms(),
            },
        );
        assert_eq!(gh.connect_runner("jit"), Some(runner));
        assert_eq!(gh.take_job(runner), Some(job));
        (gh, clock, runner, job)
    }

    #[test]
    fn a_runner_that_keeps_renewing_keeps_its_job() {
        let (gh, clock, runner, job) = running();
        for _ in 0..30 {
            clock.advance_ms(60_000);
            assert!(gh.runner_heartbeat(runner));
            gh.lose_silent_runners();
        }
        let j = gh.job(job).unwrap();
        assert_eq!(j.status, JobStatus::InProgress);
        assert_eq!(gh.runners()[0].status, RunnerStatus::Online);
    }

    #[test]
    fn a_silent_runner_goes_offline_and_its_job_fails_when_its_lock_runs_out() {
        let (gh, clock, _runner, job) = running();
        clock.advance_ms(5 * 60_000 + 1);
        gh.lose_silent_runners();
        assert_eq!(gh.runners()[0].status, RunnerStatus::Offline);
        assert_eq!(gh.job(job).unwrap().status, JobStatus::InProgress);
        clock.advance_ms(5 * 60_000);
        gh.lose_silent_runners();
        let j = gh.job(job).unwrap();
        assert_eq!(j.status, JobStatus::Completed);
        assert_eq!(j.conclusion.as_deref(), Some("failure"));
        assert!(
            j.failure_message
                .as_deref()
                .unwrap()
                .contains("r-1 lost communication with the server"),
            "{j:?}"
        );
        assert!(
            gh.runners().is_empty(),
            "its JIT runner is gone with its job"
        );
    }

    #[test]
    fn a_runner_whose_job_was_cancelled_hears_so_when_it_renews() {
        let (gh, _clock, runner, job) = running();
        assert!(gh.cancel_job(job));
        assert!(!gh.runner_heartbeat(runner));
    }
}
