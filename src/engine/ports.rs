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

/// GitHub's limit for a check run's `output.summary` (and `output.text`).
/// Its REST reference says "65535 characters"; it also refuses more than
/// 65,535 UTF-8 bytes ("summary exceeds a maximum bytesize of 65535"), the
/// tighter of the two, so rigger counts bytes.
pub const CHECK_SUMMARY_BYTES: usize = 65_535;

/// Most characters of a check run's title and name. GitHub documents no
/// limit for either; this is rigger's own bound (an annotation's title has
/// 255), far above what it writes there.
pub const CHECK_TITLE_CHARS: usize = 255;

impl CheckRun {
    /// The run as GitHub takes it: a summary over [`CHECK_SUMMARY_BYTES`] cut
    /// between characters (at a line's end when one is near), saying how
    /// much was left out and where to see all of it; a title over
    /// [`CHECK_TITLE_CHARS`] cut with `…`. What fits is unchanged.
    pub fn fitted(&self) -> CheckRun {
        CheckRun {
            title: crate::text::clip(&self.title, CHECK_TITLE_CHARS).into_owned(),
            summary: fit_summary(&self.summary),
            conclusion: self.conclusion,
        }
    }
}

fn fit_summary(summary: &str) -> String {
    if summary.len() <= CHECK_SUMMARY_BYTES {
        return summary.to_string();
    }
    let total = summary.chars().count();
    // The note's figure has at most as many digits as `total`.
    let note = |left_out: usize| {
        format!(
            "\n\n---\n**{left_out} of {total} characters are left out here**: GitHub shows at most {CHECK_SUMMARY_BYTES} bytes. \
             Run `rigger validate .cirun.yml` to see every problem in the config file; \
             rigger's operator sees the whole text in the job's log (`rigger jobs list --all`)."
        )
    };
    let budget = CHECK_SUMMARY_BYTES - note(total).len();
    let mut end = summary.floor_char_boundary(budget);
    // End on a whole line if one ends in the last 2,000 bytes.
    if let Some(nl) = summary[..end].rfind('\n')
        && end - nl <= 2_000
    {
        end = nl;
    }
    let kept = &summary[..end];
    let left_out = total - kept.chars().count();
    format!("{kept}{}", note(left_out))
}

/// Which check run: one job's, on its head commit. GitHub shows only the
/// newest run of a name on a commit, so each job's has a name of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckTarget {
    pub head_sha: String,
    /// Set when the run is created, and kept.
    pub name: String,
    /// The job's id: which job the run is about.
    pub external_id: String,
    /// Where the run's "Details" lead: the job on GitHub.
    pub details_url: Option<String>,
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

    /// Create (no id) or update the check run of `target`; returns its id.
    /// What is sent is [`CheckRun::fitted`]: GitHub refuses more.
    fn check_run(
        &self,
        repo: &RepoRef,
        target: &CheckTarget,
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

    /// The role GitHub granted `login` on the repository: `admin`,
    /// `maintain`, `write`, `triage`, `read`, or `None` (no role, no such
    /// user). The `read` everyone has on a public repository is no grant.
    fn role_of(
        &self,
        repo: &RepoRef,
        login: &str,
    ) -> impl Future<Output = Result<Option<String>, GithubError>> + Send;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(summary: String) -> CheckRun {
        CheckRun {
            title: "t".into(),
            summary,
            conclusion: None,
        }
    }

    #[test]
    fn a_summary_is_fitted_to_githubs_byte_limit_between_characters() {
        let short = run("fits".into());
        assert_eq!(short.fitted(), short);
        // 3-byte characters, no line breaks: cut inside the budget, between
        // characters, and the note counts characters.
        let wide = run("日".repeat(30_000));
        let f = wide.fitted().summary;
        assert!(f.len() <= CHECK_SUMMARY_BYTES, "{}", f.len());
        assert!(f.len() > CHECK_SUMMARY_BYTES - 600, "{}", f.len());
        let kept = f.split("\n\n---\n").next().unwrap().chars().count();
        assert!(
            f.contains(&format!(
                "**{} of 30000 characters are left out",
                30_000 - kept
            )),
            "{}",
            &f[f.len() - 400..]
        );
        assert!(f.contains("`rigger validate .cirun.yml`"));
        // Lines: the cut falls at a line's end.
        let lines = run("error: a problem\n".repeat(10_000));
        let f = lines.fitted().summary;
        assert!(f.len() <= CHECK_SUMMARY_BYTES);
        assert!(f.split("\n\n---\n").next().unwrap().ends_with("a problem"));
        // Exactly at the limit: unchanged.
        let exact = run("a".repeat(CHECK_SUMMARY_BYTES));
        assert_eq!(exact.fitted(), exact);
        // Fitting twice changes nothing more.
        let once = wide.fitted();
        assert_eq!(once.fitted(), once);
    }

    #[test]
    fn a_title_is_cut_by_characters() {
        let mut r = run(String::new());
        r.title = "é".repeat(300);
        let t = r.fitted().title;
        assert_eq!(t.chars().count(), CHECK_TITLE_CHARS);
        assert!(t.ends_with('…'));
    }
}
