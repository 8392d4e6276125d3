//! A machine outlives its job by seconds, not a minute, when Vast.ai
//! refuses its destroy (issue #16, item 3): the destroy is tried again
//! after a backoff that starts at `timeouts.destroy_retry` (5 s) and
//! doubles up to `timeouts.destroy_retry_max` (30 s), or as long as a rate
//! limit says; the backoff is in the store, so a restart keeps it.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::ports::Clock;
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::vast::Faults;

/// A job ran on a machine and GitHub says it completed; the webhook
/// arrives while Vast.ai is in the state `faults` sets, and stays so.
async fn a_job_ends_while_vast_is(s: &Story, label: &str, faults: Faults) -> i64 {
    let job = s.a_job_is_queued(label);
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);
    s.github.finish_job(job, "success");
    s.vast.set_faults(faults);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    job
}

async fn its_machine(s: &Story, job: i64) -> rigger::store::InstanceRow {
    let mut rows = s.engine.store.instances_for_job(job).await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows.remove(0)
}

async fn a_refused_destroy_is_retried_within_seconds_backing_off() {
    let s = Story::begin("destroy-refused").await;
    // Vast.ai answers the destroy `success: false` twice.
    let refused = Faults {
        refuse_destroys: 2,
        ..Faults::default()
    };
    let job = a_job_ends_while_vast_is(&s, "cirun-gpu--1601", refused).await;
    assert_eq!(s.vast.live_instances().len(), 1, "the destroy was refused");
    let row = its_machine(&s, job).await;
    assert_eq!(row.state, InstanceState::Destroying);
    assert_eq!(row.destroy_attempts, 1);

    // Not before its backoff: 5 s after the refusal.
    s.clock.advance_ms(4_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(its_machine(&s, job).await.destroy_attempts, 1, "not yet");
    s.clock.advance_ms(1_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        its_machine(&s, job).await.destroy_attempts,
        2,
        "retried 5 s after the refusal, and refused again"
    );
    // The next wait is twice as long.
    s.clock.advance_ms(9_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(s.vast.live_instances().len(), 1, "10 s this time");
    s.clock.advance_ms(1_000);
    s.engine.reconcile_once().await.unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "destroyed 15 s after its job ended"
    );
    assert_eq!(its_machine(&s, job).await.state, InstanceState::Destroyed);
    s.nothing_leaked().await;
}

async fn a_destroy_failing_with_server_errors_is_retried_after_the_backoff() {
    let s = Story::begin("destroy-5xx").await;
    // Every call fails with a 500, past the client's own few retries.
    let job = a_job_ends_while_vast_is(
        &s,
        "cirun-gpu--1602",
        Faults {
            error_rate: 1.0,
            ..Faults::default()
        },
    )
    .await;
    s.vast.set_faults(Faults::default());
    assert_eq!(s.vast.live_instances().len(), 1, "the destroy failed");
    let row = its_machine(&s, job).await;
    assert_eq!(
        (row.state, row.destroy_attempts),
        (InstanceState::Destroying, 1)
    );
    s.clock.advance_ms(5_000);
    s.engine.reconcile_once().await.unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "retried 5 s later, not a minute"
    );
    s.nothing_leaked().await;
}

async fn a_rate_limited_destroy_is_retried_when_the_limit_says() {
    let s = Story::begin("destroy-429").await;
    // Vast.ai answers 429 with `Retry-After: 2`.
    let job = a_job_ends_while_vast_is(
        &s,
        "cirun-gpu--1603",
        Faults {
            rate_limit_burst: 1,
            retry_after_s: 2,
            ..Faults::default()
        },
    )
    .await;
    assert_eq!(s.vast.live_instances().len(), 1, "the destroy was refused");
    let row = its_machine(&s, job).await;
    assert_eq!(row.state, InstanceState::Destroying);
    let refused_at = s.clock.now_ms();
    let due = row.destroy_due_at.expect("a retry is scheduled");
    // The wait the answer named, and rigger's limiter's interval for
    // destroys (3 s) after it: not a minute.
    assert!(
        (2_000..=6_000).contains(&(due - refused_at)),
        "due {} ms after the 429",
        due - refused_at
    );
    s.clock.set_ms(due);
    s.engine.reconcile_once().await.unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "retried when the rate limit said"
    );
    s.nothing_leaked().await;
}

async fn a_destroy_backoff_survives_a_restart() {
    let mut s = Story::begin("destroy-restart").await;
    let refused = Faults {
        refuse_destroys: 3,
        ..Faults::default()
    };
    let job = a_job_ends_while_vast_is(&s, "cirun-gpu--1604", refused).await;
    // Refused at 0 s, again at 5 s and at 15 s: the next is due at 35 s.
    s.clock.advance_ms(5_000);
    s.engine.reconcile_once().await.unwrap();
    s.clock.advance_ms(10_000);
    s.engine.reconcile_once().await.unwrap();
    let row = its_machine(&s, job).await;
    assert_eq!(row.destroy_attempts, 3, "{row:?}");
    assert_eq!(row.destroy_due_at, Some(s.clock.now_ms() + 20_000));

    s.rigger_restarts().await;
    let row = its_machine(&s, job).await;
    assert_eq!(
        (row.destroy_attempts, row.destroy_due_at),
        (3, Some(s.clock.now_ms() + 20_000)),
        "the store keeps the backoff"
    );
    s.clock.advance_ms(19_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        s.vast.live_instances().len(),
        1,
        "a restart does not start the backoff again"
    );
    s.clock.advance_ms(1_000);
    s.engine.reconcile_once().await.unwrap();
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

both_databases!(
    a_refused_destroy_is_retried_within_seconds_backing_off,
    a_destroy_failing_with_server_errors_is_retried_after_the_backoff,
    a_rate_limited_destroy_is_retried_when_the_limit_says,
    a_destroy_backoff_survives_a_restart,
);
