//! What the engine needs from the outside world, in its own words: a clock,
//! a cloud that rents GPUs, and GitHub. The real implementations wrap the
//! Vast.ai and GitHub clients (`adapters.rs`); the engine never sees a
//! provider's or GitHub's payload types: a runner release, for one, is a
//! [`RunnerRelease`] (version, architecture, URL, SHA-256).

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

    /// The Linux actions/runner release file for `arch`: with `version`
    /// `None`, the one GitHub's runner downloads list names (its current
    /// release, from the repository's list or, for organization runners,
    /// the organization's); else that release's asset, with the SHA-256
    /// GitHub computed for it (`digest`). `None` when there is no such
    /// release or no such file in it.
    fn runner_release(
        &self,
        repo: &RepoRef,
        arch: RunnerArch,
        version: Option<&str>,
    ) -> impl Future<Output = Result<Option<RunnerRelease>, GithubError>> + Send;
}

/// The architectures rigger runs runners on, as actions/runner names its
/// release files (`actions-runner-linux-{x64,arm64}-…`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RunnerArch {
    X64,
    Arm64,
}

impl RunnerArch {
    /// The name in release file names and in `runner.sha256.{arch}`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerArch::X64 => "x64",
            RunnerArch::Arm64 => "arm64",
        }
    }
}

impl std::fmt::Display for RunnerArch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SHA-256, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// 64 hex digits, any case; `None` for anything else.
    pub fn parse(s: &str) -> Option<Sha256Hex> {
        (s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| Sha256Hex(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One actions/runner release file, as GitHub names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRelease {
    /// `2.331.0`.
    pub version: String,
    pub arch: RunnerArch,
    /// Where GitHub serves it.
    pub url: String,
    /// What GitHub says its SHA-256 is; `None` when it says nothing (an
    /// asset uploaded before GitHub computed digests, a list without
    /// `sha256_checksum`).
    pub sha256: Option<Sha256Hex>,
}

impl RunnerRelease {
    /// The file's name as GitHub publishes it, whatever mirror serves it.
    pub fn filename(&self) -> String {
        runner_filename(&self.version, self.arch)
    }
}

/// `actions-runner-linux-{arch}-{version}.tar.gz`.
pub fn runner_filename(version: &str, arch: RunnerArch) -> String {
    format!("actions-runner-linux-{arch}-{version}.tar.gz")
}
