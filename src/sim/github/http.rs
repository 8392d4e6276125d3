//! GitHub's side of the wire: routing, the `User-Agent` GitHub requires,
//! App and installation auth, rate limits (each caller's primary budget and
//! its `x-ratelimit-*` headers on every answer, secondary limits with or
//! without `retry-after`, and GitHub's standing ones on content and on each
//! endpoint's points, counted in `world.rs`), the App API, the log of requests seen, and the
//! shapes every answer shares (errors, pages).

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::control::{control, runner_side};
use super::rest::repo_api;
use super::world::{self, Caller};
use super::{SimGithub, TOKEN_LIFETIME_MS};

impl SimGithub {
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

pub(super) fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

pub(super) fn gh_error(status: StatusCode, message: &str) -> Response {
    json_response(
        status,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

/// The strings of a JSON array (none for anything else).
pub(super) fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// One page of a list, as GitHub pages: `per_page` (at most 100) and
/// `page`, `total_count` in the body, and a `Link` header with `next` and
/// `last` (absolute URLs at the simulator's address) while more remain.
pub(super) fn paged(
    api: &str,
    path: &str,
    q: &dyn Fn(&str) -> Option<String>,
    key: &str,
    all: Vec<Value>,
) -> Response {
    paged_with(api, path, q, key, all, json!({}))
}

/// As [`paged`], with more top-level fields in the body (`extra`, an object).
pub(super) fn paged_with(
    api: &str,
    path: &str,
    q: &dyn Fn(&str) -> Option<String>,
    key: &str,
    all: Vec<Value>,
    extra: Value,
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
    let mut body = json!({"total_count": total, key: items});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let mut r = json_response(StatusCode::OK, body);
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
pub(super) fn percent_decode(v: &str) -> String {
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

/// GitHub's answer to a request without a `User-Agent` (a 403, as plain text).
pub(super) const NO_USER_AGENT: &str = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.";

/// GitHub's message for a secondary rate limit.
pub(super) const SECONDARY_LIMIT: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0400:3C7A:1F1E4B2:3E1A5C9:6578B2D1.";

/// GitHub's message when content creation is what is limited.
pub(super) const CONTENT_LIMIT: &str = "You have exceeded a secondary rate limit and have been temporarily blocked from content creation. Please retry your request again later. If you reach out to GitHub Support for help, please include the request ID 0400:3C7A:1F1E4B2:3E1A5C9:6578B2D2.";

fn route_key(method: &Method, path: &str) -> String {
    let segs: Vec<&str> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| if s.parse::<i64>().is_ok() { ":id" } else { s })
        .collect();
    format!("{method} /{}", segs.join("/"))
}

/// The primary rate-limit headers GitHub puts on every answer.
fn rate_headers(r: &mut Response, limit: u64, used: u64, reset_ms: i64) {
    let h = r.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("x-ratelimit-limit", limit.to_string());
    put(
        "x-ratelimit-remaining",
        limit.saturating_sub(used).to_string(),
    );
    put("x-ratelimit-used", used.min(limit).to_string());
    put("x-ratelimit-reset", (reset_ms / 1000).to_string());
    put("x-ratelimit-resource", "core".to_string());
}

pub(super) async fn dispatch(
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
    let route = route_key(&method, &path);
    // A held request is answered at the moment it is released.
    sim.maybe_hold(&route).await;
    let now = sim.now();
    let header_text = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let bearer = header_text("authorization")
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
                .map(str::to_string)
        })
        .unwrap_or_default();
    // Who is calling: an installation token (`ghs_…`, which in GitHub's
    // current format is itself dotted like a JWT), the App's JWT, or no one.
    let caller: Result<Caller, Response> = if bearer.is_empty() {
        Ok(Caller::Anonymous)
    } else if bearer.starts_with("ghs_") || bearer.matches('.').count() != 2 {
        let w = sim.world();
        match w.tokens.get(&bearer) {
            Some((inst, _)) if w.suspended.contains(inst) => Err(gh_error(
                StatusCode::FORBIDDEN,
                "This installation has been suspended",
            )),
            Some((inst, exp)) if *exp > now => Ok(Caller::Installation(*inst)),
            Some(_) => Err(gh_error(
                StatusCode::UNAUTHORIZED,
                "Bad credentials (the token expired)",
            )),
            None => Err(gh_error(StatusCode::UNAUTHORIZED, "Bad credentials")),
        }
    } else {
        match sim.verify_jwt(&bearer) {
            Ok(()) => Ok(Caller::App),
            Err(m) => Err(gh_error(StatusCode::UNAUTHORIZED, m)),
        }
    };
    let seen = world::Seen {
        at_ms: now,
        route: route.clone(),
        caller: caller.as_ref().ok().copied(),
        user_agent: header_text("user-agent"),
        accept: header_text("accept"),
        api_version: header_text("x-github-api-version"),
        status: 0,
    };
    let resp = answer(&sim, &method, &seg, &q, &body, now, &route, &seen, caller);
    let mut w = sim.world();
    if w.seen.len() >= world::SEEN_KEPT {
        w.seen.pop_front();
    }
    w.seen.push_back(world::Seen {
        status: resp.status().as_u16(),
        ..seen
    });
    resp
}

/// The answer to one API request from a known (or refused) caller.
#[allow(clippy::too_many_arguments)]
fn answer(
    sim: &SimGithub,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    body: &Value,
    now: i64,
    route: &str,
    seen: &world::Seen,
    caller: Result<Caller, Response>,
) -> Response {
    let mut w = sim.world();
    w.expire_runners(now);
    *w.requests.entry(route.to_string()).or_default() += 1;
    // GitHub refuses a request without a User-Agent before anything else.
    if seen
        .user_agent
        .as_ref()
        .is_none_or(|ua| ua.trim().is_empty())
    {
        return (
            StatusCode::FORBIDDEN,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            NO_USER_AGENT,
        )
            .into_response();
    }
    if let Some((status, left)) = w.failing_routes.get_mut(route).filter(|f| f.1 > 0) {
        *left -= 1;
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
        return gh_error(status, "Resource not accessible by integration (simulated)");
    }
    let caller = match caller {
        Ok(c) => c,
        Err(mut r) => {
            // Unauthenticated: the anonymous budget's headers.
            let limit = w.limit_of(Caller::Anonymous);
            let win = *w.window(Caller::Anonymous, now);
            rate_headers(&mut r, limit, win.used, win.started_ms + 3_600_000);
            return r;
        }
    };
    let limit = w.limit_of(caller);
    let win = *w.window(caller, now);
    let reset = win.started_ms + 3_600_000;
    // Secondary limits: armed ones trigger on their route; those in force
    // refuse everything of their caller, whatever the primary budget says.
    let installation = match caller {
        Caller::Installation(i) => Some(i),
        _ => None,
    };
    w.secondary_limits
        .retain(|l| l.until_ms.is_none_or(|until| until > now));
    let mut limited = None;
    for l in w.secondary_limits.iter_mut() {
        if caller == Caller::Anonymous || l.installation.is_some_and(|i| Some(i) != installation) {
            continue;
        }
        if l.until_ms.is_none() && l.after_route.as_ref().is_none_or(|r| r == route) {
            l.until_ms = Some(now + l.for_ms);
        }
        if l.until_ms.is_some_and(|until| until > now) {
            limited = Some((l.status, l.retry_after_s));
            break;
        }
    }
    if let Some((status, advice)) = limited {
        w.secondary_answers += 1;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
        let mut r = gh_error(status, SECONDARY_LIMIT);
        rate_headers(&mut r, limit, win.used, reset);
        if let Some(s) = advice {
            r.headers_mut().insert("retry-after", HeaderValue::from(s));
        }
        return r;
    }
    // Content created too fast, or one endpoint asked too much of: a 403
    // with GitHub's message and no `retry-after` (GitHub does not promise one).
    if let Some(over) = w.content_and_points(caller, route, now) {
        w.secondary_answers += 1;
        let message = match over {
            world::Over::Content => CONTENT_LIMIT,
            world::Over::EndpointPoints => SECONDARY_LIMIT,
        };
        let mut r = gh_error(StatusCode::FORBIDDEN, message);
        rate_headers(&mut r, limit, win.used, reset);
        return r;
    }
    // The primary budget: used up (or every call limited by the control
    // API), a 403 with `x-ratelimit-remaining: 0` until the reset.
    if now < w.rate_limited_until_ms || win.used >= limit {
        let (used, reset) = if win.used >= limit {
            (limit, reset)
        } else {
            (limit, w.rate_limited_until_ms)
        };
        let message = match caller {
            Caller::Installation(i) => format!("API rate limit exceeded for installation ID {i}."),
            _ => "API rate limit exceeded.".to_string(),
        };
        let mut r = gh_error(StatusCode::FORBIDDEN, &message);
        rate_headers(&mut r, limit, used, reset);
        return r;
    }
    w.window(caller, now).used += 1;
    let used = win.used + 1;
    drop(w);
    let mut resp = match caller {
        Caller::App => app_api(sim, method, seg, q, now),
        Caller::Installation(inst) => {
            let accept = seen.accept.as_deref().unwrap_or("");
            repo_api(sim, inst, method, seg, q, body, now, accept)
        }
        Caller::Anonymous => gh_error(StatusCode::UNAUTHORIZED, "Requires authentication"),
    };
    rate_headers(&mut resp, limit, used, reset);
    resp
}

fn app_api(
    sim: &SimGithub,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    now: i64,
) -> Response {
    if let Some(r) = super::deliveries::app_hook(sim, method, seg, q, now) {
        return r;
    }
    let mut w = sim.world();
    match (method, seg) {
        (&Method::GET, ["app", "installations"]) => {
            let page: usize = q("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let list: Vec<Value> = w
                .org_installations
                .iter()
                .filter(|(id, _)| !w.deleted.contains(id))
                .skip((page.max(1) - 1) * 100)
                .take(100)
                .map(|(id, login)| {
                    world::installation_json(*id, login, w.app_id, &sim.public_url())
                })
                .collect();
            json_response(StatusCode::OK, Value::Array(list))
        }
        (&Method::POST, ["app", "installations", id, "access_tokens"]) => {
            let Some(inst) = id
                .parse::<i64>()
                .ok()
                .filter(|i| w.org_installations.contains_key(i) && !w.deleted.contains(i))
            else {
                return gh_error(StatusCode::NOT_FOUND, "Not Found");
            };
            if w.suspended.contains(&inst) {
                return gh_error(
                    StatusCode::FORBIDDEN,
                    "This installation has been suspended",
                );
            }
            let expires = now + TOKEN_LIFETIME_MS;
            let token = w.installation_token(inst, expires);
            w.secrets_issued.push(token.clone());
            w.tokens.insert(token.clone(), (inst, expires));
            let at = chrono::DateTime::from_timestamp_millis(expires)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            // The OpenAPI `installation-token` schema: what the App was
            // granted (rigger's permissions), over all the account's repositories.
            json_response(
                StatusCode::CREATED,
                json!({"token": token, "expires_at": at, "repository_selection": "all",
                       "permissions": {"actions": "read", "administration": "write", "checks": "write",
                                       "contents": "read", "metadata": "read", "members": "read",
                                       "organization_self_hosted_runners": "write"}}),
            )
        }
        (&Method::GET, ["repos", o, r, "installation"]) => match w.repos.get(&format!("{o}/{r}")) {
            Some(repo) => json_response(
                StatusCode::OK,
                world::installation_json(repo.installation, o, w.app_id, &sim.public_url()),
            ),
            None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
        },
        _ => gh_error(
            StatusCode::FORBIDDEN,
            "A JSON web token cannot be used to access this endpoint: use an installation token",
        ),
    }
}
