//! Rented machines as Vast.ai really treats them: hosts that lose their
//! heartbeat (`unknown`), disconnect (`offline`) or freeze for a while and
//! come back; containers that cannot start (`created` with Docker's error
//! in `status_msg`); a bid the market outgrew between search and create
//! (400 `invalid_price`); an offer gone answered `200 {"success": false}`;
//! and a 404 on destroy that a proxy sent, not Vast.ai.

#[macro_use]
mod harness;

use harness::Story;
use rigger::engine::state::{InstanceState, JobState};
use rigger::sim::vast::{Faults, HostStatus, Phase};

const MIN: i64 = 60_000;

/// The one live simulated instance.
fn the_machine(s: &Story) -> i64 {
    let live = s.vast.live_instances();
    assert_eq!(live.len(), 1, "{live:?}");
    live[0].0
}

/// rigger rents a machine for the queued job; it boots, runs the job to its
/// end, and nothing is left behind.
async fn a_new_machine_serves_it_to_the_end(s: &Story, job: i64) {
    s.rigger_provisions().await;
    let taken = s.machines_boot();
    assert_eq!(taken.len(), 1, "one new machine took the job");
    s.webhooks_arrive().await;
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    s.nothing_leaked().await;
}

async fn a_busy_machine_whose_host_loses_its_heartbeat_keeps_its_job() {
    let s = Story::begin("hosts-busy-unknown").await;
    let job = s.a_job_is_queued("cirun-gpu--2101");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let taken = s.machines_boot();
    assert_eq!(taken.len(), 1);
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Running);
    let id = the_machine(&s);

    // No heartbeat from the host for half an hour: its runner may well be
    // running the job all along. A busy machine is never destroyed for it.
    assert!(s.vast.host_goes(id, HostStatus::Unknown, Some(30 * MIN)));
    for _ in 0..25 {
        s.clock.advance_ms(MIN);
        s.engine.reconcile_once().await.unwrap();
        assert!(
            s.vast.live_instances().iter().any(|l| l.0 == id),
            "the busy machine was destroyed while its host had no heartbeat"
        );
    }
    assert_eq!(s.job_state(job).await, JobState::Running);
    s.clock.advance_ms(6 * MIN);
    assert_eq!(s.vast.phase(id), Some(Phase::Running), "the host is back");
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(s.vast.live_instances().is_empty());
    s.nothing_leaked().await;
}

async fn an_idle_machine_whose_host_blips_offline_is_kept_and_then_takes_its_job() {
    let s = Story::begin("hosts-online-offline").await;
    let job = s.a_job_is_queued("cirun-gpu--2102");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    assert_eq!(booted.len(), 1);
    let runner = s
        .github
        .connect_runner(&harness::jit_config_of(&booted[0]))
        .unwrap();
    s.engine.reconcile_once().await.unwrap();
    let id = the_machine(&s);

    // The host disconnects for three minutes, then comes back.
    assert!(s.vast.host_goes(id, HostStatus::Offline, Some(3 * MIN)));
    for _ in 0..2 {
        s.clock.advance_ms(MIN);
        s.engine.reconcile_once().await.unwrap();
    }
    assert_eq!(
        s.vast.live_instances().len(),
        1,
        "an online machine was destroyed two minutes into a transient `offline`"
    );
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    s.clock.advance_ms(2 * MIN);
    assert_eq!(s.vast.phase(id), Some(Phase::Running));
    assert_eq!(s.github.take_job(runner), Some(job));
    s.webhooks_arrive().await;
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    let charged = s.engine.store.costs_for_job(job).await.unwrap();
    assert_eq!(charged.len(), 1, "one machine served the job: {charged:?}");
    s.nothing_leaked().await;
}

async fn an_idle_machine_whose_host_stays_unreachable_is_replaced_after_the_grace() {
    // A long idle timeout, so that only the host's state can end the machine.
    let s = Story::begin_with("hosts-online-gone", &[("RIGGER_TIMEOUTS_IDLE", "1h")]).await;
    let job = s.a_job_is_queued("cirun-gpu--2103");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.clock.advance_ms(30_000);
    s.vast.live_instances();
    let booted: Vec<_> = s.booted.lock().unwrap().drain(..).collect();
    let runner = s
        .github
        .connect_runner(&harness::jit_config_of(&booted[0]))
        .unwrap();
    s.engine.reconcile_once().await.unwrap();
    let id = the_machine(&s);
    // Frozen for good; its runner stops polling, so GitHub shows it offline.
    assert!(s.vast.host_goes(id, HostStatus::Frozen, None));
    assert!(s.github.runner_goes_offline(runner));
    s.clock.advance_ms(MIN);
    s.engine.reconcile_once().await.unwrap();
    assert_eq!(s.vast.live_instances().len(), 1, "within the grace");
    s.clock.advance_ms(10 * MIN);
    s.engine.reconcile_once().await.unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "unreachable past the grace, its runner offline: destroyed"
    );
    assert_eq!(
        s.job_state(job).await,
        JobState::Queued,
        "back in the queue"
    );
    a_new_machine_serves_it_to_the_end(&s, job).await;
}

async fn a_container_that_cannot_pull_its_image_fails_over_at_once() {
    let s = Story::begin("hosts-fatal-boot").await;
    s.vast.set_faults(Faults {
        fatal_boot_rate: 1.0,
        ..Faults::default()
    });
    let job = s.a_job_is_queued("cirun-gpu--2104");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.vast.set_faults(Faults::default());
    let dead = the_machine(&s);
    s.clock.advance_ms(MIN);
    s.engine.reconcile_once().await.unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "a machine whose container cannot start was kept (it would wait out the \
         20-minute boot timeout)"
    );
    assert_eq!(s.job_state(job).await, JobState::Queued);
    let row = s.engine.store.job(job).await.unwrap().unwrap();
    let said = row.reason.unwrap_or_default();
    assert!(
        ["manifest unknown", "pull access denied", "OCI runtime"]
            .iter()
            .any(|m| said.contains(m)),
        "the job does not say why its machine failed: {said:?}"
    );
    let events = s.events(job).await;
    assert!(
        events
            .iter()
            .any(|(kind, text)| kind == "boot_log" && text.contains("Error response from daemon")),
        "the machine's log was not kept: {events:?}"
    );
    let run = &s.github.check_runs()[0];
    assert!(
        run.summary.contains(&said) && run.title.contains("failed to boot"),
        "the check run does not say why the machine failed: {run:?}"
    );
    s.rigger_provisions().await;
    let taken = s.machines_boot();
    assert_eq!(taken.len(), 1);
    assert_ne!(taken[0].0, dead);
    s.webhooks_arrive().await;
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    let run = &s.github.check_runs()[0];
    assert!(run.summary.contains("across 2 machines"), "{run:?}");
    s.nothing_leaked().await;
}

async fn a_bid_the_market_outgrew_goes_to_the_next_offer() {
    let s = Story::begin("hosts-invalid-price").await;
    s.vast.set_faults(Faults {
        price_rises: 1,
        ..Faults::default()
    });
    // An A100 80 GB in the US as a bid first (examples/.cirun.yml).
    let job = s.a_job_is_queued("cirun-gpu-fallback--2105");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    assert_eq!(
        s.vast.requests("PUT /api/v0/asks/:id"),
        2,
        "the refused bid, then the next offer"
    );
    assert_eq!(s.vast.live_instances().len(), 1, "rented on the next offer");
    assert_eq!(s.job_state(job).await, JobState::WaitingForRunner);
    let taken = s.machines_boot();
    assert_eq!(taken.len(), 1);
    s.webhooks_arrive().await;
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    s.nothing_leaked().await;
}

async fn an_outbid_machine_is_given_up_and_its_job_served_by_another() {
    let s = Story::begin("hosts-outbid").await;
    let job = s.a_job_is_queued("cirun-gpu-fallback--2108");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    let id = the_machine(&s);
    // Someone bids more for the machine: Vast.ai stops the instance (its
    // disk kept and billed) until the bid is raised; rigger does not wait.
    assert!(s.vast.outbid(id, 100.0), "rented as a bid");
    s.engine.reconcile_once().await.unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "the stopped machine is destroyed"
    );
    assert_eq!(s.job_state(job).await, JobState::Queued);
    a_new_machine_serves_it_to_the_end(&s, job).await;
}

async fn an_offer_gone_answered_200_is_the_next_offer_not_a_failed_job() {
    let s = Story::begin("hosts-gone-200").await;
    s.vast.set_faults(Faults {
        steal_rate: 1.0,
        gone_as_200_rate: 1.0,
        ..Faults::default()
    });
    let job = s.a_job_is_queued("cirun-gpu--2106");
    s.webhooks_arrive().await;
    // Two creates under the fault, each in its own Vast.ai create slot
    // (4.5 s apart; a new limiter leaves a predecessor's create its
    // interval): settling through the slots would take the whole market.
    for _ in 0..3 {
        s.rigger_provisions_once().await;
        s.clock.advance_ms(5_000);
    }
    assert!(
        s.vast.requests("PUT /api/v0/asks/:id") >= 2,
        "rigger gave up after the first offer gone"
    );
    let state = s.job_state(job).await;
    assert_eq!(state, JobState::Queued, "the job waits for another offer");
    s.vast.set_faults(Faults::default());
    s.clock.advance_ms(5 * MIN);
    a_new_machine_serves_it_to_the_end(&s, job).await;
}

async fn a_proxys_404_on_destroy_is_not_taken_for_destroyed() {
    let s = Story::begin("hosts-proxy-404").await;
    let job = s.a_job_is_queued("cirun-gpu--2107");
    s.webhooks_arrive().await;
    s.rigger_provisions().await;
    s.machines_boot();
    s.webhooks_arrive().await;
    let id = the_machine(&s);
    // More 404 pages than one call's retries.
    s.vast.set_faults(Faults {
        proxy_404_destroys: 50,
        ..Faults::default()
    });
    s.github.finish_job(job, "success");
    s.webhooks_arrive().await;
    assert_eq!(s.job_state(job).await, JobState::Completed);
    assert!(
        s.vast.live_instances().iter().any(|l| l.0 == id),
        "the proxy's 404 destroyed nothing"
    );
    // rigger's books must not say destroyed while the machine runs and
    // bills: only the reconciler's orphan sweep would find it then.
    let rows = s.engine.store.instances_for_job(job).await.unwrap();
    assert_eq!(
        rows[0].state,
        InstanceState::Destroying,
        "rigger took a proxy's 404 for a destroyed machine"
    );
    // The proxy is fixed; the destroy is tried again and reaches Vast.ai.
    s.vast.set_faults(Faults::default());
    s.clock.advance_ms(2 * MIN);
    s.engine.reconcile_once().await.unwrap();
    assert!(
        s.vast.live_instances().is_empty(),
        "the machine is left running and billing: rigger took a proxy's 404 for destroyed"
    );
    s.nothing_leaked().await;
}

both_databases!(
    a_busy_machine_whose_host_loses_its_heartbeat_keeps_its_job,
    an_idle_machine_whose_host_blips_offline_is_kept_and_then_takes_its_job,
    an_idle_machine_whose_host_stays_unreachable_is_replaced_after_the_grace,
    a_container_that_cannot_pull_its_image_fails_over_at_once,
    a_bid_the_market_outgrew_goes_to_the_next_offer,
    an_outbid_machine_is_given_up_and_its_job_served_by_another,
    an_offer_gone_answered_200_is_the_next_offer_not_a_failed_job,
    a_proxys_404_on_destroy_is_not_taken_for_destroyed,
);
