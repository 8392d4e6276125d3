//! The story harness for rigger end to end over real HTTP: the real server and engine against the
//! simulated GitHub and Vast.ai, stepped explicitly (deliveries, provisioning,
//! reconciling) on an injected clock. Each story ends by checking that
//! nothing leaked: no simulated instance alive without a live row, no runner
//! registration left without an instance, no check-run update of a job that
//! is over left unsent (unless the story says it expects one).
//!
//! Both simulated services keep their documented rate limits, and so does
//! rigger (Vast.ai's: search 10 a minute, one create per 4.5 s, …). A
//! provisioning step ([`Story::rigger_provisions`]) lets the manual clock
//! run through the slots rigger waits for, as its worker loop would in real
//! time; and every story, when it ends, checks without being asked that
//! Vast.ai refused none of rigger's requests (429), unless it said it
//! expects refusals ([`Story::expects_vast_refusals`]).

// Each test binary uses some of these verbs, not all.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rigger::app::{App, RiggerEngine};
use rigger::engine::ports::{Clock, ManualClock};
use rigger::engine::state::{InstanceState, JobState};
use rigger::server::webhook::parse_delivery;
use rigger::settings::Secret;
use rigger::sim::github::{JobStatus, NewJob, SimGithub, SimGithubConfig};
use rigger::sim::machine::Machines;
use rigger::sim::vast::{Booted, CreateHold, SimConfig, SimVast};
use rigger::sim::{SimWorld, rigger_settings};

const DEFAULT_OFFERS: usize = 2_000;

pub const CIRUN: &str = include_str!("../../examples/.cirun.yml");

pub struct Story {
    pub clock: ManualClock,
    pub github: SimGithub,
    pub vast: SimVast,
    pub vast_url: String,
    pub engine: Arc<RiggerEngine>,
    /// rigger's own URL (changes when it restarts).
    pub app_url: String,
    pub booted: Arc<Mutex<Vec<Booted>>>,
    /// Real machines whose script ended: (instance, exit status).
    pub exited: Arc<Mutex<Vec<(i64, i32)>>>,
    /// Deliveries caught instead of delivered (see [`Story::hold_webhooks`]).
    pub held: Arc<Mutex<Vec<Held>>>,
    held_url: String,
    dir: std::path::PathBuf,
    extra: Vec<(String, String)>,
    /// Jobs whose check-run update the story expects to be left unsent
    /// (see [`Story::expects_an_unsent_check_run`]).
    unsent_expected: Mutex<BTreeSet<i64>>,
    /// The story makes Vast.ai refuse rigger's requests (429) on purpose.
    refusals_expected: std::sync::atomic::AtomicBool,
}

/// The longest rigger's own wait for a Vast.ai slot lasts (a create after
/// a refused one: Vast.ai's 12 s penalty): a provisioning step lets the
/// clock run on to a job that comes back within it.
const SLOT_WAIT_MS: i64 = 12_000;
/// Vast.ai's documented interval between creates.
const CREATE_INTERVAL_MS: i64 = 4_500;
/// A bound on the passes of one provisioning step.
const SETTLE_PASSES: usize = 400;

/// Whether a queued job's reason is a wait for Vast.ai's rate limit (not
/// GitHub's: those stories step time themselves).
fn waits_for_a_slot(reason: &str) -> bool {
    reason.starts_with("waiting for Vast.ai's create rate limit")
        || reason.starts_with("cannot rent: rate limited")
        || reason.starts_with("cannot search Vast.ai: rate limited")
}

impl Drop for Story {
    /// Vast.ai refused nothing of rigger's: rigger waits for its slots
    /// instead of sending requests to be refused. Checked at every story's
    /// end, asked for or not.
    fn drop(&mut self) {
        if std::thread::panicking()
            || self
                .refusals_expected
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let refused = self.vast.refused_total();
        assert_eq!(
            refused, 0,
            "Vast.ai answered {refused} of rigger's requests 429 (too frequent) in a story that \
             injects none: rigger must keep to the documented limits"
        );
    }
}

/// A signed delivery as GitHub sent it: headers and the exact body.
#[derive(Clone, Debug)]
pub struct Held {
    pub event: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Which database the story's rigger runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// Set by [`both_databases!`]: the stories run once per database.
    pub static DB: Db;
}

/// The PostgreSQL server the tests may use (`.ci/run` sets it).
pub fn postgres_url() -> Option<String> {
    std::env::var("RIGGER_TEST_POSTGRES_URL").ok()
}

/// A fresh schema for one story, and a database URL whose connections use it.
async fn postgres_schema(url: &str, name: &str) -> String {
    use sqlx::Connection;
    let schema = format!("rigger_e2e_{}", name.replace('-', "_"));
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    for sql in [
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Run each story on SQLite and, when `RIGGER_TEST_POSTGRES_URL` is set, on
/// PostgreSQL: `both_databases!(story_a, story_b);` next to `async fn story_a()`.
#[macro_export]
macro_rules! both_databases {
    ($($story:ident),* $(,)?) => {
        $(
            mod $story {
                #[tokio::test]
                async fn sqlite() {
                    $crate::harness::DB.scope($crate::harness::Db::Sqlite, super::$story()).await
                }
                #[tokio::test]
                async fn postgres() {
                    if $crate::harness::postgres_url().is_none() {
                        eprintln!("PostgreSQL skipped: RIGGER_TEST_POSTGRES_URL is not set (.ci/run sets it)");
                        return;
                    }
                    $crate::harness::DB.scope($crate::harness::Db::Postgres, super::$story()).await
                }
            }
        )*
    };
}

/// Build rigger on the simulated world and serve its HTTP API; GitHub's
/// webhooks go to it.
async fn start_rigger(
    github: &SimGithub,
    vast_url: &str,
    dir: &std::path::Path,
    extra: &[(String, String)],
    clock: &ManualClock,
) -> (Arc<RiggerEngine>, String) {
    let extra: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let settings = rigger_settings(
        &SimWorld {
            dir,
            github,
            vast_url,
            vast_api_key: "sim-vast-key",
            webhook_secret: "hook-secret",
            controller_id: "e2e",
        },
        &extra,
    )
    .unwrap();
    let app = App::build(settings, Arc::new(clock.clone())).await.unwrap();
    let url = app.url();
    github.set_webhook_url(Some(format!("{url}/webhook")));
    let (engine, _inbox) = app.serve_http();
    (engine, url)
}

/// The JIT config a booted machine was given, from its environment chunks
/// (`RIGGER_JIT_0`, `RIGGER_JIT_1`, …), as its bootstrap script joins them.
pub fn jit_config_of(b: &Booted) -> String {
    let env: BTreeMap<&str, &str> = b
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    (0..)
        .map_while(|i| env.get(format!("RIGGER_JIT_{i}").as_str()).copied())
        .collect()
}

/// A webhook receiver that keeps what it is sent.
fn catcher(held: Arc<Mutex<Vec<Held>>>) -> axum::Router {
    axum::Router::new().fallback(
        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let held = held.clone();
            async move {
                let keep = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let headers: Vec<(String, String)> = [
                    "content-type",
                    "user-agent",
                    "x-github-event",
                    "x-github-delivery",
                    "x-github-hook-installation-target-type",
                    "x-hub-signature-256",
                ]
                .iter()
                .filter_map(|k| keep(k).map(|v| (k.to_string(), v)))
                .collect();
                held.lock().unwrap().push(Held {
                    event: keep("x-github-event").unwrap_or_default(),
                    headers,
                    body: body.to_vec(),
                });
                axum::http::StatusCode::ACCEPTED
            }
        },
    )
}

/// Serve `router` on a loopback port the OS chooses; its URL.
pub async fn serve_sim(router: axum::Router) -> String {
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
        Story::build_with(
            name,
            extra,
            real_machines.then(Vec::new),
            false,
            DEFAULT_OFFERS,
        )
        .await
    }

    /// A market of `offers` offers (the default is 2,000).
    pub async fn with_market(name: &str, offers: usize) -> Story {
        Story::with_market_and(name, offers, &[]).await
    }

    /// A market of `offers` offers, and these settings.
    pub async fn with_market_and(name: &str, offers: usize, extra: &[(&str, &str)]) -> Story {
        Story::build_with(name, extra, None, false, offers).await
    }

    /// Real machines with rigger reachable at a public URL (so machines
    /// report their end to `/callback/{instance}`), each machine with these
    /// shims in place of the defaults.
    pub async fn with_real_machines_calling_back(name: &str, shims: &[(&str, &str)]) -> Story {
        let shims = shims
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_string()))
            .collect();
        Story::build_with(name, &[], Some(shims), true, DEFAULT_OFFERS).await
    }

    /// Simulated boots (nothing runs) with rigger at a public URL: the
    /// booted environment carries each machine's callback URL and token.
    pub async fn calling_back(name: &str) -> Story {
        Story::build_with(name, &[], None, true, DEFAULT_OFFERS).await
    }

    /// `machines`: `Some(shims)` runs the real script; `public_url`: rigger
    /// listens on a port chosen by the OS and says so in `RIGGER_PUBLIC_URL`.
    async fn build_with(
        name: &str,
        extra: &[(&str, &str)],
        machines: Option<Vec<(String, String)>>,
        public_url: bool,
        offers: usize,
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
                offers,
                ..SimConfig::default()
            },
            Arc::new(clock.clone()),
        );
        let booted: Arc<Mutex<Vec<Booted>>> = Arc::default();
        let exited: Arc<Mutex<Vec<(i64, i32)>>> = Arc::default();
        let github_url = serve_sim(github.router()).await;
        github.set_public_url(&github_url);
        let vast_url = serve_sim(vast.router()).await;
        let held: Arc<Mutex<Vec<Held>>> = Arc::default();
        let held_url = serve_sim(catcher(held.clone())).await;

        let db = DB.try_with(|d| *d).unwrap_or(Db::Sqlite);
        let tag = format!("{name}-{db:?}").to_lowercase();
        let dir = std::env::temp_dir().join(format!("rigger-e2e-{}-{tag}", std::process::id()));
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
        let mut extra: Vec<(String, String)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if db == Db::Postgres {
            let url = postgres_url().expect("RIGGER_TEST_POSTGRES_URL");
            let url = postgres_schema(&url, &tag).await;
            extra.push(("RIGGER_DATABASE_URL".into(), url));
        }
        if public_url {
            // The port is the OS's choice; rigger binds it right after.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let listen = format!("127.0.0.1:{port}");
            extra.push(("RIGGER_PUBLIC_URL".into(), format!("http://{listen}")));
            extra.push(("RIGGER_LISTEN".into(), listen));
        }
        let (engine, app_url) = start_rigger(&github, &vast_url, &dir, &extra, &clock).await;
        github.add_repo("acme/ml", &[(".cirun.yml", CIRUN)]);
        Story {
            clock,
            github,
            vast,
            vast_url,
            engine,
            app_url,
            booted,
            exited,
            held,
            held_url,
            dir,
            extra,
            unsent_expected: Mutex::default(),
            refusals_expected: Default::default(),
        }
    }

    /// rigger stops (as in a crash: nothing is finished or cleaned up) and
    /// starts again on the same database.
    pub async fn rigger_restarts(&mut self) {
        let (engine, url) = self.another_rigger().await;
        self.engine = engine;
        self.app_url = url;
    }

    /// A second rigger on the same database (another replica), with the
    /// same settings; GitHub's webhooks keep going to the first.
    pub async fn another_replica(&self) -> Arc<RiggerEngine> {
        let (engine, _url) = self.another_rigger().await;
        self.github
            .set_webhook_url(Some(format!("{}/webhook", self.app_url)));
        engine
    }

    /// A rigger built on the story's database and settings, neither serving
    /// nor running: the story runs it (`App::run`) to watch it start or stop.
    pub async fn another_app(&self) -> App {
        let extra: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let settings = rigger_settings(
            &SimWorld {
                dir: &self.dir,
                github: &self.github,
                vast_url: &self.vast_url,
                vast_api_key: "sim-vast-key",
                webhook_secret: "hook-secret",
                controller_id: "e2e",
            },
            &extra,
        )
        .unwrap();
        App::build(settings, Arc::new(self.clock.clone()))
            .await
            .unwrap()
    }

    /// A rigger on the story's database and settings; webhooks go to it.
    async fn another_rigger(&self) -> (Arc<RiggerEngine>, String) {
        start_rigger(
            &self.github,
            &self.vast_url,
            &self.dir,
            &self.extra,
            &self.clock,
        )
        .await
    }

    /// From now on GitHub's deliveries are caught, not delivered: the story
    /// decides when, and in which order, rigger receives them.
    pub fn hold_webhooks(&self) {
        self.github
            .set_webhook_url(Some(format!("{}/webhook", self.held_url)));
    }

    /// The caught deliveries, in the order GitHub sent them; the catch is emptied.
    pub async fn held_deliveries(&self) -> Vec<Held> {
        self.github.flush().await;
        std::mem::take(&mut *self.held.lock().unwrap())
    }

    /// Deliver caught deliveries to rigger as they are (same delivery ids,
    /// same signatures), then let rigger take them in.
    pub async fn deliver(&self, deliveries: &[Held]) {
        let http = reqwest::Client::new();
        for d in deliveries {
            let mut req = http.post(format!("{}/webhook", self.app_url));
            for (k, v) in &d.headers {
                req = req.header(k, v);
            }
            let status = req.body(d.body.clone()).send().await.unwrap().status();
            assert_eq!(
                status.as_u16(),
                202,
                "rigger accepts the {} delivery",
                d.event
            );
        }
        while self
            .engine
            .process_deliveries(&parse_delivery)
            .await
            .unwrap()
            > 0
        {}
    }

    /// Deliveries go straight to rigger again.
    pub fn release_webhooks(&self) {
        self.github
            .set_webhook_url(Some(format!("{}/webhook", self.app_url)));
    }

    pub fn a_job_is_queued(&self, label: &str) -> i64 {
        self.a_job_is_queued_in("acme/ml", label)
    }

    /// A job in another repository (one the story added with its own files).
    pub fn a_job_is_queued_in(&self, repo: &str, label: &str) -> i64 {
        self.github.queue_job(NewJob {
            repo: repo.into(),
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

    /// rigger provisions what is due, and goes on as its worker loop would
    /// while jobs waiting for a Vast.ai slot come back within
    /// [`SLOT_WAIT_MS`]: the clock moves to the next such job each time.
    /// Jobs in a backoff stay where they are.
    pub async fn rigger_provisions(&self) {
        for _ in 0..SETTLE_PASSES {
            let attempted = self.engine.provision_due().await.unwrap();
            let now = self.clock.now_ms();
            let queued = self
                .engine
                .store
                .jobs_in(&[JobState::Queued])
                .await
                .unwrap();
            // Only jobs waiting for a Vast.ai slot (their reason says so):
            // a job in another short wait (an offer taken by someone else)
            // comes back when the story lets time pass.
            let next = queued
                .iter()
                .filter(|j| j.reason.as_deref().is_some_and(waits_for_a_slot))
                .filter_map(|j| j.next_attempt_at)
                .filter(|&at| at <= now + SLOT_WAIT_MS)
                .min();
            match next {
                Some(at) if at > now => self.clock.set_ms(at),
                // Due now and none taken: not rigger's to take (a lease).
                Some(_) if attempted > 0 => {}
                _ => return,
            }
        }
        panic!("rigger kept coming back to jobs for {SETTLE_PASSES} passes");
    }

    /// One provisioning pass, the clock left where it is (stories that
    /// step time themselves).
    pub async fn rigger_provisions_once(&self) {
        self.engine.provision_due().await.unwrap();
    }

    /// The story makes Vast.ai refuse rigger's requests (another tool on
    /// the key, a spent quota): the end-of-story check lets them be.
    pub fn expects_vast_refusals(&self) {
        self.refusals_expected
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// rigger starts a provisioning pass whose create calls Vast.ai leaves
    /// without an answer (`holds`, one per call, in order); returns once it
    /// holds them all, the pass still waiting (abort it to crash rigger there).
    pub async fn rigger_provisions_until_vast_holds(
        &self,
        holds: &[CreateHold],
    ) -> tokio::task::JoinHandle<Result<usize, rigger::engine::EngineError>> {
        self.vast.hold_next_creates(holds);
        // The calls must be made in one pass: let the first create interval
        // after rigger started pass (its limiter leaves a predecessor's
        // create that long). A story holding more than one create at once
        // lifts the create interval (rigger's and Vast.ai's) and says why.
        self.clock.advance_ms(CREATE_INTERVAL_MS);
        let engine = self.engine.clone();
        let pass = tokio::spawn(async move { engine.provision_due().await });
        let held = self.vast.creates_held(holds.len());
        if tokio::time::timeout(std::time::Duration::from_secs(20), held)
            .await
            .is_err()
        {
            let waiting: Vec<_> = self
                .engine
                .store
                .jobs_in(&[JobState::Queued])
                .await
                .unwrap();
            let why: Vec<_> = waiting.iter().map(|j| (j.job_id, &j.reason)).collect();
            panic!(
                "rigger did not make {} create calls in one pass; waiting: {why:?}",
                holds.len()
            );
        }
        pass
    }

    /// Time passes: machines boot; each booted machine's runner connects with
    /// its JIT config and takes its job, as the bootstrap script would start it.
    pub fn machines_boot(&self) -> Vec<(i64, i64)> {
        self.clock.advance_ms(30_000);
        self.vast.live_instances(); // steps the simulated Vast.ai
        let mut taken = Vec::new();
        for b in self.booted.lock().unwrap().drain(..) {
            let jit = jit_config_of(&b);
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

    /// rigger's `/metrics`, scraped as Prometheus would: `name{labels}` → value.
    pub async fn metrics(&self) -> BTreeMap<String, f64> {
        let text = reqwest::get(format!("{}/metrics", self.app_url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    /// The story ends with this job's check-run update still unsent (GitHub
    /// refused it for good, or its retry is not due yet): `nothing_leaked`
    /// then checks that it is, instead of failing for it.
    pub fn expects_an_unsent_check_run(&self, job: i64) {
        self.unsent_expected.lock().unwrap().insert(job);
    }

    /// Nothing leaked and nothing stranded, after one reconciler pass:
    /// - every live simulated instance has a live row (rigger knows it);
    /// - every runner registration belongs to a live machine, by name;
    /// - a job GitHub finished is over in rigger too, and its check run is
    ///   closed; a job rigger waits on has a machine or says why it waits;
    ///   no job is left mid-provisioning;
    /// - a job that is over (on GitHub, or for rigger, which gave it up)
    ///   has no check-run update left unsent in the store, unless the story
    ///   expects one (and then it has one).
    pub async fn nothing_leaked(&self) {
        self.engine.reconcile_once().await.unwrap();
        self.no_secret_in_the_database().await;
        let live = self.vast.live_instances();
        let rows = self.engine.store.live_instances().await.unwrap();
        for (id, label, phase) in &live {
            assert!(
                rows.iter()
                    .any(|r| r.provider_id.as_deref() == Some(&id.to_string())),
                "simulated instance {id} ({label:?}, {phase:?}) has no live row"
            );
        }
        for r in self.github.runners() {
            assert!(
                rows.iter().any(|i| i.runner_name == r.name),
                "runner {} ({:?}) is registered without a machine",
                r.name,
                r.status
            );
        }
        let checks = self.github.check_runs();
        for j in self.github.jobs() {
            let Some(row) = self.engine.store.job(j.id).await.unwrap() else {
                continue; // not rigger's
            };
            let machines: Vec<_> = rows.iter().filter(|i| i.job_id == j.id).collect();
            assert_ne!(
                row.state,
                JobState::Provisioning,
                "job {} left mid-provisioning",
                j.id
            );
            // Over on GitHub, or over for rigger (it gave the job up: the
            // check run is where the user reads why).
            if j.status == JobStatus::Completed || row.state.is_terminal() {
                self.no_check_run_update_unsent(j.id).await;
            }
            if j.status == JobStatus::Completed {
                assert!(
                    row.state.is_terminal(),
                    "job {} is over on GitHub but {:?} in rigger",
                    j.id,
                    row.state
                );
                // Closed, unless the story expects its update unsent.
                let unsent_expected = self.unsent_expected.lock().unwrap().contains(&j.id);
                if let Some(id) = row.check_run_id
                    && row.state != JobState::Failed
                    && !unsent_expected
                {
                    let run = checks.iter().find(|c| c.id == id).expect("its check run");
                    assert_eq!(run.status, "completed", "job {}'s check run: {run:?}", j.id);
                }
            }
            // A machine busy with a sibling (GitHub gave it another job)
            // or dying will not run this one.
            if row.state == JobState::WaitingForRunner {
                assert!(
                    machines.iter().any(|i| i.state.may_still_take_a_job()),
                    "job {} waits for a runner with no machine that can run it: {machines:?}",
                    j.id
                );
            }
            if row.state == JobState::Queued {
                assert!(
                    row.reason.is_some(),
                    "job {} waits and does not say why",
                    j.id
                );
            }
        }
    }
}

impl Story {
    /// A finished job's check-run update that the store still wants sent
    /// is one the user never sees (the run stays "in progress" on GitHub).
    async fn no_check_run_update_unsent(&self, job: i64) {
        let want = self.engine.store.check_run(job).await.unwrap();
        let unsent = want.as_ref().is_some_and(|w| w.unsent());
        let expected = self.unsent_expected.lock().unwrap().contains(&job);
        match (unsent, expected) {
            (true, false) => {
                panic!("job {job} is over but its check-run update was never sent: {want:?}")
            }
            (false, true) => panic!(
                "the story expects job {job}'s check-run update unsent, but nothing is: {want:?}"
            ),
            _ => {}
        }
    }

    /// I6: no installation token or JIT config GitHub handed rigger is in
    /// its jobs, machines, events or ledger (the deliveries are GitHub's own
    /// payloads, which carry none).
    async fn no_secret_in_the_database(&self) {
        let store = &self.engine.store;
        let mut stored = format!(
            "{:?}",
            store.instances_in(&InstanceState::ALL).await.unwrap()
        );
        for j in self.github.jobs() {
            stored += &format!("{:?}", store.job(j.id).await.unwrap());
            stored += &format!("{:?}", store.job_events(j.id).await.unwrap());
            stored += &format!("{:?}", store.costs_for_job(j.id).await.unwrap());
        }
        for secret in self.github.secrets_issued() {
            assert!(
                !stored.contains(&secret),
                "a secret GitHub issued is in the database: {}…",
                &secret[..8.min(secret.len())]
            );
        }
    }

    /// Wait (real time: the scripts run as real processes) until `n`
    /// machines' scripts have ended, delivering webhooks as they come.
    pub async fn machines_finish(&self, n: usize) -> Vec<(i64, i32)> {
        self.wait_for_exits(n, true).await
    }

    /// Wait until `n` machines' scripts have ended while rigger hears
    /// nothing: what the machines do on their own, with no destroy from
    /// rigger racing them. Deliver the webhooks afterwards.
    pub async fn machines_finish_unheard(&self, n: usize) -> Vec<(i64, i32)> {
        self.wait_for_exits(n, false).await
    }

    async fn wait_for_exits(&self, n: usize, deliver: bool) -> Vec<(i64, i32)> {
        for _ in 0..600 {
            if deliver {
                self.webhooks_arrive().await;
            }
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

    /// Wait (real time, bounded) until the job's log has an event of `kind`,
    /// letting the simulated machines move meanwhile.
    pub async fn event_arrives(&self, job: i64, kind: &str) -> Vec<(String, String)> {
        for _ in 0..200 {
            self.vast.live_instances();
            let events = self.events(job).await;
            if events.iter().any(|(k, _)| k == kind) {
                return events;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "job {job} never had a `{kind}` event: {:?}",
            self.events(job).await
        );
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
