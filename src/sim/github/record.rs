//! A recording of the simulated GitHub's traffic, on demand: every API
//! request it receives (method, path, query, the headers that matter, the
//! JSON body) with the answer it gave (status, JSON body), and every webhook
//! it sends (its headers, the signature's value left out, and body). The contract test
//! (`tests/github_contract.rs`) validates a recording against GitHub's
//! OpenAPI description.
//!
//! Off until [`SimGithub::record`] turns it on. Bounded: at most
//! [`MAX_EXCHANGES`] exchanges and [`MAX_WEBHOOKS`] webhooks are kept, a body
//! over [`MAX_BODY`] bytes is kept as `null` with `body_too_large` set, and
//! what did not fit is counted in [`Recorded::dropped`]. No secret is kept:
//! of `Authorization` only the kind of credential (`jwt`, `token`, `none`).

use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use serde_json::Value;

use super::SimGithub;
use super::http::{dispatch, percent_decode};

/// Exchanges kept at most; more are counted, not kept.
pub const MAX_EXCHANGES: usize = 20_000;
/// Webhooks kept at most.
pub const MAX_WEBHOOKS: usize = 20_000;
/// A body larger than this is not kept (its exchange is, with `body_too_large`).
pub const MAX_BODY: usize = 1 << 20;

/// The request headers a client's contract is about.
const HEADERS: [&str; 4] = [
    "accept",
    "user-agent",
    "x-github-api-version",
    "content-type",
];

/// One API request and the answer it got.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// The path as sent (no query).
    pub path: String,
    /// Query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// [`HEADERS`] as sent, names lower-case.
    pub headers: Vec<(String, String)>,
    /// `jwt`, `token` (an installation token) or `none`: never the credential.
    pub auth: &'static str,
    /// The JSON body sent (`None`: none, or not JSON).
    pub request_body: Option<Value>,
    pub status: u16,
    /// The JSON body answered (`None`: none, or not JSON).
    pub response_body: Option<Value>,
    /// A body was over [`MAX_BODY`] and is not kept.
    pub body_too_large: bool,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One webhook delivery as sent.
#[derive(Debug, Clone)]
pub struct SentWebhook {
    /// `X-GitHub-Event`.
    pub event: String,
    /// `X-GitHub-Delivery`.
    pub delivery: String,
    /// Every header sent, names lower-case (the signature's value as `…`).
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

/// What a recording holds when taken.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub exchanges: Vec<Exchange>,
    pub webhooks: Vec<SentWebhook>,
    /// Exchanges and webhooks that did not fit.
    pub dropped: u64,
}

#[derive(Default)]
pub(super) struct Recorder {
    on: std::sync::atomic::AtomicBool,
    kept: Mutex<Recorded>,
}

impl Recorder {
    fn on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A delivery about to be sent: its headers and body.
    pub(super) fn webhook(&self, headers: &[(&str, String)], body: &Value) {
        if !self.on() {
            return;
        }
        let mut k = self.kept();
        if k.webhooks.len() >= MAX_WEBHOOKS {
            k.dropped += 1;
            return;
        }
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        k.webhooks.push(SentWebhook {
            event: header("x-github-event"),
            delivery: header("x-github-delivery"),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    let k = k.to_ascii_lowercase();
                    let v = if k.starts_with("x-hub-signature") {
                        "…".into()
                    } else {
                        v.clone()
                    };
                    (k, v)
                })
                .collect(),
            body: body.clone(),
        });
    }

    fn exchange(&self, e: Exchange) {
        let mut k = self.kept();
        if k.exchanges.len() >= MAX_EXCHANGES {
            k.dropped += 1;
            return;
        }
        k.exchanges.push(e);
    }
}

impl SimGithub {
    /// Start (`true`) or stop recording; what was recorded stays until taken.
    pub fn record(&self, on: bool) {
        self.0
            .recorder
            .on
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// What was recorded since the last take; the recording is emptied.
    pub fn take_recorded(&self) -> Recorded {
        std::mem::take(&mut *self.0.recorder.kept())
    }
}

/// A JSON body (`None` for an empty or non-JSON one), and whether it was
/// too large to keep.
fn json_of(bytes: &[u8]) -> (Option<Value>, bool) {
    if bytes.len() > MAX_BODY {
        return (None, true);
    }
    (serde_json::from_slice(bytes).ok(), false)
}

/// The simulator's handler: [`dispatch`], recorded when recording is on.
/// The simulator's own `/sim` and `/_runner` calls are not GitHub's API and
/// are not recorded.
pub(super) async fn recorded(
    State(sim): State<SimGithub>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let own = uri.path().starts_with("/sim") || uri.path().starts_with("/_runner");
    if !sim.0.recorder.on() || own {
        return dispatch(State(sim), method, uri, headers, body).await;
    }
    let query = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let kept_headers = HEADERS
        .iter()
        .filter_map(|h| {
            let v = headers.get(*h)?.to_str().ok()?;
            Some((h.to_string(), v.to_string()))
        })
        .collect();
    let auth = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split_once(' ').map_or(v, |(_, cred)| cred))
    {
        None => "none",
        Some(cred) if cred.matches('.').count() == 2 => "jwt",
        Some(_) => "token",
    };
    let (request_body, request_too_large) = json_of(&body);
    let (path, method_name) = (uri.path().to_string(), method.to_string());
    let response = dispatch(State(sim.clone()), method, uri, headers, body).await;
    let (parts, answer) = response.into_parts();
    let bytes = axum::body::to_bytes(answer, usize::MAX)
        .await
        .unwrap_or_default();
    let (response_body, response_too_large) = json_of(&bytes);
    sim.0.recorder.exchange(Exchange {
        method: method_name,
        path,
        query,
        headers: kept_headers,
        auth,
        request_body,
        status: parts.status.as_u16(),
        response_body,
        body_too_large: request_too_large || response_too_large,
    });
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers() -> Vec<(&'static str, String)> {
        vec![
            ("X-GitHub-Event", "workflow_job".to_string()),
            ("x-github-delivery", "d-1".to_string()),
            ("x-hub-signature-256", "sha256=abc".to_string()),
        ]
    }

    #[test]
    fn off_keeps_nothing_on_keeps_a_bounded_recording() {
        let r = Recorder::default();
        r.webhook(&headers(), &Value::Null);
        assert!(r.kept().webhooks.is_empty(), "off until turned on");
        r.on.store(true, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..MAX_WEBHOOKS + 3 {
            r.webhook(&headers(), &serde_json::json!({"action": "queued"}));
        }
        let k = std::mem::take(&mut *r.kept());
        assert_eq!((k.webhooks.len(), k.dropped), (MAX_WEBHOOKS, 3));
        let w = &k.webhooks[0];
        assert_eq!(
            (w.event.as_str(), w.delivery.as_str()),
            ("workflow_job", "d-1")
        );
        assert!(
            w.headers
                .contains(&("x-github-event".into(), "workflow_job".into()))
        );
        assert!(
            w.headers
                .contains(&("x-hub-signature-256".into(), "…".into())),
            "the signature's value is not kept: {:?}",
            w.headers
        );
    }

    #[test]
    fn a_body_too_large_is_not_kept() {
        assert_eq!(
            json_of(br#"{"a":1}"#),
            (Some(serde_json::json!({"a": 1})), false)
        );
        assert_eq!(json_of(b""), (None, false));
        assert_eq!(json_of(&vec![b' '; MAX_BODY + 1]), (None, true));
    }
}
