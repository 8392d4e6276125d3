//! Provisioning one job: config (repository file merged with the org's,
//! cached per commit) → access policy → matching definition → ranked offers
//! → limits → JIT runner → instance row (I2) → create call with our label.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::policy::{self, Access, ConfigRef, JobFacts, Usage};
use super::ports::{
    CheckRun, Cloud, CloudError, Github, LaunchSpec, OfferSearch, RankedOffer, RepoRef,
};
use super::state::{InstanceState, JobState};
use super::{Engine, EngineError, estimate, names, offer_pool, report};
use crate::bootstrap::{self, BootstrapSpec};
use crate::config::access::AccessConfig;
use crate::config::model::{CirunConfig, Cloud as CloudKind, RunnerDef, SetupInfo, VastRunner};
use crate::config::{FileKind, labels, org, parse_file};
use crate::store::{InstancePatch, JobPatch, JobRow, NewInstance};

/// A repository's config as read for one commit.
#[derive(Debug, Clone, Default)]
pub struct LoadedConfig {
    /// The repository's runners, then the org's.
    pub config: Option<CirunConfig>,
    pub access: Option<AccessConfig>,
    /// The errors in the files, as `file:line:col: message` lines.
    pub errors: Vec<String>,
}

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
        reason: String,
        check: CheckRun,
    },
    /// A definition for another cloud: Cirun's business, not rigger's.
    NotOurs(String),
}

/// How long a worker is trusted with a job it claimed (the reconciler's
/// provisioning timeout puts back the jobs of a worker that died).
const LEASE_MS: i64 = 120_000;
/// How many due jobs a pass provisions side by side.
const BATCH: i64 = 16;
/// How many jobs one pass takes on before it counts the live machines
/// again (its limits start from that count).
const PASS: usize = 256;
/// How many of the ranked offers to try when the first ones are gone.
const OFFER_TRIES: usize = 5;
/// Fresh default-branch configs are read again after this long.
const DEFAULT_BRANCH_TTL_MS: i64 = 60_000;

impl<C: Cloud, G: Github> Engine<C, G> {
    /// Provision the queued jobs whose backoff has passed, up to [`PASS`]
    /// of them, [`BATCH`] side by side: each worker claims its next job when
    /// it is done with one, so a slow job holds up no other. Returns how
    /// many were attempted.
    pub async fn provision_due(&self) -> Result<usize, EngineError> {
        // Replicas take turns: each pass counts the limits once, at its start.
        let turn = self.store.provisioning_turn().await?;
        let attempted = self.provision_pass().await;
        turn.end().await?;
        attempted
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
                let result = self.provision(job, &admission).await;
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

    async fn provision(&self, job: JobRow, admission: &Admission) -> Result<(), EngineError> {
        let now = self.now();
        let queue_limit = self.settings.timeouts.queue.as_millis() as i64;
        if now - job.queued_at > queue_limit {
            let why = format!(
                "no machine could be rented within {} h, GitHub's own queue limit; last reason: {}",
                queue_limit / 3_600_000,
                job.reason.as_deref().unwrap_or("none")
            );
            return self
                .end_job(
                    &job,
                    JobState::Provisioning,
                    JobState::Failed,
                    &why,
                    Some(report::failed("No GPU found in time", &why)),
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
                let after = after_ms.unwrap_or_else(|| backoff_ms(job.attempts));
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
            Outcome::Fail { reason, check } => {
                self.end_job(
                    &job,
                    JobState::Provisioning,
                    JobState::Failed,
                    &reason,
                    Some(check),
                )
                .await?;
            }
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
        if self
            .store
            .transition_job(job.job_id, from, to, self.now(), patch)
            .await?
        {
            self.note(Some(job.job_id), None, to.as_str(), reason).await;
            if let Some(run) = check {
                self.report(job, &run).await;
            }
        }
        Ok(())
    }

    /// Post or update the job's check run; a failure here never blocks the job.
    pub(crate) async fn report(&self, job: &JobRow, run: &CheckRun) {
        let repo = RepoRef {
            installation_id: job.installation_id,
            repo: job.repo.clone(),
        };
        let current = match self.store.job(job.job_id).await {
            Ok(Some(j)) => j.check_run_id,
            _ => job.check_run_id,
        };
        match self
            .github
            .check_run(&repo, &job.head_sha, current, run)
            .await
        {
            Ok(id) if current != Some(id) => {
                if let Err(e) = self.store.set_check_run(job.job_id, id).await {
                    tracing::warn!(error = %e, "could not remember the check run");
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.github_error(&e);
                tracing::warn!(job_id = job.job_id, error = %e, "could not update the check run");
            }
        }
    }

    async fn try_provision(
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
                self.github_error(&e);
                return Ok(retry(
                    format!(
                        "cannot tell whether run {} comes from a fork: {e}",
                        job.run_id
                    ),
                    rate_limit_ms_github(&e),
                ));
            }
        };
        let job = &job;
        let loaded = match self.load_config(&repo, job).await {
            Ok(l) => l,
            Err(e) => {
                self.github_error(&e);
                return Ok(retry(
                    format!("cannot read .cirun.yml from GitHub: {e}"),
                    rate_limit_ms_github(&e),
                ));
            }
        };
        let Some(config) = &loaded.config else {
            let why = if loaded.errors.is_empty() {
                "the repository has no .cirun.yml and the org no .cirun/.cirun.global.yml"
                    .to_string()
            } else {
                format!("the config cannot be read:\n{}", loaded.errors.join("\n"))
            };
            return Ok(fail(&why, "rigger: .cirun.yml error"));
        };
        let Some(def) = labels::select(&config.runners, &job.labels) else {
            let known: Vec<String> = config
                .runners
                .iter()
                .map(|r| format!("`{}` [{}]", r.name, r.labels.join(", ")))
                .collect();
            let why = format!(
                "no runner definition matches runs-on [{}]; definitions: {}",
                job.labels.join(", "),
                known.join("; ")
            );
            return Ok(fail(&why, "rigger: no runner matches runs-on"));
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
            return Ok(fail(&why, "rigger: .cirun.yml error"));
        };
        if let Access::Denied(why) = self
            .check_access(&repo, job, pull_request, def, loaded.access.as_ref())
            .await
        {
            return Ok(fail(&why, "rigger: not allowed"));
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
                    return Ok(no_capacity(def, "0 offers fit", job.attempts));
                }
                Ok(OfferSearch::NoMatch { diagnosis }) => {
                    return Ok(no_capacity(def, &diagnosis, job.attempts));
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
        let runner_sha256 = match self.runner_sha256(&repo, arch).await {
            Ok(sum) => sum,
            Err(e) => {
                self.github_error(&e);
                return Ok(retry(
                    format!("cannot read the runner release's checksum from GitHub: {e}"),
                    rate_limit_ms_github(&e),
                ));
            }
        };
        if runner_sha256.is_none() && !self.settings.runner.allow_unverified {
            let why = format!(
                "no SHA-256 for the runner release {}: GitHub's runner downloads list does not have it (it lists only the current release); set runner.sha256.{arch} from the release notes, or runner.allow_unverified = true",
                runner_filename(&self.settings.runner.version, arch)
            );
            tracing::error!(job = job.job_id, "refusing to boot a machine: {why}");
            return Ok(fail(&why, "rigger: cannot verify the runner"));
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
            let row = self.reserve(job, vast, offer);
            tried += 1;
            match self
                .rent(&repo, job, def, config, offer, row, runner_sha256.clone())
                .await?
            {
                Rent::Done => return Ok(Outcome::Rented),
                Rent::Unknown(outcome) => return Ok(outcome),
                Rent::NextOffer => {
                    self.offer_pool.forget(&pool_key);
                    admission.give_back(&job.repo);
                    continue;
                }
                Rent::Stop(outcome) => {
                    self.offer_pool.release(offer.offer_id);
                    admission.give_back(&job.repo);
                    return Ok(outcome);
                }
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
    ) -> Access {
        let teams = policy::teams_to_check(def, access);
        let guarded = access.is_some_and(|a| !a.policies_for(&def.name).is_empty())
            && def.origin == crate::config::model::Origin::Organization;
        if !guarded {
            return Access::Allowed;
        }
        let actor_teams = if teams.is_empty() {
            Vec::new()
        } else {
            match self.github.teams_of(repo, &job.actor, &teams).await {
                Ok(t) => t,
                Err(e) => {
                    self.github_error(&e);
                    Vec::new()
                }
            }
        };
        let actor_role = match self.github.role_of(repo, &job.actor).await {
            Ok(r) => r,
            Err(e) => {
                self.github_error(&e);
                None
            }
        };
        let facts = JobFacts {
            repo: job.repo.clone(),
            // `pull_request: false` in a policy keeps pull requests off the
            // runner, from forks and from the repository's own branches.
            pull_request,
            actor: job.actor.clone(),
            actor_teams,
            actor_role,
        };
        policy::check_access(def, access, &facts)
    }

    /// What a provisioning pass starts from: the machines alive now and
    /// what was spent today.
    async fn admission(&self) -> Result<Admission, EngineError> {
        let now = self.now();
        let day_start = now - now.rem_euclid(86_400_000);
        Ok(Admission(Mutex::new(Places {
            live: self.store.live_usage(day_start, now).await?,
            spent_today: self.store.spend_since(day_start).await?,
        })))
    }

    /// Read (or reuse) the config for the revision this job is allowed to use.
    async fn load_config(
        &self,
        repo: &RepoRef,
        job: &JobRow,
    ) -> Result<Arc<LoadedConfig>, super::ports::GithubError> {
        let git_ref = match policy::config_ref(
            self.settings.github.config_source,
            job.is_fork,
            &job.head_sha,
        ) {
            ConfigRef::DefaultBranch => None,
            ConfigRef::Commit(sha) => Some(sha),
        };
        let key = (repo.repo.clone(), git_ref.clone().unwrap_or_default());
        let now = self.now();
        if let Some((at, cached)) = self
            .config_cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            let fresh = git_ref.is_some() || now - at < DEFAULT_BRANCH_TTL_MS;
            if fresh {
                return Ok(cached.clone());
            }
        }
        let files = self.github.config_files(repo, git_ref.as_deref()).await?;
        let loaded = Arc::new(parse_config_files(&files));
        let mut cache = self.config_cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 1000 {
            cache.clear();
        }
        cache.insert(key, (now, loaded.clone()));
        Ok(loaded)
    }

    /// The names and the row of the machine about to be rented. The row is
    /// written (I2) once its runner is registered, before the create call.
    fn reserve(&self, job: &JobRow, vast: &VastRunner, offer: &RankedOffer) -> Reserved {
        let controller = &self.settings.controller_id;
        let id = names::new_instance_id();
        let runner_name = names::runner_name(controller, job.job_id, &id);
        let label = names::instance_label(controller, job.job_id, &id);
        // With a public URL, a machine that cannot destroy itself (VM mode may
        // have no per-instance key) reports its end to rigger with this token.
        let callback = self.settings.public_url.as_ref().map(|base| {
            let token = names::new_token();
            let url = format!("{}/callback/{id}", base.trim_end_matches('/'));
            (url, token)
        });
        let now = self.now();
        let lifetime = (i64::from(vast.extra.max_runtime_minutes) * 60_000)
            .min(self.settings.timeouts.max_lifetime.as_millis() as i64);
        let row = NewInstance {
            id,
            job_id: job.job_id,
            label,
            runner_name,
            offer_id: Some(offer.offer_id),
            gpu_name: Some(offer.gpu_name.clone()),
            num_gpus: Some(i64::from(offer.num_gpus)),
            dph: Some(offer.dph),
            location: Some(offer.location.clone()),
            expires_at: now + lifetime,
            callback_hash: callback.as_ref().map(|(_, t)| token_hash(t)),
        };
        Reserved { row, callback }
    }

    /// Rent one offer for a job: JIT runner, the machine's row, create.
    #[allow(clippy::too_many_arguments)]
    async fn rent(
        &self,
        repo: &RepoRef,
        job: &JobRow,
        def: &RunnerDef,
        config: &CirunConfig,
        offer: &RankedOffer,
        row: Reserved,
        runner_sha256: Option<String>,
    ) -> Result<Rent, EngineError> {
        let Reserved { row, callback } = row;
        let (instance_id, label) = (row.id.clone(), row.label.clone());
        let found = def
            .vast
            .as_ref()
            .and_then(|v| Some((v, v.candidates.get(offer.candidate)?)));
        let Some((vast, candidate)) = found else {
            return Ok(Rent::NextOffer);
        };
        let arch = runner_arch(vast.cpu_arch);
        let runner_labels = labels::registration_labels(&def.labels, &job.labels, "linux", arch);
        let jit = match self
            .github
            .create_jit_runner(repo, &row.runner_name, &runner_labels)
            .await
        {
            Ok(j) => j,
            Err(e) => {
                self.github_error(&e);
                let why = format!("cannot register a runner with GitHub: {e}");
                return Ok(Rent::Stop(retry(why, rate_limit_ms_github(&e))));
            }
        };
        let now = self.now();
        let mut setup_info = config.setup_info.clone();
        setup_info.push(SetupInfo {
            group: "rigger".into(),
            detail: format!(
                "{}× {} in {} at ${:.3}/h (offer {}), estimated ${:.2} in total",
                offer.num_gpus,
                offer.gpu_name,
                offer.location,
                offer.dph,
                offer.offer_id,
                offer.estimated_cost
            ),
        });
        let runner = &self.settings.runner;
        let rendered = bootstrap::render(&BootstrapSpec {
            vm: vast.extra.vm,
            vast_url: self.settings.vast.api_url.clone(),
            // `{arch}` is left for the machine to fill in from `uname -m`.
            runner_url: runner.url_template.replace("{version}", &runner.version),
            runner_arch: arch.to_string(),
            runner_sha256,
            allow_unverified: runner.allow_unverified,
            preinstalled_runner: Some(runner.preinstalled_path.clone()).filter(|p| !p.is_empty()),
            gpu_count: offer.num_gpus,
            gpu_models: vec![offer.gpu_name.clone()],
            idle_timeout_secs: self.settings.timeouts.idle.as_secs(),
            jit_config: jit.jit_config,
            setup_info,
            env_vars: vast.extra.env_vars.clone(),
            callback: callback.map(|(url, token)| (url, crate::settings::Secret::new(token))),
        });
        let spec = LaunchSpec {
            offer_id: offer.offer_id,
            image: candidate.image.clone(),
            disk_gb: vast.extra.disk_space_gb,
            vm: vast.extra.vm,
            bid_price: offer.bid_price,
            label: label.clone(),
            onstart: rendered.onstart,
            env: rendered.env,
        };
        // Before any money is spent (I2). A crash between the registration
        // and this row leaves a runner with no machine: rule 7 removes it.
        if let Err(e) = self
            .store
            .insert_creating_instance(&row, jit.runner_id, now)
            .await
        {
            if let Err(e) = self.github.delete_runner(repo, jit.runner_id).await {
                self.github_error(&e);
            }
            return Err(e.into());
        }
        let created = match self.cloud.create(&spec).await {
            Ok(pid) => Some(pid),
            Err(CloudError::Ambiguous(why)) => {
                // Never retry a create blindly: the label says whether it happened.
                self.note(
                    Some(job.job_id),
                    Some(&instance_id),
                    "create_ambiguous",
                    &why,
                )
                .await;
                match self.cloud.find(&label).await {
                    Ok(found) => found.map(|c| c.provider_id),
                    // Leave the row in `creating`: rule 2 looks it up later.
                    Err(_) => {
                        return Ok(Rent::Unknown(retry(
                            format!("create outcome unknown: {why}"),
                            None,
                        )));
                    }
                }
            }
            Err(e) => {
                self.cloud_error(&e);
                self.give_up_instance(&instance_id, repo, jit.runner_id, &e.to_string())
                    .await?;
                return Ok(match e {
                    CloudError::OfferGone => Rent::NextOffer,
                    CloudError::Unauthorized(why)
                    | CloudError::Invalid(why)
                    | CloudError::NotFound(why) => Rent::Stop(fail(
                        &format!("Vast.ai refused to rent: {why}"),
                        "rigger: Vast.ai refused",
                    )),
                    other => Rent::Stop(retry(
                        format!("cannot rent: {other}"),
                        rate_limit_ms(&other),
                    )),
                });
            }
        };
        let Some(provider_id) = created else {
            self.give_up_instance(
                &instance_id,
                repo,
                jit.runner_id,
                "the create call made nothing",
            )
            .await?;
            return Ok(Rent::NextOffer);
        };
        // The machine exists and costs money from now on: its provider id,
        // the job's new state and what happened, in one commit.
        let now = self.now();
        let rented = format!(
            "{}× {} in {} at ${:.3}/h, est. {:.2} h, ${:.2} total (Vast.ai instance {provider_id}, offer {})",
            offer.num_gpus,
            offer.gpu_name,
            offer.location,
            offer.dph,
            offer.estimated_hours,
            offer.estimated_cost,
            offer.offer_id
        );
        // Machine-readable, for `rigger instances list --format vast-instances`.
        let estimate = format!(
            "{instance_id}: {} h, ${}",
            offer.estimated_hours, offer.estimated_cost
        );
        let mut tx = self.store.begin().await?;
        tx.transition_instance(
            &instance_id,
            InstanceState::Creating,
            InstanceState::Booting,
            now,
            InstancePatch {
                provider_id: Some(provider_id.clone()),
                ..Default::default()
            },
        )
        .await?;
        let patch = JobPatch {
            runner_def: Some(def.name.clone()),
            reason: Some(None),
            ..Default::default()
        };
        tx.transition_job(
            job.job_id,
            JobState::Provisioning,
            JobState::WaitingForRunner,
            now,
            patch,
        )
        .await?;
        for (kind, message) in [("rented", &rented), ("estimate", &estimate)] {
            self.note_in(&mut tx, Some(job.job_id), Some(&instance_id), kind, message)
                .await?;
        }
        tx.commit().await?;
        self.metrics.observe(
            "rigger_provisioning_seconds",
            &[],
            (now - job.queued_at).max(0) as f64 / 1000.0,
        );
        self.report(
            job,
            &report::booting(
                &offer.gpu_name,
                &offer.location,
                offer.dph,
                offer.estimated_cost,
                offer.estimated_hours,
            ),
        )
        .await;
        Ok(Rent::Done)
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
            let wait = self.settings.timeouts.create.as_millis() as i64;
            return Ok(Some(retry(
                format!(
                    "machine {} was asked for and Vast.ai's answer was lost; rigger finds it by its label before renting another",
                    open.id
                ),
                Some(wait),
            )));
        }
        let serving = machines.iter().any(|i| {
            matches!(
                i.state,
                InstanceState::Booting | InstanceState::Online | InstanceState::Busy
            )
        });
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

    /// The create call failed for sure: the row is failed, the runner
    /// registration removed (the reconciler's rule 7 catches what this misses).
    async fn give_up_instance(
        &self,
        id: &str,
        repo: &RepoRef,
        runner_id: i64,
        why: &str,
    ) -> Result<(), EngineError> {
        let now = self.now();
        self.store
            .transition_instance(
                id,
                InstanceState::Creating,
                InstanceState::Failed,
                now,
                InstancePatch {
                    reason: Some(why.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        if let Err(e) = self.github.delete_runner(repo, runner_id).await {
            self.github_error(&e);
        }
        Ok(())
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

/// The places one provisioning pass may fill: the live machines counted
/// when it began, plus those its jobs have taken since. Kept in memory and
/// taken under a plain mutex, so the limits hold among jobs worked on side
/// by side without a lock held across database writes. Replicas take turns
/// to run passes (`Store::provisioning_turn`), so each counts what the
/// others rented.
struct Admission(Mutex<Places>);

struct Places {
    live: crate::store::LiveUsage,
    spent_today: f64,
}

impl Admission {
    fn places(&self) -> std::sync::MutexGuard<'_, Places> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a place for the first of `offers` that `allowed` accepts given
    /// the usage so far, in one step: jobs worked on side by side cannot
    /// both take the last place.
    fn admit<'a>(
        &self,
        repo: &str,
        offers: &mut impl Iterator<Item = &'a RankedOffer>,
        mut allowed: impl FnMut(&RankedOffer, &Usage) -> bool,
    ) -> Option<&'a RankedOffer> {
        let mut places = self.places();
        let usage = Usage {
            live_instances: places.live.live,
            live_instances_for_repo: places.live.by_repo.get(repo).copied().unwrap_or(0),
            spent_today: places.spent_today,
            running_today: places.live.dollars_since,
        };
        let offer = offers.find(|o| allowed(o, &usage))?;
        places.live.live += 1;
        *places.live.by_repo.entry(repo.to_string()).or_default() += 1;
        Some(offer)
    }

    /// The machine was not rented after all.
    fn give_back(&self, repo: &str) {
        let mut places = self.places();
        places.live.live = places.live.live.saturating_sub(1);
        if let Some(n) = places.live.by_repo.get_mut(repo) {
            *n = n.saturating_sub(1);
        }
    }
}

/// A machine about to be rented: its row (with its names) and, with a
/// public URL, the callback (URL, token) its bootstrap reports to.
struct Reserved {
    row: NewInstance,
    callback: Option<(String, String)>,
}

enum Rent {
    Done,
    NextOffer,
    Stop(Outcome),
    /// The create may have happened: the machine keeps its place and its
    /// offer until the reconciler finds out.
    Unknown(Outcome),
}

/// Nothing on the market fits: wait with the backoff, and say when rigger
/// looks again (`attempts` made, this one included).
fn no_capacity(def: &RunnerDef, diagnosis: &str, attempts: i64) -> Outcome {
    let after = backoff_ms(attempts);
    Outcome::Retry {
        reason: diagnosis.to_string(),
        after_ms: Some(after),
        check: Some((
            def.name.clone(),
            report::waiting_for_capacity(&def.name, diagnosis, after / 1000),
        )),
    }
}

fn retry(reason: String, after_ms: Option<i64>) -> Outcome {
    Outcome::Retry {
        reason,
        after_ms,
        check: None,
    }
}

fn fail(why: &str, title: &str) -> Outcome {
    Outcome::Fail {
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

fn rate_limit_ms_github(e: &super::ports::GithubError) -> Option<i64> {
    match e {
        super::ports::GithubError::RateLimited { retry_after_ms } => Some(*retry_after_ms),
        _ => None,
    }
}

/// The runner release (and the architecture label it registers with) for
/// the host architecture the offer search asked Vast.ai for
/// (`VastRunner::cpu_arch`, from the definition's labels): the labels are
/// fixed at registration, before the machine boots, so they must follow
/// the search. A host that still turns out different fails fast (the
/// bootstrap checks `uname -m` against this).
pub fn runner_arch(cpu_arch: &str) -> &'static str {
    if cpu_arch == "arm64" { "arm64" } else { "x64" }
}

/// The release file's name as GitHub publishes it, whatever mirror serves it.
pub fn runner_filename(version: &str, arch: &str) -> String {
    format!("actions-runner-linux-{arch}-{version}.tar.gz")
}

impl<C: Cloud, G: Github> Engine<C, G> {
    /// The release's checksum: pinned in settings, else GitHub's.
    async fn runner_sha256(
        &self,
        repo: &RepoRef,
        arch: &str,
    ) -> Result<Option<String>, super::ports::GithubError> {
        let runner = &self.settings.runner;
        if let Some(sum) = runner.sha256.get(arch) {
            return Ok(Some(sum.to_ascii_lowercase()));
        }
        // A release file's checksum never changes: ask GitHub once per file.
        let file = runner_filename(&runner.version, arch);
        let mut known = self.runner_checksums.lock().await;
        if let Some(sum) = known.get(&file) {
            return Ok(Some(sum.clone()));
        }
        let found = self
            .github
            .runner_download_sha256(repo, arch, &file)
            .await?;
        if let Some(sum) = &found {
            known.insert(file, sum.clone());
        }
        Ok(found)
    }
}

/// What the store keeps of a callback token: its SHA-256, in hex.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 15 s, 30 s, 60 s … capped at 5 minutes.
pub fn backoff_ms(attempt: i64) -> i64 {
    let exp = attempt.clamp(1, 6) - 1;
    (15_000 * (1_i64 << exp)).min(300_000)
}

/// Parse the three files and merge them by the documented rule.
pub fn parse_config_files(files: &super::ports::ConfigFiles) -> LoadedConfig {
    let mut errors = Vec::new();
    let mut parsed = |name: &str, text: &Option<String>, kind: FileKind| {
        let text = text.as_ref()?;
        let p = parse_file(Path::new(name), text, kind);
        for d in p.diagnostics.items().iter().filter(|d| d.is_error()) {
            errors.push(format!(
                "{name}:{}:{}: {}",
                d.location.line, d.location.column, d.message
            ));
        }
        Some(p)
    };
    let repo = parsed(".cirun.yml", &files.repo, FileKind::Repository);
    let org = parsed(
        ".cirun/.cirun.global.yml",
        &files.org,
        FileKind::Organization,
    );
    let access = parsed(".cirun/.access.yml", &files.access, FileKind::Access);
    let repo_config = repo.and_then(|p| p.config);
    let org_config = org.and_then(|p| p.config);
    let config = (repo_config.is_some() || org_config.is_some())
        .then(|| org::merge(repo_config.as_ref(), org_config.as_ref()));
    LoadedConfig {
        config,
        access: access.and_then(|p| p.access),
        errors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ports::ConfigFiles;

    #[test]
    fn backoff_doubles_to_a_cap() {
        assert_eq!(backoff_ms(1), 15_000);
        assert_eq!(backoff_ms(2), 30_000);
        assert_eq!(backoff_ms(5), 240_000);
        assert_eq!(backoff_ms(50), 300_000);
    }

    #[test]
    fn config_files_merge_and_report_errors() {
        let files = ConfigFiles {
            repo: Some("runners:\n  - name: a\n    cloud: vast_ai\n    instance_type: 0xRTX_4090\n    labels: [cirun-a]\n".into()),
            org: Some("runners:\n  - name: b\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-b]\n".into()),
            access: None,
        };
        let loaded = parse_config_files(&files);
        let names: Vec<_> = loaded
            .config
            .as_ref()
            .unwrap()
            .runners
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(loaded.errors.len(), 1);
        assert!(
            loaded.errors[0].starts_with(".cirun.yml:4:20: "),
            "{:?}",
            loaded.errors
        );
        assert!(parse_config_files(&ConfigFiles::default()).config.is_none());
    }
}
