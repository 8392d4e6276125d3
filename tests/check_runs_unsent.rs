//! A check-run update rigger wanted but GitHub never got is a leak: the
//! user's run stays "in progress" for good. The harness's `nothing_leaked`
//! fails a story that ends so, unless the story expects it; and an update
//! rigger stored but did not send before it stopped is sent after it
//! starts again.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::ports::Clock;
use rigger::engine::state::JobState;
use rigger::sim::github::NewJob;

const SHA: &str = "8f3c1e2d";
/// How long rigger leaves a stored update to the call that stored it before
/// the reconciler takes it over (`engine::report`'s grace).
const GRACE_MS: i64 = 60_000;

fn job_on(label: &str) -> NewJob {
    NewJob {
        repo: "acme/ml".into(),
        labels: vec![label.into()],
        head_sha: SHA.into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 600_000,
        conclusion: "success".into(),
    }
}

/// A job that has its machine and runs.
async fn a_running_job(s: &Story, label: &str) -> i64 {
    let job = s.github.queue_job(job_on(label));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);
    job
}

async fn an_update_stored_before_rigger_stopped_is_sent_after_it_starts() {
    let mut s = Story::begin("unsent-restart").await;
    let job = a_running_job(&s, "cirun-gpu--71").await;
    let patches = |s: &Story| s.github.requests("PATCH /repos/acme/ml/check-runs/:id");

    // rigger keeps an update as wanted (what `report` does first) and
    // stops before sending it: a crash, nothing finished.
    let now = s.clock.now_ms();
    let version = s
        .engine
        .store
        .want_check_run(
            job,
            "Running on 1x RTX 4090",
            "The job has started on its machine.",
            None,
            now,
            now + GRACE_MS,
        )
        .await
        .unwrap();
    assert!(version.is_some(), "the update is kept");
    s.rigger_restarts().await;
    let before = patches(&s);

    // Within the grace its sender might still be sending it: not twice.
    s.clock.advance_ms(GRACE_MS / 2);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        patches(&s),
        before,
        "not sent while its sender may still be at it"
    );

    // After it, the restarted rigger's reconciler sends it.
    s.clock.advance_ms(GRACE_MS);
    s.engine.reconcile_once().await.unwrap();
    let shown = s.github.displayed_check_runs("acme/ml", SHA);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(
        (shown[0].title.as_str(), shown[0].summary.as_str()),
        (
            "Running on 1x RTX 4090",
            "The job has started on its machine."
        ),
        "GitHub shows the update rigger stored before it stopped: {:?}",
        shown[0]
    );
    assert_eq!(patches(&s), before + 1, "sent once");
    let row = s.engine.store.check_run(job).await.unwrap().unwrap();
    assert!(!row.unsent(), "nothing left to send: {row:?}");

    s.clock.advance_ms(600_000);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// GitHub refusing a final update for good (here a 422) leaves it unsent:
/// a story that means it says so, and the harness checks it is.
async fn an_update_github_refused_for_good_stays_unsent_and_the_story_says_so() {
    let s = Story::begin("unsent-refused").await;
    let job = a_running_job(&s, "cirun-gpu--72").await;
    s.clock.advance_ms(600_000);
    s.github.finish_job(job, "success");
    s.github
        .fail_route("PATCH /repos/acme/ml/check-runs/:id", 1, 422);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    let events = s.events(job).await;
    assert!(
        events.iter().any(|(kind, _)| kind == "check_run_given_up"),
        "rigger says it gave the update up: {events:?}"
    );
    s.expects_an_unsent_check_run(job);
    s.nothing_leaked().await;
}

both_databases!(
    an_update_stored_before_rigger_stopped_is_sent_after_it_starts,
    an_update_github_refused_for_good_stays_unsent_and_the_story_says_so,
);

/// The check itself can fail: the same story without saying it expects the
/// unsent update is a leak.
#[tokio::test]
#[should_panic(expected = "is over but its check-run update was never sent")]
async fn a_story_that_leaves_an_update_unsent_unsaid_fails() {
    let s = Story::begin("unsent-unsaid").await;
    let job = a_running_job(&s, "cirun-gpu--73").await;
    s.clock.advance_ms(600_000);
    s.github.finish_job(job, "success");
    s.github
        .fail_route("PATCH /repos/acme/ml/check-runs/:id", 1, 422);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}
