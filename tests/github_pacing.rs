//! A burst of jobs in one installation, against GitHub's standing secondary
//! limits ("Rate limits for the REST API": 80 content-generating requests a
//! minute and 500 an hour, 900 points a minute per endpoint), which the
//! simulated GitHub enforces as GitHub does: rigger keeps within them
//! rather than meeting them, and every job still gets its machine and its
//! finished check run.

mod harness;

use harness::Story;
use rigger::engine::ports::Clock as _;
use rigger::engine::state::JobState;
use rigger::sim::github::NewJob;
use rigger::sim::github::world::{Caller, is_write};

/// How long each job runs once its runner has it.
const RUNS_MS: i64 = 5 * 60_000;

/// The most of `times` (sorted) within any `window_ms`.
fn peak(times: &[i64], window_ms: i64) -> usize {
    let mut start = 0;
    let mut best = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= window_ms {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

#[tokio::test]
async fn a_burst_of_120_jobs_in_one_installation_keeps_within_githubs_content_limits() {
    burst(120, 10_000).await;
}

/// More writes than GitHub takes in an hour: the hour's pace holds, and
/// registrations still come before in-progress check-run updates.
#[tokio::test]
async fn a_burst_of_200_jobs_keeps_within_githubs_hourly_content_limit() {
    burst(200, 16_000).await;
}

/// `size` jobs queued at once in one installation, in a market of `offers`.
async fn burst(size: usize, offers: usize) {
    // Room and offers for the whole burst at once: only GitHub's pace
    // could hold it back.
    let s = Story::with_market_and(
        &format!("pacing-burst-{size}"),
        offers,
        &[
            ("RIGGER_LIMITS_MAX_INSTANCES", "200"),
            ("RIGGER_LIMITS_MAX_INSTANCES_PER_REPO", "200"),
        ],
    )
    .await;
    let begun = s.clock.now_ms();
    let jobs: Vec<i64> = (0..size)
        .map(|n| {
            s.github.queue_job(NewJob {
                repo: "acme/ml".into(),
                labels: vec![format!("cirun-gpu--{}", 20_000 + n)],
                head_sha: format!("c0ffee{n:04}"),
                fork: false,
                actor: "octocat".into(),
                duration_ms: RUNS_MS,
                conclusion: "success".into(),
            })
        })
        .collect();
    // Time passes 30 s a step: webhooks, provisioning, boots, jobs ending
    // after their run, the reconciler.
    let mut taken_at = std::collections::BTreeMap::new();
    let mut all_rented_at = None;
    let mut steps = 0;
    loop {
        s.webhooks_arrive().await;
        s.rigger_provisions().await;
        for (_, job) in s.machines_boot() {
            taken_at.insert(job, s.clock.now_ms());
        }
        let now = s.clock.now_ms();
        for (job, at) in &taken_at {
            if now - at >= RUNS_MS {
                s.github.finish_job(*job, "success");
            }
        }
        s.webhooks_arrive().await;
        s.engine.reconcile_once().await.unwrap();
        if all_rented_at.is_none() && s.instances_created() >= size {
            all_rented_at = Some(s.clock.now_ms());
        }
        let mut done = true;
        for job in &jobs {
            let row = s.engine.store.job(*job).await.unwrap().unwrap();
            let unsent = s
                .engine
                .store
                .check_run(*job)
                .await
                .unwrap()
                .is_some_and(|c| c.unsent());
            done &= row.state == JobState::Completed && !unsent;
        }
        steps += 1;
        if done {
            break;
        }
        assert!(
            steps < 8 * 120,
            "the burst is not over after 8 simulated hours"
        );
    }
    let over_after_min = (s.clock.now_ms() - begun) / 60_000;

    // What GitHub saw: never a secondary limit.
    assert_eq!(
        s.github.secondary_answers(),
        0,
        "GitHub answered with a secondary limit: rigger went over GitHub's pace"
    );
    let metrics = s.metrics().await;
    assert_eq!(
        metrics.get("rigger_github_rate_limited_total{limit=\"secondary\"}"),
        None,
        "{metrics:?}"
    );
    // Every job rented, once, and its check run finished.
    let machines = s.instances_created();
    assert!(machines >= size, "{machines} machines for {size} jobs");
    for (n, job) in jobs.iter().enumerate() {
        let shown = s
            .github
            .displayed_check_runs("acme/ml", &format!("c0ffee{n:04}"));
        assert_eq!(shown.len(), 1, "job {job}'s check runs: {shown:?}");
        assert_eq!(
            (shown[0].status.as_str(), shown[0].conclusion.as_deref()),
            ("completed", Some("success")),
            "job {job}'s check run: {:?}",
            shown[0]
        );
    }
    let jit = s
        .github
        .requests("POST /repos/acme/ml/actions/runners/generate-jitconfig")
        + s.github
            .requests("POST /orgs/acme/actions/runners/generate-jitconfig");
    assert!(
        jit as f64 <= 1.1 * machines as f64,
        "{jit} JIT registrations for {machines} machines"
    );

    // The figures.
    let inst = s.github.installation_of("acme");
    let mut writes: Vec<i64> = s
        .github
        .seen()
        .iter()
        .filter(|r| r.caller == Some(Caller::Installation(inst)))
        .filter(|r| is_write(r.route.split(' ').next().unwrap_or("")))
        .map(|r| r.at_ms)
        .collect();
    writes.sort();
    let per_minute = peak(&writes, 60_000);
    let per_hour = peak(&writes, 3_600_000);
    let rented_min = all_rented_at.map(|t| (t - begun) as f64 / 60_000.0);
    println!(
        "pacing figures: {size} jobs, {machines} machines, {} writes ({:.2} per job), \
         peak {per_minute}/min ({:.2} of 80), peak {per_hour}/h ({:.2} of 500), \
         all rented after {rented_min:?} min, all over after {over_after_min} min, \
         {jit} JIT registrations, paced: {:?} essential, {:?} deferrable",
        writes.len(),
        writes.len() as f64 / size as f64,
        per_minute as f64 / 80.0,
        per_hour as f64 / 500.0,
        metrics.get("rigger_github_requests_paced_total{priority=\"essential\"}"),
        metrics.get("rigger_github_requests_paced_total{priority=\"deferrable\"}"),
    );
    assert!(per_minute <= 80 && per_hour <= 500);
    s.nothing_leaked().await;
}
