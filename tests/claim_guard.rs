//! What a provisioning attempt holds while it rents one offer — the pool's
//! claim on the offer, its place within the limits, Vast.ai's create slot
//! (taken before the GitHub runner is registered) — is given back on every
//! way out of the attempt by one guard (`engine/provision/claim.rs`). Each
//! story takes one way out and then shows that the next job is not held
//! up by what the attempt left: it rents the offer the attempt had claimed
//! (a claim kept would send it to a dearer one for two minutes), at once
//! (a slot kept would make it wait Vast.ai's create interval), or within a
//! one-machine limit (a place kept would refuse it).
//!
//! The market is three good RTX 4090 hosts and nothing else: A is the
//! cheapest, then B, then C.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::ports::Clock;
use rigger::engine::state::JobState;
use rigger::sim::vast::Faults;
use serde_json::{Map, Value, json};

const REPO: &str = "acme/claims";
const REGISTRATION: &str = "POST /repos/acme/claims/actions/runners/generate-jitconfig";

const CIRUN: &str = "runners:
  - name: rtx4090
    cloud: vast_ai
    instance_type: 1xRTX_4090
    labels: [cirun-claims]
";

const A: i64 = 99_300_001;
const B: i64 = 99_300_002;
const C: i64 = 99_300_003;

async fn story(name: &str, extra: &[(&str, &str)]) -> Story {
    let s = Story::with_market_and(name, 0, extra).await;
    s.github.add_repo(REPO, &[(".cirun.yml", CIRUN)]);
    let now_s = s.clock.now_ms() as f64 / 1000.0;
    let template: Map<String, Value> = rigger::sim::vast::market::generate(7, 3_000, now_s)
        .into_iter()
        .find(|o| o["gpu_name"] == "RTX 4090" && o["cpu_arch"] == "amd64")
        .expect("the simulated market lists RTX 4090s");
    for (id, dph) in [(A, 0.05), (B, 0.10), (C, 0.20)] {
        let mut o = template.clone();
        let good = json!({
            "id": id, "ask_contract_id": id, "machine_id": id % 100_000, "num_gpus": 1,
            "gpu_total_ram": o["gpu_ram"].clone(), "dph_base": dph, "min_bid": dph / 2.0,
            "storage_cost": 0.0, "reliability": 0.999, "reliability2": 0.999,
            "verification": "verified", "inet_down": 2000.0, "disk_space": 1000.0,
            "cpu_ram": 256_000.0, "geolocation": "Texas, US", "cuda_max_good": 12.8,
            "rentable": true, "rented": false, "end_date": now_s + 30.0 * 86_400.0,
        });
        for (k, v) in good.as_object().unwrap() {
            o.insert(k.clone(), v.clone());
        }
        s.vast.list_offer(o);
    }
    // Past Vast.ai's create interval since rigger started: the first
    // attempt gets its create slot.
    s.clock.advance_ms(5_000);
    s
}

fn job(s: &Story, n: u32) -> i64 {
    s.a_job_is_queued_in(REPO, &format!("cirun-claims--{n}"))
}

async fn reason(s: &Story, job: i64) -> String {
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    row.reason.unwrap_or_default()
}

/// The offer a job's machine was rented from.
async fn rented_for(s: &Story, job: i64) -> i64 {
    let rows = s.engine.store.instances_for_job(job).await.unwrap();
    let live: Vec<_> = rows.iter().filter(|r| r.provider_id.is_some()).collect();
    assert_eq!(live.len(), 1, "one machine for job {job}: {rows:?}");
    let id: i64 = live[0].provider_id.as_deref().unwrap().parse().unwrap();
    let offer = s.vast.rented_offer(id).expect("rented from an offer");
    offer["id"].as_i64().unwrap()
}

/// The next job, at the same moment: it rents A in this one pass.
async fn the_next_job_rents_a_at_once(s: &Story, n: u32) -> i64 {
    let next = job(s, n);
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    assert_eq!(
        s.job_state(next).await,
        JobState::WaitingForRunner,
        "the next job was held up: {}",
        reason(s, next).await
    );
    assert_eq!(
        rented_for(s, next).await,
        A,
        "the next job did not get the offer the ended attempt had claimed"
    );
    next
}

async fn the_end(s: &Story, jobs: &[i64]) {
    for &j in jobs {
        s.github.cancel_job(j);
    }
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

/// GitHub refuses the runner's registration: the attempt held A and the
/// create slot; the next job gets both at once.
#[tokio::test]
async fn a_refused_registration_leaves_the_offer_and_the_slot_to_the_next_job() {
    let s = story("claim-registration", &[]).await;
    let first = job(&s, 1);
    s.github.fail_route(REGISTRATION, 1, 403);
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    let why = reason(&s, first).await;
    println!("registration refused: {why}");
    assert!(why.contains("cannot register a runner"), "{why}");
    assert_eq!(s.instances_created(), 0);
    let next = the_next_job_rents_a_at_once(&s, 2).await;
    the_end(&s, &[first, next]).await;
}

/// The job is cancelled while its runner is being registered: its
/// machine's row is not written, nothing is rented, and what it held is
/// the next job's at once.
#[tokio::test]
async fn a_job_cancelled_during_its_registration_leaves_the_offer_and_the_slot() {
    let s = story("claim-cancel-registering", &[]).await;
    let first = job(&s, 1);
    s.webhooks_arrive().await;
    s.github.hold_next_registrations(1);
    let engine = s.engine.clone();
    let pass = tokio::spawn(async move { engine.provision_due().await });
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.github.registrations_held(1),
    )
    .await
    .expect("the attempt registers a runner");
    s.github.cancel_job(first);
    s.webhooks_arrive().await;
    s.github.release_held_registrations();
    pass.await.unwrap().unwrap();
    assert_eq!(s.job_state(first).await, JobState::Cancelled);
    assert_eq!(s.instances_created(), 0, "nothing rented for it");
    let next = the_next_job_rents_a_at_once(&s, 2).await;
    the_end(&s, &[next]).await;
}

/// The attempt's future is dropped while it waits for GitHub (its task
/// aborted): nothing of what it held stays held.
#[tokio::test]
async fn an_attempt_dropped_midway_leaves_the_offer_and_the_slot() {
    let s = story("claim-dropped", &[]).await;
    let first = job(&s, 1);
    s.webhooks_arrive().await;
    s.github.hold_next_registrations(1);
    let engine = s.engine.clone();
    let pass = tokio::spawn(async move { engine.provision_due().await });
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.github.registrations_held(1),
    )
    .await
    .expect("the attempt registers a runner");
    pass.abort();
    assert!(pass.await.unwrap_err().is_cancelled());
    let next = the_next_job_rents_a_at_once(&s, 2).await;
    // The dropped attempt's job is taken back by the reconciler once its
    // lease runs out (rule 9), and rented for again.
    s.github.release_held_registrations();
    s.clock.advance_ms(61_000);
    s.engine.reconcile_once().await.unwrap();
    s.rigger_provisions().await;
    assert_eq!(s.job_state(first).await, JobState::WaitingForRunner);
    assert_eq!(rented_for(&s, first).await, B);
    the_end(&s, &[first, next]).await;
}

/// Vast.ai refuses the create (429: another tool on the key): the create
/// used its slot, and A and the job's place go back; the job rents A when
/// it comes back, not B.
#[tokio::test]
async fn a_create_refused_with_429_leaves_the_offer() {
    let s = story("claim-429", &[]).await;
    s.expects_vast_refusals();
    let first = job(&s, 1);
    s.webhooks_arrive().await;
    // Refused after its search: while its runner is registered.
    s.github.hold_next_registrations(1);
    let engine = s.engine.clone();
    let pass = tokio::spawn(async move { engine.provision_due().await });
    tokio::time::timeout(
        std::time::Duration::from_secs(20),
        s.github.registrations_held(1),
    )
    .await
    .expect("the attempt registers a runner");
    s.vast.set_faults(Faults {
        rate_limit_burst: 1,
        ..Faults::default()
    });
    s.github.release_held_registrations();
    pass.await.unwrap().unwrap();
    s.vast.set_faults(Faults::default());
    let why = reason(&s, first).await;
    println!("create refused: {why}");
    assert!(why.contains("rate limited"), "{why}");
    assert_eq!(s.job_state(first).await, JobState::Queued);
    assert!(s.vast.live_instances().is_empty());
    // Back after Vast.ai's wait, well within the two minutes a claim on A
    // would keep it from every job.
    s.clock.advance_ms(20_000);
    s.rigger_provisions().await;
    assert_eq!(s.job_state(first).await, JobState::WaitingForRunner);
    assert_eq!(
        rented_for(&s, first).await,
        A,
        "the job was sent to a dearer offer"
    );
    the_end(&s, &[first]).await;
}

/// Two jobs: one claims A, the other B; one of them takes the create slot
/// and rents, the other waits for the next slot and is cancelled while it
/// waits. A third job gets the offer the cancelled one had claimed, not C.
#[tokio::test]
async fn a_job_cancelled_while_it_waits_for_a_slot_leaves_its_offer() {
    let s = story("claim-cancel-waiting", &[]).await;
    let jobs = [job(&s, 1), job(&s, 2)];
    s.webhooks_arrive().await;
    s.rigger_provisions_once().await;
    let (mut waiting, mut rented) = (None, None);
    for &j in &jobs {
        if s.job_state(j).await == JobState::Queued {
            let why = reason(&s, j).await;
            assert!(
                why.starts_with("waiting for Vast.ai's create rate limit"),
                "{why}"
            );
            waiting = Some(j);
        } else {
            rented = Some(rented_for(&s, j).await);
        }
    }
    let waiting = waiting.expect("one job waits for the next create slot");
    // Which of the two the other job claimed depends on which took the
    // slot first.
    let left = match rented.expect("one job rents") {
        r if r == A => B,
        r => {
            assert_eq!(r, B, "the two cheapest go to the two jobs");
            A
        }
    };
    s.github.cancel_job(waiting);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(waiting).await, JobState::Cancelled);
    let third = job(&s, 3);
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(s.job_state(third).await, JobState::WaitingForRunner);
    assert_eq!(
        rented_for(&s, third).await,
        left,
        "the cancelled job's claim kept its offer from the next job"
    );
    the_end(&s, &[jobs[0], jobs[1], third]).await;
}

/// With room for one machine, the attempt's first offer is gone (rented
/// by someone else between search and create): its place goes back, so
/// the same attempt may go on to B (here it waits for the next create
/// slot, the gone offer's create having used one), and rents B then.
#[tokio::test]
async fn a_gone_offer_gives_its_place_back_to_the_next_offer() {
    let s = story(
        "claim-gone",
        &[
            ("RIGGER_LIMITS_MAX_INSTANCES", "1"),
            ("RIGGER_LIMITS_MAX_INSTANCES_PER_REPO", "1"),
        ],
    )
    .await;
    let first = job(&s, 1);
    s.webhooks_arrive().await;
    s.vast.set_faults(Faults {
        steal_rate: 1.0,
        ..Faults::default()
    });
    s.rigger_provisions_once().await;
    s.vast.set_faults(Faults::default());
    assert!(s.vast.offer(A).is_none(), "A was rented by someone else");
    let why = reason(&s, first).await;
    println!("first offer gone: {why}");
    assert!(
        why.starts_with("waiting for Vast.ai's create rate limit"),
        "the next offer was not tried within the limit: {why}"
    );
    s.rigger_provisions().await;
    assert_eq!(s.job_state(first).await, JobState::WaitingForRunner);
    assert_eq!(rented_for(&s, first).await, B);
    the_end(&s, &[first]).await;
}
