//! `cargo bench --bench ingest`: how fast rigger takes GitHub's deliveries.
//!
//! 1. Verify + parse a real `queued` payload, on one core (deliveries/s).
//! 2. Signed `queued` deliveries POSTed over loopback to the real `/webhook`
//!    handler, each answered only once committed to SQLite: deliveries/s and
//!    p50/p99 time to answer, with 64 concurrent senders.
//! 3. The baseline, in the same run: a plain loop that verifies the HMAC and
//!    inserts one row per delivery (a commit each), as a handler without
//!    group commit would.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rigger::engine::inbox::DurableInbox;
use rigger::engine::ports::SystemClock;
use rigger::github::webhook::{parse, sign, verify};
use rigger::metrics::Metrics;
use rigger::server::webhook::{WebhookState, webhook_router};
use rigger::settings::Secret;
use rigger::store::{NewDelivery, Store};

const QUEUED: &str = include_str!("../webhook/queued.json");
const DELIVERIES: usize = 20_000;

async fn fresh_store(name: &str) -> Store {
    let dir = std::env::temp_dir().join(format!("rigger-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    Store::connect(&format!("sqlite://{}", dir.join("r.db").display()))
        .await
        .expect("sqlite")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn verify_and_parse(secrets: &[Secret]) {
    let body = QUEUED.as_bytes();
    let header = sign(&secrets[0], body);
    let n = 50_000;
    let t = Instant::now();
    for _ in 0..n {
        verify(secrets, Some(black_box(&header)), black_box(body)).expect("valid");
        black_box(parse("workflow_job", body).expect("parses"));
    }
    let per_s = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "verify + parse a queued payload ({} bytes): {per_s:>10.0} /s on one core",
        body.len()
    );
}

async fn over_http(secrets: Arc<Vec<Secret>>, senders_n: usize) -> f64 {
    let store = fresh_store(&format!("http-{senders_n}")).await;
    let app = webhook_router(WebhookState {
        secrets: secrets.clone(),
        inbox: DurableInbox::start(store.clone()),
        clock: Arc::new(SystemClock),
        metrics: Arc::new(Metrics::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("port");
    let url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let body = QUEUED.as_bytes().to_vec();
    let signature = sign(&secrets[0], &body);
    let client = reqwest::Client::new();
    let t = Instant::now();
    let mut senders = Vec::new();
    for s in 0..senders_n {
        let (client, url, body, signature) =
            (client.clone(), url.clone(), body.clone(), signature.clone());
        senders.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in (s..DELIVERIES).step_by(senders_n) {
                let start = Instant::now();
                let r = client
                    .post(&url)
                    .header("x-github-event", "workflow_job")
                    .header("x-github-delivery", format!("bench-{i}"))
                    .header("x-hub-signature-256", &signature)
                    .body(body.clone())
                    .send()
                    .await
                    .expect("answer");
                assert_eq!(r.status(), 202);
                latencies.push(start.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(DELIVERIES);
    for s in senders {
        all.extend(s.await.expect("sender"));
    }
    let per_s = DELIVERIES as f64 / t.elapsed().as_secs_f64();
    all.sort();
    println!(
        "POST /webhook, committed to SQLite:          {per_s:>10.0} /s   p50 {:.2} ms   p99 {:.2} ms   ({senders_n} senders, {DELIVERIES} deliveries)",
        percentile(&all, 0.5),
        percentile(&all, 0.99)
    );
    per_s
}

async fn baseline(secrets: Arc<Vec<Secret>>) -> f64 {
    let store = fresh_store("baseline").await;
    let body = QUEUED.as_bytes();
    let signature = sign(&secrets[0], body);
    let n = 2_000;
    let t = Instant::now();
    for i in 0..n {
        verify(&secrets, Some(&signature), body).expect("valid");
        store
            .insert_delivery(&NewDelivery {
                delivery_id: format!("base-{i}"),
                event: "workflow_job".into(),
                action: Some("queued".into()),
                body: QUEUED.to_string(),
                received_at: i,
            })
            .await
            .expect("insert");
    }
    let per_s = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "baseline: verify HMAC + insert one row, loop: {per_s:>10.0} /s   ({n} deliveries, one commit each)"
    );
    per_s
}

fn main() {
    let secrets = Arc::new(vec![Secret::new("bench-secret")]);
    verify_and_parse(&secrets);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Time to answer is concurrency ÷ throughput: more senders, more queueing.
    let few = rt.block_on(over_http(secrets.clone(), 16));
    let many = rt.block_on(over_http(secrets.clone(), 64));
    let base = rt.block_on(baseline(secrets));
    println!(
        "ratio to the baseline loop: {:.1}× with 16 senders, {:.1}× with 64",
        few / base,
        many / base
    );
}
