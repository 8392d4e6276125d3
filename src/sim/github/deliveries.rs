//! The App's webhook deliveries as GitHub records them: every attempt, with
//! its GUID (shared by every attempt of one event), `status` ("OK" or why it
//! failed) and `status_code` (0 when no HTTP answer came), and the App API
//! over them: `GET /app/hook/deliveries` (newest first, `per_page` up to
//! 100, `cursor` pagination with a `Link` header, `status=success|failure`
//! by status-code range), `GET /app/hook/deliveries/{id}` (the attempt with
//! the URL it was sent to, the App's webhook URL, and its request's headers
//! and payload), and
//! `POST /app/hook/deliveries/{id}/attempts` (202: the delivery is sent
//! again with the same GUID, as a redelivery; only deliveries of the past
//! 3 days, as on GitHub.com).

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};

use super::SimGithub;
use super::http::{gh_error, json_response};
use super::world::{Delivery, World};

/// How far back GitHub.com lets a delivery be redelivered.
pub const REDELIVER_WITHIN_MS: i64 = 3 * 24 * 3_600_000;

/// One delivery attempt, as GitHub lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub id: i64,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<i64>,
    pub repository_id: Option<i64>,
    pub redelivery: bool,
    /// `OK`, or what went wrong (`failed to connect`, `timed out`,
    /// `Invalid HTTP Response: 503`).
    pub status: String,
    /// The receiver's answer; 0 when none came in time.
    pub status_code: u16,
    pub delivered_at_ms: i64,
    #[serde(skip)]
    pub body: Value,
}

/// How one attempt went, as the sender saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered with this status.
    Answered(u16),
    /// It never reached the receiver (lost, refused, unreachable).
    Unreachable,
    /// It reached the receiver, but the answer came after GitHub stopped
    /// waiting: recorded as failed.
    TooLate,
}

impl World {
    /// Record an attempt of `d`; returns its id.
    pub fn record_attempt(&mut self, d: &Delivery, outcome: Outcome, now_ms: i64) -> i64 {
        let (status, status_code) = match outcome {
            Outcome::Answered(code) if (200..300).contains(&code) => ("OK".to_string(), code),
            Outcome::Answered(code) => (format!("Invalid HTTP Response: {code}"), code),
            Outcome::Unreachable => ("failed to connect".to_string(), 0),
            Outcome::TooLate => ("timed out".to_string(), 0),
        };
        let id = self.attempts.last().map_or(10_000_000, |a| a.id + 1);
        self.attempts.push(Attempt {
            id,
            guid: d.id.clone(),
            event: d.event.clone(),
            action: d.action.clone(),
            installation_id: d.installation,
            repository_id: d.repository_id,
            redelivery: d.redelivery,
            status,
            status_code,
            delivered_at_ms: now_ms,
            body: d.body.clone(),
        });
        id
    }
}

/// Why a redelivery was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    TooOld,
}

impl World {
    /// Queue attempt `id`'s event again, with its GUID, as a redelivery.
    pub fn redeliver(&mut self, id: i64, now_ms: i64) -> Result<(), Refusal> {
        let a = self
            .attempts
            .iter()
            .find(|a| a.id == id)
            .cloned()
            .ok_or(Refusal::NotFound)?;
        if now_ms - a.delivered_at_ms > REDELIVER_WITHIN_MS {
            return Err(Refusal::TooOld);
        }
        self.outbox.push(Delivery {
            id: a.guid,
            event: a.event,
            action: a.action,
            installation: a.installation_id,
            repository_id: a.repository_id,
            redelivery: true,
            body: a.body,
        });
        Ok(())
    }
}

impl SimGithub {
    /// Someone presses "Redeliver" on attempt `id` in the App's settings.
    pub fn redeliver_by_hand(&self, id: i64) -> Result<(), Refusal> {
        let now = self.now();
        self.world().redeliver(id, now)
    }
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

fn item(a: &Attempt) -> Value {
    json!({
        "id": a.id,
        "guid": a.guid,
        "delivered_at": iso(a.delivered_at_ms),
        "redelivery": a.redelivery,
        "duration": 0.05,
        "status": a.status,
        "status_code": a.status_code,
        "event": a.event,
        "action": a.action,
        "installation_id": a.installation_id,
        "repository_id": a.repository_id,
        "throttled_at": null,
    })
}

/// The App API over the deliveries (JWT callers only).
pub(super) fn app_hook(
    sim: &SimGithub,
    method: &Method,
    seg: &[&str],
    q: &dyn Fn(&str) -> Option<String>,
    now: i64,
) -> Option<Response> {
    let mut w = sim.world();
    Some(match (method, seg) {
        (&Method::GET, ["app", "hook", "deliveries"]) => {
            let per_page = q("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, 100);
            let start = match q("cursor") {
                None => None,
                Some(c) => match c.strip_prefix("v1_").and_then(|n| n.parse::<i64>().ok()) {
                    Some(n) => Some(n),
                    None => {
                        return Some(gh_error(
                            StatusCode::BAD_REQUEST,
                            "Invalid cursor: use the cursor the Link header gives",
                        ));
                    }
                },
            };
            let status = q("status");
            if status
                .as_deref()
                .is_some_and(|s| s != "success" && s != "failure")
            {
                return Some(gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation failed: status must be success or failure",
                ));
            }
            // Newest first; `status` filters by the status code's range, so
            // an attempt with no answer at all (code 0) is in neither.
            let mut listed = w
                .attempts
                .iter()
                .rev()
                .filter(|a| start.is_none_or(|s| a.id <= s))
                .filter(|a| match status.as_deref() {
                    Some("success") => (200..400).contains(&a.status_code),
                    Some("failure") => (400..600).contains(&a.status_code),
                    _ => true,
                });
            let page: Vec<Value> = listed.by_ref().take(per_page).map(item).collect();
            let next = listed.next().map(|a| a.id);
            let mut r = json_response(StatusCode::OK, Value::Array(page));
            if let Some(next) = next {
                let mut link = format!(
                    "{}/app/hook/deliveries?per_page={per_page}&cursor=v1_{next}",
                    sim.public_url()
                );
                if let Some(s) = &status {
                    link.push_str(&format!("&status={s}"));
                }
                if let Ok(v) = HeaderValue::from_str(&format!("<{link}>; rel=\"next\"")) {
                    r.headers_mut().insert(header::LINK, v);
                }
            }
            r
        }
        (&Method::GET, ["app", "hook", "deliveries", id]) => {
            let id = id.parse::<i64>().unwrap_or(-1);
            match w.attempts.iter().find(|a| a.id == id) {
                Some(a) => {
                    let mut v = item(a);
                    // Where it was sent: the App's webhook URL (rigger's),
                    // and the headers it went with (but the signature).
                    let target = sim
                        .0
                        .webhook_url
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clone();
                    if let Some(url) = target {
                        v["url"] = json!(url);
                    }
                    v["request"] = json!({
                        "headers": {
                            "Accept": "*/*",
                            "Content-Type": "application/json",
                            "User-Agent": "GitHub-Hookshot/sim",
                            "X-GitHub-Delivery": a.guid,
                            "X-GitHub-Event": a.event,
                            "X-GitHub-Hook-ID": super::WEBHOOK_ID.to_string(),
                            "X-GitHub-Hook-Installation-Target-ID": w.app_id.to_string(),
                            "X-GitHub-Hook-Installation-Target-Type": "integration",
                        },
                        "payload": a.body,
                    });
                    v["response"] = json!({"headers": {}, "payload": null});
                    json_response(StatusCode::OK, v)
                }
                None => gh_error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (&Method::POST, ["app", "hook", "deliveries", id, "attempts"]) => {
            match w.redeliver(id.parse::<i64>().unwrap_or(-1), now) {
                Ok(()) => json_response(StatusCode::ACCEPTED, json!({})),
                Err(Refusal::NotFound) => gh_error(StatusCode::NOT_FOUND, "Not Found"),
                Err(Refusal::TooOld) => gh_error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Validation failed: only deliveries of the past 3 days can be redelivered",
                ),
            }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{NewJob, SimGithub, SimGithubConfig, WebhookFaults};
    use crate::engine::ports::ManualClock;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_lost_delivery_is_recorded_as_a_failed_attempt() {
        let clock = ManualClock::new(1_763_800_000_000);
        let gh = SimGithub::new(
            SimGithubConfig {
                // Nothing listens on the discard port: were it sent, it would fail too.
                webhook_url: Some("http://127.0.0.1:9/webhook".into()),
                ..SimGithubConfig::default()
            },
            Arc::new(clock),
        )
        .unwrap();
        gh.add_repo("acme/ml", &[]);
        gh.set_webhook_faults(WebhookFaults {
            loss_rate: 1.0,
            ..WebhookFaults::default()
        });
        let job = gh.queue_job(NewJob::on("acme/ml", "gpu"));
        assert_eq!(gh.flush().await, 0);
        let attempts = gh.delivery_attempts();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        let a = &attempts[0];
        assert_eq!((a.status.as_str(), a.status_code), ("failed to connect", 0));
        assert_eq!(a.action.as_deref(), Some("queued"));
        assert_eq!(a.body["workflow_job"]["id"], job);
    }
}
