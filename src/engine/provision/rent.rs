//! Renting one offer for one job: the runner file its machine downloads
//! (the release, where from, its SHA-256), the machine's names, its JIT
//! runner, its row before any money is spent (I2), the create call with our
//! label, and what is undone when the create fails for sure.

use std::collections::HashMap;

use tracing::Instrument;

use super::claim::Claim;
use super::{Outcome, fail, rate_limit_ms, retry};
use crate::bootstrap::{self, BootstrapSpec};
use crate::config::labels;
use crate::config::model::{CirunConfig, RunnerDef, SetupInfo, VastRunner};
use crate::engine::ports::{
    Cloud, CloudError, Github, GithubError, LaunchSpec, RankedOffer, RepoRef, RunnerArch,
    RunnerRelease, Sha256Hex, runner_filename,
};
use crate::engine::state::{InstanceState, JobFailure, JobState};
use crate::engine::{Engine, EngineError, names, report};
use crate::settings::RunnerVersion;
use crate::store::{InstancePatch, JobPatch, JobRow, NewInstance};

impl<C: Cloud, G: Github> Engine<C, G> {
    /// The names and the row of the machine about to be rented. The row is
    /// written (I2) once its runner is registered, before the create call.
    pub(super) fn reserve(&self, job: &JobRow, vast: &VastRunner, offer: &RankedOffer) -> Reserved {
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
        let lifetime = crate::millis::of(
            vast.extra
                .machine_lifetime(Some(self.settings.timeouts.max_lifetime)),
        );
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
            expires_at: now.saturating_add(lifetime),
            callback_hash: callback.as_ref().map(|(_, t)| token_hash(t)),
            estimated_hours: Some(offer.estimated_hours),
            estimated_cost: Some(offer.estimated_cost),
        };
        Reserved { row, callback }
    }

    /// Rent one offer for a job: JIT runner, the machine's row, create.
    /// `claim` holds the offer, the job's place and the create slot; the
    /// caller says what becomes of them from the answer. All of it in the
    /// machine's span, `instance{instance_id, provider_id}` (Vast.ai's id
    /// once its create answers), inside the attempt's `job` span.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn rent(
        &self,
        repo: &RepoRef,
        job: &JobRow,
        def: &RunnerDef,
        config: &CirunConfig,
        offer: &RankedOffer,
        row: Reserved,
        runner_file: RunnerFile,
        claim: &mut Claim<'_, C>,
    ) -> Result<Rent, EngineError> {
        let span = tracing::info_span!(
            "instance",
            instance_id = %row.row.id,
            provider_id = tracing::field::Empty,
        );
        self.rent_in_span(repo, job, def, config, offer, row, runner_file, claim)
            .instrument(span)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn rent_in_span(
        &self,
        repo: &RepoRef,
        job: &JobRow,
        def: &RunnerDef,
        config: &CirunConfig,
        offer: &RankedOffer,
        row: Reserved,
        runner_file: RunnerFile,
        claim: &mut Claim<'_, C>,
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
        // The searches and GitHub's answers took a while: a job cancelled
        // meanwhile must not cost a machine, however briefly. (One that ends
        // from here on is handled once the create answers.)
        // Same attempt too: one slow past the provisioning timeout has had
        // its job handed to another (rule 9), which rents for it.
        let still_wanted = self
            .store
            .job(job.job_id)
            .await?
            .is_some_and(|j| j.state == JobState::Provisioning && j.attempts == job.attempts);
        if !still_wanted {
            return Ok(Rent::Stop(Outcome::Ended));
        }
        // Vast.ai's create slot first: a create that must wait for it
        // registers no runner (GitHub limits registrations too).
        if let Err(e) = claim.take_create_slot() {
            return Ok(Rent::Stop(retry(
                format!("waiting for Vast.ai's create rate limit: {e}"),
                rate_limit_ms(&e),
            )));
        }
        let arch = runner_arch(vast.cpu_arch);
        let runner_labels =
            labels::registration_labels(&def.labels, &job.labels, "linux", arch.as_str());
        let jit = match self
            .github
            .create_jit_runner(repo, &row.runner_name, &runner_labels)
            .await
        {
            Ok(j) => j,
            Err(e) => {
                let why = format!("cannot register a runner with GitHub: {e}");
                return Ok(Rent::Stop(self.github_retry(&e, why)));
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
        let rendered = match bootstrap::render(&BootstrapSpec {
            vm: vast.extra.vm,
            vast_url: self.settings.vast.api_url.clone(),
            runner_url: runner_file.url,
            runner_arch: arch.to_string(),
            runner_sha256: runner_file.sha256.map(|s| s.to_string()),
            allow_unverified: runner.allow_unverified,
            preinstalled_runner: Some(runner.preinstalled_path.clone()).filter(|p| !p.is_empty()),
            gpu_count: offer.num_gpus,
            gpu_models: vec![offer.gpu_name.clone()],
            idle_timeout_secs: self.settings.timeouts.idle.as_secs(),
            jit_config: jit.jit_config,
            setup_info,
            env_vars: vast.extra.env_vars.clone(),
            callback: callback.map(|(url, token)| (url, crate::settings::Secret::new(token))),
        }) {
            Ok(r) => r,
            // Vast.ai would refuse it on every offer: no create is sent.
            Err(e) => {
                if let Err(e) = self.github.delete_runner(repo, jit.runner_id).await {
                    self.github_error(&e);
                }
                return Ok(Rent::Stop(fail(
                    JobFailure::ConfigError,
                    &format!("cannot rent a machine for this runner: {e}"),
                    "rigger: the runner's environment is too large for Vast.ai",
                )));
            }
        };
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
        // Written only while the job is still this attempt's: one cancelled
        // while the runner was being registered (the check above was
        // before it) must not cost a machine.
        let written = self
            .store
            .insert_creating_instance_for(&row, jit.runner_id, job.attempts, now)
            .await;
        if !matches!(written, Ok(true)) {
            if let Err(e) = self.github.delete_runner(repo, jit.runner_id).await {
                self.github_error(&e);
            }
            return match written {
                Err(e) => Err(e.into()),
                _ => Ok(Rent::Stop(Outcome::Ended)),
            };
        }
        claim.create_slot_used();
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
                        JobFailure::CloudRefused,
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
        tracing::Span::current().record("provider_id", provider_id.as_str());
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
        let tracked = tx
            .transition_instance(
                &instance_id,
                InstanceState::Creating,
                InstanceState::Booting,
                now,
                InstancePatch::provider(&provider_id),
            )
            .await?;
        if !tracked {
            // The job ended while Vast.ai was creating the machine, and its
            // row was closed meanwhile.
            drop(tx);
            self.created_after_its_job_ended(&instance_id, &provider_id)
                .await?;
            return Ok(Rent::Done);
        }
        let patch = JobPatch {
            runner_def: Some(def.name.clone()),
            reason: Some(None),
            ..Default::default()
        };
        let job_waits = tx
            .transition_job(
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
        if !job_waits {
            // The job ended before its row was written: nothing will use
            // the machine, so it goes at once rather than at the next pass.
            if let Some(row) = self.store.instance(&instance_id).await? {
                self.destroy_instance(&row, "its job ended while the machine was being created")
                    .await?;
            }
            return Ok(Rent::Done);
        }
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

    /// Vast.ai made the machine after its row was closed (its job ended
    /// while the create call was on its way): destroy it now and account
    /// for it, rather than leave it to run untracked until the reconciler
    /// finds it by its label (rule 1).
    async fn created_after_its_job_ended(
        &self,
        instance_id: &str,
        provider_id: &str,
    ) -> Result<(), EngineError> {
        self.store.set_provider_id(instance_id, provider_id).await?;
        let Some(row) = self.store.instance(instance_id).await? else {
            return Ok(());
        };
        let why = "its job ended while the machine was being created";
        if !row.state.is_terminal() {
            self.destroy_instance(&row, why).await?;
            return Ok(());
        }
        // Closed for good already: nothing else will destroy it, nor pay
        // for it (rule 1 would destroy it as an orphan, unaccounted).
        match self.cloud.destroy(provider_id).await {
            Ok(()) => {
                let entry = self.account(&row, self.now()).await?;
                let cost = entry
                    .as_ref()
                    .map_or(0.0, crate::store::CostEntry::cost_usd);
                let message =
                    format!("destroyed Vast.ai instance {provider_id}: {why}; cost ${cost:.4}");
                self.note(Some(row.job_id), Some(instance_id), "destroyed", &message)
                    .await;
            }
            Err(e) => self.cloud_error(&e),
        }
        Ok(())
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

    /// The runner file a machine of `arch` downloads, and the SHA-256 it
    /// checks: GitHub's current release (`runner.version = "latest"`), or
    /// the pinned one, verified by `runner.sha256.{arch}` or the digest
    /// GitHub computed for the release asset; from `runner.url_template`
    /// (a mirror) when set, else from where GitHub serves it.
    /// [`RunnerLookup::Missing`] says what to change when GitHub has no
    /// such release.
    pub(super) async fn runner_file(
        &self,
        repo: &RepoRef,
        arch: RunnerArch,
    ) -> Result<RunnerLookup, GithubError> {
        let runner = &self.settings.runner;
        let mirror = |version: &str| {
            runner.url_template.as_ref().map(|t| {
                t.replace("{version}", version)
                    .replace("{arch}", arch.as_str())
            })
        };
        let now = self.now();
        match &runner.version {
            RunnerVersion::Pinned(version) => {
                let operator = runner
                    .sha256
                    .get(arch.as_str())
                    .and_then(|s| Sha256Hex::parse(s));
                // Everything said by the operator: GitHub is not asked.
                if let (Some(url), Some(sum)) = (mirror(version), operator.clone()) {
                    return Ok(RunnerLookup::Found(RunnerFile {
                        filename: runner_filename(version, arch),
                        url,
                        sha256: Some(sum),
                    }));
                }
                let Some(release) = self
                    .runner_releases
                    .pinned(&self.github, repo, version, arch)
                    .await?
                else {
                    return Ok(RunnerLookup::Missing(format!(
                        "runner.version = \"{version}\" is not a release of actions/runner GitHub knows \
                         (no release v{version} with the file {}): set runner.version to a release listed at \
                         https://github.com/actions/runner/releases, or remove it to run GitHub's current release",
                        runner_filename(version, arch)
                    )));
                };
                Ok(RunnerLookup::Found(RunnerFile {
                    filename: release.filename(),
                    url: mirror(version).unwrap_or(release.url),
                    sha256: operator.or(release.sha256),
                }))
            }
            RunnerVersion::Current => {
                let Some(release) = self
                    .runner_releases
                    .current(&self.github, repo, arch, now)
                    .await?
                else {
                    return Ok(RunnerLookup::Missing(format!(
                        "GitHub's runner downloads list names no Linux {arch} runner file: \
                         pin one with runner.version (and runner.url_template for a mirror)"
                    )));
                };
                Ok(RunnerLookup::Found(RunnerFile {
                    filename: release.filename(),
                    url: mirror(&release.version).unwrap_or(release.url),
                    sha256: release.sha256,
                }))
            }
        }
    }
}

/// What [`Engine::runner_file`] found.
pub(super) enum RunnerLookup {
    Found(RunnerFile),
    /// No such release or file at GitHub: what to change.
    Missing(String),
}

/// The runner file one machine downloads.
#[derive(Debug, Clone)]
pub(super) struct RunnerFile {
    /// As GitHub names it (`actions-runner-linux-x64-2.331.0.tar.gz`).
    pub filename: String,
    pub url: String,
    /// `None`: nobody says what it should be.
    pub sha256: Option<Sha256Hex>,
}

/// How long the current release, once read from the downloads list, is
/// taken as current: GitHub publishes a release every few weeks, and a
/// burst of jobs must not each ask.
const CURRENT_RELEASE_MS: i64 = 3_600_000;

/// What GitHub said about runner releases. A pinned release's file never
/// changes, so it is asked for once per file; the current release is read
/// again after [`CURRENT_RELEASE_MS`]. Held while one is asked for, so jobs
/// provisioned together ask once.
#[derive(Default)]
pub struct RunnerReleases(tokio::sync::Mutex<ReleaseCache>);

#[derive(Default)]
struct ReleaseCache {
    pinned: HashMap<(String, RunnerArch), RunnerRelease>,
    /// Per installation (its downloads list; GitHub rolls releases out
    /// progressively) and arch: when it was read, and what it said.
    current: HashMap<(i64, RunnerArch), (i64, RunnerRelease)>,
}

impl RunnerReleases {
    async fn pinned<G: Github>(
        &self,
        github: &G,
        repo: &RepoRef,
        version: &str,
        arch: RunnerArch,
    ) -> Result<Option<RunnerRelease>, GithubError> {
        let mut cache = self.0.lock().await;
        let key = (version.to_string(), arch);
        if let Some(r) = cache.pinned.get(&key) {
            return Ok(Some(r.clone()));
        }
        let found = github.runner_release(repo, arch, Some(version)).await?;
        if let Some(r) = &found {
            cache.pinned.insert(key, r.clone());
        }
        Ok(found)
    }

    async fn current<G: Github>(
        &self,
        github: &G,
        repo: &RepoRef,
        arch: RunnerArch,
        now: i64,
    ) -> Result<Option<RunnerRelease>, GithubError> {
        let mut cache = self.0.lock().await;
        let key = (repo.installation_id, arch);
        if let Some((at, r)) = cache.current.get(&key)
            && now - at < CURRENT_RELEASE_MS
        {
            return Ok(Some(r.clone()));
        }
        let found = github.runner_release(repo, arch, None).await?;
        if let Some(r) = &found {
            cache.current.insert(key, (now, r.clone()));
        }
        Ok(found)
    }
}

/// A machine about to be rented: its row (with its names) and, with a
/// public URL, the callback (URL, token) its bootstrap reports to.
pub(super) struct Reserved {
    row: NewInstance,
    callback: Option<(String, String)>,
}

pub(super) enum Rent {
    Done,
    NextOffer,
    Stop(Outcome),
    /// The create may have happened: the machine keeps its place and its
    /// offer until the reconciler finds out.
    Unknown(Outcome),
}

/// The runner release (and the architecture label it registers with) for
/// the host architecture the offer search asked Vast.ai for
/// (`VastRunner::cpu_arch`, from the definition's labels): the labels are
/// fixed at registration, before the machine boots, so they must follow
/// the search. A host that still turns out different fails fast (the
/// bootstrap checks `uname -m` against this).
pub fn runner_arch(cpu_arch: &str) -> RunnerArch {
    if cpu_arch == "arm64" {
        RunnerArch::Arm64
    } else {
        RunnerArch::X64
    }
}

/// What the store keeps of a callback token: its SHA-256, in hex.
pub fn token_hash(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}
