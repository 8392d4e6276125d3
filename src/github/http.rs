//! One HTTP path to GitHub's REST API for every call rigger makes: the
//! headers GitHub asks for, rate limits read from the answer (primary and
//! secondary), and errors mapped to what the engine branches on. Counts what
//! it sees, for `/metrics` and the tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use octocrab::service::middleware::retry::RetryConfig;
use octocrab::{FromResponse, Octocrab};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::engine::ports::{Clock, GithubError};
use crate::settings::Secret;

/// How a request authenticates.
pub enum Auth<'a> {
    /// The App JWT (app-level calls) or an installation token.
    Bearer(&'a Secret),
    None,
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
    octo: Arc<std::sync::OnceLock<Result<Octocrab, String>>>,
}

/// What the client saw of GitHub's limits.
#[derive(Debug, Default)]
pub struct ApiStats {
    pub requests: AtomicU64,
    pub rate_limited: AtomicU64,
    /// The last `x-ratelimit-remaining` seen (-1 before any).
    pub remaining: AtomicI64,
}

fn message(body: &Value) -> String {
    body.get("message")
        .and_then(Value::as_str)
        .unwrap_or("(no message)")
        .to_string()
}

impl Api {
    pub fn new(base_url: &str, clock: Arc<dyn Clock>) -> Api {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("rigger/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        let stats = Arc::new(ApiStats {
            remaining: AtomicI64::new(-1),
            ..ApiStats::default()
        });
        Api {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            clock,
            stats,
            octo: Arc::default(),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
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
        self.send_as(method, path, auth, body, "application/vnd.github+json")
            .await
    }

    /// As [`Api::send`], asking for one of GitHub's custom media types
    /// (`application/vnd.github.object+json`, say).
    pub async fn send_as(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
        accept: &str,
    ) -> Result<Answer, GithubError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("accept", accept)
            .header("x-github-api-version", "2022-11-28");
        if let Auth::Bearer(token) = auth {
            req = req.bearer_auth(token.expose());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = req
            .send()
            .await
            .map_err(|e| GithubError::Transient(format!("{method} {path}: {}", transport(&e))))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        self.judge(&method, path, status, &headers, json)
    }

    /// What an answer means, from its status and headers: rate limits are
    /// read and counted here, for plain requests and octocrab's alike.
    fn judge(
        &self,
        method: &Method,
        path: &str,
        status: StatusCode,
        headers: &HeaderMap,
        json: Value,
    ) -> Result<Answer, GithubError> {
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<i64>().ok());
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
        let retry_after = header("retry-after").and_then(|v| v.parse::<i64>().ok());
        if let Some(r) = remaining {
            self.stats.remaining.store(r, Ordering::Relaxed);
        }
        let limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN && (remaining == Some(0) || retry_after.is_some()));
        if limited {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            let now_s = self.clock.now_ms() / 1000;
            let wait_s = match (retry_after, remaining, reset) {
                (Some(s), _, _) => s,
                (None, Some(0), Some(reset)) => reset.saturating_sub(now_s),
                // A secondary limit without advice: GitHub says wait a minute.
                _ => 60,
            };
            return Err(GithubError::RateLimited {
                retry_after_ms: crate::millis::advised_wait_ms(wait_s as f64, 1.0),
            });
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
        Err(if status.is_server_error() {
            GithubError::Transient(why)
        } else {
            GithubError::Refused(why)
        })
    }

    /// octocrab at the same base URL, without its own retries (the engine's
    /// loops own retries and backoff) and without credentials: each call
    /// gets a copy carrying the installation token rigger cached on its own
    /// clock. Built on first use because octocrab's client needs a runtime.
    fn octocrab(&self) -> Result<&Octocrab, GithubError> {
        self.octo
            .get_or_init(|| {
                let built = Octocrab::builder()
                    .base_uri(self.base.as_str())
                    .map_err(|e| format!("github.api_url is not a URL octocrab accepts: {e}"))?
                    .add_retry_config(RetryConfig::None)
                    .set_connect_timeout(Some(Duration::from_secs(10)))
                    .set_read_timeout(Some(Duration::from_secs(30)))
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
    /// call keeps octocrab's transport, base URL, auth header and models.
    pub async fn octo_get<T: FromResponse>(
        &self,
        token: &Secret,
        path: &str,
    ) -> Result<Option<T>, GithubError> {
        let octo = self
            .octocrab()?
            .user_access_token(token.expose().to_string())
            .map_err(|e| GithubError::Refused(format!("GET {path}: {}", octo_error(&e))))?;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let resp = octo
            ._get(path)
            .await
            .map_err(|e| GithubError::Transient(format!("GET {path}: {}", octo_error(&e))))?;
        let status = resp.status();
        if status.is_success() {
            // Counted and checked as any answer (a 2xx is never limited).
            self.judge(&Method::GET, path, status, resp.headers(), Value::Null)?;
            return T::from_response(resp).await.map(Some).map_err(|e| {
                GithubError::Transient(format!("GET {path}: unreadable answer: {}", octo_error(&e)))
            });
        }
        let headers = resp.headers().clone();
        let text = octo.body_to_string(resp).await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let answer = self.judge(&Method::GET, path, status, &headers, json)?;
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

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "cannot connect".into()
    } else {
        "the request failed".into()
    }
}
