//! `POST /callback/{instance}`: what a rented machine (anyone on the
//! internet, as far as rigger knows) sends when its runner ends. The report
//! through `clean_report`, then the real router over HTTP with an engine
//! whose store holds one booting machine: only that machine's own token
//! destroys it (I1), the token never reaches the event log, and the report
//! kept is bounded printable text.
//!
//! Input: the first line is the path after `/callback/` (`{ours}` is the
//! machine's id) with its query; the second the `Authorization` header
//! (`{token}` is the machine's token); the rest the body.

use std::sync::OnceLock;

use rigger::engine::ports::ManualClock;
use rigger::engine::provision::token_hash;
use rigger::engine::state::{InstanceState, JobState};
use rigger::engine::teardown::{REPORT_LIMIT, clean_report};
use rigger::server::callback_router;
use rigger::store::{NewInstance, NewJob};

use super::runtime::{NOW_MS, block_on};
use super::script::split_line;
use super::stub::{self, FuzzEngine};

const INSTANCE: &str = "a1b2c3d4e5";
const TOKEN: &str = "f00dfacef00dfacef00dfacef00dfacef00dfacef00dfacef00dfacef00dface";
const JOB: i64 = 4242;

pub fn check(data: &[u8]) {
    let (path, rest) = split_line(data);
    let (auth, body) = split_line(rest);
    report(body);
    let path = String::from_utf8_lossy(path).replace("{ours}", INSTANCE);
    let auth = String::from_utf8_lossy(auth).replace("{token}", TOKEN);
    let body = body.to_vec();
    block_on(call(path, auth, body));
}

/// What rigger keeps of a report: at most its last [`REPORT_LIMIT`]
/// bytes, no control character but line breaks and tabs, and the end of
/// what was sent.
fn report(body: &[u8]) {
    let kept = clean_report(body);
    assert!(kept.len() <= REPORT_LIMIT, "{} bytes kept", kept.len());
    assert!(
        kept.chars()
            .all(|c| c == '\n' || c == '\t' || !c.is_control()),
        "a control character kept: {kept:?}"
    );
    let sent: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect();
    assert!(sent.trim().ends_with(kept.as_str()), "not the report's end");
}

fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(reqwest::Client::new)
}

/// A job waiting for its booting machine, which has a callback token.
async fn world() -> (std::sync::Arc<FuzzEngine>, stub::Removed) {
    let (engine, removed) = stub::engine(ManualClock::new(NOW_MS)).await;
    let s = &engine.store;
    s.insert_job(&NewJob {
        job_id: JOB,
        run_id: 1,
        run_attempt: 1,
        repo: "octo/ml".into(),
        installation_id: 1,
        labels: vec!["cirun-gpu--1".into()],
        head_sha: "abc".into(),
        is_fork: false,
        actor: "octocat".into(),
        queued_at: NOW_MS,
    })
    .await
    .expect("a job");
    s.force_job_state(JOB, JobState::WaitingForRunner, NOW_MS, "fuzz")
        .await
        .expect("the job waits");
    let instance = NewInstance {
        id: INSTANCE.into(),
        job_id: JOB,
        label: format!("rigger:fuzz:{JOB}:{INSTANCE}"),
        runner_name: format!("rigger-fuzz-{JOB}-{INSTANCE}"),
        offer_id: Some(1),
        gpu_name: Some("RTX 4090".into()),
        num_gpus: Some(1),
        dph: Some(0.4),
        location: Some("Texas, US".into()),
        expires_at: NOW_MS + 3_600_000,
        callback_hash: Some(token_hash(TOKEN)),
        estimated_hours: None,
        estimated_cost: None,
    };
    s.insert_creating_instance(&instance, 7, NOW_MS)
        .await
        .expect("an instance");
    s.set_provider_id(INSTANCE, "555").await.expect("its id");
    s.force_instance_state(INSTANCE, InstanceState::Booting, NOW_MS, "fuzz")
        .await
        .expect("it boots");
    (engine, removed)
}

async fn call(path: String, auth: String, body: Vec<u8>) {
    let (engine, removed) = world().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    let app = callback_router(engine.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let Ok(url) = reqwest::Url::parse(&format!("{base}/callback/{path}")) else {
        server.abort();
        return;
    };
    // A URL that leaves the path (`../`, `#`) reaches another route, or none.
    let mut request = http().post(url).body(body);
    if let Ok(value) = reqwest::header::HeaderValue::from_str(&auth) {
        request = request.header("authorization", value);
    }
    let status = request
        .send()
        .await
        .expect("rigger answers")
        .status()
        .as_u16();
    server.abort();
    // The one machine is removed only for its own token (whatever spelling
    // of its id the path uses).
    let ours = auth.strip_prefix("Bearer ") == Some(TOKEN);
    assert!(
        [204, 401, 404, 405, 400].contains(&status),
        "the callback answered {status}"
    );
    if !ours {
        assert!(
            removed.list().is_empty(),
            "a callback without the machine's token removed {:?}",
            removed.list()
        );
    }
    let events = engine
        .store
        .job_events(JOB)
        .await
        .expect("the job's events");
    for (_, kind, message) in &events {
        assert!(
            !message.contains(TOKEN),
            "the machine's token reached the event log ({kind})"
        );
    }
    engine.store.close().await;
}
