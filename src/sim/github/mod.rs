//! The simulated GitHub: the App API (JWT, installation tokens), the REST
//! calls rigger makes, a runner side for simulated runners, a control API to
//! script repositories and jobs, and a webhook sender with loss, duplicates
//! and reordering. Served over real HTTP; time from an injected clock.
//!
//! Control API (JSON, no auth):
//! - `POST /sim/repos` `{"repo":"o/r","default_branch":"main","private":true,"files":{".cirun.yml":"…"},"collaborators":{"octocat":"write"}}`
//!   (`"private": false`: a public repository; private is the default)
//! - `POST /sim/jobs` `{"repo":"o/r","labels":["cirun-gpu--1"],"head_sha":"…","fork":false,"event":"push","actor":"octocat","duration_s":60,"conclusion":"success"}` → `{"job_id":…}` (`event` defaults to `pull_request` for a fork, `push` otherwise)
//! - `POST /sim/jobs/{id}/cancel`
//! - `POST /sim/jobs` with `"environment":"production"`: a job deploying to an environment with
//!   required reviewers: `queued` (status `waiting`, with its `deployment`), then `waiting`; its
//!   REST answer says `waiting` and no runner gets it until `POST /sim/jobs/{id}/approve`
//!   (`queued` again, status `queued`) or `POST /sim/jobs/{id}/reject` (`completed`, `failure`)
//! - `POST /sim/webhooks` `{"loss_rate":0.1,"duplicate_rate":0.1,"reorder":true,"late_rate":0.1}`
//!   (`late_rate`: received, but answered after GitHub stopped waiting, so
//!   recorded as failed); every attempt is recorded as GitHub records it, a
//!   lost or refused one as failed (`deliveries.rs`)
//! - `POST /sim/installations/{id}/suspend`, `…/unsuspend`, `…/delete`: the
//!   installation's tokens stop working (suspended: 403 "This installation
//!   has been suspended", for minting too; deleted: 401, minting 404), its
//!   events stop (but the `installation` event itself), and the event is sent
//!   (its `sender`, and a suspension's `suspended_by`, is the account's owner, the user
//!   `{account}-owner`, as GitHub names the person who acted)
//! - `POST /sim/repos/{o}/{r}/remove-from-installation`: its installation no
//!   longer reaches it (404); `installation_repositories.removed` is sent
//! - `POST /sim/runner-groups` `{"org":"acme","id":7,"visibility":"selected","allows_public_repositories":false,"repositories":["acme/ml"]}`:
//!   make or change a runner group (1, the default group, always exists: visibility `all`, no public
//!   repositories, as GitHub's); every field but `org` and `id` is optional and keeps what the group had.
//!   An org runner takes only jobs of repositories its group serves; `GET /orgs/{org}/actions/runner-groups/{id}`
//!   and `.../repositories` answer as GitHub's
//! - `POST /sim/repos` also takes `"private":false` (a public repository; repositories are private by default),
//!   `"in_installation":false` (the App is installed on selected repositories and this is not one: to the
//!   installation it answers 404 as if it did not exist, and `GET /installation/repositories` says
//!   `repository_selection: selected`) and `"lag_reads":{".cirun.yml":1}` (that many reads of a file answer 404
//!   first, as right after a push)
//! - Contents: a file over 1 MiB answers `403 too_large` with the default media type, `encoding: none` and no
//!   content with `application/vnd.github.object+json`, the file with `application/vnd.github.raw+json`;
//!   over 100 MiB, `403 too_large` whatever the media type
//! - `POST /sim/limits` (keys combine):
//!   - `{"jit_per_minute":180}` (`null`: off): over it the JIT endpoints answer 422
//!     "Validation failed, or the endpoint has been spammed." (no advice);
//!   - `{"rate_limit_for_s":60}`: every call is over the primary limit (403,
//!     `x-ratelimit-remaining: 0`, `x-ratelimit-reset` then);
//!   - `{"hourly_limit":100,"installation":123}`: that installation's hourly budget instead of
//!     GitHub's formula (5,000 + 50 per repository and per user over 20, at most 12,500);
//!     without `installation`, every installation's;
//!   - `{"use_up_budget":123}` → `{"reset_ms":…}`: that installation's budget is used up until
//!     its window resets (an hour after its first request);
//!   - `{"secondary":{"for_s":60,"status":403,"retry_after_s":null,"installation":123,"after_route":"GET /repos/acme/ml/collaborators/octocat/permission"}}`:
//!     a secondary limit, armed until the first request of `after_route` (any request when
//!     absent) of `installation` (any caller when absent), then every request of that caller
//!     is refused for `for_s` with GitHub's message, 403 or 429, `retry-after` only if given;
//!   - `{"secondary_limit_for_s":60,"retry_after_s":30}`: every caller, at once, with `retry-after`;
//!   - `{"content_limits":false}`: GitHub's standing secondary limits off (they are on by
//!     default, as on GitHub; only for stories about something else that make more calls in a
//!     simulated instant than GitHub allows).
//!
//! GitHub's standing secondary limits, always in force unless switched off: each caller
//! (an installation, the App's JWT) may make 80 content-generating requests a minute and 500
//! an hour (counted: every POST, PATCH, PUT and DELETE; GitHub does not list them), and spend
//! 900 points a minute on one endpoint (method and path template; GET 1 point, a write 5).
//! Over either, GitHub's 403 "You have exceeded a secondary rate limit…" (for content: "…and
//! have been temporarily blocked from content creation"), without `retry-after`; a refused
//! request counts for nothing. [`SimGithub::secondary_answers`] counts secondary-limit answers.
//! - `POST /sim/installations/{id}/revoke-tokens`: the installation's tokens answer 401 from now
//! - `GET /sim/seen`: every API request answered, with its `User-Agent`, `Accept`,
//!   `X-GitHub-Api-Version` and whose budget it counted against
//! - `GET /sim/state`: jobs, runners, check runs, requests counted by route,
//!   every delivery attempt, installations suspended or deleted
//!
//! App API (JWT) besides tokens: `GET /app/hook/deliveries` (`per_page`,
//! `cursor`, `status`; `Link` to the next page), `GET
//! /app/hook/deliveries/{id}`, `POST /app/hook/deliveries/{id}/attempts`
//! (202; sent again with the same GUID). Installation API besides what
//! `rest.rs` lists: `POST /repos/{o}/{r}/actions/runs/{id}/cancel` (202,
//! the run's unfinished jobs end `cancelled`; 409 once it is over).
//!
//! Collaborators: `GET /repos/{o}/{r}/collaborators/{login}/permission`
//! answers as GitHub does: a collaborator's role; for anyone else `read`
//! (`role_name` `read`) on a public repository, which everyone may read,
//! and `none` on a private one; 404 for a login that is no user (users are
//! the repositories' owners, collaborators, team members and jobs'
//! actors). `GET /repos/{o}/{r}/collaborators/{login}` is 204 only for a
//! collaborator.
//!
//! Check runs: `output.summary` and `output.text` over 65,535 characters, or
//! over 65,535 UTF-8 bytes, are refused 422 with GitHub's messages;
//! `external_id` and `details_url` are kept; answers have the OpenAPI
//! `check-run` shape. [`SimGithub::displayed_check_runs`] is what GitHub's
//! UI shows on a commit: the newest run of each name.
//!
//! Every API answer carries `x-ratelimit-limit`, `-remaining`, `-used`, `-reset` and
//! `-resource` for its caller's budget (each installation, the App's JWT calls, and
//! unauthenticated calls have their own hourly window). A request without a `User-Agent`
//! is refused (403) before anything else. Installation tokens are GitHub's current
//! stateless format, `ghs_{app id}_{JWT}` (some 520 characters), answered as the OpenAPI
//! `installation-token` schema (`token`, `expires_at`, `permissions`, `repository_selection`).
//!
//! Runner side (what a runner uses, authenticated by its JIT config):
//! - `GET /_runner/download/actions-runner-linux-{x64,arm64}-{version}.tar.gz`:
//!   the simulated runner releases (`releases.rs`): the current one
//!   (`releases::CURRENT`), which the runner downloads lists name, and an
//!   older one (`releases::PREVIOUS`), found by
//!   `GET /repos/actions/runner/releases/tags/v{version}`
//! - `POST /_runner/connect` `{"jit_config":"…"}` → the runner comes online (single use)
//! - `POST /_runner/{id}/next` → `{"job":{…}}` or `{"job":null}`
//! - `POST /_runner/{id}/finish` `{"job_id":…,"conclusion":"success"}`
//!
//! Webhooks go out as an App's do: signed (`X-Hub-Signature-256`), with
//! `X-GitHub-Event`, `X-GitHub-Delivery`, `X-GitHub-Hook-ID` and the target
//! (`X-GitHub-Hook-Installation-Target-Type: integration`, `…-Target-ID`:
//! the App's id). Their payloads' URLs are GitHub.com's
//! (`https://api.github.com/…`, `world::WEBHOOK_API`), as GitHub's are;
//! REST answers point at the simulator, so that a client can follow them.
//!
//! Answers and webhook payloads have the shapes of GitHub's OpenAPI
//! description (`world.rs`'s shape functions); `tests/github_contract.rs`
//! holds them to it, over a recording: [`SimGithub::record`] keeps every API
//! exchange and webhook until [`SimGithub::take_recorded`] (`record.rs`).
//!
//! Here: the simulator and the calls tests make on it; `http.rs` routes,
//! authenticates and serves the App API; `rest.rs` the installation calls;
//! `control.rs` `/sim` and `/_runner`; `world.rs` the state and the shapes;
//! `record.rs` the recording; `runner.rs` the simulated runner and what
//! GitHub checks of a JIT runner; `releases.rs` the runner releases and
//! their lookups; `deliveries.rs` the record of delivery attempts and the
//! App's webhook-deliveries API.

mod control;
pub mod deliveries;
mod http;
pub mod liveness;
pub mod record;
pub mod releases;
mod rest;
pub mod runner;
pub mod shapes;
pub mod world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use axum::Router;
use base64::Engine as _;
use futures_util::StreamExt;

use crate::engine::ports::Clock;
use crate::github::webhook::sign;
use crate::settings::Secret;
use deliveries::Outcome;
pub use world::{
    Caller, CheckRun, Job, JobStatus, Runner, RunnerGroup, RunnerStatus, SecondaryLimit, Seen,
    WebhookFaults,
};
use world::{Delivery, Repo, World};

/// The App's webhook, as `X-GitHub-Hook-ID` names it.
pub const WEBHOOK_ID: u64 = 471_230_118;

/// Installation tokens live this long, as GitHub's do.
pub const TOKEN_LIFETIME_MS: i64 = 3_600_000;

#[derive(Clone)]
pub struct SimGithubConfig {
    pub app_id: u64,
    pub seed: u64,
    /// Where deliveries go, and the secret they are signed with.
    pub webhook_url: Option<String>,
    pub webhook_secret: Secret,
    /// Deliveries `serve` sends at once: 1 (in order) unless asked. GitHub
    /// sends from many workers and promises no order; the engine benchmark
    /// asks for 16.
    pub deliveries_in_flight: usize,
}

impl Default for SimGithubConfig {
    fn default() -> Self {
        SimGithubConfig {
            app_id: 812_345,
            seed: 1,
            webhook_url: None,
            webhook_secret: Secret::new("sim-webhook-secret"),
            deliveries_in_flight: 1,
        }
    }
}

struct Inner {
    world: Mutex<World>,
    clock: Arc<dyn Clock>,
    private_pem: Secret,
    public_key: Vec<u8>,
    webhook_url: Mutex<Option<String>>,
    webhook_secret: Secret,
    deliveries_in_flight: usize,
    http: reqwest::Client,
    /// The address runners reach this simulator at (put in JIT configs).
    public_url: Mutex<String>,
    /// Real seconds a simulated runner spends per simulated second of job.
    runner_time_scale: Mutex<f64>,
    releases: Mutex<releases::Releases>,
    /// What `record(true)` keeps (see `record.rs`).
    recorder: record::Recorder,
    /// JIT registrations still to hold (`hold_next_registrations`).
    registration_holds: Mutex<usize>,
    /// How many registrations have been held so far.
    registrations_held: tokio::sync::watch::Sender<usize>,
    /// Raised to answer every registration held so far.
    registration_releases: tokio::sync::watch::Sender<u64>,
}

#[derive(Clone)]
pub struct SimGithub(Arc<Inner>);

/// Why a simulated GitHub could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate the simulated App's RSA key")]
pub struct KeyError;

/// A new job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub repo: String,
    pub labels: Vec<String>,
    pub head_sha: String,
    pub fork: bool,
    pub actor: String,
    pub duration_ms: i64,
    pub conclusion: String,
}

impl NewJob {
    /// As [`SimGithub::queue_job`] takes it, for a job on a default branch.
    pub fn on(repo: &str, label: &str) -> NewJob {
        NewJob {
            repo: repo.to_string(),
            labels: vec![label.to_string()],
            head_sha: "8f3c1e2d".into(),
            fork: false,
            actor: "octocat".into(),
            duration_ms: 600_000,
            conclusion: "success".into(),
        }
    }
}

impl SimGithub {
    /// Leave the next `n` JIT registrations (`generate-jitconfig`) without
    /// an answer until [`SimGithub::release_held_registrations`], as a slow
    /// GitHub would: a story pauses a provisioning worker there, after it
    /// last read its job and before it writes its machine's row. Nothing is
    /// registered until the answer.
    pub fn hold_next_registrations(&self, n: usize) {
        *self
            .0
            .registration_holds
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += n;
    }

    /// Wait until `n` registrations in all have been held.
    pub async fn registrations_held(&self, n: usize) {
        let mut held = self.0.registrations_held.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = held.wait_for(|&count| count >= n).await;
    }

    /// Answer every registration held so far.
    pub fn release_held_registrations(&self) {
        self.0.registration_releases.send_modify(|r| *r += 1);
    }

    /// Hold this request if it is a registration and one is to be held.
    async fn maybe_hold(&self, route: &str) {
        if !route.starts_with("POST ") || !route.ends_with("/actions/runners/generate-jitconfig") {
            return;
        }
        {
            let mut left = self
                .0
                .registration_holds
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if *left == 0 {
                return;
            }
            *left -= 1;
        }
        let mut releases = self.0.registration_releases.subscribe();
        let now = *releases.borrow_and_update();
        self.0.registrations_held.send_modify(|n| *n += 1);
        let _ = releases.wait_for(|&r| r > now).await;
    }

    pub fn new(config: SimGithubConfig, clock: Arc<dyn Clock>) -> Result<SimGithub, KeyError> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError)?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key).map_err(|_| KeyError)?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        Ok(SimGithub(Arc::new(Inner {
            world: Mutex::new(World::new(config.app_id, config.seed)),
            clock,
            private_pem: Secret::new(pem),
            public_key: key.public_key().as_ref().to_vec(),
            webhook_url: Mutex::new(config.webhook_url),
            webhook_secret: config.webhook_secret,
            deliveries_in_flight: config.deliveries_in_flight.max(1),
            http: reqwest::Client::new(),
            public_url: Mutex::new("http://127.0.0.1".into()),
            runner_time_scale: Mutex::new(0.0),
            releases: Mutex::default(),
            recorder: record::Recorder::default(),
            registration_holds: Mutex::default(),
            registrations_held: tokio::sync::watch::Sender::new(0),
            registration_releases: tokio::sync::watch::Sender::new(0),
        })))
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.0.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> i64 {
        self.0.clock.now_ms()
    }

    pub fn app_id(&self) -> u64 {
        self.world().app_id
    }

    /// The App's private key, PEM (what rigger's `github.private_key_file` holds).
    pub fn private_key_pem(&self) -> &Secret {
        &self.0.private_pem
    }

    /// The address runners reach the simulator at (`serve` sets it).
    pub fn set_public_url(&self, url: &str) {
        *self.0.public_url.lock().unwrap_or_else(|p| p.into_inner()) =
            url.trim_end_matches('/').to_string();
    }

    pub fn public_url(&self) -> String {
        self.0
            .public_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How long a simulated runner really runs a job: its scripted duration
    /// times this (0: at once; 1/60: a minute in a second).
    pub fn set_runner_time_scale(&self, scale: f64) {
        *self
            .0
            .runner_time_scale
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = scale;
    }

    pub fn set_webhook_url(&self, url: Option<String>) {
        *self.0.webhook_url.lock().unwrap_or_else(|p| p.into_inner()) = url;
    }

    pub fn set_webhook_faults(&self, f: WebhookFaults) {
        self.world().webhook_faults = f;
    }

    /// GitHub's JIT limit (`None`: off).
    pub fn set_jit_per_minute(&self, n: Option<u32>) {
        self.world().jit_per_minute = n;
    }

    /// GitHub's secondary limits on content (80 a minute, 500 an hour per
    /// caller) and on each endpoint's points (900 a minute): on by default.
    pub fn set_content_limits(&self, on: bool) {
        self.world().content_limits = on;
    }

    /// The content limits' figures, for a world that runs `per_minute` /
    /// 80 times as fast as GitHub's (a soak whose jobs last seconds).
    pub fn set_content_limit_figures(&self, per_minute: usize, per_hour: usize) {
        let mut w = self.world();
        w.content_per_minute = per_minute;
        w.content_per_hour = per_hour;
    }

    /// How many answers were a secondary limit (armed, content or points).
    pub fn secondary_answers(&self) -> u64 {
        self.world().secondary_answers
    }

    /// Answer every API call as rate limited for this long.
    pub fn rate_limit_for(&self, ms: i64) {
        let now = self.now();
        self.world().rate_limited_until_ms = now + ms;
    }

    /// The next `times` calls of one route (a key as [`SimGithub::requests`]
    /// counts them, e.g. `GET /repos/acme/ml/collaborators/octocat/permission`)
    /// are answered `status`: 502 as GitHub does when it has a bad moment,
    /// 403 as when the App lacks a permission.
    pub fn fail_route(&self, route: &str, times: u32, status: u16) {
        self.world()
            .failing_routes
            .insert(route.to_string(), (status, times));
    }

    /// Answer every API call as over a secondary limit for this long,
    /// advising `retry-after: retry_after_s`.
    pub fn secondary_limit_for(&self, ms: i64, retry_after_s: u32) {
        let now = self.now();
        self.secondary_limit(SecondaryLimit {
            installation: None,
            after_route: None,
            for_ms: ms,
            retry_after_s: Some(retry_after_s),
            status: 403,
            until_ms: Some(now + ms),
        });
    }

    /// Arm (or, with `until_ms` set, impose) a secondary limit: from the
    /// first request of its route, every request of its installation is
    /// refused for its time, with or without `retry-after`.
    pub fn secondary_limit(&self, limit: SecondaryLimit) {
        self.world().secondary_limits.push(limit);
    }

    /// An installation's hourly primary limit, instead of GitHub's formula
    /// (`None`: every installation's).
    pub fn set_hourly_limit(&self, installation: Option<i64>, limit: u64) {
        self.world().budget_limits.insert(installation, limit);
    }

    /// Use up what is left of an installation's primary budget: its calls
    /// are refused (403, `x-ratelimit-remaining: 0`) until its window
    /// resets, an hour after it opened. Returns the reset (ms).
    pub fn use_up_budget(&self, installation: i64) -> i64 {
        let now = self.now();
        let mut w = self.world();
        let caller = world::Caller::Installation(installation);
        let limit = w.limit_of(caller);
        let win = w.window(caller, now);
        win.used = win.used.max(limit);
        win.started_ms + 3_600_000
    }

    /// Revoke every token of an installation (as `DELETE /installation/token`
    /// or a suspension does): they answer 401 from now on.
    pub fn revoke_tokens(&self, installation: i64) {
        let mut w = self.world();
        let revoked: Vec<String> = w
            .tokens
            .iter()
            .filter(|(_, (i, _))| *i == installation)
            .map(|(t, _)| t.clone())
            .collect();
        for t in revoked {
            w.tokens.remove(&t);
        }
    }

    /// Every request the API answered (`/sim` and `/_runner` aside), oldest
    /// first, with the headers GitHub asks for.
    pub fn seen(&self) -> Vec<Seen> {
        self.world().seen.iter().cloned().collect()
    }

    /// Requests an installation made from `since_ms` on.
    pub fn requests_of(&self, installation: i64, since_ms: i64) -> Vec<Seen> {
        self.world()
            .seen
            .iter()
            .filter(|s| {
                s.at_ms >= since_ms && s.caller == Some(world::Caller::Installation(installation))
            })
            .cloned()
            .collect()
    }

    /// Rename a repository's default branch (its files move with it).
    pub fn set_default_branch(&self, repo: &str, branch: &str) {
        if let Some(r) = self.world().repos.get_mut(repo) {
            let old = std::mem::replace(&mut r.default_branch, branch.to_string());
            if let Some(files) = r.files.remove(&old) {
                r.files.entry(branch.to_string()).or_default().extend(files);
            }
        }
    }

    /// Create a repository (and its owner's installation) with files on its
    /// default branch.
    pub fn add_repo(&self, full_name: &str, files: &[(&str, &str)]) {
        let mut w = self.world();
        let owner = full_name.split('/').next().unwrap_or_default().to_string();
        let installation = w.installation_of(&owner);
        let id = w.next_id();
        let mut on_main = std::collections::BTreeMap::new();
        for (p, t) in files {
            on_main.insert(p.to_string(), t.to_string());
        }
        let repo = w
            .repos
            .entry(full_name.to_string())
            .or_insert_with(|| Repo {
                id,
                full_name: full_name.to_string(),
                installation,
                default_branch: "main".into(),
                private: true,
                files: Default::default(),
                collaborators: Default::default(),
                in_installation: true,
                lagging: Default::default(),
            });
        repo.files.entry("main".into()).or_default().extend(on_main);
    }

    /// Files at one ref (a branch or a commit sha).
    pub fn add_files_at(&self, repo: &str, git_ref: &str, files: &[(&str, &str)]) {
        let mut w = self.world();
        if let Some(r) = w.repos.get_mut(repo) {
            let at = r.files.entry(git_ref.to_string()).or_default();
            for (p, t) in files {
                at.insert(p.to_string(), t.to_string());
            }
        }
    }

    /// A private repository (the default) or a public one, which everyone
    /// may read: GitHub answers `read` for anyone's permission on it.
    pub fn set_private(&self, repo: &str, private: bool) {
        if let Some(r) = self.world().repos.get_mut(repo) {
            r.private = private;
        }
    }

    pub fn set_role(&self, repo: &str, login: &str, role: &str) {
        if let Some(r) = self.world().repos.get_mut(repo) {
            r.collaborators.insert(login.to_string(), role.to_string());
        }
    }

    pub fn add_team_member(&self, org: &str, team: &str, login: &str) {
        self.world()
            .teams
            .entry(format!("{org}/{team}"))
            .or_default()
            .push(login.to_string());
    }

    /// A runner group in an organization, besides the default group (1):
    /// all the org's private repositories, as GitHub makes a new group.
    pub fn add_runner_group(&self, org: &str, id: i64) {
        self.set_runner_group(org, RunnerGroup::new(id));
    }

    /// Make or change a runner group (the default group, 1, too): what an
    /// org's owner sets in Settings → Actions → Runner groups.
    pub fn set_runner_group(&self, org: &str, group: RunnerGroup) {
        let mut w = self.world();
        w.installation_of(org);
        w.runner_groups.insert((org.to_string(), group.id), group);
    }

    /// An org's runner group as it is now (the default group, 1, always).
    pub fn runner_group(&self, org: &str, id: i64) -> Option<RunnerGroup> {
        self.world().runner_group(org, id)
    }

    /// The next `reads` reads of a file answer 404, as right after a push
    /// that has not reached every replica.
    pub fn lag_file(&self, repo: &str, path: &str, reads: u32) {
        if let Some(r) = self.world().repos.get_mut(repo) {
            r.lagging.insert(path.to_string(), reads);
        }
    }

    /// Leave a repository out of its owner's installation (installed on
    /// selected repositories), or put it back.
    pub fn set_in_installation(&self, repo: &str, included: bool) {
        if let Some(r) = self.world().repos.get_mut(repo) {
            r.in_installation = included;
        }
    }

    pub fn installation_of(&self, owner: &str) -> i64 {
        self.world().installation_of(owner)
    }

    /// The account (or the App's owner) suspends an installation: its
    /// tokens stop working (403) and no event of its reaches the App, but
    /// for `installation.suspend` itself. `false` if there is no such
    /// installation.
    pub fn suspend_installation(&self, id: i64) -> bool {
        self.installation_event(id, "suspend", |w| {
            w.suspended.insert(id);
        })
    }

    /// The suspension is lifted: tokens can be minted again.
    pub fn unsuspend_installation(&self, id: i64) -> bool {
        self.installation_event(id, "unsuspend", |w| {
            w.suspended.remove(&id);
        })
    }

    /// The App is uninstalled: the installation's tokens are revoked (401),
    /// none can be minted (404), and `installation.deleted` is sent.
    pub fn delete_installation(&self, id: i64) -> bool {
        self.installation_event(id, "deleted", |w| {
            w.deleted.insert(id);
            w.tokens.retain(|_, (inst, _)| *inst != id);
        })
    }

    fn installation_event(&self, id: i64, action: &str, change: impl FnOnce(&mut World)) -> bool {
        // A webhook's URLs are GitHub.com's, not the simulator's.
        let api = world::WEBHOOK_API;
        let now = self.now();
        let mut w = self.world();
        if !w.org_installations.contains_key(&id) || w.deleted.contains(&id) {
            return false;
        }
        change(&mut w);
        let login = w.org_installations.get(&id).cloned().unwrap_or_default();
        let body = serde_json::json!({
            "action": action,
            "installation": world::installation_event_json(&w, id, now, api),
            "sender": world::user_json(&world::installation_admin(&login), api),
        });
        w.send("installation", body);
        true
    }

    /// A repository is taken out of its installation's selection: the
    /// installation's tokens no longer reach it (404) and
    /// `installation_repositories.removed` is sent.
    pub fn remove_repo_from_installation(&self, repo: &str) -> bool {
        let api = world::WEBHOOK_API;
        let now = self.now();
        let mut w = self.world();
        let Some(r) = w.repos.get(repo).cloned() else {
            return false;
        };
        if !w.removed_repos.insert(repo.to_string()) {
            return false;
        }
        let login = w
            .org_installations
            .get(&r.installation)
            .cloned()
            .unwrap_or_default();
        let body = serde_json::json!({
            "action": "removed",
            "installation": world::installation_event_json(&w, r.installation, now, api),
            "repository_selection": "selected",
            "repositories_added": [],
            "repositories_removed": [world::repo_lite_json(&r)],
            "requester": null,
            "sender": world::user_json(&world::installation_admin(&login), api),
        });
        w.send("installation_repositories", body);
        true
    }

    /// Queue a job; its `queued` delivery waits in the outbox.
    pub fn queue_job(&self, j: NewJob) -> i64 {
        self.queue_job_in(j, None, "gpu-job")
    }

    /// Queue a job with this name (`workflow_job.name`: a matrix job's name
    /// carries its matrix values, `train (a100)`).
    pub fn queue_named_job(&self, j: NewJob, name: &str) -> i64 {
        self.queue_job_in(j, None, name)
    }

    /// Queue a job that deploys to `environment`, which has required
    /// reviewers: GitHub sends `queued` with status `waiting` and the
    /// deployment, then `waiting`; no runner gets it until
    /// [`SimGithub::approve`] (or [`SimGithub::reject`]).
    pub fn queue_job_for_environment(&self, j: NewJob, environment: &str) -> i64 {
        self.queue_job_in(j, Some(environment), "gpu-job")
    }

    fn queue_job_in(&self, j: NewJob, environment: Option<&str>, name: &str) -> i64 {
        let now = self.now();
        let mut w = self.world();
        let id = w.next_id() * 1000;
        let run_id = w.next_id() * 100;
        w.jobs.insert(
            id,
            Job {
                id,
                name: name.to_string(),
                run_id,
                run_attempt: 1,
                repo: j.repo,
                labels: j.labels,
                head_sha: j.head_sha,
                head_branch: "main".into(),
                fork: j.fork,
                event: if j.fork { "pull_request" } else { "push" }.into(),
                actor: j.actor,
                status: JobStatus::Queued,
                conclusion: None,
                runner_id: None,
                runner_name: None,
                duration_ms: j.duration_ms,
                planned_conclusion: j.conclusion,
                created_ms: now,
                started_ms: None,
                completed_ms: None,
                environment: None,
                deployment_id: None,
                failure_message: None,
            },
        );
        if let Some(env) = environment {
            let deployment = w.next_id();
            if let Some(job) = w.jobs.get_mut(&id) {
                job.status = JobStatus::Waiting;
                job.environment = Some(env.to_string());
                job.deployment_id = Some(deployment);
            }
        }
        w.announce(id, "queued");
        if environment.is_some() {
            w.announce(id, "waiting");
        }
        id
    }

    /// A reviewer approves a waiting job's deployment: `queued` again, with
    /// status `queued`, and runners may take it. False if it was not waiting.
    pub fn approve(&self, job_id: i64) -> bool {
        self.world().approve(job_id)
    }

    /// A reviewer rejects a waiting job's deployment: the job fails without
    /// ever reaching a runner (`completed`, conclusion `failure`).
    pub fn reject(&self, job_id: i64) -> bool {
        let now = self.now();
        let mut w = self.world();
        if w.jobs
            .get(&job_id)
            .is_none_or(|j| j.status != JobStatus::Waiting)
        {
            return false;
        }
        w.complete(job_id, "failure", now)
    }

    /// Say which event triggered a job's run (a fork's is `pull_request`,
    /// others `push` unless set here).
    pub fn set_event(&self, job_id: i64, event: &str) {
        if let Some(j) = self.world().jobs.get_mut(&job_id) {
            j.event = event.to_string();
        }
    }

    pub fn cancel_job(&self, job_id: i64) -> bool {
        let now = self.now();
        self.world().complete(job_id, "cancelled", now)
    }

    pub fn jobs(&self) -> Vec<Job> {
        self.world().jobs.values().cloned().collect()
    }

    pub fn job(&self, id: i64) -> Option<Job> {
        self.world().jobs.get(&id).cloned()
    }

    /// Every installation token and JIT config this GitHub handed out.
    pub fn secrets_issued(&self) -> Vec<String> {
        self.world().secrets_issued.clone()
    }

    pub fn runners(&self) -> Vec<Runner> {
        let now = self.now();
        let mut w = self.world();
        w.expire_runners(now);
        w.runners.values().cloned().collect()
    }

    pub fn check_runs(&self) -> Vec<CheckRun> {
        self.world().check_runs.values().cloned().collect()
    }

    /// The check runs GitHub shows on a commit: of each name, the newest
    /// (an older run of the same name is hidden, whatever it says).
    pub fn displayed_check_runs(&self, repo: &str, sha: &str) -> Vec<CheckRun> {
        world::displayed(self.world().check_runs.values(), repo, sha)
    }

    /// Requests answered for `METHOD /route` (ids as `:id`).
    pub fn requests(&self, key: &str) -> u64 {
        self.world().requests.get(key).copied().unwrap_or(0)
    }

    /// A runner side for tests: connect with a JIT config (single use).
    pub fn connect_runner(&self, jit_config: &str) -> Option<i64> {
        let mut w = self.world();
        let r = w
            .runners
            .values_mut()
            .find(|r| r.jit_config == jit_config && !r.redeemed)?;
        r.redeemed = true;
        r.status = RunnerStatus::Online;
        let id = r.id;
        let now = self.now();
        w.heard_from(id, now);
        Some(id)
    }

    /// The runner renews its job's lock (or polls, idle): `false` when
    /// GitHub no longer knows it (its job was cancelled or ended, and its
    /// JIT runner went with it), which tells a runner to stop.
    pub fn runner_heartbeat(&self, runner_id: i64) -> bool {
        let now = self.now();
        let mut w = self.world();
        w.heard_from(runner_id, now);
        w.runners.contains_key(&runner_id)
    }

    /// Apply GitHub's rule for silent runners now (`liveness.rs`): they go
    /// offline, and their jobs fail once their lock runs out. Returns the
    /// jobs failed.
    pub fn lose_silent_runners(&self) -> Vec<i64> {
        let now = self.now();
        self.world().lose_silent_runners(now)
    }

    /// How long silent runners are believed in: GitHub's figures by
    /// default; a soak whose jobs last seconds shortens them with its time.
    pub fn set_liveness(&self, l: liveness::Liveness) {
        self.world().liveness = l;
    }

    /// The runner stops polling (its host is down): GitHub shows it offline.
    pub fn runner_goes_offline(&self, runner_id: i64) -> bool {
        match self.world().runners.get_mut(&runner_id) {
            Some(r) => {
                r.status = RunnerStatus::Offline;
                true
            }
            None => false,
        }
    }

    pub fn take_job(&self, runner_id: i64) -> Option<i64> {
        let now = self.now();
        let mut w = self.world();
        w.heard_from(runner_id, now);
        w.take_job(runner_id, now)
    }

    pub fn finish_job(&self, job_id: i64, conclusion: &str) -> bool {
        let now = self.now();
        self.world().complete(job_id, conclusion, now)
    }

    /// Send what is in the outbox to the webhook URL, one at a time and in
    /// order (tests step through deliveries), with the delivery faults
    /// applied. Returns how many deliveries reached it (2xx).
    pub async fn flush(&self) -> usize {
        self.deliver_outbox(1).await
    }

    /// As [`SimGithub::flush`], with up to `in_flight` deliveries at once, as
    /// GitHub's many senders do: what `serve` uses.
    pub async fn deliver_outbox(&self, in_flight: usize) -> usize {
        let url = self
            .0
            .webhook_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = self.now();
        // (delivery, what the fault injection decided: None = send it,
        // Some(outcome) = it never gets an answer in time)
        let batch: Vec<(Delivery, Option<Outcome>)> = {
            let mut w = self.world();
            let mut batch: Vec<Delivery> = std::mem::take(&mut w.outbox);
            let f = w.webhook_faults.clone();
            if f.reorder && batch.len() > 1 {
                for i in (1..batch.len()).rev() {
                    let j = w.rng.below(i + 1);
                    batch.swap(i, j);
                }
            }
            let mut out = Vec::new();
            for d in batch {
                if f.loss_rate > 0.0 && w.rng.chance(f.loss_rate) {
                    // Lost on the way: GitHub records a failed attempt.
                    w.record_attempt(&d, Outcome::Unreachable, now);
                    continue;
                }
                let twice = f.duplicate_rate > 0.0 && w.rng.chance(f.duplicate_rate);
                if twice {
                    out.push((d.clone(), None));
                }
                let late = f.late_rate > 0.0 && w.rng.chance(f.late_rate);
                out.push((d, late.then_some(Outcome::TooLate)));
            }
            if url.is_none() {
                for (d, _) in out.drain(..) {
                    w.record_attempt(&d, Outcome::Unreachable, now);
                }
            }
            out
        };
        let Some(url) = url else {
            return 0;
        };
        // An App's webhook: its target is the App (`integration`, the App's id).
        let app_id = self.app_id().to_string();
        let send = |(d, fault): (Delivery, Option<Outcome>)| {
            let body = d.body.to_string().into_bytes();
            let headers = [
                ("content-type", "application/json".to_string()),
                ("user-agent", "GitHub-Hookshot/sim".into()),
                ("x-github-event", d.event.clone()),
                ("x-github-delivery", d.id.clone()),
                ("x-github-hook-id", WEBHOOK_ID.to_string()),
                (
                    "x-github-hook-installation-target-type",
                    "integration".into(),
                ),
                ("x-github-hook-installation-target-id", app_id.clone()),
                ("x-hub-signature-256", sign(&self.0.webhook_secret, &body)),
            ];
            self.0.recorder.webhook(&headers, &d.body);
            let mut request = self.0.http.post(&url);
            for (k, v) in &headers {
                request = request.header(*k, v);
            }
            let request = request.body(body);
            async move {
                let outcome = match request.send().await {
                    Ok(r) => Outcome::Answered(r.status().as_u16()),
                    Err(_) => Outcome::Unreachable,
                };
                let outcome = fault.unwrap_or(outcome);
                self.world().record_attempt(&d, outcome, self.now());
                usize::from(matches!(outcome, Outcome::Answered(c) if (200..300).contains(&c)))
            }
        };
        futures_util::stream::iter(batch)
            .map(send)
            .buffered(in_flight.max(1))
            .fold(0, |delivered, ok| async move { delivered + ok })
            .await
    }

    /// Every delivery attempt GitHub recorded, oldest first.
    pub fn delivery_attempts(&self) -> Vec<deliveries::Attempt> {
        self.world().attempts.clone()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .fallback(record::recorded)
            .with_state(self.clone())
    }

    /// Serve until the process ends, delivering webhooks as they appear.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.set_public_url(&format!("http://{}", listener.local_addr()?));
        let sender = self.clone();
        let in_flight = self.0.deliveries_in_flight;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                sender.lose_silent_runners();
                sender.deliver_outbox(in_flight).await;
            }
        });
        axum::serve(listener, self.router()).await
    }
}
