//! `rigger webhook send` with the samples in `webhook/`, against rigger's
//! real `/webhook` handler over HTTP.

use std::sync::Arc;

use rigger::engine::inbox::DurableInbox;
use rigger::engine::ports::ManualClock;
use rigger::metrics::Metrics;
use rigger::server::webhook::{WebhookState, webhook_router};
use rigger::settings::Secret;
use rigger::store::Store;

async fn serve() -> (String, Store) {
    let dir = std::env::temp_dir().join(format!("rigger-cli-webhook-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
        .await
        .unwrap();
    let app = webhook_router(WebhookState {
        secrets: Arc::new(vec![Secret::new("s3cret")]),
        inbox: DurableInbox::start(store.clone()),
        clock: Arc::new(ManualClock::new(0)),
        metrics: Arc::new(Metrics::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, store)
}

async fn send(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_rigger"))
        .args(["webhook", "send"])
        .args(args)
        .env_remove("RIGGER_WEBHOOK_SECRET")
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn every_sample_is_accepted_and_a_wrong_secret_refused() {
    let (url, store) = serve().await;
    for (file, answer) in [
        ("webhook/ping.json", "ping delivery"),
        ("webhook/queued.json", "202 Accepted: accepted"),
        ("webhook/in_progress.json", "202 Accepted: accepted"),
        ("webhook/completed-success.json", "202 Accepted: accepted"),
        ("webhook/completed-cancelled.json", "202 Accepted: accepted"),
    ] {
        let (ok, text) = send(&[file, "--url", &url, "--secret", "s3cret"]).await;
        assert!(ok && text.contains(answer), "{file}: {text}");
    }
    let stored = store.claim_deliveries("w", 1, 60_000, 10).await.unwrap();
    assert_eq!(
        stored.len(),
        4,
        "four workflow_job deliveries, the ping is not kept"
    );

    let (ok, text) = send(&["webhook/queued.json", "--url", &url, "--secret", "guess"]).await;
    assert!(!ok && text.contains("401"), "{text}");
    assert!(
        !text.contains("guess"),
        "the secret is never printed: {text}"
    );

    let (ok, text) = send(&[
        "webhook/queued.json",
        "--url",
        &url,
        "--secret",
        "s3cret",
        "--delivery",
        "d-1",
    ])
    .await;
    assert!(ok, "{text}");
    let (ok, text) = send(&[
        "webhook/queued.json",
        "--url",
        &url,
        "--secret",
        "s3cret",
        "--delivery",
        "d-1",
    ])
    .await;
    assert!(ok && text.contains("duplicate"), "{text}");
}

#[test]
fn the_samples_parse_into_the_events_their_names_say() {
    use rigger::engine::events::JobEvent;
    use rigger::github::webhook::{Event, parse};
    let read = |f: &str| std::fs::read(format!("webhook/{f}")).unwrap();
    assert!(matches!(
        parse("workflow_job", &read("queued.json")).unwrap(),
        Event::WorkflowJob(JobEvent::Queued(_))
    ));
    assert!(matches!(
        parse("workflow_job", &read("in_progress.json")).unwrap(),
        Event::WorkflowJob(JobEvent::InProgress {
            runner_name: Some(_),
            ..
        })
    ));
    for (f, c) in [
        ("completed-success.json", "success"),
        ("completed-cancelled.json", "cancelled"),
    ] {
        match parse("workflow_job", &read(f)).unwrap() {
            Event::WorkflowJob(JobEvent::Completed { conclusion, .. }) => {
                assert_eq!(conclusion.as_deref(), Some(c))
            }
            e => panic!("{f}: {e:?}"),
        }
    }
    assert!(matches!(
        parse("ping", &read("ping.json")).unwrap(),
        Event::Ping { .. }
    ));
}
