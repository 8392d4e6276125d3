//! `.access.yml` roles against repositories as GitHub has them: on a public
//! repository GitHub answers `read` for anyone's permission (everyone may
//! read it), so a rule for "collaborators with at least read" must not let
//! every GitHub user rent the org's GPUs.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::JobState;
use rigger::sim::github::NewJob;

const GLOBAL: &str = "runners:\n  - name: org-gpu\n    cloud: vast_ai\n    instance_type: 1xRTX_4090\n    labels: [cirun-org-gpu]\n";

/// One policy: people with at least `read` on the repository.
const READERS: &str = "version: 1\npolicies:\n  - id: readers\n    roles: [read]\naccess_control:\n  - resource: org-gpu\n    policies: [readers]\n";

fn queue(s: &Story, repo: &str, actor: &str, label: &str) -> i64 {
    s.github.queue_job(NewJob {
        repo: repo.into(),
        labels: vec![label.into()],
        head_sha: "8f3c1e2d".into(),
        fork: false,
        actor: actor.into(),
        duration_ms: 60_000,
        conclusion: "success".into(),
    })
}

async fn denied(s: &Story, job: i64, who: &str) {
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.failure.as_deref()),
        (JobState::Failed, Some("denied")),
        "{who}'s job is denied: {row:?}"
    );
    assert!(
        s.engine
            .store
            .instances_for_job(job)
            .await
            .unwrap()
            .is_empty(),
        "{who}'s job gets no machine"
    );
}

async fn on_a_public_repository_only_collaborators_have_a_role() {
    let s = Story::begin("access-public").await;
    s.github.add_repo(
        "acme/.cirun",
        &[(".cirun.global.yml", GLOBAL), (".access.yml", READERS)],
    );
    s.github.set_private("acme/ml", false);
    s.github.set_role("acme/ml", "ada", "read");
    s.github.set_role("acme/ml", "bob", "admin");
    let reader = queue(&s, "acme/ml", "ada", "cirun-org-gpu--2101");
    let admin = queue(&s, "acme/ml", "bob", "cirun-org-gpu--2102");
    // Any GitHub user can push to a fork and open a pull request; here
    // one pushes a branch of a workflow that runs on `push` in their own
    // clone: all that matters is who GitHub says the actor is.
    let stranger = queue(&s, "acme/ml", "mallory", "cirun-org-gpu--2103");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;

    assert_eq!(
        s.job_state(reader).await,
        JobState::WaitingForRunner,
        "a collaborator with read may use the runner"
    );
    assert_eq!(
        s.job_state(admin).await,
        JobState::WaitingForRunner,
        "an admin has at least read"
    );
    denied(&s, stranger, "a stranger reading a public repository").await;
    let why = s
        .engine
        .store
        .job(stranger)
        .await
        .unwrap()
        .unwrap()
        .reason
        .unwrap_or_default();
    assert!(
        why.contains("`mallory` may not use the org runner `org-gpu`"),
        "{why}"
    );
    assert!(
        why.contains("make them a collaborator")
            && why.contains("reading a public repository is no role"),
        "the check run says what to do: {why}"
    );
    let runs = s.github.check_runs();
    let theirs = runs
        .iter()
        .find(|c| c.external_id == Some(stranger.to_string()))
        .expect("mallory's job has a check run");
    assert!(
        theirs.conclusion.as_deref() == Some("failure") && theirs.summary.contains(&why),
        "mallory's check run says why: {theirs:?}"
    );
    assert_eq!(s.vast.live_instances().len(), 2, "two machines, not three");
    for job in [reader, admin, stranger] {
        s.github.cancel_job(job);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

async fn on_a_private_repository_a_stranger_has_no_role() {
    let s = Story::begin("access-private").await;
    s.github.add_repo(
        "acme/.cirun",
        &[(".cirun.global.yml", GLOBAL), (".access.yml", READERS)],
    );
    s.github.set_role("acme/ml", "ada", "triage");
    let triager = queue(&s, "acme/ml", "ada", "cirun-org-gpu--2201");
    let stranger = queue(&s, "acme/ml", "mallory", "cirun-org-gpu--2202");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.job_state(triager).await,
        JobState::WaitingForRunner,
        "triage is at least read"
    );
    denied(&s, stranger, "a stranger to a private repository").await;
    for job in [triager, stranger] {
        s.github.cancel_job(job);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

both_databases!(
    on_a_public_repository_only_collaborators_have_a_role,
    on_a_private_repository_a_stranger_has_no_role,
);
