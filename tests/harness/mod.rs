//! The story harness for rigger end to end over real HTTP: the real server and engine against the
//! simulated GitHub and Vast.ai, stepped explicitly (deliveries, provisioning,
//! reconciling) on an injected clock. Each story ends by checking that
//! nothing leaked: no simulated instance alive without a live row, no runner
//! registration left without an instance.

// Each test binary uses some of these verbs, not all.
#![allow(dead_code)]

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

pub const CIRUN: &str = include_str!("../../examples/.cirun.yml");

pub struct Story {
    pub clock: ManualClock,
    pub github: SimGithub,
    pub vast: SimVast,
    pub engine: Arc<RiggerEngine>,
    pub booted: Arc<Mutex<Vec<Booted>>>,
    /// Real machines whose script ended: (instance, exit status).
    pub exited: Arc<Mutex<Vec<(i64, i32)>>>,
}

async fn serve_sim(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

impl Story {
    pub async fn begin(name: &str) -> Story {
        Story::begin_with(name, &[]).await
    }

    pub async fn begin_with(name: &str, extra: &[(&str, &str)]) -> Story {
        Story::build(name, extra, false).await
    }

    /// Machines that run the real bootstrap script in sandboxes (see
    /// `rigger::sim::machine`), downloading the simulated runner release.
    pub async fn with_real_machines(name: &str) -> Story {
        Story::build(name, &[], true).await
    }

    pub async fn build(name: &str, extra: &[(&str, &str)], real_machines: bool) -> Story {
        Story::build_with(name, extra, real_machines.then(Vec::new), false).await
    }

    /// Real machines with rigger reachable at a public URL (so machines
    /// report their end to `/callback/{instance}`), each machine with these
    /// shims in place of the defaults.
    pub async fn with_real_machines_calling_back(name: &str, shims: &[(&str, &str)]) -> Story {
        let shims = shims
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        Story::build_with(name, &[], Some(shims), true).await
    }

    /// Simulated boots (nothing runs) with rigger at a public URL: the
    /// booted environment carries each machine's callback URL and token.
    pub async fn calling_back(name: &str) -> Story {
        Story::build_with(name, &[], None, true).await
    }

    /// `machines`: `Some(shims)` runs the real script; `public_url`: rigger
    /// listens on a port chosen by the OS and says so in `RIGGER_PUBLIC_URL`.
    async fn build_with(
        name: &str,
        extra: &[(&str, &str)],
        machines: Option<Vec<(String, String)>>,
        public_url: bool,
    ) -> Story {
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
        if let Some(shims) = machines {
            let done = exited.clone();
            let mut m = Machines::new(dir.join("machines"), vast.clone());
            for (name, script) in &shims {
                m = m.shim(name, script);
            }
            m.on_exit(Arc::new(move |id, code| {
                done.lock().unwrap().push((id, code))
            }))
            .install();
        } else {
            let seen = booted.clone();
            vast.on_boot(Arc::new(move |b| seen.lock().unwrap().push(b)));
        }
        let mut extra: Vec<(&str, &str)> = extra.to_vec();
        let (listen, url);
        if public_url {
            // The port is the OS's choice; rigger binds it right after.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            listen = format!("127.0.0.1:{port}");
            url = format!("http://{listen}");
            extra.push(("RIGGER_LISTEN", &listen));
            extra.push(("RIGGER_PUBLIC_URL", &url));
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
            &extra,
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

    pub fn a_job_is_queued(&self, label: &str) -> i64 {
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
    pub async fn webhooks_arrive(&self) {
        self.github.flush().await;
        while self
            .engine
            .process_deliveries(&parse_delivery)
            .await
            .unwrap()
            > 0
        {}
    }

    pub async fn rigger_provisions(&self) {
        self.engine.provision_due().await.unwrap();
    }

    /// Time passes: machines boot; each booted machine's runner connects with
    /// its JIT config and takes its job, as the bootstrap script would start it.
    pub fn machines_boot(&self) -> Vec<(i64, i64)> {
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

    pub async fn job_state(&self, job: i64) -> JobState {
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
    pub async fn nothing_leaked(&self) {
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

impl Story {
    /// Wait (real time: the scripts run as real processes) until `n`
    /// machines' scripts have ended, delivering webhooks as they come.
    pub async fn machines_finish(&self, n: usize) -> Vec<(i64, i32)> {
        for _ in 0..600 {
            self.webhooks_arrive().await;
            if self.exited.lock().unwrap().len() >= n {
                return self.exited.lock().unwrap().clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the machines' scripts did not end within a minute");
    }

    pub fn machine_log(&self, id: i64) -> String {
        self.vast.log(id).unwrap_or_default()
    }
}

impl Story {
    /// The job's event log: (kind, message).
    pub async fn events(&self, job: i64) -> Vec<(String, String)> {
        self.engine
            .store
            .job_events(job)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, kind, message)| (kind, message))
            .collect()
    }

    /// Wait (real time, bounded) until the machine's Vast.ai log shows `text`.
    pub async fn machine_log_shows(&self, id: i64, text: &str) -> String {
        for _ in 0..200 {
            let log = self.machine_log(id);
            if log.contains(text) {
                return log;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "machine {id}'s log never showed `{text}`:\n{}",
            self.machine_log(id)
        );
    }

    /// Wait (real time, bounded) until the job is in `state`, delivering webhooks.
    pub async fn job_reaches(&self, job: i64, state: JobState) {
        for _ in 0..200 {
            self.webhooks_arrive().await;
            if self.job_state(job).await == state {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "job {job} is {:?}, never {state:?}: {:?}",
            self.job_state(job).await,
            self.events(job).await
        );
    }

    /// Simulated instances ever created, destroyed or not.
    pub fn instances_created(&self) -> usize {
        self.vast.created_at_ms().len()
    }
}
