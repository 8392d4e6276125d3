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

both_databases!(
    a_job_completed_between_renting_and_recording_leaves_no_machine,
    a_job_cancelled_while_its_runner_is_registered_rents_nothing,
);
