//! `cargo bench --bench engine`: rigger's decisions, measured end to end over
//! loopback against the simulated GitHub and Vast.ai (both in this process,
//! sharing the 2 cores with rigger, so these are upper bounds).
//!
//! 1. Decision latency: a delivery accepted by `/webhook` → the create
//!    request received by the simulated Vast.ai, p50/p99, one job at a time.
//! 2. Burst: 1,000 jobs queued at once → 1,000 instances created, with the
//!    JIT rate limit off; then with GitHub's limit (180/min) for 30 s, to
//!    show the pace it keeps and that nothing is dropped.
//! 3. Memory: resident set of this process with rigger idle, and after
//!    10,000 jobs are recorded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rigger::app::App;
use rigger::engine::ports::{Clock, SystemClock};
use rigger::sim::github::{NewJob, SimGithub, SimGithubConfig};
use rigger::sim::vast::{SimConfig, SimVast};
use rigger::sim::{SimWorld, rigger_settings};
use tokio::sync::watch;

const CIRUN: &str = "runners:\n  - name: bench\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-bench]\n    extra_config:\n      verified: false\n      min_reliability: 0\n      min_inet_down: 0\n";

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct World {
    github: SimGithub,
    vast: SimVast,
    app_stop: watch::Sender<bool>,
    engine: Arc<rigger::app::RiggerEngine>,
}

async fn world(offers: usize) -> World {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let github = SimGithub::new(SimGithubConfig::default(), clock.clone()).unwrap();
    let vast = SimVast::new(
        SimConfig {
            offers,
            // Machines stay loading: the benchmark measures decisions.
            boot_delay_ms: 3_600_000,
            ..SimConfig::default()
        },
        clock.clone(),
    );
    let gl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    github.set_public_url(&format!("http://{}", gl.local_addr().unwrap()));
    let vast_url = format!("http://{}", vl.local_addr().unwrap());
    tokio::spawn(github.clone().serve(gl));
    tokio::spawn(vast.clone().serve(vl));
    let dir = std::env::temp_dir().join(format!(
        "rigger-bench-engine-{}-{offers}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let settings = rigger_settings(
        &SimWorld {
            dir: &dir,
            github: &github,
            vast_url: &vast_url,
            vast_api_key: "sim-vast-key",
            webhook_secret: "sim-webhook-secret",
            controller_id: "bench",
        },
        &[
            ("RIGGER_MAX_INSTANCES", "100000"),
            ("RIGGER_MAX_INSTANCES_PER_REPO", "100000"),
            ("RIGGER_DAILY_BUDGET", "1000000"),
        ],
    )
    .unwrap();
    let app = App::build(settings, clock).await.unwrap();
    github.set_webhook_url(Some(format!("{}/webhook", app.url())));
    github.add_repo("acme/ml", &[(".cirun.yml", CIRUN)]);
    let engine = app.engine.clone();
    let (tx, mut rx) = watch::channel(false);
    tokio::spawn(app.run(async move {
        let _ = rx.changed().await;
    }));
    World {
        github,
        vast,
        app_stop: tx,
        engine,
    }
}

fn job(n: usize) -> NewJob {
    NewJob {
        repo: "acme/ml".into(),
        labels: vec![format!("cirun-bench--{n}")],
        head_sha: "8f3c1e2d".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 60_000,
        conclusion: "success".into(),
    }
}

async fn wait_for_instances(vast: &SimVast, n: usize, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if vast.live_instances().len() >= n {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

async fn decision_latency() {
    let w = world(2_000).await;
    let mut latencies = Vec::new();
    for n in 0..200 {
        w.github.queue_job(job(n));
        let queued = SystemClock.now_ms();
        wait_for_instances(&w.vast, n + 1, Duration::from_secs(10))
            .await
            .expect("rented");
        // The sim stamps the create with the same clock.
        let created = w.vast.created_at_ms().into_iter().max().unwrap_or(queued);
        let delivery = w
            .engine
            .store
            .latest_delivery_at()
            .await
            .unwrap()
            .unwrap_or(queued);
        latencies.push(created - delivery);
    }
    latencies.sort();
    println!(
        "decision latency (delivery accepted → create received): p50 {} ms   p99 {} ms   (200 jobs, one at a time)",
        pct(&latencies, 0.5),
        pct(&latencies, 0.99)
    );
    let _ = w.app_stop.send(true);
}

async fn burst() {
    let w = world(20_000).await;
    let t = Instant::now();
    for n in 0..1_000 {
        w.github.queue_job(job(n));
    }
    match wait_for_instances(&w.vast, 1_000, Duration::from_secs(120)).await {
        Some(_) => println!(
            "burst: 1,000 jobs queued at once → 1,000 instances created in {:.2} s (JIT limit off)",
            t.elapsed().as_secs_f64()
        ),
        None => println!(
            "burst: only {} of 1,000 instances after 120 s",
            w.vast.live_instances().len()
        ),
    }
    let _ = w.app_stop.send(true);

    let w = world(20_000).await;
    w.github.set_jit_per_minute(Some(180));
    for n in 0..400 {
        w.github.queue_job(job(n));
    }
    tokio::time::sleep(Duration::from_secs(30)).await;
    let made = w.vast.live_instances().len();
    let waiting = w
        .engine
        .store
        .jobs_in(&[rigger::engine::state::JobState::Queued])
        .await
        .unwrap()
        .len();
    println!(
        "burst at GitHub's JIT limit (180/min): {made} instances in 30 s, {waiting} jobs waiting their turn, none dropped"
    );
    let _ = w.app_stop.send(true);
}

async fn memory() {
    let before = rss_mb();
    let w = world(2_000).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_mb();
    let store = &w.engine.store;
    for n in 0..10_000i64 {
        store
            .insert_job(&rigger::store::NewJob {
                job_id: 10_000_000 + n,
                run_id: n,
                run_attempt: 1,
                repo: "acme/ml".into(),
                installation_id: 1,
                labels: vec!["cirun-other".into()],
                head_sha: "a".into(),
                is_fork: false,
                actor: "octocat".into(),
                queued_at: SystemClock.now_ms(),
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "memory: this process (rigger + both simulators) {:.1} MB before, {idle:.1} MB idle, {:.1} MB with 10,000 more jobs recorded",
        before,
        rss_mb()
    );
    let _ = w.app_stop.send(true);
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        memory().await;
        decision_latency().await;
        burst().await;
    });
}
