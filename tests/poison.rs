//! Stories of poison work: one delivery, job or reconcile action that fails
//! or panics every time must never stop rigger for everyone else. It is
//! recorded on itself (quarantined, failed as `internal_error`, counted) and
//! every other unit goes on being handled.

mod harness;

use std::sync::Arc;

use harness::Story;
use rigger::cloud::vast::client::VastClient;
use rigger::engine::Engine;
use rigger::engine::offers::Market;
use rigger::engine::ports::{Clock, Cloud, CloudError, LaunchSpec, OfferSearch};
use rigger::engine::reconcile::CloudView;
use rigger::engine::run::MAX_DELIVERY_ATTEMPTS;
use rigger::engine::state::JobState;
use rigger::server::webhook::parse_delivery;
use rigger::store::{Delivery, NewDelivery, Store};

/// Run `sql` on the story's SQLite database behind rigger's back, as an
/// operator's shell (or a bug) would.
async fn behind_riggers_back(s: &Story, sql: &str) {
    let url = &s.engine.settings.database_url;
    assert!(url.starts_with("sqlite://"), "the story runs on SQLite");
    let pool = sqlx::SqlitePool::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

/// A database trigger that refuses to record any job whose labels name
/// `cirun-poison`: handling its `queued` delivery fails in the store,
/// every time, exactly as a real poison row would.
async fn poison_jobs_labelled_poison(s: &Story) {
    behind_riggers_back(
        s,
        "CREATE TRIGGER poison BEFORE INSERT ON jobs WHEN NEW.labels LIKE '%cirun-poison%' \
         BEGIN SELECT RAISE(ABORT, 'poisoned row'); END",
    )
    .await;
}

async fn cure(s: &Story) {
    behind_riggers_back(s, "DROP TRIGGER poison").await;
}

async fn recorded(s: &Story, job: i64) -> bool {
    s.engine.store.job(job).await.unwrap().is_some()
}

#[tokio::test]
async fn a_delivery_that_always_fails_is_set_aside_and_the_rest_go_on() {
    let s = Story::begin("poison-delivery").await;
    poison_jobs_labelled_poison(&s).await;
    // Three deliveries claimed in one batch, the poison one in the middle.
    let before = s.a_job_is_queued("cirun-gpu--1");
    let poison = s.a_job_is_queued("cirun-poison--1");
    let after = s.a_job_is_queued("cirun-gpu--2");
    s.webhooks_arrive().await;
    assert!(recorded(&s, before).await && recorded(&s, after).await);
    assert!(!recorded(&s, poison).await);
    assert!(
        s.engine
            .store
            .quarantined_deliveries()
            .await
            .unwrap()
            .is_empty()
    );

    // Tried again a minute apart; after the third failure it is set aside.
    for _ in 1..MAX_DELIVERY_ATTEMPTS {
        s.clock.advance_ms(61_000);
        s.webhooks_arrive().await;
    }
    let set_aside = s.engine.store.quarantined_deliveries().await.unwrap();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    let d = &set_aside[0];
    assert_eq!(d.attempts, MAX_DELIVERY_ATTEMPTS);
    assert!(
        d.error.contains("failed 3 times") && d.error.contains("poisoned row"),
        "{}",
        d.error
    );
    // Never again by itself, and nothing else waits behind it.
    s.clock.advance_ms(3_600_000);
    let later = s.a_job_is_queued("cirun-gpu--3");
    s.webhooks_arrive().await;
    assert!(recorded(&s, later).await);
    assert!(!recorded(&s, poison).await);
    assert_eq!(s.engine.store.pending_deliveries().await.unwrap(), 0);

    // Once the cause is gone, an operator puts it back and it is handled.
    cure(&s).await;
    let released = s
        .engine
        .store
        .release_quarantined(Some(&d.delivery_id))
        .await
        .unwrap();
    assert_eq!(released, 1);
    s.webhooks_arrive().await;
    assert!(recorded(&s, poison).await);
    assert!(
        s.engine
            .store
            .quarantined_deliveries()
            .await
            .unwrap()
            .is_empty()
    );
    s.rigger_provisions().await;
    s.nothing_leaked().await;
}

fn queued_body(job_id: i64, label: &str) -> String {
    serde_json::json!({
        "action": "queued",
        "workflow_job": {
            "id": job_id, "run_id": 7, "run_attempt": 1, "head_sha": "8f3c1e2d",
            "labels": [label], "status": "queued",
        },
        "repository": {"full_name": "acme/ml"},
        "installation": {"id": 1},
        "sender": {"login": "octocat"},
    })
    .to_string()
}

async fn stored(store: &Store, id: &str, body: String, at: i64) {
    store
        .insert_delivery(&NewDelivery {
            delivery_id: id.into(),
            event: "workflow_job".into(),
            action: Some("queued".into()),
            body,
            received_at: at,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn a_delivery_the_process_keeps_dying_on_is_set_aside_without_being_handled() {
    let s = Story::begin("poison-crash").await;
    let store = &s.engine.store;
    let now = s.clock.now_ms();
    stored(store, "innocent-1", queued_body(501, "cirun-gpu--1"), now).await;
    stored(store, "deadly", queued_body(502, "cirun-gpu--2"), now + 1).await;
    stored(
        store,
        "innocent-2",
        queued_body(503, "cirun-gpu--3"),
        now + 2,
    )
    .await;
    // rigger claims a batch and dies with it (an abort no unwinding can
    // catch, such as a stack overflow): nothing is finished.
    let claimed = store
        .claim_deliveries("crashed-1", now, 60_000, 64)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    // After the lease, each suspect is tried alone: the innocent ones finish.
    s.clock.advance_ms(61_000);
    s.webhooks_arrive().await;
    assert!(recorded(&s, 501).await && recorded(&s, 502).await && recorded(&s, 503).await);

    // The deadly one, again: each time rigger takes it alone and dies.
    stored(store, "deadly-2", queued_body(504, "cirun-gpu--4"), now + 3).await;
    let mut last: Option<Delivery> = None;
    for n in 1..=MAX_DELIVERY_ATTEMPTS {
        s.clock.advance_ms(61_000);
        let alone = if n == 1 {
            store
                .claim_deliveries("crashed", s.clock.now_ms(), 60_000, 64)
                .await
                .unwrap()
        } else {
            vec![
                store
                    .claim_suspect_delivery("crashed", s.clock.now_ms(), 60_000)
                    .await
                    .unwrap()
                    .expect("the suspect, alone"),
            ]
        };
        assert_eq!(alone.len(), 1, "taken alone: {alone:?}");
        last = alone.into_iter().next();
    }
    assert_eq!(last.unwrap().attempts, MAX_DELIVERY_ATTEMPTS);
    s.clock.advance_ms(61_000);
    s.webhooks_arrive().await;
    // Not handled a fourth time: set aside, saying why.
    assert!(!recorded(&s, 504).await);
    let set_aside = store.quarantined_deliveries().await.unwrap();
    assert_eq!(set_aside.len(), 1);
    assert_eq!(set_aside[0].delivery_id, "deadly-2");
    assert!(
        set_aside[0]
            .error
            .contains("rigger stopped while handling it"),
        "{}",
        set_aside[0].error
    );
}

#[tokio::test]
async fn an_unreadable_or_panicking_delivery_is_set_aside_at_once() {
    let s = Story::begin("poison-parse").await;
    let store = &s.engine.store;
    let now = s.clock.now_ms();
    stored(store, "fine-1", queued_body(601, "cirun-gpu--1"), now).await;
    stored(
        store,
        "garbled",
        "{\"action\": \"queued\", \"workflow_job\": 5}".into(),
        now + 1,
    )
    .await;
    stored(store, "panics", queued_body(602, "cirun-gpu--2"), now + 2).await;
    stored(store, "fine-2", queued_body(603, "cirun-gpu--3"), now + 3).await;
    // A reader with a bug that one payload sets off.
    let parse = |d: &Delivery| {
        if d.delivery_id == "panics" {
            panic!("a bug in reading delivery {}", d.delivery_id);
        }
        parse_delivery(d)
    };
    while s.engine.process_deliveries(&parse).await.unwrap() > 0 {}
    assert!(recorded(&s, 601).await && recorded(&s, 603).await);
    assert!(!recorded(&s, 602).await);
    let set_aside = store.quarantined_deliveries().await.unwrap();
    let why = |id: &str| {
        set_aside
            .iter()
            .find(|d| d.delivery_id == id)
            .map(|d| d.error.clone())
            .unwrap_or_else(|| panic!("{id} is not set aside: {set_aside:?}"))
    };
    assert!(why("garbled").starts_with("cannot be read: malformed `workflow_job` payload"));
    assert!(
        why("panics").contains("a bug in reading delivery panics"),
        "{}",
        why("panics")
    );
    // Each was tried once: a payload that cannot be read never will be.
    assert!(set_aside.iter().all(|d| d.attempts == 1), "{set_aside:?}");
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_work_panics_total{loop=\"inbox\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(m.get("rigger_deliveries_quarantined"), Some(&2.0), "{m:?}");
}

#[tokio::test]
async fn quarantined_deliveries_are_listed_and_put_back_by_the_operator() {
    let s = Story::begin("poison-cli").await;
    let store = &s.engine.store;
    let now = s.clock.now_ms();
    stored(store, "garbled-cli", "{}".into(), now).await;
    s.webhooks_arrive().await;
    let url = s.engine.settings.database_url.clone();
    let rigger = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rigger"))
            .args(args)
            .args(["--database-url", &url])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = rigger(&["inbox", "list"]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("garbled-cli") && out.contains("cannot be read"),
        "{out}"
    );
    let (code, out, _) = rigger(&["inbox", "list", "--json"]);
    assert_eq!(code, Some(0));
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["delivery_id"], "garbled-cli");
    assert_eq!(listed[0]["attempts"], 1);
    let (code, out, _) = rigger(&["jobs", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("1 webhook deliveries are set aside"), "{out}");

    let (code, _, err) = rigger(&["inbox", "retry", "no-such-delivery"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no delivery no-such-delivery is set aside"),
        "{err}"
    );
    let (code, out, _) = rigger(&["inbox", "retry", "garbled-cli"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("back in the queue"));
    assert_eq!(store.pending_deliveries().await.unwrap(), 1);
    let (code, out, _) = rigger(&["inbox", "list"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("no delivery is set aside"), "{out}");
    // Still unreadable: set aside again after one more try.
    s.webhooks_arrive().await;
    let (_, out, _) = rigger(&["inbox", "retry", "--all"]);
    assert!(out.contains("1 deliveries are back in the queue"), "{out}");
}

/// Vast.ai as rigger reaches it, with a bug planted: renting for a job whose
/// label names one of `panic_on` panics, and so does destroying a machine
/// whose provider id is in `panic_on_destroy` — as a bug that one answer or
/// one config sets off would.
struct Planted {
    inner: Market<VastClient>,
    panic_on: Vec<String>,
    panic_on_destroy: std::sync::Mutex<Vec<String>>,
}

impl Cloud for Planted {
    async fn search(
        &self,
        runner: &rigger::config::VastRunner,
        hours: f64,
    ) -> Result<OfferSearch, CloudError> {
        self.inner.search(runner, hours).await
    }
    async fn create(&self, spec: &LaunchSpec) -> Result<String, CloudError> {
        if self
            .panic_on
            .iter()
            .any(|p| spec.label.contains(p.as_str()))
        {
            panic!("planted: renting for {}", spec.label);
        }
        self.inner.create(spec).await
    }
    async fn find(&self, label: &str) -> Result<Option<CloudView>, CloudError> {
        self.inner.find(label).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<CloudView>, CloudError> {
        self.inner.list(prefix).await
    }
    async fn destroy(&self, provider_id: &str) -> Result<(), CloudError> {
        let planted = self
            .panic_on_destroy
            .lock()
            .unwrap()
            .iter()
            .any(|p| p == provider_id);
        if planted {
            panic!("planted: destroying {provider_id}");
        }
        self.inner.destroy(provider_id).await
    }
    async fn logs(&self, provider_id: &str) -> Result<String, CloudError> {
        self.inner.logs(provider_id).await
    }
}

/// The story's rigger, with Vast.ai reached through [`Planted`].
fn engine_with_planted_bug(
    s: &Story,
    panic_on: Vec<String>,
) -> Arc<Engine<Planted, rigger::github::client::GithubClient>> {
    let e = &s.engine;
    Arc::new(Engine::new(
        e.store.clone(),
        Planted {
            inner: Market {
                // Vast.ai's limits kept as rigger serve keeps them: one
                // limiter on the story's clock.
                provider: VastClient::new(&s.vast_url, e.settings.vast.api_key.clone())
                    .with_limiter(
                        rigger::cloud::vast::limit::Limiter::new(
                            e.settings.vast.rate_limits.clone(),
                            Arc::new(s.clock.clone()),
                        ),
                        0,
                    ),
                max_lifetime: Some(e.settings.timeouts.max_lifetime),
                diagnoses: rigger::engine::offers::Diagnoses::new(Arc::new(s.clock.clone())),
            },
            panic_on,
            panic_on_destroy: Default::default(),
        },
        e.github.clone(),
        e.settings.clone(),
        Arc::new(s.clock.clone()),
        e.metrics.clone(),
    ))
}

#[tokio::test]
async fn a_job_whose_attempt_panics_fails_alone_and_the_others_are_rented() {
    let s = Story::begin("poison-provision").await;
    let a = s.a_job_is_queued("cirun-gpu--1");
    let doomed = s.a_job_is_queued("cirun-gpu--2");
    let b = s.a_job_is_queued("cirun-gpu--3");
    s.webhooks_arrive().await;
    let engine = engine_with_planted_bug(&s, vec![format!(":{doomed}:")]);
    // The two creates go out at Vast.ai's pace (one per 4.5 s): passes
    // until both are rented.
    for _ in 0..12 {
        s.clock.advance_ms(5_000);
        engine.provision_due().await.unwrap();
    }
    for job in [a, b] {
        assert_eq!(
            s.job_state(job).await,
            JobState::WaitingForRunner,
            "job {job}"
        );
    }
    let row = s.engine.store.job(doomed).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Failed);
    assert_eq!(row.failure.as_deref(), Some("internal_error"));
    let why = row.reason.unwrap();
    assert!(
        why.contains("internal error") && why.contains("planted: renting for"),
        "{why}"
    );
    // The user sees it where they look.
    let check = s
        .github
        .check_runs()
        .into_iter()
        .find(|c| c.head_sha == "8f3c1e2d" && c.conclusion.as_deref() == Some("failure"))
        .expect("a failed check run");
    assert!(check.title.contains("internal error"), "{check:?}");
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_work_panics_total{loop=\"provisioner\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("rigger_jobs_failed_total{kind=\"internal_error\"}"),
        Some(&1.0),
        "{m:?}"
    );
    // The provisioner goes on: a later job is rented as usual.
    let later = s.a_job_is_queued("cirun-gpu--4");
    s.webhooks_arrive().await;
    engine.provision_due().await.unwrap();
    assert_eq!(s.job_state(later).await, JobState::WaitingForRunner);
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_reconcile_action_that_panics_is_counted_and_the_pass_goes_on() {
    let s = Story::begin("poison-reconcile").await;
    let jobs = [
        s.a_job_is_queued("cirun-gpu--1"),
        s.a_job_is_queued("cirun-gpu--2"),
    ];
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    // Both machines become orphans: their rows are gone (a restored backup).
    let rows = s.engine.store.live_instances().await.unwrap();
    assert_eq!(rows.len(), 2);
    behind_riggers_back(&s, "DELETE FROM instances").await;
    let engine = engine_with_planted_bug(&s, vec![]);
    let first = rows[0].provider_id.clone().unwrap();
    engine
        .cloud
        .panic_on_destroy
        .lock()
        .unwrap()
        .push(first.clone());
    let actions = engine.reconcile_once().await.expect("the pass finishes");
    let orphans = actions
        .iter()
        .filter(|(rule, _)| *rule == rigger::engine::reconcile::Rule::Orphan)
        .count();
    assert_eq!(orphans, 2, "{actions:?}");
    // Their jobs, left with no machine, are rented for again (rule 14).
    for job in jobs {
        assert_eq!(s.job_state(job).await, JobState::Queued);
    }
    let live: Vec<String> = s
        .vast
        .live_instances()
        .iter()
        .map(|(id, _, _)| id.to_string())
        .collect();
    assert_eq!(live, vec![first.clone()], "the other orphan is destroyed");
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_work_panics_total{loop=\"reconciler\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("rigger_reconcile_errors_total{rule=\"orphan\"}"),
        Some(&1.0),
        "{m:?}"
    );
    // The bug gone, the next pass finishes the work.
    engine.cloud.panic_on_destroy.lock().unwrap().clear();
    // Vast.ai's destroy interval after the destroy of the last pass.
    s.clock.advance_ms(3_000);
    engine.reconcile_once().await.unwrap();
    assert!(s.vast.live_instances().is_empty());
    let _ = jobs;
}

#[tokio::test]
async fn rigger_that_gives_up_on_a_loop_is_not_ready_and_stops_with_an_error() {
    let s = Story::begin("poison-give-up").await;
    let app = s.another_app().await;
    let health = app.health.clone();
    let url = app.url();
    let running = tokio::spawn(app.run(std::future::pending()));
    let http = reqwest::Client::new();
    let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // What the supervisor does after a loop ended five times in a row.
    health.give_up("the provisioner loop ended 5 times in a row".into());
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(30), running)
        .await
        .expect("rigger stops by itself")
        .unwrap();
    let err = stopped.expect_err("an error, for a non-zero exit");
    assert!(err.to_string().contains("ended 5 times"), "{err}");
    assert!(health.problems()[0].contains("ended 5 times"));
}

/// Item 6 of #16: a store error in one reconcile action is that action's
/// failure, counted against its rule, and the next action is carried out
/// in the same pass. Rule 2's `MarkFailed` used to swallow it (as "not
/// moved"), so nobody knew.
#[tokio::test]
async fn a_store_error_in_one_reconcile_action_is_counted_and_the_pass_goes_on() {
    use rigger::engine::state::InstanceState;
    use rigger::sim::vast::CreateHold;
    let s = Story::begin("poison-store-action").await;
    // Job B's machine boots; job A's create call goes unanswered.
    let b = s.a_job_is_queued("cirun-gpu--61");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let dying = s.vast.live_instances()[0].0;
    let a = s.a_job_is_queued("cirun-gpu--62");
    s.webhooks_arrive().await;
    let provisioning = s
        .rigger_provisions_until_vast_holds(&[CreateHold::BeforeRenting])
        .await;
    // B's host dies while it boots (rule 6); the store refuses to mark any
    // machine failed (rule 2), as a full disk would.
    let died = reqwest::Client::new()
        .post(format!("{}/sim/instances/{dying}/die", s.vast_url))
        .send()
        .await
        .unwrap();
    assert!(died.status().is_success());
    behind_riggers_back(
        &s,
        "CREATE TRIGGER refuse_failed BEFORE UPDATE ON instances WHEN NEW.state = 'failed' \
         BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END",
    )
    .await;
    s.clock.advance_ms(6 * 60_000);
    let actions = s.engine.reconcile_once().await.expect("the pass finishes");
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_reconcile_errors_total{rule=\"stuck_create\"}"),
        Some(&1.0),
        "the refused write is counted: {actions:?} {m:?}"
    );
    // The action after it was carried out: B's dead machine is destroyed
    // and B waits for another.
    assert!(
        !s.vast.live_instances().iter().any(|l| l.0 == dying),
        "{actions:?}"
    );
    assert_eq!(s.job_state(b).await, JobState::Queued);
    // The store well again, the next pass does what the failed action did not.
    behind_riggers_back(&s, "DROP TRIGGER refuse_failed").await;
    s.clock.advance_ms(3_000);
    s.engine.reconcile_once().await.unwrap();
    let rows = s.engine.store.instances_for_job(a).await.unwrap();
    assert_eq!(rows[0].state, InstanceState::Failed, "{rows:?}");
    s.vast.release_held_creates();
    provisioning.await.unwrap().unwrap();
    for job in [a, b] {
        s.github.cancel_job(job);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// A pass whose snapshot cannot be read is counted (rule `snapshot`), and
/// every pass's duration is measured.
#[tokio::test]
async fn a_snapshot_that_cannot_be_read_is_counted_and_passes_are_timed() {
    let s = Story::begin("poison-snapshot").await;
    behind_riggers_back(&s, "ALTER TABLE jobs RENAME TO jobs_away").await;
    assert!(s.engine.reconcile_once().await.is_err());
    behind_riggers_back(&s, "ALTER TABLE jobs_away RENAME TO jobs").await;
    s.engine.reconcile_once().await.unwrap();
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_reconcile_errors_total{rule=\"snapshot\"}"),
        Some(&1.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("rigger_reconcile_pass_seconds_count"),
        Some(&2.0),
        "{m:?}"
    );
    s.nothing_leaked().await;
}
