//! A recording of the simulated Vast.ai's traffic, on demand: every API
//! request it receives (method, path, query, the headers that matter, the
//! body) with the answer it gave (status, content type, body). The contract
//! test (`tests/vast_contract.rs`) validates a recording against Vast.ai's
//! OpenAPI description.
//!
//! Off until [`SimVast::record`] turns it on. Bounded: at most
//! [`MAX_EXCHANGES`] exchanges and [`MAX_KEPT_BYTES`] of bodies in all are
//! kept, a body over [`MAX_BODY`] bytes is kept as [`Payload::TooLarge`],
//! and what did not fit is counted in [`Recorded::dropped`]. No secret is
//! kept: of the credential only its kind ([`Auth`]), and an `api_key` query
//! parameter's value is replaced by `…`. The simulator's own `/sim`
//! surface and the log files it serves (`/static/logs/…`, where Vast.ai's
//! `result_url` points: not its API) are not recorded.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use serde_json::Value;

use super::SimVast;
use super::http::{dispatch, url_pairs};

/// Exchanges kept at most; more are counted, not kept.
pub const MAX_EXCHANGES: usize = 20_000;
/// A body larger than this is not kept (its exchange is).
pub const MAX_BODY: usize = 8 << 20;
/// Bodies kept in all; past it exchanges are counted, not kept.
pub const MAX_KEPT_BYTES: usize = 512 << 20;
/// A text (not JSON) body is kept up to this many characters.
const MAX_TEXT: usize = 2_000;

/// The request headers a client's contract is about (the credential apart).
const HEADERS: [&str; 4] = ["content-type", "accept", "accept-encoding", "user-agent"];

/// How a request said who it is: never the credential itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header and no `api_key` parameter.
    None,
    /// `Authorization: Bearer <something>`.
    Bearer,
    /// `Authorization: Bearer ` with nothing after it.
    EmptyBearer,
    /// An `Authorization` header of another scheme.
    OtherScheme,
    /// The key in the `api_key` query parameter (the CLI's old way).
    QueryKey,
}

/// A body as sent or answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Empty,
    Json(Value),
    /// Not JSON: its text, cut to [`MAX_TEXT`] characters.
    Text(String),
    /// Over [`MAX_BODY`]: not kept.
    TooLarge,
}

impl Payload {
    fn of(bytes: &[u8]) -> Payload {
        if bytes.is_empty() {
            Payload::Empty
        } else if bytes.len() > MAX_BODY {
            Payload::TooLarge
        } else if let Ok(v) = serde_json::from_slice(bytes) {
            Payload::Json(v)
        } else {
            Payload::Text(
                String::from_utf8_lossy(bytes)
                    .chars()
                    .take(MAX_TEXT)
                    .collect(),
            )
        }
    }

    /// The JSON value, if the body was JSON.
    pub fn json(&self) -> Option<&Value> {
        match self {
            Payload::Json(v) => Some(v),
            _ => None,
        }
    }
}

/// One API request and the answer it got.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    /// The path as sent (no query).
    pub path: String,
    /// Query parameters, decoded, in order (`api_key`'s value as `…`).
    pub query: Vec<(String, String)>,
    /// [`HEADERS`] as sent, names lower-case.
    pub headers: Vec<(String, String)>,
    pub auth: Auth,
    pub request_body: Payload,
    pub status: u16,
    /// The answer's `Content-Type`, as sent.
    pub response_type: Option<String>,
    pub response_body: Payload,
}

impl Exchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a recording holds when taken.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    pub exchanges: Vec<Exchange>,
    /// Exchanges that did not fit.
    pub dropped: u64,
}

#[derive(Default)]
pub(super) struct Recorder {
    on: AtomicBool,
    kept: Mutex<(Recorded, usize)>,
}

impl Recorder {
    fn on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, (Recorded, usize)> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `e` (its bodies weigh `bytes`) if it fits.
    fn exchange(&self, e: Exchange, bytes: usize) {
        let mut k = self.kept();
        let (recorded, used) = &mut *k;
        if recorded.exchanges.len() >= MAX_EXCHANGES || *used + bytes > MAX_KEPT_BYTES {
            recorded.dropped += 1;
            return;
        }
        *used += bytes;
        recorded.exchanges.push(e);
    }
}

impl SimVast {
    /// Start (`true`) or stop recording; what was recorded stays until taken.
    pub fn record(&self, on: bool) {
        self.0.recorder.on.store(on, Ordering::Relaxed);
    }

    /// What was recorded since the last take; the recording is emptied.
    pub fn take_recorded(&self) -> Recorded {
        std::mem::take(&mut self.0.recorder.kept().0)
    }
}

/// The kind of credential a request carries.
fn auth_of(headers: &HeaderMap, query: &[(String, String)]) -> Auth {
    match headers
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default())
    {
        Some(v) => match v.strip_prefix("Bearer ") {
            Some(cred) if cred.trim().is_empty() => Auth::EmptyBearer,
            Some(_) => Auth::Bearer,
            None if v.trim() == "Bearer" => Auth::EmptyBearer,
            None => Auth::OtherScheme,
        },
        None if query.iter().any(|(k, _)| k == "api_key") => Auth::QueryKey,
        None => Auth::None,
    }
}

/// The request's query, decoded, the key's value left out.
fn query_of(uri: &Uri) -> Vec<(String, String)> {
    url_pairs(uri.query().unwrap_or(""))
        .into_iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| {
            let v = if k == "api_key" { "…".to_string() } else { v };
            (k, v)
        })
        .collect()
}

/// The simulator's handler: [`dispatch`], recorded when recording is on.
pub(super) async fn recorded(
    State(sim): State<SimVast>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let own = uri.path().starts_with("/sim") || uri.path().starts_with("/static/");
    if !sim.0.recorder.on() || own {
        return dispatch(State(sim), method, uri, headers, body).await;
    }
    let query = query_of(&uri);
    let auth = auth_of(&headers, &query);
    let kept_headers = HEADERS
        .iter()
        .filter_map(|h| {
            let v = headers.get(*h)?.to_str().ok()?;
            Some((h.to_string(), v.to_string()))
        })
        .collect();
    let request_body = Payload::of(&body);
    let (path, method_name) = (uri.path().to_string(), method.to_string());
    let mut weight = body.len();
    let response = dispatch(State(sim.clone()), method, uri, headers, body).await;
    let (parts, answer) = response.into_parts();
    let bytes = axum::body::to_bytes(answer, usize::MAX)
        .await
        .unwrap_or_default();
    weight += bytes.len();
    let response_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    sim.0.recorder.exchange(
        Exchange {
            method: method_name,
            path,
            query,
            headers: kept_headers,
            auth,
            request_body,
            status: parts.status.as_u16(),
            response_type,
            response_body: Payload::of(&bytes),
        },
        weight.min(MAX_BODY * 2),
    );
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange() -> Exchange {
        Exchange {
            method: "GET".into(),
            path: "/api/v0/instances/1/".into(),
            query: Vec::new(),
            headers: Vec::new(),
            auth: Auth::Bearer,
            request_body: Payload::Empty,
            status: 200,
            response_type: None,
            response_body: Payload::Empty,
        }
    }

    #[test]
    fn a_recording_is_bounded_in_count_and_bytes() {
        let r = Recorder::default();
        for _ in 0..MAX_EXCHANGES + 3 {
            r.exchange(exchange(), 1);
        }
        let (k, used) = std::mem::take(&mut *r.kept());
        assert_eq!(
            (k.exchanges.len(), k.dropped, used),
            (MAX_EXCHANGES, 3, MAX_EXCHANGES)
        );
        r.exchange(exchange(), MAX_KEPT_BYTES - 10);
        r.exchange(exchange(), 11);
        r.exchange(exchange(), 10);
        let (k, used) = std::mem::take(&mut *r.kept());
        assert_eq!((k.exchanges.len(), k.dropped, used), (2, 1, MAX_KEPT_BYTES));
    }

    #[test]
    fn bodies_are_json_text_or_too_large() {
        assert_eq!(Payload::of(b""), Payload::Empty);
        assert_eq!(
            Payload::of(br#"{"a":1}"#),
            Payload::Json(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            Payload::of(b"API requests too frequent"),
            Payload::Text("API requests too frequent".into())
        );
        let long = vec![b'x'; MAX_TEXT + 5];
        assert!(matches!(Payload::of(&long), Payload::Text(t) if t.len() == MAX_TEXT));
        assert_eq!(Payload::of(&vec![b' '; MAX_BODY + 1]), Payload::TooLarge);
    }

    #[test]
    fn the_credential_is_never_kept() {
        let uri: Uri = "/api/v0/instances/?owner=me&api_key=secret-key"
            .parse()
            .unwrap();
        let q = query_of(&uri);
        assert_eq!(
            q,
            vec![
                ("owner".to_string(), "me".to_string()),
                ("api_key".to_string(), "…".to_string())
            ]
        );
        assert_eq!(auth_of(&HeaderMap::new(), &q), Auth::QueryKey);
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            auth_of(&h, &[])
        };
        assert_eq!(with("Bearer k"), Auth::Bearer);
        assert_eq!(with("Bearer "), Auth::EmptyBearer);
        assert_eq!(with("Basic abc"), Auth::OtherScheme);
        assert_eq!(auth_of(&HeaderMap::new(), &[]), Auth::None);
    }
}
