//! The simulated GitHub: the App API (JWT, installation tokens), the REST
//! calls rigger makes, a runner side for simulated runners, a control API to
//! script repositories and jobs, and a webhook sender with loss, duplicates
//! and reordering. Served over real HTTP; time from an injected clock.
//!
//! Control API (JSON, no auth):
//! - `POST /sim/repos` `{"repo":"o/r","default_branch":"main","private":true,"files":{".cirun.yml":"…"},"collaborators":{"octocat":"write"}}`
//! - `POST /sim/jobs` `{"repo":"o/r","labels":["cirun-gpu--1"],"head_sha":"…","fork":false,"event":"push","actor":"octocat","duration_s":60,"conclusion":"success"}` → `{"job_id":…}` (`event` defaults to `pull_request` for a fork, `push` otherwise)
//! - `POST /sim/jobs/{id}/cancel`
//! - `POST /sim/webhooks` `{"loss_rate":0.1,"duplicate_rate":0.1,"reorder":true}`
//! - `POST /sim/runner-groups` `{"org":"acme","id":7}`: a runner group for org-level JIT runners (1, the default group, always exists)
//! - `POST /sim/limits` `{"jit_per_minute":180}` (`null`: off), `{"rate_limit_for_s":60}` (primary:
//!   403, `x-ratelimit-remaining: 0`) or `{"secondary_limit_for_s":60,"retry_after_s":30}` (403, `retry-after`)
//! - `GET /sim/state`: jobs, runners, check runs, requests counted by route
//!
//! Runner side (what a runner uses, authenticated by its JIT config):
//! - `GET /_runner/download/actions-runner-linux-{x64,arm64}-{version}.tar.gz`:
//!   the simulated runner release (`runner::tarball`), whose checksum
//!   `GET /repos/{o}/{r}/actions/runners/downloads` lists
//! - `POST /_runner/connect` `{"jit_config":"…"}` → the runner comes online (single use)
//! - `POST /_runner/{id}/next` → `{"job":{…}}` or `{"job":null}`
//! - `POST /_runner/{id}/finish` `{"job_id":…,"conclusion":"success"}`

pub mod runner;
pub mod world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::engine::ports::Clock;
use crate::github::webhook::sign;
use crate::settings::Secret;
pub use world::{CheckRun, Job, JobStatus, Runner, RunnerStatus, WebhookFaults};
use world::{Delivery, Repo, World};

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
    tarball: (Vec<u8>, String),
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

impl SimGithub {
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
            tarball: runner::tarball(),
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

    /// The runner release's URL template for rigger's `runner.url_template`,
    /// and its SHA-256 for `runner.sha256.x64`.
    pub fn runner_release(&self) -> (String, String) {
        (
            format!(
                "{}/_runner/download/actions-runner-linux-{{arch}}-{{version}}.tar.gz",
                self.public_url()
            ),
            self.0.tarball.1.clone(),
        )
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

    /// Answer every API call as rate limited for this long.
    pub fn rate_limit_for(&self, ms: i64) {
        let now = self.now();
        self.world().rate_limited_until_ms = now + ms;
    }

    /// Answer every API call as over a secondary limit for this long,
    /// advising `retry-after: retry_after_s`.
    pub fn secondary_limit_for(&self, ms: i64, retry_after_s: u32) {
        let now = self.now();
        self.world().secondary_limit = (now + ms, retry_after_s);
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

    /// A runner group in an organization, besides the default group (1).
    pub fn add_runner_group(&self, org: &str, id: i64) {
        let mut w = self.world();
        w.installation_of(org);
        w.runner_groups.insert((org.to_string(), id));
    }

    pub fn installation_of(&self, owner: &str) -> i64 {
        self.world().installation_of(owner)
    }

    /// Queue a job; its `queued` delivery waits in the outbox.
    pub fn queue_job(&self, j: NewJob) -> i64 {
        let now = self.now();
        let mut w = self.world();
        let id = w.next_id() * 1000;
        let run_id = w.next_id() * 100;
        w.jobs.insert(
            id,
            Job {
                id,
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
            },
        );
        w.announce(id, "queued");
        id
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

    pub fn runners(&self) -> Vec<Runner> {
        self.world().runners.values().cloned().collect()
    }

    pub fn check_runs(&self) -> Vec<CheckRun> {
        self.world().check_runs.values().cloned().collect()
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
        Some(r.id)
    }

    pub fn take_job(&self, runner_id: i64) -> Option<i64> {
        let now = self.now();
        self.world().take_job(runner_id, now)
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
        let batch: Vec<Delivery> = {
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
                    continue;
                }
                let twice = f.duplicate_rate > 0.0 && w.rng.chance(f.duplicate_rate);
                if twice {
                    out.push(d.clone());
                }
                out.push(d);
            }
            out
        };
        let Some(url) = url else {
            return 0;
        };
        let send = |d: Delivery| {
            let body = d.body.to_string().into_bytes();
            let request = self
                .0
                .http
                .post(&url)
                .header("content-type", "application/json")
                .header("user-agent", "GitHub-Hookshot/sim")
                .header("x-github-event", &d.event)
                .header("x-github-delivery", &d.id)
                .header("x-github-hook-installation-target-type", "integration")
                .header("x-hub-signature-256", sign(&self.0.webhook_secret, &body))
                .body(body);
            async move {
                let sent = request.send().await;
                usize::from(sent.is_ok_and(|r| r.status().is_success()))
            }
        };
        futures_util::stream::iter(batch)
            .map(send)
            .buffered(in_flight.max(1))
            .fold(0, |delivered, ok| async move { delivered + ok })
            .await
    }

    pub fn router(&self) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }

    /// Serve until the process ends, delivering webhooks as they appear.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        self.set_public_url(&format!("http://{}", listener.local_addr()?));
        let sender = self.clone();
        let in_flight = self.0.deliveries_in_flight;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                sender.deliver_outbox(in_flight).await;
            }
        });
        axum::serve(listener, self.router()).await
    }

    /// Check an App JWT: RS256 with the App's key, `iss` the App id, not
    /// expired, and at most 10 minutes long.
    fn verify_jwt(&self, jwt: &str) -> Result<(), &'static str> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("A JSON web token could not be decoded");
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let sig = b64
            .decode(s)
            .map_err(|_| "A JSON web token could not be decoded")?;
        let key =
            UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.0.public_key);
        key.verify(format!("{h}.{p}").as_bytes(), &sig)
            .map_err(|_| "the JSON web token's signature does not match the App's key")?;
        let claims: Value = b64
            .decode(p)
            .ok()
            .and_then(|c| serde_json::from_slice(&c).ok())
            .ok_or("A JSON web token could not be decoded")?;
        let now = self.now() / 1000;
        let iat = claims["iat"].as_i64().unwrap_or(i64::MAX);
        let exp = claims["exp"].as_i64().unwrap_or(0);
        if claims["iss"].as_str() != Some(&self.app_id().to_string())
            && claims["iss"].as_u64() != Some(self.app_id())
        {
            return Err("'Issuer' claim ('iss') must be the App id");
        }
        if exp <= now {
            return Err("'Expiration time' claim ('exp') is too far in the past");
        }
        if iat > now + 60 || exp - iat > 660 {
            return Err("'Expiration time' claim ('exp') is too far in the future");
        }
        Ok(())
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn gh_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

/// One page of a list, as GitHub pages: `per_page` (at most 100) and
/// `page`, `total_count` in the body, and a `Link` header with `next` and
/// `last` (absolute URLs at the simulator's address) while more remain.
fn paged(
    api: &str,
    path: &str,
    q: &dyn Fn(&str) -> Option<String>,
    key: &str,
    all: Vec<Value>,
) -> Response {
    let per_page = q("per_page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page = q("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let total = all.len();
    let last = total.div_ceil(per_page).max(1);
    let items: Vec<Value> = all
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut r = json_response(StatusCode::OK, json!({"total_count": total, key: items}));
    if page < last {
        let link = |n: usize, rel: &str| {
            format!("<{api}{path}?per_page={per_page}&page={n}>; rel=\"{rel}\"")
        };
        let v = format!("{}, {}", link(page + 1, "next"), link(last, "last"));
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

/// A query value as sent (`%XX` escapes, `+` for a space).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
                    Ok(x) => {
                        out.push(x);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Who is calling.
enum Caller {
    App,
    Installation(i64),
}

fn route_key(method: &Method, path: &str) -> String {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| if s.parse::<i64>().is_ok() { ":id" } else { s })
        .collect();
    format!("{method} /{}", segs.join("/"))
}

async fn dispatch(
    State(sim): State<SimGithub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let seg: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), percent_decode(v)))
        })
        .collect();
    let q = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    match seg.first().copied() {
        Some("sim") => return control(&sim, &method, &seg[1..], &body),
        Some("_runner") => return runner_side(&sim, &method, &seg[1..], &body),
        _ => {}
    }
    let now = sim.now();
    {
        let mut w = sim.world();
        *w.requests.entry(route_key(&method, &path)).or_default() += 1;
        let (until, advice) = w.secondary_limit;
        if now < until {
            let mut r = gh_error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
            );
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(advice));
            return r;
        }
        if now < w.rate_limited_until_ms {
            let reset = (w.rate_limited_until_ms / 1000).to_string();
            let mut r = gh_error(
                StatusCode::FORBIDDEN,
                "API rate limit exceeded for installation.",
            );
            let h = r.headers_mut();
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            if let Ok(v) = HeaderValue::from_str(&reset) {
                h.insert("x-ratelimit-reset", v);
            }
            return r;
        }
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or("")
        .to_string();
    let caller = if bearer.matches('.').count() == 2 {
        match sim.verify_jwt(&bearer) {
            Ok(()) => Caller::App,
            Err(m) => return gh_error(StatusCode::UNAUTHORIZED, m),
        }
    } else {
        let w = sim.world();
        match w.tokens.get(&bearer) {
            Some((inst, exp)) if *exp > now => Caller::Installation(*inst),
            Some(_) => {
                return gh_error(
                    StatusCode::UNAUTHORIZED,
                    "Bad credentials (the token expired)",
                );
            }
            None => return gh_error(StatusCode::UNAUTHORIZED, "Bad credentials"),
        }
    };
    let mut resp = match caller {
        Caller::App => app_api(&sim, &method, &seg, &q, now),
        Caller::Installation(inst) => repo_api(&sim, inst, &method, &seg, &q, &body, now),
    };
    let h = resp.headers_mut();
    h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from_static("4999"));
    resp
}

fn app_api(
    sim: &SimGithub,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    now: i64,
) -> Response {
    let mut w = sim.world();
    match (method, seg) {
        (&Method::GET, ["app", "installations"]) => {
            let page: usize = q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let list: Vec<Value> = w
                .org_installations
                .iter()
                .skip((page.max(1) - 1) * 100)
                .take(100)
                .map(|(id, login)| json!({"id": id, "account": {"login": login}, "app_id": w.app_id}))
                .collect();
            json_response(StatusCode::OK, Value::Array(list))
        }
        (&Method::POST, ["app", "installations", id, "access_tokens"]) => {
            let Some(inst) = id
                .parse::<i64>()
                .ok()
                .filter(|i| w.org_installations.contains_key(i))
            else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let token = w.token("ghs_");
            let expires = now + TOKEN_LIFETIME_MS;
            w.tokens.insert(token.clone(), (inst, expires));
            let at = chrono::DateTime::from_timestamp_millis(expires)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            json_response(
                StatusCode::CREATED,
                json!({"token": token, "expires_at": at, "repository_selection": "all"}),
            )
        }
        (&Method::GET, ["repos", o, r, "installation"]) => match w.repos.get(&format!("{o}/{r}")) {
            Some(repo) => json_response(
                StatusCode::OK,
                json!({"id": repo.installation, "account": {"login": o}, "app_id": w.app_id}),
            ),
            None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
        },
        _ => gh_error(
            StatusCode::FORBIDDEN,
            "A JSON web token cannot be used to access this endpoint: use an installation token",
        ),
    }
}

fn repo_api(
    sim: &SimGithub,
    inst: i64,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    body: &Value,
    now: i64,
) -> Response {
    let api = sim.public_url();
    let mut w = sim.world();
    if let ["repos", o, r, ..] = seg {
        let full = format!("{o}/{r}");
        match w.repos.get(&full) {
            Some(repo) if repo.installation == inst => {}
            _ => return gh_error(StatusCode::NOT_FOUND, "Not Found"),
        }
    }
    match (method, seg) {
        (&Method::GET, ["installation", "repositories"]) => {
            let repos: Vec<Value> = w
                .repos
                .values()
                .filter(|r| r.installation == inst)
                .map(|r| world::repo_json(r, &api))
                .collect();
            paged(&api, "/installation/repositories", q, "repositories", repos)
        }
        (&Method::GET, ["repos", o, r]) => {
            let full = format!("{o}/{r}");
            match w.repos.get(&full) {
                Some(repo) => json_response(StatusCode::OK, world::repo_json(repo, &api)),
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::GET, ["repos", o, r, "contents", path @ ..]) => {
            let full = format!("{o}/{r}");
            match w.file(&full, &path.join("/"), q("ref").as_deref()) {
                Some(text) => {
                    // Base64 in 60-character lines, as GitHub sends it.
                    let b64 = base64::engine::general_purpose::STANDARD.encode(text);
                    let wrapped: Vec<&str> = b64
                        .as_bytes()
                        .chunks(60)
                        .map(|c| std::str::from_utf8(c).unwrap_or_default())
                        .collect();
                    let p = path.join("/");
                    let sha = world::blob_sha(text);
                    let url = format!("{api}/repos/{full}/contents/{p}");
                    let git = format!("{api}/repos/{full}/git/blobs/{sha}");
                    let html = format!(
                        "https://github.com/{full}/blob/{}/{p}",
                        q("ref").unwrap_or_default()
                    );
                    json_response(
                        StatusCode::OK,
                        json!({"type": "file", "encoding": "base64", "name": path.last(), "path": p,
                               "sha": sha, "size": text.len(), "url": url, "git_url": git, "html_url": html,
                               "download_url": null, "content": wrapped.join("\n") + "\n",
                               "_links": {"self": url, "git": git, "html": html}}),
                    )
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (
            &Method::POST,
            [
                kind @ ("repos" | "orgs"),
                scope @ ..,
                "actions",
                "runners",
                "generate-jitconfig",
            ],
        ) if scope.len() == if *kind == "repos" { 2 } else { 1 } => {
            let name = body["name"].as_str().unwrap_or_default().to_string();
            let labels: Vec<String> = body["labels"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            if name.is_empty()
                || labels.is_empty()
                || labels.len() > 100
                || body["runner_group_id"].as_i64().is_none()
            {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation failed: name, runner_group_id and 1-100 labels are required",
                );
            }
            let full = scope.join("/");
            if *kind == "orgs" {
                if w.org_installations.get(&inst).is_none_or(|o| o != &full) {
                    return gh_error(StatusCode::NOT_FOUND, "Not Found");
                }
                // Organizations have the default group (1) and those made
                // with `POST /sim/runner-groups`.
                let group = body["runner_group_id"].as_i64().unwrap_or(0);
                if group != 1 && !w.runner_groups.contains(&(full.clone(), group)) {
                    return gh_error(StatusCode::NOT_FOUND, "Runner group not found");
                }
            } else if body["runner_group_id"].as_i64() != Some(1) {
                return gh_error(
                    StatusCode::NOT_FOUND,
                    "Runner group not found: a repository has only the default group (1)",
                );
            }
            if w.runners.values().any(|x| x.name == name && x.repo == full) {
                return gh_error(
                    StatusCode::CONFLICT,
                    "A runner with this name already exists",
                );
            }
            if let Some(limit) = w.jit_per_minute {
                w.jit_window.retain(|t| now - t < 60_000);
                if w.jit_window.len() as u32 >= limit {
                    let mut r = gh_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        "You have exceeded a secondary rate limit.",
                    );
                    r.headers_mut()
                        .insert("retry-after", HeaderValue::from_static("60"));
                    return r;
                }
                w.jit_window.push(now);
            }
            let id = w.next_id();
            let token = w.token("jit_");
            let jit = base64::engine::general_purpose::STANDARD
                .encode(json!({"url": sim.public_url(), "token": token}).to_string());
            let mut all_labels = vec!["self-hosted".to_string(), "Linux".into(), "X64".into()];
            all_labels.extend(labels.iter().cloned());
            w.runners.insert(
                id,
                Runner {
                    id,
                    name: name.clone(),
                    repo: full,
                    labels: all_labels.clone(),
                    status: RunnerStatus::Offline,
                    busy: false,
                    jit_config: jit.clone(),
                    redeemed: false,
                    job: None,
                    group_id: body["runner_group_id"].as_i64().unwrap_or(1),
                },
            );
            let label_objs: Vec<Value> = all_labels
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"id": i + 1, "name": l, "type": if i < 3 { "read-only" } else { "custom" }}))
                .collect();
            json_response(
                StatusCode::CREATED,
                json!({"runner": {"id": id, "runner_group_id": body["runner_group_id"], "name": name, "os": "unknown", "status": "offline", "busy": false, "labels": label_objs},
                       "encoded_jit_config": jit}),
            )
        }
        (&Method::GET, ["repos", _, _, "actions", "runners", "downloads"]) => json_response(
            StatusCode::OK,
            runner::downloads(&sim.public_url(), &sim.0.tarball.1),
        ),
        (&Method::GET, [kind @ ("repos" | "orgs"), scope @ .., "actions", "runners"])
            if scope.len() == if *kind == "repos" { 2 } else { 1 } =>
        {
            let full = scope.join("/");
            if *kind == "orgs" && w.org_installations.get(&inst).is_none_or(|o| o != &full) {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            }
            let name = q("name");
            let list: Vec<Value> = w
                .runners
                .values()
                .filter(|x| x.repo == full && name.as_ref().is_none_or(|n| &x.name == n))
                .map(world::runner_json)
                .collect();
            paged(
                &api,
                &format!("/{kind}/{full}/actions/runners"),
                q,
                "runners",
                list,
            )
        }
        (
            &Method::DELETE,
            [
                kind @ ("repos" | "orgs"),
                scope @ ..,
                "actions",
                "runners",
                id,
            ],
        ) if scope.len() == if *kind == "repos" { 2 } else { 1 } => {
            let full = scope.join("/");
            let id = id.parse::<i64>().unwrap_or(-1);
            match w.runners.get(&id).filter(|x| x.repo == full) {
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
                Some(x) if x.busy => gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Bad request - Runner is still running a job",
                ),
                Some(_) => {
                    w.runners.remove(&id);
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        }
        (&Method::GET, ["repos", o, r, "actions", "jobs", id]) => {
            let full = format!("{o}/{r}");
            match id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.jobs.get(&id))
                .filter(|j| j.repo == full)
            {
                Some(j) => {
                    let p = world::job_payload(j, "", w.repos.get(&full));
                    json_response(StatusCode::OK, p["workflow_job"].clone())
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::GET, ["repos", o, r, "actions", "runs", id]) => {
            let full = format!("{o}/{r}");
            let run = id.parse::<i64>().ok();
            match w
                .jobs
                .values()
                .find(|j| Some(j.run_id) == run && j.repo == full)
            {
                Some(j) => {
                    let head = if j.fork {
                        format!("{}-fork/{r}", j.actor)
                    } else {
                        full.clone()
                    };
                    json_response(
                        StatusCode::OK,
                        json!({"id": j.run_id, "event": j.event,
                               "head_sha": j.head_sha, "head_repository": {"full_name": head, "fork": j.fork},
                               "repository": {"full_name": full}}),
                    )
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::POST, ["repos", o, r, "check-runs"]) => {
            let id = w.next_id();
            let run = CheckRun {
                id,
                repo: format!("{o}/{r}"),
                head_sha: body["head_sha"].as_str().unwrap_or_default().to_string(),
                name: body["name"].as_str().unwrap_or_default().to_string(),
                status: body["status"].as_str().unwrap_or("queued").to_string(),
                conclusion: body["conclusion"].as_str().map(str::to_string),
                title: body["output"]["title"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                summary: body["output"]["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                updates: 0,
            };
            if run.head_sha.is_empty() || run.name.is_empty() {
                return gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation failed: name and head_sha are required",
                );
            }
            w.check_runs.insert(id, run);
            json_response(StatusCode::CREATED, json!({"id": id}))
        }
        (&Method::PATCH, ["repos", _, _, "check-runs", id]) => {
            let Some(run) = id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.check_runs.get_mut(&id))
            else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            if let Some(s) = body["status"].as_str() {
                run.status = s.to_string();
            }
            if let Some(c) = body["conclusion"].as_str() {
                run.conclusion = Some(c.to_string());
            }
            if let Some(t) = body["output"]["title"].as_str() {
                run.title = t.to_string();
            }
            if let Some(s) = body["output"]["summary"].as_str() {
                run.summary = s.to_string();
            }
            run.updates += 1;
            json_response(StatusCode::OK, json!({"id": run.id}))
        }
        (&Method::GET, ["orgs", org, "teams", team, "memberships", login]) => {
            let member = w
                .teams
                .get(&format!("{org}/{team}"))
                .is_some_and(|m| m.iter().any(|x| x == login));
            if member {
                json_response(StatusCode::OK, json!({"state": "active", "role": "member"}))
            } else {
                gh_error(StatusCode::NOT_FOUND, "Not Found")
            }
        }
        (&Method::GET, ["repos", o, r, "collaborators", login, "permission"]) => {
            let role = w
                .repos
                .get(&format!("{o}/{r}"))
                .and_then(|x| x.collaborators.get(*login))
                .cloned();
            match role {
                Some(role) => {
                    let permission = match role.as_str() {
                        "maintain" | "write" => "write",
                        "triage" | "read" => "read",
                        other => other,
                    };
                    json_response(
                        StatusCode::OK,
                        json!({"permission": permission, "role_name": role}),
                    )
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn runner_side(sim: &SimGithub, method: &Method, seg: &[&str], body: &Value) -> Response {
    match (method, seg) {
        (&Method::GET, ["download", file]) if runner::serves(file) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/gzip")],
            sim.0.tarball.0.clone(),
        )
            .into_response(),
        (&Method::POST, ["connect"]) => {
            match sim.connect_runner(body["jit_config"].as_str().unwrap_or_default()) {
                Some(id) => {
                    let r = sim.world().runners.get(&id).cloned();
                    json_response(
                        StatusCode::OK,
                        json!({"runner_id": id, "name": r.as_ref().map(|r| r.name.clone()), "labels": r.map(|r| r.labels)}),
                    )
                }
                None => gh_error(
                    StatusCode::UNAUTHORIZED,
                    "the JIT configuration is unknown or was already used",
                ),
            }
        }
        (&Method::POST, [id, "next"]) => {
            let Ok(id) = id.parse::<i64>() else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            let job = sim.take_job(id).and_then(|j| sim.job(j));
            let scale = *sim
                .0
                .runner_time_scale
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            json_response(
                StatusCode::OK,
                json!({"job": job.map(|j| json!({"id": j.id, "duration_ms": j.duration_ms,
                    "run_seconds": (j.duration_ms as f64 / 1000.0 * scale).round() as i64,
                    "conclusion": j.planned_conclusion}))}),
            )
        }
        (&Method::POST, [_, "finish"]) => {
            let job = body["job_id"].as_i64().unwrap_or(-1);
            let conclusion = body["conclusion"].as_str().unwrap_or("success");
            if sim.finish_job(job, conclusion) {
                json_response(StatusCode::OK, json!({"ok": true}))
            } else {
                gh_error(StatusCode::NOT_FOUND, "no such running job")
            }
        }
        _ => gh_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn control(sim: &SimGithub, method: &Method, seg: &[&str], body: &Value) -> Response {
    match (method, seg) {
        (&Method::POST, ["repos"]) => {
            let Some(repo) = body["repo"].as_str().filter(|r| r.contains('/')) else {
                return gh_error(StatusCode::BAD_REQUEST, "`repo` (owner/name) is required");
            };
            let files: Vec<(String, String)> = body["files"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            let refs: Vec<(&str, &str)> = files
                .iter()
                .map(|(a, b)| (a.as_str(), b.as_str()))
                .collect();
            sim.add_repo(repo, &refs);
            if let Some(b) = body["default_branch"].as_str() {
                sim.set_default_branch(repo, b);
            }
            for (login, role) in body["collaborators"].as_object().into_iter().flatten() {
                sim.set_role(repo, login, role.as_str().unwrap_or("read"));
            }
            json_response(
                StatusCode::CREATED,
                json!({"repo": repo, "installation": sim.installation_of(repo.split('/').next().unwrap_or_default())}),
            )
        }
        (&Method::POST, ["jobs"]) => {
            let Some(repo) = body["repo"].as_str() else {
                return gh_error(StatusCode::BAD_REQUEST, "`repo` is required");
            };
            let labels: Vec<String> = body["labels"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let id = sim.queue_job(NewJob {
                repo: repo.to_string(),
                labels,
                head_sha: body["head_sha"]
                    .as_str()
                    .unwrap_or("0000000000000000000000000000000000000000")
                    .to_string(),
                fork: body["fork"].as_bool().unwrap_or(false),
                actor: body["actor"].as_str().unwrap_or("octocat").to_string(),
                duration_ms: (body["duration_s"].as_f64().unwrap_or(60.0) * 1000.0) as i64,
                conclusion: body["conclusion"].as_str().unwrap_or("success").to_string(),
            });
            if let Some(event) = body["event"].as_str() {
                sim.set_event(id, event);
            }
            json_response(StatusCode::CREATED, json!({"job_id": id}))
        }
        (&Method::POST, ["jobs", id, "cancel"]) => match id.parse::<i64>() {
            Ok(id) if sim.cancel_job(id) => json_response(StatusCode::OK, json!({"ok": true})),
            _ => gh_error(StatusCode::NOT_FOUND, "no such open job"),
        },
        (&Method::POST, ["webhooks"]) => {
            sim.set_webhook_faults(WebhookFaults {
                loss_rate: body["loss_rate"].as_f64().unwrap_or(0.0),
                duplicate_rate: body["duplicate_rate"].as_f64().unwrap_or(0.0),
                reorder: body["reorder"].as_bool().unwrap_or(false),
            });
            json_response(StatusCode::OK, json!({"ok": true}))
        }
        (&Method::POST, ["runner-groups"]) => {
            let (Some(org), Some(id)) = (body["org"].as_str(), body["id"].as_i64()) else {
                return gh_error(StatusCode::BAD_REQUEST, "`org` and `id` are required");
            };
            sim.add_runner_group(org, id);
            json_response(StatusCode::CREATED, json!({"org": org, "id": id}))
        }
        (&Method::POST, ["limits"]) => {
            if let Some(v) = body.get("jit_per_minute") {
                sim.set_jit_per_minute(v.as_u64().map(|n| n as u32));
            }
            if let Some(s) = body["rate_limit_for_s"].as_f64() {
                sim.rate_limit_for((s * 1000.0) as i64);
            }
            if let Some(s) = body["secondary_limit_for_s"].as_f64() {
                let advice = body["retry_after_s"].as_u64().unwrap_or(60) as u32;
                sim.secondary_limit_for((s * 1000.0) as i64, advice);
            }
            json_response(StatusCode::OK, json!({"ok": true}))
        }
        (&Method::GET, ["state"]) => {
            let w = sim.world();
            json_response(
                StatusCode::OK,
                json!({"jobs": w.jobs.values().collect::<Vec<_>>(), "runners": w.runners.values().collect::<Vec<_>>(),
                       "check_runs": w.check_runs.values().collect::<Vec<_>>(), "repos": w.repos.values().collect::<Vec<_>>(),
                       "requests": w.requests, "webhook_faults": w.webhook_faults}),
            )
        }
        _ => gh_error(StatusCode::NOT_FOUND, "unknown /sim endpoint"),
    }
}
