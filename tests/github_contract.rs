//! The contract test: rigger's traffic with the simulated GitHub, and the
//! simulated GitHub's answers and webhooks, held to GitHub's published
//! OpenAPI descriptions (`@octokit/openapi` 23.0.2, `@octokit/openapi-webhooks`
//! 12.1.0, which `.ci/run` installs into `target/openapi/` and names in
//! `RIGGER_GITHUB_OPENAPI`; without it the tests say they skip, and pass).
//!
//! Stories in repository and organization scope run with the simulator
//! recording; then every request rigger made is matched to GitHub's
//! operation and checked (parameters, body), every answer checked against
//! the operation's documented response for its status, and every webhook
//! sent against `webhooks["<event>-<action>"]`. Zero violations, except
//! those listed in [`EXCEPTIONS`] with their reasons. The validator is also
//! run over GitHub's and octokit's own examples (`RIGGER_GITHUB_FIXTURES`):
//! a validator that rejected them would be wrong, not GitHub.
//!
//! Alone: `RIGGER_GITHUB_OPENAPI=target/openapi cargo test --test github_contract`.

#[macro_use]
mod harness;
mod contract;

use std::path::PathBuf;
use std::sync::OnceLock;

use contract::openapi::{Call, Spec};
use harness::Story;
use rigger::engine::state::{InstanceState, JobState};
use rigger::github::app::AppAuth;
use rigger::github::client::GithubClient;
use rigger::github::http::Api;
use rigger::sim::github::NewJob;
use rigger::sim::github::record::{Exchange, Recorded};

/// Violations accepted, each with why: `(a part of the violation line, reason)`.
/// Keep it empty unless GitHub's own description is wrong or the fix is
/// someone else's to make (then say whose).
const EXCEPTIONS: &[(&str, &str)] = &[
    // The description's own inconsistency: its `installation` schema has
    // `account: anyOf [simple-user, enterprise]`, but the list inlines it
    // as `allOf` of both, which no account can be (an organization has no
    // enterprise `slug`). The simulator answers as the `installation`
    // schema says.
    (
        "GET /app/installations response 200: $[0].account.",
        "GitHub's description inlines `allOf` where its installation schema says `anyOf`",
    ),
];

/// Where GitHub's and octokit's published examples (older than the pinned
/// descriptions) depart from the descriptions: `(example file, a part of
/// the violation, why)`. Each must still be found: a validator that stopped
/// finding them would have gone blind.
const EXAMPLE_DRIFT: &[(&str, &str, &str)] = &[
    (
        "check_run/rerequested",
        ".node_id: required property missing",
        "a 2018 example, before check runs carried node_id",
    ),
    (
        "check_run/rerequested",
        ".details_url: required property missing",
        "a 2018 example",
    ),
    (
        "check_run/rerequested",
        "app.permissions: required property missing",
        "a 2018 example, before apps listed permissions in payloads",
    ),
    (
        "check_run/rerequested",
        "app.events: required property missing",
        "a 2018 example",
    ),
    (
        "check_run/rerequested",
        "\"2018-04-25 20:42:10\" is not a date-time",
        "a 2018 example: a time without T or offset",
    ),
    (
        "check_run/rerequested",
        "$.repository.disabled: required property missing",
        "a 2018 example, before `disabled`",
    ),
    (
        "push/",
        "$.repository.has_discussions: required property missing",
        "examples from before Discussions",
    ),
    (
        "installation",
        "$.installation.app_slug: required property missing",
        "examples from before `app_slug`",
    ),
    (
        "installation",
        "$.installation.created_at: an integer where string is required",
        "older examples send Unix seconds; the description says a date-time string",
    ),
    (
        "installation",
        "$.installation.updated_at: an integer where string is required",
        "as created_at",
    ),
    (
        "get-job.response-200",
        "$.created_at: required property missing",
        "GitHub's docs example of a job lacks the created_at its schema requires",
    ),
];

/// GitHub's REST and webhooks descriptions, parsed once per test binary.
struct Specs {
    rest: Spec,
    webhooks: Spec,
}

fn specs() -> Option<&'static Specs> {
    static SPECS: OnceLock<Option<Specs>> = OnceLock::new();
    SPECS
        .get_or_init(|| {
            let Some(dir) = std::env::var_os("RIGGER_GITHUB_OPENAPI") else {
                eprintln!(
                    "contract test skipped: RIGGER_GITHUB_OPENAPI is not set (.ci/run installs \
                     @octokit/openapi into target/openapi and sets it)"
                );
                return None;
            };
            let dir = PathBuf::from(dir);
            let started = std::time::Instant::now();
            let load = |pkg: &str| {
                let path = dir.join(pkg).join("generated/api.github.com.json");
                Spec::from_file(&path).unwrap_or_else(|e| panic!("RIGGER_GITHUB_OPENAPI: {e}"))
            };
            let specs = Specs {
                rest: load("openapi"),
                webhooks: load("openapi-webhooks"),
            };
            eprintln!(
                "GitHub's descriptions parsed in {} ms",
                started.elapsed().as_millis()
            );
            Some(specs)
        })
        .as_ref()
}

/// What a recording was found to do.
#[derive(Default)]
struct Verdict {
    requests: usize,
    webhooks: usize,
    operations: std::collections::BTreeSet<String>,
    violations: Vec<String>,
    excepted: usize,
    /// Which of [`EXCEPTIONS`] were needed.
    exceptions_used: std::collections::BTreeSet<usize>,
}

impl Verdict {
    fn check(&mut self, specs: &Specs, story: &str, recorded: Recorded) {
        assert_eq!(
            recorded.dropped, 0,
            "{story}: the recording overflowed; raise record::MAX_EXCHANGES"
        );
        for x in &recorded.exchanges {
            assert!(
                !x.body_too_large,
                "{story}: {} {}: a body too large to keep",
                x.method, x.path
            );
            self.requests += 1;
            let template = specs.rest.find(&x.method, &x.path).map(|m| m.template);
            if let Some(t) = template {
                self.operations.insert(format!("{} {t}", x.method));
            }
            let mut found = request_headers(x, template);
            found.extend(specs.rest.check_call(&Call {
                method: &x.method,
                path: &x.path,
                query: &x.query,
                request_body: x.request_body.as_ref(),
                status: x.status,
                response_body: x.response_body.as_ref(),
                accept: x.header("accept"),
            }));
            self.keep(story, found);
        }
        for w in &recorded.webhooks {
            self.webhooks += 1;
            let found = specs
                .webhooks
                .check_webhook(&w.event, Some(&w.headers), &w.body);
            self.keep(story, found);
        }
    }

    fn keep(&mut self, story: &str, found: Vec<String>) {
        for v in found {
            if let Some(i) = EXCEPTIONS.iter().position(|(part, _)| v.contains(part)) {
                self.excepted += 1;
                self.exceptions_used.insert(i);
            } else if !self.violations.iter().any(|seen| seen.ends_with(&v)) {
                self.violations.push(format!("[{story}] {v}"));
            }
        }
    }

    fn report(&self) {
        eprintln!(
            "contract: {} requests checked ({} operations), {} webhooks checked, {} violations \
             ({} accepted as exceptions)",
            self.requests,
            self.operations.len(),
            self.webhooks,
            self.violations.len(),
            self.excepted
        );
        for op in &self.operations {
            eprintln!("  covered: {op}");
        }
        assert!(
            self.violations.is_empty(),
            "{} departures from GitHub's published contract (fix the simulator's shape, or \
             rigger's request; list a true exception in EXCEPTIONS with its reason):\n{}",
            self.violations.len(),
            self.violations.join("\n")
        );
        for (i, (part, why)) in EXCEPTIONS.iter().enumerate() {
            assert!(
                self.exceptions_used.contains(&i),
                "the exception `{part}` ({why}) is no longer needed: remove it from EXCEPTIONS"
            );
        }
    }
}

/// The headers GitHub asks of every request ("Getting started with the
/// REST API"): a `User-Agent` (requests without one are refused), `Accept:
/// application/vnd.github+json`, an `X-GitHub-Api-Version`; and a JSON body
/// says it is JSON.
fn request_headers(x: &Exchange, template: Option<&str>) -> Vec<String> {
    let what = format!("{} {}", x.method, template.unwrap_or(&x.path));
    let mut out = Vec::new();
    if x.header("user-agent").is_none_or(str::is_empty) {
        out.push(format!(
            "{what} request: header `User-Agent`: required, not sent"
        ));
    }
    match x.header("accept") {
        Some(a) if a.contains("application/vnd.github") => {}
        Some(a) => out.push(format!(
            "{what} request: header `Accept`: {a:?}, not application/vnd.github+json"
        )),
        None => out.push(format!(
            "{what} request: header `Accept`: not sent (GitHub asks for application/vnd.github+json)"
        )),
    }
    if x.header("x-github-api-version").is_none() {
        out.push(format!(
            "{what} request: header `X-GitHub-Api-Version`: not sent"
        ));
    }
    if x.request_body.is_some()
        && !x
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    {
        out.push(format!(
            "{what} request: a JSON body without `Content-Type: application/json`"
        ));
    }
    out
}

fn job(repo: &str, label: &str, actor: &str) -> NewJob {
    NewJob {
        repo: repo.into(),
        labels: vec![label.into()],
        head_sha: "8f3c1e2d4b5a69788796a5b4c3d2e1f001234567".into(),
        fork: false,
        actor: actor.into(),
        duration_ms: 60_000,
        conclusion: "success".into(),
    }
}

/// Repository scope: a job rented, run and finished; a fork's job; a
/// config error; a runner left idle, listed and deleted by the reconciler.
async fn repository_scope() -> Recorded {
    let s = Story::begin("contract-repo").await;
    s.github.record(true);
    s.github.add_repo(
        "acme/broken",
        &[(
            ".cirun.yml",
            "runners:\n  - name: x\n    cloud: nowhere\n    labels: [cirun-x]\n",
        )],
    );

    // Rented, run, finished.
    let happy = s.a_job_is_queued("cirun-gpu--101");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(happy).await, JobState::WaitingForRunner);
    assert_eq!(s.machines_boot().len(), 1);
    s.webhooks_arrive().await;
    s.clock.advance_ms(60_000);
    s.github.finish_job(happy, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(happy).await, JobState::Completed);

    // A config error, on the check run; and one with 1,500 errors, whose
    // summary must still fit a check run's (`maxLength` 65,535).
    let broken = s
        .github
        .queue_job(job("acme/broken", "cirun-x--1", "octocat"));
    let many: String = (0..1500)
        .map(|i| format!("  - name: r{i}\n    cloud: vast_ai\n    instance_type: 1xNOPE{i}\n    labels: [cirun-r{i}]\n"))
        .collect();
    let many = format!("runners:\n{many}");
    s.github
        .add_repo("acme/very-broken", &[(".cirun.yml", &many)]);
    let very_broken = s
        .github
        .queue_job(job("acme/very-broken", "cirun-r0--1", "octocat"));
    // A fork's job: rigger asks for its run.
    let mut fork = job("acme/ml", "cirun-gpu--102", "mallory");
    fork.fork = true;
    let fork = s.github.queue_job(fork);
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(broken).await, JobState::Failed);
    assert_eq!(s.job_state(very_broken).await, JobState::Failed);

    // Idle: listed online, then deregistered and destroyed.
    let idle = s.a_job_is_queued("cirun-gpu--103");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    for b in s.booted.lock().unwrap().drain(..) {
        s.github.connect_runner(&harness::jit_config_of(&b));
    }
    s.engine.reconcile_once().await.unwrap();
    s.clock.advance_ms(11 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    let rows = s.engine.store.instances_for_job(idle).await.unwrap();
    assert!(
        rows.iter().any(|r| r.state == InstanceState::Destroyed),
        "the idle machine is destroyed: {rows:?}"
    );
    for j in [idle, fork] {
        s.github.cancel_job(j);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
    s.github.take_recorded()
}

/// Organization scope: org runners as `.access.yml` allows (a team, a role,
/// a user; a stranger denied), rented, run, finished; one left idle,
/// listed and deleted by the reconciler.
async fn organization_scope() -> Recorded {
    let s = Story::begin_with(
        "contract-org",
        &[("RIGGER_GITHUB_RUNNER_SCOPE", "organization")],
    )
    .await;
    s.github.record(true);
    let global = "runners:\n  - name: org-gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-org-gpu]\n";
    let access = "version: 1\npolicies:\n  - id: core\n    teams: [core]\n  - id: writers\n    roles: [write]\n  - id: octocat\n    users: [octocat]\naccess_control:\n  - resource: org-gpu\n    policies: [core, writers, octocat]\n";
    s.github.add_repo(
        "acme/.cirun",
        &[(".cirun.global.yml", global), (".access.yml", access)],
    );
    s.github.add_team_member("acme", "core", "alice");
    s.github.set_role("acme/ml", "bob", "write");
    let by_team = s
        .github
        .queue_job(job("acme/ml", "cirun-org-gpu--1", "alice"));
    let by_role = s
        .github
        .queue_job(job("acme/ml", "cirun-org-gpu--2", "bob"));
    let stranger = s
        .github
        .queue_job(job("acme/ml", "cirun-org-gpu--3", "mallory"));
    let repo_level = s.a_job_is_queued("cirun-gpu--4");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    for j in [by_team, by_role, repo_level] {
        assert_eq!(s.job_state(j).await, JobState::WaitingForRunner, "job {j}");
    }
    assert_eq!(s.job_state(stranger).await, JobState::Failed);

    // Two machines' runners take their jobs and finish; one idles.
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    let mut ran = Vec::new();
    for (i, b) in booted.iter().enumerate() {
        let runner = s
            .github
            .connect_runner(&harness::jit_config_of(b))
            .expect("a fresh JIT config");
        if i > 0
            && let Some(j) = s.github.take_job(runner)
        {
            ran.push(j);
        }
    }
    s.webhooks_arrive().await;
    s.engine.reconcile_once().await.unwrap();
    s.clock.advance_ms(60_000);
    for j in &ran {
        s.github.finish_job(*j, "success");
    }
    s.webhooks_arrive().await;
    s.clock.advance_ms(11 * 60_000);
    s.engine.reconcile_once().await.unwrap();
    for j in [by_team, by_role, repo_level] {
        s.github.cancel_job(j);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
    s.github.take_recorded()
}

/// The App client's calls the stories do not make: finding installations,
/// a repository's default branch, the installation's repositories (more
/// than a page), a file that is not there, a ref given.
async fn the_app_clients_other_calls() -> Recorded {
    let s = Story::begin("contract-client").await;
    s.github.record(true);
    for n in 0..105 {
        s.github.add_repo(&format!("acme/r{n:03}"), &[]);
    }
    let clock = std::sync::Arc::new(s.clock.clone());
    let auth = AppAuth::new(
        s.github.app_id(),
        s.github.private_key_pem(),
        Api::new(&s.github.public_url(), clock.clone()),
        clock,
    )
    .unwrap();
    let client = GithubClient::new(std::sync::Arc::new(auth));
    let installation = client.auth().installation_for("acme/ml").await.unwrap();
    assert_eq!(client.auth().installations().await.unwrap().len(), 1);
    assert_eq!(
        client
            .default_branch(installation, "acme/ml")
            .await
            .unwrap(),
        "main"
    );
    let repos = client
        .installation_repositories(installation)
        .await
        .unwrap();
    assert_eq!(repos.len(), 106, "every page read");
    let missing = client
        .file(installation, "acme/ml", "nothing.yml", Some("v1.0"))
        .await;
    assert!(matches!(missing, Ok(rigger::github::contents::FileAnswer::Missing)), "{missing:?}");
    assert!(
        client
            .runners_at(installation, "acme/ml")
            .await
            .unwrap()
            .is_empty()
    );
    // GitHub's answer to a call over the rate limit is its error body too.
    s.github.rate_limit_for(60_000);
    assert!(client.runners_at(installation, "acme/ml").await.is_err());
    s.github.take_recorded()
}

#[tokio::test]
async fn rigger_and_the_simulated_github_keep_to_githubs_published_contract() {
    let Some(specs) = specs() else {
        return;
    };
    let mut verdict = Verdict::default();
    verdict.check(specs, "repository", repository_scope().await);
    verdict.check(specs, "organization", organization_scope().await);
    verdict.check(specs, "client", the_app_clients_other_calls().await);
    assert!(
        verdict.requests > 50,
        "the stories made too few requests to judge"
    );
    assert!(
        verdict.webhooks > 10,
        "the stories sent too few webhooks to judge"
    );
    verdict.report();
}

/// GitHub's and octokit's own examples pass the validator: the webhook
/// payload examples against the webhooks description, the REST examples
/// from GitHub's docs against their operations' responses.
#[test]
fn githubs_own_examples_pass_the_validator() {
    let Some(specs) = specs() else {
        return;
    };
    let Some(fixtures) = std::env::var_os("RIGGER_GITHUB_FIXTURES").map(PathBuf::from) else {
        eprintln!(
            "skipped: set RIGGER_GITHUB_FIXTURES to ../shared/fixtures/github (.ci/run does)"
        );
        return;
    };
    let read = |p: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let mut violations = Vec::new();
    let mut checked = 0;
    let examples = fixtures.join("octokit-webhooks/payload-examples/api.github.com");
    for event in std::fs::read_dir(&examples).unwrap() {
        let event = event.unwrap().path();
        let name = event.file_name().unwrap().to_string_lossy().to_string();
        for file in std::fs::read_dir(&event).unwrap() {
            let file = file.unwrap().path();
            if !file.to_string_lossy().ends_with(".payload.json") {
                continue;
            }
            checked += 1;
            for v in specs.webhooks.check_webhook(&name, None, &read(&file)) {
                violations.push(format!("{}: {v}", file.display()));
            }
        }
    }
    let rest = fixtures.join("github-docs-rest-examples");
    for (file, method, path, status) in [
        (
            "generate-jitconfig.response-201.json",
            "POST",
            "/repos/o/r/actions/runners/generate-jitconfig",
            201,
        ),
        (
            "get-job.response-200.json",
            "GET",
            "/repos/o/r/actions/jobs/1",
            200,
        ),
        (
            "get-runner.response-200.json",
            "GET",
            "/repos/o/r/actions/runners/1",
            200,
        ),
        (
            "list-runners.response-200.json",
            "GET",
            "/repos/o/r/actions/runners",
            200,
        ),
        (
            "registration-token.response-201.json",
            "POST",
            "/repos/o/r/actions/runners/registration-token",
            201,
        ),
        (
            "remove-token.response-201.json",
            "POST",
            "/repos/o/r/actions/runners/remove-token",
            201,
        ),
        (
            "runner-downloads.response-200.json",
            "GET",
            "/repos/o/r/actions/runners/downloads",
            200,
        ),
    ] {
        let body = read(&rest.join(file));
        let request = (method == "POST" && file.starts_with("generate"))
            .then(|| read(&rest.join("generate-jitconfig.request.json")));
        checked += 1;
        for v in specs.rest.check_call(&Call {
            method,
            path,
            query: &[],
            request_body: request.as_ref(),
            status,
            response_body: Some(&body),
            accept: None,
        }) {
            violations.push(format!("{file}: {v}"));
        }
    }
    let mut drift_seen = vec![0; EXAMPLE_DRIFT.len()];
    violations.retain(|v| {
        let known = EXAMPLE_DRIFT
            .iter()
            .position(|(file, part, _)| v.contains(file) && v.contains(part));
        if let Some(i) = known {
            drift_seen[i] += 1;
        }
        known.is_none()
    });
    eprintln!(
        "examples: {checked} checked, {} known drifts, {} violations",
        drift_seen.iter().sum::<usize>(),
        violations.len()
    );
    assert!(
        checked > 40,
        "too few examples found under {}",
        fixtures.display()
    );
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    for ((file, part, _), seen) in EXAMPLE_DRIFT.iter().zip(drift_seen) {
        assert!(seen > 0, "the validator no longer finds `{part}` in {file}");
    }
}
