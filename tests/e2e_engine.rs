//! rigger end to end over real HTTP: the real server and engine against the
//! simulated GitHub and Vast.ai, stepped explicitly (deliveries, provisioning,
//! reconciling) on an injected clock. Each story ends by checking that
//! nothing leaked: no simulated instance alive without a live row, no runner
//! registration left without an instance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rigger::app::{App, RiggerEngine};
use rigger::engine::ports::ManualClock;
use rigger::engine::state::JobState;
use rigger::server::webhook::parse_delivery;
use rigger::settings::Secret;
use rigger::sim::github::{NewJob, SimGithub, SimGithubConfig};
use rigger::sim::machine::Machines;
use rigger::sim::vast::{Booted, SimConfig, SimVast};
use rigger::sim::{SimWorld, rigger_settings};

const CIRUN: &str = include_str!("../examples/.cirun.yml");

struct Story {
    clock: ManualClock,
    github: SimGithub,
    vast: SimVast,
    engine: Arc<RiggerEngine>,
    booted: Arc<Mutex<Vec<Booted>>>,
    /// Real machines whose script ended: (instance, exit status).
    exited: Arc<Mutex<Vec<(i64, i32)>>>,
}

async fn serve_sim(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

impl Story {
    async fn begin(name: &str) -> Story {
        Story::begin_with(name, &[]).await
    }

    async fn begin_with(name: &str, extra: &[(&str, &str)]) -> Story {
        Story::build(name, extra, false).await
    }

    /// Machines that run the real bootstrap script in sandboxes (see
    /// `rigger::sim::machine`), downloading the simulated runner release.
    async fn with_real_machines(name: &str) -> Story {
        Story::build(name, &[], true).await
    }

    async fn build(name: &str, extra: &[(&str, &str)], real_machines: bool) -> Story {
        let clock = ManualClock::new(1_763_800_000_000);
        let github = SimGithub::new(
            SimGithubConfig {
                webhook_secret: Secret::new("hook-secret"),
                ..SimGithubConfig::default()
            },
            Arc::new(clock.clone()),
        )
        .unwrap();
        let vast = SimVast::new(
            SimConfig {
                boot_delay_ms: 30_000,
                ..SimConfig::default()
            },
            Arc::new(clock.clone()),
        );
        let booted: Arc<Mutex<Vec<Booted>>> = Arc::default();
        let exited: Arc<Mutex<Vec<(i64, i32)>>> = Arc::default();
        let github_url = serve_sim(github.router()).await;
        github.set_public_url(&github_url);
        let vast_url = serve_sim(vast.router()).await;

        let dir = std::env::temp_dir().join(format!("rigger-e2e-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if real_machines {
            let done = exited.clone();
            Machines::new(dir.join("machines"), vast.clone())
                .on_exit(Arc::new(move |id, code| {
                    done.lock().unwrap().push((id, code))
                }))
                .install();
        } else {
            let seen = booted.clone();
            vast.on_boot(Arc::new(move |b| seen.lock().unwrap().push(b)));
        }
        let settings = rigger_settings(
            &SimWorld {
                dir: &dir,
                github: &github,
                vast_url: &vast_url,
                vast_api_key: "sim-vast-key",
                webhook_secret: "hook-secret",
                controller_id: "e2e",
            },
            extra,
        )
        .unwrap();
        let app = App::build(settings, Arc::new(clock.clone())).await.unwrap();
        github.set_webhook_url(Some(format!("{}/webhook", app.url())));
        let (engine, _inbox) = app.serve_http();
        github.add_repo("acme/ml", &[(".cirun.yml", CIRUN)]);
        Story {
            clock,
            github,
            vast,
            engine,
            booted,
            exited,
        }
    }

    fn a_job_is_queued(&self, label: &str) -> i64 {
        self.github.queue_job(NewJob {
            repo: "acme/ml".into(),
            labels: vec![label.into()],
            head_sha: "8f3c1e2d".into(),
            fork: false,
            actor: "octocat".into(),
            duration_ms: 600_000,
            conclusion: "success".into(),
        })
    }

    /// GitHub delivers what happened; rigger takes it in.
    async fn webhooks_arrive(&self) {
        self.github.flush().await;
        while self
            .engine
            .process_deliveries(&parse_delivery)
            .await
            .unwrap()
            > 0
        {}
    }

    async fn rigger_provisions(&self) {
        self.engine.provision_due().await.unwrap();
    }

    /// Time passes: machines boot; each booted machine's runner connects with
    /// its JIT config and takes its job, as the bootstrap script would start it.
    fn machines_boot(&self) -> Vec<(i64, i64)> {
        self.clock.advance_ms(30_000);
        self.vast.live_instances(); // steps the simulated Vast.ai
        let mut taken = Vec::new();
        for b in self.booted.lock().unwrap().drain(..) {
            let env: BTreeMap<String, String> = b.env.into_iter().collect();
            let jit: String = (0..)
                .map_while(|i| env.get(&format!("RIGGER_JIT_{i}")).cloned())
                .collect();
            let runner = self
                .github
                .connect_runner(&jit)
                .expect("the JIT config is accepted once");
            if let Some(job) = self.github.take_job(runner) {
                taken.push((b.id, job));
            }
        }
        taken
    }

    async fn job_state(&self, job: i64) -> JobState {
        self.engine
            .store
            .job(job)
            .await
            .unwrap()
            .expect("rigger knows the job")
            .state
    }

    /// Nothing leaked: every live simulated instance has a live row, and,
    /// after one reconciler pass (which removes registrations whose runner
    /// never came online), every runner registration belongs to a live
    /// instance.
    async fn nothing_leaked(&self) {
        self.engine.reconcile_once().await.unwrap();
        let live = self.vast.live_instances();
        let rows = self.engine.store.live_instances().await.unwrap();
        for (id, label, phase) in &live {
            assert!(
                rows.iter()
                    .any(|r| r.provider_id.as_deref() == Some(&id.to_string())),
                "simulated instance {id} ({label:?}, {phase:?}) has no live row"
            );
        }
        let runners = self.github.runners();
        assert!(
            runners.len() <= live.len(),
            "runner registrations without machines: {runners:?}"
        );
    }
}

#[tokio::test]
async fn a_job_gets_a_gpu_and_the_gpu_dies_with_the_job() {
    let s = Story::begin("happy").await;
    let job = s.a_job_is_queued("cirun-gpu--101");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Queued);

    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 1, "one machine rented");
    assert!(
        live[0].1.as_deref().unwrap().starts_with("rigger:e2e:"),
        "labelled with the controller id"
    );
    assert_eq!(s.github.runners().len(), 1, "one JIT runner registered");

    let taken = s.machines_boot();
    assert_eq!(taken.len(), 1);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);

    s.clock.advance_ms(600_000);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(s.vast.live_instances().is_empty(), "destroyed on completed");
    let ledger = s.vast.ledger();
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].dollars > 0.0);
    let checks = s.github.check_runs();
    assert!(!checks.is_empty(), "the job's check run tells the story");
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_job_cancelled_while_its_machine_boots_leaves_nothing_behind() {
    let s = Story::begin("cancel").await;
    let job = s.a_job_is_queued("cirun-gpu--202");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.vast.live_instances().len(), 1);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    assert!(
        s.vast.live_instances().is_empty(),
        "the booting machine is destroyed"
    );
    s.engine.reconcile_once().await.unwrap();
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_lost_completed_webhook_is_repaired_by_the_reconciler() {
    let s = Story::begin("lost").await;
    let job = s.a_job_is_queued("cirun-gpu--303");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);

    s.github.finish_job(job, "success");
    s.github
        .set_webhook_faults(rigger::sim::github::WebhookFaults {
            loss_rate: 1.0,
            ..Default::default()
        });
    s.webhooks_arrive().await; // lost
    assert_eq!(s.job_state(job).await, JobState::Running);

    // Long enough for the reconciler to ask GitHub about a silent job.
    s.clock.advance_ms(30 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(
        s.vast.live_instances().is_empty(),
        "destroyed by the reconciler"
    );
    s.nothing_leaked().await;
}

#[tokio::test]
async fn duplicated_and_reordered_deliveries_change_nothing() {
    let s = Story::begin("dupes").await;
    s.github
        .set_webhook_faults(rigger::sim::github::WebhookFaults {
            duplicate_rate: 1.0,
            reorder: true,
            ..Default::default()
        });
    let a = s.a_job_is_queued("cirun-gpu--401");
    let b = s.a_job_is_queued("cirun-gpu-24gb--402");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.vast.live_instances().len(),
        2,
        "one machine per job, not per delivery"
    );
    assert_eq!(s.github.runners().len(), 2);
    s.machines_boot();
    s.webhooks_arrive().await;
    s.github.finish_job(a, "success");
    // `completed` may now arrive before `in_progress` of the other job.
    s.github.finish_job(b, "failure");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(a).await, JobState::Completed);
    assert_eq!(s.job_state(b).await, JobState::Completed);
    assert!(s.vast.live_instances().is_empty());
    assert_eq!(s.vast.ledger().len(), 2);
    s.nothing_leaked().await;
}

#[tokio::test]
async fn vast_rate_limits_and_errors_are_ridden_out() {
    let s = Story::begin("vast-faults").await;
    let job = s.a_job_is_queued("cirun-gpu--501");
    s.webhooks_arrive().await;
    // Every Vast.ai call fails for now: the job waits, nothing is rented.
    s.vast.set_faults(rigger::sim::vast::Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    s.rigger_provisions().await;
    assert!(s.vast.live_instances().is_empty());
    assert!(
        !s.job_state(job).await.is_terminal(),
        "a cloud error is not the job's end"
    );
    // A burst of 429s is waited out within the client's bounds.
    s.vast.set_faults(rigger::sim::vast::Faults {
        rate_limit_burst: 2,
        ..Default::default()
    });
    s.clock.advance_ms(10 * 60_000); // past the retry backoff
    s.rigger_provisions().await;
    assert_eq!(s.vast.live_instances().len(), 1);
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_job_over_the_daily_budget_is_refused_with_the_reason() {
    let s = Story::begin_with("budget", &[("RIGGER_DAILY_BUDGET", "0.001")]).await;
    let job = s.a_job_is_queued("cirun-gpu--601");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert!(s.vast.live_instances().is_empty(), "nothing rented");
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    let why = row.reason.unwrap_or_default();
    assert!(why.contains("budget"), "{why}");
    let checks = s.github.check_runs();
    assert!(
        checks
            .iter()
            .any(|c| c.summary.contains("budget") || c.title.contains("budget")),
        "{checks:?}"
    );
    s.nothing_leaked().await;
}

impl Story {
    /// Wait (real time: the scripts run as real processes) until `n`
    /// machines' scripts have ended, delivering webhooks as they come.
    async fn machines_finish(&self, n: usize) -> Vec<(i64, i32)> {
        for _ in 0..600 {
            self.webhooks_arrive().await;
            if self.exited.lock().unwrap().len() >= n {
                return self.exited.lock().unwrap().clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the machines' scripts did not end within a minute");
    }

    fn machine_log(&self, id: i64) -> String {
        self.vast.log(id).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_bootstrap_script_runs_the_job_and_the_machine_destroys_itself() {
    let s = Story::with_real_machines("real").await;
    let job = s.a_job_is_queued("cirun-gpu--701");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let instance = s.vast.live_instances()[0].0;

    // The machine boots: the onstart loader runs the bootstrap script, which
    // checks the GPU, downloads and verifies the runner from the simulated
    // GitHub, and starts it with the JIT config; the runner takes the job.
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let ended = s.machines_finish(1).await;
    let log = s.machine_log(instance);
    assert_eq!(ended, vec![(instance, 0)], "{log}");
    for line in [
        "GPUs ok: NVIDIA RTX 4090",
        "downloading http://",
        "runner: connected as runner",
        "runner: job",
        "the runner exited with 0",
        "destroying this machine",
    ] {
        assert!(log.contains(line), "missing `{line}` in:\n{log}");
    }
    // The script destroyed its own machine with the per-instance key.
    assert!(s.vast.live_instances().is_empty(), "{log}");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed, "{log}");
    // rigger's own destroy on `completed` found it gone: harmless.
    s.nothing_leaked().await;
}

#[tokio::test]
async fn offers_taken_before_rent_move_on_and_an_unanswered_create_is_adopted_by_label() {
    let s = Story::begin("races").await;
    // Every offer rigger picks is rented by someone else first.
    s.vast.set_faults(rigger::sim::vast::Faults {
        steal_rate: 1.0,
        ..Default::default()
    });
    let job = s.a_job_is_queued("cirun-gpu--801");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert!(s.vast.live_instances().is_empty());
    assert!(
        !s.job_state(job).await.is_terminal(),
        "it waits for capacity"
    );

    // Now the create happens but its answer is lost (a 502): rigger must
    // not rent twice; it finds the machine by its label and adopts it.
    s.vast.set_faults(rigger::sim::vast::Faults {
        ambiguous_create_rate: 1.0,
        ..Default::default()
    });
    s.clock.advance_ms(10 * 60_000);
    s.rigger_provisions().await;
    s.vast.set_faults(rigger::sim::vast::Faults::default());
    s.engine.reconcile_once().await.unwrap();
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 1, "one machine, not two: {live:?}");
    let rows = s.engine.store.live_instances().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].provider_id.as_deref(),
        Some(live[0].0.to_string().as_str()),
        "adopted"
    );
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_fork_cannot_choose_what_rigger_rents() {
    let s = Story::begin_with("fork", &[("RIGGER_CONFIG_SOURCE", "head_commit")]).await;
    // The pull request's commit asks for two GPUs under the same label.
    let theirs = "runners:\n  - name: gpu-container\n    cloud: vast_ai\n    instance_type: 2xRTX_3090\n    labels: [cirun-gpu]\n";
    s.github
        .add_files_at("acme/ml", "feedbeef", &[(".cirun.yml", theirs)]);
    let queue = |fork: bool, label: &str| {
        s.github.queue_job(NewJob {
            repo: "acme/ml".into(),
            labels: vec![label.into()],
            head_sha: "feedbeef".into(),
            fork,
            actor: "outsider".into(),
            duration_ms: 60_000,
            conclusion: "success".into(),
        })
    };
    let from_fork = queue(true, "cirun-gpu--901");
    let from_branch = queue(false, "cirun-gpu--902");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let gpus = |job: i64| {
        let e = s.engine.clone();
        async move {
            let i = e
                .store
                .instances_for_job(job)
                .await
                .unwrap()
                .pop()
                .expect("a machine");
            (i.num_gpus, i.gpu_name)
        }
    };
    assert_eq!(
        gpus(from_fork).await,
        (Some(1), Some("RTX 4090".into())),
        "the fork gets the default branch's definition"
    );
    assert_eq!(
        gpus(from_branch).await,
        (Some(2), Some("RTX 3090".into())),
        "a branch of the repository may bring its own"
    );
    s.github.cancel_job(from_fork);
    s.github.cancel_job(from_branch);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_runs_the_real_script_too_and_the_machine_dies_while_rigger_is_down() {
    let s = Story::with_real_machines("vm").await;
    s.vast.add_ssh_key("ssh-ed25519 AAAAC3Nz demo@rigger");
    let job = s.a_job_is_queued("cirun-gpu-vm--702");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let instance = s.vast.live_instances()[0].0;

    // rigger goes down: it hears nothing while the job runs and ends.
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    for _ in 0..600 {
        if !s.exited.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let log = s.machine_log(instance);
    assert_eq!(
        s.exited.lock().unwrap().clone(),
        vec![(instance, 0)],
        "{log}"
    );
    assert!(log.contains("runner: job"), "{log}");
    assert!(
        s.vast.live_instances().is_empty(),
        "the machine destroyed itself: {log}"
    );

    // rigger comes back: the deliveries GitHub kept arrive, and nothing is left.
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    s.nothing_leaked().await;
}
