//! The GitHub App client against the simulated GitHub over real HTTP: App
//! JWT, installation tokens (cached, refreshed on expiry), config files, JIT
//! runners, runner listing and deletion, jobs, check runs, teams and roles,
//! rate limits, and the webhook sender.

use std::sync::{Arc, Mutex};

use rigger::engine::ports::{CheckRun, CheckTarget, Github, GithubError, ManualClock, RepoRef};
use rigger::engine::reconcile::GithubJobStatus;
use rigger::github::app::AppAuth;
use rigger::github::client::{GithubClient, RunnerPlacement};
use rigger::github::http::Api;
use rigger::github::webhook::{Event, parse, verify};
use rigger::settings::{RunnerScope, Secret};
use rigger::sim::github::{NewJob, SimGithub, SimGithubConfig, WebhookFaults};

struct World {
    sim: SimGithub,
    clock: ManualClock,
    client: GithubClient,
    url: String,
}

impl World {
    /// Another client on the same simulated GitHub, placing runners so.
    fn client_with(&self, runners: RunnerPlacement) -> GithubClient {
        let auth = AppAuth::new(
            self.sim.app_id(),
            self.sim.private_key_pem(),
            Api::new(&self.url, Arc::new(self.clock.clone())),
            Arc::new(self.clock.clone()),
        )
        .unwrap();
        GithubClient::with_runners(Arc::new(auth), runners)
    }
}

async fn world() -> World {
    let clock = ManualClock::new(1_763_800_000_000);
    let sim = SimGithub::new(SimGithubConfig::default(), Arc::new(clock.clone())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    sim.set_public_url(&url);
    let app = sim.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let auth = AppAuth::new(
        sim.app_id(),
        sim.private_key_pem(),
        Api::new(&url, Arc::new(clock.clone())),
        Arc::new(clock.clone()),
    )
    .unwrap();
    sim.add_repo("acme/ml", &[(".cirun.yml", "runners: []\n")]);
    World {
        client: GithubClient::new(Arc::new(auth)),
        sim,
        clock,
        url,
    }
}

fn repo(w: &World) -> RepoRef {
    RepoRef {
        installation_id: w.sim.installation_of("acme"),
        repo: "acme/ml".into(),
    }
}

#[tokio::test]
async fn the_app_jwt_is_accepted_and_a_wrong_key_refused() {
    let w = world().await;
    let id = w.client.auth().installation_for("acme/ml").await.unwrap();
    assert_eq!(id, w.sim.installation_of("acme"));
    assert_eq!(
        w.client.auth().installations().await.unwrap(),
        vec![(id, "acme".to_string())]
    );

    let other = SimGithub::new(SimGithubConfig::default(), Arc::new(w.clock.clone())).unwrap();
    let stranger = AppAuth::new(
        w.sim.app_id(),
        other.private_key_pem(),
        Api::new(&w.url, Arc::new(w.clock.clone())),
        Arc::new(w.clock.clone()),
    )
    .unwrap();
    match stranger.installation_for("acme/ml").await {
        Err(GithubError::Refused(m)) => assert!(m.contains("401"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(
        AppAuth::new(
            1,
            &Secret::new("not a key"),
            Api::new(&w.url, Arc::new(w.clock.clone())),
            Arc::new(w.clock.clone())
        )
        .is_err()
    );
}

#[tokio::test]
async fn installation_tokens_are_cached_until_shortly_before_expiry() {
    let w = world().await;
    let r = repo(&w);
    for _ in 0..5 {
        w.client.config_files(&r, None).await.unwrap();
    }
    assert_eq!(
        w.client.auth().tokens_minted(),
        1,
        "one token for many calls"
    );
    w.clock.advance_ms(54 * 60_000);
    w.client.config_files(&r, None).await.unwrap();
    assert_eq!(w.client.auth().tokens_minted(), 1, "still six minutes left");
    w.clock.advance_ms(2 * 60_000);
    w.client.config_files(&r, None).await.unwrap();
    assert_eq!(
        w.client.auth().tokens_minted(),
        2,
        "refreshed within five minutes of expiry"
    );
    assert_eq!(
        w.sim.requests("POST /app/installations/:id/access_tokens"),
        2
    );
}

#[tokio::test]
async fn a_revoked_token_is_dropped_and_the_call_made_once_more_with_a_new_one() {
    let w = world().await;
    let r = repo(&w);
    w.client.config_files(&r, None).await.unwrap();
    assert_eq!(w.client.auth().tokens_minted(), 1);
    // Through octocrab (the contents API) and a plain request alike.
    for n in 0..2_u64 {
        w.sim.revoke_tokens(r.installation_id);
        if n == 0 {
            w.client.config_files(&r, None).await.unwrap();
        } else {
            w.client.get_job(&r, 404).await.unwrap_err();
        }
        assert_eq!(
            w.client.auth().tokens_minted(),
            2 + n,
            "after revocation {n}"
        );
    }
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stat(&w, |s| s.tokens_dropped.load(Relaxed) as i64), 2);
    // A token GitHub keeps refusing is not retried without end.
    w.sim
        .fail_route("GET /repos/acme/ml/actions/jobs/:id", 5, 401);
    match w.client.get_job(&r, 1).await {
        Err(GithubError::Refused(m)) => assert!(m.contains("401"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.client.auth().tokens_minted(), 4, "one more try, no more");
    let tokens: Vec<String> = w.sim.secrets_issued();
    assert!(
        tokens.iter().all(|t| t.starts_with("ghs_")),
        "installation tokens in GitHub's format"
    );
}

#[tokio::test]
async fn the_last_call_a_budget_allows_closes_it_until_the_reset() {
    let w = world().await;
    let r = repo(&w);
    w.client.config_files(&r, None).await.unwrap();
    // The budget allows exactly one call more than the config files took.
    let used = w
        .sim
        .seen()
        .iter()
        .filter(|s| s.caller == Some(rigger::sim::github::Caller::Installation(r.installation_id)))
        .count();
    w.sim
        .set_hourly_limit(Some(r.installation_id), used as u64 + 1);
    let sent = w.sim.seen().len();
    // The fourth call is answered, with `x-ratelimit-remaining: 0`.
    assert!(w.client.role_of(&r, "octocat").await.unwrap().is_none());
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stat(&w, |s| s.remaining.load(Relaxed)), 0);
    // Nothing more goes out before the window resets, an hour after it opened.
    match w.client.get_job(&r, 1).await {
        Err(GithubError::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 3_600_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.seen().len(), sent + 1, "held back, not sent");
    // Another installation's budget is its own.
    w.sim.add_repo("umbrella/corp", &[]);
    let other = RepoRef {
        installation_id: w.sim.installation_of("umbrella"),
        repo: "umbrella/corp".into(),
    };
    assert!(w.client.role_of(&other, "octocat").await.is_ok());
    w.clock.advance_ms(3_600_000);
    assert!(w.client.role_of(&r, "octocat").await.is_ok());
}

#[tokio::test]
async fn config_files_at_a_ref_and_absent_ones() {
    let w = world().await;
    let r = repo(&w);
    w.sim
        .add_repo("acme/.cirun", &[(".access.yml", "version: 1\n")]);
    w.sim
        .add_files_at("acme/ml", "abc123", &[(".cirun.yml", "runners: [x]\n")]);
    let f = w.client.config_files(&r, None).await.unwrap();
    assert_eq!(f.repo.as_deref(), Some("runners: []\n"));
    assert_eq!(f.org, None, "404 is none");
    assert_eq!(f.access.as_deref(), Some("version: 1\n"));
    let at = w.client.config_files(&r, Some("abc123")).await.unwrap();
    assert_eq!(at.repo.as_deref(), Some("runners: [x]\n"));
}

#[tokio::test]
async fn jit_runners_are_made_listed_redeemed_once_and_deleted() {
    let w = world().await;
    let r = repo(&w);
    let labels = vec!["cirun-gpu".to_string(), "cirun-gpu--7".to_string()];
    let jit = w
        .client
        .create_jit_runner(&r, "rigger-main-7-abc", &labels)
        .await
        .unwrap();
    assert!(
        !format!("{:?}", jit.jit_config).contains(jit.jit_config.expose()),
        "redacted in Debug"
    );
    assert!(
        w.client
            .create_jit_runner(&r, "rigger-main-7-abc", &labels)
            .await
            .is_err(),
        "names are unique"
    );
    w.client
        .create_jit_runner(&r, "someone-else", &labels)
        .await
        .unwrap();

    let mine = w
        .client
        .list_runners("rigger-main-", std::slice::from_ref(&r))
        .await
        .everywhere()
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].id, mine[0].online, mine[0].scope.as_str()),
        (jit.runner_id, false, "acme/ml")
    );

    assert_eq!(
        w.sim.connect_runner(jit.jit_config.expose()),
        Some(jit.runner_id)
    );
    assert_eq!(
        w.sim.connect_runner(jit.jit_config.expose()),
        None,
        "a JIT config is single-use"
    );
    assert!(
        w.client
            .list_runners("rigger-main-", std::slice::from_ref(&r))
            .await
            .everywhere()
            .unwrap()[0]
            .online
    );

    w.client.delete_runner(&r, jit.runner_id).await.unwrap();
    w.client
        .delete_runner(&r, jit.runner_id)
        .await
        .expect("already gone is deleted");
    assert!(
        w.client
            .list_runners("rigger-main-", std::slice::from_ref(&r))
            .await
            .everywhere()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn jobs_follow_githubs_rule_and_check_runs_are_kept() {
    let w = world().await;
    let r = repo(&w);
    let job = w.sim.queue_job(NewJob {
        repo: "acme/ml".into(),
        labels: vec!["cirun-gpu--7".into()],
        head_sha: "abc".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 60_000,
        conclusion: "success".into(),
    });
    assert_eq!(
        w.client.get_job(&r, job).await.unwrap().status,
        GithubJobStatus::Queued
    );

    // A runner without the job's label does not get it; one with it does.
    let other = w
        .client
        .create_jit_runner(&r, "rigger-x-1", &["cirun-cpu".into()])
        .await
        .unwrap();
    let mine = w
        .client
        .create_jit_runner(
            &r,
            "rigger-x-2",
            &["cirun-gpu".into(), "cirun-gpu--7".into()],
        )
        .await
        .unwrap();
    let other_id = w.sim.connect_runner(other.jit_config.expose()).unwrap();
    let mine_id = w.sim.connect_runner(mine.jit_config.expose()).unwrap();
    assert_eq!(w.sim.take_job(other_id), None);
    assert_eq!(w.sim.take_job(mine_id), Some(job));
    let j = w.client.get_job(&r, job).await.unwrap();
    assert_eq!(
        (j.status, j.runner_name.as_deref()),
        (GithubJobStatus::InProgress, Some("rigger-x-2"))
    );
    assert!(
        w.client.delete_runner(&r, mine_id).await.is_err(),
        "a busy runner is not deleted"
    );
    w.sim.finish_job(job, "success");
    let j = w.client.get_job(&r, job).await.unwrap();
    assert_eq!(
        (j.status, j.conclusion.as_deref()),
        (GithubJobStatus::Completed, Some("success"))
    );
    assert!(
        w.sim.runners().iter().all(|x| x.id != mine_id),
        "a JIT runner is removed after its job"
    );

    let target = CheckTarget {
        head_sha: "abc".into(),
        name: "rigger: gpu-job".into(),
        external_id: job.to_string(),
        details_url: Some("https://github.com/acme/ml/actions/runs/1/job/2".into()),
    };
    let id = w
        .client
        .check_run(
            &r,
            &target,
            None,
            &CheckRun {
                title: "renting".into(),
                summary: "1× RTX 4090".into(),
                conclusion: None,
            },
        )
        .await
        .unwrap();
    let same = w
        .client
        .check_run(
            &r,
            &target,
            Some(id),
            &CheckRun {
                title: "done".into(),
                summary: "$0.12".into(),
                conclusion: Some("success"),
            },
        )
        .await
        .unwrap();
    assert_eq!(id, same);
    let runs = w.sim.check_runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (
            runs[0].status.as_str(),
            runs[0].conclusion.as_deref(),
            runs[0].title.as_str()
        ),
        ("completed", Some("success"), "done")
    );
    assert_eq!(runs[0].name, target.name);
    assert_eq!(
        runs[0].external_id.as_deref(),
        Some(job.to_string().as_str())
    );
    assert_eq!(runs[0].details_url, target.details_url);
}

#[tokio::test]
async fn teams_and_roles() {
    let w = world().await;
    let r = repo(&w);
    w.sim.add_team_member("acme", "ml-team", "ada");
    w.sim.set_role("acme/ml", "ada", "maintain");
    let teams = w
        .client
        .teams_of(&r, "ada", &["ml-team".into(), "infra".into()])
        .await
        .unwrap();
    assert_eq!(teams, vec!["ml-team".to_string()]);
    assert_eq!(
        w.client.role_of(&r, "ada").await.unwrap().as_deref(),
        Some("maintain")
    );
    assert_eq!(w.client.role_of(&r, "mallory").await.unwrap(), None);
}

/// What GitHub answers for a user's permission: a collaborator's role; for
/// anyone else `none` on a private repository and `read` on a public one
/// (everyone may read it); 404 for a login that is no user. rigger takes
/// the public `read` for no role: only a collaborator's `read` counts.
#[tokio::test]
async fn a_public_repositorys_read_for_everyone_is_no_role() {
    let w = world().await;
    let r = repo(&w);
    w.sim.set_role("acme/ml", "ada", "read");
    w.sim.set_role("acme/ml", "bob", "maintain");
    w.sim.add_team_member("acme", "infra", "mallory"); // a user, no collaborator
    let token = w
        .client
        .auth()
        .installation_token(r.installation_id)
        .await
        .unwrap();
    // GitHub refuses a request without a User-Agent.
    let http = reqwest::Client::builder()
        .user_agent("rigger-tests")
        .build()
        .unwrap();
    let permission = |login: &'static str| {
        let req = http
            .get(format!(
                "{}/repos/acme/ml/collaborators/{login}/permission",
                w.url
            ))
            .bearer_auth(token.expose());
        async move {
            let a = req.send().await.unwrap();
            let status = a.status().as_u16();
            (status, a.json::<serde_json::Value>().await.unwrap())
        }
    };
    let shown = |v: &serde_json::Value| {
        (
            v["permission"].as_str().unwrap_or("?").to_string(),
            v["role_name"].as_str().unwrap_or("?").to_string(),
            v["user"]["permissions"]["pull"].as_bool(),
            v["user"]["permissions"]["push"].as_bool(),
        )
    };

    // Private (the default).
    let (status, v) = permission("mallory").await;
    assert_eq!(status, 200);
    assert_eq!(
        shown(&v),
        ("none".into(), "".into(), Some(false), Some(false))
    );
    assert_eq!(permission("no-such-user").await.0, 404);
    assert_eq!(w.client.role_of(&r, "mallory").await.unwrap(), None);
    let (_, v) = permission("bob").await;
    assert_eq!(
        shown(&v),
        ("write".into(), "maintain".into(), Some(true), Some(true))
    );

    // Public: anyone who exists may read it.
    w.sim.set_private("acme/ml", false);
    let (status, v) = permission("mallory").await;
    assert_eq!(status, 200);
    assert_eq!(
        shown(&v),
        ("read".into(), "read".into(), Some(true), Some(false))
    );
    assert_eq!(permission("no-such-user").await.0, 404);
    assert_eq!(
        w.client.role_of(&r, "mallory").await.unwrap(),
        None,
        "reading a public repository is no role"
    );
    assert_eq!(
        w.sim.requests("GET /repos/acme/ml/collaborators/mallory"),
        1,
        "a `read` is confirmed as a collaborator's"
    );
    assert_eq!(
        w.client.role_of(&r, "ada").await.unwrap().as_deref(),
        Some("read"),
        "a collaborator's read is a role"
    );
    assert_eq!(
        w.client.role_of(&r, "bob").await.unwrap().as_deref(),
        Some("maintain")
    );
    assert_eq!(
        w.sim.requests("GET /repos/acme/ml/collaborators/bob"),
        0,
        "a higher role needs no confirming"
    );
    assert_eq!(w.client.role_of(&r, "no-such-user").await.unwrap(), None);
}

#[tokio::test]
async fn rate_limits_say_how_long_to_wait_and_are_counted() {
    let w = world().await;
    let r = repo(&w);
    w.client.config_files(&r, None).await.unwrap();
    w.sim.rate_limit_for(120_000);
    match w.client.get_job(&r, 1).await {
        Err(GithubError::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 120_000),
        other => panic!("{other:?}"),
    }
    w.clock.advance_ms(120_000);
    w.sim.set_jit_per_minute(Some(2));
    for n in 0..2 {
        w.client
            .create_jit_runner(&r, &format!("r-{n}"), &["cirun-gpu".into()])
            .await
            .unwrap();
    }
    match w
        .client
        .create_jit_runner(&r, "r-3", &["cirun-gpu".into()])
        .await
    {
        Err(GithubError::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 60_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.client
            .auth()
            .api()
            .stats
            .rate_limited
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn the_webhook_sender_signs_realistic_payloads_with_faults_on_request() {
    let w = world().await;
    // (event, delivery id, body) as received.
    type Received = Vec<(String, String, Vec<u8>)>;
    let got: Arc<Mutex<Received>> = Arc::default();
    let sink = got.clone();
    let receiver = axum::Router::new().route(
        "/webhook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let sink = sink.clone();
                async move {
                    let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
                    assert!(
                        verify(
                            &[Secret::new("sim-webhook-secret")],
                            Some(&h("x-hub-signature-256")),
                            &body
                        )
                        .is_ok()
                    );
                    sink.lock().unwrap().push((
                        h("x-github-event"),
                        h("x-github-delivery"),
                        body.to_vec(),
                    ));
                    axum::http::StatusCode::ACCEPTED
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/webhook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    w.sim.set_webhook_url(Some(hook));

    let job = |n: &str| NewJob {
        repo: "acme/ml".into(),
        labels: vec![format!("cirun-gpu--{n}")],
        head_sha: "abc".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 1,
        conclusion: "success".into(),
    };
    let id = w.sim.queue_job(job("1"));
    assert_eq!(w.sim.flush().await, 1);
    w.sim.cancel_job(id);
    assert_eq!(w.sim.flush().await, 1);
    {
        let got = got.lock().unwrap();
        let events: Vec<_> = got.iter().map(|(e, _, b)| parse(e, b).unwrap()).collect();
        assert!(
            matches!(&events[0], Event::WorkflowJob(rigger::engine::events::JobEvent::Queued(j)) if *j.job_id == id && j.repo == "acme/ml")
        );
        assert!(
            matches!(&events[1], Event::WorkflowJob(rigger::engine::events::JobEvent::Completed { conclusion: Some(c), .. }) if c == "cancelled")
        );
    }

    w.sim.set_webhook_faults(WebhookFaults {
        loss_rate: 0.0,
        duplicate_rate: 1.0,
        reorder: false,
        late_rate: 0.0,
    });
    w.sim.queue_job(job("2"));
    assert_eq!(w.sim.flush().await, 2, "sent twice");
    {
        let got = got.lock().unwrap();
        assert_eq!(got[2].1, got[3].1, "a duplicate keeps its delivery id");
    }
    w.sim.set_webhook_faults(WebhookFaults {
        loss_rate: 1.0,
        duplicate_rate: 0.0,
        reorder: false,
        late_rate: 0.0,
    });
    w.sim.queue_job(job("3"));
    assert_eq!(w.sim.flush().await, 0, "lost");
}

fn stat(w: &World, which: fn(&rigger::github::http::ApiStats) -> i64) -> i64 {
    which(&w.client.auth().api().stats)
}

#[tokio::test]
async fn the_default_branch_and_files_on_it_come_through_octocrab() {
    let w = world().await;
    let r = repo(&w);
    w.sim.set_default_branch("acme/ml", "trunk");
    w.sim.add_files_at(
        "acme/ml",
        "feature/x&y",
        &[(".cirun.yml", "runners: [y]\n")],
    );
    assert_eq!(
        w.client
            .default_branch(r.installation_id, "acme/ml")
            .await
            .unwrap(),
        "trunk"
    );
    assert_eq!(w.sim.requests("GET /repos/acme/ml"), 1);
    let f = w.client.config_files(&r, None).await.unwrap();
    assert_eq!(f.repo.as_deref(), Some("runners: []\n"), "read from trunk");
    let at = w
        .client
        .config_files(&r, Some("feature/x&y"))
        .await
        .unwrap();
    assert_eq!(
        at.repo.as_deref(),
        Some("runners: [y]\n"),
        "a ref is sent encoded"
    );
    assert!(
        w.client
            .default_branch(r.installation_id, "acme/none")
            .await
            .is_err(),
        "a repository the installation cannot see"
    );
    // octocrab's answers are counted and their rate-limit headers read.
    use std::sync::atomic::Ordering::Relaxed;
    let sent = stat(&w, |s| s.requests.load(Relaxed) as i64);
    assert!(sent >= 4);
    // Every request so far counted against the installation's budget, the
    // token's minting aside (the App's own).
    assert_eq!(stat(&w, |s| s.limit.load(Relaxed)), 5000);
    assert_eq!(stat(&w, |s| s.remaining.load(Relaxed)), 5000 - (sent - 1));
    assert_eq!(stat(&w, |s| s.used.load(Relaxed)), sent - 1);
}

#[tokio::test]
async fn runner_and_repository_lists_follow_every_page() {
    let w = world().await;
    let r = repo(&w);
    // A registration a second: within GitHub's 80 writes a minute.
    for n in 0..205 {
        w.clock.advance_ms(1_000);
        w.client
            .create_jit_runner(&r, &format!("rigger-p-{n}"), &["cirun-gpu".into()])
            .await
            .unwrap();
    }
    // 204 more repositories: three pages of the installation's repositories.
    for n in 0..204 {
        w.sim.add_repo(&format!("acme/r{n}"), &[]);
    }
    w.client
        .create_jit_runner(
            &RepoRef {
                installation_id: r.installation_id,
                repo: "acme/r200".into(),
            },
            "rigger-p-elsewhere",
            &["cirun-gpu".into()],
        )
        .await
        .unwrap();
    let repos = w
        .client
        .installation_repositories(r.installation_id)
        .await
        .unwrap();
    assert_eq!(repos.len(), 205);
    let everywhere: Vec<RepoRef> = repos
        .iter()
        .map(|repo| RepoRef {
            installation_id: r.installation_id,
            repo: repo.clone(),
        })
        .collect();
    let mut mine = w
        .client
        .list_runners("rigger-p-", &everywhere)
        .await
        .everywhere()
        .unwrap();
    assert_eq!(mine.len(), 206);
    mine.sort_by_key(|v| v.id);
    mine.dedup_by_key(|v| v.id);
    assert_eq!(mine.len(), 206, "no runner listed twice");
    assert_eq!(
        w.sim.requests("GET /repos/acme/ml/actions/runners"),
        3,
        "205 runners: three pages of 100"
    );
    assert_eq!(w.sim.requests("GET /installation/repositories"), 3);
}

#[tokio::test]
async fn organization_runners_join_the_configured_group() {
    let w = world().await;
    let r = repo(&w);
    w.sim.add_repo("acme/web", &[]);
    let org = w.client_with(RunnerPlacement {
        scope: RunnerScope::Organization,
        group_id: 7,
    });
    let labels = vec!["cirun-gpu".to_string(), "cirun-gpu--9".to_string()];
    match org.create_jit_runner(&r, "rigger-o-1", &labels).await {
        Err(GithubError::Refused(m)) => assert!(m.contains("Runner group not found"), "{m}"),
        other => panic!("no group 7 yet: {other:?}"),
    }
    w.sim.add_runner_group("acme", 7);
    let jit = org
        .create_jit_runner(&r, "rigger-o-1", &labels)
        .await
        .unwrap();
    assert_eq!(
        w.sim
            .requests("POST /orgs/acme/actions/runners/generate-jitconfig"),
        2
    );
    let registered = w
        .sim
        .runners()
        .into_iter()
        .find(|x| x.id == jit.runner_id)
        .unwrap();
    assert_eq!((registered.repo.as_str(), registered.group_id), ("acme", 7));
    // Listed at the organization, not per repository.
    let listed = org
        .list_runners("rigger-o-", std::slice::from_ref(&r))
        .await
        .everywhere()
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id, listed[0].scope.as_str()),
        (jit.runner_id, "acme")
    );
    assert!(
        w.client
            .list_runners("rigger-o-", std::slice::from_ref(&r))
            .await
            .everywhere()
            .unwrap()
            .is_empty()
    );
    // An org runner takes a job from any of the org's repositories.
    let job = w.sim.queue_job(NewJob {
        repo: "acme/web".into(),
        labels: vec!["cirun-gpu--9".into()],
        head_sha: "abc".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 1,
        conclusion: "success".into(),
    });
    let id = w.sim.connect_runner(jit.jit_config.expose()).unwrap();
    assert_eq!(w.sim.take_job(id), Some(job));
    w.sim.finish_job(job, "success");
    // Deleted at the organization, whether asked with the job's repository
    // or with the scope the listing gave (what the reconciler passes).
    let second = org
        .create_jit_runner(&r, "rigger-o-2", &labels)
        .await
        .unwrap();
    let third = org
        .create_jit_runner(&r, "rigger-o-3", &labels)
        .await
        .unwrap();
    org.delete_runner(&r, second.runner_id).await.unwrap();
    let by_scope = RepoRef {
        installation_id: r.installation_id,
        repo: "acme".into(),
    };
    w.client
        .delete_runner(&by_scope, third.runner_id)
        .await
        .unwrap();
    assert_eq!(w.sim.requests("DELETE /orgs/acme/actions/runners/:id"), 2);
    assert!(
        org.list_runners("rigger-o-", std::slice::from_ref(&r))
            .await
            .everywhere()
            .unwrap()
            .is_empty()
    );
    // The repository-scoped client still registers on the repository (group 1).
    assert!(
        w.client
            .create_jit_runner(&r, "rigger-r-1", &labels)
            .await
            .is_ok(),
        "group 1 on the repository"
    );
}

#[tokio::test]
async fn secondary_limits_through_octocrab_say_how_long_to_wait() {
    let w = world().await;
    let r = repo(&w);
    w.client.config_files(&r, None).await.unwrap();
    w.sim.secondary_limit_for(30_000, 45);
    let sent = w.sim.seen().len();
    match w.client.config_files(&r, None).await {
        Err(GithubError::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 45_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.seen().len(), sent + 1, "one request met the limit");
    // The installation waits what GitHub advised: nothing more goes out,
    // whichever call it is, and each says how long is left.
    w.clock.advance_ms(10_000);
    for attempt in 0..2 {
        match w.client.config_files(&r, None).await {
            Err(GithubError::RateLimited { retry_after_ms }) => {
                assert_eq!(retry_after_ms, 35_000, "attempt {attempt}")
            }
            other => panic!("{other:?}"),
        }
    }
    match w.client.default_branch(r.installation_id, "acme/ml").await {
        Err(GithubError::RateLimited { retry_after_ms }) => assert_eq!(retry_after_ms, 35_000),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.sim.seen().len(), sent + 1, "held back, not sent");
    // GitHub's own limit was over after 30 s; rigger keeps to the advice.
    w.clock.advance_ms(20_000);
    assert!(w.client.config_files(&r, None).await.is_err());
    w.clock.advance_ms(15_000);
    w.client.config_files(&r, None).await.unwrap();
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(stat(&w, |s| s.rate_limited.load(Relaxed) as i64), 1);
    assert_eq!(stat(&w, |s| s.secondary_limited.load(Relaxed) as i64), 1);
    assert_eq!(stat(&w, |s| s.held_back.load(Relaxed) as i64), 4);
}
