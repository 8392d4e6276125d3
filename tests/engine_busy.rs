//! I4 end to end: a machine whose runner is busy is never destroyed before
//! its job ends, whichever path wants it gone (a webhook, or a reconcile
//! pass that learns in the same pass that the machine is busy).

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::JobState;

fn job_of(h: &harness::Held) -> i64 {
    let body: serde_json::Value = serde_json::from_slice(&h.body).unwrap();
    body["workflow_job"]["id"].as_i64().unwrap_or_default()
}

/// Machine M is rented for job X; GitHub gives M's runner to sibling Y (same
/// labels), and Y's `in_progress` is lost. X ends on another machine: M's
/// deregistration is refused (busy) and M is kept. Later a reconcile pass
/// asks GitHub about the quiet Y and learns it runs on M: that same pass
/// must not destroy M.
async fn a_pass_that_learns_a_machine_is_busy_does_not_destroy_it() {
    let s = Story::begin("busy-learned").await;
    let x = s.a_job_is_queued("cirun-gpu--1251");
    let y = s.a_job_is_queued("cirun-gpu--1251");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let machine_of = |job: i64| {
        let e = s.engine.clone();
        async move { e.store.instances_for_job(job).await.unwrap().pop().unwrap() }
    };
    let (m, other) = (machine_of(x).await, machine_of(y).await);
    let provider = |i: &rigger::store::InstanceRow| i.provider_id.clone().unwrap();
    // Both machines boot; Y's machine's runner takes X, M's runner takes Y.
    s.hold_webhooks();
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let mut booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    booted.sort_by_key(|b| b.id.to_string() != provider(&other));
    for b in booted {
        let runner = s
            .github
            .connect_runner(&harness::jit_config_of(&b))
            .unwrap();
        s.github.take_job(runner).unwrap();
    }
    s.github.finish_job(x, "success");
    // X's deliveries arrive; Y's `in_progress` is lost for good.
    let held = s.held_deliveries().await;
    let (of_x, _lost): (Vec<_>, Vec<_>) = held.into_iter().partition(|h| job_of(h) == x);
    s.deliver(&of_x).await;
    s.release_webhooks();
    let live = || -> Vec<String> {
        s.vast
            .live_instances()
            .iter()
            .map(|l| l.0.to_string())
            .collect()
    };
    assert_eq!(
        live(),
        [provider(&m)],
        "kept: GitHub refused to deregister its busy runner"
    );

    // Y has been quiet long enough to be asked about: GitHub says it runs
    // on M's runner. The pass binds Y to M and leaves M alone (I4).
    s.clock.advance_ms(11 * 60_000);
    let log = std::env::temp_dir().join(format!(
        "rigger-busy-{}-{:?}.log",
        std::process::id(),
        std::thread::current().id()
    ));
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::sync::Mutex::new(std::fs::File::create(&log).unwrap()))
        .with_ansi(false)
        .finish();
    let logging = tracing::subscriber::set_default(subscriber);
    let actions = s.engine.reconcile_once().await.unwrap();
    drop(logging);
    assert_eq!(s.job_state(y).await, JobState::Running, "{actions:?}");
    // The pass's log reads as Y's story: the pass, the rule, the job.
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let line = text
        .lines()
        .find(|l| l.contains("taken by"))
        .unwrap_or_else(|| panic!("Y's binding is logged: {text}"));
    assert!(
        line.contains("reconcile_pass{pass=")
            && line.contains("reconcile_action{rule=\"job_completed_elsewhere\"")
            && line.contains(&format!("job_id={y}")),
        "{line}"
    );
    assert_eq!(
        live(),
        [provider(&m)],
        "I4: M runs Y and is not destroyed: {actions:?}"
    );
    // And the passes after it, too.
    s.clock.advance_ms(60_000);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(live(), [provider(&m)], "still running Y");

    // Y ends: now M goes.
    s.github.finish_job(y, "success");
    s.webhooks_arrive().await;
    assert!(s.vast.live_instances().is_empty());
    assert_eq!(s.job_state(y).await, JobState::Completed);
    s.nothing_leaked().await;
}

both_databases!(a_pass_that_learns_a_machine_is_busy_does_not_destroy_it);
