//! `POST /webhook` over real HTTP: signatures, limits, duplicates, and every
//! `workflow_job` example GitHub publishes (from `RIGGER_GITHUB_FIXTURES`).

use std::path::PathBuf;
use std::sync::Arc;

use rigger::engine::events::JobEvent;
use rigger::engine::inbox::DurableInbox;
use rigger::engine::ports::ManualClock;
use rigger::github::webhook::{Event, parse, sign};
use rigger::metrics::Metrics;
use rigger::server::OpsState;
use rigger::server::webhook::{MAX_BODY_BYTES, WebhookState, parse_delivery, webhook_router};
use rigger::settings::Secret;
use rigger::store::Store;

struct Server {
    url: String,
    /// `/metrics`, over the same registry.
    metrics_url: String,
    store: Store,
    metrics: Arc<Metrics>,
}

async fn serve(name: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("rigger-webhook-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let app = webhook_router(WebhookState {
        secrets: Arc::new(vec![Secret::new("old-secret"), Secret::new("s3cret")]),
        inbox: DurableInbox::start(store.clone()),
        clock: Arc::new(ManualClock::new(1_000)),
        metrics: metrics.clone(),
    })
    .merge(rigger::server::ops_router(OpsState {
        store: store.clone(),
        metrics: metrics.clone(),
        health: rigger::engine::supervise::Health::new(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        url: format!("{base}/webhook"),
        metrics_url: format!("{base}/metrics"),
        store,
        metrics,
    }
}

async fn post(url: &str, event: &str, delivery: &str, body: &[u8], secret: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sign(&Secret::new(secret), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A `workflow_job` delivery with no signature at all: its status.
async fn unsigned(url: &str, delivery: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("x-github-event", "workflow_job")
        .header("x-github-delivery", delivery)
        .body(QUEUED)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

const QUEUED: &str = r#"{"action":"queued","workflow_job":{"id":42,"run_id":7,"run_attempt":1,"head_sha":"abc","status":"queued","labels":["cirun-gpu--7"],"conclusion":null,"runner_name":null},"repository":{"full_name":"acme/ml"},"sender":{"login":"octocat"},"installation":{"id":5}}"#;

#[tokio::test]
async fn a_signed_delivery_is_committed_before_202_and_duplicates_are_recognised() {
    let s = serve("accept").await;
    let (code, text) = post(&s.url, "workflow_job", "d-1", QUEUED.as_bytes(), "s3cret").await;
    assert_eq!((code, text.as_str()), (202, "accepted\n"));
    // Committed: a worker can claim it at once, and it parses back to the job.
    let claimed = s
        .store
        .claim_deliveries("w", 2_000, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].action.as_deref(), Some("queued"));
    match parse_delivery(&claimed[0]).unwrap() {
        Some(rigger::engine::installations::InboxEvent::Job(JobEvent::Queued(j))) => {
            assert_eq!((*j.job_id, j.repo.as_str()), (42, "acme/ml"))
        }
        other => panic!("{other:?}"),
    }
    // GitHub redelivers with the same id: acknowledged, stored once.
    let (code, text) = post(
        &s.url,
        "workflow_job",
        "d-1",
        QUEUED.as_bytes(),
        "old-secret",
    )
    .await;
    assert_eq!((code, text.as_str()), (202, "duplicate\n"));
    assert_eq!(
        s.metrics.value(
            "rigger_deliveries_total",
            &[("event", "workflow_job"), ("result", "duplicate")]
        ),
        1.0
    );
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_nothing_is_stored() {
    let s = serve("refuse").await;
    let http = reqwest::Client::new();
    // Wrong secret.
    let (code, text) = post(&s.url, "workflow_job", "d-1", QUEUED.as_bytes(), "guess").await;
    assert_eq!(code, 401);
    assert!(text.contains("does not match"), "{text}");
    // No signature at all.
    assert_eq!(unsigned(&s.url, "d-2").await, 401);
    // Signed, but no delivery id.
    let r = http
        .post(&s.url)
        .header("x-github-event", "workflow_job")
        .header(
            "x-hub-signature-256",
            sign(&Secret::new("s3cret"), QUEUED.as_bytes()),
        )
        .body(QUEUED)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Over GitHub's 25 MB cap: refused before the signature is even computed.
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let (code, _) = post(&s.url, "workflow_job", "d-3", &big, "s3cret").await;
    assert_eq!(code, 413);
    assert!(
        s.store
            .claim_deliveries("w", 2_000, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Whoever can reach `/webhook` can send any `X-GitHub-Event`: a refused
/// delivery is counted as `unverified`, and a verified one under a fixed set
/// of event names (`other` for the rest), so no header makes a new series.
#[tokio::test]
async fn event_names_from_deliveries_never_become_metric_series() {
    let s = serve("cardinality").await;
    // Names no one would guess, from a fixed seed (xorshift): the same run
    // every time.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut names = Vec::new();
    for _ in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        names.push(format!("evt{seed:016x}"));
    }
    for (i, name) in names.iter().enumerate() {
        let (code, _) = post(&s.url, name, &format!("bad-{i}"), b"{}", "guess").await;
        assert_eq!(code, 401, "{name}");
    }
    // Unsigned, and under a name rigger does read: still unverified.
    assert_eq!(unsigned(&s.url, "unsigned-1").await, 401);
    // Signed, under a name rigger does not read: counted as `other`.
    let (code, _) = post(&s.url, &names[0], "signed-1", b"{}", "s3cret").await;
    assert_eq!(code, 200);

    let text = reqwest::get(&s.metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in &names {
        assert!(!text.contains(name.as_str()), "{name} in /metrics:\n{text}");
    }
    assert!(
        text.contains("rigger_deliveries_total{event=\"unverified\",result=\"unauthorized\"} 41\n"),
        "{text}"
    );
    assert!(
        text.contains("rigger_deliveries_total{event=\"other\",result=\"ignored\"} 1\n"),
        "{text}"
    );
    let series = text
        .lines()
        .filter(|l| l.starts_with("rigger_deliveries_total{"))
        .count();
    assert_eq!(series, 2, "{text}");
}

#[tokio::test]
async fn pings_and_other_events_are_answered_and_not_stored_malformed_jobs_are_kept_with_202() {
    let s = serve("others").await;
    let (code, text) = post(
        &s.url,
        "ping",
        "p-1",
        br#"{"zen":"Keep it simple."}"#,
        "s3cret",
    )
    .await;
    assert_eq!((code, text.as_str()), (200, "pong\n"));
    let (code, text) = post(&s.url, "star", "x-1", b"{}", "s3cret").await;
    assert_eq!((code, text.as_str()), (200, "ignored: star\n"));
    assert!(
        s.store
            .claim_deliveries("w", 2_000, 60_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // A signed workflow_job that is not one: kept, so that the worker records
    // why it could not be read and quarantines it, and answered 202 with the
    // reason (GitHub does not redeliver; the operator retries from the inbox).
    let (code, text) = post(
        &s.url,
        "workflow_job",
        "m-1",
        br#"{"action":"queued"}"#,
        "s3cret",
    )
    .await;
    assert_eq!(code, 202, "{text}");
    assert!(
        text.starts_with(rigger::server::webhook::QUARANTINED),
        "{text}"
    );
    assert!(text.contains("malformed `workflow_job` payload"), "{text}");
    let claimed = s
        .store
        .claim_deliveries("w", 2_000, 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(parse_delivery(&claimed[0]).is_err());
}

fn fixtures() -> Option<PathBuf> {
    match std::env::var_os("RIGGER_GITHUB_FIXTURES") {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "skipped: set RIGGER_GITHUB_FIXTURES to ../shared/fixtures/github (.ci/run does)"
            );
            None
        }
    }
}

/// Every published example of the events rigger reads parses into the right
/// rigger event: the `workflow_job` ones into the action their file name
/// says, with ids, labels, sha and runner read from the payload; the
/// `installation` and `installation_repositories` ones with their action,
/// installation id, account and repositories (known values of the fixtures,
/// as `shared/reference/github-app.md` lists them).
#[test]
fn githubs_published_payload_examples_parse() {
    use rigger::github::webhook::{InstallationId, Repository};
    let Some(root) = fixtures() else { return };
    let examples = root.join("octokit-webhooks/payload-examples/api.github.com");
    let read = |event: &str, file: &str| {
        let body = std::fs::read(examples.join(event).join(file))
            .unwrap_or_else(|e| panic!("{event}/{file}: {e}"));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let parsed = parse(event, &body).unwrap_or_else(|e| panic!("{event}/{file}: {e}"));
        (json, parsed)
    };
    let mut seen = 0;
    for entry in std::fs::read_dir(examples.join("workflow_job")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let (v, parsed) = read("workflow_job", &name);
        seen += 1;
        let w = &v["workflow_job"];
        let check = |j: &rigger::engine::events::JobInfo| {
            assert_eq!(Some(*j.job_id), w["id"].as_i64(), "{name}");
            assert_eq!(Some(*j.run_id), w["run_id"].as_i64(), "{name}");
            assert_eq!(Some(*j.run_attempt), w["run_attempt"].as_i64(), "{name}");
            assert_eq!(Some(j.repo.as_str()), v["repository"]["full_name"].as_str());
            assert_eq!(Some(j.head_sha.as_str()), w["head_sha"].as_str(), "{name}");
            let labels: Vec<&str> = w["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap())
                .collect();
            assert_eq!(j.labels, labels, "{name}");
            // The completed examples were captured without an App: no installation.
            assert_eq!(
                *j.installation_id,
                v["installation"]["id"].as_i64().unwrap_or(0),
                "{name}"
            );
            assert!(
                !*j.is_fork,
                "{name}: workflow_job does not say; the engine asks"
            );
        };
        let runner = w["runner_name"].as_str().filter(|n| !n.is_empty());
        match (name.split('.').next().unwrap(), &parsed) {
            ("queued", Event::WorkflowJob(JobEvent::Queued(j))) => check(j),
            ("queued", Event::WorkflowJob(JobEvent::Waiting { job, .. }))
                if w["status"] == "waiting" =>
            {
                check(job)
            }
            ("in_progress", Event::WorkflowJob(JobEvent::InProgress { job, runner_name })) => {
                check(job);
                assert!(runner.is_some(), "{name}");
                assert_eq!(runner_name.as_deref(), runner, "{name}");
            }
            (
                "completed",
                Event::WorkflowJob(JobEvent::Completed {
                    job,
                    conclusion,
                    runner_name,
                }),
            ) => {
                check(job);
                let said = w["conclusion"].as_str().unwrap();
                assert!(name.contains(said), "{name}: {said}");
                assert_eq!(conclusion.as_deref(), Some(said), "{name}");
                assert_eq!(runner_name.as_deref(), runner, "{name}");
            }
            ("waiting", Event::WorkflowJob(JobEvent::Waiting { job, .. })) => check(job),
            _ => panic!("{name}: {parsed:?}"),
        }
    }
    // `queued` with status `waiting` is a job held for its deployment's
    // approval (its environment named by `deployment`), not one to serve;
    // `queued` with a runner id is still `queued`.
    let (_, q) = read("workflow_job", "queued.with-deployment.payload.json");
    assert!(
        matches!(&q, Event::WorkflowJob(JobEvent::Waiting { job, environment })
            if *job.installation_id == 23154469 && environment.as_deref() == Some("Test")),
        "{q:?}"
    );
    let (_, q) = read("workflow_job", "queued.payload.json");
    assert!(
        matches!(&q, Event::WorkflowJob(JobEvent::Queued(j)) if *j.installation_id == 3456996 && j.labels == vec!["ubuntu-latest"]),
        "{q:?}"
    );

    for (file, action, id, account) in [
        ("created.payload.json", "created", 957387, "Codertocat"),
        (
            "created.with-requester.payload.json",
            "created",
            957387,
            "Codertocat",
        ),
        ("deleted.payload.json", "deleted", 2, "octocat"),
        ("suspend.payload.json", "suspend", 16598467, "Codertocat"),
        (
            "unsuspend.payload.json",
            "unsuspend",
            16598467,
            "Codertocat",
        ),
        (
            "new_permissions_accepted.payload.json",
            "new_permissions_accepted",
            957387,
            "Codertocat",
        ),
    ] {
        seen += 1;
        let (_, parsed) = read("installation", file);
        assert_eq!(
            parsed,
            Event::Installation {
                action: action.into(),
                installation: InstallationId(id),
                account: account.into(),
            },
            "installation/{file}"
        );
    }
    for (file, action, id, added, removed) in [
        (
            "added.payload.json",
            "added",
            957387,
            &["Codertocat/Space"][..],
            &[][..],
        ),
        (
            "removed.payload.json",
            "removed",
            2,
            &[][..],
            &["octocat/Hello-World"][..],
        ),
    ] {
        seen += 1;
        let (_, parsed) = read("installation_repositories", file);
        let repos = |r: &[&str]| r.iter().map(|n| Repository::from(*n)).collect::<Vec<_>>();
        assert_eq!(
            parsed,
            Event::InstallationRepositories {
                action: action.into(),
                installation: InstallationId(id),
                added: repos(added),
                removed: repos(removed),
            },
            "installation_repositories/{file}"
        );
    }
    for entry in std::fs::read_dir(examples.join("ping")).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        let (v, parsed) = read("ping", &name);
        seen += 1;
        assert_eq!(
            parsed,
            Event::Ping {
                zen: v["zen"].as_str().unwrap_or_default().to_string()
            },
            "ping/{name}"
        );
    }
    assert!(
        seen >= 18,
        "only {seen} examples found under {}",
        examples.display()
    );
}

/// GitHub's own documented signature example, from the fixtures.
#[test]
fn githubs_signature_test_vector_from_the_fixtures() {
    let Some(root) = fixtures() else { return };
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("github-docs-webhooks/signature-test-vector.json")).unwrap(),
    )
    .unwrap();
    let secret = v["secret"].as_str().unwrap();
    let payload = v["payload"].as_str().unwrap();
    let expected = v["X-Hub-Signature-256"].as_str().unwrap();
    assert_eq!(sign(&Secret::new(secret), payload.as_bytes()), expected);
}
