//! The Vast.ai REST client (reference §2–§9). Every call goes through
//! [`VastClient::call`], which owns the retry policy: transient failures are
//! retried within bounds for calls that are safe to repeat; a create is never
//! repeated after an ambiguous failure.
//!
//! Rate limits: a client given a [`Limiter`] (`with_limiter`; rigger's
//! engine always is, see `limit.rs`) takes each endpoint's slot before it
//! sends, sends nothing when the slot is not free (the caller gets
//! `RateLimited` with the wait), and after a 429 retries nothing itself: the
//! endpoint closes for at least its interval and the caller waits that long.
//! A client without one (`VastClient::new`), and any endpoint without a
//! limit, retries 429s within its policy.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::query::search_body;
use crate::cloud::{
    CloudProvider, LaunchSpec, Offer, OfferFilter, ProviderError, ProviderInstance,
};
use crate::settings::Secret;

use super::limit::{Endpoint, Limiter};
pub use super::retry::RetryPolicy;
use super::wire::parse_instance;
pub use super::wire::parse_offers_bytes;

/// How long a destroy or a listing's next page sleeps for its slot at most.
const QUEUE_DESTROY_MS: i64 = 5_000;

/// The real API.
pub const DEFAULT_URL: &str = "https://console.vast.ai";

/// A Vast.ai account, reached over HTTP.
#[derive(Clone)]
pub struct VastClient {
    http: reqwest::Client,
    base: String,
    key: Secret,
    retry: RetryPolicy,
    limiter: Option<Limiter>,
    /// The longest a call sleeps for its slot rather than go back to its caller.
    queue_ms: i64,
    /// Other tools' instance rows skipped as unreadable (shared by clones).
    pub(super) unreadable: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for VastClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VastClient")
            .field("base", &self.base)
            .finish()
    }
}

/// Whether a failed call can be repeated without doing its work twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Repeat {
    Safe,
    /// Only when the server certainly did nothing (429, connection refused).
    OnlyIfRejected,
}

impl VastClient {
    pub fn new(base_url: &str, api_key: Secret) -> VastClient {
        VastClient::with_retry(base_url, api_key, RetryPolicy::default())
    }

    pub fn with_retry(base_url: &str, api_key: Secret, retry: RetryPolicy) -> VastClient {
        let http = reqwest::Client::builder()
            .timeout(retry.timeout)
            .user_agent(concat!("rigger/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        VastClient {
            http,
            base: base_url.trim_end_matches('/').to_string(),
            key: api_key,
            retry,
            limiter: None,
            queue_ms: 0,
            unreadable: Default::default(),
        }
    }

    /// Keep to Vast.ai's rate limits with `limiter` (shared by its clones);
    /// a call sleeps for its slot when it is at most `queue_ms` away, and
    /// otherwise goes back to its caller with the wait, sending nothing.
    pub fn with_limiter(mut self, limiter: Limiter, queue_ms: i64) -> VastClient {
        self.limiter = Some(limiter);
        self.queue_ms = queue_ms.max(0);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One API call with the retry policy, its answer read as JSON.
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        repeat: Repeat,
    ) -> Result<Value, ProviderError> {
        self.call_with(method, path, query, body, repeat, json_body)
            .await
    }

    /// One API call with the retry policy; `parse` reads a 2xx body. POST,
    /// PUT and DELETE always carry a JSON body (the API wants one even when
    /// there is nothing to say).
    ///
    /// For a call that must not be repeated (a create), every failure after
    /// the request may have reached Vast.ai is `Ambiguous`, never retried:
    /// a timeout, a 5xx, a body cut off or unreadable. Only a refused
    /// connection and a 429 (the server certainly did nothing) are retried.
    async fn call_with<T>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        repeat: Repeat,
        parse: fn(&[u8]) -> Result<T, ProviderError>,
    ) -> Result<T, ProviderError> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.base, path))
            .map_err(|e| ProviderError::Invalid(format!("bad Vast.ai URL {}: {e}", self.base)))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let body = match (&method, body) {
            (&Method::GET, _) => None,
            (_, Some(b)) => Some(b),
            (_, None) => Some(json!({})),
        };
        let endpoint = endpoint_of(&method, path);
        // A destroy (a machine that costs money until it goes) and the pages
        // after the first of one listing (a listing cut short would be worse)
        // wait for their slot when it is near.
        let queue_ms = match endpoint {
            Endpoint::Destroy => self.queue_ms.max(QUEUE_DESTROY_MS),
            // Every page: a listing is short (1 s), and an operator's
            // `rigger instances destroy-all` right after another run must
            // wait for it rather than fail.
            Endpoint::List | Endpoint::Show => self.queue_ms.max(QUEUE_DESTROY_MS),
            _ => self.queue_ms,
        };
        let mut attempt = 0;
        let booked = match &self.limiter {
            Some(l) if endpoint == Endpoint::Create => l.take_booked_create(),
            _ => None,
        };
        loop {
            if let Some(l) = &self.limiter
                && let Some(at) = booked
            {
                // The slot was taken ahead: wait for it, and keep the
                // spacing to the last create sent.
                let wait = l.booked_wait_ms(at);
                if wait > 0 {
                    l.sleep_ms(wait).await;
                }
            } else if let Some(l) = &self.limiter {
                match l.acquire(endpoint, queue_ms) {
                    Ok(wait) => {
                        // Vast.ai measures an interval between arrivals:
                        // it is kept from the last request's answer (that
                        // request reached Vast.ai before then), so a request
                        // on a warm connection does not arrive early after a
                        // slow one (a listing's pages; destroy-all's destroys).
                        // Search is counted per minute, by send.
                        let gap = match endpoint {
                            Endpoint::Search => 0,
                            _ => l.gap_since_last_ms(endpoint),
                        };
                        let wait = wait.max(gap);
                        if wait > 0 {
                            l.sleep_ms(wait).await;
                        }
                    }
                    Err(wait) => {
                        tracing::debug!(
                            path,
                            wait_ms = wait,
                            "Vast.ai rate limit: waiting for a slot"
                        );
                        return Err(ProviderError::RateLimited {
                            retry_after_ms: wait.max(1),
                        });
                    }
                }
            }
            let mut req = self.http.request(method.clone(), url.clone());
            // No key, no header: an empty `Bearer ` is a key Vast.ai refuses
            // (the public search answers without one).
            if !self.key.expose().is_empty() {
                req = req.bearer_auth(self.key.expose());
            }
            if let Some(b) = &body {
                req = req.json(b);
            }
            let last = attempt + 1 >= self.retry.attempts;
            if let Some(l) = &self.limiter {
                l.sent(endpoint);
            }
            let outcome = match req.send().await {
                // Refused before anything was sent: safe to repeat, even a create.
                Err(e) if e.is_connect() => Err(ProviderError::Transient(describe_transport(&e))),
                Err(e) => Err(unanswered(repeat, describe_transport(&e))),
                Ok(resp)
                    if resp.status() == StatusCode::TOO_MANY_REQUESTS
                        && let Some(l) = self.limiter.as_ref().filter(|l| l.limits(endpoint)) =>
                {
                    return Err(throttled(resp, l, endpoint).await);
                }
                Ok(resp) => read(resp, repeat, parse).await,
            };
            if let Some(l) = &self.limiter {
                if outcome.is_ok() {
                    l.answered(endpoint);
                }
                if endpoint != Endpoint::Search {
                    // The answer came after Vast.ai took the request: the
                    // next one's spacing counts from here (see above).
                    l.sent(endpoint);
                }
            }
            let wait = match outcome {
                Err(ProviderError::RateLimited { retry_after_ms }) => {
                    match self.rate_limit_wait(attempt, retry_after_ms, last) {
                        Ok(wait) => wait,
                        Err(e) => return Err(e),
                    }
                }
                Err(ProviderError::Transient(why)) if !last => {
                    tracing::debug!(path, "Vast.ai transient failure, retrying: {why}");
                    self.retry.backoff(attempt)
                }
                other => return other,
            };
            tracing::debug!(path, ?wait, "Vast.ai rate limit or failure; waiting");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// After a 429: how long to wait before trying again, or the error to
    /// hand the caller. A `Retry-After` longer than `max_delay` is not
    /// cut short (that would only earn another 429): the caller gets the
    /// delay and schedules the retry itself.
    fn rate_limit_wait(
        &self,
        attempt: u32,
        retry_after_ms: i64,
        last: bool,
    ) -> Result<Duration, ProviderError> {
        let max_ms = crate::millis::of(self.retry.max_delay);
        if retry_after_ms > max_ms {
            return Err(ProviderError::RateLimited { retry_after_ms });
        }
        let wait = if retry_after_ms > 0 {
            crate::millis::to_duration(retry_after_ms)
        } else {
            self.retry.backoff(attempt)
        };
        if last {
            return Err(ProviderError::RateLimited {
                retry_after_ms: crate::millis::of(wait).max(1),
            });
        }
        Ok(wait)
    }

    /// The account's SSH public keys. VM mode cannot start without one.
    pub async fn ssh_keys(&self) -> Result<Vec<String>, ProviderError> {
        let v = match self
            .call(Method::GET, "/api/v0/ssh/", &[], None, Repeat::Safe)
            .await
        {
            Err(ProviderError::NotFound(_)) => return Ok(Vec::new()),
            other => other?,
        };
        let list = v
            .as_array()
            .or_else(|| v.get("ssh_keys").and_then(Value::as_array))
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|k| {
                // `key` is the field the OpenAPI documents for `GET /ssh/`.
                k.get("key")
                    .or_else(|| k.get("public_key"))
                    .or_else(|| k.get("ssh_key"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect())
    }

    /// Offers for a raw search body (what `rigger plan` shows it sent).
    pub async fn search_raw(&self, body: &Value) -> Result<Vec<Offer>, ProviderError> {
        // Read straight from the bytes into offers: one parse, no
        // intermediate `Value` (the benchmark times this same function).
        self.call_with(
            Method::POST,
            "/api/v0/bundles/",
            &[],
            Some(body.clone()),
            Repeat::Safe,
            parse_offers_bytes,
        )
        .await
    }

    /// Set an instance's label.
    /// An instance's SSH address in Vast.ai's own view of it
    /// (`GET /api/v0/instances/ID/`): `(host, port)`, `None` when it is gone
    /// or has none yet. Through the limiter like every other call.
    pub async fn ssh_address(&self, id: &str) -> Result<Option<(String, i64)>, ProviderError> {
        let v = match self
            .call(
                Method::GET,
                &format!("/api/v0/instances/{}/", path_id(id)?),
                &[("owner", "me".to_string())],
                None,
                Repeat::Safe,
            )
            .await
        {
            Err(ProviderError::NotFound(_)) => return Ok(None),
            other => other?,
        };
        let i = &v["instances"];
        Ok(match (i["ssh_host"].as_str(), i["ssh_port"].as_i64()) {
            (Some(host), Some(port)) => Some((host.to_string(), port)),
            _ => None,
        })
    }

    pub async fn label(&self, id: &str, label: &str) -> Result<(), ProviderError> {
        self.call(
            Method::PUT,
            &format!("/api/v0/instances/{}/", path_id(id)?),
            &[],
            Some(json!({ "label": label })),
            Repeat::Safe,
        )
        .await
        .map(|_| ())
    }

    fn launch_body(spec: &LaunchSpec) -> Value {
        let mut body = json!({
            "client_id": "me",
            "image": spec.image,
            "disk": spec.disk_gb,
            "label": spec.label,
            "env": spec.env,
            // Fail rather than leave a stopped instance that bills storage.
            "cancel_unavail": true,
        });
        // A bid only for an interruptible rental: the API types `price` as a
        // number of at least 0.001 (its OpenAPI), so no `null` on demand.
        if let Some(price) = spec.bid_price {
            body["price"] = json!(bid_price(price));
        }
        if spec.vm {
            // VMs support only the SSH launch mode; the onstart script needs
            // its shebang there, which the loader has.
            body["vm"] = json!(true);
            body["runtype"] = json!("ssh_direc ssh_proxy");
            body["onstart"] = json!(spec.onstart);
        } else {
            // The `args` run type: the loader is the container's one
            // process, so the container lives exactly as long as the runner
            // and its bootstrap. The SSH run types would replace the image's
            // entrypoint, keep an sshd we never use, and re-run onstart on
            // every restart (a spent JIT config would be tried again).
            body["runtype"] = json!("args");
            body["onstart"] = json!("/bin/sh");
            body["args"] = json!(["-c", spec.onstart]);
        }
        body
    }
}

/// Vast.ai's bids are in $0.001 steps (`price` `minimum` 0.001 in its
/// OpenAPI): a bid is sent rounded up to the next step, so it never falls
/// below the minimum it was computed from, and a float's tail (0.23625000000000002)
/// is not sent. A tiny tolerance keeps an exact step (0.237) where it is.
fn bid_price(bid: f64) -> f64 {
    let steps = (bid * 1000.0 - 1e-6).ceil().max(1.0);
    steps / 1000.0
}

/// Which of Vast.ai's limits a call counts against.
fn endpoint_of(method: &Method, path: &str) -> Endpoint {
    let instance = path
        .strip_prefix("/api/v0/instances/")
        .map(|rest| rest.trim_end_matches('/'))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()));
    match *method {
        Method::POST if path.starts_with("/api/v0/bundles") => Endpoint::Search,
        Method::PUT if path.starts_with("/api/v0/asks/") => Endpoint::Create,
        Method::GET if instance => Endpoint::Show,
        Method::GET if path.starts_with("/api/v1/instances") => Endpoint::List,
        Method::DELETE if instance => Endpoint::Destroy,
        _ => Endpoint::Other,
    }
}

/// A 429 to a client that keeps to the limits: the daily search quota
/// (`{"error":"search_quota_exceeded"}`, reset in `X-RateLimit-Reset`, epoch
/// seconds) parks searches until its reset; any other closes the endpoint
/// for at least its interval, or the `Retry-After` a proxy sent if longer.
async fn throttled(resp: reqwest::Response, l: &Limiter, e: Endpoint) -> ProviderError {
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|x| x.is_finite() && *x >= 0.0)
    };
    let retry_after_ms =
        header("retry-after").map_or(0, |s| crate::millis::advised_wait_ms(s, 0.0));
    let reset_ms = header("x-ratelimit-reset").map(|s| (s * 1000.0) as i64);
    let body = resp.bytes().await.unwrap_or_default();
    let quota = serde_json::from_slice::<Value>(&body)
        .ok()
        .is_some_and(|v| v.get("error").and_then(Value::as_str) == Some("search_quota_exceeded"));
    let wait = if quota {
        l.quota_exhausted(reset_ms)
    } else {
        l.refused(e).max(retry_after_ms)
    };
    ProviderError::RateLimited {
        retry_after_ms: wait,
    }
}

/// A failure after the request may have reached Vast.ai: for a create, the
/// rental may have happened, so the caller must look it up by label.
fn unanswered(repeat: Repeat, why: String) -> ProviderError {
    match repeat {
        Repeat::Safe => ProviderError::Transient(why),
        Repeat::OnlyIfRejected => ProviderError::Ambiguous(why),
    }
}

async fn read<T>(
    resp: reqwest::Response,
    repeat: Repeat,
    parse: fn(&[u8]) -> Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    let status = resp.status();
    let retry_after_ms = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| !s.is_nan() && *s >= 0.0)
        .map_or(0, |s| crate::millis::advised_wait_ms(s, 0.0));
    let body = resp.bytes().await.map_err(|e| describe_transport(&e));
    classify(
        status,
        retry_after_ms,
        body.as_deref().map_err(String::as_str),
        repeat,
        parse,
    )
}

/// What an answer means, from its status and body (`Err` when the body
/// could not be read to its end).
fn classify<T>(
    status: StatusCode,
    retry_after_ms: i64,
    body: Result<&[u8], &str>,
    repeat: Repeat,
    parse: fn(&[u8]) -> Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(ProviderError::RateLimited { retry_after_ms });
    }
    let bytes = match body {
        Ok(b) => b,
        // A refusal is a refusal even when its body is lost.
        Err(_) if status.is_client_error() => &[][..],
        Err(why) => {
            return Err(unanswered(
                repeat,
                format!("Vast.ai answered {status} but the body was cut off: {why}"),
            ));
        }
    };
    if status.is_success() {
        return match parse(bytes) {
            // An unreadable 2xx: for a create, it may have rented.
            Err(ProviderError::Transient(why)) => Err(unanswered(repeat, why)),
            other => other,
        };
    }
    let text = String::from_utf8_lossy(bytes);
    let json: Option<Value> = serde_json::from_slice(bytes).ok();
    let msg = message(json.as_ref(), &text);
    if !status.is_client_error() {
        // 5xx (and anything else unexpected): the server may have acted.
        return Err(unanswered(
            repeat,
            format!("Vast.ai answered {status}: {msg}"),
        ));
    }
    let code = json
        .as_ref()
        .and_then(|j| j.get("error"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if status == StatusCode::GONE || offer_refused(code, &msg) {
        return Err(ProviderError::OfferGone);
    }
    Err(match status.as_u16() {
        401 | 403 => ProviderError::Unauthorized(msg),
        // Only the API's own 404 (`{"success": false, "error": …}`) says
        // the thing is not there: a proxy's or a load balancer's 404 page
        // says nothing about it (a destroy taken for done would leak).
        404 if code.is_empty() => ProviderError::Transient(format!(
            "Vast.ai's address answered 404 without Vast.ai's error body: {msg}"
        )),
        404 => ProviderError::NotFound(msg),
        _ => ProviderError::Invalid(msg),
    })
}

/// A refusal that means "try the next offer", not "the request is wrong":
/// the offer is gone (the real API names `no_such_ask` in the message of a
/// 404 `invalid_args` and in the code of a 410, reference §4.3), or its
/// minimum bid rose above ours since the search (400 `invalid_price`).
fn offer_refused(code: &str, msg: &str) -> bool {
    code == "no_such_ask" || code == "invalid_price" || msg.contains("no_such_ask")
}

/// A 2xx body as JSON. A 2xx can still carry `"success": false`
/// (reference §4.3).
fn json_body(bytes: &[u8]) -> Result<Value, ProviderError> {
    let json: Value = serde_json::from_slice(bytes).map_err(|e| {
        ProviderError::Transient(format!(
            "Vast.ai answered with a body that is not JSON: {e}"
        ))
    })?;
    if json.get("success") == Some(&Value::Bool(false)) {
        let code = json
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let msg = message(Some(&json), "");
        if offer_refused(code, &msg) {
            return Err(ProviderError::OfferGone);
        }
        return Err(ProviderError::Invalid(msg));
    }
    Ok(json)
}

fn path_id(id: &str) -> Result<u64, ProviderError> {
    id.parse::<u64>()
        .map_err(|_| ProviderError::Invalid(format!("`{id}` is not a Vast.ai instance id")))
}

fn describe_transport(e: &reqwest::Error) -> String {
    // reqwest's Display includes the URL, never headers: the key stays out.
    if e.is_timeout() {
        format!("timed out: {e}")
    } else if e.is_connect() {
        format!("cannot connect: {e}")
    } else {
        e.to_string()
    }
}

/// The human part of an error body: `msg`, `detail`, `message` or `error`.
fn message(json: Option<&Value>, text: &str) -> String {
    let from_json = json.and_then(|j| {
        ["msg", "detail", "message", "error"]
            .iter()
            .find_map(|k| j.get(*k).and_then(Value::as_str))
            .map(str::to_string)
    });
    from_json.unwrap_or_else(|| {
        let t = text.trim();
        if t.is_empty() {
            "(no detail given)".to_string()
        } else {
            t.chars().take(200).collect()
        }
    })
}

impl CloudProvider for VastClient {
    fn create_slot(&self) -> Result<(), ProviderError> {
        match &self.limiter {
            Some(l) => l.book_create().map_err(|wait| ProviderError::RateLimited {
                retry_after_ms: wait.max(1),
            }),
            None => Ok(()),
        }
    }

    fn release_create_slot(&self) {
        if let Some(l) = &self.limiter {
            l.unbook_create();
        }
    }

    async fn search(&self, filter: &OfferFilter) -> Result<Vec<Offer>, ProviderError> {
        self.search_raw(&search_body(filter)).await
    }

    async fn launch(&self, spec: &LaunchSpec) -> Result<String, ProviderError> {
        if spec.vm && self.ssh_keys().await?.is_empty() {
            return Err(ProviderError::Invalid(
                "VM mode needs an SSH key on the Vast.ai account and there is none: add one \
                 with `vastai create ssh-key` (or in the console under Keys) before rigger \
                 rents a VM"
                    .to_string(),
            ));
        }
        let v = self
            .call(
                Method::PUT,
                &format!("/api/v0/asks/{}/", spec.offer_id),
                &[],
                Some(Self::launch_body(spec)),
                Repeat::OnlyIfRejected,
            )
            .await
            .map_err(|e| match e {
                // A 404 on create is an offer that is not (or no longer) there.
                ProviderError::NotFound(_) => ProviderError::OfferGone,
                other => other,
            })?;
        match v.get("new_contract").and_then(Value::as_i64) {
            Some(id) => Ok(id.to_string()),
            // Reported elsewhere: success without an id. Find it by label.
            None => Err(ProviderError::Ambiguous(
                "Vast.ai accepted the rental but named no instance".to_string(),
            )),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<ProviderInstance>, ProviderError> {
        let v = match self
            .call(
                Method::GET,
                &format!("/api/v0/instances/{}/", path_id(id)?),
                &[("owner", "me".to_string())],
                None,
                Repeat::Safe,
            )
            .await
        {
            Err(ProviderError::NotFound(_)) => return Ok(None),
            other => other?,
        };
        match v.get("instances") {
            Some(Value::Object(o)) if !o.is_empty() => {
                parse_instance(Value::Object(o.clone())).map(Some)
            }
            // `{"instances": null}` (or an empty object): destroyed or unknown.
            _ => Ok(None),
        }
    }

    async fn list(&self, label_prefix: &str) -> Result<Vec<ProviderInstance>, ProviderError> {
        self.list_where(None, label_prefix).await
    }

    async fn find_label(&self, label: &str) -> Result<Vec<ProviderInstance>, ProviderError> {
        // Vast.ai filters by label itself (as `vastai show instances
        // --label` does): one page, however many instances the account has.
        let filter = json!({"label": {"in": [label]}});
        let found = self.list_where(Some(filter), label).await?;
        Ok(found.into_iter().filter(|i| i.label == label).collect())
    }

    async fn destroy(&self, id: &str) -> Result<(), ProviderError> {
        match self
            .call(
                Method::DELETE,
                &format!("/api/v0/instances/{}/", path_id(id)?),
                &[],
                None,
                Repeat::Safe,
            )
            .await
        {
            // Already gone is destroyed.
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(()),
            Err(ProviderError::Invalid(m)) if m.contains("no_such_instance") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn logs(&self, id: &str) -> Result<String, ProviderError> {
        let v = self
            .call(
                Method::PUT,
                &format!("/api/v0/instances/request_logs/{}/", path_id(id)?),
                &[],
                Some(json!({"tail": "1000"})),
                Repeat::Safe,
            )
            .await?;
        let Some(url) = v.get("result_url").and_then(Value::as_str) else {
            return Ok(message(Some(&v), ""));
        };
        // The log is uploaded asynchronously: poll the URL (no auth) until
        // it is there, as the CLI does.
        for _ in 0..30 {
            match self.http.get(url).send().await {
                Ok(r) if r.status().is_success() => {
                    return r
                        .text()
                        .await
                        .map_err(|e| ProviderError::Transient(describe_transport(&e)));
                }
                Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
            }
        }
        Err(ProviderError::Transient(
            "the instance's log was not ready after 9 s".to_string(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_vast_ais_own_404_says_not_found() {
        let api = br#"{"success": false, "error": "not_found", "msg": "Instance not found"}"#;
        assert_eq!(
            safe(404, Ok(api)),
            Err(ProviderError::NotFound("Instance not found".into()))
        );
        // A proxy's page, an empty body, JSON without Vast.ai's code: the
        // request may never have reached Vast.ai.
        for body in [
            &b"<html><h1>404 Not Found</h1>nginx</html>"[..],
            b"",
            br#"{"detail": "x"}"#,
        ] {
            assert_eq!(kind(safe(404, Ok(body))), "transient", "{body:?}");
        }
    }

    fn kind(r: Result<Value, ProviderError>) -> &'static str {
        r.unwrap_err().kind()
    }

    use super::*;
    use crate::sim::Rng;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn backoff_grows_varies_and_stays_within_bounds() {
        let p = policy();
        let mut rng = Rng::new(7);
        let mut previous_longest = Duration::ZERO;
        for attempt in 0..10 {
            let ceiling = (p.base_delay * 2u32.pow(attempt)).min(p.max_delay);
            let waits: Vec<Duration> = (0..200)
                .map(|_| p.backoff_at(attempt, rng.unit()))
                .collect();
            for w in &waits {
                assert!(
                    *w >= ceiling / 2 && *w <= ceiling,
                    "attempt {attempt}: {w:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
            let shortest = *waits.iter().min().unwrap();
            let longest = *waits.iter().max().unwrap();
            // Equal jitter: a later attempt never waits less than the longest
            // wait of the one before, until the cap.
            if ceiling < p.max_delay {
                assert!(shortest >= previous_longest, "attempt {attempt} shrank");
            }
            // The jitter spreads the waits over most of their range.
            assert!(
                longest - shortest > ceiling / 3,
                "attempt {attempt}: waits barely vary ({shortest:?}..{longest:?})"
            );
            previous_longest = longest;
        }
        assert_eq!(p.backoff_at(30, 1.0), p.max_delay, "capped, no overflow");
        assert_eq!(p.backoff_at(0, 0.0), p.base_delay / 2);
        assert_eq!(
            p.backoff_at(0, f64::NAN),
            p.base_delay,
            "NaN waits the longest"
        );
        let forever = RetryPolicy {
            base_delay: Duration::MAX,
            max_delay: Duration::MAX,
            ..p
        };
        assert_eq!(forever.backoff_at(3, 1.0), Duration::MAX, "no panic");
    }

    #[test]
    fn a_retry_after_beyond_the_cap_goes_back_to_the_caller() {
        let c = VastClient::with_retry("http://127.0.0.1:9", Secret::new("k"), policy());
        assert_eq!(
            c.rate_limit_wait(0, 5_000, false),
            Err(ProviderError::RateLimited {
                retry_after_ms: 5_000
            })
        );
        assert_eq!(
            c.rate_limit_wait(0, 1_500, false),
            Ok(Duration::from_millis(1_500))
        );
        // No Retry-After: the backoff, which the last attempt reports.
        match c.rate_limit_wait(2, 0, true) {
            Err(ProviderError::RateLimited { retry_after_ms }) => {
                assert!((200..=400).contains(&retry_after_ms), "{retry_after_ms}")
            }
            other => panic!("{other:?}"),
        }
    }

    fn create(status: u16, body: Result<&[u8], &str>) -> Result<Value, ProviderError> {
        let status = StatusCode::from_u16(status).unwrap();
        classify(status, 0, body, Repeat::OnlyIfRejected, json_body)
    }

    fn safe(status: u16, body: Result<&[u8], &str>) -> Result<Value, ProviderError> {
        let status = StatusCode::from_u16(status).unwrap();
        classify(status, 0, body, Repeat::Safe, json_body)
    }

    #[test]
    fn every_create_that_may_have_rented_is_ambiguous() {
        let kind = |r: Result<Value, ProviderError>| r.unwrap_err().kind();
        for (status, body) in [
            (200, Ok(&b"<html>bad gateway</html>"[..])),
            (200, Ok(&b""[..])),
            (200, Err("connection closed before message completed")),
            (502, Ok(&b"{}"[..])),
            (500, Err("reset")),
        ] {
            assert_eq!(kind(create(status, body)), "ambiguous", "{status} {body:?}");
            // The same answer to a call that is safe to repeat is transient.
            assert_eq!(kind(safe(status, body)), "transient", "{status} {body:?}");
        }
        // A refusal is a refusal, even with its body lost.
        assert_eq!(kind(create(400, Err("reset"))), "invalid");
        assert_eq!(kind(create(429, Err("reset"))), "rate_limited");
        assert_eq!(
            create(200, Ok(br#"{"success": true, "new_contract": 7}"#)).unwrap()["new_contract"],
            7
        );
    }

    #[test]
    fn bids_are_sent_in_vast_ais_steps_never_below_what_was_computed() {
        assert_eq!(bid_price(0.23625000000000002), 0.237);
        assert_eq!(bid_price(0.237), 0.237);
        assert_eq!(bid_price(0.2370000001), 0.237);
        assert_eq!(bid_price(0.0001), 0.001, "Vast.ai's minimum");
        assert_eq!(bid_price(1.2345), 1.235);
    }

    #[test]
    fn a_missing_offer_is_offer_gone_in_both_of_vast_ais_forms() {
        let r404 = br#"{"success": false, "error": "invalid_args", "msg": "error 404/3603: no_such_ask Instance type by id 1234567 is not available."}"#;
        let r410 = br#"{"success": false, "error": "no_such_ask", "msg": "error 410/3907: no_such_ask Instance type 1234567 is no longer available."}"#;
        assert_eq!(create(404, Ok(r404)), Err(ProviderError::OfferGone));
        assert_eq!(create(410, Ok(r410)), Err(ProviderError::OfferGone));
        // The same refusal in a 200 (reference §4.3), and a bid the
        // offer's minimum outgrew since the search: the next offer.
        let in_200 = br#"{"success": false, "error": "no_such_ask", "msg": "error 404/3603: no_such_ask Instance type by id 1234567 is not available."}"#;
        assert_eq!(create(200, Ok(in_200)), Err(ProviderError::OfferGone));
        let price = br#"{"success": false, "error": "invalid_price", "msg": "Your bid price of $0.2000/hr is below the current minimum"}"#;
        assert_eq!(create(400, Ok(price)), Err(ProviderError::OfferGone));
        // Other invalid arguments stay what they are.
        let bad = br#"{"success": false, "error": "invalid_args", "msg": "Invalid args: disk"}"#;
        assert_eq!(
            create(400, Ok(bad)),
            Err(ProviderError::Invalid("Invalid args: disk".into()))
        );
    }
}
