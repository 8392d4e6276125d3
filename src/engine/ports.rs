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

    /// Wait `ms` of this clock's time (a call waiting for its rate-limit
    /// slot): real time, unless the clock says otherwise.
    fn sleep_ms(&self, ms: i64) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(crate::millis::to_duration(ms.max(0))))
    }
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

    /// A manual clock moves only when told: the sleeper tells it, as
    /// tokio's paused time jumps to the next timer. So a call that waits
    /// for its slot finds the clock there when it wakes (at once), and a
    /// story stays deterministic; sleepers side by side move it to the
    /// furthest of their ends, never back.
    fn sleep_ms(&self, ms: i64) -> futures_util::future::BoxFuture<'static, ()> {
        let until = self.now_ms().saturating_add(ms.max(0));
        self.0.fetch_max(until, Ordering::SeqCst);
        Box::pin(std::future::ready(()))
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

    /// Take the next create's slot in Vast.ai's rate limit (before the
    /// runner is registered, so a create that must wait costs nothing);
    /// `RateLimited` with the wait when it is not free.
    fn create_slot(&self) -> Result<(), CloudError> {
        Ok(())
    }

    /// A slot from [`Cloud::create_slot`] that no create will use (the
    /// attempt ended before its create call): give it back.
    fn release_create_slot(&self) {}

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
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// GitHub's rate limit (primary or secondary): nothing is sent for
    /// the installation before the wait is over.
    #[error("GitHub's rate limit: rigger waits and asks again in {} s", (.retry_after_ms + 999) / 1000)]
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

/// What [`Github::list_runners`] saw: the runners of the places that
/// answered, and the repositories asked about whose place did not. Nothing
/// is known of an unknown repository's runners, so no rule may act on
/// their absence (a machine there may be busy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerListing {
    pub runners: Vec<RunnerView>,
    /// Each repository of `at` whose runners could not be listed, with why
    /// (one place's error for each of its repositories).
    pub unknown: Vec<(RepoRef, GithubError)>,
}

impl RunnerListing {
    /// The runners, if every place was listed; else why the first was not.
    pub fn everywhere(self) -> Result<Vec<RunnerView>, GithubError> {
        match self.unknown.into_iter().next() {
            None => Ok(self.runners),
            Some((_, e)) => Err(e),
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

/// One attempt to deliver an event to the App's webhook, as GitHub
/// records it (`GET /app/hook/deliveries`).
#[derive(Debug, Clone, PartialEq)]
pub struct HookDelivery {
    /// This attempt's id (what a redelivery is asked for with).
    pub id: i64,
    /// The event's GUID: the `X-GitHub-Delivery` of every attempt of it,
    /// redeliveries included, so the inbox's delivery id.
    pub guid: String,
    pub event: String,
    /// GitHub's `status` was `OK` (the receiver answered 2xx in time).
    pub ok: bool,
    pub redelivery: bool,
    pub delivered_at_ms: i64,
}

/// A page of deliveries, newest first, and the cursor of the next (older)
/// page, if any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HookDeliveryPage {
    pub deliveries: Vec<HookDelivery>,
    pub next_cursor: Option<String>,
}

/// What a request to cancel a workflow run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCancel {
    /// GitHub accepted it (202): the run's unfinished jobs end cancelled.
    Cancelled,
    /// The run is already over (409).
    AlreadyOver,
    /// The App may not (403): it lacks the Actions: write permission.
    NotPermitted,
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
    /// the installation's hourly API budget in minutes. A place that cannot
    /// be listed (its installation rate-limited, GitHub down) hides only its
    /// own runners: the listing says which of `at` are unknown.
    fn list_runners(
        &self,
        prefix: &str,
        at: &[RepoRef],
    ) -> impl Future<Output = RunnerListing> + Send;

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

    /// Whether the runner group rigger's runners join serves this
    /// repository: always for repository runners; for organization runners
    /// as the group's repository access and public-repository setting say.
    fn runner_group_access(
        &self,
        repo: &RepoRef,
    ) -> impl Future<Output = Result<GroupAccess, GithubError>> + Send;

    /// A page of the App's webhook deliveries (App JWT), from `cursor`
    /// (`None`: the newest).
    fn hook_deliveries(
        &self,
        cursor: Option<&str>,
    ) -> impl Future<Output = Result<HookDeliveryPage, GithubError>> + Send;

    /// Ask GitHub to send a delivery again (same GUID).
    fn redeliver(&self, delivery_id: i64) -> impl Future<Output = Result<(), GithubError>> + Send;

    /// Cancel a workflow run (needs Actions: write).
    fn cancel_run(
        &self,
        repo: &RepoRef,
        run_id: i64,
    ) -> impl Future<Output = Result<RunCancel, GithubError>> + Send;

    /// Drop any cached token of an installation: it was uninstalled or
    /// suspended, and its token must not be used again.
    fn forget_installation(&self, installation_id: i64);

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
