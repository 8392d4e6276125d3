//! Every waiting job has a live machine that can still run it, or gets one;
//! and rigger rents again only for a job GitHub says is still queued, once.
//!
//! GitHub hands a job to any idle runner whose labels match it, so a
//! machine rented for job X may run its sibling Y. These stories make the
//! siblings swap machines on purpose, lose the deliveries that would have
//! told rigger, and kill the machines that were to run the job left over.
//! Stepped explicitly on the harness's manual clock (see `harness::Story`).

#[macro_use]
mod harness;

use harness::{Held, Story};
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::vast::HostStatus;
use rigger::store::InstanceRow;

/// Which job a held delivery is about.
fn job_of(h: &Held) -> i64 {
    let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    body["workflow_job"]["id"].as_i64().unwrap_or_default()
}

fn action_of(h: &Held) -> String {
    let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    body["action"].as_str().unwrap_or_default().to_string()
}

/// The machine rigger rented for a job (its latest).
async fn machine_of(s: &Story, job: i64) -> InstanceRow {
    let mut rows = s.engine.store.instances_for_job(job).await.unwrap();
    rows.sort_by_key(|i| i.created_at);
    rows.pop().expect("a machine was rented for the job")
}

fn provider_of(i: &InstanceRow) -> i64 {
    i.provider_id.as_deref().unwrap().parse().unwrap()
}

/// Time passes and machines boot; only the machines named, in this order,
/// start their runners, each taking what GitHub gives it (the oldest
/// queued job its labels match); the others' runners start when a later
/// step names them. Returns `(machine, job taken)`.
fn machines_boot_in_order(s: &Story, order: &[i64]) -> Vec<(i64, i64)> {
    let mut booted = Vec::new();
    // Boot takes the simulated Vast.ai's boot delay from each create.
    for _ in 0..4 {
        s.clock.advance_ms(30_000);
        s.vast.live_instances(); // steps the simulated Vast.ai
        booted.extend(s.booted.lock().unwrap().drain(..));
        if order.iter().all(|id| booted.iter().any(|b| b.id == *id)) {
            break;
        }
    }
    let mut taken = Vec::new();
    for id in order {
        let b = booted
            .iter()
            .find(|b| b.id == *id)
            .unwrap_or_else(|| panic!("machine {id} booted"));
        let runner = s
            .github
            .connect_runner(&harness::jit_config_of(b))
            .expect("the JIT config is accepted once");
        if let Some(job) = s.github.take_job(runner) {
            taken.push((b.id, job));
        }
    }
    let later = booted.into_iter().filter(|b| !order.contains(&b.id));
    s.booted.lock().unwrap().extend(later);
    taken
}

/// GitHub's deliveries since the hold, minus those `lost` says were lost;
/// the rest reach rigger, and deliveries flow again.
async fn deliveries_arrive_except(s: &Story, lost: impl Fn(&Held) -> bool) {
    let held = s.held_deliveries().await;
    s.release_webhooks();
    let kept: Vec<Held> = held.into_iter().filter(|h| !lost(h)).collect();
    s.deliver(&kept).await;
}

async fn everything_ends(s: &Story, jobs: &[i64]) {
    s.clock.advance_ms(600_000);
    for &job in jobs {
        s.github.finish_job(job, "success");
    }
    s.webhooks_arrive().await;
    for &job in jobs {
        assert_eq!(s.job_state(job).await, JobState::Completed, "job {job}");
    }
    s.nothing_leaked().await;
}

/// Y's `queued` was lost, so rigger rented only for X; X's machine runs Y
/// (the older job). X is left with no machine at all: rigger sees it,
/// asks GitHub, and rents for X again.
async fn a_job_whose_machine_ran_a_sibling_rigger_never_heard_of_gets_another() {
    let s = Story::begin("strand-lost-queued").await;
    s.hold_webhooks();
    let y = s.a_job_is_queued("cirun-gpu--1601");
    let x = s.a_job_is_queued("cirun-gpu--1601");
    deliveries_arrive_except(&s, |h| job_of(h) == y).await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(x).await, JobState::WaitingForRunner);
    assert_eq!(s.instances_created(), 1, "rigger knows only X");
    let m_x = machine_of(&s, x).await;

    let taken = machines_boot_in_order(&s, &[provider_of(&m_x)]);
    assert_eq!(
        taken,
        [(provider_of(&m_x), y)],
        "GitHub gives Y to X's machine"
    );
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(y).await, JobState::Running);
    assert_eq!(s.job_state(x).await, JobState::WaitingForRunner);

    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        s.job_state(x).await,
        JobState::Queued,
        "X, still queued on GitHub, has no machine that can run it: {:?}",
        s.events(x).await
    );
    s.rigger_provisions().await;
    let m_x2 = machine_of(&s, x).await;
    assert_ne!(m_x2.id, m_x.id, "{:?}", s.events(x).await);
    let taken = machines_boot_in_order(&s, &[provider_of(&m_x2)]);
    assert_eq!(taken, [(provider_of(&m_x2), x)]);
    s.webhooks_arrive().await;
    assert_eq!(s.instances_created(), 2, "one machine per job");
    everything_ends(&s, &[x, y]).await;
}

/// X's machine runs Y, and Y's machine dies before it boots: the job left
/// to it is X now, and X gets another machine.
async fn a_job_whose_sibling_took_its_machine_gets_another_when_the_siblings_machine_dies() {
    let s = Story::begin("strand-died").await;
    let y = s.a_job_is_queued("cirun-gpu--1602");
    let x = s.a_job_is_queued("cirun-gpu--1602");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let (m_x, m_y) = (machine_of(&s, x).await, machine_of(&s, y).await);
    assert!(
        s.vast
            .host_goes(provider_of(&m_y), HostStatus::Offline, None)
    );

    let taken = machines_boot_in_order(&s, &[provider_of(&m_x)]);
    assert_eq!(
        taken,
        [(provider_of(&m_x), y)],
        "GitHub gives Y to X's machine"
    );
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(y).await, JobState::Running);

    s.engine.reconcile_once().await.unwrap();
    let gone = s.engine.store.instance(&m_y.id).await.unwrap().unwrap();
    assert!(
        matches!(
            gone.state,
            InstanceState::Destroying | InstanceState::Destroyed
        ),
        "{gone:?}"
    );
    assert_eq!(
        s.job_state(x).await,
        JobState::Queued,
        "X's only machine that could run it died: {:?}",
        s.events(x).await
    );
    s.rigger_provisions().await;
    let m_x2 = machine_of(&s, x).await;
    let taken = machines_boot_in_order(&s, &[provider_of(&m_x2)]);
    assert_eq!(taken, [(provider_of(&m_x2), x)]);
    s.webhooks_arrive().await;
    everything_ends(&s, &[x, y]).await;
}

/// X's machine runs Y while Y's machine is still booting: Y's machine is
/// X's now. Nothing is rented again, Y's end does not take it down, and X
/// runs on it.
async fn a_job_whose_sibling_took_its_machine_gets_the_siblings_machine() {
    let s = Story::begin("strand-swap").await;
    let y = s.a_job_is_queued("cirun-gpu--1607");
    let x = s.a_job_is_queued("cirun-gpu--1607");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let (m_x, m_y) = (machine_of(&s, x).await, machine_of(&s, y).await);
    let taken = machines_boot_in_order(&s, &[provider_of(&m_x)]);
    assert_eq!(
        taken,
        [(provider_of(&m_x), y)],
        "GitHub gives Y to X's machine"
    );
    s.webhooks_arrive().await;
    let handed = s.engine.store.instance(&m_y.id).await.unwrap().unwrap();
    assert_eq!(handed.job_id, x, "Y's machine is X's now: {handed:?}");

    s.engine.reconcile_once().await.unwrap();
    s.rigger_provisions().await;
    assert_eq!(s.job_state(x).await, JobState::WaitingForRunner);
    assert_eq!(s.instances_created(), 2, "X has a machine: none rented");
    s.clock.advance_ms(300_000);
    s.github.finish_job(y, "success");
    s.webhooks_arrive().await;
    let kept = s.engine.store.instance(&m_y.id).await.unwrap().unwrap();
    assert!(kept.state.may_still_take_a_job(), "kept for X: {kept:?}");
    let taken = machines_boot_in_order(&s, &[provider_of(&m_y)]);
    assert_eq!(taken, [(provider_of(&m_y), x)]);
    s.webhooks_arrive().await;
    assert_eq!(s.instances_created(), 2, "one machine per job");
    everything_ends(&s, &[x]).await;
}

/// Three siblings: X's machine runs Y, Y's machine runs Z, and Z's machine
/// dies. X is the job left over, and it gets a machine.
async fn the_last_of_three_siblings_that_swapped_machines_gets_one() {
    let s = Story::begin("strand-chain").await;
    let y = s.a_job_is_queued("cirun-gpu--1603");
    let z = s.a_job_is_queued("cirun-gpu--1603");
    let x = s.a_job_is_queued("cirun-gpu--1603");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let (m_x, m_y, m_z) = (
        machine_of(&s, x).await,
        machine_of(&s, y).await,
        machine_of(&s, z).await,
    );
    assert!(
        s.vast
            .host_goes(provider_of(&m_z), HostStatus::Offline, None)
    );

    let taken = machines_boot_in_order(&s, &[provider_of(&m_x), provider_of(&m_y)]);
    assert_eq!(
        taken,
        [(provider_of(&m_x), y), (provider_of(&m_y), z)],
        "each machine takes the oldest queued job"
    );
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(y).await, JobState::Running);
    assert_eq!(s.job_state(z).await, JobState::Running);

    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        s.job_state(x).await,
        JobState::Queued,
        "X has no machine left that can run it: {:?}",
        s.events(x).await
    );
    s.rigger_provisions().await;
    let m_x2 = machine_of(&s, x).await;
    let taken = machines_boot_in_order(&s, &[provider_of(&m_x2)]);
    assert_eq!(taken, [(provider_of(&m_x2), x)]);
    s.webhooks_arrive().await;
    assert_eq!(s.instances_created(), 4, "Z's dead machine, then one for X");
    everything_ends(&s, &[x, y, z]).await;
}

/// The job ran and finished on its machine, whose runner then ended and
/// the machine with it (as the bootstrap script does); every delivery of
/// it was lost. Its machine is gone, but GitHub says the job is over: no
/// second machine.
async fn a_vanished_machine_whose_job_github_finished_is_not_rented_again() {
    let s = Story::begin("vanished-finished").await;
    let job = s.a_job_is_queued("cirun-gpu--1604");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let m = machine_of(&s, job).await;
    s.hold_webhooks();
    assert_eq!(
        machines_boot_in_order(&s, &[provider_of(&m)]),
        [(provider_of(&m), job)]
    );
    s.clock.advance_ms(300_000);
    s.github.finish_job(job, "success");
    assert!(
        s.vast.exit(provider_of(&m), 0),
        "the machine ends with its runner"
    );
    deliveries_arrive_except(&s, |h| job_of(h) == job).await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);

    s.engine.reconcile_once().await.unwrap();
    s.rigger_provisions().await;
    assert_eq!(
        s.instances_created(),
        1,
        "no second machine for a finished job"
    );
    assert_eq!(s.job_state(job).await, JobState::Completed);
    s.nothing_leaked().await;
}

/// GitHub runs the job on its machine (the `in_progress` was lost), then
/// the machine vanishes. GitHub will not hand a running job to another
/// runner: a second machine would only bill.
async fn a_vanished_machine_whose_job_github_runs_is_not_rented_again() {
    let s = Story::begin("vanished-running").await;
    let job = s.a_job_is_queued("cirun-gpu--1605");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let m = machine_of(&s, job).await;
    s.hold_webhooks();
    assert_eq!(
        machines_boot_in_order(&s, &[provider_of(&m)]),
        [(provider_of(&m), job)]
    );
    deliveries_arrive_except(&s, |h| action_of(h) == "in_progress").await;
    assert!(s.vast.exit(provider_of(&m), 137));

    s.engine.reconcile_once().await.unwrap();
    s.rigger_provisions().await;
    assert_eq!(
        s.instances_created(),
        1,
        "no second machine for a running job"
    );
    assert_eq!(s.job_state(job).await, JobState::Running);
    s.github.finish_job(job, "failure");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

both_databases!(
    a_job_whose_machine_ran_a_sibling_rigger_never_heard_of_gets_another,
    a_job_whose_sibling_took_its_machine_gets_another_when_the_siblings_machine_dies,
    a_job_whose_sibling_took_its_machine_gets_the_siblings_machine,
    the_last_of_three_siblings_that_swapped_machines_gets_one,
    a_vanished_machine_whose_job_github_finished_is_not_rented_again,
    a_vanished_machine_whose_job_github_runs_is_not_rented_again,
);

/// Two replicas on one PostgreSQL database. Replica A reads the world
/// while X's machine is gone; before A acts, replica B re-provisions X
/// (a new machine, a second attempt). A's plan, made from what it read,
/// must leave X alone: no third rental, no second live machine.
#[tokio::test]
async fn a_replica_acting_on_an_old_snapshot_does_not_rent_a_job_again() {
    if harness::postgres_url().is_none() {
        eprintln!("PostgreSQL skipped: RIGGER_TEST_POSTGRES_URL is not set (.ci/run sets it)");
        return;
    }
    harness::DB
        .scope(harness::Db::Postgres, async {
            let s = Story::begin("strand-stale-replica").await;
            let b = s.another_replica().await;
            let job = s.a_job_is_queued("cirun-gpu--1606");
            s.webhooks_arrive().await;
            s.rigger_provisions().await;
            let m = machine_of(&s, job).await;
            assert!(s.vast.host_goes(provider_of(&m), HostStatus::Offline, None));

            let old = s.engine.snapshot().await.unwrap();
            // Past Vast.ai's interval between two listings on one key.
            s.clock.advance_ms(10_000);
            b.reconcile_once().await.unwrap();
            assert_eq!(s.job_state(job).await, JobState::Queued, "B re-queues it");
            // B's own pass; the clock moves past Vast.ai's create interval.
            s.clock.advance_ms(10_000);
            b.provision_due().await.unwrap();
            assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
            assert_eq!(s.instances_created(), 2);

            s.engine.reconcile_from(&old).await.unwrap();
            assert_eq!(
                s.job_state(job).await,
                JobState::WaitingForRunner,
                "A leaves the job B re-provisioned where it is: {:?}",
                s.events(job).await
            );
            s.rigger_provisions().await;
            assert_eq!(s.instances_created(), 2, "rented twice, not three times");
            let m2 = machine_of(&s, job).await;
            let taken = machines_boot_in_order(&s, &[provider_of(&m2)]);
            assert_eq!(taken, [(provider_of(&m2), job)]);
            s.webhooks_arrive().await;
            everything_ends(&s, &[job]).await;
        })
        .await
}
