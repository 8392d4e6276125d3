//! Stories of GitHub as it really is, for what happens around the jobs:
//! deliveries GitHub failed to make (it never retries one), the App losing
//! an installation (suspended, uninstalled, a repository removed), and
//! rigger giving up on a job (its workflow run cancelled, if asked).

mod harness;

use harness::Story;
use rigger::engine::state::JobState;
use rigger::sim::github::{JobStatus, WebhookFaults};

/// The cancel endpoint as the simulator counts it.
const CANCEL: &str = "POST /repos/acme/ml/actions/runs/:id/cancel";

fn faults(loss_rate: f64, late_rate: f64) -> WebhookFaults {
    WebhookFaults {
        loss_rate,
        late_rate,
        ..Default::default()
    }
}

/// Every `queued` of a burst is lost (and, later, rigger is down): GitHub
/// records the attempts as failed and sends nothing again. rigger reads
/// the delivery log, asks for what never reached it, and every job gets
/// its machine and runs, once.
async fn lost_queued_deliveries_are_recovered() {
    let s = Story::begin("lost-queued").await;
    s.github.set_webhook_faults(faults(1.0, 0.0));
    let lost: Vec<i64> = (0..4)
        .map(|i| s.a_job_is_queued(&format!("cirun-gpu--{}", 700 + i)))
        .collect();
    s.webhooks_arrive().await;
    s.github.set_webhook_faults(faults(0.0, 0.0));
    // rigger is down for the next one: GitHub cannot connect.
    s.github
        .set_webhook_url(Some("http://127.0.0.1:9/webhook".into()));
    let while_down = s.a_job_is_queued("cirun-gpu--704");
    s.github.flush().await;
    s.release_webhooks();
    let mut jobs = lost.clone();
    jobs.push(while_down);
    for j in &jobs {
        assert!(
            s.engine.store.job(*j).await.unwrap().is_none(),
            "job {j}'s queued never reached rigger"
        );
    }
    let failed = s
        .github
        .delivery_attempts()
        .iter()
        .filter(|a| a.status != "OK")
        .count();
    assert_eq!(failed, 5, "GitHub recorded every attempt as failed");

    let pass = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!(pass.redelivered, 5, "{pass:?}");
    assert!(pass.swept, "{pass:?}");
    s.webhooks_arrive().await;
    // A second pass finds nothing left to ask for (the redeliveries arrived).
    let again = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!(again.redelivered, 0, "{again:?}");
    let redelivered: Vec<_> = s
        .github
        .delivery_attempts()
        .into_iter()
        .filter(|a| a.redelivery)
        .collect();
    assert_eq!(redelivered.len(), 5);
    assert!(redelivered.iter().all(|a| a.status == "OK"));

    s.rigger_provisions().await;
    let taken = s.machines_boot();
    assert_eq!(taken.len(), 5, "every stranded job is rented for and taken");
    s.webhooks_arrive().await;
    for j in &jobs {
        assert_eq!(s.job_state(*j).await, JobState::Running, "job {j}");
    }
    assert_eq!(s.instances_created(), 5, "one machine a job");
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_deliveries_redelivered_total{event=\"workflow_job\"}"),
        Some(&5.0),
        "{m:?}"
    );
    for j in &jobs {
        s.github.finish_job(*j, "success");
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// GitHub records a delivery as failed that rigger did receive (it
/// answered after GitHub stopped waiting): rigger does not ask for it
/// again, and even a redelivery of it (same GUID) rents nothing twice.
async fn a_failed_delivery_that_arrived_is_not_rented_twice() {
    let s = Story::begin("late-answer").await;
    s.github.set_webhook_faults(faults(0.0, 1.0));
    let job = s.a_job_is_queued("cirun-gpu--720");
    s.webhooks_arrive().await;
    s.github.set_webhook_faults(faults(0.0, 0.0));
    assert_eq!(s.job_state(job).await, JobState::Queued, "rigger has it");
    let attempts = s.github.delivery_attempts();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, "timed out", "GitHub saw no answer");

    let pass = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!(
        (pass.redelivered, pass.already_here),
        (0, 1),
        "it is in the inbox: {pass:?}"
    );
    // Someone redelivers it by hand anyway: the inbox knows the GUID.
    s.rigger_provisions().await;
    s.github.redeliver_by_hand(attempts[0].id).unwrap();
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.instances_created(), 1, "rented once");
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// More failed deliveries than a page holds, and rigger restarting between
/// passes: the scan pages with GitHub's cursor, and where it got to is
/// kept in the store, so nothing is asked for twice after the restart.
async fn the_scan_pages_and_survives_a_restart() {
    let mut s = Story::begin("scan-pages").await;
    s.github.set_webhook_faults(faults(1.0, 0.0));
    let jobs: Vec<i64> = (0..130)
        .map(|i| s.a_job_is_queued(&format!("cirun-gpu--{}", 1000 + i)))
        .collect();
    s.webhooks_arrive().await;
    s.github.set_webhook_faults(faults(0.0, 0.0));
    // GitHub takes some 80 content-generating requests a minute from the
    // App: a pass asks for 72 redeliveries (rigger's pace), the next, a
    // minute later, for the rest.
    let pass = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!((pass.pages, pass.redelivered), (2, 72), "{pass:?}");
    s.webhooks_arrive().await;
    s.clock.advance_ms(61_000);
    let pass = s.engine.recover_deliveries_once().await.unwrap();
    // (The 72 redelivered are on top of the log now: a page more.)
    assert_eq!((pass.pages, pass.redelivered), (3, 58), "{pass:?}");
    s.webhooks_arrive().await;
    for j in &jobs {
        assert!(s.engine.store.job(*j).await.unwrap().is_some(), "job {j}");
    }
    s.rigger_restarts().await;
    // What is new since the last sweep: the last 58 redeliveries, all fine.
    let after = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!((after.pages, after.redelivered), (1, 0), "{after:?}");
    let quiet = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!((quiet.pages, quiet.redelivered), (1, 0), "{quiet:?}");
    assert_eq!(
        s.github.requests("POST /app/hook/deliveries/:id/attempts"),
        130
    );
    for j in &jobs {
        s.github.cancel_job(*j);
    }
    s.webhooks_arrive().await;
}

/// GitHub's rate limit stops a pass, and the next waits as GitHub says
/// before reading the log again; then the lost delivery is recovered.
async fn the_scan_waits_out_a_rate_limit() {
    let s = Story::begin("scan-rate-limited").await;
    s.github.set_webhook_faults(faults(1.0, 0.0));
    let job = s.a_job_is_queued("cirun-gpu--790");
    s.webhooks_arrive().await;
    s.github.set_webhook_faults(faults(0.0, 0.0));
    s.github.rate_limit_for(60_000);
    let list = "GET /app/hook/deliveries";
    let pass = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!((pass.pages, pass.redelivered), (0, 0), "{pass:?}");
    assert_eq!(s.github.requests(list), 1);
    s.clock.advance_ms(30_000);
    s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!(s.github.requests(list), 1, "no call before GitHub's reset");
    s.clock.advance_ms(31_000);
    let pass = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!(pass.redelivered, 1, "{pass:?}");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Queued);
    let m = s.metrics().await;
    assert!(
        m.get("rigger_github_errors_total{kind=\"rate_limited\"}")
            .is_some_and(|n| *n >= 1.0),
        "{m:?}"
    );
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
}

/// The chaos run of issue #14 at its own scale: 2,000 jobs, 12 % of their
/// deliveries lost. Before recovery the lost ones are stranded; after a few
/// passes (a sweep of more pages than one pass reads goes on from the
/// stored cursor) rigger knows every job.
#[tokio::test]
async fn a_chaos_burst_strands_no_job() {
    let s = Story::begin("chaos-burst").await;
    s.github.set_webhook_faults(faults(0.12, 0.0));
    let jobs: Vec<i64> = (0..2_000)
        .map(|i| s.a_job_is_queued(&format!("cirun-gpu--{}", 5000 + i)))
        .collect();
    s.webhooks_arrive().await;
    s.github.set_webhook_faults(faults(0.0, 0.0));
    let mut stranded = 0;
    for j in &jobs {
        if s.engine.store.job(*j).await.unwrap().is_none() {
            stranded += 1;
        }
    }
    assert!(stranded > 100, "the loss fault lost {stranded}");
    let mut passes = 0;
    let mut redelivered = 0;
    loop {
        passes += 1;
        // GitHub takes some 80 redelivery requests a minute from the App.
        s.clock.advance_ms(61_000);
        let pass = s.engine.recover_deliveries_once().await.unwrap();
        redelivered += pass.redelivered;
        s.webhooks_arrive().await;
        if pass.swept {
            break;
        }
        assert!(passes < 20, "the sweep never ends: {pass:?}");
    }
    let mut left = 0;
    for j in &jobs {
        if s.engine.store.job(*j).await.unwrap().is_none() {
            left += 1;
        }
    }
    eprintln!(
        "chaos burst: {stranded} of {} jobs stranded; {redelivered} redelivered in {passes} passes; {left} left",
        jobs.len()
    );
    assert_eq!(redelivered, stranded);
    assert_eq!(left, 0, "every job's queued reached rigger");
}

/// The account suspends the App with one job running and one waiting for a
/// machine: both end with the reason, the waiting one's machine is
/// destroyed (the running one's is kept to finish its job, I4), and the
/// installation's token is dropped, so a new one is minted once the App is
/// back.
async fn a_suspended_installation_ends_its_jobs() {
    let s = Story::begin("suspended").await;
    let running = s.a_job_is_queued("cirun-gpu--730");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(running).await, JobState::Running);
    let waiting = s.a_job_is_queued("cirun-gpu--731");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(waiting).await, JobState::WaitingForRunner);
    assert_eq!(s.vast.live_instances().len(), 2);
    let queued = s.a_job_is_queued("cirun-gpu--733");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(queued).await, JobState::Queued);
    let minted = s.engine.github.auth().tokens_minted();

    let installation = s.github.installation_of("acme");
    assert!(s.github.suspend_installation(installation));
    s.webhooks_arrive().await;
    for j in [running, waiting, queued] {
        let row = s.engine.store.job(j).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Failed, "job {j}: {row:?}");
        assert_eq!(row.failure.as_deref(), Some("access_lost"), "{row:?}");
        let why = row.reason.unwrap_or_default();
        assert!(why.contains("suspended"), "job {j} says why: {why}");
    }
    assert_eq!(
        s.vast.live_instances().len(),
        1,
        "no machine is left running for a suspended installation but the one running its job (I4)"
    );
    // Nothing more is rented for them.
    s.rigger_provisions().await;
    assert_eq!(s.instances_created(), 2);
    // Its jobs on GitHub: the queued ones are still queued (nothing can be
    // done there now); the running one's machine ends at its max lifetime
    // here (no bootstrap runs on the simulated boot to end it sooner).
    // The waiting job's runner registration, which rigger can no longer
    // delete, GitHub removes itself a day later (an ephemeral runner that
    // never connected).
    s.github.finish_job(running, "failure");
    s.clock.advance_ms(25 * 3_600_000);

    // The App is back: the next job mints a new token.
    assert!(s.github.unsuspend_installation(installation));
    s.webhooks_arrive().await;
    let next = s.a_job_is_queued("cirun-gpu--732");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert!(
        s.engine.github.auth().tokens_minted() > minted,
        "the suspended installation's token was dropped, not reused"
    );
    assert_eq!(s.job_state(next).await, JobState::WaitingForRunner);
    s.machines_boot();
    s.webhooks_arrive().await;
    s.github.finish_job(next, "success");
    s.github.cancel_job(waiting);
    s.github.cancel_job(queued);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// The App is uninstalled while one job runs and another waits. The
/// waiting job's machine, whose runner took nothing, is destroyed at once;
/// the running job's machine is not (I4): the job goes on on GitHub, where
/// a runner's registration is the repository's, not the App's. No
/// reconcile pass destroys it either. When the job ends its just-in-time
/// runner exits and the bootstrap destroys the machine with its own key;
/// the next pass closes its row.
async fn a_busy_machine_outlives_its_lost_installation_until_its_job_ends() {
    let s = Story::begin("uninstalled-busy").await;
    let running = s.a_job_is_queued("cirun-gpu--745");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    // The machine boots; its runner takes the job (the harness keeps the
    // boot's environment, which holds the machine's own Vast.ai key).
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    assert_eq!(booted.len(), 1);
    let runner = s
        .github
        .connect_runner(&harness::jit_config_of(&booted[0]))
        .unwrap();
    assert_eq!(s.github.take_job(runner), Some(running));
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(running).await, JobState::Running);
    let waiting = s.a_job_is_queued("cirun-gpu--746");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(waiting).await, JobState::WaitingForRunner);
    assert_eq!(s.vast.live_instances().len(), 2);

    assert!(
        s.github
            .delete_installation(s.github.installation_of("acme"))
    );
    s.webhooks_arrive().await;
    for j in [running, waiting] {
        let row = s.engine.store.job(j).await.unwrap().unwrap();
        assert_eq!(row.failure.as_deref(), Some("access_lost"), "{row:?}");
    }
    let live = s.vast.live_instances();
    assert_eq!(
        live.iter().map(|l| l.0).collect::<Vec<_>>(),
        [booted[0].id],
        "only the busy machine is left"
    );
    // Time passes, past the quiet and idle timeouts: still kept.
    for _ in 0..3 {
        s.clock.advance_ms(11 * 60_000);
        s.engine.reconcile_once().await.unwrap();
    }
    assert_eq!(s.vast.live_instances().len(), 1, "I4");

    // The job ends; the runner exits; the bootstrap destroys its machine.
    s.github.finish_job(running, "success");
    let key = booted[0]
        .env
        .iter()
        .find(|(k, _)| k == "CONTAINER_API_KEY")
        .map(|(_, v)| v.clone())
        .expect("a container's own key");
    let gone = reqwest::Client::new()
        .delete(format!("{}/api/v0/instances/{}/", s.vast_url, booted[0].id))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{gone:?}");
    s.clock.advance_ms(60_000);
    s.engine.reconcile_once().await.unwrap();
    let rows = s.engine.store.live_instances().await.unwrap();
    assert!(rows.is_empty(), "its row is closed: {rows:?}");
    assert!(s.vast.live_instances().is_empty());
}

/// The App is uninstalled with a job waiting: it fails with the reason, its
/// machine is destroyed, and the installation's tokens are refused.
async fn an_uninstalled_app_ends_its_jobs() {
    let s = Story::begin("uninstalled").await;
    let job = s.a_job_is_queued("cirun-gpu--740");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    let installation = s.github.installation_of("acme");
    assert!(s.github.delete_installation(installation));
    s.webhooks_arrive().await;
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Failed, "{row:?}");
    assert!(
        row.reason.unwrap_or_default().contains("uninstalled"),
        "says why"
    );
    assert!(s.vast.live_instances().is_empty());
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_jobs_failed_total{kind=\"access_lost\"}"),
        Some(&1.0)
    );
}

/// A repository is removed from the installation: its jobs end, another
/// repository's go on.
async fn a_removed_repository_ends_only_its_jobs() {
    let s = Story::begin("repo-removed").await;
    s.github
        .add_repo("acme/other", &[(".cirun.yml", harness::CIRUN)]);
    let gone = s.a_job_is_queued("cirun-gpu--750");
    let kept = s.github.queue_job(rigger::sim::github::NewJob {
        repo: "acme/other".into(),
        labels: vec!["cirun-gpu--751".into()],
        head_sha: "8f3c1e2d".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 600_000,
        conclusion: "success".into(),
    });
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert!(s.github.remove_repo_from_installation("acme/ml"));
    s.webhooks_arrive().await;
    let row = s.engine.store.job(gone).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Failed, "{row:?}");
    assert!(row.reason.unwrap_or_default().contains("removed"));
    assert_eq!(s.job_state(kept).await, JobState::WaitingForRunner);
    assert_eq!(
        s.vast.live_instances().len(),
        1,
        "only the kept job's machine"
    );
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(kept).await, JobState::Running);
    s.github.finish_job(kept, "success");
    s.github.cancel_job(gone);
    s.webhooks_arrive().await;
    // The removed repository's runner registration rigger cannot delete:
    // GitHub removes it a day later.
    s.clock.advance_ms(25 * 3_600_000);
    s.nothing_leaked().await;
}

/// GitHub revokes an installation token before its hour is up: rigger's
/// next call is answered 401, drops the cached token and goes on with a new
/// one, instead of failing the job as refused.
async fn a_revoked_token_is_dropped_and_replaced() {
    let s = Story::begin("revoked-token").await;
    let first = s.a_job_is_queued("cirun-gpu--780");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(first).await, JobState::WaitingForRunner);
    let minted = s.engine.github.auth().tokens_minted();
    s.github.revoke_tokens(s.github.installation_of("acme"));
    let second = s.a_job_is_queued("cirun-gpu--781");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let row = s.engine.store.job(second).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::WaitingForRunner, "{row:?}");
    assert_eq!(s.engine.github.auth().tokens_minted(), minted + 1);
    s.machines_boot();
    s.webhooks_arrive().await;
    for j in [first, second] {
        s.github.finish_job(j, "success");
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// With `github.cancel_runs_on_give_up`, a job rigger gives up on (no
/// definition for its labels) has its workflow run cancelled instead of
/// waiting 24 h on GitHub; without the setting, nothing is cancelled.
async fn a_given_up_job_has_its_run_cancelled_when_asked() {
    let s = Story::begin_with(
        "cancel-on-give-up",
        &[("RIGGER_GITHUB_CANCEL_RUNS_ON_GIVE_UP", "true")],
    )
    .await;
    let job = s.a_job_is_queued("cirun-nothing-matches--760");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Failed, "{row:?}");
    let on_github = s.github.job(job).unwrap();
    assert_eq!(on_github.status, JobStatus::Completed, "{on_github:?}");
    assert_eq!(on_github.conclusion.as_deref(), Some("cancelled"));
    assert_eq!(s.github.requests(CANCEL), 1);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Failed, "stays failed");

    // The App lacks Actions: write: logged (once), nothing else changes.
    s.github.fail_route(CANCEL, 10, 403);
    let a = s.a_job_is_queued("cirun-nothing-matches--761");
    let b = s.a_job_is_queued("cirun-nothing-matches--762");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    for j in [a, b] {
        assert_eq!(s.job_state(j).await, JobState::Failed);
    }
    let m = s.metrics().await;
    assert_eq!(
        m.get("rigger_runs_cancelled_total{result=\"not_permitted\"}"),
        Some(&2.0),
        "{m:?}"
    );
    for j in [a, b] {
        s.github.cancel_job(j);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

async fn runs_are_not_cancelled_by_default() {
    let s = Story::begin("no-cancel-by-default").await;
    let job = s.a_job_is_queued("cirun-nothing-matches--770");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Failed);
    assert_eq!(s.github.requests(CANCEL), 0);
    assert_eq!(s.github.job(job).unwrap().status, JobStatus::Queued);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

both_databases!(
    lost_queued_deliveries_are_recovered,
    a_failed_delivery_that_arrived_is_not_rented_twice,
    the_scan_pages_and_survives_a_restart,
    a_suspended_installation_ends_its_jobs,
    an_uninstalled_app_ends_its_jobs,
    a_busy_machine_outlives_its_lost_installation_until_its_job_ends,
    a_removed_repository_ends_only_its_jobs,
    a_revoked_token_is_dropped_and_replaced,
    the_scan_waits_out_a_rate_limit,
    a_given_up_job_has_its_run_cancelled_when_asked,
    runs_are_not_cancelled_by_default,
);

/// Two replicas on one database scan GitHub's delivery log once a minute
/// between them, not once each.
async fn replicas_share_the_scan() {
    let s = Story::begin("scan-turns").await;
    let other = s.another_replica().await;
    assert!(
        s.engine
            .recover_deliveries_if_due()
            .await
            .unwrap()
            .is_some()
    );
    assert!(other.recover_deliveries_if_due().await.unwrap().is_none());
    s.clock.advance_ms(rigger::engine::recover::SCAN_EVERY_MS);
    assert!(other.recover_deliveries_if_due().await.unwrap().is_some());
    assert!(
        s.engine
            .recover_deliveries_if_due()
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(s.github.requests("GET /app/hook/deliveries"), 2);
}

both_databases!(replicas_share_the_scan);
