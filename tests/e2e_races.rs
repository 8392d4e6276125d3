//! A job that ends while its provisioning worker is at work (issue #16,
//! item 7): each moment of the worker is held open on the simulators, the
//! job's `completed` is handled there, and the worker then goes on.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::vast::CreateHold;

/// Between renting and recording: Vast.ai has made the machine but its
/// answer has not reached the worker when the job's `completed` is
/// handled. The worker, once answered, finds the job over and destroys
/// the machine at once; nothing is left.
async fn a_job_completed_between_renting_and_recording_leaves_no_machine() {
    let s = Story::begin("completed-mid-rent").await;
    let job = s.a_job_is_queued("cirun-gpu--1701");
    s.webhooks_arrive().await;
    let provisioning = s
        .rigger_provisions_until_vast_holds(&[CreateHold::AfterRenting])
        .await;
    assert_eq!(s.vast.live_instances().len(), 1, "rented, not yet answered");
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    s.vast.release_held_creates();
    provisioning.await.unwrap().unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "the machine outlived its job"
    );
    let machines = s.engine.store.instances_for_job(job).await.unwrap();
    assert_eq!(machines.len(), 1, "{machines:?}");
    assert_eq!(machines[0].state, InstanceState::Destroyed);
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    s.nothing_leaked().await;
}

/// The demo's job cancelled while queued: its `completed` is handled while
/// the worker, having checked the job is still wanted, registers its
/// runner with GitHub. Nothing may be rented for it: the machine's row is
/// written only while the job is still the worker's.
async fn a_job_cancelled_while_its_runner_is_registered_rents_nothing() {
    let s = Story::begin("cancel-mid-register").await;
    let job = s.a_job_is_queued("cirun-gpu--1702");
    s.webhooks_arrive().await;
    s.github.hold_next_registrations(1);
    // Past Vast.ai's create interval since rigger started: the worker
    // takes its create slot before it registers the runner.
    s.clock.advance_ms(5_000);
    let engine = s.engine.clone();
    let provisioning = tokio::spawn(async move { engine.provision_due().await });
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.github.registrations_held(1),
    )
    .await
    .expect("the worker registers a runner");
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    s.github.release_held_registrations();
    provisioning.await.unwrap().unwrap();
    assert_eq!(s.instances_created(), 0, "a machine was rented for it");
    assert!(s.vast.live_instances().is_empty());
    assert!(
        s.engine
            .store
            .instances_for_job(job)
            .await
            .unwrap()
            .is_empty(),
        "no row either"
    );
    assert!(
        s.github.runners().is_empty(),
        "its registration is removed: {:?}",
        s.github.runners()
    );
    s.nothing_leaked().await;
}

/// Run a story on PostgreSQL only (replicas share a database there), or
/// say loudly that it was skipped.
async fn on_postgres(story: impl std::future::Future<Output = ()>) {
    if harness::postgres_url().is_none() {
        eprintln!("PostgreSQL skipped: RIGGER_TEST_POSTGRES_URL is not set (.ci/run sets it)");
        return;
    }
    harness::DB.scope(harness::Db::Postgres, story).await
}

/// A story for two replicas. They do not agree their Vast.ai slots
/// (README, "Vast.ai's rate limits"), so two on one key are refused as
/// often as their calls meet; these stories are about which replica works
/// a job, so Vast.ai's limits are lifted on both sides.
async fn two_replicas_story(name: &str) -> Story {
    let s = Story::begin_with(name, &[("RIGGER_VAST_RATE_LIMITS", "none")]).await;
    s.vast.set_limits(rigger::sim::vast::Limits::none());
    s
}

/// Replica A claims a job and is held registering its runner; the story
/// then decides whether A lives (renews its lease) or dies.
async fn replica_a_is_held_provisioning(
    s: &Story,
    label: &str,
) -> (
    i64,
    tokio::task::JoinHandle<Result<usize, rigger::engine::EngineError>>,
) {
    let job = s.a_job_is_queued(label);
    s.webhooks_arrive().await;
    s.github.hold_next_registrations(1);
    s.clock.advance_ms(5_000); // past Vast.ai's create interval
    let a = s.engine.clone();
    let pass = tokio::spawn(async move { a.provision_due().await });
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.github.registrations_held(1),
    )
    .await
    .expect("replica A registers a runner");
    assert_eq!(s.job_state(job).await, JobState::Provisioning);
    (job, pass)
}

/// Two replicas on PostgreSQL; A's worker dies mid-provisioning (its pass
/// is stopped while it registers the runner, so it renews nothing): B takes
/// the job over once A's lease (a minute) has run out, not after the
/// 5-minute provisioning timeout, and rents for it once.
#[tokio::test]
async fn a_dead_replicas_job_is_taken_over_when_its_lease_runs_out() {
    on_postgres(async {
        let s = two_replicas_story("lease-dead").await;
        let b = s.another_replica().await;
        let (job, a_pass) = replica_a_is_held_provisioning(&s, "cirun-gpu--1711").await;
        let claimed = s.engine.store.job(job).await.unwrap().unwrap();
        a_pass.abort();
        assert!(a_pass.await.unwrap_err().is_cancelled());

        // Not while the lease runs.
        s.clock
            .set_ms(claimed.lease_until.expect("a claimed job has a lease") - 1);
        b.reconcile_once().await.unwrap();
        assert_eq!(s.job_state(job).await, JobState::Provisioning);
        // Once it has run out: B puts it back and rents for it.
        s.clock.advance_ms(1);
        b.reconcile_once().await.unwrap();
        assert_eq!(s.job_state(job).await, JobState::Queued, "taken over");
        b.provision_due().await.unwrap();
        assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
        assert_eq!(s.vast.live_instances().len(), 1, "one machine");
        let machines = s.engine.store.instances_for_job(job).await.unwrap();
        assert_eq!(machines.len(), 1, "{machines:?}");
        s.github.cancel_job(job);
        s.webhooks_arrive().await;
        // A's registration was never answered: nothing of A's is left.
        s.nothing_leaked().await;
    })
    .await
}

/// Two replicas on PostgreSQL; A's worker is slow but alive, renewing its
/// lease every heartbeat: B never takes the job, however long A takes (past
/// the old 5-minute timeout), and A rents the one machine.
#[tokio::test]
async fn a_live_replicas_job_is_never_taken_while_it_renews_its_lease() {
    on_postgres(async {
        let s = two_replicas_story("lease-live").await;
        let b = s.another_replica().await;
        let (job, a_pass) = replica_a_is_held_provisioning(&s, "cirun-gpu--1712").await;
        let attempts = s.engine.store.job(job).await.unwrap().unwrap().attempts;
        // Eight heartbeats 45 s apart (inside the one-minute lease): six
        // minutes in all.
        for _ in 0..8 {
            s.clock.advance_ms(45_000);
            s.engine.renew_leases().await;
            b.reconcile_once().await.unwrap();
            let row = s.engine.store.job(job).await.unwrap().unwrap();
            assert_eq!(
                (row.state, row.attempts),
                (JobState::Provisioning, attempts),
                "taken from a live worker"
            );
        }
        s.github.release_held_registrations();
        a_pass.await.unwrap().unwrap();
        assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
        b.provision_due().await.unwrap();
        assert_eq!(s.vast.live_instances().len(), 1, "one machine, A's");
        s.github.cancel_job(job);
        s.webhooks_arrive().await;
        s.nothing_leaked().await;
    })
    .await
}

both_databases!(
    a_job_completed_between_renting_and_recording_leaves_no_machine,
    a_job_cancelled_while_its_runner_is_registered_rents_nothing,
);
