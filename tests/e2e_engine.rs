//! rigger end to end over real HTTP: the real server and engine against the
//! simulated GitHub and Vast.ai, stepped explicitly (deliveries, provisioning,
//! reconciling) on an injected clock. Each story ends by checking that
//! nothing leaked (see `harness::Story::nothing_leaked`).

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::github::NewJob;
use rigger::sim::vast::CreateHold;

async fn a_job_gets_a_gpu_and_the_gpu_dies_with_the_job() {
    let s = Story::begin("happy").await;
    // A repository the App can see but where no job ever ran.
    s.github.add_repo("acme/quiet", &[]);
    let job = s.a_job_is_queued("cirun-gpu--101");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Queued);

    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 1, "one machine rented");
    assert!(
        live[0].1.as_deref().unwrap().starts_with("rigger:e2e:"),
        "labelled with the controller id"
    );
    assert_eq!(s.github.runners().len(), 1, "one JIT runner registered");

    let taken = s.machines_boot();
    assert_eq!(taken.len(), 1);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);

    s.clock.advance_ms(600_000);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(s.vast.live_instances().is_empty(), "destroyed on completed");
    let ledger = s.vast.ledger();
    assert_eq!(ledger.len(), 1);
    assert!(ledger[0].dollars > 0.0);
    // The check run ends with the GPU, where, how long and what it cost:
    // the same figure as the ledger's.
    let checks = s.github.check_runs();
    assert_eq!(checks.len(), 1, "{checks:?}");
    let run = &checks[0];
    assert_eq!(run.status, "completed");
    assert_eq!(run.conclusion.as_deref(), Some("success"));
    let row = &s.engine.store.costs_for_job(job).await.unwrap()[0];
    assert!(
        run.title.starts_with("1× RTX 4090: 10.5 min"),
        "{}",
        run.title
    );
    assert!(
        run.title.ends_with(&format!("${:.4}", row.cost_usd())),
        "{}",
        run.title
    );
    assert!(
        run.summary.contains(", US |"),
        "the location: {}",
        run.summary
    );

    // What happened shows in /metrics.
    let m = s.metrics().await;
    let at = |k: &str| {
        m.get(k)
            .copied()
            .unwrap_or_else(|| panic!("no {k} in {m:?}"))
    };
    assert_eq!(
        at(r#"rigger_deliveries_total{event="workflow_job",result="accepted"}"#),
        3.0,
        "queued, in_progress, completed"
    );
    assert_eq!(at("rigger_provisioning_seconds_count"), 1.0);
    assert_eq!(at("rigger_time_to_runner_seconds_count"), 1.0);
    assert!((at("rigger_spend_dollars_total") - row.cost_usd()).abs() < 1e-9);
    assert_eq!(at(r#"rigger_jobs{state="completed"}"#), 1.0);
    s.nothing_leaked().await;
    // The reconciler looked for runners where the job was, not everywhere.
    assert!(s.github.requests("GET /repos/acme/ml/actions/runners") >= 1);
    assert_eq!(
        s.github.requests("GET /repos/acme/quiet/actions/runners"),
        0
    );
}

async fn a_job_cancelled_while_its_machine_boots_leaves_nothing_behind() {
    let s = Story::begin("cancel").await;
    let job = s.a_job_is_queued("cirun-gpu--202");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.vast.live_instances().len(), 1);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    assert!(
        s.vast.live_instances().is_empty(),
        "the booting machine is destroyed"
    );
    s.engine.reconcile_once().await.unwrap();
    s.nothing_leaked().await;
}

async fn a_lost_completed_webhook_is_repaired_by_the_reconciler() {
    let s = Story::begin("lost").await;
    let job = s.a_job_is_queued("cirun-gpu--303");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);

    s.github.finish_job(job, "success");
    s.github
        .set_webhook_faults(rigger::sim::github::WebhookFaults {
            loss_rate: 1.0,
            ..Default::default()
        });
    s.webhooks_arrive().await; // lost
    assert_eq!(s.job_state(job).await, JobState::Running);

    // Long enough for the reconciler to ask GitHub about a silent job.
    s.clock.advance_ms(30 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(
        s.vast.live_instances().is_empty(),
        "destroyed by the reconciler"
    );
    let metrics = s.metrics().await;
    let acted = metrics
        .iter()
        .filter(|(k, _)| {
            k.starts_with("rigger_reconciler_actions_total")
                && k.contains("job_completed_elsewhere")
        })
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert!(acted >= 1.0, "the rule is counted: {metrics:?}");
    s.nothing_leaked().await;
}

async fn duplicated_and_reordered_deliveries_change_nothing() {
    let s = Story::begin("dupes").await;
    s.github
        .set_webhook_faults(rigger::sim::github::WebhookFaults {
            duplicate_rate: 1.0,
            reorder: true,
            ..Default::default()
        });
    let a = s.a_job_is_queued("cirun-gpu--401");
    let b = s.a_job_is_queued("cirun-gpu-24gb--402");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.vast.live_instances().len(),
        2,
        "one machine per job, not per delivery"
    );
    assert_eq!(
        s.github
            .requests("GET /repos/acme/ml/actions/runners/downloads"),
        1,
        "the runner's checksum is asked for once, not per machine"
    );
    assert_eq!(s.github.runners().len(), 2);
    s.machines_boot();
    s.webhooks_arrive().await;
    s.github.finish_job(a, "success");
    // `completed` may now arrive before `in_progress` of the other job.
    s.github.finish_job(b, "failure");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(a).await, JobState::Completed);
    assert_eq!(s.job_state(b).await, JobState::Completed);
    assert!(s.vast.live_instances().is_empty());
    assert_eq!(s.vast.ledger().len(), 2);
    s.nothing_leaked().await;
}

async fn vast_rate_limits_and_errors_are_ridden_out() {
    let s = Story::begin("vast-faults").await;
    let job = s.a_job_is_queued("cirun-gpu--501");
    s.webhooks_arrive().await;
    // Every Vast.ai call fails for now: the job waits, nothing is rented.
    s.vast.set_faults(rigger::sim::vast::Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    s.rigger_provisions().await;
    assert!(s.vast.live_instances().is_empty());
    assert!(
        !s.job_state(job).await.is_terminal(),
        "a cloud error is not the job's end"
    );
    // A burst of 429s (another tool on the key): each closes the endpoint
    // for at least its interval (a minute for search, doubling), and the
    // job comes back then, in its normal backoff.
    s.vast.set_faults(rigger::sim::vast::Faults {
        rate_limit_burst: 2,
        ..Default::default()
    });
    s.clock.advance_ms(10 * 60_000); // past the retry backoff
    s.rigger_provisions().await;
    assert!(
        s.vast.live_instances().is_empty(),
        "refused, not retried at once"
    );
    for _ in 0..10 {
        s.clock.advance_ms(60_000);
        s.rigger_provisions().await;
    }
    assert_eq!(s.vast.live_instances().len(), 1);
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    let m = s.metrics().await;
    let errors: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("rigger_cloud_errors_total{"))
        .map(|(_, v)| v)
        .sum();
    assert!(errors >= 1.0, "Vast.ai errors are counted by kind: {m:?}");
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

async fn a_job_over_the_daily_budget_is_refused_with_the_reason() {
    let s = Story::begin_with("budget", &[("RIGGER_DAILY_BUDGET", "0.001")]).await;
    let job = s.a_job_is_queued("cirun-gpu--601");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert!(s.vast.live_instances().is_empty(), "nothing rented");
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    let why = row.reason.unwrap_or_default();
    assert!(why.contains("budget"), "{why}");
    let checks = s.github.check_runs();
    assert!(
        checks
            .iter()
            .any(|c| c.summary.contains("budget") || c.title.contains("budget")),
        "{checks:?}"
    );
    s.nothing_leaked().await;
}

async fn offers_taken_before_rent_move_on_and_an_unanswered_create_is_adopted_by_label() {
    let s = Story::begin("races").await;
    // Every offer rigger picks is rented by someone else first.
    s.vast.set_faults(rigger::sim::vast::Faults {
        steal_rate: 1.0,
        ..Default::default()
    });
    let job = s.a_job_is_queued("cirun-gpu--801");
    s.webhooks_arrive().await;
    // One pass: each offer taken costs a create slot, and the clock is left
    // where it is (the next slot would only meet the next thief).
    s.rigger_provisions_once().await;
    assert!(s.vast.live_instances().is_empty());
    assert!(
        !s.job_state(job).await.is_terminal(),
        "it waits for capacity"
    );

    // Now the create happens but its answer is lost (a 502): rigger must
    // not rent twice; it finds the machine by its label and adopts it.
    s.vast.set_faults(rigger::sim::vast::Faults {
        ambiguous_create_rate: 1.0,
        ..Default::default()
    });
    s.clock.advance_ms(10 * 60_000);
    s.rigger_provisions().await;
    s.vast.set_faults(rigger::sim::vast::Faults::default());
    s.engine.reconcile_once().await.unwrap();
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 1, "one machine, not two: {live:?}");
    let rows = s.engine.store.live_instances().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].provider_id.as_deref(),
        Some(live[0].0.to_string().as_str()),
        "adopted"
    );
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

async fn a_fork_cannot_choose_what_rigger_rents() {
    let s = Story::begin_with("fork", &[("RIGGER_CONFIG_SOURCE", "head_commit")]).await;
    // The pull request's commit asks for two GPUs under the same label.
    let theirs = "runners:\n  - name: gpu-container\n    cloud: vast_ai\n    instance_type: 2xRTX_3090\n    labels: [cirun-gpu]\n";
    s.github
        .add_files_at("acme/ml", "feedbeef", &[(".cirun.yml", theirs)]);
    let queue = |fork: bool, label: &str| {
        s.github.queue_job(NewJob {
            repo: "acme/ml".into(),
            labels: vec![label.into()],
            head_sha: "feedbeef".into(),
            fork,
            actor: "outsider".into(),
            duration_ms: 60_000,
            conclusion: "success".into(),
        })
    };
    let from_fork = queue(true, "cirun-gpu--901");
    let from_branch = queue(false, "cirun-gpu--902");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let gpus = |job: i64| {
        let e = s.engine.clone();
        async move {
            let i = e
                .store
                .instances_for_job(job)
                .await
                .unwrap()
                .pop()
                .expect("a machine");
            (i.num_gpus, i.gpu_name)
        }
    };
    assert_eq!(
        gpus(from_fork).await,
        (Some(1), Some("RTX 4090".into())),
        "the fork gets the default branch's definition"
    );
    assert_eq!(
        gpus(from_branch).await,
        (Some(2), Some("RTX 3090".into())),
        "a branch of the repository may bring its own"
    );
    s.github.cancel_job(from_fork);
    s.github.cancel_job(from_branch);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// The action of a caught `workflow_job` delivery.
fn action_of(h: &harness::Held) -> String {
    let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    body["action"].as_str().unwrap_or_default().to_string()
}

async fn completed_arriving_before_in_progress_still_ends_the_job_and_its_machine() {
    let s = Story::begin("completed-first").await;
    let job = s.a_job_is_queued("cirun-gpu--1001");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.hold_webhooks();
    s.machines_boot(); // the runner takes the job: `in_progress`
    s.clock.advance_ms(60_000);
    s.github.finish_job(job, "success"); // `completed`
    let mut held = s.held_deliveries().await;
    let sent: Vec<String> = held.iter().map(action_of).collect();
    assert_eq!(sent, ["in_progress", "completed"]);
    held.reverse();
    s.deliver(&held).await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(s.vast.live_instances().is_empty(), "destroyed on completed");
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.conclusion.as_deref(), Some("success"));
    s.release_webhooks();
    s.nothing_leaked().await;
}

async fn a_job_cancelled_while_queued_rents_nothing() {
    let s = Story::begin("cancel-queued").await;
    let job = s.a_job_is_queued("cirun-gpu--1101");
    s.webhooks_arrive().await;
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    s.rigger_provisions().await;
    assert!(s.vast.live_instances().is_empty());
    assert!(s.vast.ledger().is_empty(), "nothing was ever rented");
    assert!(s.github.runners().is_empty(), "no runner registered");
    s.nothing_leaked().await;
}

async fn a_job_taken_by_another_jobs_runner_is_bound_by_runner_name() {
    let s = Story::begin("crossed").await;
    // Two jobs of one run with the same label: GitHub may give either job
    // to either machine's runner.
    let first = s.a_job_is_queued("cirun-gpu--1201");
    let second = s.a_job_is_queued("cirun-gpu--1201");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.vast.live_instances().len(), 2);
    let machine_of = |job: i64| {
        let e = s.engine.clone();
        async move { e.store.instances_for_job(job).await.unwrap().pop().unwrap() }
    };
    let (m_first, m_second) = (machine_of(first).await, machine_of(second).await);
    // The second job's machine boots first, and its runner takes the first job.
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let mut booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    booted.sort_by_key(|b| {
        b.id != m_second
            .provider_id
            .as_deref()
            .unwrap()
            .parse::<i64>()
            .unwrap()
    });
    let mut took = Vec::new();
    for b in booted {
        let runner = s
            .github
            .connect_runner(&harness::jit_config_of(&b))
            .unwrap();
        took.push(s.github.take_job(runner).unwrap());
    }
    assert_eq!(took, [first, second], "crossed over");
    s.webhooks_arrive().await;
    let row = s.engine.store.job(first).await.unwrap().unwrap();
    assert_eq!(
        row.runner_name.as_deref(),
        Some(m_second.runner_name.as_str())
    );

    // The first job ends: the machine that ran it dies, not the one rented
    // for it, which is busy with the second job (I4) — nor does the
    // reconciler, which sees a busy machine whose own job is over, kill it.
    s.github.finish_job(first, "success");
    s.webhooks_arrive().await;
    let m_first_id = m_first
        .provider_id
        .as_deref()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    let live = || {
        s.vast
            .live_instances()
            .iter()
            .map(|l| l.0)
            .collect::<Vec<i64>>()
    };
    assert_eq!(live(), [m_first_id]);
    s.clock.advance_ms(11 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(live(), [m_first_id], "still running the second job");
    s.github.finish_job(second, "success");
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    assert_eq!(s.job_state(first).await, JobState::Completed);
    assert_eq!(s.job_state(second).await, JobState::Completed);
    s.nothing_leaked().await;
}

async fn a_runner_left_idle_is_deregistered_its_machine_destroyed_and_the_job_served_again() {
    let s = Story::begin("idle").await;
    let job = s.a_job_is_queued("cirun-gpu--1301");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    // The machine boots and its runner comes online, but GitHub never hands
    // it the job (as when it goes to a runner outside rigger's view).
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    assert_eq!(booted.len(), 1);
    s.github
        .connect_runner(&harness::jit_config_of(&booted[0]))
        .unwrap();
    let first = s
        .engine
        .store
        .instances_for_job(job)
        .await
        .unwrap()
        .remove(0);
    s.engine.reconcile_once().await.unwrap();
    let row = s.engine.store.instance(&first.id).await.unwrap().unwrap();
    assert_eq!(
        row.state,
        InstanceState::Online,
        "marked online from GitHub's list"
    );

    // Past the idle timeout: deregistered first, then destroyed, and the
    // job, still queued on GitHub, goes back to rigger's queue.
    s.clock.advance_ms(11 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    let row = s.engine.store.instance(&first.id).await.unwrap().unwrap();
    assert_eq!(row.state, InstanceState::Destroyed, "{row:?}");
    assert!(s.github.runners().is_empty(), "its runner is deregistered");
    assert!(s.vast.live_instances().is_empty());
    assert_eq!(s.job_state(job).await, JobState::Queued);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    assert_eq!(s.instances_created(), 2);
    let taken = s.machines_boot();
    assert_eq!(taken.len(), 1, "the second machine's runner takes the job");
    s.webhooks_arrive().await;
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

async fn a_create_that_answers_after_its_row_was_written_off_is_destroyed_and_paid_for() {
    let s = Story::begin("late-create").await;
    let job = s.a_job_is_queued("cirun-gpu--1461");
    s.webhooks_arrive().await;
    let provisioning = s
        .rigger_provisions_until_vast_holds(&[CreateHold::BeforeRenting])
        .await;
    // Past the create timeout with nothing carrying its label, the machine
    // is written off as never made (rule 2): nothing to pay for.
    s.clock.advance_ms(6 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    let rows = s.engine.store.instances_for_job(job).await.unwrap();
    assert_eq!(rows[0].state, rigger::engine::state::InstanceState::Failed);
    assert!(s.engine.store.costs_for_job(job).await.unwrap().is_empty());
    // Then Vast.ai makes it after all: rigger destroys it the moment it
    // hears, and records what it cost.
    s.vast.release_held_creates();
    provisioning.await.unwrap().unwrap();
    assert!(s.vast.live_instances().is_empty(), "no untracked machine");
    let costs = s.engine.store.costs_for_job(job).await.unwrap();
    assert_eq!(costs.len(), 1, "{costs:?}");
    let waited = 6 * 60;
    assert!(
        costs[0].seconds >= waited,
        "from the create call on: {costs:?}"
    );
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

fn job_of(h: &harness::Held) -> i64 {
    let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    body["workflow_job"]["id"].as_i64().unwrap_or_default()
}

async fn a_machine_whose_runner_just_took_another_job_outlives_the_job_it_was_rented_for() {
    let s = Story::begin("just-took").await;
    let first = s.a_job_is_queued("cirun-gpu--1251");
    let second = s.a_job_is_queued("cirun-gpu--1251");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let machine_of = |job: i64| {
        let e = s.engine.clone();
        async move { e.store.instances_for_job(job).await.unwrap().pop().unwrap() }
    };
    let (m_first, m_second) = (machine_of(first).await, machine_of(second).await);
    // Both machines boot, and their runners take each other's job. rigger
    // hears that the first job runs on the second machine, not yet that
    // the first machine's runner took the second job.
    s.hold_webhooks();
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let mut booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    let provider = |m: &rigger::store::InstanceRow| m.provider_id.clone().unwrap();
    booted.sort_by_key(|b| b.id.to_string() != provider(&m_second));
    for b in booted {
        let runner = s
            .github
            .connect_runner(&harness::jit_config_of(&b))
            .unwrap();
        s.github.take_job(runner).unwrap();
    }
    s.github.finish_job(first, "success");
    let held = s.held_deliveries().await;
    let (now, later): (Vec<_>, Vec<_>) = held.into_iter().partition(|h| job_of(h) == first);
    s.deliver(&now).await;
    // The first job is over: the machine that ran it is destroyed, and the
    // one rented for it is kept: when the first job took the second's
    // machine, the second was given the first's (its runner is busy with
    // the second job on GitHub, though rigger has not heard yet).
    let live: Vec<String> = s
        .vast
        .live_instances()
        .iter()
        .map(|l| l.0.to_string())
        .collect();
    assert_eq!(live, [provider(&m_first)], "I4");
    assert!(
        s.events(second)
            .await
            .iter()
            .any(|(kind, _)| kind == "machine_handed_over"),
        "says why it is kept"
    );
    s.release_webhooks();
    s.deliver(&later).await;
    assert_eq!(s.job_state(second).await, JobState::Running);
    s.github.finish_job(second, "success");
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

async fn a_machine_that_dies_while_booting_is_replaced_and_both_are_paid_for() {
    let s = Story::begin("dies-booting").await;
    let job = s.a_job_is_queued("cirun-gpu--1301");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let dead = s.vast.live_instances()[0].0;
    // The host goes offline before the runner comes up.
    let died = reqwest::Client::new()
        .post(format!("{}/sim/instances/{dead}/die", s.vast_url))
        .send()
        .await
        .unwrap();
    assert!(died.status().is_success());
    s.clock.advance_ms(10_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        s.job_state(job).await,
        JobState::Queued,
        "back in the queue"
    );
    s.rigger_provisions().await;
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 1, "{live:?}");
    assert_ne!(live[0].0, dead, "a new machine");
    s.machines_boot();
    s.webhooks_arrive().await;
    s.clock.advance_ms(600_000);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert_eq!(s.engine.store.costs_for_job(job).await.unwrap().len(), 2);
    let run = &s.github.check_runs()[0];
    assert!(run.summary.contains("across 2 machines"), "{run:?}");
    s.nothing_leaked().await;
}

async fn a_crash_between_the_row_and_the_create_is_repaired_after_restart() {
    // Two create calls in flight at once need two create slots at one
    // moment: this story is about the crash, not Vast.ai's pace, so it
    // lifts the create interval on both sides.
    let mut s = Story::begin_with(
        "crash",
        &[(
            "RIGGER_VAST_RATE_LIMITS",
            "create_interval_s=0,create_penalty_s=0",
        )],
    )
    .await;
    s.vast.set_limits(
        "documented,create_interval_s=0,create_penalty_s=0"
            .parse()
            .unwrap(),
    );
    let jobs = [
        s.a_job_is_queued("cirun-gpu--1401"),
        s.a_job_is_queued("cirun-gpu--1402"),
    ];
    s.webhooks_arrive().await;
    // rigger dies while both create calls wait for Vast.ai's answer: one
    // before the machine was rented, one after. Each machine's runner is
    // registered and its row written by then.
    let provisioning = s
        .rigger_provisions_until_vast_holds(&[CreateHold::BeforeRenting, CreateHold::AfterRenting])
        .await;
    provisioning.abort();
    assert!(provisioning.await.unwrap_err().is_cancelled());
    assert_eq!(
        s.vast.live_instances().len(),
        1,
        "one rented before the crash"
    );
    assert_eq!(s.github.runners().len(), 2);

    s.rigger_restarts().await;
    // On SQLite the restarted rigger is the only one: both jobs lost their
    // worker and go back to the queue at once. (Another replica may hold
    // them on PostgreSQL: they wait for the provisioning timeout.)
    let sqlite = s.engine.store.dialect() == rigger::store::Dialect::Sqlite;
    let put_back = s.engine.recover_at_start().await.unwrap();
    assert_eq!(put_back, if sqlite { 2 } else { 0 });
    for job in jobs {
        let expect = if sqlite {
            JobState::Queued
        } else {
            JobState::Provisioning
        };
        assert_eq!(s.job_state(job).await, expect);
    }
    // Neither is rented again while its create may still answer.
    s.rigger_provisions().await;
    assert_eq!(s.vast.requests("PUT /api/v0/asks/:id"), 2);
    // Past the create timeout, the reconciler looks each label up: the
    // machine that exists is adopted, the one that does not is written off
    // (its runner deleted) and its job goes back to the queue.
    s.clock.advance_ms(6 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        s.github.runners().len(),
        1,
        "the written-off machine's runner"
    );
    s.rigger_provisions().await;
    for job in jobs {
        let machines = s.engine.store.instances_for_job(job).await.unwrap();
        let live: Vec<_> = machines.iter().filter(|i| !i.state.is_terminal()).collect();
        assert_eq!(
            live.len(),
            1,
            "one live machine for job {job}: {machines:?}"
        );
        assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    }
    assert_eq!(s.vast.live_instances().len(), 2, "nothing rented twice");
    s.machines_boot();
    s.webhooks_arrive().await;
    for job in jobs {
        s.github.finish_job(job, "success");
    }
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

async fn a_job_that_ends_while_its_machine_is_created_leaves_no_machine_running() {
    let s = Story::begin("ends-mid-create").await;
    let job = s.a_job_is_queued("cirun-gpu--1451");
    s.webhooks_arrive().await;
    // Vast.ai is slow to create the machine, and the job is cancelled
    // meanwhile: its row is closed before the machine exists.
    let provisioning = s
        .rigger_provisions_until_vast_holds(&[CreateHold::BeforeRenting])
        .await;
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty(), "nothing made yet");
    // A minute later Vast.ai makes it and answers: rigger destroys it at
    // once, and pays for it from the create call on.
    s.clock.advance_ms(60_000);
    s.vast.release_held_creates();
    provisioning.await.unwrap().unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "the machine outlived its job"
    );
    let machines = s.engine.store.instances_for_job(job).await.unwrap();
    assert_eq!(machines.len(), 1);
    assert!(machines[0].provider_id.is_some(), "{machines:?}");
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    let events = s.events(job).await;
    assert!(
        events.iter().any(|(kind, _)| kind == "destroyed"),
        "{events:?}"
    );
    let costs = s.engine.store.costs_for_job(job).await.unwrap();
    assert_eq!(costs.len(), 1, "{costs:?}");
    assert!(costs[0].seconds >= 60, "{costs:?}");
    s.nothing_leaked().await;
}

async fn a_sold_out_market_is_explained_and_the_job_rents_once_machines_free_up() {
    let s = Story::with_market("sold-out", 300).await;
    // Someone else has rented every machine on the market.
    let theirs: Vec<i64> = s
        .vast
        .offer_ids()
        .into_iter()
        .filter_map(|offer| {
            let rental = rigger::sim::vast::Rental {
                image: "ubuntu:22.04".into(),
                disk_gb: 10.0,
                runtype: "args".into(),
                ..Default::default()
            };
            s.vast.rent(offer, rental).ok()
        })
        .collect();
    let job = s.a_job_is_queued("cirun-gpu--1501");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.vast.live_instances().len(),
        theirs.len(),
        "nothing of ours"
    );
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued);
    let why = row.reason.unwrap();
    assert!(why.contains("0 offers"), "{why}");
    let run = &s.github.check_runs()[0];
    assert!(run.title.contains("Waiting for a GPU"), "{run:?}");
    assert!(run.summary.contains("0 offers"), "the diagnosis: {run:?}");
    assert_eq!(run.status, "in_progress");
    assert!(
        run.summary.contains("looks again in 15 s"),
        "the real backoff: {run:?}"
    );

    // Their rentals end; the hosts list their machines again.
    let http = reqwest::Client::new();
    for id in &theirs {
        // The other tool keeps to Vast.ai's destroy interval on the key too.
        s.clock.advance_ms(3_000);
        let gone = http
            .delete(format!("{}/api/v0/instances/{id}/", s.vast_url))
            .bearer_auth("sim-vast-key")
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert!(gone.status().is_success());
    }
    s.clock.advance_ms(5 * 60_000); // past the backoff
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    assert_eq!(s.vast.live_instances().len(), 1);
    let run = &s.github.check_runs()[0];
    assert!(run.title.starts_with("Booting"), "{run:?}");
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

async fn stopping_rigger_leaves_work_in_the_inbox_and_destroys_nothing() {
    let s = Story::begin("stop").await;
    let busy = s.a_job_is_queued("cirun-gpu--1601");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(busy).await, JobState::Running);
    // A backlog: many batches of deliveries wait in the inbox.
    for n in 0..150 {
        s.a_job_is_queued(&format!("cirun-gpu--{}", 17_000 + n));
    }
    s.github.flush().await;
    let waiting = s.engine.store.pending_deliveries().await.unwrap();
    assert_eq!(waiting, 150);

    // Asked to stop, the loops finish the batch in hand and return.
    let (stop, stopped) = tokio::sync::watch::channel(true);
    let parse: std::sync::Arc<rigger::engine::run::ParseDelivery> =
        std::sync::Arc::new(rigger::server::webhook::parse_delivery);
    let run = s.engine.clone().run(
        parse,
        std::sync::Arc::new(tokio::sync::Notify::new()),
        stopped,
        rigger::engine::supervise::Health::new(),
    );
    tokio::time::timeout(std::time::Duration::from_secs(30), run)
        .await
        .expect("the engine stops without working through the backlog");
    drop(stop);
    let left = s.engine.store.pending_deliveries().await.unwrap();
    assert!(left > 0, "a stop is honoured between batches: {left} left");
    // The busy machine is untouched: rigger never destroys because it stops.
    assert_eq!(s.vast.live_instances().len(), 1);
    assert_eq!(s.job_state(busy).await, JobState::Running);

    // The next start works through what was left.
    s.webhooks_arrive().await;
    assert_eq!(s.engine.store.pending_deliveries().await.unwrap(), 0);
    s.github.finish_job(busy, "success");
    s.webhooks_arrive().await;
    for job in s.github.jobs() {
        s.github.cancel_job(job.id);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

async fn deliveries_are_taken_in_while_github_and_vast_cannot_be_reached() {
    let s = Story::begin("outage").await;
    // GitHub's API answers nothing but rate limits, and Vast.ai only errors.
    s.github.rate_limit_for(20 * 60_000);
    s.vast.set_faults(rigger::sim::vast::Faults {
        error_rate: 1.0,
        ..Default::default()
    });
    let job = s.a_job_is_queued("cirun-gpu--1701");
    s.webhooks_arrive().await;
    assert_eq!(
        s.job_state(job).await,
        JobState::Queued,
        "taken in all the same"
    );
    s.rigger_provisions().await;
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued, "it waits");
    assert!(row.reason.is_some(), "and says why");
    assert!(s.vast.live_instances().is_empty());

    // Both come back: the job gets its machine.
    s.clock.advance_ms(21 * 60_000);
    s.vast.set_faults(rigger::sim::vast::Faults::default());
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

async fn an_org_runner_is_rented_only_as_its_access_policy_allows() {
    let s = Story::begin("access").await;
    let global = "runners:\n  - name: org-gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-org-gpu]\n";
    let access = "version: 1\npolicies:\n  - id: ml-people\n    repo: ml\n    users: [octocat]\n    pull_request: false\naccess_control:\n  - resource: org-gpu\n    policies: [ml-people]\n";
    s.github.add_repo(
        "acme/.cirun",
        &[(".cirun.global.yml", global), (".access.yml", access)],
    );
    let queue = |actor: &str, label: &str| {
        s.github.queue_job(NewJob {
            repo: "acme/ml".into(),
            labels: vec![label.into()],
            head_sha: "8f3c1e2d".into(),
            fork: false,
            actor: actor.into(),
            duration_ms: 60_000,
            conclusion: "success".into(),
        })
    };
    let allowed = queue("octocat", "cirun-org-gpu--1801");
    let stranger = queue("mallory", "cirun-org-gpu--1802");
    // A pull request from a branch of the repository itself, not a fork:
    // still a pull request, which the policy does not allow.
    let pull_request = queue("octocat", "cirun-org-gpu--1803");
    s.github.set_event(pull_request, "pull_request");
    s.webhooks_arrive().await;
    // GitHub fails to say what octocat may do: that denies nothing, the
    // jobs wait and ask again.
    s.github.fail_route(
        "GET /repos/acme/ml/collaborators/octocat/permission",
        2,
        502,
    );
    s.rigger_provisions().await;
    for job in [allowed, pull_request] {
        let row = s.engine.store.job(job).await.unwrap().unwrap();
        assert_eq!(row.state, JobState::Queued, "job {job}: {row:?}");
        let why = row.reason.unwrap_or_default();
        assert!(why.contains("cannot check .access.yml"), "{why}");
    }
    assert_eq!(s.job_state(stranger).await, JobState::Failed);
    let metrics = s.metrics().await;
    assert!(
        metrics
            .get("rigger_github_errors_total{kind=\"transient\"}")
            .is_some_and(|n| *n >= 2.0),
        "GitHub's errors are counted: {metrics:?}"
    );
    s.clock.advance_ms(60_000);
    s.rigger_provisions().await;

    assert_eq!(s.job_state(allowed).await, JobState::WaitingForRunner);
    for denied in [stranger, pull_request] {
        let machines = s.engine.store.instances_for_job(denied).await.unwrap();
        assert!(machines.is_empty(), "job {denied} gets no machine");
        let row = s.engine.store.job(denied).await.unwrap().unwrap();
        let why = row.reason.clone().unwrap_or_default();
        assert!(!why.is_empty(), "job {denied} says why: {row:?}");
        assert_eq!(row.failure.as_deref(), Some("denied"), "{row:?}");
    }
    assert_eq!(
        s.metrics()
            .await
            .get("rigger_jobs_failed_total{kind=\"denied\"}"),
        Some(&2.0)
    );
    assert_eq!(s.vast.live_instances().len(), 1);
    // GitHub refusing for good (the App lacks a permission) is no reason to
    // wait 24 hours: the job fails at once and says what to fix.
    s.github.fail_route(
        "GET /repos/acme/ml/collaborators/octocat/permission",
        1,
        403,
    );
    let refused = queue("octocat", "cirun-org-gpu--1804");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let row = s.engine.store.job(refused).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Failed, "{row:?}");
    assert_eq!(row.failure.as_deref(), Some("config_error"));
    assert!(row.reason.unwrap_or_default().contains("permission"));
    for job in [allowed, stranger, pull_request, refused] {
        s.github.cancel_job(job);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

async fn a_burst_of_jobs_for_one_runner_shares_one_search() {
    let s = Story::begin("burst").await;
    let jobs: Vec<i64> = (0..6)
        .map(|n| s.a_job_is_queued(&format!("cirun-gpu--90{n}")))
        .collect();
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    for &job in &jobs {
        assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    }
    // One search served all six, and each job rented an offer of its own:
    // none was tried twice (an offer is claimed by the job that tries it).
    assert_eq!(s.vast.requests(SEARCH), 1, "one search for the burst");
    let rows = s.engine.store.live_instances().await.unwrap();
    let offers: std::collections::BTreeSet<_> = rows.iter().map(|r| r.offer_id).collect();
    assert_eq!((rows.len(), offers.len()), (6, 6), "{rows:?}");
    assert_eq!(
        s.vast.requests("PUT /api/v0/asks/:id"),
        6,
        "no create lost a race"
    );

    // A list is reused for a few seconds only: a job queued later searches.
    s.clock.advance_ms(rigger::engine::offer_pool::FRESH_MS);
    let late = s.a_job_is_queued("cirun-gpu--906");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(late).await, JobState::WaitingForRunner);
    assert_eq!(s.vast.requests(SEARCH), 2);

    for job in jobs.into_iter().chain([late]) {
        s.github.cancel_job(job);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// The simulated Vast.ai's name for the offer search route.
const SEARCH: &str = "POST /api/v0/bundles";

async fn jobs_provisioned_side_by_side_never_go_over_the_instance_limit() {
    let s = Story::begin_with("limit", &[("RIGGER_LIMITS_MAX_INSTANCES", "3")]).await;
    let jobs: Vec<i64> = (0..8)
        .map(|n| s.a_job_is_queued(&format!("cirun-gpu--91{n}")))
        .collect();
    s.webhooks_arrive().await;
    // All eight are provisioned in one pass, side by side.
    s.rigger_provisions().await;
    assert_eq!(s.vast.live_instances().len(), 3, "the limit holds");
    let mut waiting = 0;
    for &job in &jobs {
        let row = s.engine.store.job(job).await.unwrap().unwrap();
        if row.state == JobState::Queued {
            waiting += 1;
            let why = row.reason.unwrap_or_default();
            assert!(why.contains("limits.max_instances"), "{why}");
        }
    }
    assert_eq!(waiting, 5, "the others wait, saying why");
    for job in jobs {
        s.github.cancel_job(job);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// Two replicas on one PostgreSQL database provision at the same moment:
/// every job gets one machine, and the instance limit holds across both
/// (their passes take turns, each counting what the other rented).
#[tokio::test]
async fn two_replicas_provisioning_at_once_share_the_jobs_and_the_limit() {
    if harness::postgres_url().is_none() {
        eprintln!("PostgreSQL skipped: RIGGER_TEST_POSTGRES_URL is not set (.ci/run sets it)");
        return;
    }
    harness::DB
        .scope(harness::Db::Postgres, async {
            let s = Story::begin_with(
                "replicas",
                &[
                    ("RIGGER_LIMITS_MAX_INSTANCES", "20"),
                    ("RIGGER_LIMITS_MAX_INSTANCES_PER_REPO", "20"),
                    // Replicas do not agree their Vast.ai slots (README,
                    // "Vast.ai's rate limits"): two on one key would be
                    // refused as often as their creates meet. This story is
                    // about sharing the jobs and the instance limit, so it
                    // lifts Vast.ai's limits on both sides.
                    ("RIGGER_VAST_RATE_LIMITS", "none"),
                ],
            )
            .await;
            s.vast.set_limits(rigger::sim::vast::Limits::none());
            let other = s.another_replica().await;
            // More than one claim's worth (16), so that without turns both
            // replicas would be renting at once.
            let jobs: Vec<i64> = (0..40)
                .map(|n| s.a_job_is_queued(&format!("cirun-gpu--93{n:02}")))
                .collect();
            s.webhooks_arrive().await;
            let (a, b) = tokio::join!(s.engine.provision_due(), other.provision_due());
            a.unwrap();
            b.unwrap();
            assert_eq!(
                s.vast.live_instances().len(),
                20,
                "the limit holds across replicas"
            );
            let mut rented = 0;
            for &job in &jobs {
                let row = s.engine.store.job(job).await.unwrap().unwrap();
                let machines = s.engine.store.instances_for_job(job).await.unwrap();
                match row.state {
                    JobState::WaitingForRunner => {
                        rented += 1;
                        assert_eq!(
                            machines.len(),
                            1,
                            "job {job}: one machine, not one per replica"
                        );
                    }
                    JobState::Queued => {
                        let why = row.reason.unwrap_or_default();
                        assert!(why.contains("limits.max_instances"), "{why}");
                        assert!(
                            machines.iter().all(|m| m.state.is_terminal()),
                            "{machines:?}"
                        );
                    }
                    other => panic!("job {job} is {other}"),
                }
            }
            assert_eq!(rented, 20);
            for job in jobs {
                s.github.cancel_job(job);
            }
            s.webhooks_arrive().await;
            // GitHub takes some 80 writes a minute from an installation:
            // the runners' deletions and the final check-run updates of 40
            // cancelled jobs go out over the next minutes.
            for _ in 0..5 {
                s.clock.advance_ms(60_000);
                s.engine.reconcile_once().await.unwrap();
            }
            s.nothing_leaked().await;
        })
        .await
}

both_databases!(
    a_job_gets_a_gpu_and_the_gpu_dies_with_the_job,
    a_job_cancelled_while_its_machine_boots_leaves_nothing_behind,
    a_lost_completed_webhook_is_repaired_by_the_reconciler,
    duplicated_and_reordered_deliveries_change_nothing,
    vast_rate_limits_and_errors_are_ridden_out,
    a_job_over_the_daily_budget_is_refused_with_the_reason,
    offers_taken_before_rent_move_on_and_an_unanswered_create_is_adopted_by_label,
    a_fork_cannot_choose_what_rigger_rents,
    completed_arriving_before_in_progress_still_ends_the_job_and_its_machine,
    a_job_cancelled_while_queued_rents_nothing,
    a_job_taken_by_another_jobs_runner_is_bound_by_runner_name,
    a_machine_that_dies_while_booting_is_replaced_and_both_are_paid_for,
    a_machine_whose_runner_just_took_another_job_outlives_the_job_it_was_rented_for,
    a_runner_left_idle_is_deregistered_its_machine_destroyed_and_the_job_served_again,
    a_crash_between_the_row_and_the_create_is_repaired_after_restart,
    a_job_that_ends_while_its_machine_is_created_leaves_no_machine_running,
    a_create_that_answers_after_its_row_was_written_off_is_destroyed_and_paid_for,
    a_sold_out_market_is_explained_and_the_job_rents_once_machines_free_up,
    stopping_rigger_leaves_work_in_the_inbox_and_destroys_nothing,
    deliveries_are_taken_in_while_github_and_vast_cannot_be_reached,
    an_org_runner_is_rented_only_as_its_access_policy_allows,
    a_burst_of_jobs_for_one_runner_shares_one_search,
    jobs_provisioned_side_by_side_never_go_over_the_instance_limit,
);
