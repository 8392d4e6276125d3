//! rigger end to end over real HTTP: the real server and engine against the
//! simulated GitHub and Vast.ai, stepped explicitly (deliveries, provisioning,
//! reconciling) on an injected clock. Each story ends by checking that
//! nothing leaked (see `harness::Story::nothing_leaked`).

mod harness;

use harness::Story;
use rigger::engine::state::JobState;
use rigger::sim::github::NewJob;

#[tokio::test]
async fn a_job_gets_a_gpu_and_the_gpu_dies_with_the_job() {
    let s = Story::begin("happy").await;
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
    let checks = s.github.check_runs();
    assert!(!checks.is_empty(), "the job's check run tells the story");
    s.nothing_leaked().await;
}

#[tokio::test]
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

#[tokio::test]
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
    s.nothing_leaked().await;
}

#[tokio::test]
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

#[tokio::test]
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
    // A burst of 429s is waited out within the client's bounds.
    s.vast.set_faults(rigger::sim::vast::Faults {
        rate_limit_burst: 2,
        ..Default::default()
    });
    s.clock.advance_ms(10 * 60_000); // past the retry backoff
    s.rigger_provisions().await;
    assert_eq!(s.vast.live_instances().len(), 1);
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

#[tokio::test]
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

#[tokio::test]
async fn offers_taken_before_rent_move_on_and_an_unanswered_create_is_adopted_by_label() {
    let s = Story::begin("races").await;
    // Every offer rigger picks is rented by someone else first.
    s.vast.set_faults(rigger::sim::vast::Faults {
        steal_rate: 1.0,
        ..Default::default()
    });
    let job = s.a_job_is_queued("cirun-gpu--801");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
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

#[tokio::test]
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
