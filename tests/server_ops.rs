//! `/healthz`, `/readyz` and `/metrics` over real HTTP.

use std::sync::Arc;

use rigger::engine::supervise::Health;
use rigger::metrics::Metrics;
use rigger::server::{OpsState, ops_router};
use rigger::store::{NewJob, Store};

async fn serve(store: Store, metrics: Arc<Metrics>) -> String {
    serve_with(store, metrics, Health::new()).await
}

async fn serve_with(store: Store, metrics: Arc<Metrics>, health: Arc<Health>) -> String {
    let app = ops_router(OpsState {
        store,
        metrics,
        health,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

async fn store(name: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("rigger-ops-srv-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let s = store("all").await;
    s.insert_job(&NewJob {
        job_id: 1,
        run_id: 1,
        run_attempt: 1,
        repo: "o/r".into(),
        installation_id: 1,
        labels: vec!["cirun-gpu".into()],
        head_sha: "a".into(),
        is_fork: false,
        actor: "octocat".into(),
        queued_at: 0,
    })
    .await
    .unwrap();
    let metrics = Arc::new(Metrics::new());
    metrics.inc("rigger_reconciler_actions_total", &[("rule", "orphan")]);
    let url = serve(s.clone(), metrics).await;
    let http = reqwest::Client::new();

    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let r = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    assert!(text.contains("rigger_jobs{state=\"queued\"} 1\n"), "{text}");
    assert!(
        text.contains("rigger_jobs{state=\"running\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("rigger_instances{state=\"booting\"} 0\n"),
        "{text}"
    );
    assert!(
        text.contains("rigger_reconciler_actions_total{rule=\"orphan\"} 1\n"),
        "{text}"
    );

    // Without its database rigger is alive but not ready.
    s.close().await;
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn not_ready_while_a_part_of_rigger_is_down() {
    let s = store("down").await;
    let health = Health::new();
    let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let a = alive.clone();
    health.watch("inbox committer", move || {
        a.load(std::sync::atomic::Ordering::SeqCst)
    });
    let url = serve_with(s, Arc::new(Metrics::new()), health).await;
    let http = reqwest::Client::new();
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    alive.store(false, std::sync::atomic::Ordering::SeqCst);
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.text().await.unwrap(), "the inbox committer stopped\n");
}
