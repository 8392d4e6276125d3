//! A reconcile plan is carried out against the world as it is by then, not
//! as it was read: another replica's pass, a webhook or a provisioning
//! worker may have moved a machine between the snapshot and the action.
//! Each action acts only on the state it was planned from. Each story
//! reads the world, lets it move, then applies the plan made from the old
//! read (`Engine::reconcile_from`), as a slow replica on PostgreSQL would.
//! Stepped explicitly on the harness's manual clock (see `harness::Story`).

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::ports::Clock;
use rigger::engine::reconcile::{Action, Rule, plan};
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::vast::CreateHold;
use rigger::store::InstanceRow;

const MIN: i64 = 60_000;

async fn machine_of(s: &Story, job: i64) -> InstanceRow {
    let mut rows = s.engine.store.instances_for_job(job).await.unwrap();
    rows.sort_by_key(|i| i.created_at);
    rows.pop().expect("a machine was rented for the job")
}

/// What the engine would do with this snapshot now.
fn planned(s: &Story, old: &rigger::engine::reconcile::Snapshot) -> Vec<(Rule, Action)> {
    plan(old, s.clock.now_ms(), &s.engine.limits())
}

/// A machine past the bootstrap timeout whose runner is not online when
/// the world is read; before the plan is carried out, its runner comes up
/// and takes its job. The destroy was decided for a booting machine with
/// no runner; the machine is now busy, and stays (I4).
async fn a_boot_timeout_planned_before_the_runner_took_its_job_leaves_the_busy_machine() {
    let s = Story::begin("stale-boot-timeout").await;
    let job = s.a_job_is_queued("cirun-gpu--1701");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let m = machine_of(&s, job).await;
    assert_eq!(m.state, InstanceState::Booting);

    // Its runner is slow to start: past the bootstrap timeout, not online.
    s.clock.advance_ms(21 * MIN);
    let old = s.engine.snapshot().await.unwrap();
    assert!(
        planned(&s, &old)
            .iter()
            .any(|(rule, a)| *rule == Rule::BootTimeout
                && matches!(a, Action::Destroy { instance_id, .. } if *instance_id == m.id)),
        "the old read plans the machine's destroy"
    );

    // Now it starts, takes its job, and rigger hears so.
    assert_eq!(s.machines_boot().len(), 1, "its runner takes the job");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);

    s.engine.reconcile_from(&old).await.unwrap();
    let now = s.engine.store.instance(&m.id).await.unwrap().unwrap();
    assert_eq!(now.state, InstanceState::Busy, "a busy machine is kept");
    assert_eq!(s.vast.live_instances().len(), 1);
    assert_eq!(s.job_state(job).await, JobState::Running);

    s.clock.advance_ms(MIN);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    s.nothing_leaked().await;
}

/// A create call not answered past the create timeout, its label found on
/// no Vast.ai instance when the world is read: the plan marks the row
/// failed. Before that is carried out, the create is answered and the
/// machine is tracked. The stale plan is a no-op, not a failed action.
async fn a_stuck_create_planned_before_its_answer_came_leaves_the_machine() {
    let s = Story::begin("stale-stuck-create").await;
    let job = s.a_job_is_queued("cirun-gpu--1702");
    s.webhooks_arrive().await;
    let pass = s
        .rigger_provisions_until_vast_holds(&[CreateHold::BeforeRenting])
        .await;
    let m = machine_of(&s, job).await;
    assert_eq!(m.state, InstanceState::Creating);

    s.clock.advance_ms(6 * MIN);
    let old = s.engine.snapshot().await.unwrap();
    assert!(
        planned(&s, &old)
            .iter()
            .any(|(rule, a)| *rule == Rule::StuckCreate
                && matches!(a, Action::MarkFailed { instance_id, .. } if *instance_id == m.id)),
        "the old read plans the row failed"
    );

    // Vast.ai answers at last: the machine exists and its row says so.
    s.vast.release_held_creates();
    pass.await.unwrap().unwrap();
    let waiting = machine_of(&s, job).await;
    assert_eq!(waiting.state, InstanceState::Booting);
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);

    s.engine.reconcile_from(&old).await.unwrap();
    let now = s.engine.store.instance(&m.id).await.unwrap().unwrap();
    assert_eq!(now.state, InstanceState::Booting, "not marked failed");
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    let errors: f64 = s
        .metrics()
        .await
        .iter()
        .filter(|(k, _)| k.starts_with("rigger_reconcile_errors_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(errors, 0.0, "a plan the world moved past is no error");
    s.rigger_provisions().await;
    assert_eq!(s.instances_created(), 1, "no second machine");

    s.machines_boot();
    s.webhooks_arrive().await;
    s.clock.advance_ms(MIN);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    s.nothing_leaked().await;
}

both_databases!(
    a_boot_timeout_planned_before_the_runner_took_its_job_leaves_the_busy_machine,
    a_stuck_create_planned_before_its_answer_came_leaves_the_machine,
);
