//! No secret reaches a log line: everything logged at `trace`, by every
//! crate, while rigger authenticates as the App, uses installation tokens
//! (plain requests and octocrab's), registers a JIT runner, receives signed
//! webhooks through its own `/webhook` handler (and refuses a bad signature),
//! and calls Vast.ai with its API key. Its own test binary, so that its
//! subscriber is the process's only one (tracing caches which call sites are
//! enabled process-wide).

use std::sync::{Arc, Mutex};

use rigger::cloud::CloudProvider;
use rigger::cloud::vast::client::VastClient;
use rigger::engine::inbox::DurableInbox;
use rigger::engine::ports::{Github, ManualClock, RepoRef};
use rigger::github::app::AppAuth;
use rigger::github::client::GithubClient;
use rigger::github::http::Api;
use rigger::github::webhook::sign;
use rigger::metrics::Metrics;
use rigger::server::webhook::{WebhookState, webhook_router};
use rigger::settings::Secret;
use rigger::sim::github::{NewJob, SimGithub, SimGithubConfig};
use rigger::sim::vast::{SimConfig, SimVast};
use rigger::store::Store;

const WEBHOOK_SECRET: &str = "whsec-7f3a9c1e5b2d";
const VAST_KEY: &str = "vast-key-4e8b0d2a6c91";

async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_at_trace_level() {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let clock = ManualClock::new(1_763_800_000_000);
    let sim = SimGithub::new(
        SimGithubConfig {
            webhook_secret: Secret::new(WEBHOOK_SECRET),
            ..SimGithubConfig::default()
        },
        Arc::new(clock.clone()),
    )
    .unwrap();
    let url = serve(sim.router()).await;
    sim.set_public_url(&url);
    let auth = AppAuth::new(
        sim.app_id(),
        sim.private_key_pem(),
        Api::new(&url, Arc::new(clock.clone())),
        Arc::new(clock.clone()),
    )
    .unwrap();
    sim.add_repo("acme/ml", &[(".cirun.yml", "runners: []\n")]);
    let client = GithubClient::new(Arc::new(auth));
    let r = RepoRef {
        installation_id: sim.installation_of("acme"),
        repo: "acme/ml".into(),
    };

    // GitHub: octocrab's calls (repository, paginated runners) and plain
    // ones (contents, JIT), with the JWT and an installation token.
    client.config_files(&r, None).await.unwrap();
    client
        .default_branch(r.installation_id, "acme/ml")
        .await
        .unwrap();
    let jit = client
        .create_jit_runner(&r, "rigger-t-1", &["cirun-gpu".into()])
        .await
        .unwrap();
    tracing::info!(?jit, "registered");
    client
        .list_runners("rigger-t-", std::slice::from_ref(&r))
        .await
        .everywhere()
        .unwrap();
    let jwt = client.auth().jwt().unwrap();
    let token = client
        .auth()
        .installation_token(r.installation_id)
        .await
        .unwrap();

    // rigger's own /webhook handler, over HTTP: the simulated GitHub's
    // signed deliveries, then one with a wrong signature.
    let dir = std::env::temp_dir().join(format!("rigger-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
        .await
        .unwrap();
    let metrics = Arc::new(Metrics::new());
    let hook = serve(webhook_router(WebhookState {
        secrets: Arc::new(vec![Secret::new(WEBHOOK_SECRET)]),
        inbox: DurableInbox::start(store.clone()),
        clock: Arc::new(clock.clone()),
        metrics: metrics.clone(),
    }))
    .await;
    sim.set_webhook_url(Some(format!("{hook}/webhook")));
    sim.queue_job(NewJob {
        repo: "acme/ml".into(),
        labels: vec!["cirun-gpu".into()],
        head_sha: "abc".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 1,
        conclusion: "success".into(),
    });
    assert_eq!(sim.flush().await, 1, "the signed delivery was accepted");
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let forged = reqwest::Client::new()
        .post(format!("{hook}/webhook"))
        .header("x-github-event", "ping")
        .header("x-github-delivery", "forged-1")
        .header("x-hub-signature-256", sign(&Secret::new("guess"), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    assert_eq!(
        metrics.value(
            "rigger_deliveries_total",
            &[("event", "workflow_job"), ("result", "accepted")]
        ),
        1.0
    );

    // Vast.ai with its API key.
    let vast_sim = SimVast::new(
        SimConfig {
            api_key: VAST_KEY.into(),
            offers: 50,
            ..SimConfig::default()
        },
        Arc::new(clock.clone()),
    );
    let vast_url = serve(vast_sim.router()).await;
    let vast = VastClient::new(&vast_url, Secret::new(VAST_KEY));
    vast.list("rigger-").await.unwrap();
    let stranger = VastClient::new(&vast_url, Secret::new("not-the-key"));
    assert!(
        stranger.list("rigger-").await.is_err(),
        "a wrong key is refused"
    );

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.len() > 1000,
        "trace logging was captured ({} bytes)",
        log.len()
    );
    // What was logged covers the paths under test (octocrab's request
    // spans, the handler's refusal).
    for seen in ["acme/ml/actions/runners", "refused a delivery"] {
        assert!(log.contains(seen), "the log shows no {seen:?}");
    }
    let pem = sim.private_key_pem().expose();
    let mut secrets: Vec<(&str, &str)> = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(|l| ("private key line", l))
        .collect();
    secrets.extend([
        ("JWT", jwt.expose()),
        ("installation token", token.expose()),
        ("JIT config", jit.jit_config.expose()),
        ("webhook secret", WEBHOOK_SECRET),
        ("Vast.ai API key", VAST_KEY),
    ]);
    for (what, secret) in secrets {
        assert!(!log.contains(secret), "the {what} appears in the log");
    }
}
