//! One HTTP path to GitHub's REST API for every call rigger makes: the
//! headers GitHub asks for, rate limits read from the answer (primary and
//! secondary), and errors mapped to what the engine branches on. Counts what
//! it sees, for `/metrics` and the tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

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
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("accept", "application/vnd.github+json")
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
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<i64>().ok());
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
        let retry_after = header("retry-after").and_then(|v| v.parse::<i64>().ok());
        if let Some(r) = remaining {
            self.stats.remaining.store(r, Ordering::Relaxed);
        }
        let text = resp.text().await.unwrap_or_default();
        let json: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        let limited = status == StatusCode::TOO_MANY_REQUESTS
            || (status == StatusCode::FORBIDDEN && (remaining == Some(0) || retry_after.is_some()));
        if limited {
            self.stats.rate_limited.fetch_add(1, Ordering::Relaxed);
            let now_s = self.clock.now_ms() / 1000;
            let wait_s = match (retry_after, remaining, reset) {
                (Some(s), _, _) => s,
                (None, Some(0), Some(reset)) => (reset - now_s).max(1),
                // A secondary limit without advice: GitHub says wait a minute.
                _ => 60,
            };
            return Err(GithubError::RateLimited {
                retry_after_ms: wait_s * 1000,
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
