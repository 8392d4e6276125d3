//! Stories of GitHub's limits, as GitHub documents them: secondary rate
//! limits without `retry-after` (403 and 429), the JIT endpoint's 422
//! "spammed" answer, an installation's primary budget used up, a revoked
//! installation token, and the headers every request must carry. A rate
//! limit is never a refusal; the wait is shared by every call of the
//! installation (the simulated GitHub counts what it was sent meanwhile).

mod harness;

use harness::Story;
use rigger::engine::ports::Clock as _;
use rigger::engine::state::JobState;
use rigger::sim::github::{NewJob, SecondaryLimit};

const GLOBAL: &str = "runners:\n  - name: org-gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-org-gpu]\n";
const ACCESS: &str = "version: 1\npolicies:\n  - id: ml-people\n    repo: ml\n    users: [octocat]\n    pull_request: false\naccess_control:\n  - resource: org-gpu\n    policies: [ml-people]\n";

fn queue(s: &Story, actor: &str, label: &str) -> i64 {
    s.github.queue_job(NewJob {
        repo: "acme/ml".into(),
        labels: vec![label.into()],
        head_sha: "8f3c1e2d".into(),
        fork: false,
        actor: actor.into(),
        duration_ms: 60_000,
        conclusion: "success".into(),
    })
}

/// What the installation sent GitHub from `since` on, as `METHOD /route status`.
fn sent_since(s: &Story, since: i64) -> Vec<String> {
    let inst = s.github.installation_of("acme");
    s.github
        .requests_of(inst, since)
        .iter()
        .map(|r| format!("{} {}", r.route, r.status))
        .collect()
}

async fn reason(s: &Story, job: i64) -> String {
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued, "job {job} waits: {row:?}");
    row.reason.unwrap_or_default()
}

/// Cancel what is left and check nothing leaked.
async fn the_end(s: &Story) {
    for job in s.github.jobs() {
        s.github.cancel_job(job.id);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_secondary_limit_without_advice_during_the_access_check_waits_and_the_job_is_rented_after()
 {
    let s = Story::begin("secondary-access").await;
    s.github.add_repo(
        "acme/.cirun",
        &[(".cirun.global.yml", GLOBAL), (".access.yml", ACCESS)],
    );
    // A job already has its machine: the reconciler watches it.
    let earlier = s.a_job_is_queued("cirun-gpu--1900");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(earlier).await, JobState::WaitingForRunner);

    let guarded = queue(&s, "octocat", "cirun-org-gpu--1901");
    s.webhooks_arrive().await;
    // Asking what octocat may do trips a secondary limit: 403, GitHub's
    // message, `x-ratelimit-remaining` well above 0, and no `retry-after`.
    let inst = s.github.installation_of("acme");
    s.github.secondary_limit(SecondaryLimit {
        installation: Some(inst),
        after_route: Some("GET /repos/acme/ml/collaborators/octocat/permission".into()),
        for_ms: 30_000,
        retry_after_s: None,
        status: 403,
        until_ms: None,
    });
    s.rigger_provisions().await;
    let why = reason(&s, guarded).await;
    assert!(
        why.contains("GitHub's rate limit: rigger waits and asks again in 60 s"),
        "the job says why it waits, and how long: {why}"
    );
    // Another job arrives meanwhile.
    let another = queue(&s, "octocat", "cirun-org-gpu--1902");
    s.webhooks_arrive().await;

    // GitHub's limit is over after 30 s, but GitHub asks for at least a
    // minute without advice: for 59 s nothing of the installation goes out,
    // neither the reconciler's look at the earlier job nor any attempt.
    let after_limit = s.clock.now_ms() + 1;
    s.rigger_provisions().await;
    assert!(reason(&s, another).await.contains("rate limit"));
    s.clock.advance_ms(59_000);
    s.engine.reconcile_once().await.unwrap();
    s.rigger_provisions().await;
    assert_eq!(
        sent_since(&s, after_limit),
        Vec::<String>::new(),
        "nothing is sent for the installation during the wait"
    );
    let metrics = s.metrics().await;
    assert_eq!(
        metrics.get("rigger_github_rate_limited_total{limit=\"secondary\"}"),
        Some(&1.0),
        "{metrics:?}"
    );
    assert!(
        metrics
            .get("rigger_github_requests_held_total")
            .is_some_and(|n| *n >= 1.0),
        "calls held back are counted: {metrics:?}"
    );

    s.clock.advance_ms(2_000);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(guarded).await, JobState::WaitingForRunner);
    assert_eq!(s.job_state(another).await, JobState::WaitingForRunner);
    the_end(&s).await;
}

#[tokio::test]
async fn repeated_secondary_limits_without_advice_back_off_exponentially() {
    let s = Story::begin("secondary-backoff").await;
    let job = s.a_job_is_queued("cirun-gpu--1910");
    s.webhooks_arrive().await;
    let inst = s.github.installation_of("acme");
    // 429 this time, and the limit comes back each time rigger returns.
    for _ in 0..3 {
        s.github.secondary_limit(SecondaryLimit {
            installation: Some(inst),
            after_route: None,
            for_ms: 1_000,
            retry_after_s: None,
            status: 429,
            until_ms: None,
        });
    }
    let mut waits = Vec::new();
    for _ in 0..3 {
        let before = s.clock.now_ms();
        s.rigger_provisions().await;
        assert!(reason(&s, job).await.contains("rate limit"));
        // Step a second at a time until rigger asks again.
        let mut waited = 0;
        loop {
            s.clock.advance_ms(1_000);
            waited += 1_000;
            s.rigger_provisions().await;
            if !sent_since(&s, before + 1).is_empty() {
                break;
            }
            assert!(waited < 10 * 60_000, "rigger never asked again");
        }
        waits.push(waited);
        if s.job_state(job).await != JobState::Queued {
            break;
        }
    }
    assert_eq!(
        waits,
        vec![60_000, 120_000, 240_000],
        "a minute, then twice as long each time"
    );
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    the_end(&s).await;
}

#[tokio::test]
async fn a_jit_422_spammed_answer_is_a_rate_limit_retried_later_not_a_failure() {
    let s = Story::begin("jit-spammed").await;
    let job = s.a_job_is_queued("cirun-gpu--1920");
    s.webhooks_arrive().await;
    // Every JIT config is refused: 422 "Validation failed, or the endpoint
    // has been spammed.", no advice.
    s.github.set_jit_per_minute(Some(0));
    let jit = "POST /repos/acme/ml/actions/runners/generate-jitconfig";
    s.rigger_provisions().await;
    assert_eq!(s.github.requests(jit), 1);
    let why = reason(&s, job).await;
    assert!(why.contains("rate limit"), "{why}");
    assert!(
        s.vast.live_instances().is_empty(),
        "no machine without a runner"
    );

    s.github.set_jit_per_minute(None);
    let limited = s.clock.now_ms() + 1;
    s.clock.advance_ms(30_000);
    s.engine.reconcile_once().await.unwrap();
    s.rigger_provisions().await;
    assert_eq!(
        sent_since(&s, limited),
        Vec::<String>::new(),
        "a minute's wait for the whole installation"
    );
    assert_eq!(
        s.metrics()
            .await
            .get("rigger_github_errors_total{kind=\"refused\"}"),
        None,
        "never a refusal"
    );
    s.clock.advance_ms(31_000);
    s.rigger_provisions().await;
    assert_eq!(s.github.requests(jit), 2);
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    the_end(&s).await;
}

#[tokio::test]
async fn a_used_up_installation_budget_waits_until_its_reset() {
    let s = Story::begin("primary-budget").await;
    let first = s.a_job_is_queued("cirun-gpu--1930");
    s.webhooks_arrive().await;
    let inst = s.github.installation_of("acme");
    let reset = s.github.use_up_budget(inst);
    let now = s.clock.now_ms();
    s.rigger_provisions().await;
    assert!(reason(&s, first).await.contains("rate limit"));
    let met = sent_since(&s, now);
    assert_eq!(
        met.len(),
        1,
        "one call learns the budget is used up: {met:?}"
    );
    // Another job arrives: it does not ask either.
    let second = s.a_job_is_queued("cirun-gpu--1931");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert!(reason(&s, second).await.contains("rate limit"));
    assert_eq!(sent_since(&s, now).len(), 1, "{:?}", sent_since(&s, now));
    let mid = s.clock.now_ms() + 1;
    s.clock.advance_ms((reset - now) / 2);
    s.engine.reconcile_once().await.unwrap();
    s.rigger_provisions().await;
    assert_eq!(sent_since(&s, mid), Vec::<String>::new(), "until the reset");
    assert_eq!(
        s.metrics()
            .await
            .get("rigger_github_rate_limited_total{limit=\"primary\"}"),
        Some(&1.0)
    );
    s.clock.set_ms(reset + 1_000);
    s.rigger_provisions().await;
    for job in [first, second] {
        assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    }
    let metrics = s.metrics().await;
    assert!(
        metrics
            .get("rigger_github_ratelimit_remaining{resource=\"core\"}")
            .is_some_and(|n| *n > 4_900.0),
        "the new window's budget is shown: {metrics:?}"
    );
    the_end(&s).await;
}

#[tokio::test]
async fn a_revoked_installation_token_is_dropped_and_a_new_one_minted() {
    let s = Story::begin("token-revoked").await;
    let first = s.a_job_is_queued("cirun-gpu--1940");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(first).await, JobState::WaitingForRunner);
    let minted = s.engine.github.auth().tokens_minted();

    let inst = s.github.installation_of("acme");
    s.github.revoke_tokens(inst);
    let revoked = s.clock.now_ms();
    let second = s.a_job_is_queued("cirun-gpu--1941");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.job_state(second).await,
        JobState::WaitingForRunner,
        "the job is served with a new token: {:?}",
        s.events(second).await
    );
    assert_eq!(s.engine.github.auth().tokens_minted(), minted + 1);
    let unauthorized = s
        .github
        .seen()
        .iter()
        .filter(|r| r.at_ms >= revoked && r.status == 401)
        .count();
    assert_eq!(unauthorized, 1, "one 401, then the new token");
    the_end(&s).await;
}

#[tokio::test]
async fn installation_tokens_are_in_githubs_current_format() {
    let s = Story::begin("token-format").await;
    let job = s.a_job_is_queued("cirun-gpu--1950");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    let tokens: Vec<String> = s
        .github
        .secrets_issued()
        .into_iter()
        .filter(|t| t.starts_with("ghs_"))
        .collect();
    assert_eq!(tokens.len(), 1);
    let t = &tokens[0];
    let app = format!("ghs_{}_", s.github.app_id());
    assert!(t.starts_with(&app), "ghs_APPID_JWT: {}…", &t[..12]);
    assert_eq!(t.matches('.').count(), 2, "a JWT after the App id");
    assert!(
        (480..600).contains(&t.len()),
        "about 520 characters: {}",
        t.len()
    );
    the_end(&s).await;
}

#[tokio::test]
async fn every_request_carries_githubs_headers_and_one_without_a_user_agent_is_refused() {
    let s = Story::begin("headers").await;
    s.github.add_repo(
        "acme/.cirun",
        &[(".cirun.global.yml", GLOBAL), (".access.yml", ACCESS)],
    );
    let job = s.a_job_is_queued("cirun-gpu--1960");
    let org = queue(&s, "octocat", "cirun-org-gpu--1961");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    assert_eq!(s.job_state(org).await, JobState::WaitingForRunner);
    s.machines_boot();
    s.webhooks_arrive().await;
    s.engine.reconcile_once().await.unwrap();
    the_end(&s).await;

    let seen = s.github.seen();
    assert!(seen.len() >= 10, "{} requests", seen.len());
    let ua = format!("rigger/{}", env!("CARGO_PKG_VERSION"));
    for r in &seen {
        assert_eq!(r.user_agent.as_deref(), Some(ua.as_str()), "{}", r.route);
        // File contents are asked for as GitHub's `object` media type (a
        // file over 1 MB then says so instead of a 403); all else as JSON.
        let wanted = if r.route.contains("/contents/") {
            "application/vnd.github.object+json"
        } else {
            "application/vnd.github+json"
        };
        assert_eq!(r.accept.as_deref(), Some(wanted), "{}", r.route);
        assert_eq!(r.api_version.as_deref(), Some("2022-11-28"), "{}", r.route);
    }
    // octocrab's calls are among them.
    assert!(seen.iter().any(|r| r.route.contains("/contents/")));

    // GitHub refuses a request without a User-Agent.
    let url = s.github.public_url();
    let bare = reqwest::Client::new()
        .get(format!("{url}/repos/acme/ml"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status().as_u16(), 403);
    assert!(bare.text().await.unwrap().contains("User-Agent"));
}
