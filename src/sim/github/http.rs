//! GitHub's side of the wire: routing, App and installation auth, rate
//! limits, the App API, and the shapes every answer shares (errors, pages).

use aws_lc_rs::signature::{self, UnparsedPublicKey};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::control::{control, runner_side};
use super::rest::repo_api;
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
    let now = sim.now();
    {
        let mut w = sim.world();
        let route = route_key(&method, &path);
        *w.requests.entry(route.clone()).or_default() += 1;
        if let Some((status, left)) = w.failing_routes.get_mut(&route).filter(|f| f.1 > 0) {
            *left -= 1;
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY);
            return gh_error(status, "Resource not accessible by integration (simulated)");
        }
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
        Caller::Installation(inst) => {
            let accept = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            repo_api(&sim, inst, &method, &seg, &q, &body, now, accept)
        }
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
            w.secrets_issued.push(token.clone());
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
