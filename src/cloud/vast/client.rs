//! The Vast.ai REST client (reference §2–§9). Every call goes through
//! [`VastClient::call`], which owns the retry policy: rate limits and
//! transient failures are retried within bounds for calls that are safe to
//! repeat; a create is never repeated after an ambiguous failure.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::query::search_body;
use crate::cloud::{
    CloudProvider, InstanceStatus, LaunchSpec, Offer, OfferFilter, ProviderError, ProviderInstance,
};
use crate::settings::Secret;

/// The real API.
pub const DEFAULT_URL: &str = "https://console.vast.ai";

/// How hard to try before giving up.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter: attempt n waits a random time
    /// in [delay/2, delay], delay = base × 2ⁿ, capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1 << attempt.min(16));
        let capped = exp.min(self.max_delay);
        let mut b = [0u8; 4];
        let unit = match getrandom::fill(&mut b) {
            Ok(()) => f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX),
            Err(_) => 1.0,
        };
        capped.mul_f64(0.5 + unit / 2.0)
    }
}

/// A Vast.ai account, reached over HTTP.
#[derive(Clone)]
pub struct VastClient {
    http: reqwest::Client,
    base: String,
    key: Secret,
    retry: RetryPolicy,
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
enum Repeat {
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
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One API call with the retry policy. POST, PUT and DELETE always carry
    /// a JSON body (the API wants one even when there is nothing to say).
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        repeat: Repeat,
    ) -> Result<Value, ProviderError> {
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
        let mut attempt = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(self.key.expose());
            if let Some(b) = &body {
                req = req.json(b);
            }
            let last = attempt + 1 >= self.retry.attempts;
            let outcome = match req.send().await {
                Err(e) => {
                    let rejected = e.is_connect();
                    let why = describe_transport(&e);
                    if repeat == Repeat::OnlyIfRejected && !rejected {
                        return Err(ProviderError::Ambiguous(why));
                    }
                    Err(ProviderError::Transient(why))
                }
                Ok(resp) => self.read(resp, repeat).await,
            };
            match outcome {
                Err(ProviderError::RateLimited { retry_after_ms }) if !last => {
                    let wait = if retry_after_ms > 0 {
                        Duration::from_millis(retry_after_ms as u64).min(self.retry.max_delay)
                    } else {
                        self.retry.backoff(attempt)
                    };
                    tracing::debug!(path, ?wait, "Vast.ai rate limit; waiting");
                    tokio::time::sleep(wait).await;
                }
                Err(ProviderError::Transient(why)) if !last => {
                    tracing::debug!(path, "Vast.ai transient failure, retrying: {why}");
                    tokio::time::sleep(self.retry.backoff(attempt)).await;
                }
                Err(ProviderError::RateLimited { retry_after_ms: 0 }) => {
                    return Err(ProviderError::RateLimited {
                        retry_after_ms: self.retry.backoff(attempt).as_millis() as i64,
                    });
                }
                other => return other,
            }
            attempt += 1;
        }
    }

    async fn read(&self, resp: reqwest::Response, repeat: Repeat) -> Result<Value, ProviderError> {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |s| (s * 1000.0) as i64);
        let text = resp
            .text()
            .await
            .map_err(|e| ProviderError::Transient(describe_transport(&e)))?;
        let json: Option<Value> = serde_json::from_str(&text).ok();
        let msg = message(json.as_ref(), &text);
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(ProviderError::RateLimited {
                retry_after_ms: retry_after,
            });
        }
        if status.is_server_error() {
            let why = format!("Vast.ai answered {status}: {msg}");
            return Err(if repeat == Repeat::OnlyIfRejected {
                ProviderError::Ambiguous(why)
            } else {
                ProviderError::Transient(why)
            });
        }
        let code = json
            .as_ref()
            .and_then(|j| j.get("error"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        if code == "no_such_ask" || status == StatusCode::GONE {
            return Err(ProviderError::OfferGone);
        }
        match status.as_u16() {
            401 | 403 => return Err(ProviderError::Unauthorized(msg)),
            404 => return Err(ProviderError::NotFound(msg)),
            400..=499 => return Err(ProviderError::Invalid(msg)),
            _ => {}
        }
        let json = json.ok_or_else(|| {
            ProviderError::Transient(format!(
                "Vast.ai answered {status} with a body that is not JSON"
            ))
        })?;
        // A 2xx can still carry `"success": false` (reference §4.3).
        if json.get("success") == Some(&Value::Bool(false)) {
            return Err(ProviderError::Invalid(msg));
        }
        Ok(json)
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
                k.get("public_key")
                    .or_else(|| k.get("ssh_key"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect())
    }

    /// Offers for a raw search body (what `rigger plan` shows it sent).
    pub async fn search_raw(&self, body: &Value) -> Result<Vec<Offer>, ProviderError> {
        let v = self
            .call(
                Method::POST,
                "/api/v0/bundles/",
                &[],
                Some(body.clone()),
                Repeat::Safe,
            )
            .await?;
        parse_offers(&v)
    }

    /// Set an instance's label.
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
            "price": spec.bid_price,
            // Fail rather than leave a stopped instance that bills storage.
            "cancel_unavail": true,
        });
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

#[derive(Deserialize)]
struct WireOffer {
    id: i64,
    #[serde(default)]
    gpu_name: Option<String>,
    #[serde(default)]
    num_gpus: Option<f64>,
    #[serde(default)]
    gpu_ram: Option<f64>,
    #[serde(default)]
    cpu_ram: Option<f64>,
    #[serde(default)]
    disk_space: Option<f64>,
    #[serde(default)]
    dph_total: Option<f64>,
    #[serde(default)]
    min_bid: Option<f64>,
    #[serde(default)]
    reliability: Option<f64>,
    #[serde(default)]
    reliability2: Option<f64>,
    #[serde(default)]
    inet_down: Option<f64>,
    #[serde(default)]
    geolocation: Option<String>,
    #[serde(default)]
    cuda_max_good: Option<f64>,
    #[serde(default)]
    verification: Option<String>,
    #[serde(default)]
    vms_enabled: Option<bool>,
    #[serde(default)]
    dlperf: Option<f64>,
}

impl From<WireOffer> for Offer {
    fn from(w: WireOffer) -> Offer {
        Offer {
            id: w.id,
            gpu_name: w.gpu_name.unwrap_or_default(),
            num_gpus: w.num_gpus.unwrap_or(1.0) as u32,
            gpu_ram_mb: w.gpu_ram.unwrap_or(0.0) as u32,
            cpu_ram_mb: w.cpu_ram.unwrap_or(0.0) as u32,
            disk_gb: w.disk_space.unwrap_or(0.0),
            dph_total: w.dph_total.unwrap_or(f64::INFINITY),
            min_bid: w.min_bid.unwrap_or(f64::INFINITY),
            reliability: w.reliability.or(w.reliability2).unwrap_or(0.0),
            inet_down: w.inet_down.unwrap_or(0.0),
            location: w.geolocation.unwrap_or_default(),
            cuda_max_good: w.cuda_max_good.unwrap_or(0.0),
            verified: w.verification.as_deref() == Some("verified"),
            vms_enabled: w.vms_enabled.unwrap_or(false),
            dlperf: w.dlperf.unwrap_or(0.0),
        }
    }
}

/// The offers of a search response.
pub fn parse_offers(v: &Value) -> Result<Vec<Offer>, ProviderError> {
    let offers = v.get("offers").cloned().unwrap_or(Value::Null);
    let wire: Vec<WireOffer> = serde_json::from_value(offers).map_err(|e| {
        ProviderError::Transient(format!("Vast.ai sent offers rigger cannot read: {e}"))
    })?;
    Ok(wire.into_iter().map(Offer::from).collect())
}

/// Parse a search response body from bytes (the benchmark's path).
pub fn parse_offers_bytes(body: &[u8]) -> Result<Vec<Offer>, ProviderError> {
    #[derive(Deserialize)]
    struct Resp {
        offers: Vec<WireOffer>,
    }
    let r: Resp = serde_json::from_slice(body).map_err(|e| {
        ProviderError::Transient(format!("Vast.ai sent offers rigger cannot read: {e}"))
    })?;
    Ok(r.offers.into_iter().map(Offer::from).collect())
}

#[derive(Deserialize)]
struct WireInstance {
    id: i64,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    actual_status: Option<String>,
    #[serde(default)]
    intended_status: Option<String>,
    #[serde(default)]
    status_msg: Option<String>,
    #[serde(default)]
    gpu_name: Option<String>,
    #[serde(default)]
    num_gpus: Option<f64>,
    #[serde(default)]
    dph_total: Option<f64>,
    #[serde(default)]
    start_date: Option<f64>,
    #[serde(default)]
    geolocation: Option<String>,
}

impl From<WireInstance> for ProviderInstance {
    fn from(w: WireInstance) -> ProviderInstance {
        let actual = w.actual_status.unwrap_or_default();
        let status = match actual.as_str() {
            "" | "created" | "loading" | "scheduling" | "rebooting" => InstanceStatus::Loading,
            "running" => InstanceStatus::Running,
            // exited, stopped, offline, unknown, frozen: it runs no job.
            _ => InstanceStatus::Exited,
        };
        let detail = match (actual.as_str(), w.status_msg.as_deref()) {
            ("", _) => "provisioning".to_string(),
            (a, Some(m)) if !m.trim().is_empty() => format!("{a}: {}", m.trim()),
            (a, _) => match w.intended_status.as_deref() {
                Some(i) if i != a => format!("{a} (intended {i})"),
                _ => a.to_string(),
            },
        };
        ProviderInstance {
            id: w.id.to_string(),
            label: w.label.unwrap_or_default(),
            status,
            status_detail: detail,
            gpu_name: w.gpu_name.unwrap_or_default(),
            num_gpus: w.num_gpus.unwrap_or(0.0) as u32,
            dph_total: w.dph_total.unwrap_or(0.0),
            started_at: w.start_date.unwrap_or(0.0),
            location: w.geolocation.unwrap_or_default(),
        }
    }
}

fn parse_instance(v: Value) -> Result<ProviderInstance, ProviderError> {
    serde_json::from_value::<WireInstance>(v)
        .map(ProviderInstance::from)
        .map_err(|e| {
            ProviderError::Transient(format!("Vast.ai sent an instance rigger cannot read: {e}"))
        })
}

/// Pages of `GET /api/v1/instances/` hold at most this many.
const PAGE: u32 = 25;
/// A bound on pages, so a server that never ends its pages cannot hang us.
const MAX_PAGES: usize = 400;

impl CloudProvider for VastClient {
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
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut q = vec![
                ("limit", PAGE.to_string()),
                ("order_by", r#"[{"col":"id","dir":"asc"}]"#.to_string()),
            ];
            if let Some(t) = &token {
                q.push(("after_token", t.clone()));
            }
            let v = self
                .call(Method::GET, "/api/v1/instances/", &q, None, Repeat::Safe)
                .await?;
            let rows = v
                .get("instances")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for row in rows {
                let i = parse_instance(row)?;
                if i.label.starts_with(label_prefix) {
                    out.push(i);
                }
            }
            match v.get("next_token").and_then(Value::as_str) {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(out),
            }
        }
        Err(ProviderError::Transient(format!(
            "Vast.ai kept paginating past {MAX_PAGES} pages of instances"
        )))
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
