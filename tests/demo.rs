//! `rigger demo` runs the whole lifecycle and leaks nothing.

use rigger::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_runs_every_job_to_its_end_and_leaks_nothing() {
    let report = run(
        DemoOptions {
            jobs: 3,
            seed: 7,
            // Fast, with room for a loaded machine: a simulated minute is half a second.
            speed: 120.0,
            progress: false,
        },
        false,
    )
    .await
    .unwrap();
    assert_eq!(report.leaked_instances, 0);
    assert_eq!(report.instances_created, 3);
    assert_eq!(report.instances_destroyed, 3);
    assert_eq!(report.jobs.len(), 5);
    let ran: Vec<_> = report.jobs.iter().filter(|j| j.gpu.is_some()).collect();
    assert_eq!(ran.len(), 3);
    for j in &ran {
        assert_eq!(j.state, "completed", "{j:?}");
        assert!(j.cost_usd > 0.0 && j.seconds.unwrap() > 0.0, "{j:?}");
    }
    assert!(
        ran.iter()
            .any(|j| j.conclusion.as_deref() == Some("failure")),
        "a failed job is torn down too"
    );
    let no_offer = report
        .jobs
        .iter()
        .find(|j| j.label == "cirun-h200x8")
        .unwrap();
    assert!(
        no_offer
            .reason
            .as_deref()
            .unwrap()
            .starts_with("0 offers: "),
        "{no_offer:?}"
    );
    let total: f64 = report.jobs.iter().map(|j| j.cost_usd).sum();
    assert!((report.total_cost_usd - total).abs() < 1e-9);
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "jobs",
        "instances_created",
        "instances_destroyed",
        "leaked_instances",
        "total_cost_usd",
    ] {
        assert!(json.get(key).is_some(), "{key}");
    }
}
