//! `POST /webhook`: GitHub's deliveries. A delivery is verified against the
//! webhook secret(s) over its raw body, then committed to the durable inbox
//! before GitHub hears 202 (I5). Nothing is done inline: the engine's inbox
//! worker reads the committed delivery, so a crash after the 202 loses nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;

use crate::engine::events::JobEvent;
use crate::engine::inbox::DurableInbox;
use crate::engine::ports::Clock;
use crate::github::webhook::{self, Event};
use crate::metrics::Metrics;
use crate::settings::Secret;
use crate::store::{Delivery, Inserted, NewDelivery};

/// GitHub caps payloads at 25 MB; anything larger is not from GitHub.
pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;

#[derive(Clone)]
pub struct WebhookState {
    /// Every secret accepted: more than one while a secret is rotated.
    pub secrets: Arc<Vec<Secret>>,
    pub inbox: DurableInbox,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

pub fn webhook_router(state: WebhookState) -> Router {
    Router::new()
        .route("/webhook", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
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

/// The `event` label of a verified delivery: one of a fixed set, so that
/// no header, even a signed one, adds a metric series.
fn event_label(name: &str) -> &'static str {
    EVENT_LABELS
        .iter()
        .find(|known| **known == name)
        .copied()
        .unwrap_or("other")
}

/// The events rigger keeps. Everything else is acknowledged and dropped.
fn is_kept(event: &Event) -> bool {
    matches!(event, Event::WorkflowJob(_))
}

async fn receive(
    State(s): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let event_name = header("x-github-event").unwrap_or("").to_string();
    // The signature comes first: nothing about an unsigned body is trusted,
    // not even its headers, so its event name never becomes a label.
    if let Err(e) = webhook::verify(&s.secrets, header("x-hub-signature-256"), &body) {
        s.metrics.inc(
            "rigger_deliveries_total",
            &[("event", UNVERIFIED), ("result", "unauthorized")],
        );
        // Nor does it reach the log as sent: a known name or `other`.
        tracing::warn!(event = event_label(&event_name), "refused a delivery: {e}");
        return (StatusCode::UNAUTHORIZED, format!("{e}\n"));
    }
    let event = event_label(&event_name);
    let count = |result: &'static str| {
        s.metrics.inc(
            "rigger_deliveries_total",
            &[("event", event), ("result", result)],
        )
    };
    let Some(delivery_id) = header("x-github-delivery").filter(|d| valid_delivery_id(d)) else {
        count("bad_request");
        return (
            StatusCode::BAD_REQUEST,
            "missing or invalid X-GitHub-Delivery header\n".to_string(),
        );
    };
    if event_name.is_empty() {
        count("bad_request");
        return (
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Event header\n".to_string(),
        );
    }
    let parsed = webhook::parse(&event_name, &body);
    let action = match &parsed {
        Ok(Event::Ping { zen }) => {
            count("ping");
            tracing::info!(delivery = %delivery_id, "ping: {zen}");
            return (StatusCode::OK, "pong\n".to_string());
        }
        Ok(e) if !is_kept(e) => {
            count("ignored");
            return (StatusCode::OK, format!("ignored: {event_name}\n"));
        }
        Ok(Event::WorkflowJob(j)) => Some(action_of(j).to_string()),
        Ok(_) => None,
        // Kept anyway: the worker records why it could not be read, so an
        // operator can see the delivery rather than lose it.
        Err(_) => None,
    };
    let body_text = String::from_utf8_lossy(&body).into_owned();
    let accepted = s
        .inbox
        .accept(NewDelivery {
            delivery_id: delivery_id.to_string(),
            event: event_name.clone(),
            action,
            body: body_text,
            received_at: s.clock.now_ms(),
        })
        .await;
    match (accepted, parsed) {
        (Err(e), _) => {
            count("unavailable");
            tracing::error!(delivery = %delivery_id, error = %e, "could not store a delivery");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not stored; redeliver later\n".to_string(),
            )
        }
        (Ok(_), Err(e)) => {
            count("malformed");
            (StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
        (Ok(Inserted::Duplicate), Ok(_)) => {
            count("duplicate");
            (StatusCode::ACCEPTED, "duplicate\n".to_string())
        }
        (Ok(Inserted::New), Ok(_)) => {
            count("accepted");
            (StatusCode::ACCEPTED, "accepted\n".to_string())
        }
    }
}

fn action_of(j: &JobEvent) -> &'static str {
    match j {
        JobEvent::Queued(_) => "queued",
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
pub fn parse_delivery(d: &Delivery) -> Result<Option<JobEvent>, String> {
    match webhook::parse(&d.event, d.body.as_bytes()) {
        Ok(Event::WorkflowJob(j)) => Ok(Some(j)),
        Ok(_) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}
