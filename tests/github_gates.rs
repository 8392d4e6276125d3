//! What GitHub puts between a job and a runner, as GitHub documents it:
//! deployments waiting for an environment's approval, organization runner
//! groups that do not serve every repository, and configuration files the
//! contents API will not hand over (too large, not there yet, in a `.cirun`
//! repository the App is not installed on). In each, rigger rents nothing
//! that could not run the job, and says on the check run what is going on.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::JobState;
use rigger::sim::github::NewJob;

const HOUR: i64 = 3_600_000;

/// The check run rigger posted on the job's commit (there is one per job).
fn check_run_titled(s: &Story, part: &str) -> rigger::sim::github::CheckRun {
    let runs = s.github.check_runs();
    runs.iter()
        .find(|c| c.title.contains(part))
        .cloned()
        .unwrap_or_else(|| panic!("no check run says {part:?}: {runs:?}"))
}

async fn a_job_waiting_for_an_environments_approval_rents_nothing_until_approved() {
    let s = Story::begin("approval").await;
    let job = s
        .github
        .queue_job_for_environment(NewJob::on("acme/ml", "cirun-gpu--4001"), "production");
    s.webhooks_arrive().await;
    // Hours pass, with the provisioner and the reconciler at work: no GPU
    // is rented for a job no runner may take.
    for _ in 0..8 {
        s.rigger_provisions().await;
        s.engine.reconcile_once().await.unwrap();
        s.clock.advance_ms(HOUR / 2);
    }
    assert_eq!(
        s.instances_created(),
        0,
        "machines were rented for a job waiting for approval: {:?}",
        s.events(job).await
    );
    assert_eq!(s.job_state(job).await, JobState::WaitingForApproval);
    let run = check_run_titled(&s, "Waiting for approval of environment `production`");
    assert_eq!(run.status, "in_progress", "{run:?}");
    assert!(s.github.runners().is_empty(), "no runner registered");
    assert_eq!(s.job_state(job).await, JobState::WaitingForApproval);

    // Approved: GitHub queues it again, rigger rents, the job runs, and the
    // machine dies with it.
    assert!(s.github.approve(job));
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Queued);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    assert_eq!(s.vast.live_instances().len(), 1);
    assert_eq!(s.machines_boot(), vec![(s.vast.live_instances()[0].0, job)]);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(
        s.vast.live_instances().is_empty(),
        "destroyed after the job"
    );
    assert_eq!(s.instances_created(), 1, "one machine, once approved");
    s.nothing_leaked().await;
}

async fn a_rejected_deployment_ends_the_job_and_its_check_run() {
    let s = Story::begin("rejected").await;
    let job = s
        .github
        .queue_job_for_environment(NewJob::on("acme/ml", "cirun-gpu--4002"), "production");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForApproval);
    assert!(s.github.reject(job));
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Cancelled);
    let runs = s.github.check_runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, "completed", "{runs:?}");
    assert_eq!(s.instances_created(), 0);
    s.nothing_leaked().await;
}

async fn an_approval_whose_webhook_is_lost_is_found_by_the_reconciler() {
    let s = Story::begin("approval-lost").await;
    let job = s
        .github
        .queue_job_for_environment(NewJob::on("acme/ml", "cirun-gpu--4003"), "staging");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForApproval);
    // The approval's `queued` never reaches rigger (GitHub does not retry).
    s.github.set_webhook_url(None);
    assert!(s.github.approve(job));
    s.github.flush().await;
    s.release_webhooks();
    s.rigger_provisions().await;
    assert_eq!(s.instances_created(), 0);
    // The reconciler asks GitHub about jobs it heard nothing of for a while.
    s.clock.advance_ms(11 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(s.job_state(job).await, JobState::Queued);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// Organization runners: rigger asks whether its runner group serves the
/// repository before renting, and says what to change when it does not.
async fn an_org_runner_group_that_does_not_serve_the_repository_rents_nothing() {
    let s = Story::begin_with("groups", &[("RIGGER_GITHUB_RUNNER_SCOPE", "organization")]).await;
    // A public repository; the default group serves no public repository
    // until the org allows it (GitHub's default).
    s.github
        .add_repo("acme/public", &[(".cirun.yml", harness::CIRUN)]);
    s.github.set_private("acme/public", false);
    let job = s
        .github
        .queue_job(NewJob::on("acme/public", "cirun-gpu--5001"));
    s.webhooks_arrive().await;
    for _ in 0..3 {
        s.rigger_provisions().await;
        s.clock.advance_ms(5 * 60_000);
    }
    assert_eq!(
        s.instances_created(),
        0,
        "rented a machine whose runner GitHub never gives the job: {:?}",
        s.events(job).await
    );
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued, "{row:?}");
    let run = check_run_titled(&s, "Not renting a GPU");
    assert!(
        run.summary.contains("Allow public repositories")
            && run.summary.contains("Runner groups → `Default`"),
        "the check run says what to change: {}",
        run.summary
    );
    // The org's owner allows public repositories in the default group.
    let mut group = s.github.runner_group("acme", 1).unwrap();
    group.allows_public_repositories = true;
    s.github.set_runner_group("acme", group);
    s.clock.advance_ms(5 * 60_000);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    assert_eq!(s.machines_boot().len(), 1, "and GitHub gives it the job");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// A group limited to selected repositories serves only those.
async fn an_org_runner_group_limited_to_selected_repositories_serves_only_those() {
    let s = Story::begin_with(
        "groups-selected",
        &[
            ("RIGGER_GITHUB_RUNNER_SCOPE", "organization"),
            ("RIGGER_GITHUB_RUNNER_GROUP_ID", "7"),
        ],
    )
    .await;
    let mut group = rigger::sim::github::RunnerGroup::new(7);
    group.name = "gpu".into();
    group.visibility = "selected".into();
    group.selected = ["acme/other".to_string()].into_iter().collect();
    s.github.set_runner_group("acme", group.clone());
    let job = s.github.queue_job(NewJob::on("acme/ml", "cirun-gpu--5002"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.instances_created(), 0, "{:?}", s.events(job).await);
    let run = check_run_titled(&s, "Not renting a GPU");
    assert!(
        run.summary.contains("Selected repositories") && run.summary.contains("`gpu` (7)"),
        "{}",
        run.summary
    );
    // One look per minute at most, however many attempts.
    let asked = s
        .github
        .requests("GET /orgs/acme/actions/runner-groups/:id");
    group.selected.insert("acme/ml".into());
    s.github.set_runner_group("acme", group);
    s.clock.advance_ms(61_000);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    assert_eq!(
        s.github
            .requests("GET /orgs/acme/actions/runner-groups/:id"),
        asked + 1
    );
    // GitHub's side of it: while the group does not serve the repository,
    // its runner is never given the job.
    let mut narrowed = s.github.runner_group("acme", 7).unwrap();
    narrowed.selected.remove("acme/ml");
    s.github.set_runner_group("acme", narrowed.clone());
    assert_eq!(
        s.machines_boot(),
        vec![],
        "a runner outside the group's reach took the job"
    );
    let runner = s.github.runners()[0].id;
    assert_eq!(s.github.take_job(runner), None);
    narrowed.selected.insert("acme/ml".into());
    s.github.set_runner_group("acme", narrowed);
    assert_eq!(s.github.take_job(runner), Some(job));
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// A `.cirun.yml` over GitHub's 1 MB contents limit is a config error at
/// once, not a refusal from GitHub to wait out for 24 hours.
async fn a_cirun_yml_over_a_megabyte_is_a_config_error_at_once() {
    let s = Story::begin("too-large").await;
    let padding = format!("# {}\n", "x".repeat(2 * 1024 * 1024));
    let big = format!("{padding}{}", harness::CIRUN);
    s.github
        .add_repo("acme/big", &[(".cirun.yml", big.as_str())]);
    let job = s
        .github
        .queue_job(NewJob::on("acme/big", "cirun-gpu--6001"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.failure.as_deref()),
        (JobState::Failed, Some("config_error")),
        "{row:?}"
    );
    let run = check_run_titled(&s, ".cirun.yml error");
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    assert!(
        run.summary
            .contains(".cirun.yml:1:1: the file is over 1048576 bytes")
            && run.summary.contains("1 MB"),
        "{}",
        run.summary
    );
    s.clock.advance_ms(HOUR);
    s.rigger_provisions().await;
    assert_eq!(
        s.github.requests("GET /repos/acme/big/contents/.cirun.yml"),
        1,
        "asked once, not again and again"
    );
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// Right after a push GitHub may answer 404 for the new file: rigger looks
/// once more, half a minute later, before calling it missing.
async fn a_cirun_yml_github_does_not_have_yet_is_read_on_the_second_look() {
    let s = Story::begin("lag").await;
    s.github
        .add_repo("acme/fresh", &[(".cirun.yml", harness::CIRUN)]);
    s.github.lag_file("acme/fresh", ".cirun.yml", 1);
    let job = s
        .github
        .queue_job(NewJob::on("acme/fresh", "cirun-gpu--6002"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued, "it looks again: {row:?}");
    assert!(
        row.reason
            .as_deref()
            .unwrap_or_default()
            .contains("looking again in 30 s"),
        "{row:?}"
    );
    // Not in a tight loop: nothing before the 30 s are up.
    s.clock.advance_ms(10_000);
    s.rigger_provisions().await;
    assert_eq!(
        s.github
            .requests("GET /repos/acme/fresh/contents/.cirun.yml"),
        1
    );
    s.clock.advance_ms(21_000);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;

    // Missing for good: one more look, then the config error.
    s.github.add_repo("acme/none", &[]);
    let job = s
        .github
        .queue_job(NewJob::on("acme/none", "cirun-gpu--6003"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Queued);
    s.clock.advance_ms(31_000);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Failed);
    assert_eq!(
        s.github
            .requests("GET /repos/acme/none/contents/.cirun.yml"),
        2
    );
    s.nothing_leaked().await;
}

/// The org's `.cirun` repository exists but the App is not installed on it:
/// GitHub answers 404 as if it did not exist, and rigger says so.
async fn an_org_cirun_repository_outside_the_installation_is_named_on_the_check_run() {
    let s = Story::begin("org-unreadable").await;
    let global = "runners:\n  - name: org-gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-org-gpu]\n";
    s.github
        .add_repo("acme/.cirun", &[(".cirun.global.yml", global)]);
    s.github.set_in_installation("acme/.cirun", false);
    s.github.add_repo("acme/app", &[]);
    let job = s
        .github
        .queue_job(NewJob::on("acme/app", "cirun-org-gpu--6004"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.clock.advance_ms(31_000);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Failed);
    let run = check_run_titled(&s, ".cirun.yml error");
    assert!(
        run.summary.contains("rigger cannot see acme/.cirun")
            && run.summary.contains("Repository access"),
        "the check run says the org's .cirun repository is out of reach: {}",
        run.summary
    );
    // Added to the installation: the org's runners are read and rented.
    s.github.set_in_installation("acme/.cirun", true);
    s.clock.advance_ms(61_000);
    let job = s
        .github
        .queue_job(NewJob::on("acme/app", "cirun-org-gpu--6005"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    s.github.cancel_job(job);
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

both_databases!(
    a_cirun_yml_over_a_megabyte_is_a_config_error_at_once,
    a_cirun_yml_github_does_not_have_yet_is_read_on_the_second_look,
    an_org_cirun_repository_outside_the_installation_is_named_on_the_check_run,
    an_org_runner_group_that_does_not_serve_the_repository_rents_nothing,
    an_org_runner_group_limited_to_selected_repositories_serves_only_those,
    a_job_waiting_for_an_environments_approval_rents_nothing_until_approved,
    a_rejected_deployment_ends_the_job_and_its_check_run,
    an_approval_whose_webhook_is_lost_is_found_by_the_reconciler,
);
