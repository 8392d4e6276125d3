//! Which actions/runner release a machine runs, against a simulated GitHub
//! that behaves as GitHub does: its runner downloads lists name only the
//! *current* release (2.331.0 here); an older release (2.330.0) is found
//! by its tag, verified by the digest GitHub computed for its file. A
//! default deployment runs the current release; a pinned one runs what it
//! pinned, verified; organization runners read the organization's list; a
//! pinned release GitHub does not have fails the job saying what to change.
//! Also what generate-jitconfig checks: names of at most 64 characters,
//! and that an arm64 runner has the labels it was registered with (GitHub
//! adds no `X64`).

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;

use harness::Story;
use rigger::config::labels::registration_labels;
use rigger::engine::names;
use rigger::engine::ports::{Github, GithubError, ManualClock, RepoRef, RunnerArch};
use rigger::engine::state::JobState;
use rigger::github::app::AppAuth;
use rigger::github::client::GithubClient;
use rigger::github::http::Api;
use rigger::sim::github::releases::{CURRENT, PREVIOUS};
use rigger::sim::github::{SimGithub, SimGithubConfig};

fn file(arch: &str, version: &str) -> String {
    format!("actions-runner-linux-{arch}-{version}.tar.gz")
}

/// What the booted machine was told to download and check.
fn runner_env(s: &Story) -> (String, Option<String>) {
    let booted = s.booted.lock().unwrap();
    let b = booted.last().expect("a machine booted");
    let env: BTreeMap<&str, &str> = b
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    (
        env["RIGGER_RUNNER_URL"].to_string(),
        env.get("RIGGER_RUNNER_SHA256").map(|s| s.to_string()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_deployment_runs_githubs_current_release() {
    let s = Story::with_real_machines("release-current").await;
    let (version, _) = s.github.current_runner_release();
    assert_eq!(version, CURRENT);
    let job = s.a_job_is_queued("cirun-gpu--901");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let live = s.vast.live_instances();
    assert_eq!(
        live.len(),
        1,
        "a machine is rented: {:?}",
        s.events(job).await
    );
    let instance = live[0].0;

    // The machine downloads the file the downloads list names, checks the
    // checksum it gives, and the runner takes the job.
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    s.machines_finish_unheard(1).await;
    let log = s.machine_log(instance);
    let url = format!(
        "{}/_runner/download/{}",
        s.github.public_url(),
        file("x64", CURRENT)
    );
    for line in [format!("downloading {url}"), "runner: job".to_string()] {
        assert!(log.contains(&line), "missing `{line}` in:\n{log}");
    }
    assert!(!log.contains("checksum mismatch"), "{log}");
    assert_eq!(s.github.runner_downloads(&file("x64", CURRENT)), 1);
    assert_eq!(
        s.github
            .requests("GET /repos/acme/ml/actions/runners/downloads"),
        1
    );
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed, "{log}");

    // A second job within the hour: the current release is known.
    let again = s.a_job_is_queued("cirun-gpu--901");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(again).await, JobState::WaitingForRunner);
    assert_eq!(
        s.github
            .requests("GET /repos/acme/ml/actions/runners/downloads"),
        1
    );
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    s.machines_finish(2).await;
    s.job_reaches(again, JobState::Completed).await;
    s.nothing_leaked().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_older_release_is_verified_by_its_digest() {
    let s = Story::build(
        "release-pinned",
        &[("RIGGER_RUNNER_VERSION", PREVIOUS)],
        true,
    )
    .await;
    let job = s.a_job_is_queued("cirun-gpu--902");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let live = s.vast.live_instances();
    assert_eq!(
        live.len(),
        1,
        "a machine is rented: {:?}",
        s.events(job).await
    );
    let instance = live[0].0;
    assert_eq!(
        s.github.requests(&format!(
            "GET /repos/actions/runner/releases/tags/v{PREVIOUS}"
        )),
        1,
        "the release is looked up by its tag"
    );

    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    s.machines_finish_unheard(1).await;
    let log = s.machine_log(instance);
    assert!(
        log.contains(&format!("downloading {}", s.github.public_url())),
        "{log}"
    );
    assert!(log.contains(&file("x64", PREVIOUS)), "{log}");
    assert!(!log.contains("checksum mismatch"), "{log}");
    assert!(log.contains("runner: job"), "{log}");
    assert_eq!(s.github.runner_downloads(&file("x64", PREVIOUS)), 1);
    assert_eq!(s.github.runner_downloads(&file("x64", CURRENT)), 0);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed, "{log}");
    s.nothing_leaked().await;
}

#[tokio::test]
async fn an_operators_checksum_verifies_a_pinned_release_from_a_mirror() {
    // Checksums the operator took from the release notes (here: the
    // simulated release's own); the machines download from a mirror.
    let (_, sum) = rigger::sim::github::runner::tarball(PREVIOUS);
    let sums = format!("{{ x64 = \"{sum}\" }}");
    let s = Story::begin_with(
        "release-operator",
        &[
            ("RIGGER_RUNNER_VERSION", PREVIOUS),
            ("RIGGER_RUNNER_SHA256", &sums),
            (
                "RIGGER_RUNNER_URL_TEMPLATE",
                "https://mirror.example/runner/{version}/actions-runner-linux-{arch}-{version}.tar.gz",
            ),
        ],
    )
    .await;
    let job = s.a_job_is_queued("cirun-gpu--903");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.job_state(job).await,
        JobState::WaitingForRunner,
        "{:?}",
        s.events(job).await
    );
    s.clock.advance_ms(30_000);
    s.vast.live_instances(); // the machine boots
    let (url, sha) = runner_env(&s);
    assert_eq!(
        url,
        format!(
            "https://mirror.example/runner/{PREVIOUS}/{}",
            file("x64", PREVIOUS)
        )
    );
    assert_eq!(
        sha.as_deref(),
        Some(sum.as_str()),
        "the operator's checksum"
    );
    // Everything was the operator's to say: GitHub was not asked.
    assert_eq!(
        s.github.requests(&format!(
            "GET /repos/actions/runner/releases/tags/v{PREVIOUS}"
        )),
        0
    );
    assert_eq!(
        s.github
            .requests("GET /repos/acme/ml/actions/runners/downloads"),
        0
    );
}

#[tokio::test]
async fn organization_runners_read_the_organizations_downloads_list() {
    let s = Story::begin_with(
        "release-org",
        &[("RIGGER_GITHUB_RUNNER_SCOPE", "organization")],
    )
    .await;
    // An App for organization runners needs Self-hosted runners, not
    // Administration: the repository's downloads list is closed to it.
    s.github.without_administration("acme");
    let job = s.a_job_is_queued("cirun-gpu--904");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.job_state(job).await,
        JobState::WaitingForRunner,
        "{:?}",
        s.events(job).await
    );
    s.clock.advance_ms(30_000);
    s.vast.live_instances(); // the machine boots
    let (url, sha) = runner_env(&s);
    let (_, current_sha) = s.github.current_runner_release();
    assert!(url.ends_with(&file("x64", CURRENT)), "{url}");
    assert_eq!(sha, Some(current_sha));
    assert_eq!(
        s.github
            .requests("GET /orgs/acme/actions/runners/downloads"),
        1
    );
    assert_eq!(
        s.github
            .requests("GET /repos/acme/ml/actions/runners/downloads"),
        0
    );
}

#[tokio::test]
async fn without_administration_repository_runners_wait_saying_which_permission() {
    let s = Story::begin("release-no-admin").await;
    s.github.without_administration("acme");
    let job = s.a_job_is_queued("cirun-gpu--906");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.instances_created(), 0);
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(row.state, JobState::Queued, "retried, not failed: {row:?}");
    let reason = row.reason.unwrap_or_default();
    assert!(
        reason.contains("Resource not accessible by integration")
            && reason.contains("Administration: read")
            && reason.contains("github.runner_scope = \"organization\""),
        "{reason}"
    );
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_pinned_release_github_does_not_have_fails_the_job_saying_what_to_change() {
    let s = Story::begin_with("release-unknown", &[("RIGGER_RUNNER_VERSION", "2.999.0")]).await;
    let job = s.a_job_is_queued("cirun-gpu--905");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(job).await, JobState::Failed);
    assert_eq!(
        s.instances_created(),
        0,
        "no machine for a runner that cannot be had"
    );
    let run = s
        .github
        .check_runs()
        .into_iter()
        .last()
        .expect("a check run");
    assert_eq!(run.conclusion.as_deref(), Some("failure"), "{run:?}");
    for words in [
        "runner.version = \"2.999.0\" is not a release of actions/runner",
        "https://github.com/actions/runner/releases",
        "remove it to run GitHub's current release",
    ] {
        assert!(
            run.summary.contains(words),
            "`{words}` not in: {}",
            run.summary
        );
    }
    s.nothing_leaked().await;
}

/// rigger's GitHub client on a simulated GitHub of its own.
async fn client() -> (SimGithub, GithubClient, RepoRef) {
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
    sim.add_repo("acme/ml", &[]);
    let repo = RepoRef {
        installation_id: sim.installation_of("acme"),
        repo: "acme/ml".into(),
    };
    (sim, GithubClient::new(Arc::new(auth)), repo)
}

#[tokio::test]
async fn the_current_release_and_a_pinned_ones_digest_come_from_github() {
    let (sim, client, repo) = client().await;
    let current = client
        .runner_release(&repo, RunnerArch::Arm64, None)
        .await
        .unwrap()
        .expect("the downloads list names it");
    assert_eq!(current.version, CURRENT);
    assert_eq!(current.filename(), file("arm64", CURRENT));
    assert_eq!(
        current.sha256.map(|s| s.to_string()),
        Some(sim.current_runner_release().1)
    );
    let pinned = client
        .runner_release(&repo, RunnerArch::X64, Some(PREVIOUS))
        .await
        .unwrap()
        .expect("the release exists");
    assert_eq!(
        pinned.url,
        format!(
            "{}/_runner/download/{}",
            sim.public_url(),
            file("x64", PREVIOUS)
        )
    );
    assert_eq!(
        pinned.sha256.map(|s| s.to_string()),
        sim.runner_release_sha256(PREVIOUS),
        "the asset's digest"
    );
    assert_eq!(
        client
            .runner_release(&repo, RunnerArch::X64, Some("2.999.0"))
            .await,
        Ok(None),
        "an unknown tag is 404"
    );
    // Without Administration the repository's list is refused.
    sim.without_administration("acme");
    let refused = client.runner_release(&repo, RunnerArch::X64, None).await;
    assert!(
        matches!(&refused, Err(GithubError::Refused(m)) if m.contains("Resource not accessible by integration")),
        "{refused:?}"
    );
}

#[tokio::test]
async fn runner_names_over_64_characters_are_refused_and_riggers_fit() {
    let (sim, client, repo) = client().await;
    let labels = vec!["self-hosted".to_string(), "cirun-gpu".into()];
    let long = "r".repeat(65);
    let refused = client.create_jit_runner(&repo, &long, &labels).await;
    assert!(
        matches!(&refused, Err(GithubError::Refused(m)) if m.contains("422") || m.contains("Validation Failed")),
        "{refused:?}"
    );
    assert!(sim.runners().is_empty());
    // rigger's longest name: the longest controller id, the largest job id.
    let controller = "c".repeat(rigger::settings::MAX_CONTROLLER_ID);
    let name = names::runner_name(&controller, i64::MAX, &names::new_instance_id());
    client
        .create_jit_runner(&repo, &name, &labels)
        .await
        .expect("rigger's names fit GitHub's 64 characters");
}

#[tokio::test]
async fn an_arm64_runner_has_the_arm64_label_not_x64() {
    let (sim, client, repo) = client().await;
    let no_job: [&str; 0] = [];
    let labels = registration_labels(&["cirun-gh200".to_string()], &no_job, "linux", "arm64");
    client
        .create_jit_runner(&repo, "rigger-e2e-1-a", &labels)
        .await
        .unwrap();
    let runner = sim.runners().pop().unwrap();
    let arm = runner
        .labels
        .iter()
        .find(|l| l.eq_ignore_ascii_case("arm64"));
    assert_eq!(
        arm.map(|l| rigger::sim::github::runner::label_type(l)),
        Some("read-only"),
        "GitHub's own architecture label: {:?}",
        runner.labels
    );
    assert!(
        !runner.labels.iter().any(|l| l.eq_ignore_ascii_case("x64")),
        "an arm64 machine would take x64 jobs: {:?}",
        runner.labels
    );
}
