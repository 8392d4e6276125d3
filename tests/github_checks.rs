//! Check runs as GitHub really takes them and shows them: an over-long
//! summary is refused (422), only the newest run of a name on a commit is
//! shown, and an update GitHub refused for a while must still arrive. Each
//! story reads what the user sees: the simulated GitHub's displayed view.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::JobState;
use rigger::sim::github::NewJob;

const SHA: &str = "8f3c1e2d";

fn job_on(labels: &str) -> NewJob {
    NewJob {
        repo: "acme/ml".into(),
        labels: vec![labels.into()],
        head_sha: SHA.into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 600_000,
        conclusion: "success".into(),
    }
}

/// A `.cirun.yml` with `n` runner definitions, each asking for a GPU model
/// no one makes, named in Japanese: each error quotes the name, and the
/// errors take more UTF-8 bytes than characters (3 bytes a character).
fn config_with_errors(n: usize) -> String {
    let model = "日".repeat(900);
    let mut yml = String::from("runners:\n");
    for i in 0..n {
        yml += &format!(
            "  - name: gpu-{i}\n    cloud: vast_ai\n    instance_type: 1x{model}{i}\n    machine_image: nvidia/cuda:12.0.0-base-ubuntu22.04\n    labels: [cirun-gpu-{i}]\n"
        );
    }
    yml
}

async fn a_config_with_a_hundred_long_errors_still_shows_on_the_check_run() {
    let s = Story::begin("checks-long-summary").await;
    s.github
        .add_repo("acme/ml", &[(".cirun.yml", &config_with_errors(120))]);
    let job = s.github.queue_job(job_on("cirun-gpu-3--41"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Failed);
    let reason = s.engine.store.job(job).await.unwrap().unwrap().reason;
    let reason = reason.unwrap_or_default();
    // Fewer characters than GitHub's documented 65,535, more bytes than it takes.
    assert!(
        reason.chars().count() < 65_535 && reason.len() > 65_535,
        "the story needs a reason of more than 65,535 bytes: {} characters, {} bytes",
        reason.chars().count(),
        reason.len()
    );

    let shown = s.github.displayed_check_runs("acme/ml", SHA);
    assert_eq!(
        shown.len(),
        1,
        "GitHub accepted no check run: the user sees nothing ({} requests refused)",
        s.github.requests("POST /repos/acme/ml/check-runs")
    );
    let run = &shown[0];
    assert_eq!(run.status, "completed");
    assert_eq!(run.conclusion.as_deref(), Some("failure"));
    assert!(run.summary.len() <= 65_535, "{} bytes", run.summary.len());
    assert!(
        run.summary
            .starts_with(&reason[..reason.floor_char_boundary(1_000)]),
        "the summary begins with the errors: {}",
        &run.summary[..200]
    );
    assert!(
        run.summary.contains("left out") && run.summary.contains("rigger validate .cirun.yml"),
        "the summary says what was cut and how to see all of it: {}",
        &run.summary[run.summary.len() - 400..]
    );
    s.nothing_leaked().await;
}

async fn each_job_of_a_matrix_has_its_own_check_run() {
    let s = Story::begin("checks-matrix").await;
    // One matrix, two jobs on one commit: one asks for a runner the config
    // does not define, the other runs.
    let broken = s
        .github
        .queue_named_job(job_on("cirun-h100--51-0"), "train (h100)");
    let fine = s
        .github
        .queue_named_job(job_on("cirun-gpu--51-1"), "train (4090)");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(broken).await, JobState::Failed);
    assert_eq!(s.job_state(fine).await, JobState::WaitingForRunner);
    s.machines_boot();
    s.webhooks_arrive().await;
    s.clock.advance_ms(600_000);
    s.github.finish_job(fine, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(fine).await, JobState::Completed);

    let shown = s.github.displayed_check_runs("acme/ml", SHA);
    let summary: Vec<_> = shown
        .iter()
        .map(|r| (r.name.as_str(), r.conclusion.as_deref(), r.title.as_str()))
        .collect();
    assert_eq!(
        shown.len(),
        2,
        "one job's check run hides the other's: the user sees {summary:?}"
    );
    let of = |job: i64| {
        shown
            .iter()
            .find(|r| r.external_id.as_deref() == Some(job.to_string().as_str()))
            .unwrap_or_else(|| panic!("no check run says it is job {job}'s: {summary:?}"))
    };
    let (b, f) = (of(broken), of(fine));
    assert_eq!(b.name, "rigger: train (h100)");
    assert_eq!(f.name, "rigger: train (4090)");
    assert_eq!(b.conclusion.as_deref(), Some("failure"));
    assert!(b.summary.contains("cirun-h100--51-0"), "{}", b.summary);
    assert_eq!(f.conclusion.as_deref(), Some("success"));
    // Details lead to the job on GitHub, where its log is.
    let url = |job: i64| {
        let j = s.github.job(job).unwrap();
        format!(
            "https://github.com/acme/ml/actions/runs/{}/job/{job}",
            j.run_id
        )
    };
    assert_eq!(b.details_url.as_deref(), Some(url(broken).as_str()));
    assert_eq!(f.details_url.as_deref(), Some(url(fine).as_str()));
    s.nothing_leaked().await;
}

async fn a_rate_limited_final_update_is_finished_by_the_reconciler() {
    let s = Story::begin("checks-durable").await;
    let job = s.github.queue_job(job_on("cirun-gpu--61"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);

    // The job ends while rigger is over its GitHub API budget for two minutes.
    s.clock.advance_ms(600_000);
    s.github.finish_job(job, "success");
    s.github.rate_limit_for(120_000);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(s.vast.live_instances().is_empty(), "the machine is gone");
    let shown = s.github.displayed_check_runs("acme/ml", SHA);
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0].status, "in_progress",
        "GitHub refused the final update"
    );
    let patches = || s.github.requests("PATCH /repos/acme/ml/check-runs/:id");
    let refused = patches();

    // While the limit lasts, the reconciler does not hammer GitHub.
    for _ in 0..10 {
        s.clock.advance_ms(10_000);
        s.engine.reconcile_once().await.unwrap();
    }
    assert_eq!(
        patches(),
        refused,
        "no check-run update is tried before GitHub's limit resets"
    );

    // After it, the reconciler finishes the update.
    s.clock.advance_ms(30_000);
    s.engine.reconcile_once().await.unwrap();
    let shown = s.github.displayed_check_runs("acme/ml", SHA);
    assert_eq!(
        (shown[0].status.as_str(), shown[0].conclusion.as_deref()),
        ("completed", Some("success")),
        "the check run still says {:?}: {:?}",
        shown[0].title,
        shown[0]
    );
    assert!(shown[0].title.contains("min, $"), "{}", shown[0].title);
    assert_eq!(patches(), refused + 1, "one update, once it could succeed");

    // Nothing is left to send: later passes call GitHub no more for it.
    s.clock.advance_ms(600_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(patches(), refused + 1);
    s.nothing_leaked().await;
}

async fn the_newest_wanted_content_is_kept_and_a_final_one_stays_final() {
    let s = Story::begin("checks-store").await;
    let store = &s.engine.store;
    let job = 7_001;
    store
        .name_check_run(
            job,
            Some("train (a100)"),
            Some("https://github.com/acme/ml/actions/runs/1/job/7001"),
        )
        .await
        .unwrap();
    // A later event naming it again does not rename it: a run keeps its name.
    store
        .name_check_run(job, Some("other"), None)
        .await
        .unwrap();
    let booting = store
        .want_check_run(job, "Booting", "rented", None, 1_000, 61_000)
        .await
        .unwrap();
    assert_eq!(booting, Some(1));
    let done = store
        .want_check_run(job, "Done", "$0.10", Some("success"), 2_000, 62_000)
        .await
        .unwrap();
    assert_eq!(done, Some(2), "the newest content replaces the older");
    // A late in-progress word (a provisioner that lost a race) is dropped.
    let late = store
        .want_check_run(job, "Booting", "rented", None, 3_000, 63_000)
        .await
        .unwrap();
    assert_eq!(late, None, "a final check run is not reopened");
    let row = store.check_run(job).await.unwrap().unwrap();
    assert_eq!(row.job_name.as_deref(), Some("train (a100)"));
    assert!(row.details_url.is_some());
    assert_eq!(
        (
            row.title.as_deref(),
            row.conclusion.as_deref(),
            row.wanted,
            row.sent
        ),
        (Some("Done"), Some("success"), 2, 0)
    );
    assert_eq!(
        store.unsent_check_runs(10).await.unwrap(),
        vec![(job, 62_000)]
    );

    // Sending version 1 (on its way when 2 was wanted) leaves 2 to send.
    store.check_run_sent(job, 1).await.unwrap();
    assert_eq!(
        store.unsent_check_runs(10).await.unwrap(),
        vec![(job, 62_000)]
    );
    // A failure of version 1 does not move version 2's time.
    store.check_run_failed(job, 1, Some(99_000)).await.unwrap();
    assert_eq!(
        store.unsent_check_runs(10).await.unwrap(),
        vec![(job, 62_000)]
    );
    store.check_run_failed(job, 2, Some(90_000)).await.unwrap();
    assert_eq!(
        store.unsent_check_runs(10).await.unwrap(),
        vec![(job, 90_000)]
    );
    assert_eq!(store.check_run(job).await.unwrap().unwrap().attempts, 1);
    store.check_run_sent(job, 2).await.unwrap();
    assert!(store.unsent_check_runs(10).await.unwrap().is_empty());
    // A final one after another final one: the newest wins.
    let again = store
        .want_check_run(
            job,
            "Done, corrected",
            "$0.11",
            Some("success"),
            4_000,
            64_000,
        )
        .await
        .unwrap();
    assert_eq!(again, Some(3));
    // Given up: nothing is sent any more.
    store.check_run_failed(job, 3, None).await.unwrap();
    assert!(store.unsent_check_runs(10).await.unwrap().is_empty());
}

both_databases!(
    the_newest_wanted_content_is_kept_and_a_final_one_stays_final,
    a_config_with_a_hundred_long_errors_still_shows_on_the_check_run,
    each_job_of_a_matrix_has_its_own_check_run,
    a_rate_limited_final_update_is_finished_by_the_reconciler,
);
