//! `rigger demo`: the whole lifecycle in the simulated world, on this
//! machine, with no account: a simulated GitHub and Vast.ai, rigger itself
//! (SQLite in a temporary folder) over real HTTP, and machines that run the
//! real bootstrap script in sandboxes: it downloads and verifies the
//! (simulated) runner release, the runner redeems its JIT config and takes
//! its job, and the script destroys its own machine with the per-instance
//! Vast.ai key.
//!
//! Simulated time runs `speed` times faster than real time, so minutes of
//! GPU work pass in seconds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;

use crate::app::App;
use crate::engine::ports::Clock;
use crate::engine::state::{InstanceState, JobState};
use crate::settings::Secret;
use crate::sim::github::{NewJob, SimGithub, SimGithubConfig};
use crate::sim::machine::Machines;
use crate::sim::vast::{Charge, SimConfig, SimVast};
use crate::sim::{SimWorld, rigger_settings};

/// Simulated time: real time since the start, multiplied.
pub struct FastClock {
    start: Instant,
    start_ms: i64,
    speed: f64,
}

impl FastClock {
    pub fn new(start_ms: i64, speed: f64) -> FastClock {
        FastClock {
            start: Instant::now(),
            start_ms,
            speed,
        }
    }
}

impl Clock for FastClock {
    fn now_ms(&self) -> i64 {
        self.start_ms + (self.start.elapsed().as_secs_f64() * 1000.0 * self.speed) as i64
    }

    /// The demo's time runs `speed` times faster than real time.
    fn sleep_ms(&self, ms: i64) -> futures_util::future::BoxFuture<'static, ()> {
        let real = (ms.max(0) as f64 / self.speed.max(1e-3)).ceil() as i64;
        Box::pin(tokio::time::sleep(crate::millis::to_duration(real)))
    }
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// GPU jobs that run (besides one cancelled and one that finds no offer).
    pub jobs: usize,
    pub seed: u64,
    pub speed: f64,
    /// Print progress lines as things happen.
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoJob {
    pub id: i64,
    pub label: String,
    pub state: String,
    pub conclusion: Option<String>,
    pub gpu: Option<String>,
    pub offer_id: Option<i64>,
    pub dph: Option<f64>,
    /// Simulated seconds the machine lived.
    pub seconds: Option<f64>,
    pub cost_usd: f64,
    /// Why it got no machine, when it got none.
    pub reason: Option<String>,
    /// Machines rented for it (0 for a job cancelled while queued).
    pub machines: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DemoReport {
    pub jobs: Vec<DemoJob>,
    pub instances_created: usize,
    pub instances_destroyed: usize,
    pub leaked_instances: usize,
    pub total_cost_usd: f64,
    /// Left running with `--keep-running`.
    #[serde(skip)]
    pub urls: BTreeMap<&'static str, String>,
}

/// Simulated seconds a machine lived and what it cost, as the simulated
/// Vast.ai billed it (found by the machine's label).
fn machine_cost(i: &crate::store::InstanceRow, ledger: &[Charge]) -> Option<(f64, f64)> {
    ledger
        .iter()
        .find(|c| c.label.as_deref() == Some(i.label.as_str()))
        .map(|c| (c.seconds_alive, c.dollars))
}

/// An org-level definition no market can satisfy, so the demo shows a
/// no-capacity diagnosis.
const ORG_CONFIG: &str = "runners:\n  - name: eight-h200-in-iceland\n    cloud: vast_ai\n    instance_type: 8xH200\n    region: IS\n    labels:\n      - cirun-h200x8\n";

/// The jobs the demo queues: label, simulated minutes, conclusion.
const KINDS: &[(&str, f64, &str)] = &[
    ("cirun-gpu", 8.0, "success"),
    ("cirun-gpu-24gb", 5.0, "success"),
    ("cirun-gpu-fallback", 12.0, "failure"),
];

async fn listen() -> anyhow::Result<(tokio::net::TcpListener, String)> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    Ok((l, url))
}

fn elapsed(start: Instant) -> String {
    format!("[{:>5.1}s]", start.elapsed().as_secs_f64())
}

pub async fn run(opts: DemoOptions, keep_running: bool) -> anyhow::Result<DemoReport> {
    let started = Instant::now();
    let clock: Arc<dyn Clock> = Arc::new(FastClock::new(1_763_800_000_000, opts.speed));
    let secret = "demo-webhook-secret";

    let github = SimGithub::new(
        SimGithubConfig {
            seed: opts.seed,
            webhook_secret: Secret::new(secret),
            ..SimGithubConfig::default()
        },
        clock.clone(),
    )?;
    let vast = SimVast::new(
        SimConfig {
            seed: opts.seed,
            boot_delay_ms: 40_000,
            ..SimConfig::default()
        },
        clock.clone(),
    );
    let (gl, github_url) = listen().await?;
    let (vl, vast_url) = listen().await?;
    github.set_public_url(&github_url);
    // A simulated minute of a job takes 1/speed of a real minute.
    github.set_runner_time_scale(1.0 / opts.speed);
    tokio::spawn(github.clone().serve(gl));
    tokio::spawn(vast.clone().serve(vl));

    let dir = std::env::temp_dir().join(format!("rigger-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Booted machines run the real bootstrap script in sandboxes here.
    Machines::new(dir.join("machines"), vast.clone()).install();
    let settings = rigger_settings(
        &SimWorld {
            dir: &dir,
            github: &github,
            vast_url: &vast_url,
            vast_api_key: "sim-vast-key",
            webhook_secret: secret,
            controller_id: "demo",
        },
        &[],
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = App::build(settings, clock.clone())
        .await
        .context("starting rigger")?;
    let rigger_url = app.url();
    let engine = app.engine.clone();
    github.set_webhook_url(Some(format!("{rigger_url}/webhook")));
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let server = tokio::spawn(app.run(async move {
        let _ = stop_rx.changed().await;
    }));

    github.add_repo(
        "acme/ml",
        &[(".cirun.yml", include_str!("../examples/.cirun.yml"))],
    );
    github.add_repo("acme/.cirun", &[(".cirun.global.yml", ORG_CONFIG)]);
    if opts.progress {
        println!(
            "rigger demo: a simulated GitHub ({github_url}), a simulated Vast.ai ({vast_url}) with 2,000 offers, and rigger ({rigger_url})."
        );
        println!(
            "acme/ml holds examples/.cirun.yml; simulated time runs {}× faster.\n",
            opts.speed
        );
    }

    // Queue the jobs.
    let mut labels: BTreeMap<i64, String> = BTreeMap::new();
    let queue = |label: String, minutes: f64, conclusion: &str| {
        github.queue_job(NewJob {
            repo: "acme/ml".into(),
            labels: vec![label],
            head_sha: "8f3c1e2d4b5a69788796a5b4c3d2e1f0a9b8c7d6".into(),
            fork: false,
            actor: "octocat".into(),
            duration_ms: (minutes * 60_000.0) as i64,
            conclusion: conclusion.into(),
        })
    };
    for n in 0..opts.jobs {
        let (label, minutes, conclusion) = KINDS[n % KINDS.len()];
        let id = queue(format!("{label}--{}", 9_000 + n), minutes, conclusion);
        labels.insert(id, label.to_string());
    }
    let cancelled = queue("cirun-gpu--9900".into(), 5.0, "success");
    labels.insert(cancelled, "cirun-gpu (cancelled)".into());
    github.cancel_job(cancelled);
    let impossible = queue("cirun-h200x8--9901".into(), 5.0, "success");
    labels.insert(impossible, "cirun-h200x8".into());

    // Follow along until every job is over and every machine gone.
    let mut seen: BTreeMap<i64, String> = BTreeMap::new();
    let mut impossible_cancelled = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let jobs = engine.store.jobs_in(&JobState::ALL).await?;
        for j in &jobs {
            let inst = engine.store.instances_for_job(j.job_id).await?.pop();
            let inst_state = inst.as_ref().map(|i| i.state.as_str()).unwrap_or("-");
            let key = format!("{}/{inst_state}", j.state.as_str());
            if seen.get(&j.job_id) == Some(&key) {
                continue;
            }
            seen.insert(j.job_id, key);
            if !opts.progress {
                continue;
            }
            let label = labels.get(&j.job_id).cloned().unwrap_or_default();
            let what = match (&inst, j.state) {
                (_, JobState::Queued) if j.reason.is_some() => {
                    format!("waiting: {}", j.reason.clone().unwrap_or_default())
                }
                (Some(i), _) if i.state == InstanceState::Destroyed => {
                    let cost = match machine_cost(i, &vast.ledger()) {
                        Some((seconds, dollars)) => {
                            format!("after {:.1} min, cost ${dollars:.3}", seconds / 60.0)
                        }
                        None => "(not billed)".to_string(),
                    };
                    format!(
                        "{} ({}) → machine destroyed {cost}",
                        j.state.as_str(),
                        j.conclusion.clone().unwrap_or_default(),
                    )
                }
                (Some(i), _) => {
                    let estimate = match crate::cli::ops::rent_estimate(i) {
                        Some((hours, dollars)) => {
                            format!(
                                ", estimated ${dollars:.3} in total ({:.0} min)",
                                hours * 60.0
                            )
                        }
                        None => String::new(),
                    };
                    format!(
                        "{} — machine {}: offer {} {}× {} in {} at ${:.3}/h{estimate}",
                        j.state.as_str(),
                        i.state.as_str(),
                        i.offer_id.unwrap_or_default(),
                        i.num_gpus.unwrap_or(1),
                        i.gpu_name.clone().unwrap_or_default(),
                        i.location.clone().unwrap_or_default(),
                        i.dph.unwrap_or_default()
                    )
                }
                (None, s) => s.as_str().to_string(),
            };
            println!("{} job {} [{label}] {what}", elapsed(started), j.job_id);
        }
        // GitHub gives up on a job nobody can run; the demo does sooner.
        if !impossible_cancelled
            && jobs
                .iter()
                .any(|j| j.job_id == impossible && j.reason.is_some())
            && jobs
                .iter()
                .filter(|j| j.job_id != impossible)
                .all(|j| j.state.is_terminal())
        {
            github.cancel_job(impossible);
            impossible_cancelled = true;
        }
        // Over in rigger's view: every job ended and every machine it rented
        // recorded destroyed (or failed). What Vast.ai still runs is counted
        // after, as the leak, not assumed away here.
        let all_done = jobs.len() == labels.len() && jobs.iter().all(|j| j.state.is_terminal());
        if all_done && engine.store.live_instances().await?.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "the demo did not finish within 2 minutes: {} of {} jobs over, {} machine(s) alive on the simulated Vast.ai",
                jobs.iter().filter(|j| j.state.is_terminal()).count(),
                labels.len(),
                vast.live_instances().len()
            );
        }
    }
    // One last look, as the reconciler would take.
    engine.reconcile_once().await?;

    let ledger = vast.ledger();
    let mut report_jobs = Vec::new();
    let mut created = 0;
    for (id, label) in &labels {
        let job = engine
            .store
            .job(*id)
            .await?
            .context("a job rigger never saw")?;
        let instances = engine.store.instances_for_job(*id).await?;
        created += instances.len();
        let inst = instances.last();
        let charge = inst.and_then(|i| machine_cost(i, &ledger));
        report_jobs.push(DemoJob {
            id: *id,
            label: label.clone(),
            state: job.state.as_str().to_string(),
            conclusion: job.conclusion.clone(),
            gpu: inst.and_then(|i| {
                i.gpu_name
                    .clone()
                    .map(|g| format!("{}× {g}", i.num_gpus.unwrap_or(1)))
            }),
            offer_id: inst.and_then(|i| i.offer_id),
            dph: inst.and_then(|i| i.dph),
            seconds: charge.map(|(seconds, _)| seconds),
            cost_usd: charge.map_or(0.0, |(_, dollars)| dollars),
            reason: if inst.is_none() {
                job.reason.clone()
            } else {
                None
            },
            machines: instances.len(),
        });
    }
    // Machines the simulated Vast.ai still runs once rigger is done: leaks.
    let leaked = vast.live_instances().len();
    let report = DemoReport {
        total_cost_usd: report_jobs.iter().map(|j| j.cost_usd).sum(),
        jobs: report_jobs,
        instances_created: created,
        instances_destroyed: ledger.len(),
        leaked_instances: leaked,
        urls: [
            ("github", github_url),
            ("vast", vast_url),
            ("rigger", rigger_url),
        ]
        .into_iter()
        .collect(),
    };
    if !keep_running {
        let _ = stop_tx.send(true);
        let _ = server.await;
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        std::mem::forget(stop_tx);
    }
    Ok(report)
}
