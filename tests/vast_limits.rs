//! rigger within Vast.ai's documented rate limits: the simulated Vast.ai
//! keeps them (search 10 a minute, create one per 4.5 s, show 2 s, list 1 s,
//! destroy 3 s, per API key; a 429 carries no `Retry-After`), and rigger
//! must neither send more than they allow nor have its requests refused.
//! Both sides run with the documented figures, as in every story
//! (`Limits::documented()` in the simulator, `vast.rate_limits` left to its
//! default for rigger). Time is the harness's manual
//! clock, stepped one second at a time with one provisioning pass at each
//! step, as rigger's worker loop would run.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::JobState;
use rigger::sim::vast::limits::Endpoint;

/// One simulated minute: a provisioning pass every second.
async fn a_minute_passes(s: &Story) {
    for _ in 0..60 {
        s.clock.advance_ms(1_000);
        s.rigger_provisions_once().await;
    }
}

async fn a_job_that_finds_no_offer_keeps_to_ten_searches_a_minute() {
    // A market with nothing in it: every search comes back empty.
    let s = Story::with_market("limits-no-offer", 0).await;
    // Two candidates (an A100 80 GB, then an H100): two searches an attempt.
    let job = s.a_job_is_queued("cirun-gpu-fallback--101");
    s.webhooks_arrive().await;

    s.rigger_provisions_once().await;
    a_minute_passes(&s).await;

    let searches = s.vast.requests("POST /api/v0/bundles");
    let refused = s.vast.refused(Endpoint::Search);
    println!(
        "no-offer job, first 61 s: {searches} searches ({:.0} % of the documented 10/min), \
         {refused} refused",
        searches as f64 * 10.0
    );
    assert!(
        searches <= 10,
        "a job that finds no offer sent {searches} searches in its first minute; \
         Vast.ai allows 10 a minute per key"
    );
    assert_eq!(
        refused, 0,
        "Vast.ai refused {refused} of rigger's searches (429): rigger must wait for its slot"
    );
    assert_eq!(
        s.job_state(job).await,
        JobState::Queued,
        "the job waits for capacity"
    );
}

/// Five jobs of one definition that nothing matches: the first job's
/// searches (two candidates, each with its diagnosis search) answer for
/// the others for a minute.
async fn jobs_of_a_definition_nothing_matches_share_its_searches() {
    let s = Story::with_market("limits-no-offer-shared", 0).await;
    for n in 0..5 {
        s.a_job_is_queued(&format!("cirun-gpu-fallback--11{n}"));
    }
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    a_minute_passes(&s).await;
    let searches = s.vast.requests("POST /api/v0/bundles");
    println!("5 no-offer jobs of one definition, first 61 s: {searches} searches");
    assert!(
        searches <= 2 + 1,
        "{searches} searches in a minute for one definition with two candidates: \
         at most a search per candidate and one diagnosis"
    );
}

/// The diagnosis searches ("what would match") of the sweep above.
fn diagnosis_searches(s: &Story) -> usize {
    s.vast
        .take_recorded()
        .exchanges
        .iter()
        .filter(|e| e.path.starts_with("/api/v0/bundles"))
        // The broad search asks for many offers; a candidate's for a few.
        .filter(|e| e.request_body.json().is_some_and(|b| b["limit"] == 1000))
        .count()
}

/// Jobs of a one-candidate definition nothing matches keep coming for ten
/// minutes: its "what would match" search is made once for the ten minutes
/// (`offers::DIAGNOSIS_MS`), not once per job or per attempt.
async fn a_definition_nothing_matches_is_diagnosed_once_per_ten_minutes() {
    let s = Story::with_market("limits-diagnosis-period", 0).await;
    s.vast.record(true);
    for minute in 0..10 {
        for n in 0..3 {
            s.a_job_is_queued(&format!("cirun-gpu--5{minute}{n}"));
        }
        s.webhooks_arrive().await;
        s.rigger_provisions_once().await;
        a_minute_passes(&s).await;
    }
    let first_period = diagnosis_searches(&s);
    let searches = s.vast.requests("POST /api/v0/bundles");
    println!("30 no-offer jobs over 10 min: {searches} searches, {first_period} of them diagnoses");
    assert_eq!(
        first_period, 1,
        "one diagnosis search in ten minutes for a definition nothing matches"
    );
    a_minute_passes(&s).await;
    s.a_job_is_queued("cirun-gpu--599");
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    a_minute_passes(&s).await;
    assert_eq!(diagnosis_searches(&s), 1, "and one more in the next period");
}

async fn a_burst_of_jobs_is_rented_with_almost_no_429s() {
    // Room for all 16 (the default caps would stop at 10 for one repository).
    let s = Story::begin_with(
        "limits-burst",
        &[
            ("RIGGER_LIMITS_MAX_INSTANCES", "20"),
            ("RIGGER_LIMITS_MAX_INSTANCES_PER_REPO", "20"),
        ],
    )
    .await;
    let jobs: Vec<i64> = (0..16)
        .map(|n| s.a_job_is_queued(&format!("cirun-gpu--{}", 900 + n)))
        .collect();
    s.webhooks_arrive().await;

    s.rigger_provisions_once().await;
    let mut rented_after_s = None;
    for second in 1..=180 {
        s.clock.advance_ms(1_000);
        s.rigger_provisions_once().await;
        if rented_after_s.is_none() && s.instances_created() >= jobs.len() {
            rented_after_s = Some(second);
        }
    }
    let total = s.vast.requests_total();
    let refused = s.vast.refused_total();
    let share = refused as f64 * 100.0 / total.max(1) as f64;
    let registrations = s
        .github
        .requests("POST /repos/acme/ml/actions/runners/generate-jitconfig");
    let machines = s.instances_created();
    println!(
        "burst of {}: {total} requests, {refused} refused ({share:.1} %), {machines} machines, \
         {registrations} JIT registrations, all rented after {rented_after_s:?} s \
         (the 4.5 s create interval allows it in {:.0} s)",
        jobs.len(),
        (jobs.len() - 1) as f64 * 4.5
    );
    assert!(
        share <= 2.0,
        "Vast.ai refused {refused} of {total} requests ({share:.1} %) during a burst of {} jobs; \
         at most 2 % is acceptable",
        jobs.len()
    );
    assert_eq!(
        s.instances_created(),
        jobs.len(),
        "every job of the burst gets its machine within 3 minutes"
    );
    assert!(
        registrations as f64 <= machines as f64 * 1.1,
        "{registrations} JIT registrations for {machines} machines: a create that waits for \
         its slot must not cost a registration"
    );
    for job in jobs {
        assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    }
}

/// Someone else on the same key (another tool, another replica) spends the
/// minute's searches: Vast.ai refuses rigger's, and rigger waits a whole
/// minute before it searches again, rather than retrying within seconds.
async fn a_search_refused_by_vast_waits_a_minute_not_seconds() {
    let s = Story::with_market("limits-refused", 0).await;
    s.expects_vast_refusals();
    let other = reqwest::Client::new();
    for _ in 0..10 {
        let r = other
            .post(format!("{}/api/v0/bundles/", s.vast_url))
            .bearer_auth("sim-vast-key")
            .json(&serde_json::json!({"limit": 1}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "the other tool's search: {r:?}");
    }
    let job = s.a_job_is_queued("cirun-gpu--102");
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    assert_eq!(
        s.vast.refused(Endpoint::Search),
        1,
        "Vast.ai refused rigger's search"
    );
    let before = s.vast.requests("POST /api/v0/bundles");
    for _ in 0..59 {
        s.clock.advance_ms(1_000);
        s.rigger_provisions_once().await;
    }
    assert_eq!(
        s.vast.requests("POST /api/v0/bundles"),
        before,
        "after a 429 rigger waits at least a minute before it searches again"
    );
    assert_eq!(s.job_state(job).await, JobState::Queued);
    for _ in 0..5 {
        s.clock.advance_ms(1_000);
        s.rigger_provisions_once().await;
    }
    assert!(
        s.vast.requests("POST /api/v0/bundles") > before,
        "a minute on, rigger searches again"
    );
    assert_eq!(s.vast.refused(Endpoint::Search), 1, "and is not refused");
}

/// The day's search quota is spent: rigger stops searching until it resets.
async fn a_spent_daily_search_quota_parks_searches_until_its_reset() {
    let s = Story::with_market("limits-quota", 0).await;
    s.expects_vast_refusals();
    s.vast
        .set_limits("documented,search_quota_per_day=3".parse().unwrap());
    let job = s.a_job_is_queued("cirun-gpu--103");
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    for _ in 0..30 {
        s.clock.advance_ms(60_000);
        s.rigger_provisions_once().await;
    }
    let searches = s.vast.requests("POST /api/v0/bundles");
    assert_eq!(
        searches, 4,
        "three searches, one refusal for the quota, then none for the rest of the day \
         (rigger sent {searches})"
    );
    assert_eq!(s.job_state(job).await, JobState::Queued);
}

both_databases!(
    a_job_that_finds_no_offer_keeps_to_ten_searches_a_minute,
    jobs_of_a_definition_nothing_matches_share_its_searches,
    a_definition_nothing_matches_is_diagnosed_once_per_ten_minutes,
    a_burst_of_jobs_is_rented_with_almost_no_429s,
    a_search_refused_by_vast_waits_a_minute_not_seconds,
    a_spent_daily_search_quota_parks_searches_until_its_reset,
);
