//! What the engine needs from the outside world, in its own words: a clock,
//! a cloud that rents GPUs, and GitHub. The real implementations wrap the
//! Vast.ai and GitHub clients (`adapters.rs`); the engine never sees a
//! provider's or GitHub's payload types.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::config::model::VastRunner;
use crate::engine::reconcile::{CloudView, GithubJobView, RunnerView};
use crate::settings::Secret;

/// Milliseconds since the Unix epoch. Injected so tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start_ms: i64) -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(start_ms)))
    }

    pub fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One offer, ranked, as the engine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedOffer {
    pub offer_id: i64,
    pub gpu_name: String,
    pub num_gpus: u32,
    /// $/hour, all included.
    pub dph: f64,
    /// Estimated total for the job on this offer, $.
    pub estimated_cost: f64,
    pub estimated_hours: f64,
    pub location: String,
    pub reliability: f64,
    /// Index of the fallback candidate it matched.
    pub candidate: usize,
    /// Bid price for interruptible candidates.
    pub bid_price: Option<f64>,
}

/// The result of searching for a runner definition's candidates.
#[derive(Debug, Clone, PartialEq)]
pub enum OfferSearch {
    /// Best first.
    Found(Vec<RankedOffer>),
    /// Nothing fits; the diagnosis says which filter emptied the market.
    NoMatch { diagnosis: String },
}

pub use crate::cloud::{LaunchSpec, ProviderError as CloudError};

pub trait Cloud: Send + Sync + 'static {
    /// Search every candidate of a definition and rank the offers by
    /// estimated total cost for a job of `expected_reference_hours`.
    fn search(
        &self,
        runner: &VastRunner,
        expected_reference_hours: f64,
    ) -> impl Future<Output = Result<OfferSearch, CloudError>> + Send;

    /// Rent an offer. Never retried blindly: on `Ambiguous`, use `find`.
    fn create(&self, spec: &LaunchSpec) -> impl Future<Output = Result<String, CloudError>> + Send;

    /// Our instance with this label, if Vast.ai has one.
    fn find(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Option<CloudView>, CloudError>> + Send;

    /// All instances whose label starts with `prefix`.
    fn list(&self, prefix: &str)
    -> impl Future<Output = Result<Vec<CloudView>, CloudError>> + Send;

    /// Destroy an instance; one that is already gone counts as destroyed.
    fn destroy(&self, provider_id: &str) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// The instance's log (the bootstrap's output), for a failed boot.
    fn logs(&self, provider_id: &str) -> impl Future<Output = Result<String, CloudError>> + Send;
}

/// A just-in-time runner registration. `Debug` shows the config redacted.
#[derive(Debug)]
pub struct JitRunner {
    pub runner_id: i64,
    pub jit_config: Secret,
}

/// Where a workflow run comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunOrigin {
    /// Its head commit is in another repository (a pull request from a fork).
    pub from_fork: bool,
    /// A `pull_request` or `pull_request_target` event triggered it, from a
    /// fork or from a branch of the repository itself.
    pub pull_request: bool,
}

/// What the engine asks GitHub, scoped to one installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoRef {
    pub installation_id: i64,
    /// `owner/name`.
    pub repo: String,
}

impl RepoRef {
    pub fn owner(&self) -> &str {
        self.repo.split('/').next().unwrap_or_default()
    }
}

/// The three config files, as text; `None` where there is none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigFiles {
    pub repo: Option<String>,
    pub org: Option<String>,
    pub access: Option<String>,
    /// Files that exist but that GitHub's contents API does not hand over:
    /// over its 1 MB limit, and so over rigger's own 1 MiB budget.
    pub too_large: Vec<ConfigFile>,
    /// Why the org's `.cirun` repository may exist without rigger being
    /// able to read it (the App is installed on selected repositories and
    /// `.cirun` is not one), in words for the check run.
    pub org_unreadable: Option<String>,
}

/// One of the three config files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFile {
    /// The repository's `.cirun.yml`.
    Repo,
    /// The org's `.cirun/.cirun.global.yml`.
    Org,
    /// The org's `.cirun/.access.yml`.
    Access,
}

/// Whether the runner group rigger registers its runners in serves a
/// repository's jobs (GitHub hands a job only to runners whose group does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupAccess {
    Serves,
    /// It does not; what the org's owner must change, in plain words.
    Refuses(String),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GithubError {
    #[error("rate limited; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: i64 },
    #[error("temporary failure: {0}")]
    Transient(String),
    #[error("refused: {0}")]
    Refused(String),
}

impl GithubError {
    pub fn kind(&self) -> &'static str {
        match self {
            GithubError::RateLimited { .. } => "rate_limited",
            GithubError::Transient(_) => "transient",
            GithubError::Refused(_) => "refused",
        }
    }
}

/// A check run's content.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckRun {
    pub title: String,
    pub summary: String,
    /// `None` while in progress; `success`, `failure`, `neutral`, `cancelled`.
    pub conclusion: Option<&'static str>,
}

pub trait Github: Send + Sync + 'static {
    /// `.cirun.yml` at `git_ref` (a sha, or `None` for the default branch),
    /// and the org's `.cirun/.cirun.global.yml` and `.access.yml`.
    fn config_files(
        &self,
        repo: &RepoRef,
        git_ref: Option<&str>,
    ) -> impl Future<Output = Result<ConfigFiles, GithubError>> + Send;

    fn create_jit_runner(
        &self,
        repo: &RepoRef,
        name: &str,
        labels: &[String],
    ) -> impl Future<Output = Result<JitRunner, GithubError>> + Send;

    fn delete_runner(
        &self,
        repo: &RepoRef,
        runner_id: i64,
    ) -> impl Future<Output = Result<(), GithubError>> + Send;

    /// Runners whose names start with `prefix`, registered where rigger's
    /// jobs are: in these repositories (or their organizations, with
    /// organization runners). Not every repository an installation can
    /// see: listing hundreds of them on every reconciler pass would spend
    /// the installation's hourly API budget in minutes.
    fn list_runners(
        &self,
        prefix: &str,
        at: &[RepoRef],
    ) -> impl Future<Output = Result<Vec<RunnerView>, GithubError>> + Send;

    fn get_job(
        &self,
        repo: &RepoRef,
        job_id: i64,
    ) -> impl Future<Output = Result<GithubJobView, GithubError>> + Send;

    /// Create (no id) or update a check run on `head_sha`; returns its id.
    fn check_run(
        &self,
        repo: &RepoRef,
        head_sha: &str,
        id: Option<i64>,
        run: &CheckRun,
    ) -> impl Future<Output = Result<i64, GithubError>> + Send;

    /// Of these team slugs, the ones `login` belongs to in the repository's org.
    fn teams_of(
        &self,
        repo: &RepoRef,
        login: &str,
        teams: &[String],
    ) -> impl Future<Output = Result<Vec<String>, GithubError>> + Send;

    /// Where a workflow run comes from: `workflow_job` says neither whether
    /// its head commit is from another repository (a fork) nor which event
    /// triggered it.
    fn run_origin(
        &self,
        repo: &RepoRef,
        run_id: i64,
    ) -> impl Future<Output = Result<RunOrigin, GithubError>> + Send;

    /// `admin`, `maintain`, `write`, `triage`, `read` or `None`.
    fn role_of(
        &self,
        repo: &RepoRef,
        login: &str,
    ) -> impl Future<Output = Result<Option<String>, GithubError>> + Send;

    /// Whether the runner group rigger's runners join serves this
    /// repository: always for repository runners; for organization runners
    /// as the group's repository access and public-repository setting say.
    fn runner_group_access(
        &self,
        repo: &RepoRef,
    ) -> impl Future<Output = Result<GroupAccess, GithubError>> + Send;

    /// The SHA-256 GitHub publishes for the Linux runner release file
    /// `filename` for `arch` (`x64`, `arm64`), from the repository's runner
    /// downloads list; `None` when it lists no such file or no checksum.
    fn runner_download_sha256(
        &self,
        repo: &RepoRef,
        arch: &str,
        filename: &str,
    ) -> impl Future<Output = Result<Option<String>, GithubError>> + Send;
}
