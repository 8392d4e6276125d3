//! `POST /webhook`: GitHub's deliveries. A delivery is verified against the
//! webhook secret(s) over its raw body, then committed to the durable inbox
//! before GitHub hears 202 (I5). Nothing is done inline: the engine's inbox
//! worker reads the committed delivery, so a crash after the 202 loses nothing.
//!
//! What is answered is what was done: a body that is not UTF-8 (so not JSON)
//! is 400 and not stored; a signed `workflow_job`, `installation` or
//! `installation_repositories` delivery is stored (the worker acts on it),
//! and one that cannot be read is stored and 202 too (the worker
//! quarantines it, see `rigger inbox`); any other unreadable event is 400
//! and not stored.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tracing::Instrument;

use super::body::{self, BodyBudget, BodyLimits};
use crate::engine::events::JobEvent;
use crate::engine::inbox::DurableInbox;
use crate::engine::installations::InboxEvent;
use crate::engine::ports::Clock;
use crate::github::webhook::{self, Event};
use crate::metrics::Metrics;
use crate::settings::Secret;
use crate::store::{Delivery, Inserted, NewDelivery};
use crate::text::for_log;

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

/// Body bytes in flight on `/webhook` at most: one delivery of the largest
/// size GitHub sends, or many ordinary ones (tens of kilobytes each), and a
/// reserve that large bodies cannot take. A body is copied several times on
/// its way into the database (the inbox's batch, the driver, SQLite): one
/// 25 MB delivery alone peaks near 170 MB of memory, and the budget keeps
/// that from multiplying with the deliveries arriving at once.
pub const BODY_BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// The part of [`BODY_BUDGET_BYTES`] only small bodies may use.
pub const BODY_RESERVE_BYTES: usize = 4 * 1024 * 1024;

/// How `/webhook` reads bodies unless told otherwise. GitHub gives up on a
/// delivery after 10 s, so a body still arriving after that is no use.
pub fn default_body_limits() -> BodyLimits {
    BodyLimits {
        max_bytes: MAX_BODY_BYTES,
        read_timeout: Duration::from_secs(10),
        budget_wait: Duration::from_secs(3),
        budget: BodyBudget::new(BODY_BUDGET_BYTES, BODY_RESERVE_BYTES),
    }
}

#[derive(Clone)]
pub struct WebhookState {
    /// Every secret accepted: more than one while a secret is rotated.
    pub secrets: Arc<Vec<Secret>>,
    pub inbox: DurableInbox,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

#[derive(Clone)]
struct Route {
    state: WebhookState,
    limits: Arc<BodyLimits>,
}

pub fn webhook_router(state: WebhookState) -> Router {
    webhook_router_with(state, default_body_limits())
}

/// [`webhook_router`] reading bodies within `limits` (tests use small ones).
pub fn webhook_router_with(state: WebhookState, limits: BodyLimits) -> Router {
    Router::new()
        .route("/webhook", post(receive))
        .with_state(Route {
            state,
            limits: Arc::new(limits),
        })
}

/// The `event` label of a delivery whose signature did not verify.
pub const UNVERIFIED: &str = "unverified";

/// The events `webhook::parse` reads; any other name is counted as `other`.
pub const EVENT_LABELS: &[&str] = &[
    "workflow_job",
    "ping",
    "installation",
    "installation_repositories",
];

/// The events rigger keeps (jobs, and the App losing access): their
/// deliveries are stored, even one that cannot be read. Everything else is acknowledged
/// and dropped.
const KEPT_EVENTS: &[&str] = &["workflow_job", "installation", "installation_repositories"];

/// What a stored delivery that cannot be read is answered with: GitHub
/// hears it was received (it was: it is kept), and whoever reads GitHub's
/// delivery log learns where to look.
pub const QUARANTINED: &str = "accepted, but unreadable: quarantined; see `rigger inbox`";

/// The `event` label of a verified delivery: one of a fixed set, so that
/// no header, even a signed one, adds a metric series.
fn event_label(name: &str) -> &'static str {
    EVENT_LABELS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("other")
}

fn count_delivery(metrics: &Metrics, event: &'static str, result: &'static str) {
    metrics.inc(
        "rigger_deliveries_total",
        &[("event", event), ("result", result)],
    )
}

fn answer(status: StatusCode, text: impl std::fmt::Display) -> Response {
    (status, format!("{text}\n")).into_response()
}

async fn receive(State(route): State<Route>, headers: HeaderMap, body: Body) -> Response {
    let s = &route.state;
    // Read within bounds first: the signature is over the whole body. The
    // budget it holds is given back when this handler ends.
    let body = match body::read(body, &headers, &route.limits).await {
        Ok(body) => body,
        Err(e) => {
            count_delivery(&s.metrics, UNVERIFIED, e.result());
            return e.into_response();
        }
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event_name = header("x-github-event").unwrap_or("");
    // The signature comes first: nothing about an unsigned body is trusted,
    // not even its headers, so its event name never becomes a label.
    if let Err(e) = webhook::verify(&s.secrets, header("x-hub-signature-256"), &body.bytes) {
        count_delivery(&s.metrics, UNVERIFIED, "unauthorized");
        // Nor does it reach the log as sent: a known name or `other`.
        tracing::warn!(event = event_label(event_name), "refused a delivery: {e}");
        return answer(StatusCode::UNAUTHORIZED, e);
    }
    let label = event_label(event_name);
    let count = |result| count_delivery(&s.metrics, label, result);
    let Some(delivery_id) = header("x-github-delivery").filter(|d| valid_delivery_id(d)) else {
        count("bad_request");
        return answer(
            StatusCode::BAD_REQUEST,
            "missing or invalid X-GitHub-Delivery header",
        );
    };
    if event_name.is_empty() {
        count("bad_request");
        return answer(StatusCode::BAD_REQUEST, "missing X-GitHub-Event header");
    }
    // JSON is UTF-8 (RFC 8259) and GitHub sends nothing else: such a body
    // could never be read, so it is not kept either.
    let Ok(text) = String::from_utf8(body.bytes) else {
        count("malformed");
        return answer(
            StatusCode::BAD_REQUEST,
            "not stored: the body is not UTF-8, so it is not the JSON GitHub sends",
        );
    };
    let delivery = Incoming {
        s,
        label,
        id: delivery_id,
        event: event_name,
    };
    match webhook::parse(event_name, text.as_bytes()) {
        Ok(Event::Ping { zen }) => {
            count("ping");
            tracing::info!(guid = %delivery_id, "ping: {}", for_log(&zen));
            answer(StatusCode::OK, "pong")
        }
        Ok(Event::WorkflowJob(j)) => delivery.keep(Some(action_of(&j)), text, None).await,
        // Kept, so that the App losing access is acted on durably (and a
        // redelivery of it is known for one).
        Ok(e @ (Event::Installation { .. } | Event::InstallationRepositories { .. })) => {
            let action = e.installation_action().map(str::to_string);
            delivery.keep(action.as_deref(), text, None).await
        }
        Ok(_) => {
            count("ignored");
            answer(StatusCode::OK, format!("ignored: {}", for_log(event_name)))
        }
        // Kept anyway: the engine's inbox worker records why it could not be
        // read and quarantines it, so an operator can see it, and retry it
        // after an upgrade, rather than lose it.
        Err(e) if KEPT_EVENTS.contains(&event_name) => delivery.keep(None, text, Some(e)).await,
        Err(e) => {
            count("malformed");
            answer(StatusCode::BAD_REQUEST, format!("not stored: {e}"))
        }
    }
}

/// A verified delivery on its way to the inbox.
struct Incoming<'a> {
    s: &'a WebhookState,
    /// Its `event` label: [`event_label`] of `event`.
    label: &'static str,
    id: &'a str,
    event: &'a str,
}

impl Incoming<'_> {
    fn count(&self, result: &'static str) {
        count_delivery(&self.s.metrics, self.label, result)
    }

    /// Commit it to the inbox (I5), then answer 202; in its span,
    /// `delivery{guid, event}`, as the engine handles it later. Only once
    /// its signature is verified: nothing unsigned names a span.
    async fn keep(
        &self,
        action: Option<&str>,
        body: String,
        unreadable: Option<webhook::ParseError>,
    ) -> Response {
        let span = tracing::info_span!(
            "delivery",
            guid = %self.id,
            event = %for_log(self.event),
        );
        self.keep_in_span(action, body, unreadable)
            .instrument(span)
            .await
    }

    async fn keep_in_span(
        &self,
        action: Option<&str>,
        body: String,
        unreadable: Option<webhook::ParseError>,
    ) -> Response {
        let accepted = self
            .s
            .inbox
            .accept(NewDelivery {
                delivery_id: self.id.to_string(),
                event: self.event.to_string(),
                action: action.map(str::to_string),
                body,
                received_at: self.s.clock.now_ms(),
            })
            .await;
        match (accepted, unreadable) {
            (Err(e), _) => {
                self.count("unavailable");
                tracing::error!("could not store a delivery: {}", for_log(&e.to_string()));
                answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not stored; redeliver later",
                )
            }
            (Ok(_), Some(e)) => {
                self.count("unreadable");
                tracing::warn!(
                    "stored a delivery that cannot be read: {}",
                    for_log(&e.to_string())
                );
                answer(StatusCode::ACCEPTED, format!("{QUARANTINED}\n{e}"))
            }
            (Ok(Inserted::Duplicate), None) => {
                self.count("duplicate");
                answer(StatusCode::ACCEPTED, "duplicate")
            }
            (Ok(Inserted::New), None) => {
                self.count("accepted");
                answer(StatusCode::ACCEPTED, "accepted")
            }
        }
    }
}

fn action_of(j: &JobEvent) -> &'static str {
    match j {
        JobEvent::Queued(_) => "queued",
        JobEvent::Waiting { .. } => "waiting",
        JobEvent::InProgress { .. } => "in_progress",
        JobEvent::Completed { .. } => "completed",
    }
}

/// GitHub sends a GUID; accept any short printable id so that redelivery
/// tools and tests can use their own.
fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// How the engine's inbox worker reads a stored delivery.
pub fn parse_delivery(d: &Delivery) -> Result<Option<InboxEvent>, String> {
    match webhook::parse(&d.event, d.body.as_bytes()) {
        Ok(Event::WorkflowJob(j)) => Ok(Some(InboxEvent::Job(j))),
        Ok(e) => Ok(e.access().map(InboxEvent::Access)),
        Err(e) => Err(e.to_string()),
    }
}
