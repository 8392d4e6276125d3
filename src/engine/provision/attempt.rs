//! One attempt at renting a machine for one job: whether it already has
//! one, whether its run comes from a fork, its config, the definition its
//! labels select, the access policy, whether the org's runner group serves
//! the repository, the offers (one search per definition for a burst), the
//! runner release file and its checksum, then the ranked offers in turn
//! within the limits.

use std::sync::Arc;

use super::admission::Admission;
use super::claim::Claim;
use super::rent::{Rent, RunnerLookup, runner_arch};
use super::{Outcome, fail, rate_limit_ms, retry};
use crate::config::access::AccessConfig;
use crate::config::labels;
use crate::config::model::{Cloud as CloudKind, Origin, RunnerDef};
use crate::engine::policy::{self, Access, JobFacts};
use crate::engine::ports::{Cloud, Github, GithubError, GroupAccess, OfferSearch, RepoRef};
use crate::engine::state::{InstanceState, JobFailure, JobState};
use crate::engine::{Engine, EngineError, estimate, offer_pool, report};
use crate::store::{JobPatch, JobRow};

/// How long to wait before looking again for a `.cirun.yml` GitHub said
/// is not there (once: replication after a push takes moments, not minutes).
const LAG_RETRY_MS: i64 = 30_000;

/// How many of the ranked offers to try when the first ones are gone.
const OFFER_TRIES: usize = 5;

impl<C: Cloud, G: Github> Engine<C, G> {
    pub(super) async fn try_provision(
        &self,
        job: &JobRow,
        admission: &Admission,
    ) -> Result<Outcome, EngineError> {
        if let Some(outcome) = self.already_served(job).await? {
            return Ok(outcome);
        }
        let repo = RepoRef {
            installation_id: job.installation_id,
            repo: job.repo.clone(),
        };
        // `workflow_job` does not say whether the run comes from a fork, and
        // a fork must never choose what rigger rents nor pass as an insider:
        // ask for the run.
        let mut job = job.clone();
        let pull_request = match self.github.run_origin(&repo, job.run_id).await {
            Ok(origin) => {
                job.is_fork = job.is_fork || origin.from_fork;
                origin.pull_request || job.is_fork
            }
            Err(e) => {
                let why = format!(
                    "cannot tell whether run {} comes from a fork: {e}",
                    job.run_id
                );
                return Ok(self.github_retry(&e, why));
            }
        };
        let job = &job;
        let loaded = match self.load_config(&repo, job).await {
            Ok(l) => l,
            Err(e) => {
                let why = format!("cannot read .cirun.yml from GitHub: {e}");
                return Ok(self.github_retry(&e, why));
            }
        };
        let selected = loaded
            .config
            .as_ref()
            .and_then(|c| labels::select(&c.runners, &job.labels));
        // GitHub may answer 404 for a file pushed a moment ago (not on every
        // replica yet): before failing for want of it, look once more, later.
        if selected.is_none() && loaded.repo_missing && job.attempts <= 1 {
            self.forget_config(&repo, job);
            let why = format!(
                "GitHub has no .cirun.yml for {} at {}, perhaps not yet (a push takes a moment to reach every GitHub server): looking again in {} s",
                job.repo,
                job.head_sha,
                LAG_RETRY_MS / 1000
            );
            return Ok(retry(why, Some(LAG_RETRY_MS)));
        }
        // What could not be read, said rather than taken as no config.
        let unread = if loaded.notes.is_empty() {
            String::new()
        } else {
            format!("\n\n{}", loaded.notes.join("\n\n"))
        };
        let Some(config) = &loaded.config else {
            let why = if loaded.errors.is_empty() {
                format!(
                    "the repository has no .cirun.yml and the org no .cirun/.cirun.global.yml{unread}"
                )
            } else {
                format!(
                    "the config cannot be read:\n{}{unread}",
                    loaded.errors.join("\n")
                )
            };
            return Ok(fail(
                JobFailure::ConfigError,
                &why,
                "rigger: .cirun.yml error",
            ));
        };
        let Some(def) = selected else {
            let known: Vec<String> = config
                .runners
                .iter()
                .map(|r| format!("`{}` [{}]", r.name, r.labels.join(", ")))
                .collect();
            let errors = if loaded.errors.is_empty() {
                String::new()
            } else {
                format!("\n\nErrors in the config:\n{}", loaded.errors.join("\n"))
            };
            let why = format!(
                "no runner definition matches runs-on [{}]; definitions: {}{errors}{unread}",
                job.labels.join(", "),
                known.join("; ")
            );
            return Ok(fail(
                JobFailure::ConfigError,
                &why,
                "rigger: no runner matches runs-on",
            ));
        };
        if def.cloud != CloudKind::VastAi {
            return Ok(Outcome::NotOurs(format!(
                "runner `{}` is for {}, which rigger does not provision",
                def.name, def.cloud
            )));
        }
        let Some(vast) = &def.vast else {
            let why = format!(
                "runner `{}` has errors in .cirun.yml:\n{}",
                def.name,
                loaded.errors.join("\n")
            );
            return Ok(fail(
                JobFailure::ConfigError,
                &why,
                "rigger: .cirun.yml error",
            ));
        };
        match self
            .check_access(&repo, job, pull_request, def, loaded.access.as_ref())
            .await
        {
            Ok(Access::Allowed) => {}
            Ok(Access::Denied(why)) => {
                return Ok(fail(JobFailure::Denied, &why, "rigger: not allowed"));
            }
            // GitHub refusing for good (the App may lack the Members or
            // Metadata permission) will not change by waiting: say what to fix.
            Err(e @ GithubError::Refused(_)) => {
                self.github_error(&e);
                let why = format!(
                    "cannot check .access.yml: GitHub refused to say which teams and role {} has ({e}); give the App read access to organization members and repository metadata",
                    job.actor
                );
                return Ok(fail(
                    JobFailure::ConfigError,
                    &why,
                    "rigger: cannot check access",
                ));
            }
            // Not knowing who the actor is proves nothing either way: ask again.
            Err(e) => {
                let why = format!(
                    "cannot check .access.yml: GitHub did not say who {} is: {e}",
                    job.actor
                );
                return Ok(self.github_retry(&e, why));
            }
        }

        // GitHub gives the job only to a runner whose group serves the
        // repository: a machine whose runner it never could be is not rented.
        match self.github.runner_group_access(&repo).await {
            Ok(GroupAccess::Serves) => {}
            Ok(GroupAccess::Refuses(why)) => {
                return Ok(Outcome::Retry {
                    reason: why.clone(),
                    after_ms: None,
                    check: Some((def.name.clone(), report::refused(&def.name, &why))),
                });
            }
            Err(e @ GithubError::Refused(_)) => {
                self.github_error(&e);
                let why = format!(
                    "cannot check that runner group {} serves {}: {e}",
                    self.settings.github.runner_group_id, job.repo
                );
                return Ok(fail(
                    JobFailure::ConfigError,
                    &why,
                    "rigger: cannot check the runner group",
                ));
            }
            Err(e) => {
                let why = format!("cannot check the runner group's repository access: {e}");
                return Ok(self.github_retry(&e, why));
            }
        }

        let history = self
            .store
            .recent_durations(&job.repo, &def.name, estimate::HISTORY)
            .await?;
        let hours =
            estimate::expected_reference_hours(&history, self.settings.limits.default_job_minutes);
        let pool_key = offer_pool::key(vast, hours);
        // One search at a time per definition: the jobs of a burst wait for
        // the first one's list instead of all asking Vast.ai at once.
        let searching = self.offer_pool.search_lock(&pool_key);
        let searching = searching.lock().await;
        if let Some(diagnosis) = self.offer_pool.no_match(&pool_key, self.now()) {
            return Ok(self.no_capacity(def, &diagnosis, job));
        }
        let offers = match self.offer_pool.fresh(&pool_key, self.now()) {
            Some(list) => list,
            None => match self.cloud.search(vast, hours).await {
                Ok(OfferSearch::Found(o)) if !o.is_empty() => {
                    let list = Arc::new(o);
                    self.offer_pool
                        .keep(pool_key.clone(), self.now(), list.clone());
                    list
                }
                Ok(OfferSearch::Found(_)) => {
                    let diagnosis = "0 offers fit".to_string();
                    self.offer_pool
                        .keep_no_match(pool_key, self.now(), diagnosis.clone());
                    return Ok(self.no_capacity(def, &diagnosis, job));
                }
                Ok(OfferSearch::NoMatch { diagnosis }) => {
                    self.offer_pool
                        .keep_no_match(pool_key, self.now(), diagnosis.clone());
                    return Ok(self.no_capacity(def, &diagnosis, job));
                }
                Err(e) => {
                    self.cloud_error(&e);
                    return Ok(retry(
                        format!("cannot search Vast.ai: {e}"),
                        rate_limit_ms(&e),
                    ));
                }
            },
        };
        drop(searching);

        // Before registering anything: a machine is never booted to run an
        // unverified runner unless the operator said so.
        let arch = runner_arch(vast.cpu_arch);
        let runner_file = match self.runner_file(&repo, arch).await {
            Ok(RunnerLookup::Found(file)) => file,
            Ok(RunnerLookup::Missing(why)) => {
                tracing::error!(job = job.job_id, "refusing to boot a machine: {why}");
                return Ok(fail(
                    JobFailure::ConfigError,
                    &why,
                    "rigger: no such runner release",
                ));
            }
            Err(e) => {
                let mut why = format!("cannot look up the runner release on GitHub: {e}");
                if matches!(e, GithubError::Refused(_)) {
                    why.push_str(
                        " (the runner downloads list needs the App's Administration: read permission on \
                         the repository, or Self-hosted runners: read on the organization with \
                         github.runner_scope = \"organization\"; or pin runner.version)",
                    );
                }
                return Ok(self.github_retry(&e, why));
            }
        };
        if runner_file.sha256.is_none() && !self.settings.runner.allow_unverified {
            let why = format!(
                "no SHA-256 for the runner release {}: GitHub publishes none for it; set runner.sha256.{arch} from the release notes (with runner.version pinned), or runner.allow_unverified = true",
                runner_file.filename
            );
            tracing::error!(job = job.job_id, "refusing to boot a machine: {why}");
            return Ok(fail(
                JobFailure::ConfigError,
                &why,
                "rigger: cannot verify the runner",
            ));
        }

        let mut refusal = None;
        let mut tried = 0;
        let mut rest = offers.iter();
        while tried < OFFER_TRIES {
            let admitted = admission.admit(&job.repo, &mut rest, |offer, usage| {
                if let Err(r) = policy::check_limits(
                    &self.settings.limits,
                    &job.repo,
                    offer.dph,
                    offer.estimated_cost,
                    usage,
                ) {
                    refusal.get_or_insert(r.0);
                    return false;
                }
                // False when another job of the burst is renting it.
                self.offer_pool.claim(offer.offer_id, self.now())
            });
            let Some(offer) = admitted else {
                break;
            };
            // Given back by itself on every way out but the two that keep it.
            let mut claim = Claim::new(
                &self.cloud,
                &self.offer_pool,
                admission,
                &job.repo,
                offer.offer_id,
            );
            let row = self.reserve(job, vast, offer);
            tried += 1;
            let file = runner_file.clone();
            match self
                .rent(&repo, job, def, config, offer, row, file, &mut claim)
                .await?
            {
                Rent::Done => {
                    claim.keep();
                    return Ok(Outcome::Rented);
                }
                Rent::Unknown(outcome) => {
                    claim.keep();
                    return Ok(outcome);
                }
                Rent::NextOffer => {
                    self.offer_pool.forget(&pool_key);
                    claim.offer_gone();
                    continue;
                }
                Rent::Stop(outcome) => return Ok(outcome),
            }
        }
        Ok(match refusal {
            Some(why) if tried == 0 => Outcome::Retry {
                reason: why.clone(),
                after_ms: None,
                check: Some((def.name.clone(), report::refused(&def.name, &why))),
            },
            _ => retry(
                "every offer tried was taken by someone else first".into(),
                Some(5_000),
            ),
        })
    }

    async fn check_access(
        &self,
        repo: &RepoRef,
        job: &JobRow,
        pull_request: bool,
        def: &RunnerDef,
        access: Option<&AccessConfig>,
    ) -> Result<Access, GithubError> {
        let teams = policy::teams_to_check(def, access);
        let guarded = access.is_some_and(|a| !a.policies_for(&def.name).is_empty())
            && def.origin == Origin::Organization;
        if !guarded {
            return Ok(Access::Allowed);
        }
        // A 404 (not a member, not a collaborator) is an answer; an error
        // is not, and goes back to the caller rather than count as "none".
        let actor_teams = if teams.is_empty() {
            Vec::new()
        } else {
            self.github.teams_of(repo, &job.actor, &teams).await?
        };
        let actor_role = self.github.role_of(repo, &job.actor).await?;
        let facts = JobFacts {
            repo: job.repo.clone(),
            // `pull_request: false` in a policy keeps pull requests off the
            // runner, from forks and from the repository's own branches.
            pull_request,
            actor: job.actor.clone(),
            actor_teams,
            actor_role,
        };
        Ok(policy::check_access(def, access, &facts))
    }

    /// At most one live machine per job (I2). A job back in the queue may
    /// still have one: a create whose answer was lost and whose label could
    /// not be looked up yet, or a machine the reconciler adopted meanwhile.
    /// Renting again would pay twice, so the first case waits for the
    /// reconciler (rule 2) and the second goes back to waiting for its runner.
    async fn already_served(&self, job: &JobRow) -> Result<Option<Outcome>, EngineError> {
        let machines = self.store.instances_for_job(job.job_id).await?;
        if let Some(open) = machines
            .iter()
            .find(|i| matches!(i.state, InstanceState::Requested | InstanceState::Creating))
        {
            self.reconcile_wake.notify_one();
            let wait = crate::millis::of(self.settings.timeouts.create);
            return Ok(Some(retry(
                format!(
                    "machine {} was asked for and Vast.ai's answer was lost; rigger finds it by its label before renting another",
                    open.id
                ),
                Some(wait),
            )));
        }
        // A busy machine rented for the job runs a sibling GitHub gave it
        // (the job itself would be running): it will not run this one.
        let serving = machines
            .iter()
            .any(|i| matches!(i.state, InstanceState::Booting | InstanceState::Online));
        if !serving {
            return Ok(None);
        }
        self.store
            .transition_job(
                job.job_id,
                JobState::Provisioning,
                JobState::WaitingForRunner,
                self.now(),
                JobPatch::default(),
            )
            .await?;
        Ok(Some(Outcome::Rented))
    }
}
