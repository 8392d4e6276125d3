//! The contract test: rigger's traffic with the simulated GitHub, and the
//! simulated GitHub's answers and webhooks, held to GitHub's published
//! OpenAPI descriptions (`@octokit/openapi` 23.0.2, `@octokit/openapi-webhooks`
//! 12.1.0, which `.ci/run` installs into `target/openapi/` and names in
//! `RIGGER_GITHUB_OPENAPI`; without it the tests say they skip, and pass).
//!
//! Stories in repository and organization scope run with the simulator
//! recording (jobs run, idle and denied; environment approvals, runner
//! groups, files over 1 MB, pinned runner releases, given-up runs
//! cancelled; rate limits; installations suspended, removed, uninstalled
//! and lost deliveries recovered); then every request rigger made is
//! matched to GitHub's operation and checked (parameters, body, headers),
//! every answer checked against the operation's documented response for
//! its status and the media type asked for, and every webhook sent against
//! `webhooks["<event>-<action>"]`. Zero violations, except those listed in
//! [`EXCEPTIONS`] with their reasons.
//!
//! Coverage is checked too: every operation rigger's client can call
//! ([`RIGGER_OPERATIONS`]) must have been called by rigger, the error
//! answers rigger reads ([`REQUIRED_ANSWERS`]) given, and every webhook the
//! simulator can send ([`SIMULATOR_WEBHOOKS`]) sent; an operation or a
//! webhook outside those lists fails the test until it is listed. The few
//! answers rigger cannot provoke (it fits a check run's summary before
//! sending; it never reads one delivery) are asked for by the test itself,
//! with its own `User-Agent`, so they never count as rigger's calls.
//!
//! The validator is also run over GitHub's and octokit's own examples
//! (`RIGGER_GITHUB_FIXTURES`): a validator that rejected them would be
//! wrong, not GitHub.
//!
//! Alone: `RIGGER_GITHUB_OPENAPI=target/openapi cargo test --test github_contract`.

#[macro_use]
mod harness;
mod contract;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use contract::findings::{Findings, coverage_gaps};
use contract::openapi::{Call, Spec};
use harness::Story;
use rigger::engine::ports::{Github, RepoRef, RunnerArch};
use rigger::engine::state::{InstanceState, JobState};
use rigger::github::app::AppAuth;
use rigger::github::client::GithubClient;
use rigger::github::http::Api;
use rigger::sim::github::record::{Exchange, Recorded};
use rigger::sim::github::releases::PREVIOUS;
use rigger::sim::github::{NewJob, RunnerGroup, SecondaryLimit, WebhookFaults};

/// Every operation rigger's GitHub client (`src/github/`) can call, as
/// GitHub's description names it. Each must be called by rigger in the
/// stories; an operation rigger calls that is not here fails the test, so
/// a call added to the client is added here, and to a story.
const RIGGER_OPERATIONS: &[&str] = &[
    // The App (its JWT).
    "GET /app/installations",
    "GET /repos/{owner}/{repo}/installation",
    "POST /app/installations/{installation_id}/access_tokens",
    "GET /app/hook/deliveries",
    "POST /app/hook/deliveries/{delivery_id}/attempts",
    // An installation's token.
    "GET /installation/repositories",
    "GET /repos/{owner}/{repo}",
    "GET /repos/{owner}/{repo}/contents/{path}",
    "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig",
    "POST /orgs/{org}/actions/runners/generate-jitconfig",
    "GET /repos/{owner}/{repo}/actions/runners",
    "GET /orgs/{org}/actions/runners",
    "DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}",
    "DELETE /orgs/{org}/actions/runners/{runner_id}",
    "GET /repos/{owner}/{repo}/actions/runners/downloads",
    "GET /orgs/{org}/actions/runners/downloads",
    "GET /repos/{owner}/{repo}/releases/tags/{tag}",
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}",
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}",
    "POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
    "POST /repos/{owner}/{repo}/check-runs",
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}",
    "GET /orgs/{org}/teams/{team_slug}/memberships/{username}",
    "GET /repos/{owner}/{repo}/collaborators/{username}/permission",
    "GET /repos/{owner}/{repo}/collaborators/{username}",
    "GET /orgs/{org}/actions/runner-groups/{runner_group_id}",
    "GET /orgs/{org}/actions/runner-groups/{runner_group_id}/repositories",
];

/// Operations the simulator serves that rigger never calls, asked for by
/// the test itself so that their shapes are held to GitHub's too.
const SIMULATOR_ONLY: &[(&str, &str)] = &[(
    "GET /app/hook/deliveries/{delivery_id}",
    "rigger reads the deliveries list only; the simulator serves one delivery's detail as GitHub does",
)];

/// Answers that must have been given (by anyone; a bare status: on any
/// operation), beside each operation's success: the refusals and limits
/// rigger reads, whose bodies must be GitHub's too.
const REQUIRED_ANSWERS: &[&str] = &[
    "GET /repos/{owner}/{repo}/collaborators/{username} 204",
    "GET /repos/{owner}/{repo}/collaborators/{username} 404",
    "GET /repos/{owner}/{repo}/collaborators/{username}/permission 404",
    "GET /repos/{owner}/{repo}/contents/{path} 404",
    "GET /repos/{owner}/{repo}/releases/tags/{tag} 404",
    "GET /orgs/{org}/teams/{team_slug}/memberships/{username} 404",
    "POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel 202",
    "POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel 409",
    "POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig 422",
    "POST /app/hook/deliveries/{delivery_id}/attempts 202",
    "POST /repos/{owner}/{repo}/check-runs 422",
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id} 422",
    "POST /app/installations/{installation_id}/access_tokens 403",
    "401",
    "403",
    "429",
];

/// Every webhook the simulator can send (`<event>-<action>`, as the
/// webhooks description keys them; a `queued` of a job deploying to an
/// environment, which carries its `deployment`, apart).
const SIMULATOR_WEBHOOKS: &[&str] = &[
    "workflow-job-queued",
    "workflow-job-queued with a deployment",
    "workflow-job-waiting",
    "workflow-job-in-progress",
    "workflow-job-completed",
    "installation-suspend",
    "installation-unsuspend",
    "installation-deleted",
    "installation-repositories-removed",
];

/// The `User-Agent` of the test's own requests (rigger's is `rigger/…`).
const TEST_AGENT: &str = "rigger-contract-test";

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
struct Verdict {
    requests: usize,
    webhooks: usize,
    /// Operations rigger called.
    operations: BTreeSet<String>,
    /// Operations the test called itself.
    test_operations: BTreeSet<String>,
    /// `METHOD /template status` and `status` of every answer.
    answers: BTreeSet<String>,
    /// The webhooks sent, as [`SIMULATOR_WEBHOOKS`] names them.
    webhook_kinds: BTreeSet<String>,
    /// Violations, less [`EXCEPTIONS`].
    findings: Findings,
}

impl Verdict {
    fn new() -> Verdict {
        Verdict {
            findings: Findings::new(EXCEPTIONS),
            requests: 0,
            webhooks: 0,
            operations: BTreeSet::new(),
            test_operations: BTreeSet::new(),
            answers: BTreeSet::new(),
            webhook_kinds: BTreeSet::new(),
        }
    }

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
                let op = format!("{} {t}", x.method);
                self.answers.insert(format!("{op} {}", x.status));
                if x.header("user-agent") == Some(TEST_AGENT) {
                    self.test_operations.insert(op);
                } else {
                    self.operations.insert(op);
                }
            }
            self.answers.insert(x.status.to_string());
            let mut found = request_headers(x, template);
            found.extend(specs.rest.check_call(&Call {
                method: &x.method,
                path: &x.path,
                query: &x.query,
                request_body: x.request_body.as_ref(),
                status: x.status,
                response_body: x.response_body.as_ref(),
                accept: x.header("accept"),
                headers: None,
                response_type: None,
            }));
            self.keep(story, found);
        }
        for w in &recorded.webhooks {
            self.webhooks += 1;
            let mut kind = match w.body["action"].as_str() {
                Some(a) => format!("{}-{a}", w.event),
                None => w.event.clone(),
            }
            .replace('_', "-");
            if w.body.get("deployment").is_some() {
                kind.push_str(" with a deployment");
            }
            self.webhook_kinds.insert(kind.clone());
            let mut found = specs
                .webhooks
                .check_webhook(&w.event, Some(&w.headers), &w.body);
            not_githubs_urls(&kind, &w.body, &mut found);
            not_a_person(&kind, &w.body, &mut found);
            self.keep(story, found);
        }
    }

    fn keep(&mut self, story: &str, found: Vec<String>) {
        self.findings.keep(story, found);
    }

    fn report(&self) {
        let rigger_covered = RIGGER_OPERATIONS
            .iter()
            .filter(|op| self.operations.contains(**op))
            .count();
        eprintln!(
            "contract: {} requests checked, {} operations covered ({rigger_covered} of the {} \
             rigger can call, {} that only the simulator serves), {} operation-status pairs; \
             {} webhooks checked ({} kinds); {} violations ({} accepted as exceptions)",
            self.requests,
            self.operations.union(&self.test_operations).count(),
            RIGGER_OPERATIONS.len(),
            SIMULATOR_ONLY
                .iter()
                .filter(|(op, _)| self.test_operations.contains(*op))
                .count(),
            self.answers.iter().filter(|a| a.contains(' ')).count(),
            self.webhooks,
            self.webhook_kinds.len(),
            self.findings.violations.len(),
            self.findings.excepted
        );
        for op in &self.operations {
            eprintln!("  covered: {op}");
        }
        for op in &self.test_operations {
            eprintln!("  covered by the test's own request: {op}");
        }
        let mut gaps = coverage_gaps(
            RIGGER_OPERATIONS,
            &self.operations,
            REQUIRED_ANSWERS,
            &self.answers,
        );
        for (op, _) in SIMULATOR_ONLY {
            if !self.test_operations.contains(*op) {
                gaps.push(format!("the test did not ask for `{op}`"));
            }
        }
        for op in &self.test_operations {
            if !SIMULATOR_ONLY.iter().any(|(o, _)| o == op) && !self.operations.contains(op) {
                gaps.push(format!(
                    "the test itself asked for `{op}`, neither rigger's nor in SIMULATOR_ONLY"
                ));
            }
        }
        for w in SIMULATOR_WEBHOOKS {
            if !self.webhook_kinds.contains(*w) {
                gaps.push(format!("the simulator never sent the webhook `{w}`"));
            }
        }
        for w in &self.webhook_kinds {
            if !SIMULATOR_WEBHOOKS.contains(&w.as_str()) {
                gaps.push(format!(
                    "the simulator sent `{w}`, which SIMULATOR_WEBHOOKS does not list: list it"
                ));
            }
        }
        assert!(
            gaps.is_empty(),
            "the stories do not cover GitHub's traffic as they should:\n{}",
            gaps.join("\n")
        );
        self.findings.assert_clean("GitHub's");
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

/// Where the URLs of GitHub.com's webhook payloads point (the simulator's
/// REST answers point at the simulator, so a client can follow them; its
/// webhooks carry GitHub's own, as GitHub's do).
const GITHUB_HOSTS: &[&str] = &[
    "https://api.github.com/",
    "https://github.com/",
    "https://avatars.githubusercontent.com/",
    "https://uploads.github.com/",
];

/// The URLs in a webhook's body that do not point at GitHub.com, as one
/// violation naming the first.
fn not_githubs_urls(kind: &str, body: &serde_json::Value, out: &mut Vec<String>) {
    fn walk(v: &serde_json::Value, at: &str, found: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::String(t)
                if (t.starts_with("http://") || t.starts_with("https://"))
                    && !GITHUB_HOSTS.iter().any(|h| t.starts_with(h)) =>
            {
                found.push((at.to_string(), t.clone()));
            }
            serde_json::Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    walk(x, &format!("{at}[{i}]"), found);
                }
            }
            serde_json::Value::Object(o) => {
                for (k, x) in o {
                    walk(x, &format!("{at}.{k}"), found);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(body, "$", &mut found);
    if let Some((at, url)) = found.first() {
        out.push(format!(
            "webhook {kind}: {} URLs that are not GitHub.com's, as a webhook's are (first: {at}: {url:?})",
            found.len()
        ));
    }
}

/// A webhook's `sender` is "the user that triggered the event" (the
/// description's `simple-user`, "A GitHub user"), and who suspended an
/// installation is a person too: a `User` (or an App's `Bot`), never the
/// organization itself.
fn not_a_person(kind: &str, body: &serde_json::Value, out: &mut Vec<String>) {
    for at in ["/sender", "/installation/suspended_by"] {
        let Some(who) = body.pointer(at).filter(|v| !v.is_null()) else {
            continue;
        };
        let t = who["type"].as_str().unwrap_or_default();
        if t != "User" && t != "Bot" {
            out.push(format!(
                "webhook {kind}: ${}: a {t:?} account, where GitHub names the user who acted",
                at.replace('/', ".")
            ));
        }
    }
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
/// a user; a stranger denied; on a public repository, where GitHub answers
/// `read` for anyone, a collaborator told from a passer-by), in a runner
/// group serving selected repositories, rented, run, finished; one left
/// idle, listed and deleted by the reconciler.
async fn organization_scope() -> Recorded {
    let s = Story::begin_with(
        "contract-org",
        &[
            ("RIGGER_GITHUB_RUNNER_SCOPE", "organization"),
            ("RIGGER_GITHUB_RUNNER_GROUP_ID", "7"),
        ],
    )
    .await;
    s.github.record(true);
    let mut group = RunnerGroup::new(7);
    group.name = "gpu".into();
    group.visibility = "selected".into();
    group.allows_public_repositories = true;
    group.selected = ["acme/ml", "acme/open"].map(String::from).into();
    s.github.set_runner_group("acme", group);
    s.github.add_repo("acme/open", &[]);
    s.github.set_private("acme/open", false);
    s.github.set_role("acme/open", "ada", "read");
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
    // A public repository: a reader who is a collaborator (GitHub's 204)
    // and one who is not (404); neither has `write`.
    let reader = s
        .github
        .queue_job(job("acme/open", "cirun-org-gpu--5", "ada"));
    let passer_by = s
        .github
        .queue_job(job("acme/open", "cirun-org-gpu--6", "mallory"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    for j in [by_team, by_role, repo_level] {
        assert_eq!(s.job_state(j).await, JobState::WaitingForRunner, "job {j}");
    }
    for j in [stranger, reader, passer_by] {
        assert_eq!(s.job_state(j).await, JobState::Failed, "job {j} is denied");
    }

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
    for j in [by_team, by_role, repo_level, stranger, reader, passer_by] {
        s.github.cancel_job(j);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
    s.github.take_recorded()
}

/// What GitHub puts between a job and a runner, with a pinned runner
/// release (looked up by its tag) and given-up runs cancelled: a job
/// deploying to an environment (`queued` with status `waiting` and its
/// deployment, then `waiting`) approved, rented, run; a `.cirun.yml` over
/// 1 MB (the `object` media type's answer, without content); jobs rigger
/// gives up on, their runs cancelled (202), one whose run ended on GitHub
/// before rigger heard of it (409).
async fn gates_and_given_up_runs() -> Recorded {
    let s = Story::begin_with(
        "contract-gates",
        &[
            ("RIGGER_RUNNER_VERSION", PREVIOUS),
            ("RIGGER_GITHUB_CANCEL_RUNS_ON_GIVE_UP", "true"),
        ],
    )
    .await;
    s.github.record(true);
    let approved = s
        .github
        .queue_job_for_environment(job("acme/ml", "cirun-gpu--201", "octocat"), "production");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(approved).await, JobState::WaitingForApproval);
    assert!(s.github.approve(approved));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(approved).await, JobState::WaitingForRunner);
    assert_eq!(s.machines_boot().len(), 1);
    s.webhooks_arrive().await;
    s.clock.advance_ms(60_000);
    s.github.finish_job(approved, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(approved).await, JobState::Completed);

    let big = format!("# {}\n{}", "x".repeat(1 << 20), harness::CIRUN);
    s.github.add_repo("acme/big", &[(".cirun.yml", &big)]);
    let too_large = s
        .github
        .queue_job(job("acme/big", "cirun-gpu--202", "octocat"));
    let unmatched = s
        .github
        .queue_job(job("acme/ml", "cirun-nothing-matches--203", "octocat"));
    let ended = s
        .github
        .queue_job(job("acme/ml", "cirun-nothing-matches--204", "octocat"));
    s.webhooks_arrive().await;
    // `ended`'s run is over on GitHub; rigger has not heard yet.
    s.github.cancel_job(ended);
    s.rigger_provisions().await;
    for j in [too_large, unmatched, ended] {
        assert_eq!(s.job_state(j).await, JobState::Failed, "job {j}");
    }
    assert_eq!(
        s.github.job(unmatched).unwrap().conclusion.as_deref(),
        Some("cancelled"),
        "the given-up job's run is cancelled"
    );
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
    s.github.take_recorded()
}

/// GitHub's limits in the middle of a job: secondary limits answered 429
/// (with `retry-after`) and 403 (without), then the JIT endpoint's 422
/// "spammed"; the job is rented once they pass.
async fn limits() -> Recorded {
    let s = Story::begin("contract-limits").await;
    s.github.record(true);
    let installation = s.github.installation_of("acme");
    let job = s.a_job_is_queued("cirun-gpu--301");
    s.webhooks_arrive().await;
    for (status, retry_after_s) in [(429, Some(1)), (403, None)] {
        s.github.secondary_limit(SecondaryLimit {
            installation: Some(installation),
            after_route: None,
            for_ms: 1_000,
            retry_after_s,
            status,
            until_ms: None,
        });
    }
    s.github.set_jit_per_minute(Some(0));
    let jit = "POST /repos/acme/ml/actions/runners/generate-jitconfig";
    for _ in 0..40 {
        s.rigger_provisions().await;
        if s.github.requests(jit) > 0 {
            s.github.set_jit_per_minute(None);
        }
        if s.job_state(job).await == JobState::WaitingForRunner {
            break;
        }
        s.clock.advance_ms(15_000);
    }
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    assert!(s.github.requests(jit) >= 2, "refused once, then served");
    s.machines_boot();
    s.webhooks_arrive().await;
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
    s.github.take_recorded()
}

/// The App's installation over time: a `queued` delivery lost and found in
/// the App's delivery log (and asked for again); the installation
/// suspended with a job running, unsuspended; a repository removed from
/// it; the App uninstalled.
async fn installations_and_deliveries() -> Recorded {
    let s = Story::begin("contract-installs").await;
    s.github.record(true);
    s.github.set_webhook_faults(WebhookFaults {
        loss_rate: 1.0,
        ..Default::default()
    });
    let running = s.a_job_is_queued("cirun-gpu--401");
    s.webhooks_arrive().await;
    s.github.set_webhook_faults(WebhookFaults::default());
    assert!(s.engine.store.job(running).await.unwrap().is_none());
    let pass = s.engine.recover_deliveries_once().await.unwrap();
    assert_eq!(pass.redelivered, 1, "{pass:?}");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(running).await, JobState::Running);
    // One delivery's detail, as someone looking into it asks (rigger never does).
    let jwt = s.engine.github.auth().jwt().unwrap();
    let attempt = s.github.delivery_attempts()[0].clone();
    let (status, detail) = test_request(
        &s,
        reqwest::Method::GET,
        &format!("/app/hook/deliveries/{}", attempt.id),
        jwt.expose(),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let detail = detail.unwrap_or_default();
    assert_eq!(
        detail["url"],
        format!("{}/webhook", s.app_url),
        "a delivery names where it was sent: the App's webhook URL"
    );
    assert_eq!(
        detail["request"]["headers"]["X-GitHub-Delivery"], attempt.guid,
        "{detail}"
    );

    let installation = s.github.installation_of("acme");
    assert!(s.github.suspend_installation(installation));
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(running).await, JobState::Failed);
    s.engine.reconcile_once().await.unwrap();
    s.github.finish_job(running, "failure");
    s.clock.advance_ms(25 * 3_600_000);
    assert!(s.github.unsuspend_installation(installation));
    s.webhooks_arrive().await;

    s.github
        .add_repo("acme/other", &[(".cirun.yml", harness::CIRUN)]);
    let removed = s
        .github
        .queue_job(job("acme/other", "cirun-gpu--402", "octocat"));
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(removed).await, JobState::WaitingForRunner);
    assert!(s.github.remove_repo_from_installation("acme/other"));
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(removed).await, JobState::Failed);
    s.github.cancel_job(removed);

    let waiting = s.a_job_is_queued("cirun-gpu--403");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(waiting).await, JobState::WaitingForRunner);
    assert!(s.github.delete_installation(installation));
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(waiting).await, JobState::Failed);
    s.engine.reconcile_once().await.unwrap();
    // The registrations rigger could no longer delete GitHub removes a day later.
    s.clock.advance_ms(25 * 3_600_000);
    s.nothing_leaked().await;
    s.github.take_recorded()
}

/// A request of the test's own (its `User-Agent` says so): GitHub's
/// headers, a bearer credential, a JSON body. Its status and JSON answer.
async fn test_request(
    s: &Story,
    method: reqwest::Method,
    path: &str,
    bearer: &str,
    body: Option<&serde_json::Value>,
) -> (u16, Option<serde_json::Value>) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", s.github.public_url()))
        .header("user-agent", TEST_AGENT)
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .header("authorization", format!("Bearer {bearer}"));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let answer = req.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.ok())
}

/// The App client's calls the stories do not make: finding installations,
/// a repository's default branch, the installation's repositories (more
/// than a page), a file that is not there, a ref given, a release GitHub
/// does not have, a login that is no user, the delivery log from a cursor,
/// a revoked token, the primary rate limit; and, asked by the test itself,
/// check-run outputs GitHub refuses.
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
    assert!(
        matches!(missing, Ok(rigger::github::contents::FileAnswer::Missing)),
        "{missing:?}"
    );
    assert!(
        client
            .runners_at(installation, "acme/ml")
            .await
            .unwrap()
            .is_empty()
    );
    let repo = RepoRef {
        installation_id: installation,
        repo: "acme/ml".into(),
    };
    // A pinned release GitHub does not have.
    let release = client
        .runner_release(&repo, RunnerArch::X64, Some("9.9.9"))
        .await;
    assert!(matches!(release, Ok(None)), "{release:?}");
    // A login that is no GitHub user has no permission at all: 404.
    let role = client.role_of(&repo, "no-such-user-4c1d").await;
    assert!(matches!(role, Ok(None)), "{role:?}");
    // The delivery log from a cursor (GitHub's `v1_…`).
    let page = client.list_hook_deliveries(Some("v1_10000000")).await;
    assert!(page.is_ok(), "{page:?}");
    // A revoked token: 401, then a new one.
    s.github.revoke_tokens(installation);
    assert!(client.runners_at(installation, "acme/ml").await.is_ok());

    // Check-run output GitHub refuses, which rigger's client never sends
    // (it fits the summary first): over 65,535 UTF-8 bytes in fewer
    // characters, answered 422 on create and update.
    let token = client
        .auth()
        .installation_token(installation)
        .await
        .unwrap();
    let wide = "日".repeat(30_000);
    let create = serde_json::json!({"name": "rigger", "head_sha": "8f3c1e2d",
        "output": {"title": "t", "summary": wide}});
    let path = "/repos/acme/ml/check-runs";
    let (status, _) = test_request(
        &s,
        reqwest::Method::POST,
        path,
        token.expose(),
        Some(&create),
    )
    .await;
    assert_eq!(status, 422);
    let fine = serde_json::json!({"name": "rigger", "head_sha": "8f3c1e2d", "status": "in_progress",
        "output": {"title": "t", "summary": "s"}});
    let (_, run) = test_request(&s, reqwest::Method::POST, path, token.expose(), Some(&fine)).await;
    let id = run.and_then(|r| r["id"].as_i64()).expect("a check run");
    let update = serde_json::json!({"output": {"title": "t", "summary": "s", "text": wide}});
    let (status, _) = test_request(
        &s,
        reqwest::Method::PATCH,
        &format!("{path}/{id}"),
        token.expose(),
        Some(&update),
    )
    .await;
    assert_eq!(status, 422);
    // Over 65,535 characters: the request itself breaks GitHub's
    // description, which the validator must see (kept out of the
    // recording, checked here); GitHub's answer is a 422 of its own words.
    s.github.record(false);
    let long = serde_json::json!({"name": "rigger", "head_sha": "8f3c1e2d",
        "output": {"title": "t", "summary": "x".repeat(70_000)}});
    let (status, answer) =
        test_request(&s, reqwest::Method::POST, path, token.expose(), Some(&long)).await;
    s.github.record(true);
    if let Some(specs) = specs() {
        let found = specs.rest.check_call(&Call {
            method: "POST",
            path,
            query: &[],
            request_body: Some(&long),
            status,
            response_body: answer.as_ref(),
            accept: Some("application/vnd.github+json"),
            headers: None,
            response_type: None,
        });
        assert_eq!(
            found,
            vec![
                "POST /repos/{owner}/{repo}/check-runs request: $.output.summary: 70000 characters, at most 65535 allowed"
            ],
            "an over-long summary is caught, and GitHub's 422 has its shape ({status})"
        );
    }

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
    let mut verdict = Verdict::new();
    verdict.check(specs, "repository", repository_scope().await);
    verdict.check(specs, "organization", organization_scope().await);
    verdict.check(specs, "gates", gates_and_given_up_runs().await);
    verdict.check(specs, "limits", limits().await);
    verdict.check(specs, "installations", installations_and_deliveries().await);
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
            headers: None,
            response_type: None,
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
