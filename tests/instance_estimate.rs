//! The estimate an offer was ranked by is kept on the machine's row when
//! it is rented (hours and dollars, as columns), for `rigger instances
//! list --format vast-instances` and the demo to read.

mod harness;

use harness::Story;

#[tokio::test]
async fn a_rented_machine_keeps_its_estimate_on_its_row() {
    let s = Story::begin("estimate-columns").await;
    let job = s.a_job_is_queued("cirun-gpu--1760");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let rows = s.engine.store.instances_for_job(job).await.unwrap();
    let [m] = &rows[..] else {
        panic!("one machine: {rows:?}")
    };
    let hours = m.estimated_hours.expect("estimated hours");
    let cost = m.estimated_cost.expect("estimated cost");
    assert!(hours > 0.0 && cost > 0.0, "{m:?}");
    // The figures the rent was announced with, in the job's events.
    let rented = s
        .events(job)
        .await
        .into_iter()
        .find(|(kind, _)| kind == "rented")
        .expect("a rented event")
        .1;
    assert!(
        rented.contains(&format!("est. {hours:.2} h, ${cost:.2} total")),
        "{rented} / {m:?}"
    );
    s.machines_boot();
    s.webhooks_arrive().await;
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}
