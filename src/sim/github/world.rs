//! The simulated GitHub's state: installations (suspended or deleted as
//! GitHub's are), repositories and their files, tokens, runners, jobs, check
//! runs, the deliveries waiting to be sent and the record of every delivery
//! attempt (`deliveries.rs`); and GitHub's limits: each caller's hourly
//! primary window (an installation's size by GitHub's formula), secondary
//! limits armed or in force, GitHub's standing ones (content-generating
//! requests a minute and an hour, points per endpoint a minute), the JIT
//! rate, and the log of requests seen with
//! their headers. Plain data and rules; `mod.rs` serves it over HTTP, and
//! `shapes.rs` gives what it answers and sends GitHub's shapes (re-exported
//! here).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use base64::Engine as _;

use super::super::Rng;
pub use super::shapes::*;

#[derive(Debug, Clone, Serialize)]
pub struct Repo {
    pub id: i64,
    pub full_name: String,
    pub installation: i64,
    pub default_branch: String,
    pub private: bool,
    /// `ref → path → text`; a ref without files of its own reads the default branch.
    #[serde(skip)]
    pub files: BTreeMap<String, BTreeMap<String, String>>,
    /// `login → role` (admin, maintain, write, triage, read).
    pub collaborators: BTreeMap<String, String>,
    /// Whether the App's installation covers it (an installation on
    /// selected repositories may leave some of its account's out: to the
    /// installation those answer 404, as if they did not exist).
    pub in_installation: bool,
    /// `path → reads` answered 404 before the file is seen: a push not yet
    /// on every replica.
    #[serde(skip)]
    pub lagging: BTreeMap<String, u32>,
}

/// The largest file the contents API hands over with its default media
/// type ("1 MB"); up to 100 MB only `raw` (or `object`, without content).
pub const CONTENTS_LIMIT_BYTES: usize = 1024 * 1024;
/// Past this, the contents API does not serve a file at all.
pub const CONTENTS_MAX_BYTES: usize = 100 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerStatus {
    /// Registered (JIT config made), not yet connected.
    Offline,
    Online,
}

#[derive(Debug, Clone, Serialize)]
pub struct Runner {
    pub id: i64,
    pub name: String,
    /// Where it is registered: `owner/name`, or an organization's login for
    /// an org runner (which takes jobs from any of the org's repositories).
    pub repo: String,
    pub labels: Vec<String>,
    pub status: RunnerStatus,
    pub busy: bool,
    #[serde(skip)]
    pub jit_config: String,
    pub redeemed: bool,
    pub job: Option<i64>,
    pub group_id: i64,
    /// When it was registered (its JIT config made).
    pub registered_ms: i64,
}

/// GitHub removes an ephemeral runner that has not connected for this long.
pub const EPHEMERAL_UNCONNECTED_MS: i64 = 24 * 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    /// Held for its deployment's approval: no runner gets it.
    Waiting,
    InProgress,
    Completed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    /// The job's name as the workflow gives it (`train (a100)` in a matrix).
    pub name: String,
    pub run_id: i64,
    pub run_attempt: i64,
    pub repo: String,
    pub labels: Vec<String>,
    pub head_sha: String,
    pub head_branch: String,
    pub fork: bool,
    /// The event that triggered its run (`push`, `pull_request`, …).
    pub event: String,
    pub actor: String,
    pub status: JobStatus,
    pub conclusion: Option<String>,
    pub runner_id: Option<i64>,
    pub runner_name: Option<String>,
    /// How long the job runs once a runner takes it, and how it ends.
    pub duration_ms: i64,
    pub planned_conclusion: String,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    /// The environment it deploys to, with required reviewers: it waits
    /// for an approval, and its `queued` names its deployment.
    pub environment: Option<String>,
    /// The deployment GitHub made for it (with `environment`).
    pub deployment_id: Option<i64>,
    /// The annotation GitHub shows on a job that failed without its steps
    /// failing (its runner lost communication: `liveness.rs`).
    pub failure_message: Option<String>,
}

/// A check run as GitHub keeps it. GitHub shows, for each name on a
/// commit, only the newest run of that name (see [`displayed`]).
#[derive(Debug, Clone, Serialize)]
pub struct CheckRun {
    pub id: i64,
    pub repo: String,
    pub head_sha: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
    pub text: Option<String>,
    pub external_id: Option<String>,
    pub details_url: Option<String>,
    pub started_ms: i64,
    pub completed_ms: Option<i64>,
    pub updates: u32,
}

/// GitHub's limit for `output.summary` and `output.text`. Its REST
/// reference says "65535 characters"; what it enforces is both: a body
/// over 65,535 characters fails its request schema ("Only 65535 characters
/// are allowed"), and one within that but over 65,535 UTF-8 bytes fails
/// validation ("exceeds a maximum bytesize of 65535", github/docs#35252).
/// The REST reference documents no limit for `output.title`.
pub const OUTPUT_LIMIT: usize = 65_535;

/// Why GitHub refuses a check run's `output` as too long: its 422 body.
pub fn output_refusal(output: &Value) -> Option<Value> {
    for field in ["summary", "text"] {
        let Some(s) = output.get(field).and_then(Value::as_str) else {
            continue;
        };
        let chars = s.chars().count();
        if chars > OUTPUT_LIMIT {
            return Some(json!({
                "message": format!("Invalid request.\n\nOnly {OUTPUT_LIMIT} characters are allowed; {chars} were supplied."),
                "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run",
            }));
        }
        if s.len() > OUTPUT_LIMIT {
            return Some(json!({
                "message": "Validation Failed",
                "errors": [{"resource": "CheckRun", "code": "custom", "field": field,
                            "message": format!("{field} exceeds a maximum bytesize of {OUTPUT_LIMIT}")}],
                "documentation_url": "https://docs.github.com/rest/checks/runs#create-a-check-run",
                "status": "422",
            }));
        }
    }
    None
}

/// What GitHub's UI shows on a commit: of each name, the newest run.
pub fn displayed<'a>(
    runs: impl Iterator<Item = &'a CheckRun>,
    repo: &str,
    sha: &str,
) -> Vec<CheckRun> {
    let mut newest: BTreeMap<&str, &CheckRun> = BTreeMap::new();
    for r in runs.filter(|r| r.repo == repo && r.head_sha == sha) {
        let e = newest.entry(r.name.as_str()).or_insert(r);
        if r.id > e.id {
            *e = r;
        }
    }
    newest.into_values().cloned().collect()
}

/// Who a request to the simulated GitHub counts against: each
/// installation has its own primary budget, the App (JWT calls) its own,
/// and unauthenticated calls share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Caller {
    App,
    Installation(i64),
    Anonymous,
}

/// One primary rate-limit window: it opens at the first request and
/// resets an hour later.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub started_ms: i64,
    pub used: u64,
}

/// A secondary rate limit: armed until a request of `after_route` (any
/// request when `None`) by a matching caller, then every request of theirs
/// is refused for `for_ms`.
#[derive(Debug, Clone, Serialize)]
pub struct SecondaryLimit {
    /// Whose requests it limits (`None`: every installation's and the App's).
    pub installation: Option<i64>,
    /// A route key as `requests` counts them (`POST /repos/o/r/check-runs`).
    pub after_route: Option<String>,
    pub for_ms: i64,
    /// `retry-after` seconds advised, or none (GitHub often sends none).
    pub retry_after_s: Option<u32>,
    /// 403 or 429: GitHub answers either.
    pub status: u16,
    /// When it ends, once triggered.
    pub until_ms: Option<i64>,
}

/// GitHub's secondary limit on content: "no more than 80 content-generating
/// requests per minute and no more than 500 … per hour" ("Rate limits for
/// the REST API"). GitHub does not list which requests generate content;
/// the simulator counts every POST, PATCH, PUT and DELETE.
pub const CONTENT_PER_MINUTE: usize = 80;
pub const CONTENT_PER_HOUR: usize = 500;
/// "No more than 900 points per minute are allowed for REST API endpoints":
/// per endpoint (method and path template), GET, HEAD and OPTIONS 1 point,
/// POST, PATCH, PUT and DELETE 5.
pub const ENDPOINT_POINTS_PER_MINUTE: u32 = 900;

/// Which secondary limit a request is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    Content,
    EndpointPoints,
}

/// Whether a method generates content (and costs 5 points rather than 1).
pub fn is_write(method: &str) -> bool {
    matches!(method, "POST" | "PATCH" | "PUT" | "DELETE")
}

/// An endpoint as GitHub's reference names it: the method and the path
/// template (`POST /repos/{owner}/{repo}/check-runs`), from a route key
/// (`POST /repos/acme/ml/check-runs`, numbers already `:id`).
pub fn endpoint_of(route: &str) -> String {
    let (method, path) = route.split_once(' ').unwrap_or(("", route));
    let mut segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.first().copied() {
        Some("repos") if segs.len() >= 3 => {
            segs[1] = "{owner}";
            segs[2] = "{repo}";
        }
        Some("orgs" | "users") if segs.len() >= 2 => segs[1] = "{org}",
        _ => {}
    }
    format!("{method} /{}", segs.join("/"))
}

impl World {
    /// GitHub's secondary limits on a request of `caller` to `route` at
    /// `now`: over one, it is refused (and counts for nothing); within
    /// them, it is counted.
    pub fn content_and_points(&mut self, caller: Caller, route: &str, now: i64) -> Option<Over> {
        if !self.content_limits || caller == Caller::Anonymous {
            return None;
        }
        let method = route.split(' ').next().unwrap_or("");
        let write = is_write(method);
        let sent = self.content_sent.entry(caller).or_default();
        while sent.front().is_some_and(|t| now - t >= 3_600_000) {
            sent.pop_front();
        }
        if write {
            let last_minute = sent.iter().filter(|t| now - **t < 60_000).count();
            if last_minute >= self.content_per_minute || sent.len() >= self.content_per_hour {
                return Some(Over::Content);
            }
        }
        let points = if write { 5 } else { 1 };
        let spent = self
            .endpoint_points
            .entry((caller, endpoint_of(route)))
            .or_default();
        while spent.front().is_some_and(|(t, _)| now - t >= 60_000) {
            spent.pop_front();
        }
        if spent.iter().map(|(_, p)| p).sum::<u32>() + points > ENDPOINT_POINTS_PER_MINUTE {
            return Some(Over::EndpointPoints);
        }
        spent.push_back((now, points));
        if write {
            self.content_sent.entry(caller).or_default().push_back(now);
        }
        None
    }
}

/// A request as the simulated GitHub saw it: the headers GitHub asks
/// clients to send, and whose budget it counted against.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    pub at_ms: i64,
    pub route: String,
    pub caller: Option<Caller>,
    pub user_agent: Option<String>,
    pub accept: Option<String>,
    pub api_version: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// The most requests kept in [`World::seen`] (the oldest are dropped).
pub const SEEN_KEPT: usize = 200_000;

/// An organization's runner group: which repositories its runners serve.
/// GitHub's default group (1) serves all the org's repositories but, as any
/// new group, no public one until the org allows it.
#[derive(Debug, Clone, Serialize)]
pub struct RunnerGroup {
    pub id: i64,
    pub name: String,
    /// `all`, `selected` (the repositories in `selected`) or `private`.
    pub visibility: String,
    pub allows_public_repositories: bool,
    /// `owner/name` of the repositories a `selected` group serves.
    pub selected: std::collections::BTreeSet<String>,
}

impl RunnerGroup {
    pub fn new(id: i64) -> RunnerGroup {
        RunnerGroup {
            id,
            name: if id == 1 {
                "Default".into()
            } else {
                format!("group-{id}")
            },
            visibility: "all".into(),
            allows_public_repositories: false,
            selected: Default::default(),
        }
    }

    /// Whether its runners may take a job of this repository.
    pub fn serves(&self, repo: &Repo) -> bool {
        let listed = match self.visibility.as_str() {
            "selected" => self.selected.contains(&repo.full_name),
            _ => true,
        };
        let public_ok = repo.private || self.allows_public_repositories;
        let private_only = self.visibility == "private" && !repo.private;
        listed && public_ok && !private_only
    }

    /// As `GET /orgs/{org}/actions/runner-groups/{id}` answers.
    pub fn json(&self, org: &str, api: &str) -> Value {
        let base = format!("{api}/orgs/{org}/actions/runner-groups/{}", self.id);
        let mut v = json!({
            "id": self.id,
            "name": self.name,
            "visibility": self.visibility,
            "default": self.id == 1,
            "runners_url": format!("{base}/runners"),
            "hosted_runners_url": format!("{base}/hosted-runners"),
            "inherited": false,
            "allows_public_repositories": self.allows_public_repositories,
            "restricted_to_workflows": false,
            "selected_workflows": [],
            "workflow_restrictions_read_only": false,
        });
        if self.visibility == "selected" {
            v["selected_repositories_url"] = format!("{base}/repositories").into();
        }
        v
    }
}

/// A delivery waiting to be sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event's GUID (`X-GitHub-Delivery`): a redelivery keeps it.
    pub id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation: Option<i64>,
    pub repository_id: Option<i64>,
    /// Sent again on request (`POST /app/hook/deliveries/{id}/attempts`).
    pub redelivery: bool,
    pub body: Value,
}

impl Delivery {
    /// A first delivery of an event, its GUID drawn from `w`.
    pub fn new(w: &mut World, event: &str, body: Value) -> Delivery {
        let id = w.token("");
        let guid = format!(
            "{}-{}-{}-{}-{}",
            &id[..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..32]
        );
        Delivery {
            id: guid,
            event: event.to_string(),
            action: body["action"].as_str().map(str::to_string),
            installation: body["installation"]["id"].as_i64(),
            repository_id: body["repository"]["id"].as_i64(),
            redelivery: false,
            body,
        }
    }
}

/// Delivery faults: lost, sent twice (same delivery id), out of order, or
/// received but answered too late for GitHub (it records a failure).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookFaults {
    pub loss_rate: f64,
    pub duplicate_rate: f64,
    pub reorder: bool,
    /// Delivered, but GitHub gave up waiting for the answer (10 s): it
    /// records the attempt as failed although the receiver has it.
    pub late_rate: f64,
}

pub struct World {
    pub app_id: u64,
    pub org_installations: BTreeMap<i64, String>,
    pub repos: BTreeMap<String, Repo>,
    /// `token → (installation, expires at ms)`.
    pub tokens: BTreeMap<String, (i64, i64)>,
    /// Every installation token and JIT config handed out, for tests that
    /// check none of them ends up where it must not (I6).
    pub secrets_issued: Vec<String>,
    pub runners: BTreeMap<i64, Runner>,
    /// When each runner was last heard from (`liveness.rs`).
    pub runner_heard_ms: BTreeMap<i64, i64>,
    /// How long a silent runner is believed in.
    pub liveness: super::liveness::Liveness,
    pub jobs: BTreeMap<i64, Job>,
    pub check_runs: BTreeMap<i64, CheckRun>,
    /// `org/team → members`.
    pub teams: BTreeMap<String, Vec<String>>,
    /// `(org, id)` → runner group; an org's default group (1) is as
    /// [`RunnerGroup::new`] makes it unless set here.
    pub runner_groups: BTreeMap<(String, i64), RunnerGroup>,
    pub outbox: Vec<Delivery>,
    /// Every delivery attempt, as `GET /app/hook/deliveries` lists them.
    pub attempts: Vec<super::deliveries::Attempt>,
    pub webhook_faults: WebhookFaults,
    /// Installations suspended (by the account or the App's owner): their
    /// tokens stop working and their events are not delivered.
    pub suspended: std::collections::BTreeSet<i64>,
    /// Installations deleted (the App uninstalled): their tokens are gone.
    pub deleted: std::collections::BTreeSet<i64>,
    /// Repositories taken out of their installation's selection.
    pub removed_repos: std::collections::BTreeSet<String>,
    /// JIT configs allowed per minute, `None` = off; over it the JIT
    /// endpoints answer 422 "the endpoint has been spammed".
    pub jit_per_minute: Option<u32>,
    pub jit_window: Vec<i64>,
    /// Answer every API call 403 with `x-ratelimit-remaining: 0` until then.
    pub rate_limited_until_ms: i64,
    /// Secondary limits armed or in force.
    pub secondary_limits: Vec<SecondaryLimit>,
    /// Primary windows by caller.
    pub windows: BTreeMap<Caller, Window>,
    /// GitHub's secondary limits on content and on each endpoint's points
    /// (on by default, as GitHub's; `false` only for stories that predate them).
    pub content_limits: bool,
    /// Content-generating requests a caller may make a minute and an hour
    /// (GitHub's 80 and 500 unless a story's world runs faster).
    pub content_per_minute: usize,
    pub content_per_hour: usize,
    /// When each caller's content-generating requests were taken (the last hour's).
    pub content_sent: BTreeMap<Caller, std::collections::VecDeque<i64>>,
    /// Each caller's points per endpoint in the last minute: (when, points).
    pub endpoint_points: BTreeMap<(Caller, String), std::collections::VecDeque<(i64, u32)>>,
    /// Answers that were a secondary limit (armed ones, content, points).
    pub secondary_answers: u64,
    /// An installation's hourly limit instead of GitHub's formula (`None`
    /// key: every installation's).
    pub budget_limits: BTreeMap<Option<i64>, u64>,
    /// Every request answered (`/sim` and `/_runner` aside), oldest first.
    pub seen: std::collections::VecDeque<Seen>,
    /// Route keys (as counted in `requests`) answered with this status the
    /// next this-many times.
    pub failing_routes: BTreeMap<String, (u16, u32)>,
    pub rng: Rng,
    next_id: i64,
    pub requests: BTreeMap<String, u64>,
}

impl World {
    /// Whether a login is a GitHub user the world knows: an owner of a
    /// repository, a collaborator, a team member or a job's actor. Anyone
    /// else is no user (GitHub answers 404 for them).
    pub fn user_exists(&self, login: &str) -> bool {
        let same = |x: &str| x.eq_ignore_ascii_case(login);
        self.repos.values().any(|r| {
            same(r.full_name.split('/').next().unwrap_or_default())
                || r.collaborators.keys().any(|c| same(c))
        }) || self.teams.values().flatten().any(|m| same(m))
            || self.jobs.values().any(|j| same(&j.actor))
    }

    pub fn new(app_id: u64, seed: u64) -> World {
        World {
            app_id,
            org_installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            tokens: BTreeMap::new(),
            secrets_issued: Vec::new(),
            runners: BTreeMap::new(),
            runner_heard_ms: BTreeMap::new(),
            liveness: Default::default(),
            jobs: BTreeMap::new(),
            check_runs: BTreeMap::new(),
            teams: BTreeMap::new(),
            runner_groups: Default::default(),
            outbox: Vec::new(),
            attempts: Vec::new(),
            suspended: Default::default(),
            deleted: Default::default(),
            removed_repos: Default::default(),
            webhook_faults: WebhookFaults::default(),
            jit_per_minute: None,
            jit_window: Vec::new(),
            rate_limited_until_ms: 0,
            secondary_limits: Vec::new(),
            windows: BTreeMap::new(),
            content_limits: true,
            content_per_minute: CONTENT_PER_MINUTE,
            content_per_hour: CONTENT_PER_HOUR,
            content_sent: BTreeMap::new(),
            endpoint_points: BTreeMap::new(),
            secondary_answers: 0,
            budget_limits: BTreeMap::new(),
            seen: Default::default(),
            failing_routes: BTreeMap::new(),
            rng: Rng::new(seed),
            next_id: 1000,
            requests: BTreeMap::new(),
        }
    }

    pub fn next_id(&mut self) -> i64 {
        self.next_id += 1 + self.rng.below(7) as i64;
        self.next_id
    }

    /// An opaque secret-looking string.
    pub fn token(&mut self, prefix: &str) -> String {
        format!(
            "{prefix}{:016x}{:016x}",
            self.rng.next_u64(),
            self.rng.next_u64()
        )
    }

    /// An installation access token in GitHub's current format: `ghs_`, the
    /// App id, and a signed JWT naming the installation (stateless tokens,
    /// rolled out from April 2026; some 520 characters, no fixed length).
    pub fn installation_token(&mut self, installation: i64, expires_ms: i64) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let header = b64(br#"{"alg":"RS256","typ":"JWT","kid":"sim"}"#);
        let jti = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        let payload = b64(json!({
            "iss": self.app_id, "sub": installation, "exp": expires_ms / 1000,
            "iat": expires_ms / 1000 - 3600, "jti": jti, "typ": "installation",
        })
        .to_string()
        .as_bytes());
        // An RS256 signature is 256 bytes.
        let sig: Vec<u8> = (0..32)
            .flat_map(|_| self.rng.next_u64().to_le_bytes())
            .collect();
        format!("ghs_{}_{header}.{payload}.{}", self.app_id, b64(&sig))
    }

    /// An installation's hourly primary limit: 5,000, plus 50 for each
    /// repository and each user over 20, at most 12,500 (GitHub's formula
    /// for installations outside GitHub Enterprise Cloud), unless set.
    pub fn installation_limit(&self, installation: i64) -> u64 {
        if let Some(n) = self
            .budget_limits
            .get(&Some(installation))
            .or_else(|| self.budget_limits.get(&None))
        {
            return *n;
        }
        let repos = self
            .repos
            .values()
            .filter(|r| r.installation == installation)
            .count() as u64;
        let owner = self.org_installations.get(&installation);
        let mut users = std::collections::BTreeSet::new();
        for r in self
            .repos
            .values()
            .filter(|r| r.installation == installation)
        {
            users.extend(r.collaborators.keys().cloned());
        }
        for (team, members) in &self.teams {
            if owner.is_some_and(|o| team.split('/').next() == Some(o.as_str())) {
                users.extend(members.iter().cloned());
            }
        }
        let users = users.len() as u64;
        (5_000 + 50 * repos.saturating_sub(20) + 50 * users.saturating_sub(20)).min(12_500)
    }

    /// A caller's hourly primary limit.
    pub fn limit_of(&self, caller: Caller) -> u64 {
        match caller {
            Caller::Installation(i) => self.installation_limit(i),
            Caller::App => 5_000,
            Caller::Anonymous => 60,
        }
    }

    /// A caller's window at `now` (a new one when the last has reset).
    pub fn window(&mut self, caller: Caller, now_ms: i64) -> &mut Window {
        let w = self.windows.entry(caller).or_insert(Window {
            started_ms: now_ms,
            used: 0,
        });
        if now_ms >= w.started_ms + 3_600_000 {
            *w = Window {
                started_ms: now_ms,
                used: 0,
            };
        }
        w
    }

    /// The installation an account's repositories belong to (made on first use).
    pub fn installation_of(&mut self, owner: &str) -> i64 {
        if let Some((id, _)) = self.org_installations.iter().find(|(_, o)| *o == owner) {
            return *id;
        }
        let id = self.next_id();
        self.org_installations.insert(id, owner.to_string());
        id
    }

    pub fn file(&self, repo: &str, path: &str, git_ref: Option<&str>) -> Option<&String> {
        let r = self.repos.get(repo)?;
        let at = git_ref.unwrap_or(&r.default_branch);
        r.files
            .get(at)
            .and_then(|f| f.get(path))
            .or_else(|| r.files.get(&r.default_branch)?.get(path))
    }

    /// Queue a `workflow_job` delivery for a job's current state.
    pub fn announce(&mut self, job_id: i64, action: &str) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let body = job_payload(job, action, self.repos.get(&job.repo));
        self.send("workflow_job", body);
    }

    /// Queue a delivery of an event, unless its installation is suspended
    /// or gone: GitHub blocks a suspended App's webhook events.
    pub fn send(&mut self, event: &str, body: Value) {
        let d = Delivery::new(self, event, body);
        if let Some(i) = d.installation
            && event != "installation"
            && (self.suspended.contains(&i) || self.deleted.contains(&i))
        {
            return;
        }
        self.outbox.push(d);
    }

    /// Whether an installation can use the API: not suspended, not deleted.
    pub fn installation_usable(&self, id: i64) -> bool {
        self.org_installations.contains_key(&id)
            && !self.suspended.contains(&id)
            && !self.deleted.contains(&id)
    }

    /// GitHub's rule: an ephemeral runner that has not connected for more
    /// than a day is removed ("communicating with self-hosted runners").
    pub fn expire_runners(&mut self, now_ms: i64) {
        self.runners
            .retain(|_, r| r.redeemed || now_ms - r.registered_ms <= EPHEMERAL_UNCONNECTED_MS);
    }

    /// An org's runner group, the default group (1) included.
    pub fn runner_group(&self, org: &str, id: i64) -> Option<RunnerGroup> {
        match self.runner_groups.get(&(org.to_string(), id)) {
            Some(g) => Some(g.clone()),
            None => (id == 1).then(|| RunnerGroup::new(1)),
        }
    }

    /// GitHub's rule: an idle online runner takes a queued job whose labels
    /// are all among the runner's (the oldest such job first). An org
    /// runner takes only jobs of repositories its runner group serves.
    pub fn take_job(&mut self, runner_id: i64, now_ms: i64) -> Option<i64> {
        let runner = self.runners.get(&runner_id)?;
        if runner.status != RunnerStatus::Online || runner.busy {
            return None;
        }
        let group = (!runner.repo.contains('/'))
            .then(|| self.runner_group(&runner.repo, runner.group_id))
            .flatten();
        let job_id = self
            .jobs
            .values()
            .filter(|j| {
                let owner = j.repo.split('/').next().unwrap_or_default();
                j.status == JobStatus::Queued && (j.repo == runner.repo || owner == runner.repo)
            })
            .filter(|j| match (&group, self.repos.get(&j.repo)) {
                (Some(g), Some(repo)) => g.serves(repo),
                (Some(_), None) => false,
                (None, _) => true,
            })
            .filter(|j| {
                j.labels
                    .iter()
                    .all(|l| runner.labels.iter().any(|r| r.eq_ignore_ascii_case(l)))
            })
            .min_by_key(|j| (j.created_ms, j.id))?
            .id;
        let name = runner.name.clone();
        if let Some(r) = self.runners.get_mut(&runner_id) {
            r.busy = true;
            r.job = Some(job_id);
        }
        if let Some(j) = self.jobs.get_mut(&job_id) {
            j.status = JobStatus::InProgress;
            j.runner_id = Some(runner_id);
            j.runner_name = Some(name);
            j.started_ms = Some(now_ms);
        }
        self.announce(job_id, "in_progress");
        Some(job_id)
    }

    /// A reviewer approves the deployment of a waiting job: GitHub queues it
    /// for a runner and says so with `queued`, now with status `queued`.
    pub fn approve(&mut self, job_id: i64) -> bool {
        match self.jobs.get_mut(&job_id) {
            Some(j) if j.status == JobStatus::Waiting => j.status = JobStatus::Queued,
            _ => return false,
        }
        self.announce(job_id, "queued");
        true
    }

    /// End a job; its JIT runner is removed, as GitHub removes JIT runners
    /// after one job.
    pub fn complete(&mut self, job_id: i64, conclusion: &str, now_ms: i64) -> bool {
        let Some(j) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        if j.status == JobStatus::Completed {
            return false;
        }
        j.status = JobStatus::Completed;
        j.conclusion = Some(conclusion.to_string());
        j.completed_ms = Some(now_ms);
        if j.started_ms.is_none() {
            j.started_ms = Some(now_ms);
        }
        if let Some(rid) = j.runner_id {
            self.runners.remove(&rid);
        }
        self.announce(job_id, "completed");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_limits_are_80_a_minute_and_500_an_hour_per_caller() {
        let mut w = World::new(1, 1);
        let inst = Caller::Installation(7);
        let post = "POST /repos/acme/ml/check-runs";
        let patch = "PATCH /repos/acme/ml/check-runs/:id";
        for i in 0..40 {
            assert_eq!(w.content_and_points(inst, post, i), None);
            assert_eq!(w.content_and_points(inst, patch, i), None);
        }
        // The 81st write of the minute is refused, whatever its endpoint;
        // reads and other callers are not.
        assert_eq!(
            w.content_and_points(inst, "DELETE /orgs/acme/actions/runners/:id", 100),
            Some(Over::Content)
        );
        assert_eq!(w.content_and_points(inst, "GET /repos/acme/ml", 100), None);
        assert_eq!(w.content_and_points(Caller::App, post, 100), None);
        // A minute later 80 more, up to 500 in the hour.
        let mut at = 60_000;
        let mut taken = 80;
        while taken < 500 {
            if w.content_and_points(inst, patch, at).is_none() {
                taken += 1;
            } else {
                at += 60_000;
            }
        }
        assert!(at < 3_600_000, "{at}");
        assert_eq!(
            w.content_and_points(inst, patch, at + 60_000),
            Some(Over::Content)
        );
        assert_eq!(
            w.content_and_points(inst, patch, 3_600_000),
            None,
            "the hour is over"
        );
        // Off: nothing is refused.
        w.content_limits = false;
        for _ in 0..100 {
            assert_eq!(w.content_and_points(inst, post, 3_600_001), None);
        }
    }

    #[test]
    fn one_endpoint_takes_900_points_a_minute() {
        let mut w = World::new(1, 1);
        let inst = Caller::Installation(7);
        for _ in 0..900 {
            assert_eq!(
                w.content_and_points(inst, "GET /repos/acme/ml/actions/jobs/:id", 0),
                None
            );
        }
        assert_eq!(
            w.content_and_points(inst, "GET /repos/acme/other/actions/jobs/:id", 0),
            Some(Over::EndpointPoints),
            "another repository's jobs are the same endpoint"
        );
        assert_eq!(
            w.content_and_points(inst, "GET /repos/acme/ml/actions/runs/:id", 0),
            None
        );
        assert_eq!(
            w.content_and_points(inst, "GET /repos/acme/ml/actions/jobs/:id", 60_000),
            None
        );
        assert_eq!(
            endpoint_of("PATCH /repos/acme/ml/check-runs/:id"),
            "PATCH /repos/{owner}/{repo}/check-runs/:id"
        );
    }
}
