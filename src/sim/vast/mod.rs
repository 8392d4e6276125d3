//! The simulated Vast.ai: the endpoints the `vastai` 1.9.1 CLI and rigger
//! call, with the real API's quirks (reference §13), over real HTTP.
//!
//! The boot seam: when an instance starts running, the hook set with
//! [`SimVast::on_boot`] receives its image, onstart, args and environment
//! (a container's with `CONTAINER_ID` and `CONTAINER_API_KEY`), and may run them; it reports
//! the end with [`SimVast::exit`] and adds output with [`SimVast::append_log`].

pub mod book;
pub mod filter;
pub mod market;
pub mod world;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::engine::ports::Clock;
pub use world::{Booted, Charge, Faults, Phase, Rental};
use world::{RentError, World};

/// How to build a simulated Vast.ai.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub offers: usize,
    pub boot_delay_ms: i64,
    pub faults: Faults,
    /// The account's API key.
    pub api_key: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            offers: 2000,
            boot_delay_ms: 20_000,
            faults: Faults::default(),
            api_key: "sim-vast-key".to_string(),
        }
    }
}

pub type BootHook = Arc<dyn Fn(Booted) + Send + Sync>;

struct Inner {
    world: Mutex<World>,
    clock: Arc<dyn Clock>,
    api_key: String,
    boot: Mutex<Option<BootHook>>,
}

/// A handle on the simulated Vast.ai (cheap to clone).
#[derive(Clone)]
pub struct SimVast(Arc<Inner>);

impl SimVast {
    pub fn new(config: SimConfig, clock: Arc<dyn Clock>) -> SimVast {
        let now_s = clock.now_ms() as f64 / 1000.0;
        let offers = market::generate(config.seed, config.offers, now_s);
        SimVast(Arc::new(Inner {
            world: Mutex::new(World::new(
                offers,
                config.seed,
                config.boot_delay_ms,
                config.faults,
            )),
            clock,
            api_key: config.api_key,
            boot: Mutex::new(None),
        }))
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        // A panic while holding the lock would be a bug in the simulator;
        // keep serving rather than poison every later request.
        self.0.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now(&self) -> i64 {
        self.0.clock.now_ms()
    }

    /// Set the boot seam.
    pub fn on_boot(&self, hook: BootHook) {
        *self.0.boot.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    /// Advance instances to the clock's time and run the boot seam for the
    /// ones that started. Every request does this first; a standalone
    /// simulator also does it on a ticker.
    pub fn tick(&self) {
        let now = self.now();
        let booted = self.world().tick(now);
        if booted.is_empty() {
            return;
        }
        let hook = self
            .0
            .boot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(hook) = hook {
            for b in booted {
                hook(b);
            }
        }
    }

    /// The instance's process ended with `code`.
    pub fn exit(&self, id: i64, code: i32) -> bool {
        let now = self.now();
        self.world().exit(id, code, now)
    }

    /// When each instance was created (ms on the simulator's clock).
    pub fn created_at_ms(&self) -> Vec<i64> {
        self.world()
            .instances
            .values()
            .map(|i| i.created_ms)
            .collect()
    }

    /// An instance's log so far (what `logs` returns).
    pub fn log(&self, id: i64) -> Option<String> {
        self.world().instances.get(&id).map(|i| i.log.clone())
    }

    pub fn append_log(&self, id: i64, text: &str) {
        if let Some(i) = self.world().instances.get_mut(&id) {
            i.log.push_str(text);
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        self.world().faults = faults;
    }

    pub fn add_ssh_key(&self, key: &str) -> i64 {
        self.world().add_ssh_key(key.to_string())
    }

    /// Instances not destroyed: `(id, label, phase)`.
    pub fn live_instances(&self) -> Vec<(i64, Option<String>, Phase)> {
        self.tick();
        self.world()
            .instances
            .values()
            .filter(|i| i.phase != Phase::Destroyed)
            .map(|i| (i.id, i.label.clone(), i.phase))
            .collect()
    }

    pub fn phase(&self, id: i64) -> Option<Phase> {
        self.tick();
        self.world().instances.get(&id).map(|i| i.phase)
    }

    /// Rent directly (for tests that need an instance rigger did not make).
    pub fn rent(&self, offer_id: i64, rental: Rental) -> Result<i64, String> {
        let now = self.now();
        self.world()
            .rent(offer_id, rental, now)
            .map(|(id, _)| id)
            .map_err(|e| format!("{e:?}"))
    }

    /// Offers still on the market.
    pub fn offer_ids(&self) -> Vec<i64> {
        self.world()
            .offers
            .iter()
            .filter_map(|o| o.get("id").and_then(Value::as_i64))
            .collect()
    }

    pub fn ledger(&self) -> Vec<Charge> {
        self.world().ledger.clone()
    }

    pub fn spend(&self) -> f64 {
        let now = self.now();
        self.world().spend(now)
    }

    /// How many times `METHOD /path` was called (path without ids normalised).
    pub fn requests(&self, key: &str) -> u64 {
        self.world().requests.get(key).copied().unwrap_or(0)
    }

    /// The HTTP API. Paths are matched with or without their trailing slash.
    pub fn router(&self) -> Router {
        Router::new().fallback(dispatch).with_state(self.clone())
    }

    /// Serve on `listener` until the process ends, ticking with the clock.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        let ticker = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                ticker.tick();
            }
        });
        axum::serve(listener, self.router()).await
    }
}

/// Exactly `application/json`: the CLI compares the header as a string.
fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(status: StatusCode, code: &str, msg: &str) -> Response {
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
        && let Some(k) = v.strip_prefix("Bearer ")
    {
        return Some(k.trim().to_string());
    }
    query_param(uri, "api_key")
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    url_pairs(q)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn url_pairs(q: &str) -> Vec<(String, String)> {
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

async fn dispatch(
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
    api(&sim, &method, &segments, &uri, &headers, body_json)
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
            json!({"filters": [{"actual_status": ["running", "loading", "exited", "offline"],
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
        (&Method::PUT, ["api", "v0", "instances", id]) => manage(sim, id, &body, now),
        (&Method::DELETE, ["api", "v0", "instances", id]) => {
            let Ok(id) = id.parse::<i64>() else {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_args",
                    "invalid instance_id",
                );
            };
            if sim.world().destroy(id, now) {
                json_response(
                    StatusCode::OK,
                    json!({"success": true, "msg": "Instance destroyed successfully"}),
                )
            } else {
                error(
                    StatusCode::NOT_FOUND,
                    "no_such_instance",
                    "Instance not found",
                )
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
                .map(|(id, k)| json!({"id": id, "public_key": k, "created_at": 1.7e9}))
                .collect();
            json_response(StatusCode::OK, Value::Array(keys))
        }
        (&Method::POST, ["api", "v0", "ssh"]) => {
            match body.get("ssh_key").and_then(Value::as_str) {
                Some(k) if k.starts_with("ssh-") || k.starts_with("ecdsa-") => {
                    let id = sim.add_ssh_key(k);
                    json_response(StatusCode::OK, json!({"success": true, "id": id}))
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

fn search(sim: &SimVast, q: &Value) -> Response {
    let Some(obj) = q.as_object() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "the query must be a JSON object",
        );
    };
    let s = match filter::parse(obj) {
        Ok(s) => s,
        Err(filter::BadQuery(why)) => return error(StatusCode::BAD_REQUEST, "invalid_args", &why),
    };
    let w = sim.world();
    // Rank references with their price; copy only the offers answered.
    let mut found: Vec<(&Map<String, Value>, Value)> = w
        .offers
        .candidates(&s)
        .filter(|o| filter::matches(o, &s))
        .map(|o| (o, json!(dph_total(o, &s))))
        .collect();
    filter::sort_by_columns(&mut found, &s.order, column_of);
    found.truncate(s.limit);
    let found: Vec<Map<String, Value>> = found.into_iter().map(|(o, _)| priced(o, &s)).collect();
    drop(w);
    json_response(StatusCode::OK, json!({"offers": found}))
}

/// A column of a priced offer: `dph_total` as priced for this search.
fn column_of<'a>(item: &'a (&Map<String, Value>, Value), col: &str) -> Option<&'a Value> {
    if col == "dph_total" {
        Some(&item.1)
    } else {
        item.0.get(col)
    }
}

/// $/hour for the storage asked about; for bids, the minimum bid as the
/// GPU's price.
fn dph_total(o: &Map<String, Value>, s: &filter::Search) -> f64 {
    let base = o.get("dph_base").and_then(Value::as_f64).unwrap_or(0.0);
    let min_bid = o.get("min_bid").and_then(Value::as_f64).unwrap_or(base);
    let storage =
        o.get("storage_cost").and_then(Value::as_f64).unwrap_or(0.0) * s.storage_gb / 720.0;
    let gpu = if s.bid { min_bid } else { base };
    ((gpu + storage) * 1e6).round() / 1e6
}

/// An offer with `dph_total` for the storage asked about, and for bids the
/// minimum bid as its price.
fn priced(o: &Map<String, Value>, s: &filter::Search) -> Map<String, Value> {
    let total = dph_total(o, s);
    let mut o = o.clone();
    o.insert("dph_total".into(), json!(total));
    o.insert("is_bid".into(), json!(s.bid));
    o
}

fn env_pairs(v: Option<&Value>) -> Vec<(String, String)> {
    match v {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map_or_else(|| v.to_string(), str::to_string),
                )
            })
            .collect(),
        // The OpenAPI types env as a docker-style string: `-e K=V -p 80:80`.
        Some(Value::String(s)) => {
            let mut out = Vec::new();
            let mut words = s.split_whitespace();
            while let Some(w) = words.next() {
                match (w, words.next()) {
                    ("-e", Some(kv)) => {
                        if let Some((k, v)) = kv.split_once('=') {
                            out.push((k.to_string(), v.trim_matches('"').to_string()));
                        }
                    }
                    ("-p", Some(p)) => out.push((format!("-p {p}"), "1".to_string())),
                    _ => {}
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

fn create(sim: &SimVast, id: &str, body: &Value, now: i64) -> Response {
    let Ok(offer_id) = id.parse::<i64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "the offer id must be a number",
        );
    };
    let str_of = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let image = str_of("image").unwrap_or_default();
    let rental = Rental {
        vm: body.get("vm") == Some(&Value::Bool(true)),
        disk_gb: body.get("disk").and_then(filter::number).unwrap_or(10.0),
        label: str_of("label"),
        env: env_pairs(body.get("env")),
        onstart: str_of("onstart"),
        args: body
            .get("args")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        runtype: str_of("runtype").unwrap_or_else(|| "ssh".to_string()),
        bid: body.get("price").and_then(filter::number),
        image,
    };
    if let Some(l) = &rental.label
        && l.len() > 256
    {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "label is longer than 256 characters",
        );
    }
    let cancel_unavail = body.get("cancel_unavail") == Some(&Value::Bool(true));
    let mut w = sim.world();
    let f = w.faults.clone();
    let mut draw = |rate: f64| rate > 0.0 && w.rng.chance(rate);
    let ambiguous = draw(f.ambiguous_create_rate);
    let cut = draw(f.cut_create_rate);
    let garbled = draw(f.garbled_create_rate);
    match w.rent(offer_id, rental, now) {
        Ok(_) if ambiguous => error(
            StatusCode::BAD_GATEWAY,
            "server_error",
            "upstream timed out (injected fault)",
        ),
        Ok((id, key)) => {
            let answer = json!({"success": true, "new_contract": id, "instance_api_key": key});
            if cut {
                cut_off(&answer.to_string())
            } else if garbled {
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "text/html")],
                    "<html><body>upstream connect error (injected fault)</body></html>",
                )
                    .into_response()
            } else {
                json_response(StatusCode::OK, answer)
            }
        }
        Err(RentError::NoSuchAsk) if cancel_unavail => error(
            StatusCode::GONE,
            "no_such_ask",
            &format!(
                "error 410/3907: no_such_ask Instance type {offer_id} is no longer available."
            ),
        ),
        // The real 404 says `invalid_args` and names `no_such_ask` only in
        // its message (reference §4.3).
        Err(RentError::NoSuchAsk) => error(
            StatusCode::NOT_FOUND,
            "invalid_args",
            &format!(
                "error 404/3603: no_such_ask Instance type by id {offer_id} is not available."
            ),
        ),
        Err(RentError::NoSshKeyForVm) => error(
            StatusCode::BAD_REQUEST,
            "no_ssh_key_for_vm",
            "A VM needs an SSH key on the account; add one first.",
        ),
        Err(RentError::Invalid(why)) => error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            &format!("Invalid args: {why}"),
        ),
    }
}

/// A 200 whose body stops half-way: the headers promise the whole answer,
/// the connection drops after part of it (what a client sees when a proxy
/// or the network fails mid-answer).
fn cut_off(answer: &str) -> Response {
    // Leading whitespace (valid JSON) makes the part sent larger than
    // hyper's write buffer, so the head and the first part go out before
    // the body ends short; a small body would be dropped with its head.
    let pad = " ".repeat(1 << 20);
    let mut sent = pad.clone().into_bytes();
    sent.extend_from_slice(&answer.as_bytes()[..answer.len() / 2]);
    // A streamed body has no known length, so hyper sends the promised
    // Content-Length and ends the connection when the stream ends short.
    let body = axum::body::Body::from_stream(axum::body::Body::from(sent).into_data_stream());
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CONTENT_LENGTH,
        header::HeaderValue::from(pad.len() + answer.len()),
    );
    r
}

fn manage(sim: &SimVast, id: &str, body: &Value, now: i64) -> Response {
    let Some(id) = id.parse::<i64>().ok() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "invalid instance_id",
        );
    };
    let mut w = sim.world();
    if w.live(id).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "no_such_instance",
            &format!("Instance {id} not found."),
        );
    }
    if let Some(label) = body.get("label") {
        let label = label.as_str().unwrap_or_default().to_string();
        if label.len() > 1024 {
            return error(
                StatusCode::BAD_REQUEST,
                "label_too_long",
                "Please limit label length to 1024 characters, ideally less than 128.",
            );
        }
        if let Some(i) = w.instances.get_mut(&id) {
            i.label = Some(label.clone());
        }
        return json_response(
            StatusCode::OK,
            json!({"success": true, "msg": format!("label for {id} set to '{label}'")}),
        );
    }
    match body.get("state").and_then(Value::as_str) {
        Some("stopped") => {
            w.exit(id, 143, now);
            json_response(StatusCode::OK, json!({"success": true}))
        }
        Some("running") => json_response(StatusCode::OK, json!({"success": true})),
        _ => error(
            StatusCode::BAD_REQUEST,
            "invalid_args",
            "expected `label` or `state`",
        ),
    }
}

/// Columns `select_filters` may use (stored ones only, like the real API).
const STORED: &[&str] = &[
    "id",
    "actual_status",
    "label",
    "gpu_name",
    "verification",
    "machine_id",
    "intended_status",
    "image_uuid",
];

fn list_v1(sim: &SimVast, uri: &Uri, now: i64) -> Response {
    let param = |k: &str| query_param(uri, k);
    let limit = match param("limit").and_then(|l| l.parse::<i64>().ok()) {
        None => 25,
        Some(l) if l <= 0 => 5,
        Some(l) => l.min(25),
    } as usize;
    let filters: Map<String, Value> =
        match param("select_filters").map(|f| serde_json::from_str::<Value>(&f)) {
            None => Map::new(),
            Some(Ok(Value::Object(m))) => m,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "select_filters must be a JSON object",
                );
            }
        };
    for col in filters.keys() {
        if !STORED.contains(&col.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("Error in query parameters: {col} is not a valid search key"),
            );
        }
    }
    let desc = param("order_by")
        .and_then(|o| serde_json::from_str::<Value>(&o).ok())
        .and_then(|o| {
            o.get(0)
                .and_then(|c| c.get("dir"))
                .and_then(Value::as_str)
                .map(|d| d == "desc")
        })
        .unwrap_or(false);
    let after: Option<i64> = match param("after_token") {
        None => None,
        Some(t) => match t.strip_prefix("sim-").and_then(|n| n.parse().ok()) {
            Some(n) => Some(n),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_token",
                    "invalid after_token",
                );
            }
        },
    };
    let select: Option<Vec<String>> = param("select_cols")
        .and_then(|c| serde_json::from_str::<Vec<String>>(&c).ok())
        .filter(|c| !c.iter().any(|x| x == "*"));
    let w = sim.world();
    let mut rows: Vec<Map<String, Value>> = w
        .instances
        .values()
        .filter(|i| i.phase != Phase::Destroyed)
        .filter_map(|i| match w.row(i, now) {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .filter(|row| {
            filters.iter().all(|(col, cond)| {
                cond.as_object()
                    .is_none_or(|ops| ops.iter().all(|(op, v)| filter::holds(row, col, op, v)))
            })
        })
        .collect();
    let mut label_counts = Map::new();
    for r in &rows {
        let l = r
            .get("label")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let n = label_counts.get(&l).and_then(Value::as_u64).unwrap_or(0) + 1;
        label_counts.insert(l, json!(n));
    }
    let total = rows.len();
    if desc {
        rows.reverse();
    }
    let id_of = |r: &Map<String, Value>| r.get("id").and_then(Value::as_i64).unwrap_or(0);
    if let Some(a) = after {
        rows.retain(|r| if desc { id_of(r) < a } else { id_of(r) > a });
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = if more {
        rows.last().map(|r| format!("sim-{}", id_of(r)))
    } else {
        None
    };
    let page: Vec<Value> = rows
        .into_iter()
        .map(|r| match &select {
            Some(cols) => Value::Object(
                cols.iter()
                    .map(|c| (c.clone(), r.get(c).cloned().unwrap_or(Value::Null)))
                    .collect(),
            ),
            None => Value::Object(r),
        })
        .collect();
    json_response(
        StatusCode::OK,
        json!({"success": true, "instances_found": page.len(), "total_instances": total,
               "label_counts": label_counts, "next_token": next, "instances": page}),
    )
}

/// `/sim/...`: inspect and steer the simulator (not part of Vast.ai's API).
fn control(sim: &SimVast, method: &Method, seg: &[&str], body: &[u8]) -> Response {
    let now = sim.now();
    match (method, seg) {
        (&Method::GET, ["state"]) => {
            let w = sim.world();
            let instances: Vec<Value> = w
                .instances
                .values()
                .map(|i| {
                    json!({"id": i.id, "label": i.label, "phase": i.phase,
                                 "gpu_name": i.offer.get("gpu_name"), "cost": i.cost_at(now)})
                })
                .collect();
            json_response(
                StatusCode::OK,
                json!({"offers": w.offers.len(), "instances": instances, "ledger": w.ledger,
                       "spend": w.spend(now), "faults": w.faults, "requests": w.requests}),
            )
        }
        (&Method::POST, ["faults"]) => {
            let text = String::from_utf8_lossy(body);
            match text.trim().parse::<Faults>() {
                Ok(f) => {
                    sim.set_faults(f);
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                Err(e) => error(StatusCode::BAD_REQUEST, "invalid_args", &e),
            }
        }
        (&Method::POST, ["instances", id, "exit"]) => {
            let code = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("exit_code").and_then(Value::as_i64))
                .unwrap_or(0) as i32;
            match id.parse::<i64>() {
                Ok(id) if sim.exit(id, code) => {
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no running instance with that id",
                ),
            }
        }
        (&Method::POST, ["instances", id, "die"]) => {
            let mut w = sim.world();
            match id
                .parse::<i64>()
                .ok()
                .and_then(|id| w.instances.get_mut(&id))
            {
                Some(i) if i.phase != Phase::Destroyed => {
                    i.phase = Phase::Offline;
                    i.ended_ms = Some(now);
                    json_response(StatusCode::OK, json!({"success": true}))
                }
                _ => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no live instance with that id",
                ),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "unknown /sim endpoint"),
    }
}
