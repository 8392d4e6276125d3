//! One HTTP path to GitHub's REST API for every call rigger makes: the
//! headers GitHub asks for (`Accept: application/vnd.github+json`,
//! `X-GitHub-Api-Version: 2022-11-28` and rigger's `User-Agent`, on plain
//! requests and octocrab's alike), rate limits read from every answer
//! (`x-ratelimit-limit/remaining/used/reset/resource`, `retry-after`), and
//! errors mapped to what the engine branches on. Counts what it sees, for
//! `/metrics` and the tests.
//!
//! Rate limits, as GitHub's "Rate limits for the REST API" says to treat
//! them: a 403 or 429 with `retry-after` waits that long; with
//! `x-ratelimit-remaining: 0` until `x-ratelimit-reset`; a secondary limit
//! without advice (its message says "secondary rate limit", or a JIT
//! endpoint's 422 says it "has been spammed") waits a minute, then 2, 4, 8 …
//! minutes while they repeat, at most [`MAX_BACKOFF_MS`]. A rate limit is
//! never a refusal. The wait belongs to the budget that was limited (one
//! installation's, or the App's own for App-JWT calls) and is shared by
//! every call on it: until it is over, such calls do not go out and fail at
//! once with `RateLimited` carrying the time left, so the engine's loops
//! (which own retries and backoff) come back then. Failing fast rather
//! than waiting here keeps the workers free for other installations and
//! never holds a request open for minutes; continuing to send while limited
//! is what GitHub says may get an integration banned.
//!
//! Before that, rigger keeps to its own pace within GitHub's standing
//! secondary limits (80 writes a minute and 500 an hour per budget, 900
//! points a minute per endpoint): a call over it is not sent and fails with
//! `RateLimited` the same way ([`super::pace`] decides, with priorities).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octocrab::{FromResponse, Octocrab};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::engine::ports::{Clock, GithubError};
use crate::metrics::Metrics;
use crate::settings::Secret;

/// The media type GitHub asks every REST call to accept.
pub const ACCEPT: &str = "application/vnd.github+json";
/// The REST API version rigger is written against.
pub const API_VERSION: &str = "2022-11-28";
/// rigger's `User-Agent` (GitHub refuses requests without one).
pub const USER_AGENT: &str = concat!("rigger/", env!("CARGO_PKG_VERSION"));

/// The first wait after a secondary limit without advice (GitHub: "wait
/// for at least one minute").
pub const FIRST_BACKOFF_MS: i64 = 60_000;
/// The longest wait for repeated secondary limits without advice.
pub const MAX_BACKOFF_MS: i64 = 16 * 60_000;

/// How a request authenticates.
pub enum Auth<'a> {
    /// The App JWT: app-level calls, on the App's own budget.
    Bearer(&'a Secret),
    /// An installation token, on that installation's budget.
    Installation(i64, &'a Secret),
    None,
}

impl Auth<'_> {
    fn budget(&self) -> Budget {
        match self {
            Auth::Installation(id, _) => Budget::Installation(*id),
            Auth::Bearer(_) => Budget::App,
            Auth::None => Budget::Anonymous,
        }
    }
}

/// Whose rate limit a call counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Budget {
    /// The App's own (App-JWT calls).
    App,
    Installation(i64),
    /// Unauthenticated calls (GitHub counts them by address).
    Anonymous,
}

/// Why a call failed: GitHub did not accept its credentials (401; an
/// installation token may have been revoked), or anything else.
#[derive(Debug)]
pub enum Failed {
    Unauthorized(GithubError),
    Other(GithubError),
}

impl Failed {
    pub fn into_error(self) -> GithubError {
        match self {
            Failed::Unauthorized(e) | Failed::Other(e) => e,
        }
    }
}

/// What GitHub answered: a 2xx, or a 404 the caller may treat as "none".
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    pub fn is_not_found(&self) -> bool {
        self.status == 404
    }

    /// The body, or an error for a 404.
    pub fn json(self) -> Result<Value, GithubError> {
        if self.is_not_found() {
            return Err(GithubError::Refused(format!(
                "not found: {}",
                message(&self.body)
            )));
        }
        Ok(self.body)
    }
}

/// GitHub's REST API at a base URL (github.com, GitHub Enterprise Server, or
/// the simulated GitHub).
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    clock: Arc<dyn Clock>,
    pub stats: Arc<ApiStats>,
    gates: Arc<Mutex<HashMap<Budget, Gate>>>,
    pace: Arc<Mutex<super::pace::Pace>>,
    metrics: Option<Arc<Metrics>>,
    octo: Arc<std::sync::OnceLock<Result<Octocrab, String>>>,
}

/// A budget's wait: nothing goes out on it before `until_ms`; `strikes`
/// secondary limits without advice in a row set the next backoff.
#[derive(Debug, Default, Clone, Copy)]
struct Gate {
    until_ms: i64,
    strikes: u32,
    /// The last `x-ratelimit-remaining` and `-reset` (ms) seen for it.
    remaining: Option<(i64, i64)>,
}

/// What the client saw of GitHub's limits.
#[derive(Debug, Default)]
pub struct ApiStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// Answers that were a rate limit (primary or secondary).
    pub rate_limited: AtomicU64,
    /// Of those, secondary limits (with or without advice, JIT "spammed").
    pub secondary_limited: AtomicU64,
    /// Calls not sent because their budget was waiting out a limit.
    pub held_back: AtomicU64,
    /// Calls not sent because they would go over rigger's pace (a share of
    /// GitHub's secondary limits): essential ones, deferrable ones.
    pub paced_essential: AtomicU64,
    pub paced_deferrable: AtomicU64,
    /// Installation tokens dropped because GitHub answered 401.
    pub tokens_dropped: AtomicU64,
    /// The last `x-ratelimit-remaining` seen (-1 before any).
    pub remaining: AtomicI64,
    /// The last `x-ratelimit-limit`, `-used` and `-reset` (epoch s) seen (-1 before any).
    pub limit: AtomicI64,
    pub used: AtomicI64,
    pub reset: AtomicI64,
}

/// The rate-limit headers of one answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RateHeaders {
    pub limit: Option<i64>,
    pub remaining: Option<i64>,
    pub used: Option<i64>,
    /// UTC epoch seconds.
    pub reset: Option<i64>,
    pub resource: Option<String>,
    pub retry_after: Option<i64>,
}

impl RateHeaders {
    pub fn read(headers: &HeaderMap) -> RateHeaders {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let int = |name: &str| text(name).and_then(|v| v.trim().parse::<i64>().ok());
        RateHeaders {
            limit: int("x-ratelimit-limit"),
            remaining: int("x-ratelimit-remaining"),
            used: int("x-ratelimit-used"),
            reset: int("x-ratelimit-reset"),
            resource: text("x-ratelimit-resource").map(str::to_string),
            retry_after: int("retry-after"),
        }
    }
}

/// The `x-ratelimit-resource` names GitHub documents, as metric labels
/// (anything else is `other`: a label value is never read off the wire).
fn resource_label(r: Option<&str>) -> &'static str {
    const KNOWN: &[&str] = &[
        "core",
        "search",
        "code_search",
        "graphql",
        "integration_manifest",
        "dependency_snapshots",
        "dependency_sbom",
        "code_scanning_upload",
        "actions_runner_registration",
        "source_import",
        "scim",
        "audit_log",
        "audit_log_streaming",
    ];
    match r {
        None => "none",
        Some(r) => KNOWN.iter().find(|k| **k == r).copied().unwrap_or("other"),
    }
}

fn message(body: &Value) -> String {
    body.get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)")
        .to_string()
}

/// 1 minute, 2, 4, 8, 16, then 16 for each further secondary limit without
/// advice in a row.
pub fn secondary_backoff_ms(strikes: u32) -> i64 {
    let doublings = strikes.saturating_sub(1).min(10);
    (FIRST_BACKOFF_MS << doublings).min(MAX_BACKOFF_MS)
}

/// Which kind of limit an answer is, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    Primary,
    Secondary,
}

fn limit_of(status: StatusCode, h: &RateHeaders, body: &Value) -> Option<Limit> {
    let msg = message(body).to_ascii_lowercase();
    let says_secondary = msg.contains("secondary rate limit") || msg.contains("abuse detection");
    match status.as_u16() {
        // "Validation failed, or the endpoint has been spammed." (the JIT
        // endpoints' documented 422): only the spam answer is a limit; a
        // validation failure of rigger's own request is a refusal.
        422 if msg.contains("spammed") => Some(Limit::Secondary),
        403 | 429 if says_secondary || h.retry_after.is_some() => Some(Limit::Secondary),
        403 | 429 if h.remaining == Some(0) => Some(Limit::Primary),
        // A 429 is a limit whatever it says.
        429 => Some(Limit::Secondary),
        _ => None,
    }
}

impl Api {
    pub fn new(base_url: &str, clock: Arc<dyn Clock>) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(USER_AGENT)
            .build()
            .unwrap_or_default();
        let stats = Arc::new(ApiStats {
            remaining: AtomicI64::new(-1),
            limit: AtomicI64::new(-1),
            used: AtomicI64::new(-1),
            reset: AtomicI64::new(-1),
            ..ApiStats::default()
        });
        Api {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            clock,
            stats,
            gates: Arc::default(),
            pace: Arc::default(),
            metrics: None,
            octo: Arc::default(),
        }
    }

    /// Count requests, limits and the lowest remaining budget in `/metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Api {
        self.metrics = Some(metrics);
        self
    }

    /// Pace writes at `percent` of GitHub's secondary limits (default 90).
    pub fn with_pace_share(self, percent: u32) -> Api {
        self.with_pace(super::pace::Caps::share(percent))
    }

    /// Pace writes to these caps.
    pub fn with_pace(self, caps: super::pace::Caps) -> Api {
        *self.pace.lock().unwrap_or_else(|p| p.into_inner()) = super::pace::Pace::new(caps);
        self
    }

    /// Writes sent on a budget in the last minute and the last hour.
    pub fn writes_in(&self, budget: Budget) -> (usize, usize) {
        let now = self.clock.now_ms();
        self.pace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .writes_in(budget, now)
    }

    /// A call that would go over rigger's pace does not go out (see
    /// [`super::pace`]): `RateLimited` until a slot frees.
    fn paced(
        &self,
        budget: Budget,
        method: &Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), GithubError> {
        use super::pace::{Priority, priority};
        let prio = priority(method.as_str(), path, body);
        let now = self.clock.now_ms();
        let admitted = self.pace.lock().unwrap_or_else(|p| p.into_inner()).admit(
            budget,
            method.as_str(),
            path,
            prio,
            now,
        );
        let Err(wait) = admitted else {
            return Ok(());
        };
        match prio {
            Priority::Essential => &self.stats.paced_essential,
            Priority::Deferrable => &self.stats.paced_deferrable,
        }
        .fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.inc(
                "rigger_github_requests_paced_total",
                &[("priority", prio.label())],
            );
        }
        tracing::debug!(%method, path, wait_ms = wait, priority = prio.label(), "held back: rigger's pace on GitHub");
        Err(GithubError::RateLimited {
            retry_after_ms: wait,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn gates(&self) -> std::sync::MutexGuard<'_, HashMap<Budget, Gate>> {
        self.gates.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long calls on this budget must still wait (0: none).
    pub fn wait_left_ms(&self, budget: Budget) -> i64 {
        let now = self.clock.now_ms();
        self.gates()
            .get(&budget)
            .map_or(0, |g| g.until_ms.saturating_sub(now).max(0))
    }

    /// A call on a budget that is waiting out a limit does not go out.
    fn held(&self, budget: Budget, method: &Method, path: &str) -> Result<(), GithubError> {
        let left = self.wait_left_ms(budget);
        if left > 0 {
            self.stats.held_back.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &self.metrics {
                m.inc("rigger_github_requests_held_total", &[]);
            }
            tracing::debug!(%method, path, left_ms = left, "held back: GitHub rate limit");
            return Err(GithubError::RateLimited {
                retry_after_ms: left,
            });
        }
        Ok(())
    }

    fn sent(&self) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.inc("rigger_github_requests_total", &[]);
        }
    }

    /// One request. 2xx and 404 are answers; a rate limit, a 5xx or a
    /// transport failure are errors the engine retries later; other 4xx are
    /// refusals with GitHub's message. Never retried here: the callers'
    /// loops (inbox, provisioner, reconciler) own retries and backoff.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> Result<Answer, GithubError> {
        self.try_send(method, path, auth, body, ACCEPT)
            .await
            .map_err(Failed::into_error)
    }

    /// [`Api::send`], telling a 401 (the credentials) from other failures,
    /// and asking for `accept`: GitHub's JSON (`ACCEPT`) or one of its custom
    /// media types (`application/vnd.github.object+json`, say).
    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
        accept: &str,
    ) -> Result<Answer, Failed> {
        let budget = auth.budget();
        self.held(budget, &method, path).map_err(Failed::Other)?;
        self.paced(budget, &method, path, body.as_ref())
            .map_err(Failed::Other)?;
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("accept", accept)
            .header("x-github-api-version", API_VERSION);
        match auth {
            Auth::Bearer(token) | Auth::Installation(_, token) => {
                req = req.bearer_auth(token.expose());
            }
            Auth::None => {}
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.sent();
        let resp = req.send().await.map_err(|e| {
            Failed::Other(GithubError::Transient(format!(
                "{method} {path}: {}",
                transport(&e)
            )))
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        self.judge(budget, &method, path, status, &headers, json)
    }

    /// What an answer means, from its status and headers: rate limits are
    /// read, counted and turned into the budget's wait here, for plain
    /// requests and octocrab's alike.
    fn judge(
        &self,
        budget: Budget,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        json: Value,
    ) -> Result<Answer, Failed> {
        let h = RateHeaders::read(headers);
        let now = self.clock.now_ms();
        tracing::debug!(%method, path, %status, remaining = ?h.remaining, "GitHub answered");
        self.note_headers(budget, &h, now);
        if let Some(kind) = limit_of(status, &h, &json) {
            let wait = self.limited(budget, kind, &h, now);
            tracing::warn!(
                %method, path, %status, wait_ms = wait,
                "GitHub rate limit ({}): {}",
                if kind == Limit::Primary { "primary" } else { "secondary" },
                message(&json)
            );
            return Err(Failed::Other(GithubError::RateLimited {
                retry_after_ms: wait,
            }));
        }
        {
            let mut gates = self.gates();
            let gate = gates.entry(budget).or_default();
            if status.is_success() {
                gate.strikes = 0;
            }
            // The last call the budget allowed (whatever its answer): the
            // next would be refused, so none goes out before the reset.
            if let (Some(0), Some(reset)) = (h.remaining, h.reset) {
                gate.until_ms = gate.until_ms.max(reset_ms(reset, now));
            }
        }
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(Answer {
                status: status.as_u16(),
                body: json,
            });
        }
        let why = format!(
            "{method} {path}: GitHub answered {status}: {}",
            message(&json)
        );
        Err(if status == StatusCode::UNAUTHORIZED {
            Failed::Unauthorized(GithubError::Refused(why))
        } else if status.is_server_error() {
            Failed::Other(GithubError::Transient(why))
        } else {
            Failed::Other(GithubError::Refused(why))
        })
    }

    /// Record a limit on a budget: how long it waits, as GitHub advises.
    fn limited(&self, budget: Budget, kind: Limit, h: &RateHeaders, now: i64) -> i64 {
        self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
        if kind == Limit::Secondary {
            self.stats.secondary_limited.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(m) = &self.metrics {
            let limit = match kind {
                Limit::Primary => "primary",
                Limit::Secondary => "secondary",
            };
            m.inc("rigger_github_rate_limited_total", &[("limit", limit)]);
        }
        let mut gates = self.gates();
        let gate = gates.entry(budget).or_default();
        let wait = match (h.retry_after, h.remaining, h.reset) {
            (Some(s), _, _) => crate::millis::advised_wait_ms(s as f64, 1.0),
            (None, Some(0), Some(reset)) => reset_ms(reset, now) - now,
            // No advice: a minute, then doubling while they repeat.
            _ => {
                gate.strikes = gate.strikes.saturating_add(1);
                secondary_backoff_ms(gate.strikes)
            }
        };
        gate.until_ms = gate.until_ms.max(now.saturating_add(wait));
        gate.until_ms - now
    }

    /// Keep what an answer said of its budget; `/metrics` shows the lowest
    /// remaining of the budgets whose window is still open.
    fn note_headers(&self, budget: Budget, h: &RateHeaders, now: i64) {
        let store = |a: &AtomicI64, v: Option<i64>| {
            if let Some(v) = v {
                a.store(v, Ordering::Relaxed);
            }
        };
        store(&self.stats.remaining, h.remaining);
        store(&self.stats.limit, h.limit);
        store(&self.stats.used, h.used);
        store(&self.stats.reset, h.reset);
        let (Some(remaining), Some(reset)) = (h.remaining, h.reset) else {
            return;
        };
        let lowest = {
            let mut gates = self.gates();
            gates.entry(budget).or_default().remaining = Some((remaining, reset_ms(reset, now)));
            gates
                .values()
                .filter_map(|g| g.remaining)
                .filter(|(_, reset)| *reset > now)
                .map(|(r, _)| r)
                .min()
        };
        if let Some(m) = &self.metrics {
            let resource = resource_label(h.resource.as_deref());
            if let Some(lowest) = lowest {
                m.set(
                    "rigger_github_ratelimit_remaining",
                    &[("resource", resource)],
                    lowest as f64,
                );
            }
            if let Some(limit) = h.limit {
                m.set(
                    "rigger_github_ratelimit_limit",
                    &[("resource", resource)],
                    limit as f64,
                );
            }
        }
    }

    /// Forget an installation's wait (its token was replaced; the budget
    /// is the installation's, so this is only for tests of the gate).
    #[doc(hidden)]
    pub fn clear_wait(&self, budget: Budget) {
        self.gates().remove(&budget);
    }

    /// octocrab at the same base URL, on rigger's own HTTP client (its
    /// timeouts and `User-Agent`) with GitHub's `Accept` and API version
    /// headers, without octocrab's retries (the engine's loops own retries
    /// and backoff) and without credentials: each call gets a copy carrying
    /// the installation token rigger cached on its own clock. Built on its
    /// own service stack: octocrab's default builder always adds
    /// `User-Agent: octocrab` (a second value next to any given) and no
    /// `Accept`. Built on first use because it needs a runtime.
    fn octocrab(&self) -> Result<&Octocrab, GithubError> {
        use octocrab::service::middleware::base_uri::BaseUriLayer;
        use octocrab::service::middleware::extra_headers::ExtraHeadersLayer;
        use octocrab::service::middleware::reqwest_connector::ReqwestConnector;
        self.octo
            .get_or_init(|| {
                let base: axum::http::Uri = self
                    .base
                    .parse()
                    .map_err(|e| format!("github.api_url is not a URL octocrab accepts: {e}"))?;
                let headers = vec![
                    (reqwest::header::ACCEPT, HeaderValue::from_static(ACCEPT)),
                    (
                        HeaderName::from_static("x-github-api-version"),
                        HeaderValue::from_static(API_VERSION),
                    ),
                ];
                let built = octocrab::OctocrabBuilder::new_empty()
                    .with_service(ReqwestConnector::new(self.http.clone()))
                    .with_layer(&BaseUriLayer::new(base))
                    .with_layer(&ExtraHeadersLayer::new(Arc::new(headers)))
                    .with_auth(octocrab::AuthState::None)
                    .build()
                    .map_err(|e| format!("cannot build octocrab's HTTP client: {e}"))?;
                Ok(built)
            })
            .as_ref()
            .map_err(|e| GithubError::Refused(e.clone()))
    }

    /// A GET through octocrab, read into one of its typed models (or a
    /// `Page` of them, which follows GitHub's `Link` header). `None` for a
    /// 404. octocrab's typed request builders (`repos().get_content()` and
    /// the like) are not used: they return only the body, and rigger must
    /// read every answer's `x-ratelimit-*` and `retry-after` headers; the raw
    /// call keeps octocrab's auth header and models, on rigger's transport.
    pub async fn octo_get<T: FromResponse>(
        &self,
        auth: Auth<'_>,
        path: &str,
    ) -> Result<Option<T>, Failed> {
        let budget = auth.budget();
        self.held(budget, &Method::GET, path)
            .map_err(Failed::Other)?;
        self.paced(budget, &Method::GET, path, None)
            .map_err(Failed::Other)?;
        let octo = self.octocrab().map_err(Failed::Other)?;
        let octo = match auth {
            Auth::Bearer(token) | Auth::Installation(_, token) => octo
                .user_access_token(token.expose().to_string())
                .map_err(|e| {
                    Failed::Other(GithubError::Refused(format!(
                        "GET {path}: {}",
                        octo_error(&e)
                    )))
                })?,
            Auth::None => octo.clone(),
        };
        self.sent();
        let resp = octo._get(path).await.map_err(|e| {
            Failed::Other(GithubError::Transient(format!(
                "GET {path}: {}",
                octo_error(&e)
            )))
        })?;
        let status = resp.status();
        if status.is_success() {
            // Counted and checked as any answer (a 2xx is never limited).
            self.judge(
                budget,
                &Method::GET,
                path,
                status,
                resp.headers(),
                Value::Null,
            )?;
            return T::from_response(resp).await.map(Some).map_err(|e| {
                Failed::Other(GithubError::Transient(format!(
                    "GET {path}: unreadable answer: {}",
                    octo_error(&e)
                )))
            });
        }
        let headers = resp.headers().clone();
        let text = octo.body_to_string(resp).await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let answer = self.judge(budget, &Method::GET, path, status, &headers, json)?;
        debug_assert!(answer.is_not_found());
        Ok(None)
    }

    /// A `Link` from GitHub as a path octocrab sends with credentials:
    /// octocrab adds the Authorization header only to relative URIs (or
    /// api.github.com), and joins relative ones to the base URL, so a link is
    /// followed only if it points below the base URL.
    pub fn relative_link(&self, link: &str) -> Option<String> {
        link.strip_prefix(self.base.as_str())
            .filter(|rest| rest.starts_with('/'))
            .map(str::to_string)
    }
}

/// octocrab's error, without anything a request carried (its `Display`
/// names the failure kind and GitHub's message, never headers).
fn octo_error(e: &octocrab::Error) -> String {
    match e {
        octocrab::Error::GitHub { source, .. } => source.message.clone(),
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => "cannot connect".into(),
        other => other.to_string(),
    }
}

/// A reset time (epoch seconds) as the clock's milliseconds: at least a
/// second from now (a reset already past still means "not yet"), at most a
/// day (see [`crate::millis::MAX_ADVISED_WAIT_SECS`]).
fn reset_ms(reset_s: i64, now: i64) -> i64 {
    let wait = reset_s.saturating_mul(1000).saturating_sub(now);
    now.saturating_add(wait.clamp(1000, crate::millis::MAX_ADVISED_WAIT_SECS * 1000))
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&'static str, &str)]) -> RateHeaders {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        RateHeaders::read(&h)
    }

    #[test]
    fn limits_are_told_from_refusals_by_status_headers_and_message() {
        let secondary = json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."});
        let plenty = headers(&[("x-ratelimit-remaining", "4870")]);
        let s = |code| StatusCode::from_u16(code).unwrap();
        assert_eq!(
            limit_of(s(403), &plenty, &secondary),
            Some(Limit::Secondary)
        );
        assert_eq!(
            limit_of(s(429), &plenty, &secondary),
            Some(Limit::Secondary)
        );
        assert_eq!(
            limit_of(s(429), &plenty, &json!({})),
            Some(Limit::Secondary),
            "a 429 is always a limit"
        );
        let used_up = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")]);
        let primary = json!({"message": "API rate limit exceeded for installation ID 1."});
        assert_eq!(limit_of(s(403), &used_up, &primary), Some(Limit::Primary));
        let advised = headers(&[("retry-after", "30")]);
        assert_eq!(
            limit_of(s(403), &advised, &json!({})),
            Some(Limit::Secondary)
        );
        let spam = json!({"message": "Validation failed, or the endpoint has been spammed."});
        assert_eq!(limit_of(s(422), &plenty, &spam), Some(Limit::Secondary));
        // A refusal stays a refusal.
        let denied = json!({"message": "Resource not accessible by integration"});
        assert_eq!(limit_of(s(403), &plenty, &denied), None);
        assert_eq!(
            limit_of(s(422), &plenty, &json!({"message": "Validation Failed"})),
            None
        );
    }

    #[test]
    fn full_rate_limit_headers_are_read() {
        let h = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4987"),
            ("x-ratelimit-used", "13"),
            ("x-ratelimit-reset", "1763803600"),
            ("x-ratelimit-resource", "core"),
        ]);
        assert_eq!(
            h,
            RateHeaders {
                limit: Some(5000),
                remaining: Some(4987),
                used: Some(13),
                reset: Some(1_763_803_600),
                resource: Some("core".into()),
                retry_after: None,
            }
        );
        assert_eq!(resource_label(Some("core")), "core");
        assert_eq!(resource_label(Some("x\"y")), "other");
    }

    #[test]
    fn secondary_backoff_doubles_from_a_minute_and_is_capped() {
        let mins: Vec<i64> = (1..=7).map(|n| secondary_backoff_ms(n) / 60_000).collect();
        assert_eq!(mins, vec![1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(secondary_backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn a_reset_is_at_least_a_second_and_at_most_a_day_away() {
        let now = 1_763_800_000_000;
        assert_eq!(reset_ms(now / 1000 + 90, now), now + 90_000);
        assert_eq!(reset_ms(0, now), now + 1_000);
        assert_eq!(reset_ms(i64::MAX, now), now + 86_400_000);
    }
}
