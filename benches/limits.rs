//! `cargo bench --bench engine -- limits`: a burst of jobs across several
//! definitions against the simulated Vast.ai with its documented rate
//! limits on, and rigger keeping to them. Time is a manual clock stepped a
//! second at a time with a provisioning pass at each step (as rigger's
//! worker loop runs), so the figures are in simulated time and the same on
//! every run: creates a minute as a share of what the create interval
//! allows, 429s as a share of Vast.ai requests, GitHub JIT registrations
//! per machine, and the time until every job that can be rented is.

use std::sync::Arc;

use rigger::app::App;
use rigger::engine::ports::{Clock, ManualClock};
use rigger::server::webhook::parse_delivery;
use rigger::sim::github::{NewJob, SimGithub, SimGithubConfig};
use rigger::sim::vast::{SimConfig, SimVast};
use rigger::sim::{SimWorld, rigger_settings};

/// Four definitions: one GPU, two with two candidates, one nothing matches.
const CIRUN: &str = "runners:
  - name: one
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-one]
    extra_config: {verified: false, min_reliability: 0, min_inet_down: 0}
  - name: two
    cloud: vast_ai
    instance_type: [1xRTX_3090, 1xRTX_4090]
    labels: [cirun-two]
    extra_config: {verified: false, min_reliability: 0, min_inet_down: 0}
  - name: three
    cloud: vast_ai
    instance_type: [1xA100_PCIE, 1xRTX_3090]
    labels: [cirun-three]
    extra_config: {verified: false, min_reliability: 0, min_inet_down: 0}
  - name: none
    cloud: vast_ai
    instance_type: 1xH100
    labels: [cirun-none]
    extra_config: {max_dph: 0.01}
";

const DEFS: [&str; 4] = ["one", "two", "three", "none"];
/// The documented create interval: at most 60 / 4.5 creates a minute.
const CREATE_INTERVAL_S: f64 = 4.5;

pub async fn limits(jobs: usize) {
    let start = 1_763_800_000_000;
    let clock = ManualClock::new(start);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let github = SimGithub::new(SimGithubConfig::default(), shared.clone()).unwrap();
    // The documented limits (`SimConfig::default()`); machines stay loading.
    let vast = SimVast::new(
        SimConfig {
            boot_delay_ms: 3_600_000,
            ..SimConfig::default()
        },
        shared.clone(),
    );
    let gl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let vl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    github.set_public_url(&format!("http://{}", gl.local_addr().unwrap()));
    let vast_url = format!("http://{}", vl.local_addr().unwrap());
    let (g, v) = (github.clone(), vast.clone());
    let servers = [
        tokio::spawn(async move {
            let _ = g.serve(gl).await;
        }),
        tokio::spawn(async move {
            let _ = v.serve(vl).await;
        }),
    ];
    github.add_repo("acme/ml", &[(".cirun.yml", CIRUN)]);
    let dir = std::env::temp_dir().join(format!("rigger-bench-limits-{}", std::process::id()));
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
            ("RIGGER_LIMITS_MAX_INSTANCES", "1000"),
            ("RIGGER_LIMITS_MAX_INSTANCES_PER_REPO", "1000"),
            ("RIGGER_LIMITS_DAILY_BUDGET", "100000"),
        ],
    )
    .unwrap();
    let app = App::build(settings, shared).await.unwrap();
    github.set_webhook_url(Some(format!("{}/webhook", app.url())));
    let (engine, _inbox) = app.serve_http();
    for n in 0..jobs {
        github.queue_job(NewJob {
            repo: "acme/ml".into(),
            labels: vec![format!("cirun-{}--{n}", DEFS[n % DEFS.len()])],
            head_sha: "8f3c1e2d".into(),
            fork: false,
            actor: "octocat".into(),
            duration_ms: 600_000,
            conclusion: "success".into(),
        });
    }
    github.flush().await;
    while engine.process_deliveries(&parse_delivery).await.unwrap() > 0 {}
    // Every job but those of the definition nothing matches.
    let rentable = (0..jobs).filter(|n| n % DEFS.len() != 3).count();
    let mut all_rented = false;
    for _ in 0..1_800 {
        engine.provision_due().await.unwrap();
        if vast.created_at_ms().len() >= rentable {
            all_rented = true;
            break;
        }
        clock.advance_ms(1_000);
    }
    let created = vast.created_at_ms();
    let (first, last) = (
        created.iter().min().copied().unwrap_or(start),
        created.iter().max().copied().unwrap_or(start),
    );
    // Creates after the first, over the time they took: the pace.
    let span_min = (last - first) as f64 / 60_000.0;
    let per_minute = (created.len().saturating_sub(1)) as f64 / span_min.max(1e-9);
    let allowed = 60.0 / CREATE_INTERVAL_S;
    let requests = vast.requests_total();
    let refused = vast.refused_total();
    let jit = github.requests("POST /repos/acme/ml/actions/runners/generate-jitconfig");
    let searches = vast.requests("POST /api/v0/bundles");
    println!(
        "limits: {jobs} jobs over {} definitions ({rentable} rentable), Vast.ai's documented limits on",
        DEFS.len()
    );
    println!(
        "  creates: {} machines, {per_minute:.2}/min = {:.0} % of the {allowed:.2}/min the 4.5 s interval allows (goal >= 80 %)",
        created.len(),
        per_minute * 100.0 / allowed
    );
    println!(
        "  429s: {refused} of {requests} Vast.ai requests = {:.2} % (goal <= 2 %); {searches} searches",
        refused as f64 * 100.0 / requests.max(1) as f64
    );
    println!(
        "  JIT registrations: {jit} for {} machines = {:.2} per machine (goal <= 1.1)",
        created.len(),
        jit as f64 / created.len().max(1) as f64
    );
    if all_rented {
        println!(
            "  all rented after {:.1} s of simulated time (the interval allows {:.1} s)",
            (last - start) as f64 / 1000.0,
            (rentable - 1) as f64 * CREATE_INTERVAL_S
        );
    } else {
        println!("  NOT all rented within 30 simulated minutes");
    }
    for s in servers {
        s.abort();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
