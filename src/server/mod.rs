//! rigger's HTTP server: `/webhook` (GitHub's deliveries), and the
//! operational endpoints `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::engine::state::{InstanceState, JobState};
use crate::metrics::Metrics;
use crate::store::{StateTable, Store};

#[derive(Clone)]
pub struct OpsState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
}

/// The operational endpoints.
pub fn ops_router(state: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Ready when the database answers: without it no delivery can be accepted.
async fn readyz(State(s): State<OpsState>) -> impl IntoResponse {
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}
