//! rigger's HTTP server: `/webhook` (GitHub's deliveries), and the
//! operational endpoints `/healthz`, `/readyz` and `/metrics`.

pub mod body;
pub mod listen;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use body::{BodyBudget, BodyLimits};

use crate::engine::Engine;
use crate::engine::isolate::{Loop, isolated};
use crate::engine::ports::{Cloud, Github};
use crate::engine::state::{InstanceState, JobState};
use crate::engine::supervise::Health;
use crate::engine::teardown::{Callback, clean_report};
use crate::metrics::Metrics;
use crate::store::{StateTable, Store};
use crate::text::for_log;

#[derive(Clone)]
pub struct OpsState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// The engine's loops and the inbox's committer, as `/readyz` reports them.
    pub health: Arc<Health>,
}

/// The operational endpoints.
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready when the database answers (without it no delivery can be
/// accepted) and every engine loop runs (without them nothing accepted
/// would ever be done).
async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
    let problems = s.health.problems();
    if !problems.is_empty() {
        tracing::warn!(problems = ?problems, "not ready");
        let mut text = problems.join("\n");
        text.push('\n');
        return (StatusCode::SERVICE_UNAVAILABLE, text);
    }
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database does not answer\n".to_string(),
            )
        }
    }
}

async fn metrics(State(s): State<OpsState>) -> impl IntoResponse {
    // Gauges are read at scrape time, so they are never stale.
    for (table, name, states) in [
        (
            StateTable::Jobs,
            "rigger_jobs",
            JobState::ALL.map(|s| s.as_str()).to_vec(),
        ),
        (
            StateTable::Instances,
            "rigger_instances",
            InstanceState::ALL.map(|s| s.as_str()).to_vec(),
        ),
    ] {
        if let Ok(counts) = s.store.counts_by_state(table).await {
            for state in states {
                let n = counts
                    .iter()
                    .find(|(st, _)| st == state)
                    .map_or(0, |(_, n)| *n);
                s.metrics.set(name, &[("state", state)], n as f64);
            }
        }
    }
    if let Ok(n) = s.store.quarantined_count().await {
        s.metrics
            .set("rigger_deliveries_quarantined", &[], n as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

/// The most of a machine's report read. Its bootstrap sends its log's last
/// 40 lines, of which rigger keeps [`crate::engine::teardown::REPORT_LIMIT`]
/// bytes: this leaves room for long lines (progress bars) and no more.
pub const MAX_CALLBACK_BYTES: usize = 1024 * 1024;

/// Callback bodies in flight at most, across every machine reporting.
pub const CALLBACK_BUDGET_BYTES: usize = 8 * 1024 * 1024;

/// Instance ids are rigger's own (10 hex digits); a longer one is unknown.
const MAX_INSTANCE_ID_CHARS: usize = 64;

/// How `/callback` reads bodies: a machine on a slow link still sends a
/// report in well under 10 s.
pub fn callback_body_limits() -> BodyLimits {
    BodyLimits {
        max_bytes: MAX_CALLBACK_BYTES,
        read_timeout: Duration::from_secs(10),
        budget_wait: Duration::from_secs(3),
        budget: BodyBudget::new(CALLBACK_BUDGET_BYTES, MAX_CALLBACK_BYTES),
    }
}

/// `POST /callback/{instance}?exit_code=N`: a machine's bootstrap reports
/// that it ended, with `Authorization: Bearer <its token>` and its log's
/// last lines as a text body. (`{"exit_code": N}` as the body is accepted
/// too.) The token is never logged.
pub fn callback_router<C: Cloud, G: Github>(engine: Arc<Engine<C, G>>) -> Router {
    Router::new()
        .route("/callback/{instance}", post(callback::<C, G>))
        .with_state((engine, Arc::new(callback_body_limits())))
}

type CallbackState<C, G> = (Arc<Engine<C, G>>, Arc<BodyLimits>);

async fn callback<C: Cloud, G: Github>(
    State((engine, limits)): State<CallbackState<C, G>>,
    Path(instance): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if instance.chars().count() > MAX_INSTANCE_ID_CHARS {
        return (StatusCode::UNAUTHORIZED, "unknown machine or token\n").into_response();
    }
    let body = match body::read(body, &headers, &limits).await {
        Ok(body) => body,
        Err(e) => return e.into_response(),
    };
    let body = &body.bytes;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let json = serde_json::from_slice::<serde_json::Value>(body).ok();
    let exit_code = query
        .get("exit_code")
        .and_then(|c| c.parse::<i64>().ok())
        .or_else(|| json.as_ref().and_then(|v| v["exit_code"].as_i64()));
    let report = if json.is_some() {
        String::new()
    } else {
        clean_report(body)
    };
    // Its own task: destroying the machine kills the caller, whose dropped
    // connection would otherwise cancel this handler half way.
    let token = token.to_string();
    let ended = tokio::spawn(async move {
        let what = format!("callback of machine {}", for_log(&instance));
        let unit = engine.machine_ended(&instance, &token, exit_code, &report);
        isolated(&engine.metrics, Loop::Callback, &what, unit).await
    })
    .await;
    // A panic is counted and logged by `isolated`; the machine asks again,
    // and the reconciler destroys it if it never gets through.
    let Ok(Ok(ended)) = ended else {
        tracing::error!("the callback's task failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response();
    };
    match ended {
        Ok(Callback::Destroyed) => (StatusCode::NO_CONTENT, "").into_response(),
        Ok(Callback::Unauthorized) => {
            (StatusCode::UNAUTHORIZED, "unknown machine or token\n").into_response()
        }
        Err(e) => {
            // The error may name the instance from the URL: cut like any input.
            tracing::error!("callback: {}", for_log(&e.to_string()));
            (StatusCode::SERVICE_UNAVAILABLE, "try again\n").into_response()
        }
    }
}
