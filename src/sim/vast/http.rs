//! Vast.ai's side of the wire: routing, keys (the account's and each
//! instance's own), its rate limits (see `limits.rs`), injected faults, and
//! the answers' shape.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::control::control;
use super::instances::{change_bid, create, list_v1, manage};
use super::limits::{Endpoint, Refusal};
use super::search::search;
use super::{CreateHold, Phase, SimVast, filter, market};

/// Exactly `application/json`: the CLI compares the header as a string.
pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn error(status: StatusCode, code: &str, msg: &str) -> Response {
    json_response(status, json!({"success": false, "error": code, "msg": msg}))
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq)]
enum Caller {
    Account,
    /// An instance's own key: it may only see and manage that instance.
    Instance(i64),
    Nobody,
}

fn api_key(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // `Bearer ` with nothing after it may reach here trimmed to `Bearer`.
        if v.trim() == "Bearer" {
            return Some(String::new());
        }
        if let Some(k) = v.strip_prefix("Bearer ") {
            return Some(k.trim().to_string());
        }
    }
    query_param(uri, "api_key")
}

pub(super) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    url_pairs(q)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

pub(super) fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

/// Percent-decoding with `+` as space (Python's `quote_plus`).
fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

pub(super) async fn dispatch(
    State(sim): State<SimVast>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.tick();
    let path = uri.path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    // The simulator's own control surface and the log files: no auth.
    if segments.first() == Some(&"sim") {
        return control(&sim, &method, &segments[1..], &body);
    }
    if let ["static", "logs", file] = segments.as_slice() {
        let id = file.trim_end_matches(".txt").parse::<i64>().unwrap_or(-1);
        let log = sim.world().instances.get(&id).map(|i| i.log.clone());
        return match log {
            Some(l) => (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], l).into_response(),
            None => (StatusCode::NOT_FOUND, "no such log").into_response(),
        };
    }

    let route = route_key(&method, &segments);
    // Vast.ai's own limits, per endpoint and per identity (the key sent).
    if let Some(endpoint) = Endpoint::of_route(&route) {
        let who = api_key(&headers, &uri).unwrap_or_default();
        let now = sim.now();
        let mut w = sim.world();
        let limits = w.limits.clone();
        let verdict = w.limiter.check(&limits, &who, endpoint, now);
        if verdict.is_err() {
            // A refused request is a request too (the fault block counts the rest).
            *w.requests.entry(route.clone()).or_default() += 1;
        }
        match verdict {
            Ok(()) => {}
            Err(Refusal::TooFrequent { threshold }) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "text/plain")],
                    format!("API requests too frequent endpoint threshold={threshold}"),
                )
                    .into_response();
            }
            Err(Refusal::Quota { reset_ms }) => {
                let mut r = json_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({"error": "search_quota_exceeded"}),
                );
                r.headers_mut().insert(
                    "x-ratelimit-reset",
                    header::HeaderValue::from(reset_ms.div_euclid(1000)),
                );
                return r;
            }
        }
    }
    let (latency, retry_after_s, fault) = {
        let mut w = sim.world();
        *w.requests.entry(route.clone()).or_default() += 1;
        let latency = w.faults.latency_ms;
        let retry_after_s = w.faults.retry_after_s;
        let fault = if w.faults.rate_limit_burst > 0 {
            w.faults.rate_limit_burst -= 1;
            Some(StatusCode::TOO_MANY_REQUESTS)
        } else if let rate = w.faults.error_rate
            && rate > 0.0
            && w.rng.chance(rate)
        {
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        } else {
            None
        };
        (latency, retry_after_s, fault)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match fault {
        // Vast.ai's 429s are often plain text, without Retry-After.
        Some(StatusCode::TOO_MANY_REQUESTS) => {
            let mut r = (
                StatusCode::TOO_MANY_REQUESTS,
                "API requests too frequent endpoint threshold=4.5",
            )
                .into_response();
            if retry_after_s > 0 {
                r.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(retry_after_s),
                );
            }
            return r;
        }
        Some(s) => return error(s, "server_error", "internal error (injected fault)"),
        None => {}
    }

    let key = api_key(&headers, &uri);
    // An Authorization header with no key in it is a bad key, even where no
    // key is needed. (Not documented; the common error shape and the 401
    // the docs name for a bad key.)
    if headers.contains_key(header::AUTHORIZATION) && key.as_deref().is_none_or(str::is_empty) {
        return error(StatusCode::UNAUTHORIZED, "auth_error", "Invalid user key");
    }
    let caller = match key {
        Some(k) if k == sim.0.api_key => Caller::Account,
        Some(k) => {
            let w = sim.world();
            w.instances
                .values()
                .find(|i| i.api_key == k && i.phase != Phase::Destroyed)
                .map_or(Caller::Nobody, |i| Caller::Instance(i.id))
        }
        None => Caller::Nobody,
    };
    let public = matches!(
        segments.as_slice(),
        ["api", "v0", "gpu_names", "unique"] | ["api", "v0", "bundles"]
    );
    if caller == Caller::Nobody && !public {
        return error(StatusCode::UNAUTHORIZED, "auth_error", "Invalid user key");
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let body_json: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_args",
                    &format!("body is not JSON: {e}"),
                );
            }
        }
    };
    if !body.is_empty() && !is_json {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "Content-Type must be application/json",
        );
    }
    if let Caller::Instance(own) = caller {
        // An instance key can only look at or manage its own instance.
        let target = match segments.as_slice() {
            ["api", "v0", "instances", id] => id.parse::<i64>().ok(),
            _ => None,
        };
        if target != Some(own) {
            return error(
                StatusCode::FORBIDDEN,
                "not_authorized",
                "this key can only manage its own instance",
            );
        }
    }
    let creating = method == Method::PUT && matches!(segments.as_slice(), ["api", "v0", "asks", _]);
    match creating.then(|| sim.next_hold()).flatten() {
        Some(CreateHold::BeforeRenting) => {
            sim.hold().await;
            api(&sim, &method, &segments, &uri, &headers, body_json)
        }
        Some(CreateHold::AfterRenting) => {
            let made = api(&sim, &method, &segments, &uri, &headers, body_json);
            sim.hold().await;
            made
        }
        None => api(&sim, &method, &segments, &uri, &headers, body_json),
    }
}

/// `GET /api/v0/instances/{id}` → `GET /api/v0/instances/:id`, for counting.
fn route_key(method: &Method, segments: &[&str]) -> String {
    let path: Vec<&str> = segments
        .iter()
        .map(|s| if s.parse::<i64>().is_ok() { ":id" } else { s })
        .collect();
    format!("{method} /{}", path.join("/"))
}

fn api(
    sim: &SimVast,
    method: &Method,
    seg: &[&str],
    uri: &Uri,
    headers: &HeaderMap,
    body: Value,
) -> Response {
    let now = sim.now();
    match (method, seg) {
        (&Method::GET, ["api", "v0", "users", "current"]) => {
            let spend = sim.spend();
            json_response(
                StatusCode::OK,
                json!({"id": 1, "username": "sim", "email": "sim@example.invalid",
                       "credit": 1000.0 - spend, "balance": 0.0, "host_agreement_accepted": false,
                       "has_billing": true, "ssh_key": Value::Null}),
            )
        }
        (&Method::GET, ["api", "v0", "gpu_names", "unique"]) => {
            json_response(StatusCode::OK, json!({"gpu_names": market::gpu_names()}))
        }
        (&Method::POST, ["api", "v0", "bundles"]) => search(sim, &body),
        (&Method::PUT, ["api", "v0", "search", "asks"]) => {
            let q = body.get("q").cloned().unwrap_or(json!({}));
            search(sim, &q)
        }
        (&Method::PUT, ["api", "v0", "asks", id]) => create(sim, id, &body, now),
        (&Method::GET, ["api", "v1", "instances"]) => list_v1(sim, uri, now),
        (&Method::GET, ["api", "v0", "instances"]) => {
            let w = sim.world();
            let rows: Vec<Value> = w
                .instances
                .values()
                .filter(|i| i.phase != Phase::Destroyed)
                .map(|i| w.row(i, now))
                .collect();
            json_response(
                StatusCode::OK,
                json!({"instances_found": rows.len(), "instances": rows}),
            )
        }
        (&Method::GET, ["api", "v0", "instances", "filters"]) => json_response(
            StatusCode::OK,
            json!({"filters": [{"actual_status": ["running", "loading", "created", "exited", "offline", "unknown", "frozen"],
                                 "verification": ["verified", "unverified"],
                                 "gpu_name": market::gpu_names()}]}),
        ),
        (&Method::GET, ["api", "v0", "instances", id]) => {
            let w = sim.world();
            let row = id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.live(id))
                .map(|i| w.row(i, now));
            // Gone or unknown: 200 with null, as the real API answers.
            json_response(StatusCode::OK, json!({"instances": row}))
        }
        (&Method::PUT, ["api", "v0", "instances", "request_logs", id]) => {
            let Some(id) = id
                .parse::<i64>()
                .ok()
                .filter(|id| sim.world().live(*id).is_some())
            else {
                return error(StatusCode::NOT_FOUND, "invalid_id", "Invalid instance id.");
            };
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1");
            json_response(
                StatusCode::OK,
                json!({"success": true, "result_url": format!("http://{host}/static/logs/{id}.txt"),
                       "msg": "logs requested"}),
            )
        }
        (&Method::PUT, ["api", "v0", "instances", "bid_price", id]) => {
            change_bid(sim, id, &body, now)
        }
        (&Method::PUT, ["api", "v0", "instances", id]) => manage(sim, id, &body, now),
        (&Method::DELETE, ["api", "v0", "instances", id]) => {
            let Ok(id) = id.parse::<i64>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_args",
                    "invalid instance_id",
                );
            };
            if sim.world().faults.take_proxy_404() {
                return (
                    StatusCode::NOT_FOUND,
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><head><title>404 Not Found</title></head><body><center><h1>404 Not \
                     Found</h1></center><hr><center>nginx</center></body></html>",
                )
                    .into_response();
            }
            if sim.world().faults.take_destroy_refusal() {
                return json_response(
                    StatusCode::OK,
                    json!({"success": false, "error": "destroy_failed",
                           "msg": "the instance could not be destroyed (injected fault); try again"}),
                );
            }
            if sim.world().destroy(id, now) {
                json_response(
                    StatusCode::OK,
                    json!({"success": true, "msg": "Instance destroyed successfully"}),
                )
            } else {
                // destroy_instance.yaml: 404 `not_found`.
                error(StatusCode::NOT_FOUND, "not_found", "Instance not found")
            }
        }
        (&Method::DELETE, ["api", "v0", "instances"]) => {
            let ids: Vec<i64> = body
                .get("instance_ids")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(filter::number)
                        .map(|n| n as i64)
                        .collect()
                })
                .unwrap_or_default();
            let mut w = sim.world();
            let destroyed: Vec<i64> = ids.into_iter().filter(|id| w.destroy(*id, now)).collect();
            json_response(
                StatusCode::OK,
                json!({"success": true, "destroyed": destroyed}),
            )
        }
        (&Method::GET, ["api", "v0", "ssh"]) => {
            let keys: Vec<Value> = sim
                .world()
                .ssh_keys
                .iter()
                // As the OpenAPI describes `GET /ssh/`: the key in `key`.
                .map(|(id, k, at)| {
                    json!({"id": id, "user_id": 1, "key": k, "created_at": date_time(*at),
                           "deleted_at": Value::Null})
                })
                .collect();
            json_response(StatusCode::OK, Value::Array(keys))
        }
        (&Method::POST, ["api", "v0", "ssh"]) => {
            match body.get("ssh_key").and_then(Value::as_str) {
                Some(k) if k.starts_with("ssh-") || k.starts_with("ecdsa-") => {
                    let id = sim.add_ssh_key(k);
                    // As the OpenAPI describes `POST /ssh/`: the key made, its text in `public_key`.
                    let made = json!({"id": id, "user_id": 1, "public_key": k,
                                      "created_at": date_time(now), "deleted_at": Value::Null});
                    json_response(
                        StatusCode::OK,
                        json!({"success": true, "id": id, "key": made}),
                    )
                }
                _ => error(
                    StatusCode::BAD_REQUEST,
                    "no_ssh_key",
                    "ssh_key must be an OpenSSH public key",
                ),
            }
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("the simulated Vast.ai has no {method} /{}", seg.join("/")),
        ),
    }
}

/// RFC 3339 in UTC, to the second (the API's `date-time`s).
fn date_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
