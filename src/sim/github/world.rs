//! The simulated GitHub's state: installations, repositories and their
//! files, tokens, runners, jobs, check runs, and the deliveries waiting to be
//! sent. Plain data and rules; `mod.rs` serves it over HTTP.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::super::Rng;

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
}

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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    InProgress,
    Completed,
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
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
}

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
    pub updates: u32,
}

/// A delivery waiting to be sent.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub event: String,
    pub body: Value,
}

/// Delivery faults: lost, sent twice (same delivery id), out of order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookFaults {
    pub loss_rate: f64,
    pub duplicate_rate: f64,
    pub reorder: bool,
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
    pub jobs: BTreeMap<i64, Job>,
    pub check_runs: BTreeMap<i64, CheckRun>,
    /// `org/team → members`.
    pub teams: BTreeMap<String, Vec<String>>,
    /// `(org, id)` of runner groups besides the default group (1).
    pub runner_groups: std::collections::BTreeSet<(String, i64)>,
    pub outbox: Vec<Delivery>,
    pub webhook_faults: WebhookFaults,
    /// JIT configs allowed per minute (GitHub's is about 180), `None` = off.
    pub jit_per_minute: Option<u32>,
    pub jit_window: Vec<i64>,
    /// Answer every API call 403 with `x-ratelimit-remaining: 0` until then.
    pub rate_limited_until_ms: i64,
    /// Answer every API call 403 with `retry-after` (a secondary limit)
    /// until the first, advising the second (seconds).
    pub secondary_limit: (i64, u32),
    /// Route keys (as counted in `requests`) answered with this status the
    /// next this-many times.
    pub failing_routes: BTreeMap<String, (u16, u32)>,
    pub rng: Rng,
    next_id: i64,
    pub requests: BTreeMap<String, u64>,
}

impl World {
    pub fn new(app_id: u64, seed: u64) -> World {
        World {
            app_id,
            org_installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            tokens: BTreeMap::new(),
            secrets_issued: Vec::new(),
            runners: BTreeMap::new(),
            jobs: BTreeMap::new(),
            check_runs: BTreeMap::new(),
            teams: BTreeMap::new(),
            runner_groups: Default::default(),
            outbox: Vec::new(),
            webhook_faults: WebhookFaults::default(),
            jit_per_minute: None,
            jit_window: Vec::new(),
            rate_limited_until_ms: 0,
            secondary_limit: (0, 0),
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
        let id = self.token("");
        let id = format!(
            "{}-{}-{}-{}-{}",
            &id[..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..32]
        );
        self.outbox.push(Delivery {
            id,
            event: "workflow_job".into(),
            body,
        });
    }

    /// GitHub's rule: an idle online runner takes a queued job whose labels
    /// are all among the runner's (the oldest such job first).
    pub fn take_job(&mut self, runner_id: i64, now_ms: i64) -> Option<i64> {
        let runner = self.runners.get(&runner_id)?;
        if runner.status != RunnerStatus::Online || runner.busy {
            return None;
        }
        let job_id = self
            .jobs
            .values()
            .filter(|j| {
                let owner = j.repo.split('/').next().unwrap_or_default();
                j.status == JobStatus::Queued && (j.repo == runner.repo || owner == runner.repo)
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

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A `workflow_job` payload shaped like GitHub's (see `webhook/`).
pub fn job_payload(job: &Job, action: &str, repo: Option<&Repo>) -> Value {
    let owner = job.repo.split('/').next().unwrap_or_default();
    let name = job.repo.split('/').nth(1).unwrap_or_default();
    let api = format!("https://api.github.com/repos/{}", job.repo);
    let status = match job.status {
        JobStatus::Queued => "queued",
        JobStatus::InProgress => "in_progress",
        JobStatus::Completed => "completed",
    };
    json!({
        "action": action,
        "workflow_job": {
            "id": job.id,
            "run_id": job.run_id,
            "run_attempt": job.run_attempt,
            "workflow_name": "gpu-tests",
            "head_branch": job.head_branch,
            "head_sha": job.head_sha,
            "run_url": format!("{api}/actions/runs/{}", job.run_id),
            "url": format!("{api}/actions/jobs/{}", job.id),
            "html_url": format!("https://github.com/{}/actions/runs/{}/job/{}", job.repo, job.run_id, job.id),
            "check_run_url": format!("{api}/check-runs/{}", job.id),
            "status": status,
            "conclusion": job.conclusion,
            "created_at": iso(job.created_ms),
            "started_at": iso(job.started_ms.unwrap_or(job.created_ms)),
            "completed_at": job.completed_ms.map(iso),
            "name": "gpu-job",
            "steps": [],
            "labels": job.labels,
            "runner_id": job.runner_id,
            "runner_name": job.runner_name,
            "runner_group_id": job.runner_id.map(|_| 1),
            "runner_group_name": job.runner_id.map(|_| "Default"),
        },
        "repository": {
            "id": repo.map_or(0, |r| r.id),
            "name": name,
            "full_name": job.repo,
            "private": repo.is_some_and(|r| r.private),
            "owner": {"login": owner, "type": "Organization"},
            "default_branch": repo.map_or("main", |r| r.default_branch.as_str()),
            "fork": false,
        },
        "organization": {"login": owner},
        "sender": {"login": job.actor, "type": "User"},
        "installation": {"id": repo.map_or(0, |r| r.installation)},
    })
}

/// A repository as `GET /repos/{o}/{r}` answers (the fields GitHub always
/// sends that clients read; `api` is the simulator's address).
pub fn repo_json(r: &Repo, api: &str) -> Value {
    let (owner, name) = r.full_name.split_once('/').unwrap_or_default();
    json!({
        "id": r.id,
        "node_id": format!("R_{}", r.id),
        "name": name,
        "full_name": r.full_name,
        "private": r.private,
        "fork": false,
        "owner": account_json(owner, r.installation, api),
        "url": format!("{api}/repos/{}", r.full_name),
        "html_url": format!("https://github.com/{}", r.full_name),
        "default_branch": r.default_branch,
    })
}

/// An account (a repository's owner) with every field GitHub sends.
pub fn account_json(login: &str, id: i64, api: &str) -> Value {
    let user = format!("{api}/users/{login}");
    json!({
        "login": login, "id": id, "node_id": format!("O_{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "", "url": user, "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{user}/followers"),
        "following_url": format!("{user}/following{{/other_user}}"),
        "gists_url": format!("{user}/gists{{/gist_id}}"),
        "starred_url": format!("{user}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{user}/subscriptions"),
        "organizations_url": format!("{user}/orgs"),
        "repos_url": format!("{user}/repos"),
        "events_url": format!("{user}/events{{/privacy}}"),
        "received_events_url": format!("{user}/received_events"),
        "type": "Organization", "site_admin": false,
    })
}

/// A runner as the runner endpoints answer (labels with ids and types).
pub fn runner_json(x: &Runner) -> Value {
    json!({
        "id": x.id,
        "runner_group_id": x.group_id,
        "name": x.name,
        "os": "Linux",
        "status": if x.status == RunnerStatus::Online { "online" } else { "offline" },
        "busy": x.busy,
        "ephemeral": true,
        "labels": x.labels.iter().enumerate().map(|(i, l)| json!({
            "id": i + 1,
            "name": l,
            "type": super::runner::label_type(l),
        })).collect::<Vec<_>>(),
    })
}

/// A git blob id for a file's text (`sha1("blob {len}\0{text}")`, hex).
pub fn blob_sha(text: &str) -> String {
    use aws_lc_rs::digest;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(format!("blob {}\0", text.len()).as_bytes());
    ctx.update(text.as_bytes());
    hex::encode(ctx.finish().as_ref())
}
