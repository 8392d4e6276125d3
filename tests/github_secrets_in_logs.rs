//! No secret reaches a log line: everything logged at `trace`, by every
//! crate, while rigger authenticates as the App, uses installation tokens,
//! registers a JIT runner and receives a signed webhook. Its own test binary,
//! so that its subscriber is the process's only one (tracing caches which
//! call sites are enabled process-wide).

use std::sync::{Arc, Mutex};

use rigger::engine::ports::{Github, ManualClock, RepoRef};
use rigger::github::app::AppAuth;
use rigger::github::client::GithubClient;
use rigger::github::http::Api;
use rigger::sim::github::{NewJob, SimGithub, SimGithubConfig};

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
    let sim = SimGithub::new(SimGithubConfig::default(), Arc::new(clock.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
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
    struct W {
        sim: SimGithub,
        client: GithubClient,
        url: String,
    }
    let w = W { sim, client, url };
    w.client.config_files(&r, None).await.unwrap();
    let jit = w
        .client
        .create_jit_runner(&r, "rigger-t-1", &["cirun-gpu".into()])
        .await
        .unwrap();
    tracing::info!(?jit, "registered");
    let jwt = w.client.auth().jwt().unwrap();
    let token = w
        .client
        .auth()
        .installation_token(r.installation_id)
        .await
        .unwrap();
    w.sim.set_webhook_url(Some(format!("{}/nowhere", w.url)));
    w.sim.queue_job(NewJob {
        repo: "acme/ml".into(),
        labels: vec!["cirun-gpu".into()],
        head_sha: "abc".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 1,
        conclusion: "success".into(),
    });
    w.sim.flush().await;

    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.len() > 1000,
        "trace logging was captured ({} bytes)",
        log.len()
    );
    let pem = w.sim.private_key_pem().expose();
    let key_line = pem.lines().nth(1).unwrap();
    for (what, secret) in [
        ("private key", key_line),
        ("JWT", jwt.expose()),
        ("installation token", token.expose()),
        ("JIT config", jit.jit_config.expose()),
        ("webhook secret", "sim-webhook-secret"),
    ] {
        assert!(!log.contains(secret), "the {what} appears in the log");
    }
}
