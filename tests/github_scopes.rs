//! Stories of one installation's rate limit among several. GitHub's
//! budgets are per installation: one organization using up its hour must
//! not blind rigger to the others' runners, whose idle GPUs would bill
//! until that hour ends. And what rigger cannot see of the limited one it
//! leaves alone: a runner absent from a list it could not read may be busy.

mod harness;

use std::sync::{Arc, Mutex};

use harness::{CIRUN, Story};
use rigger::engine::ports::{Clock as _, Github as _, GithubError, RepoRef};
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::github::NewJob;
use rigger::store::InstanceRow;

const MIN: i64 = 60_000;

/// Log lines, as rigger writes them, while the guard lives (this test's
/// thread only: a story's rigger and simulators run on its runtime).
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn capture() -> (Lines, tracing::subscriber::DefaultGuard) {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        (lines, tracing::subscriber::set_default(subscriber))
    }

    fn containing(&self, text: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|l| l.contains(text))
            .map(str::to_string)
            .collect()
    }
}

fn queue(s: &Story, repo: &str, label: &str) -> i64 {
    s.github.queue_job(NewJob {
        repo: repo.into(),
        labels: vec![label.into()],
        head_sha: "8f3c1e2d".into(),
        fork: false,
        actor: "octocat".into(),
        duration_ms: 600_000,
        conclusion: "success".into(),
    })
}

async fn machine_of(s: &Story, job: i64) -> InstanceRow {
    let rows = s.engine.store.instances_for_job(job).await.unwrap();
    assert_eq!(rows.len(), 1, "one machine for job {job}: {rows:?}");
    let id = rows[0].id.clone();
    s.engine.store.instance(&id).await.unwrap().unwrap()
}

/// What the installation sent GitHub from `since` on, as `METHOD /route status`.
fn sent_since(s: &Story, owner: &str, since: i64) -> Vec<String> {
    let inst = s.github.installation_of(owner);
    s.github
        .requests_of(inst, since)
        .iter()
        .map(|r| format!("{} {}", r.route, r.status))
        .collect()
}

#[tokio::test]
async fn an_installation_out_of_budget_blinds_rigger_to_its_own_runners_only() {
    let s = Story::begin("scopes-budget").await;
    s.github.add_repo("beta/vision", &[(".cirun.yml", CIRUN)]);
    let acme = queue(&s, "acme/ml", "cirun-gpu--2001");
    let beta = queue(&s, "beta/vision", "cirun-gpu--2002");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(acme).await, JobState::WaitingForRunner);
    assert_eq!(s.job_state(beta).await, JobState::WaitingForRunner);

    // acme's hour of GitHub calls is used up; beta's is not.
    let reset = s.github.use_up_budget(s.github.installation_of("acme"));
    let limited = s.clock.now_ms() + 1;
    let (log, guard) = Lines::capture();
    // Both machines boot and their runners come online, but GitHub hands
    // neither its job (as when a job goes to a runner outside rigger).
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    assert_eq!(booted.len(), 2);
    for b in &booted {
        s.github
            .connect_runner(&harness::jit_config_of(b))
            .expect("the JIT config is accepted");
    }
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(
        machine_of(&s, beta).await.state,
        InstanceState::Online,
        "beta's runner is seen online though acme's installation is rate-limited"
    );
    assert_eq!(
        machine_of(&s, acme).await.state,
        InstanceState::Booting,
        "acme's runners cannot be listed: nothing is known of them"
    );
    let errors = s
        .metrics()
        .await
        .get("rigger_github_errors_total{kind=\"rate_limited\"}")
        .copied();

    // Past the idle timeout: beta's idle machine is destroyed on time and
    // its job, still queued on GitHub, goes back to rigger's queue.
    s.clock.advance_ms(11 * MIN);
    s.engine.reconcile_once().await.unwrap();
    let b = machine_of(&s, beta).await;
    assert_eq!(
        b.state,
        InstanceState::Destroyed,
        "beta's idle GPU must not bill while acme waits out its hour: {b:?}"
    );
    assert_eq!(s.job_state(beta).await, JobState::Queued);

    // Past the bootstrap timeout too: acme's machine is left alone, for its
    // runner's absence from a list rigger could not read proves nothing.
    s.clock.advance_ms(10 * MIN);
    s.engine.reconcile_once().await.unwrap();
    s.engine.reconcile_once().await.unwrap();
    let a = machine_of(&s, acme).await;
    assert_eq!(
        a.state,
        InstanceState::Booting,
        "never destroyed on what could not be seen: {a:?}"
    );
    assert_eq!(s.vast.live_instances().len(), 1, "acme's machine runs");
    // Its quiet job is not asked about either: one call learnt the budget
    // was used up, and nothing went out for acme after it.
    let sent = sent_since(&s, "acme", limited);
    assert_eq!(sent.len(), 1, "one call meets the limit: {sent:?}");
    assert!(sent[0].ends_with(" 403"), "{sent:?}");
    // Passes during the wait add no error: the limit is a wait, said once.
    assert_eq!(
        s.metrics()
            .await
            .get("rigger_github_errors_total{kind=\"rate_limited\"}")
            .copied(),
        errors,
        "no error counted each pass while acme waits"
    );
    drop(guard);
    let said = log.containing("GitHub rate-limits this installation");
    assert_eq!(said.len(), 1, "the wait is said once, at INFO: {said:?}");
    assert!(said[0].contains("INFO"), "{said:?}");
    // The one WARN is GitHub's 403 itself, not one per pass.
    let warned = log.containing("WARN");
    assert!(
        warned.len() <= 1
            && warned
                .iter()
                .all(|l| l.contains("GitHub rate limit (primary)")),
        "no warning each pass while acme waits: {warned:#?}"
    );

    // acme's hour is over: its runner is seen online, and left idle it
    // goes the way beta's went.
    s.clock.set_ms(reset + 1_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(machine_of(&s, acme).await.state, InstanceState::Online);
    s.clock.advance_ms(11 * MIN);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(machine_of(&s, acme).await.state, InstanceState::Destroyed);
    assert!(s.vast.live_instances().is_empty());
    assert!(s.github.runners().is_empty(), "both runners deregistered");

    for job in s.github.jobs() {
        s.github.cancel_job(job.id);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

#[tokio::test]
async fn a_listing_says_which_places_it_could_not_read_and_asks_a_limited_installation_once() {
    let s = Story::begin("scopes-listing").await;
    s.github.add_repo("acme/tools", &[(".cirun.yml", CIRUN)]);
    s.github.add_repo("beta/vision", &[(".cirun.yml", CIRUN)]);
    let at = |repo: &str| RepoRef {
        installation_id: s.github.installation_of(repo.split('/').next().unwrap()),
        repo: repo.into(),
    };
    let client = &s.engine.github;
    let labels = ["cirun-gpu".to_string()];
    let beta = client
        .create_jit_runner(&at("beta/vision"), "rigger-x-1", &labels)
        .await
        .unwrap();
    client
        .create_jit_runner(&at("acme/ml"), "rigger-x-2", &labels)
        .await
        .unwrap();
    s.github.use_up_budget(s.github.installation_of("acme"));
    let since = s.clock.now_ms() + 1;
    s.clock.advance_ms(1);

    let everywhere = [at("acme/ml"), at("acme/tools"), at("beta/vision")];
    let listing = client.list_runners("rigger-x-", &everywhere).await;
    let listed: Vec<(i64, &str)> = listing
        .runners
        .iter()
        .map(|r| (r.id, r.scope.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![(beta.runner_id, "beta/vision")],
        "beta's runners are listed whatever acme's budget"
    );
    let unknown: Vec<&str> = listing
        .unknown
        .iter()
        .map(|(r, _)| r.repo.as_str())
        .collect();
    assert_eq!(
        unknown,
        vec!["acme/ml", "acme/tools"],
        "{:?}",
        listing.unknown
    );
    assert!(
        listing
            .unknown
            .iter()
            .all(|(_, e)| matches!(e, GithubError::RateLimited { .. })),
        "a rate limit, never a refusal: {:?}",
        listing.unknown
    );
    assert_eq!(
        sent_since(&s, "acme", since),
        vec!["GET /repos/acme/ml/actions/runners 403"],
        "acme's second place is not asked once the first met the limit"
    );
    assert!(listing.everywhere().is_err());
}
